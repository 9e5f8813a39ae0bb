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
from pathlib import Path
from collections.abc import Callable

from . import __version__
from .board_commands import BOARD_COMMANDS
from .chain import CHAIN_COMMANDS
from .fs_commands import FS_COMMANDS
from .terminal import REPL_COMMANDS
from .command import (CommandError, State, baud_rate, describe_os_error, float_range,
                      int_range)

DEBUG_ENV = "SYNACK_DEBUG"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, ``synack: <command>: <message>``
    (subparsers are made of the same class)."""

    def error(self, message: str):
        message = " ".join(message.split())
        where = " ".join(self.prog.split()[1:])
        if where:
            line = f"synack: {where}: {message} (see 'synack {where} --help')"
        else:
            usage = " ".join(self.format_usage().split())
            line = f"synack: {message}; {usage}"
        self.exit(2, line + "\n")

    def parse_args(self, args=None, namespace=None):   # type: ignore[override]
        """As argparse's, but leftover arguments are blamed on the subcommand that was
        given them: ``synack: exec: unrecognized arguments: --bogus``."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            words = [getattr(parsed, "command", None)]
            words += [getattr(parsed, f"sub{i}", None) for i in range(3)]
            sub = self
            for word in filter(None, words):
                sub = _subparser(sub, word) or sub
            sub.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def _subparser(parser: argparse.ArgumentParser, word: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(word)
    return None


Handler = Callable[[State, argparse.Namespace], None]


# -- synack sim modem -------------------------------------------------------------
def _modem_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dialect", choices=["sim7600"], default="sim7600",
                   help="AT dialect to emulate (default: sim7600)")
    p.add_argument("--baud", type=baud_rate, help="pace both directions like a UART at "
                   "this baud rate (8N1: baud/10 bytes/s); default: unpaced")
    p.add_argument("--sim", choices=["ready", "absent", "pin"], default="ready",
                   help="SIM card state (pin: locked, PIN 1234)")
    p.add_argument("--registration", default="home",
                   choices=["home", "roaming", "searching", "denied", "none"],
                   help="network registration state reported by +CREG/+CEREG")
    p.add_argument("--rssi", type=int, default=20,
                   help="AT+CSQ rssi value 0..31, or 99: not known (default 20)")
    p.add_argument("--pdp-fail", action="store_true", help="AT+NETOPEN fails (+NETOPEN: 1)")
    p.add_argument("--host", action="append", default=[], metavar="NAME=IP",
                   help="name for AT+CDNSGIP / AT+CIPOPEN to resolve (repeatable)")
    p.add_argument("--allow", action="append", default=[], metavar="CIDR",
                   help="also allow connections to this network (default: 127.0.0.0/8)")
    p.add_argument("--drop-data-urcs", action="store_true",
                   help="never send +CIPRXGET: 1 (tests that the driver polls)")
    p.add_argument("--fault", action="append", default=[], metavar="PREFIX|RESPONSE[|N]",
                   help="answer the next N commands starting with PREFIX with RESPONSE "
                   "(SILENT: no answer), e.g. 'AT+CIPOPEN|+CME ERROR: 3'")
    p.add_argument("--connect-timeout", type=float_range(0, 3600, "connect timeout"),
                   default=20.0,
                   help="seconds before +CIPOPEN: <n>,10 (default 20)")
    p.add_argument("--keepalive-minute", type=float_range(0, 3600, "keepalive minute"),
                   default=60.0, metavar="SECONDS",
                   help="how long one AT+CTCPKA minute lasts (default 60; tests shorten "
                   "it to see keepalive work in seconds)")
    p.add_argument("--link", metavar="PATH", help="also make PATH a symlink to the pty")
    p.add_argument("--control", metavar="PATH", help="listen on a Unix socket at PATH for "
                   "faults to inject while running ('synack sim fault PATH help')")
    p.add_argument("--verbose", "-v", action="store_true", help="trace AT traffic on stderr")


def cmd_sim_modem(state: State, args: argparse.Namespace) -> None:
    from .sim.sim7600 import SIM7600

    hosts = {}
    for item in args.host:
        name, sep, ip = item.partition("=")
        if not sep or not name:
            raise CommandError(f"--host wants NAME=IP, got {item!r}")
        hosts[name] = ip
    trace = None
    if args.verbose:
        def trace(text: str) -> None:
            print(text, file=state.err, flush=True)
    try:
        modem = SIM7600(sim=args.sim, registration=args.registration, rssi=args.rssi,
                        pdp_fail=args.pdp_fail, hosts=hosts, allow=tuple(args.allow),
                        drop_data_urcs=args.drop_data_urcs,
                        connect_timeout=args.connect_timeout, baud=args.baud,
                        keepalive_minute=args.keepalive_minute,
                        faults=tuple(args.fault), link_path=args.link, trace=trace,
                        control_path=args.control)
    except ValueError as e:
        raise CommandError(str(e)) from None
    except OSError as e:
        raise CommandError(f"cannot set up the modem: {e}") from None
    print(modem.port, file=state.out, flush=True)   # first line: what launchers wait for
    modem.run_until_signalled()


# -- synack sim fault -------------------------------------------------------------
def _fault_args(p: argparse.ArgumentParser) -> None:
    from .sim.faults import FAULTS
    from .sim.sim7600 import SIM7600

    table = {**FAULTS, **SIM7600.fault_table}
    p.epilog = "faults: " + "; ".join(f.usage for f in table.values())
    p.add_argument("control", metavar="PATH",
                   help="the modem's control socket (its --control PATH)")
    p.add_argument("request", nargs="+", metavar="FAULT",
                   help="the fault and its arguments, e.g. 'drop-registration 5'")


def cmd_sim_fault(state: State, args: argparse.Namespace) -> None:
    from .sim.faults import FaultClient, FaultError

    try:
        detail = FaultClient(args.control).send(" ".join(args.request))
    except FaultError as e:
        raise CommandError(str(e)) from None
    print(detail or "ok", file=state.out)


# -- synack sim board -------------------------------------------------------------
def _board_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fs", metavar="DIR", help="the board's flash: a host directory "
                   "(default: a new temporary directory)")
    p.add_argument("--baud", type=baud_rate, help="pace both directions like a UART at "
                   "this baud rate (8N1: baud/10 bytes/s); default: unpaced")
    p.add_argument("--engine", choices=["cpython", "micropython", "unix"], default="cpython",
                   help="what runs the code (default: cpython)")
    p.add_argument("--micropython", metavar="PATH", help="the MicroPython unix-port "
                   "binary of --engine unix")
    p.add_argument("--uart1", metavar="PATH", help="serial port behind machine.UART(1), "
                   "e.g. a virtual modem's pty")
    p.add_argument("--flash-size", type=int_range(1, 1 << 30, "flash size"), metavar="BYTES",
                   help="size of the flash filesystem: writes beyond it fail with ENOSPC "
                   "(default 2 MiB)")
    p.add_argument("--link", metavar="PATH", help="also make PATH a symlink to the pty")
    p.add_argument("--verbose", "-v", action="store_true", help="trace REPL traffic on stderr")


def cmd_sim_board(state: State, args: argparse.Namespace) -> None:
    import tempfile

    from .sim.board import Board
    from .sim.engines import make_engine

    with tempfile.TemporaryDirectory(prefix="synack-flash-") as tmp:
        root = args.fs or tmp
        if not os.path.isdir(root):
            raise CommandError(f"--fs {root}: no such directory")
        if args.uart1:
            _check_serial_path("--uart1", args.uart1)
        if args.flash_size:   # the engine process reads it when it sets up the flash
            from .sim.shims.device import FLASH_SIZE_ENV
            os.environ[FLASH_SIZE_ENV] = str(args.flash_size)
        try:
            engine = make_engine(args.engine, root, args.uart1, args.micropython)
        except NotImplementedError as e:
            raise CommandError(str(e)) from None
        trace = None
        if args.verbose:
            def trace(text: str) -> None:
                print(text, file=state.err, flush=True)
        try:
            board = Board(engine, baud=args.baud, link_path=args.link, trace=trace)
        except OSError as e:
            engine.close()
            raise CommandError(f"cannot set up the board: {e}") from None
        print(board.port, file=state.out, flush=True)   # first line: what launchers wait for
        board.run_until_signalled()


# -- synack sim rig ---------------------------------------------------------------
def _rig_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=["cpython", "micropython", "unix"], default="cpython",
                   help="what runs the board's code (default: cpython)")
    p.add_argument("--baud", type=baud_rate, help="pace the board's REPL and the modem's "
                   "UART at this baud rate (default: unpaced)")
    p.add_argument("--fs", metavar="DIR", help="the board's flash (default: a new "
                   "temporary directory)")
    p.add_argument("--dialect", choices=["sim7600"], default="sim7600",
                   help="AT dialect of the modem (default: sim7600)")
    p.add_argument("--modem-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for 'synack sim modem' (repeatable), e.g. "
                   "--modem-arg=--host=example.com=127.0.0.1")
    p.add_argument("--json", action="store_true", help="print the pty paths as JSON")


def cmd_sim_rig(state: State, args: argparse.Namespace) -> None:
    import json

    from .sim import rig

    if args.fs and not os.path.isdir(args.fs):
        raise CommandError(f"--fs {args.fs}: no such directory")
    try:
        running = rig.start_rig(engine=args.engine, baud=args.baud, fs=args.fs,
                                dialect=args.dialect, modem_args=tuple(args.modem_arg))
    except rig.LaunchError as e:
        raise CommandError(str(e)) from None
    with running:
        if args.json:
            print(json.dumps(running.describe()), file=state.out, flush=True)
        else:
            print(f"board: {running.board.port}\nmodem: {running.modem.port}\n"
                  f"faults: synack sim fault {running.modem.control_path} FAULT\n"
                  f"(the board's machine.UART(1) is the modem; Ctrl-C stops both)",
                  file=state.out, flush=True)
        why = rig.run_until_signalled(running)
    if why:
        raise CommandError(why)


# -- synack hil -------------------------------------------------------------------
def _hil_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", default="virtual", help="'virtual' (default: start the "
                   "virtual rig) or a real board's serial port / pyserial URL")
    p.add_argument("--engine", default="cpython", choices=["cpython", "micropython", "unix"],
                   help="what runs the virtual board's code (default cpython)")
    p.add_argument("--modem", default="sim7600", choices=["sim7600", "wifi"],
                   help="how the device reaches the network (default sim7600)")
    p.add_argument("--baud", type=baud_rate, help="serial speed / virtual UART pacing")
    p.add_argument("--server-host", default="127.0.0.1",
                   help="address the device uses to reach this host (default 127.0.0.1)")
    p.add_argument("--apn", help="a real modem's APN (default $SYNACK_APN or 'internet')")
    p.add_argument("--wifi-ssid", help="a real board's Wi-Fi network (default "
                   "$SYNACK_WIFI_SSID); its key comes from $SYNACK_WIFI_KEY")
    p.add_argument("--logdir", type=Path, default=Path("hil-logs"),
                   help="device logs of failed tests (default ./hil-logs)")
    p.add_argument("--junit", type=Path, default=Path("hil-report.xml"),
                   help="JUnit XML report (default ./hil-report.xml)")
    p.add_argument("--tests", type=Path, help="directory of HIL tests (default: hil_tests/ "
                   "of this checkout)")
    p.add_argument("-k", metavar="EXPR", help="only tests matching this pytest expression")


def cmd_hil(state: State, args: argparse.Namespace) -> None:
    from .hil import run

    tests = args.tests or run.DEFAULT_TESTS
    if not tests.is_dir():
        raise CommandError(f"no HIL tests at {tests} (give --tests DIR)")
    if args.k:
        _check_k_expression(args.k)
    _check_output_file("--junit", args.junit)
    try:
        args.logdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CommandError(f"--logdir {args.logdir}: {describe_os_error(e)}") from None
    if not os.access(args.logdir, os.W_OK | os.X_OK):
        raise CommandError(f"--logdir {args.logdir}: not writable")
    options = ["--board", args.board, "--engine", args.engine, "--modem", args.modem,
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
    code = run.run_pytest(tests, args.junit, options, state.err)
    if not args.junit.exists():
        raise CommandError(f"the HIL run produced no report (pytest exit status {code})")
    try:
        outcomes = run.read_junit(args.junit)
    except run.ReportError as e:
        raise CommandError(str(e)) from None
    where = "the virtual rig" if args.board == "virtual" else args.board
    print(run.format_report(outcomes, f"synack hil on {where} over {args.modem}"),
          file=state.out)
    failed = sum(o.result == "failed" for o in outcomes)
    if code != 0 or failed:
        raise CommandError(f"{failed} of {len(outcomes)} HIL tests failed (pytest status "
                           f"{code}); device logs in {args.logdir}, report {args.junit}")
    print(f"JUnit XML: {args.junit}", file=state.out)


# -- synack sim selftest ----------------------------------------------------------
def _selftest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baud", type=_baud_or_zero, default=115200,
                   help="pace the virtual UART (default 115200; 0 = unpaced)")
    p.add_argument("--bytes", type=int_range(1, 1 << 20, "byte count"), default=8192,
                   help="bytes to echo (default 8192)")


def cmd_sim_selftest(state: State, args: argparse.Namespace) -> None:
    from .sim import selftest

    try:
        selftest.run(args.baud or None, args.bytes)
    except (selftest.SelftestError, OSError) as e:
        raise CommandError(f"selftest failed: {e}") from None
    except Exception as e:  # a firmware exception: name it, it is what the user debugs
        raise CommandError(f"selftest failed: {type(e).__name__}: {e}") from None
    print("selftest passed", file=state.out)


def _baud_or_zero(text: str) -> int:
    return 0 if text.strip() == "0" else baud_rate(text)


def _check_serial_path(option: str, path: str) -> None:
    """``path`` must be a terminal device (a pty, a serial port), else CommandError."""
    import stat

    from .command import file_kind

    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise CommandError(f"{option} {path}: {describe_os_error(e)}") from None
    if not stat.S_ISCHR(mode):
        kind = "regular file" if stat.S_ISREG(mode) else file_kind(mode)
        raise CommandError(f"{option} {path}: a {kind}, not a serial port")


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


COMMANDS: dict[str, tuple[Handler, Callable[[argparse.ArgumentParser], None], str]] = {
    "hil": (cmd_hil, _hil_args, "run the hardware-in-the-loop tests (connect, keepalive, "
            "HTTP polling) on the virtual rig or a real board, print a report"),
    "sim modem": (cmd_sim_modem, _modem_args,
                  "run a virtual modem on a pseudo-terminal (prints its path first)"),
    "sim fault": (cmd_sim_fault, _fault_args,
                  "inject a fault into a running virtual modem (reboot, drop-registration, "
                  "close-link, lose-urc, delay, garbage, status)"),
    "sim board": (cmd_sim_board, _board_args,
                  "run a virtual MicroPython board on a pseudo-terminal (prints its path "
                  "first)"),
    "sim rig": (cmd_sim_rig, _rig_args,
                "run a virtual board wired to a virtual modem (prints both pty paths)"),
    "sim selftest": (cmd_sim_selftest, _selftest_args,
                     "run the firmware against a virtual SIM7600 and a local echo server"),
}


# commands that work on an open board, so ``synack connect PORT`` can chain them
BOARD_SESSION_COMMANDS = {**BOARD_COMMANDS, **FS_COMMANDS, **REPL_COMMANDS}
COMMANDS = {**CHAIN_COMMANDS, **BOARD_SESSION_COMMANDS, **COMMANDS}


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
