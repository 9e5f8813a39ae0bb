"""``synack monitor``: follow what the board prints, each line with the host's time;
the firmware's event lines (``synack-event: [seq, boot, ms, unix, kind, detail]``, what
``synack.blackbox.Blackbox(echo=True)`` prints) are decoded.

The port is only read: no break-in, the application keeps running. Any pyserial URL
works (``spy:///dev/ttyUSB0`` adds pyserial's hexdump of the traffic on stderr). Lines
are bounded (a longer one is cut into pieces), ``--duration`` bounds the run, Ctrl-C
leaves cleanly; ``--save FILE`` keeps the same lines, uncoloured. Registered secrets
($SYNACK_WIFI_KEY ...) are masked in both.
"""

from __future__ import annotations

import json
import time

from . import secrets
from .board_commands import _port_args, device_errors
from .command import CommandError, State, float_range
from .diag_session import Style, register_env_secrets
from .transport import open_link

EVENT_PREFIX = "synack-event: "
MAX_LINE = 4096


def add_arguments(p) -> None:
    _port_args(p)
    p.add_argument("--save", metavar="FILE", help="also write the lines to FILE")
    p.add_argument("--duration", type=float_range(0, 7 * 86400, "duration"), metavar="S",
                   help="stop after S seconds (default: until Ctrl-C)")


def stamp(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def decode_event(text: str) -> str | None:
    """``synack-event: [...]`` as ``EVENT #seq boot b +ms kind: detail``; None if the
    line is not a well-formed event."""
    if not text.startswith(EVENT_PREFIX):
        return None
    try:
        e = json.loads(text[len(EVENT_PREFIX):])
        seq, boot, ms, _, kind, detail = e
        return f"EVENT #{int(seq)} boot {int(boot)} +{int(ms) / 1000:.3f}s {kind}: {detail}"
    except (ValueError, TypeError):
        return None


class Lines:
    """Bytes in, complete lines out (bounded: a line longer than MAX_LINE is cut)."""

    def __init__(self):
        self.buf = b""

    def feed(self, data: bytes) -> list[str]:
        self.buf += data
        out = []
        while True:
            i = self.buf.find(b"\n")
            if i < 0:
                if len(self.buf) > MAX_LINE:
                    out.append(self.buf[:MAX_LINE])
                    self.buf = self.buf[MAX_LINE:]
                    continue
                break
            out.append(self.buf[:i])
            self.buf = self.buf[i + 1:]
        return [ln.rstrip(b"\r").decode("utf-8", "replace") for ln in out]

    def rest(self) -> list[str]:
        out, self.buf = self.buf, b""
        return [out.rstrip(b"\r").decode("utf-8", "replace")] if out.strip() else []


def cmd_monitor(state: State, args) -> None:
    if not args.port:
        raise CommandError("no port: give -p PORT or set SYNACK_PORT")
    register_env_secrets()
    save = None
    if args.save:
        try:
            save = open(args.save, "a", encoding="utf-8")
        except OSError as e:
            raise CommandError(f"cannot write {args.save}: {e.strerror or e}") from None
    style = Style(state.out)
    lines = Lines()
    count = events = 0
    end = None if args.duration is None else time.monotonic() + args.duration

    def emit(text: str) -> None:
        nonlocal count, events
        text = secrets.mask(text)
        event = decode_event(text)
        t = stamp(time.time())
        shown = event if event is not None else text
        count += 1
        events += event is not None
        state.out.write(f"{style(t, 'dim')} {style(shown, 'yellow') if event else shown}\n")
        state.out.flush()
        if save is not None:
            save.write(f"{t} {shown}\n")
            save.flush()

    try:
        with device_errors():
            link = open_link(args.port, args.baud, reset=args.reset)
            state.err.write(f"monitoring {link.name}; Ctrl-C leaves\n")
            state.err.flush()
            try:
                while end is None or time.monotonic() < end:
                    for text in lines.feed(link.read_available(0.05)):
                        emit(text)
                for text in lines.rest():
                    emit(text)
            except KeyboardInterrupt:
                for text in lines.rest():
                    emit(text)
            finally:
                link.close()
    finally:
        if save is not None:
            save.close()
    state.err.write(f"monitor: {count} lines, {events} events\n")
