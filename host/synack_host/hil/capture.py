"""Wire-level verification: record a test's TCP traffic with tcpdump and check it.

:class:`Capture` runs ``tcpdump`` on an interface (``lo`` by default, or one inside a
network namespace through ``ip netns exec``), writing a pcap file; :meth:`Capture.start`
returns once tcpdump is really listening, :meth:`Capture.stop` flushes it and parses the
pcap into :class:`~synack_host.hil.tcpflow.Flow` objects -- one per TCP connection, in the
order of their first SYN -- with the handshake, data, close, RST and keepalive facts and
``assert_*`` helpers. Usable without pytest::

    with Capture(tmpdir, ports=[server.port]) as cap:
        ...traffic...
    cap.flow().assert_handshake()
    cap.flow().assert_four_way_close(first_fin="client")
    cap.assert_connections(1, port=server.port)
    print(cap.summary())
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path

from .tcpflow import Endpoint, Flow, Segment, flows, read_pcap

__all__ = ["Capture", "CaptureError", "Flow", "Segment", "Endpoint", "read_pcap", "flows",
           "unavailable"]

_running: weakref.WeakSet[Capture] = weakref.WeakSet()
# Whole packets (tlsflow reads payloads): the largest IPv4 packet, 65535 bytes, even as a
# GSO super-packet on lo, plus its link header. Not tcpdump's 262144: in immediate mode
# each slot of the kernel's capture ring is snaplen-sized, so 262144 leaves a 2 MiB ring
# ~8 slots and a burst of small segments (100 polls over lo in 50 ms) is dropped.
SNAPLEN = 65535 + 14
BUFFER_KIB = 16384          # ring of 16 MiB: ~240 slots of SNAPLEN
_STAT = re.compile(r"(\d+) packets? (captured|received by filter|dropped by kernel)")


class CaptureError(RuntimeError):
    """tcpdump could not start or stop; the message carries its stderr."""


def unavailable() -> str | None:
    """Why a capture cannot run here (tcpdump missing, not root), or None."""
    if shutil.which("tcpdump") is None:
        return "`tcpdump` not found on PATH (install the Debian package tcpdump)"
    if os.geteuid() != 0:
        return f"packet capture needs root (running as euid {os.geteuid()})"
    return None


class Capture(AbstractContextManager["Capture"]):
    """tcpdump on one interface, parsed into per-connection facts when stopped.

    ``ports`` limits the capture to TCP on those ports (and tells which side of a
    connection whose SYN was missed is the server); ``bpf`` replaces the filter entirely.
    Capture one interface: ``-i any`` would see a routed packet twice.
    """

    def __init__(self, directory: str | Path, *, interface: str = "lo",
                 ports: Iterable[int] = (), bpf: str | None = None, netns: str | None = None,
                 name: str = "capture", snaplen: int = SNAPLEN, buffer_kib: int = BUFFER_KIB):
        self.directory = Path(directory)
        self.interface = interface
        self.ports = [int(p) for p in ports]
        if bpf is None:
            bpf = "tcp" + (" and (" + " or ".join(f"port {p}" for p in self.ports) + ")"
                           if self.ports else "")
        self.bpf = bpf
        self.netns = netns
        self.pcap_path = self.directory / f"{name}.pcap"   # .pcap: AppArmor allows it
        self.snaplen = snaplen
        self.buffer_kib = buffer_kib
        self.flows: list[Flow] = []
        self.segments: list[Segment] = []
        self.stats: dict[str, int] = {}
        self.stderr_lines: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._listening = threading.Event()
        self._reader: threading.Thread | None = None

    # -- process -------------------------------------------------------------------------

    def command(self) -> list[str]:
        cmd = ["tcpdump", "-i", self.interface, "-n", "-U", "--immediate-mode",
               "-s", str(self.snaplen), "-B", str(self.buffer_kib), "-w", str(self.pcap_path)]
        if os.geteuid() == 0:
            cmd += ["-Z", "root"]       # Debian's tcpdump would drop to user tcpdump
        cmd.append(self.bpf)
        return ["ip", "netns", "exec", self.netns, *cmd] if self.netns else cmd

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> Capture:
        """Start tcpdump; return when it reports ``listening on`` (its filter is set)."""
        if self._proc is not None:
            raise CaptureError("capture already started")
        reason = unavailable()
        if reason:
            raise CaptureError(reason)
        self.directory.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as e:
            raise CaptureError(f"cannot run {' '.join(cmd)}: {e}") from e
        _running.add(self)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True,
                                        name=f"tcpdump:{self.interface}")
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._listening.wait(0.05):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._terminate(1.0)
                why = ("exited with status " + str(self._proc.returncode)
                       if self._proc.returncode is not None else f"silent for {timeout} s")
                raise CaptureError(f"tcpdump did not start listening ({why}): "
                                   f"`{' '.join(cmd)}`: {self.stderr.strip()}")
        return self

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.stderr_lines.append(line)
            if "listening on" in line:
                self._listening.set()

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def _terminate(self, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)          # tcpdump flushes and prints stats
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        if proc.stderr is not None:
            proc.stderr.close()
        _running.discard(self)

    def stop(self, timeout: float = 5.0, settle: float = 0.2) -> list[Flow]:
        """Let in-flight packets land (``settle`` s), stop tcpdump, parse the pcap."""
        if self._proc is None:
            raise CaptureError("capture not started")
        if self.running:
            time.sleep(settle)
        self._terminate(timeout)
        for count, what in _STAT.findall(self.stderr):
            self.stats[what] = int(count)
        if not self.pcap_path.exists():
            raise CaptureError(f"tcpdump wrote no pcap at {self.pcap_path}: {self.stderr}")
        self.segments = read_pcap(self.pcap_path)
        self.flows = flows(self.segments, self.ports)
        return self.flows

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if not self.running:
            return
        if exc_type is None:
            self.stop()
            return
        try:                            # keep the block's own exception the one reported
            self.stop()                 # settle as usual: the pcap is evidence for it
        except (CaptureError, ValueError, OSError):
            self._terminate(1.0)

    # -- queries ---------------------------------------------------------------------------

    def connections(self, port: int | None = None, complete: bool = False) -> list[Flow]:
        """Flows whose server port is ``port`` (any if None); with ``complete`` only those
        whose three-way handshake finished."""
        return [f for f in self.flows if (port is None or f.server.port == port)
                and (not complete or f.handshake_complete)]

    def flow(self, index: int = 0, port: int | None = None) -> Flow:
        """The ``index``-th connection (in SYN order) to ``port``."""
        found = self.connections(port)
        if not -len(found) <= index < len(found):
            raise AssertionError(f"expected a connection #{index}"
                                 f"{f' to port {port}' if port else ''}, but the capture "
                                 f"has {len(found)}.\n{self.summary()}")
        return found[index]

    def assert_connections(self, n: int, port: int | None = None,
                           complete: bool = False) -> None:
        """Exactly ``n`` TCP connections (SYNs) to ``port`` were seen on the wire."""
        found = self.connections(port, complete)
        if len(found) != n:
            what = f"{'completed ' if complete else ''}connection(s)"
            where = f" to port {port}" if port is not None else ""
            raise AssertionError(f"expected {n} {what}{where}, but the wire shows "
                                 f"{len(found)}.\n{self.summary()}")

    def summary(self) -> str:
        """Readable report: the capture, then one line per connection."""
        where = f"{self.interface}" + (f" in {self.netns}" if self.netns else "")
        dropped = self.stats.get("dropped by kernel")
        head = (f"capture on {where} ({self.bpf}): {len(self.segments)} TCP segments, "
                f"{len(self.flows)} connection(s)"
                + (f", {dropped} dropped by kernel" if dropped else "")
                + f" -> {self.pcap_path}")
        lines = [head] + [f"  #{i + 1} {f.summary()}" for i, f in enumerate(self.flows)]
        return "\n".join(lines)


@atexit.register
def _stop_all() -> None:
    for cap in list(_running):
        try:
            cap._terminate(1.0)
        except Exception:  # noqa: BLE001,S110 - best effort at exit
            pass
