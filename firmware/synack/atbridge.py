"""AT pass-through for ``synack at``: write one command to the modem's UART and print
what comes back, raw but scrubbed of secrets, until its final result. The firmware's AT
channel re-synchronises before its next command."""

import sys
import time

from . import blackbox as _bb
from .diag import _config, modem

_FINALS = (b"OK", b"ERROR", b"NO CARRIER", b"BUSY", b"NO ANSWER", b"NO DIALTONE")


def _uart(uart_id=1, baud=115200):
    return modem(uart_id, baud).at.uart


def at(cmd, timeout_ms=10000, uart_id=1, baud=115200):
    """Write ``cmd`` (str or bytes, without CR) to the modem and print everything it
    sends back, raw, until a final result line, a ``>`` prompt or ``timeout_ms``.
    The firmware's AT channel re-synchronises before its next command."""
    _config()                  # its secrets are scrubbed from what the modem echoes
    m = modem(uart_id, baud)
    u = m.at.uart
    m.at.needs_resync = True
    if isinstance(cmd, str):
        cmd = cmd.encode()
    _drain(u, 0)               # URCs that came meanwhile come out first
    u.write(cmd + b"\r")
    return _drain(u, timeout_ms, True)


def at_poll(ms=200, uart_id=1, baud=115200):
    """Print what the modem sends within ``ms`` (URCs)."""
    return _drain(_uart(uart_id, baud), ms)


def _drain(u, ms, until_final=False):
    """Print what the modem sends (whole lines at a time, so that a secret split over
    two reads is still scrubbed) until ``ms`` pass or, with ``until_final``, the final
    result came; returns the final result or None."""
    deadline = time.ticks_add(time.ticks_ms(), ms)
    buf = bytearray(256)
    tail = b""      # the last bytes seen: where the final result is looked for
    pending = b""   # received, not yet printed (an unfinished line)
    final = None
    while final is None:
        n = u.readinto(buf) if u.any() else 0
        if n:
            chunk = bytes(buf[:n])
            tail = (tail + chunk)[-300:]
            pending += chunk
            cut = max(pending.rfind(b"\n"), pending.rfind(b"\r"))
            if cut >= 0 or len(pending) > 512:
                cut = cut + 1 if cut >= 0 else len(pending)
                _out(pending[:cut])
                pending = pending[cut:]
            if until_final:
                final = _final(tail)
            continue
        if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
            break
        time.sleep_ms(5)
    _out(pending)
    return final


def _out(data):
    if data:
        sys.stdout.write(_bb.scrub(data.decode("utf-8", "replace")))


def _final(tail):
    """The final result code at the end of ``tail`` (bytes seen so far), or None."""
    if tail.endswith(b"> ") and (len(tail) == 2 or tail[-3:-2] in (b"\n", b"\r")):
        return ">"
    if not tail.endswith(b"\r\n"):
        return None
    last = tail[:-2].split(b"\r\n")[-1].strip()
    if last in _FINALS or last.startswith(b"+CME ERROR") or last.startswith(b"+CMS ERROR"):
        return last.decode()
    return None
