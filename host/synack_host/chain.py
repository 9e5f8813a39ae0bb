"""``synack connect PORT [COMMAND ARGS [+ COMMAND ARGS ...]]``: one connection, many
commands.

The port is opened and the raw REPL entered once; every chained board command then runs
in that session (no break-in or soft reset between them), e.g.::

    synack connect /dev/ttyUSB0 deploy + exec "import main" + repl

Without commands, ``connect`` opens the interactive REPL.
"""

from __future__ import annotations

import argparse

from .board_commands import BOARD_COMMANDS, device_errors
from .command import CommandError, State, baud_rate, parser_for
from .fs_commands import FS_COMMANDS
from .terminal import REPL_COMMANDS
from .transport import RawRepl, open_link

SEPARATOR = "+"

# commands that work on an open board, so ``synack connect PORT`` can chain them
BOARD_SESSION_COMMANDS = {**BOARD_COMMANDS, **FS_COMMANDS, **REPL_COMMANDS}


def _connect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("port", help="serial port or pyserial URL of the board")
    p.add_argument("--baud", type=baud_rate, default=115200,
                   help="baud rate (default 115200)")
    p.add_argument("--reset", action="store_true",
                   help="hard-reset the board through RTS/EN when opening the port")
    p.add_argument("chain", nargs=argparse.REMAINDER, metavar="COMMAND ...",
                   help="board commands separated by '+' (default: repl)")


def split_chain(words: list[str]) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    for word in words:
        if word == SEPARATOR:
            groups.append([])
        else:
            groups[-1].append(word)
    if groups == [[]]:
        return [["repl"]]
    if any(not g for g in groups):
        raise CommandError(f"empty command in the chain: {' '.join(words)!r} "
                           f"('{SEPARATOR}' separates commands)")
    return groups


def cmd_connect(state: State, args: argparse.Namespace) -> None:
    groups = split_chain(args.chain)
    for group in groups:
        if group[0] not in BOARD_SESSION_COMMANDS:
            raise CommandError(f"'{group[0]}' cannot be chained after connect; board "
                               f"commands are: {', '.join(sorted(BOARD_SESSION_COMMANDS))}")
    # only board commands reach the parser, so one of their table parses them as the
    # whole synack parser would (same prog, usage lines and errors)
    parser = parser_for(BOARD_SESSION_COMMANDS)
    parsed = [parser.parse_args(group) for group in groups]   # all usage errors up front
    with device_errors():
        link = open_link(args.port, args.baud, reset=args.reset)
        try:
            # each command enters the raw REPL when it needs it (session()), so a chain
            # that starts with repl reaches the friendly prompt without a break-in
            repl = state.repl = RawRepl(link)
            for sub in parsed:
                sub.handler(state, sub)
            if repl.in_raw:
                repl.exit()
        finally:
            state.repl = None
            link.close()


CHAIN_COMMANDS = {
    "connect": (cmd_connect, _connect_args,
                "open a board once and run board commands on it, separated by '+'"),
}
