"""Start virtual boards for tests and benchmarks.

``start_board(*cli_args)`` runs ``synack sim board`` as a separate process, exactly as a
user would, and hands back its pty path. It reuses launch.py's process handling (reading
the path from the first stdout line, bounded waits, stderr capture, SIGTERM then SIGKILL).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Sequence

from .launch import LaunchError, RunningModem

__all__ = ["LaunchError", "RunningBoard", "start_board"]


class RunningBoard(RunningModem):
    """A ``synack sim board`` process; ``port`` is the pty to open like a serial port.
    (pause/resume from the base class work too: a board that hangs.)"""

    def __init__(self, args: list[str], ready_timeout: float = 10.0,
                 prefix: Sequence[str] = ()):
        self.args = args
        cmd = [*prefix, sys.executable, "-m", "synack_host.cli", "sim", "board", *args]
        self.log = tempfile.TemporaryFile()   # a stderr pipe could fill up and stall it
        self._stderr = ""
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log)
        try:
            self.port = self._read_port(ready_timeout)
        except LaunchError as e:
            raise LaunchError(str(e).replace("virtual modem", "virtual board")) from None

    def network_lost(self) -> None:
        raise NotImplementedError("a board has no network to lose; see the modem")

    def __enter__(self) -> RunningBoard:
        return self


def start_board(*args: str, ready_timeout: float = 10.0,
                prefix: Sequence[str] = ()) -> RunningBoard:
    """``start_board("--fs", str(tmp_path), "--baud", "115200")``: the arguments of
    ``synack sim board``. Raises LaunchError if no pty path arrives within the timeout.
    ``prefix`` as for ``start_modem`` (e.g. ``ip netns exec NS``: the board's native
    sockets, ``--modem wifi``, then live in that namespace)."""
    return RunningBoard(list(args), ready_timeout, prefix)
