"""What every 3GPP TS 27.007 modem shares: bring-up errors, SIM, signal, registration.

Dialect modules (sim7600.py, later bg96.py, sara_r4.py ...) call these helpers with their
AT channel and add their own socket commands.
"""

import errno
import time

from micropython import const

from ..at import quote
from ..at.errors import CommandError, CommandTimeout, ModemError
from ..at.parser import fields, uint

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


class MalformedReply(BringUpError):
    """The modem answered, but not in the documented form (line noise, a firmware that
    differs from the manual)."""


def sync(at, attempts=10, timeout_ms=500):
    """Send ``AT`` until the modem answers (it may still be booting or autobauding)."""
    for _ in range(attempts):
        try:
            at.command(b"AT", timeout_ms=timeout_ms)
            return
        except CommandTimeout:
            pass
    raise ModemNotResponding("modem does not answer AT (%d attempts of %d ms): check "
                             "power, wiring (TX/RX crossed?) and baud rate"
                             % (attempts, timeout_ms))


def check_sim(at, pin=None, timeout_ms=10000):
    """Make sure the SIM is present and unlocked; enter ``pin`` if it asks for one."""
    deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
    while True:
        try:
            status = fields(at.command(b"AT+CPIN?", b"+CPIN:").lines[0], 6)[0]
        except CommandError as e:
            if e.code == _CME_SIM_NOT_INSERTED:
                raise NoSIM("no SIM card: " + str(e))
            if e.code == _CME_SIM_BUSY and time.ticks_diff(deadline, time.ticks_ms()) > 0:
                time.sleep_ms(500)
                continue
            raise NoSIM("SIM not usable: " + str(e))
        except IndexError:
            raise NoSIM("AT+CPIN? gave no +CPIN line")
        if status == b"READY":
            return
        if status == b"SIM PIN" and pin:
            at.command(b'AT+CPIN="' + quote.param(pin, "PIN") + b'"', timeout_ms=5000)
            pin = None  # pragma: no mutate -- "" too; never retry: 3 wrong ones lock the SIM
            continue
        raise SIMLocked("SIM is locked: +CPIN: %s%s" % (
            status.decode(), "" if status != b"SIM PIN" else " (give the PIN in the config)"))


def signal_dbm(at):
    """Signal strength from AT+CSQ in dBm (-113 .. -51; TD-SCDMA -116 .. -25), or None
    if unknown. A reply that is not ``+CSQ: <rssi>,<ber>`` raises MalformedReply."""
    lines = at.command(b"AT+CSQ", b"+CSQ:").lines
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
    best = REG_NOT_SEARCHING
    for cmd, prefix in ((b"AT+CEREG?", b"+CEREG:"), (b"AT+CREG?", b"+CREG:")):
        try:
            lines = at.command(cmd, prefix).lines
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
    deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
    while True:
        stat = registration(at)
        if stat in (REG_HOME, REG_ROAMING):
            return stat
        if stat == REG_DENIED:
            raise RegistrationDenied(stat, "network registration denied (+CEREG stat 3): "
                                     "SIM not provisioned for this network, or barred")
        if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
            raise NotRegistered(stat)
        at.poll(poll_ms)


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
