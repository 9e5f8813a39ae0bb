"""Start virtual boards for tests and benchmarks.

``start_board(*cli_args)`` runs ``synack sim board`` as a separate process, exactly as a
user would, and hands back its pty path. It reuses launch.py's process handling (reading
the path from the first stdout line, bounded waits, stderr capture, SIGTERM then SIGKILL).
"""

from __future__ import annotations

from collections.abc import Sequence

from .launch import LaunchError, SimProcess

__all__ = ["LaunchError", "RunningBoard", "start_board"]


class RunningBoard(SimProcess):
    """A ``synack sim board`` process; ``port`` is the pty to open like a serial port.
    (pause/resume work too: a board that hangs.)"""

    kind = "board"


def start_board(*args: str, ready_timeout: float = 10.0,
                prefix: Sequence[str] = ()) -> RunningBoard:
    """``start_board("--fs", str(tmp_path), "--baud", "115200")``: the arguments of
    ``synack sim board``. Raises LaunchError if no pty path arrives within the timeout.
    ``prefix`` as for ``start_modem`` (e.g. ``ip netns exec NS``: the board's native
    sockets, ``--modem wifi``, then live in that namespace)."""
    return RunningBoard(list(args), ready_timeout, prefix)
