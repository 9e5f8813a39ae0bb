"""``synack exec|eval|run|reset|deploy``: commands that talk to a board's raw REPL.

Each takes ``-p/--port`` (any pyserial URL; default $SYNACK_PORT). Transport and device
failures become CommandError at this boundary, so the user reads ``synack: <message>``.
"""

from __future__ import annotations

import argparse
import contextlib
import os

from collections.abc import Callable, Iterator
from pathlib import Path

from . import config as board_config
from . import deploy
from .command import CommandError, State, baud_rate, read_text_input
from .transport import DeviceError, RawRepl, TransportError, open_link


def _port_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--port", default=os.environ.get("SYNACK_PORT"),
                   help="serial port or pyserial URL (default: $SYNACK_PORT)")
    p.add_argument("--baud", type=baud_rate, default=115200,
                   help="baud rate (default 115200)")
    p.add_argument("--reset", action="store_true",
                   help="hard-reset the board through RTS/EN when opening the port")


@contextlib.contextmanager
def device_errors() -> Iterator[None]:
    """Transport and device failures as the user should read them."""
    try:
        yield
    except TransportError as e:
        raise CommandError(str(e)) from None
    except DeviceError as e:
        raise CommandError(f"{e.traceback}") from None


@contextlib.contextmanager
def session(state: State, args: argparse.Namespace) -> Iterator[RawRepl]:
    """The board's raw REPL: the one ``synack connect`` opened for a chain, or a new one
    on ``--port`` for a single command."""
    if state.repl is not None:
        with device_errors():
            if not state.repl.in_raw:
                state.repl.enter()
            yield state.repl
        return
    if not args.port:
        raise CommandError("no port: give -p PORT or set SYNACK_PORT")
    with device_errors():
        link = open_link(args.port, args.baud, reset=args.reset)
        try:
            repl = RawRepl(link)
            repl.enter()
            yield repl
            repl.exit()
        finally:
            link.close()


def write_output(state: State, data: bytes) -> None:
    """The board's output as it came (bytes to a byte stream; else decoded)."""
    out = getattr(state.out, "buffer", None)
    if out is not None:
        state.out.flush()
        out.write(data)
        out.flush()
    else:
        state.out.write(data.decode(errors="replace"))


def output_sink(state: State) -> Callable[[bytes], None]:
    """write_output for a program's output in pieces as it arrives (exec and run show it
    live, as mpremote does, and the host holds none of it); a text stream gets it
    through an incremental decoder, so a character split between pieces survives."""
    if getattr(state.out, "buffer", None) is not None:
        return lambda data: write_output(state, data)
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    return lambda data: state.out.write(decoder.decode(data))


def _exec_args(p):
    _port_args(p)
    p.add_argument("code", help="Python code to run on the board")


def cmd_exec(state: State, args) -> None:
    with session(state, args) as repl:
        repl.exec(args.code, sink=output_sink(state))


def _eval_args(p):
    _port_args(p)
    p.add_argument("expr", help="expression to evaluate on the board")
    p.add_argument("--json", action="store_true", help="print the value as JSON")


def cmd_eval(state: State, args) -> None:
    import json

    with session(state, args) as repl:
        value = repl.eval(args.expr)
    if args.json:
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as e:
            raise CommandError(f"the value of {args.expr!r} has no JSON form ({e}); "
                               "leave out --json to see its repr") from None
        print(text, file=state.out)
    else:
        print(repr(value), file=state.out)


def _run_args(p):
    _port_args(p)
    p.add_argument("file", type=Path, help="local .py file to run on the board")


def cmd_run(state: State, args) -> None:
    code = read_text_input(args.file)
    with session(state, args) as repl:
        repl.exec(code, timeout=3600, sink=output_sink(state))


def _deploy_args(p):
    _port_args(p)
    p.add_argument("--dest", default="/lib", help="directory on the board (default /lib)")
    p.add_argument("--dry-run", action="store_true", help="list what would change, send nothing")
    p.add_argument("--config", type=Path, help="also write this JSON config (Wi-Fi, APN, "
                   "endpoints) to /synack_config.json")
    p.add_argument("--json", action="store_true", help="print the plan and result as JSON")


def progress_bar(total: int, err) -> Callable[[int], None]:
    """A step(n) that advances a text bar on ``err`` by n bytes."""
    sent = [0]

    def step(n: int) -> None:
        sent[0] += n
        width = 30
        done = width * sent[0] // max(total, 1)
        err.write(f"\r[{'#' * done}{'.' * (width - done)}] {sent[0]}/{total} bytes")
        err.flush()
    return step


def cmd_deploy(state: State, args) -> None:
    import json

    config = None
    if args.config:   # a bad config fails before anything is sent
        try:
            config = board_config.load_config(args.config)
        except deploy.DeployError as e:
            raise CommandError(str(e)) from None
    with session(state, args) as repl:
        try:
            plan = deploy.plan(repl, args.dest)
            report = _describe_plan(plan)
            if args.json:
                report["dry_run"] = args.dry_run
            else:
                kind = f".mpy (v{plan.mpy_version & 0xFF})" if plan.compiled else ".py sources"
                if plan.deflate:
                    kind += ", deflate-compressed"
                print(f"{len(plan.items)} files as {kind}; {len(plan.changed)} changed, "
                      f"{plan.bytes_to_send} bytes to send", file=state.out)
                for item in plan.changed:
                    print(f"  {item.target} ({len(item.data)} bytes)", file=state.out)
            if not args.dry_run:
                _send(state, repl, plan)
                if config is not None:
                    n = board_config.write_config(repl, config)
                    report["config_bytes"] = n
                    if not args.json:
                        print(f"config: {n} bytes to /synack_config.json", file=state.out)
        except deploy.DeployError as e:
            raise CommandError(str(e)) from None
    if args.json:
        print(json.dumps(report), file=state.out)
    elif not args.dry_run:
        print("deploy done", file=state.out)


def _describe_plan(plan: deploy.Plan) -> dict:
    return {"files": len(plan.items), "compiled": plan.compiled, "deflate": plan.deflate,
            "changed": [{"target": i.target, "bytes": len(i.data)} for i in plan.changed],
            "bytes_to_send": plan.bytes_to_send}


def _send(state: State, repl: RawRepl, plan: deploy.Plan) -> None:
    from .bundle import send_changed

    step = progress_bar(plan.bytes_to_send, state.err)
    try:
        send_changed(repl, plan, step)
    finally:
        if plan.changed:
            state.err.write("\n")


def _reset_args(p):
    _port_args(p)
    p.add_argument("--hard", action="store_true",
                   help="reset the chip through EN (RTS) instead of a soft reset")


def cmd_reset(state: State, args) -> None:
    if args.hard and state.repl is None:   # a wedged board must not need the REPL first
        if not args.port:
            raise CommandError("no port: give -p PORT or set SYNACK_PORT")
        with device_errors():
            open_link(args.port, args.baud, reset=True).close()
        return
    with session(state, args) as repl:
        if args.hard:
            repl.link.hard_reset()
            repl.in_raw = False   # the board rebooted; a chain re-enters when it needs to
        else:
            repl.soft_reset()


BOARD_COMMANDS = {
    "exec": (cmd_exec, _exec_args, "run Python code on the board, print its output"),
    "eval": (cmd_eval, _eval_args, "evaluate an expression on the board"),
    "run": (cmd_run, _run_args, "run a local file on the board"),
    "reset": (cmd_reset, _reset_args, "soft-reset the board (--hard: through EN)"),
    "deploy": (cmd_deploy, _deploy_args,
               "copy the firmware package to the board (only changed files)"),
}

