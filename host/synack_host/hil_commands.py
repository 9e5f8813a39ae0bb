"""``synack hil``: the hardware-in-the-loop suite on the virtual rig or a real board, with
a report. Entries of HIL_COMMANDS as in cli.COMMANDS."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from .command import CommandError, CommandTable, State, baud_rate, describe_os_error


# -- synack hil -------------------------------------------------------------------
def _hil_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", default="virtual", help="'virtual' (default: start the "
                   "virtual rig) or a real board's serial port / pyserial URL")
    p.add_argument("--engine", default="unix", choices=["cpython", "micropython", "unix"],
                   help="what runs the virtual board's code: unix (default: the real "
                   "MicroPython unix port), micropython (MicroPython as WebAssembly) or "
                   "cpython (CPython with MicroPython shims, for debugging)")
    from .hil.device import NETWORKS

    p.add_argument("--modem", default="sim7600", choices=NETWORKS,
                   help="how the device reaches the network: a modem dialect or 'wifi' "
                   "(default sim7600)")
    p.add_argument("--baud", type=baud_rate, help="serial speed / virtual UART pacing")
    p.add_argument("--server-host", default="127.0.0.1",
                   help="address the device uses to reach this host (default 127.0.0.1)")
    p.add_argument("--apn", help="a real modem's APN (default $SYNACK_APN or 'internet')")
    p.add_argument("--wifi-ssid", help="a real board's Wi-Fi network (default "
                   "$SYNACK_WIFI_SSID); its key comes from $SYNACK_WIFI_KEY")
    p.add_argument("--logdir", type=Path,
                   help="device logs of failed tests (default: a new directory per run, "
                   "./hil-logs/<date>-<time>-<engine or port>-<network>/)")
    p.add_argument("--junit", type=Path,
                   help="JUnit XML report, overwritten if it exists (default: a new file "
                   "per run, ./hil-reports/<date>-<time>-<engine or port>-<network>.xml)")
    p.add_argument("--tests", type=Path, help="directory of HIL tests (default: hil_tests/ "
                   "of this checkout)")
    p.add_argument("-k", metavar="EXPR", help="only tests matching this pytest expression")
    p.add_argument("--place", help="a labgrid place (synack farm up: synack-1 ...): "
                   "acquired for the run, its board used over RFC 2217, then released")
    p.add_argument("--places", metavar="A,B,...|all-free", help="shard the suite across "
                   "these places in parallel (all-free: every place nobody holds)")
    p.add_argument("--coordinator", metavar="HOST:PORT", help="the labgrid coordinator "
                   "(default $LG_COORDINATOR)")


def cmd_hil(state: State, args: argparse.Namespace) -> None:
    from .hil import run

    tests = args.tests or run.DEFAULT_TESTS
    if not tests.is_dir():
        raise CommandError(f"no HIL tests at {tests} (give --tests DIR)")
    if args.k:
        _check_k_expression(args.k)
    if args.place or args.places:
        from .hil import farmrun

        farmrun.check_args(args)
    elif args.board != "virtual":
        _check_board(args.board, args.baud)
    where = args.place or ("places" if args.places else args.board)
    name = run.default_report_name(where, args.engine, args.modem, time.time())
    if args.junit is None:
        args.junit = Path("hil-reports") / f"{name}.xml"
        _make_dir("--junit", args.junit.parent)
    if args.logdir is None:
        args.logdir = Path("hil-logs") / name
    _check_output_file("--junit", args.junit)
    _make_dir("--logdir", args.logdir)
    if not os.access(args.logdir, os.W_OK | os.X_OK):
        raise CommandError(f"--logdir {args.logdir}: not writable")
    options = ["--engine", args.engine, "--modem", args.modem,
               "--server-host", args.server_host, "--hil-logdir", str(args.logdir)]
    if args.baud:
        options += ["--baud", str(args.baud)]
    if args.apn:
        options += ["--apn", args.apn]
    if args.wifi_ssid:
        options += ["--wifi-ssid", args.wifi_ssid]
    if args.k:
        options += ["-k", args.k]
    args.junit.unlink(missing_ok=True)
    if args.place or args.places:          # labgrid places: hil/farmrun.py
        code = farmrun.run_on_places(state, args, tests, options)
    else:
        print(run.title(args.board, args.engine, args.modem), file=state.out, flush=True)
        code = run.run_pytest(tests, args.junit, ["--board", args.board, *options], state.out)
    if not args.junit.exists():
        raise CommandError(f"the HIL run produced no report (pytest exit status {code})")
    try:
        outcomes = run.read_junit(args.junit)
    except run.ReportError as e:
        raise CommandError(str(e)) from None
    print(run.format_summary(outcomes), file=state.out)
    failed = sum(o.result == "failed" for o in outcomes)
    if code != 0 or failed:
        raise CommandError(f"{failed} of {len(outcomes)} HIL tests failed (pytest status "
                           f"{code}); device logs in {args.logdir}, report {args.junit}")
    print(f"JUnit XML: {args.junit}", file=state.out)


def _check_board(port: str, baud: int | None) -> None:
    """Open a real board's port once before the suite: a wrong port is one line, not a
    setup error in every test."""
    from .transport import TransportError
    from .transport.link import open_link

    try:
        open_link(port, baud or 115200).close()
    except TransportError as e:
        raise CommandError(str(e)) from None


def _make_dir(option: str, path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CommandError(f"{option} {path}: {describe_os_error(e)}") from None


def _check_output_file(option: str, path: Path) -> None:
    """``path`` can be written: an existing regular file, or a new file in an existing,
    writable directory (checked by creating it: /proc and read-only mounts say no)."""
    if path.exists() and not path.is_file():
        raise CommandError(f"{option} {path}: not a regular file")
    existed = path.exists()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK, 0o644)
        os.close(fd)
    except OSError as e:
        raise CommandError(f"{option} {path}: cannot write: {describe_os_error(e)}") from None
    if not existed:
        path.unlink(missing_ok=True)


def _check_k_expression(expr: str) -> None:
    """A -k expression pytest would refuse, refused here in one line."""
    try:
        from _pytest.mark import expression
    except ImportError:    # a pytest without it: pytest itself will say
        return
    refused = (SyntaxError, getattr(expression, "ParseError", SyntaxError))
    try:
        expression.Expression.compile(expr)
    except refused as e:
        why = getattr(e, "msg", None) or str(e)
        raise CommandError(f"-k {expr!r} is not a valid pytest expression: {why}") from None


HIL_COMMANDS: CommandTable = {
    "hil": (cmd_hil, _hil_args, "run the hardware-in-the-loop tests (connect, keepalive, "
            "HTTP polling) on the virtual rig or a real board, print a report"),
}
