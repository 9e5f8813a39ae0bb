"""What every 3GPP TS 27.007 modem shares: bring-up errors, SIM, signal, registration.

Dialect modules (sim7600.py, bg96.py, sara_r4.py ...) call these helpers with their
AT channel and add their own socket commands. Each helper has a generator form
(``*_steps``, at/steps.py) that the bring-up is written in, so that the same steps run
blocking (``ModemBackend.start``) or inside asyncio (``ModemBackend.start_async``).
"""

import errno
import time

from micropython import const

from .. import tcp
from ..at import quote
from ..at.errors import CommandError, CommandTimeout, ModemError
from ..at.parser import fields, uint
from ..at.steps import Stepper, command, pause, poll, run, wait_for

try:
    from typing import TYPE_CHECKING  # absent on MicroPython: only type checkers see it
except ImportError:
    TYPE_CHECKING = False
if TYPE_CHECKING: from typing import Any, Generator  # noqa: F401 (used in type comments)

# +CREG/+CGREG/+CEREG <stat> values.
REG_NOT_SEARCHING = const(0)
REG_HOME = const(1)
REG_SEARCHING = const(2)
REG_DENIED = const(3)
REG_UNKNOWN = const(4)
REG_ROAMING = const(5)
REG_NAMES = ("not registered", "registered (home)", "searching", "registration denied",
             "unknown", "registered (roaming)")

_CME_SIM_NOT_INSERTED = const(10)
_CME_SIM_PIN = const(11)
_CME_SIM_BUSY = const(14)


class BringUpError(ModemError):
    """The modem could not be brought online; the subclass says which step failed.
    Met under a socket call (the bearer reopened on connect), it is the socket's
    OSError with ``os_errno``: the network cannot be reached."""

    os_errno = errno.EHOSTUNREACH


class ModemNotResponding(BringUpError):
    pass


class UnknownModem(BringUpError):
    """The modem answers, but no synack driver speaks its dialect (modems.detect)."""


class NoSIM(BringUpError):
    pass


class SIMLocked(BringUpError):
    pass


class NotRegistered(BringUpError):
    def __init__(self, stat, msg=None):
        self.stat = stat
        super().__init__(msg or "not registered on the network: +CREG/+CEREG stat %d (%s)"
                         % (stat, REG_NAMES[stat] if 0 <= stat < len(REG_NAMES) else "?"))


class RegistrationDenied(NotRegistered):
    pass


class PDPError(BringUpError):
    pass


class SettingRefused(BringUpError):
    """A dialect's setting after registration (``configure_steps``: PDP context, socket
    modes) was answered with an error or not at all."""


class MalformedReply(BringUpError):
    """The modem answered, but not in the documented form (line noise, a firmware that
    differs from the manual)."""


def sync(at, attempts=10, timeout_ms=500):
    """Send ``AT`` until the modem answers (it may still be booting or autobauding)."""
    run(at, sync_steps(attempts, timeout_ms))


def sync_steps(attempts=10, timeout_ms=500):
    for _ in range(attempts):
        try:
            yield command(b"AT", timeout_ms=timeout_ms)
            return
        except CommandTimeout:
            pass
    raise ModemNotResponding("modem does not answer AT (%d attempts of %d ms): check "
                             "power, wiring (TX/RX crossed?) and baud rate"
                             % (attempts, timeout_ms))


def check_sim(at, pin=None, timeout_ms=10000):
    """Make sure the SIM is present and unlocked; enter ``pin`` if it asks for one."""
    run(at, check_sim_steps(pin, timeout_ms))


def check_sim_steps(pin=None, timeout_ms=10000):
    deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
    while True:
        try:
            status = fields((yield command(b"AT+CPIN?", b"+CPIN:")).lines[0], 6)[0]
        except CommandError as e:
            if e.code == _CME_SIM_NOT_INSERTED:
                raise NoSIM("no SIM card: " + str(e))
            if e.code == _CME_SIM_BUSY and time.ticks_diff(deadline, time.ticks_ms()) > 0:
                yield pause(500, time)
                continue
            raise NoSIM("SIM not usable: " + str(e))
        except IndexError:
            raise NoSIM("AT+CPIN? gave no +CPIN line")
        if status == b"READY":
            return
        if status == b"SIM PIN" and pin:
            yield command(b'AT+CPIN="' + quote.param(pin, "PIN") + b'"', timeout_ms=5000)
            pin = None  # pragma: no mutate -- "" too; never retry: 3 wrong ones lock the SIM
            continue
        raise SIMLocked("SIM is locked: +CPIN: %s%s" % (
            status.decode(), "" if status != b"SIM PIN" else " (give the PIN in the config)"))


def signal_dbm(at):
    """Signal strength from AT+CSQ in dBm (-113 .. -51; TD-SCDMA -116 .. -25), or None
    if unknown. A reply that is not ``+CSQ: <rssi>,<ber>`` raises MalformedReply."""
    return run(at, signal_dbm_steps())


def signal_dbm_steps():
    lines = (yield command(b"AT+CSQ", b"+CSQ:")).lines
    rssi = uint(fields(lines[0], 5)[0]) if lines else -1
    if rssi == 99:
        return None
    if 0 <= rssi <= 31:
        return -113 + 2 * rssi
    if 100 <= rssi <= 191:  # SIM7600 in TD-SCDMA: 100 = -116 dBm .. 191 = -25 dBm
        return rssi - 216
    raise MalformedReply("AT+CSQ: malformed reply %r" % (lines[:1],))


def registration(at):
    """The best registration state of circuit (+CREG) and EPS (+CEREG) domains. A
    domain whose reply is missing or malformed counts as REG_UNKNOWN (so a garbled
    line never raises; wait_registered polls again and names the state on timeout)."""
    return run(at, registration_steps())


def registration_steps():
    best = REG_NOT_SEARCHING
    for cmd, prefix in ((b"AT+CEREG?", b"+CEREG:"), (b"AT+CREG?", b"+CREG:")):
        try:
            lines = (yield command(cmd, prefix)).lines
        except CommandError:
            continue
        values = fields(lines[0], len(prefix)) if lines else ()
        stat = uint(values[1]) if len(values) > 1 else -1
        if not 0 <= stat <= REG_ROAMING:
            stat = REG_UNKNOWN
        if stat in (REG_HOME, REG_ROAMING):
            return stat
        if stat == REG_DENIED or best == REG_NOT_SEARCHING:
            best = stat
    return best


def wait_registered(at, timeout_ms=60000, poll_ms=1000):
    """Poll registration until home or roaming; raise on denial or timeout."""
    return run(at, wait_registered_steps(timeout_ms, poll_ms))


def wait_registered_steps(timeout_ms=60000, poll_ms=1000):
    deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
    while True:
        stat = yield from registration_steps()
        if stat in (REG_HOME, REG_ROAMING):
            return stat
        if stat == REG_DENIED:
            raise RegistrationDenied(stat, "network registration denied (+CEREG stat 3): "
                                     "SIM not provisioned for this network, or barred")
        if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
            raise NotRegistered(stat)
        yield poll(poll_ms)


def lookup(at, host, port, command, prefix, pick, timeout_ms):
    """``getaddrinfo`` through a modem's one-shot DNS command: ``command`` + ``"host"``
    answered by a ``prefix`` line whose fields ``pick`` turns into the address (None if
    they do not hold one). An IPv4 literal is returned as it is. OSError(EINVAL) for a
    host name that is not one, EHOSTUNREACH for a failed lookup or a malformed reply,
    ETIMEDOUT when the modem did not answer."""
    name = quote.host(host)
    if quote.is_ipv4(name):
        return [(2, 1, 6, "", (name.decode(), port))]
    try:
        lines = at.command(command + b'"' + name + b'"', prefix, timeout_ms=timeout_ms).lines
    except CommandError as e:
        raise OSError(errno.EHOSTUNREACH, "DNS lookup of %s failed: %s" % (host, e))
    except CommandTimeout as e:
        raise OSError(errno.ETIMEDOUT, "DNS lookup of %s: %s" % (host, e))
    ip = pick(fields(lines[0], len(prefix))) if lines else None
    if ip is None or not quote.is_ipv4(ip):
        raise OSError(errno.EHOSTUNREACH, "DNS lookup of %s failed: malformed reply %r"
                      % (host, lines[:1]))
    return [(2, 1, 6, "", (ip.decode(), port))]  # AF_INET, STREAM, TCP


def parse_ints(line, prefix_len):
    """``+CIPOPEN: 0,1`` -> [0, 1] (prefix_len = len(b"+CIPOPEN:")); None when a field
    is not an integer (a garbled line: callers treat it as absent, never raise)."""
    out = []
    for f in fields(line, prefix_len):
        neg = f[:1] == b"-"  # +CIPSEND: <link>,<req>,-1 reports a failed send
        n = uint(f[1:] if neg else f)
        if n < 0:
            return None
        out.append(-n if neg else n)
    return out


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
        (``ensure_bearer_steps``) as a Stepper the socket advances; None when the bearer
        is up or the modem was never brought up."""
        self.at.poll(0)  # a network-loss or boot URC still unread changes the answer
        if self.net_open or self._started_at_reboot < 0:
            return None
        return Stepper(self.at, self.ensure_bearer_steps(sock, limit_ms))

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
