"""A cellular modem's life, the same for every dialect (``ModemBackend``): brought up
once by ``start()`` (the 27.007 steps of base.py, then the dialect's), its packet-data
bearer lost with the network and reopened by the next connect, reset and rebooted by
link/modem.py; each as at/steps.py generators, run blocking, stepped by a non-blocking
connect, or awaited."""

import errno
import time

from micropython import const

from .. import tcp
from ..at.errors import CommandError, CommandTimeout, ModemError
from ..at.steps import Stepper, command, poll, run, wait_for
from .base import (REG_HOME, REG_ROAMING, ModemNotResponding, NotRegistered, PDPError,
                   SettingRefused, check_sim_steps, registration_steps, signal_dbm_steps,
                   sync_steps, wait_registered_steps)

try:
    from typing import TYPE_CHECKING  # absent on MicroPython: only type checkers see it
except ImportError:
    TYPE_CHECKING = False
if TYPE_CHECKING: from typing import Any, Generator  # noqa: F401 (used in type comments)

_REOPEN_ATTEMPTS = const(3)      # bearer reopens tried by one connect
_REOPEN_BACKOFF_MS = const(1000)  # wait before the 2nd attempt; doubles after each
_REOPEN_REGISTER_MS = const(10000)  # bring-up after a reboot: registration wait


class ModemBackend:
    """A cellular modem's life, the same for every dialect: brought up once by
    ``start()``, its packet-data bearer (``net_open``) lost with the network and
    reopened by the next connect, as a phone does; reset and rebooted by
    link/modem.py. A dialect supplies ``configure_steps`` and ``bearer_open_steps``
    (at/steps.py generators; raise a BringUpError), ``bearer_close``,
    ``RESET_COMMAND``, and counts its boot URC in ``reboots`` (``on_reboot``).

    Reopen: registration check and ``bearer_open()`` (after a reboot the whole
    ``start()``), at most ``reopen_attempts`` times with ``reopen_backoff_ms`` doubling
    between attempts, within the connect's limit. Each attempt is a note in the socket's
    TCP log (BEARER_FAILED, BEARER_UP); if none succeeds the connect raises
    EHOSTUNREACH and the next connect tries again.

    A dialect is ``class X(ModemBackend, LinkBackend)``, this class first: MicroPython
    looks methods up depth first, so ``connect_prepare`` here must come before
    backend.Backend's default (tests/test_firmware_mro.py). ``all_lost`` (every
    connection reset) is LinkBackend's."""

    if TYPE_CHECKING:
        def all_lost(self): ...

    RESET_COMMAND = b"AT+CFUN=1,1"
    # what the diagnostics ask (diag.py): the SIM's ICCID (command, reply prefix or None
    # for a bare number), and the bearer's state and address where the dialect has a
    # query for them (else the driver's own view, ``net_open``)
    ICCID = (b"AT+CCID", b"+CCID:")
    BEARER_QUERY = None  # type: tuple | None  # (command, prefix, "open" field value)
    IP_QUERY = None  # type: tuple | None  # (command, prefix)

    def init_modem(self, at, pin=None):
        self.at = at
        self.pin = pin
        self.rssi_dbm = None  # type: int | None  # AT+CSQ at the last start()
        self.net_open = False  # pragma: no mutate -- None: only its truth is read
        self.reboots = 0
        self.reopen_attempts = _REOPEN_ATTEMPTS
        self.reopen_backoff_ms = _REOPEN_BACKOFF_MS
        self.bearer_reopens = 0   # how often a connect reopened the bearer
        self._started_at_reboot = -1  # self.reboots when start() last ran; -1: never
        self._reopen = None  # type: _Reopen | None  # the non-blocking connects' reopen

    # -- bring-up: the 27.007 steps, then the dialect's --------------------------------------
    def start(self, register_timeout_ms=60000):
        # type: (int) -> None
        """Bring the modem online: AT sync, echo off, numeric errors, SIM (``self.pin``
        if it asks), signal, registration, then the dialect's ``configure_steps()`` and
        ``bearer_open_steps()``. Raises a BringUpError subclass that names the failing
        step. Blocks for as long as the modem takes (registration, bearer: minutes)."""
        run(self.at, self.start_steps(register_timeout_ms))

    async def start_async(self, register_timeout_ms=60000):
        """``start()`` as a coroutine: the same steps, each wait an ``await``, so the
        other asyncio tasks run during a bring-up of seconds or minutes. No other task
        may send commands on this modem until it returns."""
        from ..at.aio import run_async  # lazy: a blocking program never loads asyncio
        await run_async(self.at, self.start_steps(register_timeout_ms))

    def start_steps(self, register_timeout_ms=60000):
        yield from sync_steps()
        yield command(b"ATE0")
        yield command(b"AT+CMEE=1")
        yield from check_sim_steps(self.pin)
        self.rssi_dbm = yield from signal_dbm_steps()
        yield from wait_registered_steps(register_timeout_ms)
        try:
            yield from self.configure_steps()
        except (CommandError, CommandTimeout) as e:  # a setting refused: name the step
            raise SettingRefused("modem refused a setting: %s" % e)
        self.started()  # the boot URCs are behind us: a later one means settings lost
        yield from self.bearer_open_steps()

    # -- what a dialect provides (as at/steps.py generators) ------------------------------
    def configure_steps(self):
        # type: () -> Generator[Any, Any, None]
        """The dialect's settings after registration (PDP context, socket modes)."""
        yield from ()

    def bearer_open_steps(self):
        # type: () -> Generator[Any, Any, None]
        """Open the packet-data bearer (``net_open``); raise a BringUpError."""
        yield from ()
        raise PDPError("this modem cannot open a bearer")

    def bearer_open(self):
        # type: () -> None
        run(self.at, self.bearer_open_steps())

    def bearer_close(self):
        """Deactivate the bearer (best effort: one that is gone already is the state
        wanted)."""

    def started(self):
        """For ``start()`` once the modem's settings are made: a reboot (its boot URC
        counted in ``reboots``) later means they are lost."""
        self._started_at_reboot = self.reboots

    def network_lost_urc(self, line):
        """URC handler: the network dropped the bearer; every link is reset."""
        self.net_open = False  # pragma: no mutate -- None: only its truth is read
        self.all_lost()

    def reboot_urc(self, line):
        """URC handler: the modem's boot URC; its settings and every link are gone."""
        self.on_reboot()
        self.all_lost()

    def on_reboot(self):
        self.reboots += 1
        self.net_open = False  # pragma: no mutate -- None: only its truth is read

    # -- the life of the bearer -----------------------------------------------------------
    def is_up(self):
        """Whether the bearer is open, after processing the URCs that arrived."""
        self.at.poll(0)
        return bool(self.net_open)

    def bearer_down(self):
        if self.net_open:
            try:
                self.bearer_close()
            except ModemError:
                pass  # bearer already gone: the state we want
        self.net_open = False  # pragma: no mutate -- None: only its truth is read

    def reset(self, wait_ms=30000):
        """Reboot the modem (``RESET_COMMAND``) and wait until it is back (its boot URC)."""
        run(self.at, self.reset_steps(wait_ms))

    async def reset_async(self, wait_ms=30000):
        """``reset()`` as a coroutine (the asyncio supervisor's REINIT)."""
        from ..at.aio import run_async  # lazy: a blocking program never loads asyncio
        await run_async(self.at, self.reset_steps(wait_ms))

    def reset_steps(self, wait_ms=30000):
        # type: (int) -> Generator[Any, Any, None]
        before = self.reboots
        self.net_open = False  # pragma: no mutate -- None: only its truth is read
        yield command(self.RESET_COMMAND, timeout_ms=5000)
        if not (yield wait_for(lambda: self.reboots != before, wait_ms)):
            raise ModemNotResponding("modem did not boot within %d ms after %s"
                                     % (wait_ms, self.RESET_COMMAND.decode()))

    def connect_prepare(self, sock, limit_ms):
        """(backend.Backend) A non-blocking connect on a dropped bearer: its reopen
        (``ensure_bearer_steps``), which the socket advances; None when the bearer is up
        or the modem was never brought up. Connects that come while a reopen runs join
        it (one AT+NETOPEN for all; its notes go to the first socket's TCP log)."""
        self.at.poll(0)  # a network-loss or boot URC still unread changes the answer
        if self.net_open or self._started_at_reboot < 0:
            return None
        reopen = self._reopen
        if reopen is None or reopen.over():
            reopen = self._reopen = _Reopen(Stepper(self.at,
                                                    self.ensure_bearer_steps(sock, limit_ms)))
        return _Waiter(reopen)

    def ensure_bearer(self, sock, limit_ms):
        """Before a connect: reopen the bearer if the network dropped it. Logs each
        attempt on ``sock.tcp``; raises OSError(EHOSTUNREACH) when all failed."""
        run(self.at, self.ensure_bearer_steps(sock, limit_ms))

    def ensure_bearer_steps(self, sock, limit_ms):
        # type: (Any, int | None) -> Generator[Any, Any, None]
        yield poll(0)  # a network-loss or boot URC still unread changes the answer
        if self.net_open or self._started_at_reboot < 0:  # up, or never brought up
            return
        t0 = time.ticks_ms()
        wait = self.reopen_backoff_ms
        why = None
        tried = 0
        for attempt in range(self.reopen_attempts):
            if attempt:
                if limit_ms is not None and time.ticks_diff(time.ticks_ms(), t0) + wait > limit_ms:
                    break
                yield poll(wait)  # backoff; URCs (registration back) still processed
                wait *= 2
            tried += 1
            left = _REOPEN_REGISTER_MS
            if limit_ms is not None:
                left = max(min(left, limit_ms - time.ticks_diff(time.ticks_ms(), t0)), 0)
            try:
                yield from self._reopen_steps(left)
            except ModemError as e:  # not registered, PDP failed, the modem silent ...
                why = e
                sock.tcp.note(tcp.BEARER_FAILED)
                continue
            self.bearer_reopens += 1
            sock.tcp.note(tcp.BEARER_UP)
            return
        raise OSError(errno.EHOSTUNREACH, "network not open and reopening it failed "
                      "(%d attempts): %s" % (tried, why))

    def _reopen_steps(self, register_ms):
        if self.reboots != self._started_at_reboot:  # settings lost: the whole bring-up
            yield from self.start_steps(register_timeout_ms=register_ms)
            return
        stat = yield from registration_steps()
        if stat not in (REG_HOME, REG_ROAMING):
            raise NotRegistered(stat)
        yield from self.bearer_open_steps()


class _Reopen:
    """One bearer reopen (a Stepper) shared by the non-blocking connects waiting for it:
    advanced by whichever asks, its outcome kept for all of them."""

    def __init__(self, stepper):
        self.stepper = stepper
        self.waiters = 0
        self.done = False  # pragma: no mutate -- None: only its truth is read
        self.error = None  # type: Exception | None

    def over(self):
        return self.done or self.error is not None

    def advance(self):
        if self.error is not None:
            raise self.error
        if not self.done:
            try:
                self.done = self.stepper.advance()
            except Exception as e:  # every waiter gets the same failure
                self.error = e
                raise
        return self.done


class _Waiter:
    """One connect's share of a _Reopen: what ``connect_prepare`` hands the socket."""

    def __init__(self, reopen):
        self.reopen = reopen
        reopen.waiters += 1
        self.left = False  # pragma: no mutate -- None: only its truth is read

    def advance(self):
        return self.reopen.advance()

    def cancel(self):
        """This connect gives up; the reopen goes on while another connect waits."""
        reopen = self.reopen
        if self.left:
            return
        self.left = True
        reopen.waiters -= 1
        if reopen.waiters == 0 and not reopen.over():
            reopen.stepper.cancel()
            reopen.error = OSError(errno.EHOSTUNREACH, "bearer reopen given up")
