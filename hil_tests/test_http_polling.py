"""HTTP polling as a phone does it: one keep-alive connection for many polls, 304s that
cost no body, recovery after the server restarts, and presence online -> offline ->
online as the server sees it."""

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
