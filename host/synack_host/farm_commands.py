"""``synack farm up | down``: virtual boards shared over the network through labgrid
(coordinator, exporter, places; serial ports over RFC 2217 by ser2net). Entries of
FARM_COMMANDS as in cli.COMMANDS; the farm itself is farm.py."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .command import CommandError, CommandTable, State, baud_rate, describe_os_error, int_range
from .sim.modem import DIALECTS

MAX_BOARDS = 16
BACKGROUND_READY_S = 120.0    # N rigs, ser2net, coordinator, exporter on a loaded machine


class _Stopped(BaseException):
    """SIGTERM while the farm starts: unwind through Farm.start()'s cleanup."""


def _state_dir_arg(p: argparse.ArgumentParser) -> None:
    from .farm import default_state_dir

    p.add_argument("--state-dir", type=Path, default=None,
                   help=f"where the farm keeps its state file, configs and logs (default "
                   f"{default_state_dir()})")


def _up_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--boards", type=int_range(1, MAX_BOARDS, "number of boards"), default=1,
                   help=f"how many virtual rigs (places synack-1..N; 1..{MAX_BOARDS}, default 1)")
    p.add_argument("--modem", default="sim7600", choices=sorted(DIALECTS),
                   help="the rigs' modem dialect (default sim7600)")
    p.add_argument("--engine", default="unix", choices=["cpython", "micropython", "unix"],
                   help="what runs the boards' code (default unix: the MicroPython unix port)")
    p.add_argument("--baud", type=baud_rate, help="pace the rigs' UARTs and set ser2net's "
                   "line speed (default: unpaced, 115200 announced)")
    p.add_argument("--background", action="store_true",
                   help="start the farm and return; 'synack farm down' stops it")
    _state_dir_arg(p)


def _state_dir(args: argparse.Namespace) -> Path:
    from .farm import default_state_dir

    path = args.state_dir or default_state_dir()
    if path.exists() and not path.is_dir():
        raise CommandError(f"--state-dir {path}: not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CommandError(f"--state-dir {path}: cannot create it: {describe_os_error(e)}") \
            from None
    return path


def cmd_farm_up(state: State, args: argparse.Namespace) -> None:
    from . import farm

    state_dir = args.state_dir or farm.default_state_dir()
    if state_dir.exists() and not state_dir.is_dir():
        raise CommandError(f"--state-dir {state_dir}: not a directory")
    why = farm.missing_tools()
    if why:
        raise CommandError(why)
    state_dir = _state_dir(args)
    running = farm.read_state(state_dir)
    if running and farm.alive(int(running.get("pid", 0)), "farm"):
        raise CommandError(f"a farm is already running with its state in {state_dir} "
                           f"(LG_COORDINATOR={running.get('coordinator')}); stop it with: "
                           f"synack farm down --state-dir {state_dir}")
    if running:                     # a farm that died: its leftovers go first
        farm.stop_recorded(running, state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
    if args.background:
        _up_in_background(state, args, state_dir)
        return
    spec = farm.FarmSpec(args.boards, state_dir, args.modem, args.engine, args.baud)
    stop = threading.Event()

    def on_term(signum, frame):
        if not stop.is_set():
            stop.set()
            if starting:
                raise _Stopped()
    starting = True
    previous = {s: signal.signal(s, on_term) for s in (signal.SIGTERM, signal.SIGINT)}
    running_farm = farm.Farm(spec)
    try:
        try:
            running_farm.start()
        except (farm.FarmError, _places_error()) as e:
            raise CommandError(f"farm up: {e}") from None
        except _Stopped:
            raise CommandError("farm up: stopped while starting") from None
        starting = False
        _print_farm(state, farm.read_state(state_dir) or {}, state_dir)
        why = None
        while not stop.wait(0.5):
            why = running_farm.dead()
            if why:
                break
    finally:
        running_farm.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    if why:
        raise CommandError(f"farm stopped: {why}")
    print("farm stopped", file=state.out, flush=True)


def _places_error():
    from .hil.places import PlaceError

    return PlaceError


def _up_in_background(state: State, args: argparse.Namespace, state_dir: Path) -> None:
    """The same command without --background, in a session of its own, its output in
    <state dir>/farm.log; returns once its state file says it is ready."""
    from . import farm

    cmd = [sys.executable, "-m", "synack_host.cli", "farm", "up", "--boards", str(args.boards),
           "--modem", args.modem, "--engine", args.engine, "--state-dir", str(state_dir)]
    if args.baud:
        cmd += ["--baud", str(args.baud)]
    with open(state_dir / "farm.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + BACKGROUND_READY_S
    while True:
        info = farm.read_state(state_dir)
        if info and info.get("ready") and info.get("pid") == proc.pid:
            break
        if proc.poll() is not None:
            raise CommandError(_last_line(state_dir / "farm.log") or
                               f"farm up: exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            proc.terminate()       # it cleans up after itself on SIGTERM
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            raise CommandError(f"farm up: not ready within {BACKGROUND_READY_S:g} s")
        time.sleep(0.2)
    _print_farm(state, info, state_dir)


def _last_line(path: Path) -> str:
    try:
        lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return lines[-1].removeprefix("synack: ") if lines else ""


def _print_farm(state: State, info: dict, state_dir: Path) -> None:
    out = state.out
    print(f"LG_COORDINATOR={info.get('coordinator')}", file=out)
    for p in info.get("places", []):
        print(f"{p['name']}  {p.get('url')}  board {p['pty']}  modem control "
              f"{p['control']}", file=out)
    print(f"state: {state_dir / 'farm.json'}  stop: synack farm down --state-dir "
          f"{state_dir}", file=out, flush=True)


def _down_args(p: argparse.ArgumentParser) -> None:
    _state_dir_arg(p)


def cmd_farm_down(state: State, args: argparse.Namespace) -> None:
    from . import farm

    state_dir = args.state_dir or farm.default_state_dir()
    info = farm.read_state(state_dir)
    if info is None:
        raise CommandError(f"no farm to stop: no state file {state_dir / farm.STATE_FILE} "
                           f"(give --state-dir DIR as for farm up)")
    done = farm.stop_recorded(info, state_dir)
    print(f"farm {done}", file=state.out, flush=True)


FARM_COMMANDS: CommandTable = {
    "farm up": (cmd_farm_up, _up_args, "start N virtual boards shared through labgrid: "
                "a coordinator, an exporter, ser2net (RFC 2217) and places synack-1..N"),
    "farm down": (cmd_farm_down, _down_args, "stop a farm started with 'farm up' "
                  "(processes, ser2net, files)"),
}
