"""A board farm on this machine, built on labgrid: ``synack farm up`` / ``farm down``.

    rig 1..N (virtual board + modem, ptys)       ser2net (one process, YAML config):
        board pty  ───────────────────────────▶  telnet(rfc2217) on 127.0.0.1:P1..PN
        modem control socket                          │
    labgrid-exporter "synack-farm": group synack-i = NetworkSerialPort(127.0.0.1, Pi)
                                                   + SynackModemControl(path)
    labgrid-coordinator on 127.0.0.1:PORT: places synack-1..N, each matching its group's
    serial port; clients acquire/release them (synack hil --place, labgrid-client)

ser2net is run by the farm rather than by the exporter (RawSerialPort) because the
exporter's ser2net listens on every interface and only while a place is acquired; ours
listens on 127.0.0.1 only, for as long as the farm runs, and the exporter publishes it
as a NetworkSerialPort - labgrid's resource for exactly that. Every process the farm
starts is recorded (pid and what it runs) in ``<state dir>/farm.json``, so ``farm down``
can stop a farm whose supervisor was killed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .hil.places import MODEM_CONTROL_CLS, SERIAL_CLS, URL_OPTIONS, Lab, labgrid_missing

EXPORTER = "synack-farm"
STATE_FILE = "farm.json"
OWN_FILES = ("farm.json", "farm.log", "ser2net.yaml", "ser2net.log", "ser2net.pid",
             "exporter.yaml", "exporter.log", "coordinator.log", "places.yaml",
             "resources.yaml")
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
RIG_KEEPALIVE_MINUTE_S = 1.0     # as the HIL plugin's own rig: keepalive tests in seconds


class FarmError(Exception):
    """The farm cannot start or stop; the message says why (and how to fix it)."""


@dataclass
class FarmSpec:
    boards: int
    state_dir: Path
    dialect: str = "sim7600"
    engine: str = "unix"
    baud: int | None = None


def default_state_dir() -> Path:
    return Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / f"synack-farm-{os.getuid()}"


def missing_tools() -> str | None:
    """What is not installed for a farm, with how to install it; None if all is there."""
    why = labgrid_missing()
    if why:
        return why
    if not ser2net_binary():
        return ("ser2net is not installed: apt-get install ser2net (Debian/Ubuntu; "
                "scripts/setup.sh does it as root)")
    return None


def ser2net_binary() -> str | None:
    return shutil.which("ser2net") or next(
        (p for p in ("/usr/sbin/ser2net", "/usr/bin/ser2net") if os.path.exists(p)), None)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (ser2net binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ser2net_yaml(ports: list[tuple[str, int]], baud: int) -> str:
    """ser2net 4 config: one RFC 2217 telnet server on 127.0.0.1 per pty. ``kickolduser``:
    a client that died without closing is replaced by the next one, not a busy port;
    ``nodelay``: the REPL's small writes and deploy's one-byte ACKs go out at once."""
    lines = ["%YAML 1.1", "---"]
    for i, (pty, port) in enumerate(ports, 1):
        lines += [f"connection: &synack{i}",
                  f"  accepter: telnet(rfc2217),tcp(nodelay),127.0.0.1,{port}",
                  f"  connector: serialdev(nouucplock=true),{pty},{baud}n81,local",
                  "  options:", "    kickolduser: true", "    mdns: false", ""]
    return "\n".join(lines)


def exporter_yaml(groups: list[dict]) -> str:
    """labgrid exporter config (YAML is a superset of JSON: one group per board)."""
    return json.dumps({g["name"]: {
        SERIAL_CLS: {"host": "127.0.0.1", "port": g["tcp_port"], "speed": g["speed"]},
        MODEM_CONTROL_CLS: {"path": g["control"],
                            "keepalive_minute": RIG_KEEPALIVE_MINUTE_S},
    } for g in groups}, indent=2) + "\n"


class Farm:
    """The farm's processes; ``start()`` brings all up (undoing what it did if a step
    fails), ``stop()`` takes them down in reverse and removes its files."""

    def __init__(self, spec: FarmSpec):
        self.spec = spec
        self.dir = spec.state_dir
        self.rigs: list = []
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: list = []
        self.address = ""
        self.places: list[dict] = []

    # -- starting -------------------------------------------------------------------
    def start(self) -> Farm:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from .sim.rig import LaunchError, start_rig

        baud = self.spec.baud or 115200
        for i in range(1, self.spec.boards + 1):
            try:
                # the board's flash in the state dir: farm down removes it even when
                # the board was killed before it could clean up
                rig = start_rig(engine=self.spec.engine, baud=self.spec.baud,
                                dialect=self.spec.dialect, fs=str(self.dir / f"flash-{i}"),
                                modem_args=("--keepalive-minute", str(RIG_KEEPALIVE_MINUTE_S)))
            except LaunchError as e:
                raise FarmError(f"rig {i}: {e}") from None
            self.rigs.append(rig)
            self.places.append({"name": f"synack-{i}", "pty": rig.board.port,
                                "tcp_port": free_port(), "speed": baud,
                                "control": rig.modem.control_path})
            self._record()
        (self.dir / "ser2net.yaml").write_text(
            ser2net_yaml([(p["pty"], p["tcp_port"]) for p in self.places], baud))
        self._spawn("ser2net", [ser2net_binary() or "ser2net", "-n", "-d", "-P",
                                str(self.dir / "ser2net.pid"), "-c",
                                str(self.dir / "ser2net.yaml")])
        self._wait_listening([p["tcp_port"] for p in self.places])
        self._spawn("coordinator", [sys.executable, "-m", "labgrid.remote.coordinator",
                                    "--listen", "127.0.0.1:0"])
        self.address = self._coordinator_address()
        (self.dir / "exporter.yaml").write_text(exporter_yaml(self.places))
        self._spawn("exporter", [sys.executable, "-m", "labgrid.remote.exporter", "-c",
                                 self.address, "-n", EXPORTER, "--hostname", "127.0.0.1",
                                 str(self.dir / "exporter.yaml")])
        with Lab(self.address) as lab:
            self._wait(lambda: {p["name"] for p in self.places} <= lab.groups(EXPORTER),
                       "the exporter's resources to reach the coordinator")
            for p in self.places:
                lab.create_place(p["name"], [f"{EXPORTER}/{p['name']}/{SERIAL_CLS}"],
                                 {"synack": "rig", "modem": self.spec.dialect,
                                  "engine": self.spec.engine},
                                 comment=f"synack virtual rig ({self.spec.engine} engine, "
                                 f"{self.spec.dialect})")
        for p in self.places:
            p["url"] = f"rfc2217://127.0.0.1:{p['tcp_port']}{URL_OPTIONS}"
        self._record(ready=True)

    def _spawn(self, name: str, cmd: list[str]) -> None:
        # its own session: Ctrl-C on the farm's terminal reaches the farm, which stops
        # the parts in order (an exporter killed first would orphan the places)
        log = open(self.dir / f"{name}.log", "wb")
        self.logs.append(log)
        self.procs[name] = subprocess.Popen(cmd, cwd=self.dir, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self._record()

    def _log_tail(self, name: str) -> str:
        try:
            text = (self.dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return " ".join(text.strip().splitlines()[-3:])[-400:]

    def _wait(self, ready, what: str, timeout: float = READY_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while True:
            dead = self.dead()
            if dead:
                raise FarmError(f"while waiting for {what}: {dead}")
            value = ready()
            if value:
                return value
            if time.monotonic() > deadline:
                raise FarmError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.1)

    def _wait_listening(self, ports: list[int]) -> None:
        def listening() -> bool:
            for port in ports:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) != 0:
                        return False
            return True
        self._wait(listening, "ser2net to listen on 127.0.0.1")

    def _coordinator_address(self) -> str:
        def bound() -> str | None:
            for line in (self.dir / "coordinator.log").read_text(errors="replace").splitlines():
                if line.startswith("listening on "):
                    return line.split()[-1]
            return None
        return self._wait(bound, "labgrid-coordinator to listen")

    def dead(self) -> str | None:
        """Which part has exited (with its last words), or None while all run."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                return f"{name} exited with status {proc.returncode}: {self._log_tail(name)}"
        for i, rig in enumerate(self.rigs, 1):
            why = rig.dead()
            if why:
                return f"rig {i}: {why}"
        return None

    # -- the state file -------------------------------------------------------------
    def _record(self, ready: bool = False) -> None:
        pids = {name: [p.pid, p.args[0] if name == "ser2net" else p.args[2]]
                for name, p in self.procs.items()}
        for i, rig in enumerate(self.rigs, 1):
            pids[f"board-{i}"] = [rig.board.proc.pid, "synack_host.cli"]
            pids[f"modem-{i}"] = [rig.modem.proc.pid, "synack_host.cli"]
        state = {"pid": os.getpid(), "ready": ready, "coordinator": self.address,
                 "exporter": EXPORTER, "places": self.places, "processes": pids}
        tmp = self.dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.dir / STATE_FILE)

    # -- stopping -------------------------------------------------------------------
    def stop(self) -> None:
        for name in ("exporter", "coordinator", "ser2net"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                _terminate(proc)
        for rig in self.rigs:
            rig.stop()
        self.rigs.clear()
        for log in self.logs:
            log.close()
        self.logs.clear()
        remove_own_files(self.dir)


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_GRACE_S)


def remove_own_files(state_dir: Path) -> None:
    for name in OWN_FILES + (STATE_FILE + ".tmp",):
        (state_dir / name).unlink(missing_ok=True)
    for flash in state_dir.glob("flash-*"):
        shutil.rmtree(flash, ignore_errors=True)
    try:
        state_dir.rmdir()          # only if nothing else is in it
    except OSError:
        pass


def read_state(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def alive(pid: int, marker: str) -> bool:
    """Process ``pid`` runs and is still ours (its command line has ``marker``): a pid
    reused by another program is never signalled."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return marker in cmdline


def stop_recorded(state: dict, state_dir: Path, timeout: float = 20.0) -> str:
    """``farm down``: SIGTERM the farm's supervisor and wait for it to stop its parts;
    then SIGKILL whatever recorded part is still there, and remove the files. Returns
    what was done, for the user."""
    pid = int(state.get("pid", 0))
    done = "stopped"
    if pid and alive(pid, "farm"):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(pid, "farm") and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid, "farm"):
            os.kill(pid, signal.SIGKILL)
            done = f"killed (no exit within {timeout:g} s of SIGTERM)"
    else:
        done = "cleaned up after a farm whose supervisor had already exited"
    for child, marker in state.get("processes", {}).values():
        if alive(int(child), str(marker)):
            try:
                os.kill(int(child), signal.SIGKILL)
            except ProcessLookupError:
                pass
    for place in state.get("places", []):      # a killed modem leaves its control dir
        control = Path(str(place.get("control", "")))
        if control.parent.name.startswith("synack-modem-"):
            shutil.rmtree(control.parent, ignore_errors=True)
    remove_own_files(state_dir)
    return done
