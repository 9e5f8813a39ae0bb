"""What ``synack diag``, ``synack at`` and ``synack monitor`` share: the board session
with ``synack.diag`` imported (and the board put back into its application afterwards),
their common options, host secrets to mask, and the colour style."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Iterator

from . import secrets
from .board_commands import _port_args, device_errors
from .command import CommandError, int_range
from .transport import DeviceError, RawRepl, open_link

SECRET_ENV = ("SYNACK_WIFI_KEY", "SYNACK_APN_PASSWORD", "SYNACK_TOKEN")
PRELUDE = ("import sys\nif '/lib' not in sys.path: sys.path.append('/lib')\n"
           "from synack import diag as _synack_diag\n")


def register_env_secrets() -> None:
    secrets.register(*(os.environ.get(name) for name in SECRET_ENV))


def board_args(p: argparse.ArgumentParser) -> None:
    """Options every diagnostic command shares."""
    _port_args(p)
    p.add_argument("--stay", action="store_true",
                   help="stay in the raw REPL afterwards (default: soft-reset the board "
                   "back into main.py)")
    p.add_argument("--uart", type=int_range(0, 9, "UART number"), default=1,
                   help="the modem's UART on the board (default 1)")
    p.add_argument("--modem-baud", type=int_range(300, 4_000_000, "modem baud rate"),
                   default=115200, help="the modem UART's baud rate (default 115200)")


@contextlib.contextmanager
def board_session(args: argparse.Namespace) -> Iterator[RawRepl]:
    """The raw REPL with the synack.diag module imported; afterwards the board goes back
    to its application (soft reset, main.py runs) unless ``--stay``."""
    if not args.port:
        raise CommandError("no port: give -p PORT or set SYNACK_PORT")
    register_env_secrets()
    with device_errors():
        link = open_link(args.port, args.baud, reset=args.reset)
        try:
            repl = RawRepl(link)
            repl.enter()
            try:
                repl.exec(PRELUDE, timeout=30)
            except DeviceError as e:
                raise CommandError(f"the synack firmware is not on the board ({e.exc_type}: "
                                   f"{e.message}); run 'synack deploy' first") from None
            busy = True
            try:
                yield repl
                busy = False
            finally:
                restore(repl, args.stay, busy)
        finally:
            link.close()


def restore(repl: RawRepl, stay: bool, busy: bool = False) -> None:
    """Leave the board as the user wants it: back in its application (friendly REPL,
    Ctrl-D: soft reboot, boot.py and main.py run) or at the raw prompt (``stay``)."""
    with contextlib.suppress(Exception):
        if busy:   # interrupted while board code ran: stop it, back to the raw prompt
            repl.link.write(b"\x03")
            time.sleep(0.2)
            repl.buf = b""
            repl.link.read_available(0.1)
        if stay:
            return
        repl.exit()
        repl.link.write(b"\x04")
        time.sleep(0.05)


def run_json(repl: RawRepl, code: str, timeout: float) -> dict:
    """Run board code that prints one JSON object last; return it."""
    out = repl.exec(PRELUDE + code, timeout=timeout).decode("utf-8", "replace")
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    raise CommandError(f"the board gave no report: {secrets.mask(out.strip()[-200:])!r}")


# -- output ---------------------------------------------------------------------------
class Style:
    def __init__(self, stream):
        self.on = (hasattr(stream, "isatty") and stream.isatty()
                   and not os.environ.get("NO_COLOR"))

    def __call__(self, text: str, colour: str) -> str:
        codes = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2"}
        return f"\x1b[{codes[colour]}m{text}\x1b[0m" if self.on else text
