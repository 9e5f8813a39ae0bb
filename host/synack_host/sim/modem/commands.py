"""AT command syntax (V.250): how a command line splits into name, form and arguments,
and the table entries dialects fill (``Command``). No state: frontend.py runs them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# fn(modem, args): the modem is the dialect object (frontend.Modem and the layers above)
Handler = Callable[[Any, list], None]


class ArgError(ValueError):
    """Bad command parameters: answered as CME error 50 (per the CMEE mode)."""


@dataclass(frozen=True)
class Command:
    """The four forms of one AT command; a missing form is answered with ERROR."""
    set: Handler | None = None    # AT+X=<args>
    read: Handler | None = None   # AT+X?
    test: Handler | None = None   # AT+X=?
    run: Handler | None = None    # AT+X  (basic commands: ATE1 -> run, args ["1"])


def parse_args(text: str) -> list[str]:
    """``0,"TCP","a,b",80`` -> ['0', 'TCP', 'a,b', '80']; an open quote is an ArgError."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if quoted:
        raise ArgError("unterminated string")
    out.append("".join(cur).strip())
    return out


def int_arg(args: list[str], i: int, lo: int, hi: int) -> int:
    """``args[i]`` as an int in lo..hi, else ArgError."""
    try:
        value = int(args[i])
    except (IndexError, ValueError):
        raise ArgError(f"parameter {i + 1} missing or not a number") from None
    if not lo <= value <= hi:
        raise ArgError(f"parameter {i + 1} outside {lo}..{hi}")
    return value


def split_command(body: str) -> tuple[str, str, list[str]]:
    """The text after ``AT`` -> (NAME, form, args); form is set/read/test/run.

    ``+CIPOPEN=0,"TCP"`` -> ('+CIPOPEN', 'set', ['0', 'TCP']); ``E0`` -> ('E', 'run', ['0']).
    """
    if body[:1].isalpha():                       # basic syntax: one letter + number
        return body[0].upper(), "run", [body[1:]] if body[1:] else []
    for i, ch in enumerate(body):
        if ch in "=?":
            name, rest = body[:i].upper(), body[i:]
            if rest == "?":
                return name, "read", []
            if rest == "=?":
                return name, "test", []
            if rest.startswith("="):
                return name, "set", parse_args(rest[1:])
            raise ArgError("unexpected text after '?'")
    return body.upper(), "run", []


class CannedReply:
    """``PREFIX|RESPONSE[|COUNT]``: the next COUNT commands starting with PREFIX are not
    executed; RESPONSE is the final line (``SILENT``: no answer at all)."""

    def __init__(self, spec: str):
        parts = spec.split("|")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ValueError(f"bad --fault {spec!r}: expected PREFIX|RESPONSE[|COUNT]")
        self.prefix = parts[0].upper()
        self.response = parts[1]
        try:
            self.count = int(parts[2]) if len(parts) == 3 else 1
        except ValueError:
            raise ValueError(f"bad --fault {spec!r}: COUNT must be a number") from None


def escape(data: bytes) -> str:
    return repr(bytes(data))[2:-1]
