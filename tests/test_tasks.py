"""The asyncio drivers: the poller and the supervisor run as tasks against real servers
while the event loop stays free for other work between polls and checks."""

from __future__ import annotations

import asyncio

from test_async_bring_up import online_then_stopped

from synack import tasks
from synack.http.client import Client
from synack.native import NativeBackend
from synack.poll import Poller
from synack.supervisor import OFFLINE, Supervisor
from synack_host.hil.http_server import HttpServer


def test_poller_task_shares_the_loop():
    with HttpServer() as server:
        poller = Poller(server.url(), lambda r: r.read(),
                        client=Client(backend=NativeBackend()), interval_ms=50)
        ticks = []

        async def ticker():
            for _ in range(40):
                ticks.append(1)
                await asyncio.sleep(0.01)

        async def main():
            t = asyncio.create_task(ticker())
            done = await tasks.poll(poller, polls=6)
            await t
            return done

        assert asyncio.run(main()) == 6
        poller.close()
        assert (poller.ok, poller.not_modified, poller.errors) == (1, 5, 0)
        assert server.connections == 1
        assert len(ticks) == 40       # the ticker ran while the poller waited


class FlakyLink:
    """Fails its first two bring-ups, then stays up."""

    def __init__(self):
        self.calls = 0
        self.up_now = False

    def up(self):
        self.calls += 1
        if self.calls <= 2:
            raise OSError(113, "no route (attempt %d)" % self.calls)
        self.up_now = True

    def down(self):
        self.up_now = False

    def is_up(self):
        return self.up_now


def test_supervisor_task_backs_off_then_comes_online():
    link = FlakyLink()
    sup = Supervisor(link, base_ms=30, cap_ms=100, check_ms=20, seed=1)
    final = online_then_stopped(sup)
    assert link.calls == 3 and sup.connects == 1
    assert sup.failures and sum(sup.failures.values()) == 2
    assert final == "OFFLINE" and sup.state == OFFLINE


def test_heartbeat_task_keeps_a_connection_through_an_idle_killing_nat():
    from synack import heartbeat as hbm
    from synack import socket as synsocket
    from synack_host.hil.middlebox import IdleKillingProxy, heartbeat_server
    from synack_host.hil.servers import ScriptedServer

    with ScriptedServer(heartbeat_server(pushes=((0.5, b"news"),))) as peer, \
            IdleKillingProxy(peer.address, 1.0) as nat:
        s = synsocket.socket(backend=NativeBackend())
        s.settimeout(5)
        s.connect(("127.0.0.1", nat.port))
        pushed = []
        hb = hbm.Heartbeat(idle_ms=300, timeout_ms=500, misses=3)
        drv = hbm.Driver(s, hb, pushed.append, poll_ms=50)
        ticks = []

        async def ticker():
            while len(ticks) < 100:
                ticks.append(1)
                await asyncio.sleep(0.02)

        async def main():
            t = asyncio.create_task(ticker())
            result = await tasks.heartbeat(drv, duration_ms=2500)
            t.cancel()
            return result

        assert asyncio.run(main()) == "deadline"
        s.close()
        assert hb.state_name == "ACTIVE" and hb.acks >= 4 and nat.kills == 0
        assert pushed == [b"news"]
        assert len(ticks) >= 60              # the loop was free while the task waited


def _largest_gap(poller, polls):
    """Run ``poller`` as a task next to a 20 ms ticker: the ticker's largest gap (s)."""
    import time

    wakes = []

    async def ticker(done):
        while not done.is_set():
            wakes.append(time.monotonic())
            await asyncio.sleep(0.02)

    async def main():
        done = asyncio.Event()
        t = asyncio.create_task(ticker(done))
        await tasks.poll(poller, polls=polls)
        wakes.append(time.monotonic())      # the end: a loop held until now shows too
        done.set()
        await t

    asyncio.run(main())
    return max(b - a for a, b in zip(wakes, wakes[1:], strict=False))


def test_a_poll_over_the_async_client_leaves_the_loop_free_while_the_server_thinks():
    # a long poll: the server holds each request 0.5 s before answering 304
    from synack.http.aclient import AsyncClient

    with HttpServer() as server:
        def make(client):
            return Poller(server.url("/longpoll"), lambda r: None, client=client, interval_ms=10,
                          long_poll_ms=500)
        blocking = make(Client(backend=NativeBackend(), read_timeout_ms=5000))
        blocking.poll()                     # the first 200; now the ETag is known
        assert _largest_gap(blocking, 2) >= 0.4     # each poll held the loop
        blocking.close()
        awaited = make(AsyncClient(backend=NativeBackend(), read_timeout_ms=5000))
        assert _largest_gap(awaited, 3) < 0.2
        assert (awaited.ok, awaited.not_modified, awaited.errors) == (1, 2, 0)
        awaited.close()
