"""The virtual rig: a virtual board whose ``machine.UART(1)`` is wired to a virtual
modem, each in its own process, as ``synack sim rig`` and the HIL harness start them.

    with start_rig(engine="cpython", baud=115200) as rig:
        rig.board.port    # the board's REPL pty: what mpremote or synack connect opens
        rig.modem.port    # the modem's pty, already opened by the board's UART(1)
        rig.modem.network_lost()
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence

from .launch import LaunchError, RunningModem, start_modem
from .launch_board import RunningBoard, start_board
from .modem import dialect_class

__all__ = ["LaunchError", "Rig", "start_rig"]


class Rig:
    def __init__(self, board: RunningBoard, modem: RunningModem):
        self.board = board
        self.modem = modem

    def describe(self) -> dict:
        return {"board": self.board.port, "modem": self.modem.port,
                "control": self.modem.control_path}

    def dead(self) -> str | None:
        """Which part has exited, with what it said, or None while both run."""
        for name, part in (("board", self.board), ("modem", self.modem)):
            if part.proc.poll() is not None:
                return (f"the virtual {name} exited with status {part.proc.returncode}: "
                        f"{part.stderr().strip()[-500:]}")
        return None

    def stop(self) -> None:
        self.board.stop()
        self.modem.stop()

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_rig(engine: str = "cpython", baud: int | None = None, fs: str | None = None,
              dialect: str = "sim7600", modem_args: tuple[str, ...] = (),
              board_args: tuple[str, ...] = (), prefix: Sequence[str] = ()) -> Rig:
    """Start a modem, then a board wired to it. ``modem_args``/``board_args`` are extra
    arguments of ``synack sim modem`` / ``synack sim board``; ``prefix`` goes before both
    commands, e.g. ``("ip", "netns", "exec", ns)`` to run the rig in a network namespace
    (the ptys work across namespaces). ``dialect``: a name of ``modem.DIALECTS``
    (ValueError naming the known ones otherwise, before anything starts)."""
    dialect_class(dialect)
    paced = ("--baud", str(baud)) if baud else ()
    modem = start_modem("--dialect", dialect, *paced, *modem_args, prefix=prefix)
    try:
        board = start_board("--engine", engine, "--uart1", modem.port, *paced,
                            *(("--fs", fs) if fs else ()), *board_args, prefix=prefix)
    except BaseException:
        modem.stop()
        raise
    return Rig(board, modem)


def run_until_signalled(rig: Rig, poll_s: float = 0.2) -> str | None:
    """Keep the rig up until SIGINT/SIGTERM (returns None) or until a part exits
    (returns why). SIGUSR1 is passed to the modem: the network is lost."""
    stop = threading.Event()
    handlers = {signal.SIGTERM: lambda s, f: stop.set(),
                signal.SIGINT: lambda s, f: stop.set(),
                signal.SIGUSR1: lambda s, f: rig.modem.network_lost()}
    previous = {sig: signal.signal(sig, h) for sig, h in handlers.items()}
    try:
        while not stop.wait(poll_s):
            why = rig.dead()
            if why:
                return why
        return None
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)
