"""``synack at``: an AT console to the modem behind the board.

The board passes each command to its modem UART and prints what the modem answers, raw,
until the final result code (``synack.atbridge.at``): the console works whatever runs on the
board, and the firmware's own AT channel re-synchronises before its next command.

    synack at -p PORT                         interactive (readline history); 'exit' leaves
    synack at -p PORT AT+CSQ 'AT+COPS?'       each command, its answer; status 1 on ERROR
    synack at -p PORT --script check.at       send/expect script, run with pexpect

A script has one step per line: ``send AT+CSQ``, ``expect +CSQ:`` (a regular expression),
``timeout 5`` (seconds for the following expects), ``sleep 0.5``; ``#`` starts a comment.
An empty line in the console shows what the modem sent unasked (URCs).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from . import secrets
from .board_commands import device_errors
from .command import CommandError, State, float_range, read_text_input
from .diag_session import PRELUDE, board_args, board_session
from .transport import RawRepl

PROMPT = "AT> "
HISTORY = Path.home() / ".synack_at_history"
MAX_SCRIPT = 64 * 1024
# commands that carry a PIN or a password: never written to the history file
CREDENTIALS = ("AT+CPIN=", "AT+CGAUTH=", "AT+CSTT=", "AT+QICSGP=", "AT+CPWD=", "AT+CLCK=")

_AT = "_synack_at"   # the board's name for synack.atbridge during a session
_AT_IMPORT = f"from synack import atbridge as {_AT}\n"


def add_arguments(p) -> None:
    board_args(p)
    p.add_argument("commands", nargs="*", metavar="CMD", help="AT commands to send in turn")
    p.add_argument("--script", type=Path, metavar="FILE", help="send/expect script")
    p.add_argument("--timeout", type=float_range(0, 300, "timeout"), default=10.0,
                   help="seconds to wait for each final result (default 10)")


def _call(repl: RawRepl, args, code: str) -> str:
    with device_errors():
        out = repl.exec(PRELUDE + _AT_IMPORT + code, timeout=args.timeout + 10)
    text = out.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    return secrets.mask("\n".join(ln for ln in text.split("\n") if ln.strip()))


def send(repl: RawRepl, args, command: str) -> str:
    ms = int(args.timeout * 1000)
    return _call(repl, args, f"{_AT}.at({command!r}, {ms}, {args.uart}, {args.modem_baud})")


def poll(repl: RawRepl, args) -> str:
    return _call(repl, args, f"{_AT}.at_poll(300, {args.uart}, {args.modem_baud})")


def final_of(text: str) -> str | None:
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    if not lines:
        return None
    last = lines[-1]
    if last in ("OK", ">") or last.startswith(("ERROR", "+CME ERROR", "+CMS ERROR",
                                               "NO CARRIER", "BUSY", "NO ANSWER")):
        return last
    return None


def cmd_at(state: State, args) -> None:
    if args.script and args.commands:
        raise CommandError("give AT commands or --script FILE, not both")
    if args.script:
        return run_script(state, args)
    with board_session(args) as repl:
        if args.commands:
            failed = None
            for command in args.commands:
                text = send(repl, args, command)
                print(text, file=state.out, flush=True)
                final = final_of(text)
                if final is None or final not in ("OK", ">"):
                    failed = failed or (command, final)
            if failed:    # named without its parameters: they may carry a password
                why = failed[1] or f"no final result within {args.timeout:g} s"
                raise CommandError(f"{failed[0].split('=')[0]}: {why}")
            return
        interactive(state, args, repl)


def interactive(state: State, args, repl: RawRepl) -> None:
    try:
        import readline
    except ImportError:    # pragma: no cover - every POSIX Python has it
        readline = None
    if readline is not None and HISTORY.parent.is_dir():
        try:
            readline.read_history_file(HISTORY)
        except OSError:
            pass
    print("AT console to the modem; 'exit' or Ctrl-D leaves, an empty line shows URCs.",
          file=state.err, flush=True)
    try:
        while True:
            try:
                line = input(PROMPT).strip()
            except EOFError:
                break
            if line.lower() in ("exit", "quit"):
                break
            if readline is not None and line.upper().startswith(CREDENTIALS):
                n = readline.get_current_history_length()
                if n:   # a PIN or a password: not kept in the history file
                    readline.remove_history_item(n - 1)
            text = send(repl, args, line) if line else poll(repl, args)
            if text:
                print(text, file=state.out, flush=True)
    finally:
        if readline is not None:
            try:
                readline.set_history_length(1000)
                readline.write_history_file(HISTORY)
            except OSError:
                pass


# -- scripts ----------------------------------------------------------------------------
def parse_script(text: str, name: str) -> list[tuple[int, str, str]]:
    steps = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        if word not in ("send", "expect", "timeout", "sleep"):
            raise CommandError(f"{name} line {n}: unknown step {word!r} (send, expect, "
                               "timeout, sleep)")
        if word in ("timeout", "sleep"):
            try:
                value = float(rest)
            except ValueError:
                value = -1.0
            if not 0 <= value <= 600:
                raise CommandError(f"{name} line {n}: {word} wants seconds 0..600, "
                                   f"got {rest!r}")
        elif word == "expect":
            try:
                re.compile(rest)
            except re.error as e:
                raise CommandError(f"{name} line {n}: bad expression {rest!r}: {e}") from None
        steps.append((n, word, rest))
    return steps


def run_script(state: State, args) -> None:
    """Drive the interactive console in a pexpect child through the script's steps."""
    import time

    import pexpect

    text = read_text_input(args.script, "script ", MAX_SCRIPT)
    steps = parse_script(text, str(args.script))
    if not args.port:
        raise CommandError("no port: give -p PORT or set SYNACK_PORT")
    argv = ["-m", "synack_host.cli", "at", "-p", args.port, "--baud", str(args.baud),
            "--uart", str(args.uart), "--modem-baud", str(args.modem_baud),
            "--timeout", str(args.timeout)] + (["--stay"] if args.stay else [])
    env = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1")
    child = pexpect.spawn(sys.executable, argv, env=env, encoding="utf-8",
                          codec_errors="replace", timeout=args.timeout + 10, echo=False)
    expect_timeout = args.timeout
    try:
        _wait(child, PROMPT, 30, args.script, 0)
        for n, word, rest in steps:
            if word == "send":
                child.sendline(rest)
                state.out.write(secrets.mask(f"> {rest}\n"))
            elif word == "expect":
                _wait(child, rest, expect_timeout, args.script, n)
                state.out.write(secrets.mask(f"< {child.after}\n"))
            elif word == "timeout":
                expect_timeout = float(rest)
            else:
                time.sleep(float(rest))
            state.out.flush()
    finally:   # also after a failed step: the console leaves, the board is restored
        if child.isalive():
            child.sendline("exit")
            try:
                child.expect(pexpect.EOF, timeout=30)
            except (pexpect.TIMEOUT, pexpect.EOF):
                pass
        child.close(force=True)
    if child.exitstatus not in (0, None):
        raise CommandError(f"the AT console ended with status {child.exitstatus}")


def _wait(child, pattern: str, timeout: float, script, line: int) -> None:
    import pexpect

    try:
        child.expect(pattern if pattern != PROMPT else re.escape(PROMPT), timeout=timeout)
    except pexpect.TIMEOUT:
        seen = " ".join(str(child.before).split())[-160:]
        where = f"{script} line {line}" if line else f"{script}: the console"
        raise CommandError(secrets.mask(f"{where}: {pattern!r} not seen within {timeout:g} s "
                                        f"(last output: {seen!r})")) from None
    except pexpect.EOF:
        seen = " ".join(str(child.before).split())[-300:]
        raise CommandError(secrets.mask(f"{script}: the console ended early: {seen}")) from None
