"""``synack sim ...``: the virtual rig from the command line (modem, faults, board, both
wired together, a self-test). Entries of SIM_COMMANDS as in cli.COMMANDS."""

from __future__ import annotations

import argparse
import os
import sys
import time

from .command import (CommandError, CommandTable, State, baud_rate, describe_os_error,
                      float_range, int_range)


# -- synack sim modem -------------------------------------------------------------
def _dialects() -> list[str]:
    """The names of ``sim.modem.DIALECTS``: every --dialect/--modem choice comes from it."""
    from .sim.modem import DIALECTS

    return sorted(DIALECTS)


def _modem_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dialect", choices=_dialects(), default="sim7600",
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
    from .sim.modem import dialect_class

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
        dialect = dialect_class(args.dialect)
        modem = dialect(sim=args.sim, registration=args.registration, rssi=args.rssi,
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
    from .sim.modem import DIALECTS

    table: dict = {}
    for dialect in DIALECTS.values():   # every fault of every dialect, each once
        table.update(dialect.fault_table)
    p.epilog = "faults: " + "; ".join(f.usage for f in table.values())
    p.add_argument("control", metavar="PATH",
                   help="the modem's control socket (its --control PATH)")
    p.add_argument("request", nargs="+", metavar="FAULT",
                   help="the fault and its arguments, e.g. 'drop-registration 5'")


def cmd_sim_fault(state: State, args: argparse.Namespace) -> None:
    from .sim.control import FaultClient, FaultError

    try:
        detail = FaultClient(args.control).send(" ".join(args.request))
    except FaultError as e:
        raise CommandError(str(e)) from None
    print(detail or "ok", file=state.out)


# -- synack sim board -------------------------------------------------------------
def _flash_dir(path: str | None) -> None:
    """``--fs DIR``: the board's flash; a new board's empty flash is made if missing."""
    if path is None:
        return
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise CommandError(f"--fs {path}: not a directory") from None
    except OSError as e:
        raise CommandError(f"--fs {path}: cannot create it: {describe_os_error(e)}") from None


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
    p.add_argument("--flash-size", type=_size_arg, metavar="SIZE",
                   help="size of the flash filesystem in bytes (or 2MB ...): writes beyond "
                   "it fail with ENOSPC (default 2 MiB); with --download: the SPI flash "
                   "chip, 1MB..16MB (default 4MB)")
    p.add_argument("--link", metavar="PATH", help="also make PATH a symlink to the pty")
    p.add_argument("--verbose", "-v", action="store_true", help="trace REPL traffic on stderr")
    from .sim.romloader.cli import add_download_args
    add_download_args(p)


def _size_arg(text: str) -> int:
    """``2097152``, ``2MB``, ``2MiB`` -> bytes (1 .. 1 GiB)."""
    t = text.strip().upper().replace("MIB", "MB").replace("KIB", "KB")
    scale = {"MB": 1 << 20, "KB": 1 << 10}.get(t[-2:], 1)
    number = t[:-2] if scale > 1 else t
    try:
        value = int(number, 10) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"flash size must be bytes or like 4MB, got {text!r}") from None
    if not 1 <= value <= 1 << 30:
        raise argparse.ArgumentTypeError(f"flash size must be 1..1073741824 bytes, got {text}")
    return value


def cmd_sim_board(state: State, args: argparse.Namespace) -> None:
    import tempfile

    if args.download:     # the ROM loader first; MicroPython once the flash boots
        from .sim.romloader.cli import run_download
        return run_download(state, args)

    from .sim.board import Board
    from .sim.engines import make_engine

    with tempfile.TemporaryDirectory(prefix="synack-flash-") as tmp:
        root = args.fs or tmp
        _flash_dir(args.fs)
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
    p.add_argument("--dialect", choices=_dialects(), default="sim7600",
                   help="AT dialect of the modem (default: sim7600)")
    p.add_argument("--modem-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for 'synack sim modem' (repeatable), e.g. "
                   "--modem-arg=--host=example.com=127.0.0.1")
    p.add_argument("--json", action="store_true", help="print the pty paths as JSON")


def cmd_sim_rig(state: State, args: argparse.Namespace) -> None:
    import json

    from .sim import rig

    _flash_dir(args.fs)
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


# -- synack sim selftest ----------------------------------------------------------
def _selftest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baud", type=_baud_or_zero, default=115200,
                   help="pace the virtual UART (default 115200; 0 = unpaced)")
    p.add_argument("--bytes", type=int_range(1, 1 << 20, "byte count"), default=8192,
                   help="bytes to echo (default 8192)")


def cmd_sim_selftest(state: State, args: argparse.Namespace) -> None:
    try:
        _selftest(args.baud or None, args.bytes)
    except (SelftestError, OSError) as e:
        raise CommandError(f"selftest failed: {e}") from None
    except Exception as e:  # a firmware exception: name it, it is what the user debugs
        raise CommandError(f"selftest failed: {type(e).__name__}: {e}") from None
    print("selftest passed", file=state.out)


# The firmware, on this machine, over a virtual SIM7600: the modem on a pty (optionally
# paced like a 115200-baud UART) and a TCP echo server on 127.0.0.1; the firmware's modem
# driver and socket layer run exactly as a board would: bring-up, DNS through the modem,
# connect, a binary round trip, an active close; and a second connection that the server
# closes first. Prints each step, the data rate and the TCP state sequence of both
# connections. (Here, not in sim/: the simulator does not import the firmware.)
class SelftestError(Exception):
    pass


def _selftest_firmware():
    """Import the firmware package from the repository (it is device code, not part of
    the installed host package)."""
    from .packaging import FIRMWARE_DIR
    from .sim import shims

    shims.install()
    fw = str(FIRMWARE_DIR)
    if fw not in sys.path:
        sys.path.insert(0, fw)
    from synack import socket as synsocket
    from synack.modems import sim7600
    return synsocket, sim7600


def _selftest(baud: int | None, size: int, out=print) -> None:
    import serial

    from .servers import EchoServer, ScriptedServer
    from .sim.launch import start_modem

    synsocket, sim7600 = _selftest_firmware()
    args = ["--dialect", "sim7600"] + (["--baud", str(baud)] if baud else [])

    def bye(conn):
        conn.sendall(b"bye\n")
        conn.close()

    with start_modem(*args) as proc, EchoServer() as echo, ScriptedServer(bye) as closer:
        out(f"virtual SIM7600 on {proc.port}" + (f" at {baud} baud" if baud else ""))
        uart = serial.Serial(proc.port, baud or 115200, timeout=0)
        try:
            modem = sim7600.SIM7600(uart, apn="internet")
            t0 = time.monotonic()
            modem.start(register_timeout_ms=5000)
            out(f"bring-up ok in {time.monotonic() - t0:.2f} s, signal {modem.rssi_dbm} dBm")
            ip, port = modem.getaddrinfo("localhost", echo.port)[0][-1]
            out(f"DNS via AT+CDNSGIP: localhost -> {ip}")

            s = synsocket.socket(backend=modem)
            s.settimeout(30)
            s.connect((ip, port))
            data = os.urandom(size)
            t0 = time.monotonic()
            s.sendall(data)
            back = s.read(size)
            dt = time.monotonic() - t0
            if back != data:
                raise SelftestError("echo came back different from what was sent")
            out(f"{size} random bytes echoed byte-exact in {dt:.2f} s "
                f"({2 * size / dt:.0f} B/s both ways)")
            s.close()
            out("active close:  " + " -> ".join(s.tcp.states()))

            p = synsocket.socket(backend=modem)
            p.settimeout(30)
            p.connect(("127.0.0.1", closer.port))
            line = p.readline()
            if line != b"bye\n" or p.read() != b"":
                raise SelftestError("server's goodbye did not arrive as sent")
            p.close()
            out("passive close: " + " -> ".join(p.tcp.states()))
            eng = modem.at.engine
            out(f"AT traffic: {modem.at.tx_bytes} bytes to modem, {modem.at.rx_bytes} from it; "
                f"{eng.urcs} URCs, {eng.unexpected} unexpected lines, {eng.noise} noise bytes")
        finally:
            uart.close()


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


SIM_COMMANDS: CommandTable = {
    "sim modem": (cmd_sim_modem, _modem_args,
                  "run a virtual modem on a pseudo-terminal (prints its path first)"),
    "sim fault": (cmd_sim_fault, _fault_args,
                  "inject a fault into a running virtual modem ('synack sim fault PATH "
                  "help' lists them)"),
    "sim board": (cmd_sim_board, _board_args,
                  "run a virtual MicroPython board on a pseudo-terminal (prints its path "
                  "first)"),
    "sim rig": (cmd_sim_rig, _rig_args,
                "run a virtual board wired to a virtual modem (prints both pty paths)"),
    "sim selftest": (cmd_sim_selftest, _selftest_args,
                     "run the firmware against a virtual SIM7600 and a local echo server"),
}
