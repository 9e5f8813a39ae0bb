"""HTTP polling as a phone does it: one keep-alive connection for many polls, 304s that
cost no body, recovery after the server restarts, and presence online -> offline ->
online as the server sees it; recovery after a server restart and after link faults
injected into the virtual modem; long-polling."""

import time

import pytest

POLLS = """
from synack.http.client import Client
c = Client(read_timeout_ms=15000, keep_alive=KEEP_ALIVE)
etag = None
codes = []
for i in range(%(n)d):
    r = c.get(%(url)r, headers={'If-None-Match': etag} if etag else None)
    body = r.read()
    etag = r.header('ETag') or etag
    codes.append(r.status)
print('codes', ' '.join(str(x) for x in codes))
print('connections', c.connections)
c.close()
"""


# conftest.py of a deliberately broken build may set this to False
KEEP_ALIVE = True


def poll(board, url, n):
    code = f"KEEP_ALIVE = {KEEP_ALIVE!r}\n" + POLLS % {"url": url, "n": n}
    out = board.exec(code, timeout=120)
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    return [int(x) for x in lines["codes"].split()], int(lines["connections"])


def test_keep_alive_polls_share_one_connection(board, http_server, hil, capture,
                                              record_property):
    cap = capture(http_server.port)
    codes, opened = poll(board, http_server.url(host=hil.server_host), 20)
    flows = cap.stop()
    record_property("connections_per_20_polls", len(flows))
    cap.assert_connections(1, port=http_server.port)   # what the wire says comes first
    assert codes == [200] + [304] * 19        # the ETag makes every later poll a 304
    assert opened == 1 and http_server.connections == 1
    assert all(r.connection == 0 for r in http_server.requests)


def test_http10_polls_open_one_connection_each(board, http_server, hil, record_property):
    server10 = http_server.factory(version="1.0")
    codes, opened = poll(board, server10.url(host=hil.server_host), 10)
    record_property("connections_per_10_polls", server10.connections)
    assert codes == [200] + [304] * 9
    assert server10.connections == 10 and opened == 10


def test_server_closing_between_polls_costs_no_failed_poll(board, http_server, hil):
    limited = http_server.factory(close_after=3)
    codes, opened = poll(board, limited.url(host=hil.server_host), 9)
    assert codes == [200] + [304] * 8          # no poll failed
    assert limited.connections == 3 and opened == 3


PRESENCE = """
from synack.http.client import Client
import time
c = Client(read_timeout_ms=10000)
for i in range(%(n)d):
    c.get(%(url)r).read()
    time.sleep_ms(%(every_ms)d)
c.close()
print('sent', %(n)d)
"""


def test_presence_online_offline_online(board, presence_server, hil):
    url = presence_server.url("/presence/dev1", host=hil.server_host)
    assert presence_server.presence("dev1") == "unknown"
    board.exec(PRESENCE % {"url": url, "n": 3, "every_ms": 300}, timeout=60)
    assert presence_server.presence("dev1") == "online"
    assert presence_server.wait_for(lambda: presence_server.presence("dev1") == "offline",
                                    timeout=presence_server.presence_timeout + 2)
    board.exec(PRESENCE % {"url": url, "n": 1, "every_ms": 0}, timeout=60)
    assert presence_server.presence("dev1") == "online"


# -- recovery: the application loop a phone-like device runs ----------------------------
# A Supervisor keeps the link up (`link` comes from the board fixture's bring-up: a
# ModemLink or a WifiLink); a Poller polls with backoff on errors. The loop ends after
# `n` successful polls or `limit_ms`, whichever is first.
SUPERVISED_POLLS = """
import time
from synack.http.client import Client
from synack.poll import Poller, OUTCOME_NAMES, FAILED
from synack.supervisor import Supervisor
sup = Supervisor(link, base_ms=250, cap_ms=2000, jitter_pct=0, check_ms=100, seed=1)
sup.start()
p = Poller(%(url)r, client=Client(connect_timeout_ms=3000, read_timeout_ms=3000),
           interval_ms=%(every_ms)d, backoff_ms=250, backoff_cap_ms=1000)
t0 = time.ticks_ms()
while p.ok + p.not_modified < %(n)d and time.ticks_diff(time.ticks_ms(), t0) < %(limit_ms)d:
    sup.step()
    if not sup.online:
        time.sleep_ms(50)
        continue
    outcome, delay = p.poll()
    print('poll', p.polls, OUTCOME_NAMES[outcome], p.last_error if outcome == FAILED else '')
    time.sleep_ms(delay)
print('result', p.ok + p.not_modified, p.errors, p.connections, sup.losses, sup.reconnects)
p.close()
"""


def supervised_polls(board, url, n=12, every_ms=250, limit_ms=40000, during=None):
    """Run SUPERVISED_POLLS; ``during()`` runs on the host after the 3rd poll. Returns
    (successful polls, failed polls, connections, link losses, reconnects)."""
    board.start(SUPERVISED_POLLS % {"url": url, "n": n, "every_ms": every_ms,
                                    "limit_ms": limit_ms})
    board.expect(r"poll 3 ", timeout=30)
    if during is not None:
        during()
    out = board.finish(timeout=limit_ms / 1000 + 30)
    result = [line for line in out.splitlines() if line.startswith("result ")]
    assert result, f"the device loop did not finish: {out[-800:]}"
    return tuple(int(x) for x in result[-1].split()[1:])


def test_polls_recover_after_server_restart(board, http_server, hil, record_property):
    t = {}

    def restart():
        t["down"] = time.monotonic()
        http_server.restart(down_s=1.5)

    ok, failed, opened, losses, _ = supervised_polls(
        board, http_server.url(host=hil.server_host), during=restart)
    back = [r.at for r in http_server.requests if r.at > t["down"]]
    record_property("polls_failed_during_1.5s_restart", failed)
    record_property("recovery_after_restart_s", round(back[0] - t["down"], 2) if back else -1)
    assert ok == 12, "the poller did not recover after the server came back"
    assert failed >= 1, "no poll failed while the server was down: was it down?"
    assert losses == 0, "a server restart is not a link loss"
    assert opened >= 2 and http_server.connections >= 2
    assert back and back[0] - t["down"] >= 1.5         # nothing reached a stopped server


LINK_FAULTS = {
    # fault: (what the host does to the modem, a link loss the supervisor must see)
    "network-lost": (lambda m: m.network_lost(), True),
    "drop-registration": (lambda m: m.drop_registration(2.0), True),
    "reboot": (lambda m: m.reboot(), True),
    "close-link": (lambda m: m.close_link(_open_link(m)), False),
}


def _open_link(modem) -> int:
    links = [int(n) for n, state in modem.status()["links"].items() if state == "open"]
    assert links, f"no open link to close: {modem.status()}"
    return links[0]


@pytest.mark.parametrize("fault", list(LINK_FAULTS))
def test_polls_recover_after_link_loss(board, modem, http_server, hil, fault,
                                       record_property):
    inject, link_lost = LINK_FAULTS[fault]
    t = {}

    def during():
        t["fault"] = time.monotonic()
        inject(modem)

    ok, failed, opened, losses, reconnects = supervised_polls(
        board, http_server.url(host=hil.server_host), during=during)
    back = [r.at for r in http_server.requests if r.at > t["fault"]]
    record_property(f"recovery_after_{fault}_s", round(back[0] - t["fault"], 2) if back else -1)
    assert ok == 12, f"the poller did not recover after {fault}"
    assert opened == 2 and http_server.connections == 2, \
        f"expected one new connection after {fault}, the device opened {opened}"
    if link_lost:
        assert losses >= 1 and reconnects >= 1, f"the supervisor never saw the {fault}"
    else:
        assert losses == 0 and failed == 0, "a closed link is a stale connection, not a loss"


def test_noisy_modem_loses_no_poll(board, modem, http_server, hil):
    def noise():
        modem.lose_data_urcs(3)                    # the driver must poll for its data
        modem.inject_garbage(b"\xff\x00+GARBAGE\r\n")
        modem.delay_replies(0.5, count=3)          # a busy modem answering late

    ok, failed, opened, losses, _ = supervised_polls(
        board, http_server.url(host=hil.server_host), during=noise)
    assert (ok, failed, opened, losses) == (12, 0, 1, 0)


LONG_POLL = """
from synack.http.client import Client
from synack.poll import Poller
def changed(resp):
    print('changed', resp.read())
p = Poller(%(url)r, changed, client=Client(read_timeout_ms=5000), interval_ms=10,
           long_poll_ms=%(hold_ms)d)
p.run(polls=3)
print('stats', p.ok, p.not_modified, p.errors, p.connections)
p.close()
"""


def test_long_poll_delivers_news_at_once(board, http_server, hil, record_property):
    """A long poll is held by the server until there is news, which then arrives at once;
    with no news it ends with a 304 after the wait the device asked for."""
    board.start(LONG_POLL % {"url": http_server.url("/longpoll", host=hil.server_host),
                             "hold_ms": 2000})
    board.expect(r"changed b'hello'")
    assert http_server.wait_for(lambda: len(http_server.requests) == 2)   # held now
    time.sleep(0.3)
    news_at = time.monotonic()
    http_server.set_resource(b"news")
    board.expect(r"changed b'news'", timeout=5)
    latency = time.monotonic() - news_at
    out = board.finish(timeout=30)
    record_property("long_poll_news_latency_ms", round(latency * 1000))
    ok, not_modified, errors, opened = (int(x) for x in out.split("stats ")[1].split())
    assert (ok, not_modified, errors, opened) == (2, 1, 0, 1)
    held = http_server.requests[1]
    assert held.headers.get("prefer") == "wait=2" and held.headers.get("if-none-match")
    assert latency < 1.0, f"news took {latency:.2f} s to reach the device"
    last = http_server.requests[2]
    assert last.status == 304
