"""The ``synack`` command: subcommands from one table, one error type at the boundary.

Each entry of COMMANDS is ``"word word": (handler, add_arguments, help)``; the words
become nested subcommands. A handler takes ``(state, args)`` and raises CommandError for
anything the user should read; main() prints ``synack: <message>`` on stderr and returns
1. To add a command, write its two functions and add one line to the table.

Every failure is one line on stderr starting ``synack: ``: usage errors
(``synack: exec: argument --baud: ...``, status 2), CommandError (status 1), Ctrl-C
(``synack: interrupted``, 130) and, as a backstop, any other exception
(``synack: internal error: ...``, status 2; SYNACK_DEBUG=1 shows its traceback).
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .board_commands import BOARD_COMMANDS
from .chain import CHAIN_COMMANDS
from .diag_commands import DIAG_COMMANDS
from .farm_commands import FARM_COMMANDS
from .flash_commands import FLASH_COMMANDS
from .fs_commands import FS_COMMANDS
from .hil_commands import HIL_COMMANDS
from .sim_commands import SIM_COMMANDS
from .terminal import REPL_COMMANDS
from .command import CommandError, State

DEBUG_ENV = "SYNACK_DEBUG"


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



# commands that work on an open board, so ``synack connect PORT`` can chain them
BOARD_SESSION_COMMANDS = {**BOARD_COMMANDS, **FS_COMMANDS, **REPL_COMMANDS}
COMMANDS = {**CHAIN_COMMANDS, **BOARD_SESSION_COMMANDS, **HIL_COMMANDS, **SIM_COMMANDS,
            **DIAG_COMMANDS, **FLASH_COMMANDS, **FARM_COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="synack", description="synack host tools")
    parser.add_argument("--version", action="version", version=f"synack {__version__}")
    groups: dict[str, argparse._SubParsersAction] = {}
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (handler, add_args, help_text) in COMMANDS.items():
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


def main(argv: list[str] | None = None) -> int:
    state = State()
    try:
        args = build_parser().parse_args(argv)   # bad usage: one line, exit status 2
        args.handler(state, args)
    except CommandError as e:
        print(f"synack: {e}", file=state.err)
        return 1
    except KeyboardInterrupt:
        print("\nsynack: interrupted", file=state.err)
        return 130
    except BrokenPipeError:    # e.g. synack cat ... | head: the reader left, stop quietly
        _silence_stdout()
        return 141
    except Exception as e:     # a bug: one line, the traceback on request
        if os.environ.get(DEBUG_ENV):
            raise
        text = " ".join(str(e).split())[:500]
        print(f"synack: internal error: {type(e).__name__}: {text} (rerun with "
              f"{DEBUG_ENV}=1 for the traceback)", file=state.err)
        return 2
    return 0


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush
    does not raise again at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
