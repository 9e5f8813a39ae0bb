"""What every ``synack`` command handler shares: the error it raises for the user, the
state it is handed, argument types that check their range, and a reader for local input
files that refuses anything but a regular file (a FIFO would block ``open()`` forever),
and the parser built from a table of commands."""

from __future__ import annotations

import argparse
import errno
import math
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import __version__


class CommandError(Exception):
    """A failure to report to the user as ``synack: <message>``."""


@dataclass
class State:
    """What every handler gets besides its arguments: where to write, and the board
    session ``synack connect`` opened so that chained commands share one raw REPL."""
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    repl: Any = None   # a transport.RawRepl while a chain runs


# One command: its handler, the function that adds its arguments, its help line. Tables of
# these (board_commands, fs_commands, sim_commands ...) are merged into cli.COMMANDS.
Handler = Callable[[State, argparse.Namespace], None]
CommandTable = dict[str, tuple[Handler, Callable[[argparse.ArgumentParser], None], str]]


# -- the parser of a command table ----------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, ``synack: <command>: <message>``
    (subparsers are made of the same class)."""

    def error(self, message: str):
        """One line: the problem, then the usage of the (sub)command that has it; at the
        top level, the commands there are."""
        message = " ".join(message.split())
        where = " ".join(self.prog.split()[1:])
        usage = " ".join(self.format_usage().split())
        if where:
            line = f"synack: {where}: {message}; {usage}"
        else:
            if "required: COMMAND" in message:
                message = "no command given"
            elif "invalid choice: " in message:    # the list of choices follows anyway
                message = "unknown command " + message.split("invalid choice: ")[1] \
                    .split(" (choose from")[0]
            line = f"synack: {message}; the commands are {', '.join(_commands(self))} " \
                   f"(see 'synack --help' or 'synack COMMAND --help')"
        self.exit(2, line + "\n")

    def parse_args(self, args=None, namespace=None):   # type: ignore[override]
        """As argparse's, but leftover arguments are blamed on the subcommand that was
        given them: ``synack: exec: unrecognized arguments: --bogus``; an unknown option
        before any command is named as such (argparse would only say a command is
        missing)."""
        argv = sys.argv[1:] if args is None else list(args)
        if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
            self.error(f"unrecognized option {argv[0]}")
        parsed, extras = self.parse_known_args(argv, namespace)
        if extras:
            words = [getattr(parsed, "command", None)]
            words += [getattr(parsed, f"sub{i}", None) for i in range(3)]
            sub = self
            for word in filter(None, words):
                sub = _subparser(sub, word) or sub
            sub.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def _subparser(parser: argparse.ArgumentParser, word: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(word)
    return None


def parser_for(commands: CommandTable) -> argparse.ArgumentParser:
    """The ``synack`` parser of a command table: the words of each name become nested
    subcommands, and each (sub)command's ``handler`` default is its handler."""
    parser = Parser(prog="synack", description="synack host tools")
    parser.add_argument("--version", action="version", version=f"synack {__version__}")
    groups: dict[str, argparse._SubParsersAction] = {}
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (handler, add_args, help_text) in commands.items():
        words = name.split()
        sub = top
        for depth, word in enumerate(words[:-1]):
            key = " ".join(words[:depth + 1])
            if key not in groups:
                grp = sub.add_parser(word, help=f"{key} commands")
                groups[key] = grp.add_subparsers(dest=f"sub{depth}", metavar="COMMAND",
                                                 required=True)
            sub = groups[key]
        p = sub.add_parser(words[-1], help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(handler=handler)
    return parser


# -- argument types: argparse reports their ArgumentTypeError as a usage error ---------
def int_range(lo: int, hi: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer in lo..hi (``what`` names it in the error)."""
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what} must be an integer {lo}..{hi}, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be {lo}..{hi}, got {value}")
        return value
    parse.__name__ = what
    return parse


def float_range(lo: float, hi: float, what: str, lo_open: bool = True
                ) -> Callable[[str], float]:
    """An argparse type: a finite number in (lo, hi] (``lo_open``) or [lo, hi]."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value > hi or value < lo or (lo_open and value == lo):
            low = f"more than {lo:g}" if lo_open else f"at least {lo:g}"
            raise argparse.ArgumentTypeError(
                f"{what} must be {low} and at most {hi:g}, got {text!r}")
        return value
    parse.__name__ = what
    return parse


MAX_BAUD = 12_000_000      # the fastest USB-serial bridges (FT232H); termios takes an int
baud_rate = int_range(300, MAX_BAUD, "baud rate")


# -- local input files ----------------------------------------------------------------
def read_regular_file(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The bytes of a regular file. Anything else (a FIFO, a device, a directory) is an
    OSError with a readable ``strerror``, raised before a read could block; so is a file
    larger than ``limit`` bytes."""
    # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"not a regular file (a {file_kind(mode)})", str(path))
        size = os.fstat(fd).st_size
        if limit is not None and size > limit:
            raise OSError(errno.EFBIG, f"too large ({size} bytes; at most {limit})", str(path))
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            if limit is not None and sum(map(len, chunks)) > limit:
                raise OSError(errno.EFBIG, f"too large (more than {limit} bytes)", str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symlink")):
        if test(mode):
            return name
    return "special file"


def describe_os_error(e: OSError) -> str:
    """An OSError as a short lower-case phrase, without errno numbers or the path."""
    text = e.strerror or str(e)
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def read_input(path: Path, what: str = "", limit: int | None = None) -> bytes:
    """read_regular_file as CommandError: ``cannot read PATH: <why>``."""
    try:
        return read_regular_file(path, limit)
    except OSError as e:
        raise CommandError(f"cannot read {what}{path}: {describe_os_error(e)}") from None


def read_text_input(path: Path, what: str = "", limit: int | None = None) -> str:
    """A regular file's UTF-8 text (what MicroPython and JSON read), or CommandError."""
    data = read_input(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise CommandError(f"{what}{path} is not UTF-8 text (byte 0x{data[e.start]:02x} "
                           f"on line {line})") from None
