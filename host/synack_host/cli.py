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

from .chain import BOARD_SESSION_COMMANDS, CHAIN_COMMANDS
from .diag_commands import DIAG_COMMANDS
from .farm_commands import FARM_COMMANDS
from .flash_commands import FLASH_COMMANDS
from .hil_commands import HIL_COMMANDS
from .sim_commands import SIM_COMMANDS
from .command import CommandError, State, parser_for

DEBUG_ENV = "SYNACK_DEBUG"


COMMANDS = {**CHAIN_COMMANDS, **BOARD_SESSION_COMMANDS, **HIL_COMMANDS, **SIM_COMMANDS,
            **DIAG_COMMANDS, **FLASH_COMMANDS, **FARM_COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    return parser_for(COMMANDS)


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
