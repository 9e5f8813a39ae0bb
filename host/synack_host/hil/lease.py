"""A pytest run on a labgrid place (the plugin's ``--place``): acquire it (or find it held
by the parent ``synack hil``), use its board, watch it, release it. The plugin's hooks
call the functions at the end of this module; PlaceLease is usable on its own."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from .places import Lab, PlaceError, coordinator_address


# the parent `synack hil --place(s)` holds the place and releases it; its child pytest
# only checks that it is held by this host/user and watches it
HELD_BY_PARENT_ENV = "SYNACK_HIL_PLACE_HELD"
WATCH_EVERY_S = 0.5


class PlaceLease:
    """What one pytest run holds: place ``name`` (acquired here unless the parent holds
    it), its Board, and a watch: when the place vanishes (deleted, released or taken by
    someone else, its exporter or the coordinator gone) ``lost_reason`` says why and the
    ``on_lost`` callbacks run (the plugin closes the board's link there, so a test
    blocked on the board fails now, not at its timeout)."""

    def __init__(self, address: str, name: str):
        self.name = name
        self.lab = Lab(address)
        self.acquired = False
        try:
            if os.environ.get(HELD_BY_PARENT_ENV) == name:
                holder = self.lab.holder(name)
                if holder != self.lab.identity:
                    raise PlaceError(f"place {name} should be held by {self.lab.identity} "
                                     f"but is held by {holder or 'nobody'}")
            else:
                self.lab.acquire(name)
                self.acquired = True
            self.board = self.lab.board(name)
        except BaseException:
            self.close()
            raise
        self.lost_reason: str | None = None
        self._callbacks: list = []
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._run_watch, daemon=True,
                                       name=f"watch-{name}")
        self._watch.start()

    def on_lost(self, callback) -> None:
        self._callbacks.append(callback)

    def _run_watch(self) -> None:
        while not self._stop.wait(WATCH_EVERY_S):
            if self.check() is not None:
                return

    def check(self) -> str | None:
        """Look now (not at the next watch tick): why the place is lost, or None."""
        if self.lost_reason is None:
            why = self.lab.lost(self.name)
            if why is not None:
                self.lost_reason = why
                for callback in self._callbacks:
                    try:
                        callback()
                    except Exception:      # a link already closed: nothing to stop
                        pass
        return self.lost_reason

    def close(self) -> str | None:
        """Stop watching and release the place if this run acquired it; returns an
        error message if the release failed (the caller reports it)."""
        if hasattr(self, "_stop"):
            self._stop.set()
            self._watch.join(2 * WATCH_EVERY_S)
        problem = None
        if self.acquired:
            try:
                self.lab.release(self.name)
            except PlaceError as e:
                problem = str(e)
            self.acquired = False
        self.lab.close()
        return problem


LEASE = pytest.StashKey()     # the PlaceLease of a --place run, on the pytest config


def of(config: pytest.Config) -> PlaceLease | None:
    return config.stash.get(LEASE, None)


def start(config: pytest.Config) -> None:
    """pytest_configure: with --place, acquire it and point --board at its URL."""
    place = config.getoption("--place", None)
    if not place:
        return
    if config.getoption("--board") != "virtual":
        raise pytest.UsageError("give --board or --place, not both")
    try:
        lease = PlaceLease(coordinator_address(config.getoption("--coordinator")), place)
    except PlaceError as e:
        raise pytest.UsageError(str(e)) from None
    config.stash[LEASE] = lease
    config.option.board = lease.board.url


def check_before(item: pytest.Item) -> None:
    """pytest_runtest_setup: once the place is gone, every later test fails at once."""
    lease = of(item.config)
    if lease is not None and lease.check():
        pytest.fail(f"place {lease.name} vanished: {lease.lost_reason}", pytrace=False)


def name_vanished(item: pytest.Item, report: pytest.TestReport) -> None:
    """A test that failed because its place vanished says so first: the port error it
    met is only the symptom. The watch looks every 0.5 s, so look again for a moment."""
    lease = of(item.config)
    if lease is None or not report.failed or "vanished: " in str(report.longrepr):
        return
    deadline = time.monotonic() + 1.0
    while lease.check() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if lease.lost_reason:
        report.longrepr = f"place {lease.name} vanished: {lease.lost_reason}\n\n" \
                          f"{report.longrepr}"


def finish(config: pytest.Config) -> None:
    """pytest_unconfigure: release (if this run acquired it) and stop watching."""
    lease = of(config)
    if lease is not None:
        del config.stash[LEASE]
        problem = lease.close()
        if problem:
            print(f"synack: {problem}", file=sys.stderr)
