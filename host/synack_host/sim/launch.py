"""Start virtual modems for tests, benchmarks and ``synack sim selftest``.

``start_modem(*cli_args)`` runs ``synack sim modem`` as a separate process, exactly as a
user would (optionally behind an argv ``prefix`` such as ``ip netns exec NS``), and hands
back its pty path: a process can be paused (SIGSTOP: a modem that stops answering), told
that the network is gone (SIGUSR1) and killed, which an in-process modem cannot.
``run_modem_in_thread(**options)`` is the cheaper in-process variant.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

STOP_GRACE_S = 3.0


class LaunchError(RuntimeError):
    """A virtual modem or board did not come up; the message carries its stderr."""


class SimProcess:
    """A ``synack sim <kind>`` process that prints its pty path on its first stdout
    line: ``port`` is the pty to open like a serial port. It can be paused (SIGSTOP: it
    stops answering), resumed and stopped; its stderr is kept in a file."""

    kind = "process"

    def __init__(self, args: list[str], ready_timeout: float = 10.0,
                 prefix: Sequence[str] = ()):
        self.args = args
        cmd = [*prefix, sys.executable, "-m", "synack_host.cli", "sim", self.kind,
               *self._extra_args(), *args]
        self.log = tempfile.TemporaryFile()   # a stderr pipe could fill up and stall it
        self._stderr = ""
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log)
        self.port = self._read_port(ready_timeout)

    def _extra_args(self) -> list[str]:
        return []

    def _read_port(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        line = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    break
                byte = os.read(fd, 1)
                if not byte:
                    break
                line += byte
        path = line.decode(errors="replace").strip()
        if not path.startswith("/"):
            self.stop()
            why = self.stderr().strip() or (f"no pty path on stdout within {timeout:g} s"
                                             if not line else f"unexpected output {path!r}")
            raise LaunchError(f"virtual {self.kind} did not start: {why}")
        return path

    def stderr(self) -> str:
        """What the process wrote on stderr so far (a --verbose trace, errors)."""
        if not self.log.closed:
            self.log.seek(0)
            self._stderr = self.log.read().decode(errors="replace")
        return self._stderr

    def pause(self) -> None:
        """SIGSTOP: it stops answering; its pty stays open."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: it answers again (what arrived meanwhile is processed)."""
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 3 s; returns the exit status. ``stderr()`` stays
        available afterwards."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)   # a paused process cannot exit
            self.proc.terminate()
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_GRACE_S)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.stderr()
        self.log.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class RunningModem(SimProcess):
    """A ``synack sim modem`` process with a control socket for faults (modem/faults.py):
    ``reboot()``, ``drop_registration(5)``, ``close_link(0)``, ``lose_data_urcs(1)``,
    ``delay_replies(2.0, count=3)``, ``inject_garbage(b"\\xff noise")``,
    ``cme_error("AT+CIPOPEN", 3)``, ``lose_ok()``, ``send_fail()``, ``truncate_read()``,
    ``ipclose_during_send()``, ``malformed_urc()``, ``heal()``,
    ``status()``; a refused fault raises FaultError with the modem's reason."""

    kind = "modem"

    @property
    def dialect(self) -> str:
        """The ``--dialect`` it was started with (the CLI's default: sim7600)."""
        args = self.args
        return args[args.index("--dialect") + 1] if "--dialect" in args[:-1] else "sim7600"

    @property
    def wording(self):
        """Its dialect's words for commands and URCs (modem/faults.py ``Wording``)."""
        from .modem import DIALECTS
        return DIALECTS[self.dialect].wording

    def _extra_args(self) -> list[str]:
        self._dir = tempfile.TemporaryDirectory(prefix="synack-modem-")
        self.control_path = os.path.join(self._dir.name, "control")
        return ["--control", self.control_path]

    def stop(self) -> int | None:
        code = super().stop()
        self._dir.cleanup()
        return code

    def network_lost(self) -> None:
        """SIGUSR1: ``+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY``, every link dropped."""
        self.proc.send_signal(signal.SIGUSR1)

    def fault(self, request: str) -> str:
        from .control import FaultClient

        return FaultClient(self.control_path).send(request)

    def heal(self) -> str:
        return self.fault("heal")

    def reboot(self) -> str:
        return self.fault("reboot")

    def drop_registration(self, seconds: float | None = None) -> str:
        return self.fault("drop-registration" + ("" if seconds is None else f" {seconds}"))

    def restore_registration(self) -> str:
        return self.fault("restore-registration")

    def close_link(self, link: int, reason: int = 1) -> str:
        return self.fault(f"close-link {link} {reason}")

    def lose_data_urcs(self, count: int = 1) -> str:
        return self.fault(f"lose-urc {count}")

    def delay_replies(self, seconds: float, count: int = 1) -> str:
        return self.fault(f"delay {seconds} {count}")

    def inject_garbage(self, data: bytes) -> str:
        return self.fault("garbage " + "".join(f"\\x{b:02x}" for b in data))

    def cme_error(self, prefix: str, code: int, count: int = 1) -> str:
        """The next ``count`` commands starting with ``prefix`` answer CME error ``code``."""
        return self.fault(f"cme-error {prefix} {code} {count}")

    def lose_ok(self, count: int = 1) -> str:
        return self.fault(f"lose-ok {count}")

    def send_fail(self, count: int = 1) -> str:
        return self.fault(f"send-fail {count}")

    def truncate_read(self, count: int = 1) -> str:
        return self.fault(f"truncate-read {count}")

    def ipclose_during_send(self, reason: int = 1) -> str:
        return self.fault(f"ipclose-during-send {reason}")

    def malformed_urc(self, text: str | None = None) -> str:
        """``text`` as one URC line (``\\xNN`` escapes), default two malformed URCs."""
        return self.fault("malformed-urc" + ("" if text is None else f" {text}"))

    def status(self) -> dict:
        import json

        return json.loads(self.fault("status"))


def start_modem(*args: str, ready_timeout: float = 10.0,
                prefix: Sequence[str] = ()) -> RunningModem:
    """``start_modem("--dialect", "sim7600", "--baud", "115200")``: the arguments of
    ``synack sim modem``. Raises LaunchError if no pty path arrives within the timeout.

    ``prefix`` goes before the command, e.g. ``("ip", "netns", "exec", ns)`` to run the
    modem -- and so the host sockets behind its links -- in network namespace ``ns``
    (the prefix must exec the command, so that signals reach the modem itself)."""
    return RunningModem(list(args), ready_timeout, prefix)


@contextlib.contextmanager
def run_modem_in_thread(dialect: str = "sim7600", **options) -> Iterator:
    """A virtual modem served by a thread of this process; yields the modem object
    (``.port`` is its pty). ``dialect`` is a name of ``modem.DIALECTS`` (ValueError
    naming the known ones otherwise); options are its class's keyword arguments."""
    from .modem import dialect_class

    modem = dialect_class(dialect)(**options)
    modem.start()
    try:
        yield modem
    finally:
        modem.stop()
