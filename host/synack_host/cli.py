"""The ``synack`` command: subcommands from one table, one error type at the boundary.

Each entry of COMMANDS is ``name: (handler, add_arguments, help)``; a handler takes the
parsed arguments and raises CommandError for anything the user should read. main()
prints ``synack: <message>`` on stderr and exits non-zero.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable

from . import __version__


class CommandError(Exception):
    """A failure to report to the user as ``synack: <message>``."""


# -- synack sim modem -------------------------------------------------------------
def _modem_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dialect", choices=["sim7600"], default="sim7600",
                   help="AT dialect to emulate (default: sim7600)")
    p.add_argument("--baud", type=int, help="pace both directions like a UART at this "
                   "baud rate (8N1: baud/10 bytes/s); default: unpaced")
    p.add_argument("--sim", choices=["ready", "absent", "pin"], default="ready",
                   help="SIM card state (pin: locked, PIN 1234)")
    p.add_argument("--registration", default="home",
                   choices=["home", "roaming", "searching", "denied", "none"],
                   help="network registration state reported by +CREG/+CEREG")
    p.add_argument("--rssi", type=int, default=20, help="AT+CSQ rssi value 0..31")
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
    p.add_argument("--connect-timeout", type=float, default=20.0,
                   help="seconds before +CIPOPEN: <n>,10 (default 20)")
    p.add_argument("--link", metavar="PATH", help="also make PATH a symlink to the pty")
    p.add_argument("--verbose", "-v", action="store_true", help="trace AT traffic on stderr")


def cmd_sim_modem(args: argparse.Namespace) -> None:
    from .sim.sim7600 import SIM7600

    try:
        hosts = dict(h.split("=", 1) for h in args.host)
    except ValueError:
        raise CommandError("--host wants NAME=IP") from None
    trace = (lambda s: print(s, file=sys.stderr, flush=True)) if args.verbose else None
    try:
        modem = SIM7600(sim=args.sim, registration=args.registration, rssi=args.rssi,
                        pdp_fail=args.pdp_fail, hosts=hosts,
                        allow=("127.0.0.0/8", *args.allow),
                        drop_data_urcs=args.drop_data_urcs,
                        connect_timeout=args.connect_timeout, baud=args.baud,
                        faults=tuple(args.fault), link_path=args.link, trace=trace)
    except ValueError as e:
        raise CommandError(str(e)) from None
    print(modem.pty.path, flush=True)

    def stop(signum, frame):
        modem.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGUSR1, lambda s, f: modem.later(0, modem.network_lost))
    try:
        modem.serve()
    finally:
        modem.close()


# -- synack sim selftest ----------------------------------------------------------
def _selftest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baud", type=int, default=115200,
                   help="pace the virtual UART (default 115200; 0 = unpaced)")
    p.add_argument("--bytes", type=int, default=8192, help="bytes to echo (default 8192)")


def cmd_sim_selftest(args: argparse.Namespace) -> None:
    from .sim import selftest

    try:
        selftest.run(args.baud or None, args.bytes)
    except (selftest.SelftestError, OSError) as e:
        raise CommandError(f"selftest failed: {e}") from None
    except Exception as e:  # a firmware exception: name it, it is what the user debugs
        raise CommandError(f"selftest failed: {type(e).__name__}: {e}") from None
    print("selftest passed")


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], None],
                          Callable[[argparse.ArgumentParser], None], str]] = {
    "sim modem": (cmd_sim_modem, _modem_args,
                  "run a virtual modem on a pseudo-terminal (prints its path first)"),
    "sim selftest": (cmd_sim_selftest, _selftest_args,
                     "run the firmware against a virtual SIM7600 and a local echo server"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synack", description="synack host tools")
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
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except CommandError as e:
        print(f"synack: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
