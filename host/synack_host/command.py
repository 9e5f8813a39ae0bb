"""What every ``synack`` command handler shares: the error it raises for the user and
the state it is handed."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, TextIO


class CommandError(Exception):
    """A failure to report to the user as ``synack: <message>``."""


@dataclass
class State:
    """What every handler gets besides its arguments: where to write, and the board
    session ``synack connect`` opened so that chained commands share one raw REPL."""
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    repl: Any = None   # a transport.RawRepl while a chain runs
