"""What every 3GPP TS 27.007 modem shares: bring-up errors, SIM, signal, registration.

Dialect modules (sim7600.py, bg96.py, sara_r4.py ...) call these helpers with their
AT channel and add their own socket commands. Each helper has a generator form
(``*_steps``, at/steps.py) that the bring-up is written in, so that the same steps run
blocking (``ModemBackend.start``) or inside asyncio (``ModemBackend.start_async``):
cellular.py, the life every dialect shares on top of these.
"""

import errno
import time

from micropython import const

from ..at import quote
from ..at.errors import CommandError, CommandTimeout, ModemError
from ..at.parser import fields, uint
from ..at.steps import command, pause, poll, run

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
