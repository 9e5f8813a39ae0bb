"""``synack exec|eval|run|deploy``: commands that talk to a board's raw REPL.

Each takes ``-p/--port`` (any pyserial URL; default $SYNACK_PORT). Transport and device
failures become CommandError at this boundary, so the user reads ``synack: <message>``.
"""

from __future__ import annotations

import argparse
import contextlib
import os

from collections.abc import Iterator
from pathlib import Path

from . import deploy
from .command import CommandError, State
from .transport import DeviceError, RawRepl, TransportError, open_link


def _port_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--port", default=os.environ.get("SYNACK_PORT"),
                   help="serial port or pyserial URL (default: $SYNACK_PORT)")
    p.add_argument("--baud", type=int, default=115200, help="baud rate (default 115200)")
    p.add_argument("--reset", action="store_true",
                   help="hard-reset the board through RTS/EN when opening the port")


@contextlib.contextmanager
def session(args: argparse.Namespace) -> Iterator[RawRepl]:
    if not args.port:
        raise CommandError("no port: give -p PORT or set SYNACK_PORT")
    try:
        link = open_link(args.port, args.baud, reset=args.reset)
    except TransportError as e:
        raise CommandError(str(e)) from None
    repl = RawRepl(link)
    try:
        repl.enter()
        yield repl
        repl.exit()
    except TransportError as e:
        raise CommandError(str(e)) from None
    except DeviceError as e:
        raise CommandError(f"{e.traceback}") from None
    finally:
        link.close()


def _exec_args(p):
    _port_args(p)
    p.add_argument("code", help="Python code to run on the board")


def cmd_exec(state: State, args) -> None:
    with session(args) as repl:
        state.out.write(repl.exec(args.code).decode(errors="replace"))


def _eval_args(p):
    _port_args(p)
    p.add_argument("expr", help="expression to evaluate on the board")
    p.add_argument("--json", action="store_true", help="print the value as JSON")


def cmd_eval(state: State, args) -> None:
    import json

    with session(args) as repl:
        value = repl.eval(args.expr)
    print(json.dumps(value) if args.json else repr(value), file=state.out)


def _run_args(p):
    _port_args(p)
    p.add_argument("file", type=Path, help="local .py file to run on the board")


def cmd_run(state: State, args) -> None:
    try:
        code = args.file.read_text()
    except OSError as e:
        raise CommandError(f"cannot read {args.file}: {e}") from None
    with session(args) as repl:
        state.out.write(repl.exec(code, timeout=3600).decode(errors="replace"))


def _deploy_args(p):
    _port_args(p)
    p.add_argument("--dest", default="/lib", help="directory on the board (default /lib)")
    p.add_argument("--dry-run", action="store_true", help="list what would change, send nothing")
    p.add_argument("--config", type=Path, help="also write this JSON config (Wi-Fi, APN, "
                   "endpoints) to /synack_config.json")


def _progress(total: int, err) -> callable:
    sent = [0]

    def step(n: int) -> None:
        sent[0] += n
        width = 30
        done = width * sent[0] // max(total, 1)
        err.write(f"\r[{'#' * done}{'.' * (width - done)}] {sent[0]}/{total} bytes")
        err.flush()
    return step


def cmd_deploy(state: State, args) -> None:
    with session(args) as repl:
        try:
            plan = deploy.plan(repl, args.dest)
        except deploy.DeployError as e:
            raise CommandError(str(e)) from None
        kind = f".mpy (v{plan.mpy_version & 0xFF})" if plan.compiled else ".py sources"
        if plan.deflate:
            kind += ", deflate-compressed"
        print(f"{len(plan.items)} files as {kind}; {len(plan.changed)} changed, "
              f"{plan.bytes_to_send} bytes to send", file=state.out)
        for item in plan.changed:
            print(f"  {item.target} ({len(item.data)} bytes)", file=state.out)
        if args.dry_run:
            return
        step = _progress(plan.bytes_to_send, state.err)
        for item in plan.changed:
            deploy.send_item(repl, item, step, compress=plan.deflate)
        if plan.changed:
            state.err.write("\n")
        if args.config:
            try:
                n = deploy.write_config(repl, args.config)
            except deploy.DeployError as e:
                raise CommandError(str(e)) from None
            print(f"config: {n} bytes to /synack_config.json", file=state.out)
    print("deploy done", file=state.out)


def _path_args(p):
    _port_args(p)
    p.add_argument("path", nargs="?", default="/", help="path on the board")
    p.add_argument("--json", action="store_true", help="machine-readable output")


_LS = """
import os
_out = []
for _e in os.ilistdir(%r):
    _out.append((_e[0], _e[1] == 0x4000, _e[3] if len(_e) > 3 else -1))
print(repr(sorted(_out)))
"""


def cmd_ls(state: State, args) -> None:
    import json

    with session(args) as repl:
        entries = repl.eval_code(_LS % args.path)
    if args.json:
        print(json.dumps([{"name": n, "dir": d, "size": sz} for n, d, sz in entries]),
              file=state.out)
        return
    for name, is_dir, size in entries:
        print(f"{'' if is_dir else size:>9} {name}{'/' if is_dir else ''}", file=state.out)


_CAT = """
import binascii
with open(%r, 'rb') as _f:
    while True:
        _b = _f.read(384)
        if not _b:
            break
        print(binascii.b2a_base64(_b).decode().strip())
"""


def _cat_args(p):
    _port_args(p)
    p.add_argument("path", help="file on the board")


def cmd_cat(state: State, args) -> None:
    import base64

    with session(args) as repl:
        lines = repl.exec(_CAT % args.path).split()
    data = b"".join(base64.b64decode(line) for line in lines)
    out = getattr(state.out, "buffer", None)
    if out is not None:
        state.out.flush()
        out.write(data)
        out.flush()
    else:
        state.out.write(data.decode(errors="replace"))


def cmd_rm(state: State, args) -> None:
    with session(args) as repl:
        repl.exec(f"import os\nos.remove({args.path!r})")


def _reset_args(p):
    _port_args(p)
    p.add_argument("--hard", action="store_true",
                   help="reset the chip through EN (RTS) instead of a soft reset")


def cmd_reset(state: State, args) -> None:
    if args.hard:
        args.reset = True
        try:
            open_link(args.port, args.baud, reset=True).close()
        except TransportError as e:
            raise CommandError(str(e)) from None
        return
    with session(args) as repl:
        repl.soft_reset()


BOARD_COMMANDS = {
    "exec": (cmd_exec, _exec_args, "run Python code on the board, print its output"),
    "eval": (cmd_eval, _eval_args, "evaluate an expression on the board"),
    "run": (cmd_run, _run_args, "run a local file on the board"),
    "ls": (cmd_ls, _path_args, "list a directory on the board"),
    "cat": (cmd_cat, _cat_args, "print a file from the board (binary-safe)"),
    "rm": (cmd_rm, _cat_args, "remove a file on the board"),
    "reset": (cmd_reset, _reset_args, "soft-reset the board (--hard: through EN)"),
    "deploy": (cmd_deploy, _deploy_args,
               "copy the firmware package to the board (only changed files)"),
}

