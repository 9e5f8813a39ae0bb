"""Supervisor with real timing: against the virtual SIM7600 (bring-up failures, modem
reset after repeated failures, network loss and reconnect, a socket that works after
it) and against a link object whose failures follow the wall clock."""

from __future__ import annotations

import time

import pytest

from synack import socket as synsocket
from synack import supervisor as sv
from synack.link.modem import ModemLink
from modemrig import Rig
from synack_host.hil.servers import EchoServer


class Recorder:
    """on_change callback: (seconds since start, state name) of every transition."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.seen: list[tuple[float, str]] = []

    def __call__(self, old: int, new: int) -> None:
        self.seen.append((time.monotonic() - self.t0, sv.STATE_NAMES[new]))

    def names(self) -> list[str]:
        return [n for _, n in self.seen]

    def times(self, name: str) -> list[float]:
        return [t for t, n in self.seen if n == name]


@pytest.fixture
def flaky_modem():
    """A virtual SIM7600 whose first three AT+NETOPEN fail (+CME ERROR: 3)."""
    with Rig("--fault", "AT+NETOPEN|+CME ERROR: 3|3", start=False, poll_ms=50) as rig:
        yield rig.proc, rig.modem


def test_modem_backoff_reinit_loss_and_recovery(flaky_modem):
    proc, modem = flaky_modem
    rec = Recorder()
    sup = sv.Supervisor(ModemLink(modem, register_timeout_ms=3000, reset_wait_ms=3000),
                        on_change=rec, base_ms=150, cap_ms=2000, jitter_pct=20,
                        reinit_after=3, check_ms=50)
    assert sup.run(duration_ms=8000, stop=lambda: sup.online) == "ONLINE"
    assert rec.names() == ["LINK_UP", "BACKOFF", "LINK_UP", "BACKOFF", "LINK_UP", "BACKOFF",
                           "REINIT", "LINK_UP", "ONLINE"]
    assert sup.failures == {"PDPError": 3}
    assert "+CME ERROR: 3" in str(sup.last_error)
    # reinit() returns only once the modem's RDY after AT+CRESET arrived.
    assert sup.reinits == 1 and modem.reboots >= 1
    # Growing delays: each wait in BACKOFF is longer than the one before.
    ends = [t for t, n in rec.seen[1:] if n in ("LINK_UP", "REINIT")]
    waits = [b - a for a, b in zip(rec.times("BACKOFF"), ends[:3], strict=True)]
    assert waits[0] >= 0.15 * 0.8 - 0.01 and waits[0] < waits[1] < waits[2], waits

    # The bearer drops under a live connection: OFFLINE, then straight back up.
    with EchoServer() as echo:
        s = synsocket.socket(backend=modem)
        s.settimeout(5)
        s.connect(("127.0.0.1", echo.port))
        proc.network_lost()
        t_lost = time.monotonic()
        sup.run(duration_ms=5000, stop=lambda: sup.losses == 1 and sup.online)
        assert time.monotonic() - t_lost < 1.5
        assert rec.names()[-3:] == ["OFFLINE", "LINK_UP", "ONLINE"]
        assert s.state == "CLOSED"                            # the old link was reset
        s.close()
        s = synsocket.socket(backend=modem)                   # and the new bearer works
        s.settimeout(5)
        s.connect(("127.0.0.1", echo.port))
        s.write(b"back online")
        assert s.read(11) == b"back online"
        s.close()
    assert sup.failures == {"PDPError": 3, "link lost": 1}
    assert (sup.losses, sup.reconnects, sup.connects, sup.attempts) == (1, 1, 2, 5)
    sup.stop()
    assert sup.state_name == "OFFLINE" and not modem.net_open


class ClockLink:
    """A link that refuses to come up ``fail`` times, then stays up for ``up_s``
    seconds of wall-clock time, then drops (once)."""

    def __init__(self, fail: int, up_s: float):
        self.fail = fail
        self.up_s = up_s
        self.up_since: float | None = None
        self.dropped = False
        self.log: list[tuple[float, str]] = []
        self.t0 = time.monotonic()

    def _note(self, what: str) -> None:
        self.log.append((time.monotonic() - self.t0, what))

    def up(self) -> None:
        self._note("up")
        if self.fail:
            self.fail -= 1
            raise OSError(113, "no route to host")
        self.up_since = time.monotonic()

    def is_up(self) -> bool:
        if self.up_since is None:
            return False
        if not self.dropped and time.monotonic() - self.up_since > self.up_s:
            self.dropped = True
            self.fail = 4         # the cell is gone for a while
            self.up_since = None
            return False
        return True

    def down(self) -> None:
        self._note("down")
        self.up_since = None

    def reinit(self) -> None:
        self._note("reinit")


def test_wall_clock_link_goes_offline_backs_off_and_recovers():
    link = ClockLink(fail=2, up_s=0.3)
    rec = Recorder()
    sup = sv.Supervisor(link, on_change=rec, base_ms=60, cap_ms=400, jitter_pct=25,
                        reinit_after=4, check_ms=20)
    sup.run(duration_ms=5000, stop=lambda: sup.losses == 1 and sup.online)
    assert rec.names() == ["LINK_UP", "BACKOFF", "LINK_UP", "BACKOFF", "LINK_UP", "ONLINE",
                           "OFFLINE", "LINK_UP", "BACKOFF", "LINK_UP", "BACKOFF", "LINK_UP",
                           "BACKOFF", "LINK_UP", "BACKOFF", "REINIT", "LINK_UP", "ONLINE"]
    ups = [t for t, what in link.log if what == "up"]
    gaps = [b - a for a, b in zip(ups, ups[1:], strict=False)]
    # First outage: 60, 120 ms. After the loss: immediate, then 60, 120, 240 ms, then
    # the 4th failure in a row brings REINIT and 480 -> capped 400 ms.
    assert 0.045 <= gaps[0] < gaps[1] < 0.25, gaps
    assert gaps[3] < gaps[4] < gaps[5] and gaps[5] >= 0.18 - 0.01, gaps
    assert 0.3 - 0.01 <= gaps[6] < 0.55, gaps       # capped (jitter takes up to 25 %)
    assert [w for _, w in link.log].count("reinit") == 1
    assert sup.failures == {"OSError": 6, "link lost": 1}
    assert (sup.losses, sup.reinits, sup.reconnects) == (1, 1, 1)
    assert sup.format_history()[-1].endswith("UP_OK LINK_UP -> ONLINE")
