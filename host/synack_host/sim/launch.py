"""Start virtual modems as separate processes (as a user would with ``synack sim modem``)
and hand back their pty paths; used by tests, benchmarks and ``synack sim selftest``."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time


class LaunchError(RuntimeError):
    pass


class RunningModem:
    """A ``synack sim modem`` process: ``port`` is the pty to open like a serial port."""

    def __init__(self, args: list[str], ready_timeout: float = 10.0):
        cmd = [sys.executable, "-m", "synack_host.cli", "sim", "modem", *args]
        self.log = tempfile.TemporaryFile()  # a pipe could fill up and stall the modem
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log)
        self.port = self._read_port(ready_timeout)

    def _read_port(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                break
            byte = os.read(self.proc.stdout.fileno(), 1)
            if not byte:
                break
            line += byte
        sel.close()
        path = line.decode().strip()
        if not path.startswith("/"):
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                pass
            self.log.seek(0)
            err = self.log.read().decode(errors="replace")
            self.stop()
            raise LaunchError(f"virtual modem did not start: {err.strip() or 'no pty path'}")
        return path

    def pause(self) -> None:
        """SIGSTOP: the modem stops answering, its pty stays open."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def network_lost(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()

    def __enter__(self) -> RunningModem:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_modem(*args: str, ready_timeout: float = 10.0) -> RunningModem:
    """``start_modem("--dialect", "sim7600", "--baud", "115200")``."""
    return RunningModem(list(args), ready_timeout)
