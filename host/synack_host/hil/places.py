"""Boards shared over the network: labgrid places, from the HIL side.

A *place* on a labgrid coordinator names one board; whoever acquires it has it alone
until they release it. ``synack farm up`` makes places ``synack-1..N`` whose matched
resource is the board's serial port exported by ser2net over RFC 2217
(``NetworkSerialPort``: host, port); the same exporter group carries the rig's modem
fault control as a ``SynackModemControl`` resource (the place does not match it, so
``labgrid-client console`` and friends, which build a target from the matched
resources, never meet a class they do not know).

    lab = Lab("127.0.0.1:20408")
    lab.acquire("synack-1")                 # PlaceError naming the holder if taken
    board = lab.board("synack-1")           # Board(url='rfc2217://127.0.0.1:4001?...')
    why = lab.lost("synack-1")              # None while it is still ours
    lab.release("synack-1"); lab.close()

The labgrid client session runs its asyncio loop in a thread of its own, so that place
and resource changes keep arriving while the caller (a pytest run) blocks on a board.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import threading
from dataclasses import dataclass

from ..sim.launch import RunningModem

SERIAL_CLS = "NetworkSerialPort"
MODEM_CONTROL_CLS = "SynackModemControl"
CALL_TIMEOUT_S = 15.0
# pyserial waits for the server to confirm each SET_CONTROL (DTR/RTS) on open; ser2net
# on a port without modem lines (a pty, many USB bridges in "local" mode) never does,
# and open() then fails after 3 s. The lines are still set; only the wait is skipped.
URL_OPTIONS = "?ign_set_control"


class PlaceError(Exception):
    """A place cannot be used (held by someone else, unknown, gone); the message says
    which and why, for ``synack: <message>``."""


@dataclass(frozen=True)
class Board:
    place: str
    url: str                          # rfc2217://host:port?ign_set_control
    control: str | None = None        # the rig's modem fault socket (a farm rig only)
    keepalive_minute_s: float | None = None   # the rig modem's AT+CTCPKA minute
    tags: tuple[tuple[str, str], ...] = ()


def coordinator_address(given: str | None = None) -> str:
    """--coordinator, else $LG_COORDINATOR (labgrid's own variable)."""
    address = given or os.environ.get("LG_COORDINATOR", "")
    if not address:
        raise PlaceError("no labgrid coordinator: give --coordinator HOST:PORT or set "
                         "LG_COORDINATOR (synack farm up prints it)")
    return address


def labgrid_missing() -> str | None:
    try:
        import labgrid.remote.client  # noqa: F401
    except ImportError as e:
        return (f"labgrid is not installed ({e.name or e}): pip install 'synack[farm]' "
                f"(or pip install labgrid)")
    return None


class Lab:
    """One labgrid client session to ``address``, its loop in a background thread."""

    def __init__(self, address: str, timeout: float = CALL_TIMEOUT_S):
        why = labgrid_missing()
        if why:
            raise PlaceError(why)
        self.address = address
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="labgrid-client")
        self._thread.start()
        # labgrid reports a lost coordinator with logging.error on the root logger; with
        # no handler there Python prints it on stderr, next to our one-line error
        root = logging.getLogger()
        if not root.handlers:
            root.addHandler(logging.NullHandler())
        try:
            self.session = self._call(self._start(), what="connect")
        except PlaceError:
            self._stop_loop()
            raise PlaceError(f"cannot reach the labgrid coordinator at {address} (is it "
                             f"running? 'synack farm up' prints its LG_COORDINATOR)") from None
        except BaseException:
            self._stop_loop()
            raise

    async def _start(self):
        from labgrid.remote.client import ClientSession

        session = ClientSession(self.address, asyncio.get_running_loop(),
                                args=argparse.Namespace(allow_unmatched=False, kick=False))
        await session.start()
        return session

    def _call(self, coro, what: str, timeout: float | None = None):
        """Run ``coro`` on the session's loop; labgrid's and gRPC's errors become one
        PlaceError naming the coordinator."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout or self.timeout)
        except TimeoutError:
            future.cancel()
            raise PlaceError(f"labgrid coordinator {self.address}: no answer to {what} "
                             f"within {timeout or self.timeout:g} s") from None
        except PlaceError:
            raise
        except Exception as e:
            detail = getattr(e, "details", None)
            text = detail() if callable(detail) else str(e)
            raise PlaceError(f"labgrid coordinator {self.address}: {what} failed: "
                             f"{' '.join(str(text).split()) or type(e).__name__}") from None

    @property
    def identity(self) -> str:
        """``host/user`` as labgrid records a holder ($LG_HOSTNAME, $LG_USERNAME)."""
        return f"{self.session.gethostname()}/{self.session.getuser()}"

    # -- reading --------------------------------------------------------------------
    def place_names(self) -> list[str]:
        return sorted(self.session.places)

    def _place(self, name: str):
        place = self.session.places.get(name)
        if place is None:
            known = ", ".join(self.place_names()) or "none"
            raise PlaceError(f"no place {name!r} at the labgrid coordinator {self.address} "
                             f"(places: {known})")
        return place

    def holder(self, name: str) -> str | None:
        return self._place(name).acquired

    def free_places(self, prefix: str = "") -> list[str]:
        """Places nobody holds whose serial port is exported (``--places all-free``)."""
        return [n for n in self.place_names() if n.startswith(prefix)
                and not self.session.places[n].acquired and self._serial(n, False)]

    def _group_resources(self, name: str, acquired: bool) -> dict:
        """The exporter group's resources behind place ``name``'s serial port."""
        entry = self._serial(name, acquired)
        if entry is None:
            return {}
        exporter, group = entry[0], entry[1]
        return self.session.resources.get(exporter, {}).get(group, {})

    def _serial(self, name: str, acquired: bool):
        """(exporter, group, resource name, entry) of the place's NetworkSerialPort: its
        acquired resource, or (not acquired) the first resource its matches select."""
        place = self._place(name)
        if acquired:
            paths = [tuple(p) for p in place.acquired_resources]
        else:
            paths = [(e, g, r.cls, n) for e, groups in self.session.resources.items()
                     for g, group in groups.items() for n, r in group.items()
                     if "cls" in r.data and place.getmatch((e, g, r.cls, n))]
        for exporter, group, cls, res in paths:
            entry = self.session.resources.get(exporter, {}).get(group, {}).get(res)
            if cls == SERIAL_CLS and entry is not None and "cls" in entry.data:
                return exporter, group, res, entry
        return None

    def board(self, name: str) -> Board:
        """Where place ``name``'s board is: its rfc2217:// URL and, on a farm rig, the
        modem control. The place must be acquired (by us: the caller checks)."""
        place = self._place(name)
        found = self._serial(name, acquired=bool(place.acquired))
        if found is None:
            raise PlaceError(f"place {name} has no exported serial port ({SERIAL_CLS}): "
                             f"is its exporter running?")
        params = found[3].params
        url = f"rfc2217://{params['host']}:{params['port']}{URL_OPTIONS}"
        control = minute = None
        for entry in self._group_resources(name, bool(place.acquired)).values():
            if entry.data.get("cls") == MODEM_CONTROL_CLS:
                control = entry.params.get("path")
                minute = float(entry.params.get("keepalive_minute", 60.0))
        return Board(name, url, control, minute, tuple(sorted(place.tags.items())))

    def lost(self, name: str) -> str | None:
        """Why place ``name`` is no longer ours to use, or None while it is."""
        if self.session.stopping.is_set():
            return f"the connection to the labgrid coordinator {self.address} was lost"
        place = self.session.places.get(name)
        if place is None:
            return f"place {name} was deleted from the coordinator"
        if place.acquired != self.identity:
            return (f"place {name} was released" if not place.acquired else
                    f"place {name} was taken over by {place.acquired}")
        if self._serial(name, acquired=True) is None:
            return f"the serial port of place {name} is gone (its exporter disconnected)"
        return None

    # -- changing -------------------------------------------------------------------
    def acquire(self, name: str) -> None:
        holder = self.holder(name)
        if holder:
            raise PlaceError(_held(name, holder, self.identity))
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        async def go():
            await self.session.stub.AcquirePlace(pb.AcquirePlaceRequest(placename=name))
            await self.session.sync_with_coordinator()
        try:
            self._call(go(), what=f"acquire {name}")
        except PlaceError:
            holder = self.session.places.get(name) and self.session.places[name].acquired
            if holder and holder != self.identity:     # lost a race: name the winner
                raise PlaceError(_held(name, holder, self.identity)) from None
            raise

    def release(self, name: str) -> bool:
        """Release ``name`` if we hold it; False if it was not ours (or is gone)."""
        place = self.session.places.get(name)
        if place is None or place.acquired != self.identity or \
                self.session.stopping.is_set():
            return False
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        async def go():
            await self.session.stub.ReleasePlace(pb.ReleasePlaceRequest(placename=name))
            await self.session.sync_with_coordinator()
        self._call(go(), what=f"release {name}")
        return True

    def create_place(self, name: str, matches: list[str], tags: dict[str, str],
                     comment: str = "") -> None:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        async def go():
            stub = self.session.stub
            if name not in self.session.places:
                await stub.AddPlace(pb.AddPlaceRequest(name=name))
            for pattern in matches:
                await stub.AddPlaceMatch(pb.AddPlaceMatchRequest(placename=name,
                                                                 pattern=pattern))
            await stub.SetPlaceTags(pb.SetPlaceTagsRequest(placename=name, tags=tags))
            if comment:
                await stub.SetPlaceComment(pb.SetPlaceCommentRequest(placename=name,
                                                                     comment=comment))
            await self.session.sync_with_coordinator()
        self._call(go(), what=f"create place {name}")

    def groups(self, exporter: str) -> set[str]:
        return {g for g, group in self.session.resources.get(exporter, {}).items()
                if any("cls" in r.data for r in group.values())}

    # -- closing --------------------------------------------------------------------
    def close(self) -> None:
        if self._thread.is_alive():
            async def bye():
                await self.session.stop()
                await self.session.close()
            try:
                self._call(bye(), what="close", timeout=5.0)
            except PlaceError:
                pass
        self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self.loop.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _held(name: str, holder: str, me: str) -> str:
    if holder == me:
        return (f"place {name} is already held by you ({holder}): another run is using "
                f"it, or release it with: labgrid-client -p {name} release")
    return f"place {name} is held by {holder}; wait until they release it"


class RemoteModem(RunningModem):
    """A farm rig's virtual modem, reached through its fault control socket only: the
    fault methods of RunningModem (they all go through ``fault()``), without a process
    to signal, so ``network_lost`` is the control socket's fault and pause/resume are
    not available."""

    def __init__(self, control_path: str):     # no process: nothing of SimProcess's
        self.control_path = control_path
        self.port = None

    def network_lost(self) -> None:
        self.fault("network-lost")

    def pause(self) -> None:
        raise NotImplementedError("a farm rig's modem cannot be paused from a client")

    def resume(self) -> None:
        pass

    def stop(self) -> int | None:
        return None

