"""``synack repl``: the board's friendly REPL in this terminal, Ctrl-] to leave.

Keys go to the board unchanged (the terminal is put in raw mode, so Ctrl-C, Ctrl-D and
Ctrl-E reach MicroPython as they would from a serial terminal); what the board prints goes
to stdout unchanged. Ctrl-] (0x1d, as in telnet) ends the session; so does the end of
stdin when it is not a terminal, after the board has had a moment to answer.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator

from .board_commands import _port_args, device_errors
from .command import CommandError, State
from .transport import open_link
from .transport.link import Link

ESCAPE = 0x1D          # Ctrl-]
DRAIN_AFTER_EOF_S = 1.0


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    if not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run_terminal(link: Link, in_fd: int, out) -> None:
    """Shuttle bytes between ``in_fd`` and the board until Ctrl-] or end of input."""
    eof_at = None
    while True:
        if eof_at is None:
            ready, _, _ = select.select([in_fd], [], [], 0.01)
            if ready:
                data = os.read(in_fd, 512)
                if not data:
                    eof_at = time.monotonic()
                elif ESCAPE in data:
                    link.write(data[:data.index(ESCAPE)])
                    return
                else:
                    link.write(data)
        elif time.monotonic() - eof_at > DRAIN_AFTER_EOF_S:
            return
        else:
            time.sleep(0.01)
        got = link.read_available(0)
        if got:
            out.write(got)
            out.flush()


def _repl_args(p):
    _port_args(p)


def cmd_repl(state: State, args) -> None:
    out = getattr(state.out, "buffer", None)
    if out is None:
        raise CommandError("repl needs a byte stream for its output")
    try:
        in_fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):   # stdin closed
        raise CommandError("repl needs a standard input") from None
    chained = state.repl
    with device_errors():
        if chained is not None:
            if chained.in_raw:
                chained.exit()        # leave the raw REPL: the friendly prompt comes back
            link = chained.link
        elif not args.port:
            raise CommandError("no port: give -p PORT or set SYNACK_PORT")
        else:
            link = open_link(args.port, args.baud, reset=args.reset)
        state.err.write(f"Connected to {link.name}; Ctrl-] to leave.\r\n")
        state.err.flush()
        try:
            link.write(b"\r")         # show a prompt
            with _raw_terminal(in_fd):
                run_terminal(link, in_fd, out)
        finally:
            if chained is None:
                link.close()
        state.err.write("\r\n")


REPL_COMMANDS = {
    "repl": (cmd_repl, _repl_args, "interactive REPL on the board (Ctrl-] to leave)"),
}
