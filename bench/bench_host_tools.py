"""synack's raw REPL / filesystem code against mpremote's SerialTransport (issue 15, item
6): the same jobs, side by side in one run, on the virtual board paced at 115200 baud,
on the cpython engine and on the unix engine (the real MicroPython unix port).

Jobs: break into the raw REPL from a running main.py (20 tries each: a busy loop, a loop
printing all the time; 10 tries: a loop that catches the first KeyboardInterrupt, as an
app that cleans up and restarts does), an exec round trip, ls of 50 files, stat, reading
and writing 64 KiB of random bytes (checked byte for byte), sha256 on the board, and how
a device OSError comes out (ENOENT, EACCES from a file the board may not read, ENOSPC on
a full --flash-size, ETIMEDOUT raised by code, ENOSPC raised in a function whose name holds
another errno's): as each tool's Python API maps it, and as each command line prints it.

Run: .venv/bin/python bench/bench_host_tools.py  -> bench/reports/host_tools.md (+ .json)
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mpremote.transport import TransportExecError, _convert_filesystem_error
from mpremote.transport_serial import SerialTransport

from synack_host import deploy, fs_commands
from synack_host.sim.launch_board import start_board
from synack_host.transport import DeviceError, RawRepl, TransportError, open_link
from synack_host.transport import fs as board_fs

BAUD = 115200
ENGINES = ("cpython", "unix")
REPORTS = Path(__file__).resolve().parent / "reports"
SIZE = 64 * 1024
# root ignores file modes; without these capabilities the board's process does not
PRIV = ("setpriv", "--bounding-set=-dac_override,-dac_read_search",
        "--inh-caps=-dac_override,-dac_read_search")
PROGRAMS = {
    "busy loop": ("while True:\n    pass\n", 20),
    # a line every 2 ms, half the line rate: on a real board print() blocks when the
    # UART is busy, the virtual unix engine's does not (a backlog of minutes would build)
    "printing loop": ("import time\nn = 0\nwhile True:\n    print('tick', n)\n    n += 1\n"
                      "    time.sleep(0.002)\n", 20),
    "catches 1st Ctrl-C": ("for _ in range(2):\n    try:\n        while True:\n"
                           "            pass\n    except KeyboardInterrupt:\n"
                           "        print('cleaning up, restarting')\n", 10),
}


class Synack:
    name = "synack"

    def __init__(self, port: str):
        self.repl = RawRepl(open_link(port, BAUD))

    def enter(self, timeout: float = 5.0) -> None:
        self.repl.enter(timeout)

    def exec(self, code: str) -> bytes:
        return self.repl.exec(code)

    def ls(self, path: str) -> list[str]:
        return [name for name, _, _ in board_fs.list_dir(self.repl, path)]

    def size(self, path: str) -> int:
        return board_fs.stat(self.repl, path)[1]

    def read(self, path: str) -> bytes:
        return board_fs.read_file(self.repl, path)

    def write(self, path: str, data: bytes) -> None:
        fs_commands.write_board_file(self.repl, deploy.Item(path, path, data))

    def sha256(self, path: str) -> str:
        return board_fs.sha256(self.repl, path)

    def errno_of(self, code: str) -> str:
        try:
            self.repl.exec(code)
        except DeviceError as e:
            n = board_fs.device_errno(e)
            return errno.errorcode.get(n, str(n)) if n else f"none ({e.message})"
        return "no error"

    def close(self) -> None:
        self.repl.link.close()


class Mpremote:
    name = "mpremote"

    def __init__(self, port: str, as_on_usb: bool = False):
        self.t = SerialTransport(port, BAUD)
        if as_on_usb:   # on a pty mpremote reads blocking, without its timeouts
            self.t.is_pty = False

    def enter(self, timeout: float = 5.0) -> None:
        self.t.enter_raw_repl(soft_reset=False, timeout_overall=timeout)

    def exec(self, code: str) -> bytes:
        return self.t.exec(code)

    def ls(self, path: str) -> list[str]:
        return sorted(e.name for e in self.t.fs_listdir(path))

    def size(self, path: str) -> int:
        return self.t.fs_stat(path).st_size

    def read(self, path: str) -> bytes:
        return bytes(self.t.fs_readfile(path))

    def write(self, path: str, data: bytes) -> None:
        self.t.fs_writefile(path, data)

    def sha256(self, path: str) -> str:
        return self.t.fs_hashfile(path, "sha256").hex()

    def errno_of(self, code: str) -> str:
        try:
            self.t.exec(code)
        except TransportExecError as e:
            got = _convert_filesystem_error(e, "path")
            if isinstance(got, OSError):
                return errno.errorcode.get(got.errno, str(got.errno))
            return f"none ({e.error_output.strip().splitlines()[-1]})"
        return "no error"

    def close(self) -> None:
        self.t.close()


TOOLS = (Synack, Mpremote)


def restart_main(port: str) -> None:
    """Soft reboot from the friendly REPL: the board runs main.py again."""
    repl = RawRepl(open_link(port, BAUD))
    try:
        repl.enter(10)
        repl.link.write(b"\x02")
        time.sleep(0.05)
        repl.link.write(b"\x04")
        time.sleep(0.3)
    finally:
        repl.link.close()


def break_in(port: str, fs: Path) -> dict:
    out = {}
    for label, (program, tries) in PROGRAMS.items():
        (fs / "main.py").write_text(program)
        for tool in TOOLS:
            ok, times = 0, []
            for _ in range(tries):
                try:
                    restart_main(port)
                except TransportError as e:
                    print(f"  could not restart main.py: {e}", file=sys.stderr)
                    continue
                t = tool(port) if tool is Synack else tool(port, as_on_usb=True)
                t0 = time.monotonic()
                try:
                    t.enter(5.0)
                    if t.exec("print('in')").strip() == b"in":
                        ok += 1
                        times.append(time.monotonic() - t0)
                except Exception:   # noqa: BLE001 - a failed try is the measurement
                    pass
                finally:
                    t.close()
            print(f"  break-in {label}/{tool.name}: {ok}/{tries}", file=sys.stderr)
            out[f"{label}/{tool.name}"] = {
                "ok": ok, "tries": tries,
                "median_s": round(statistics.median(times), 3) if times else None}
    (fs / "main.py").unlink()
    return out


def median_time(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        fn()
        times.append(time.monotonic() - t0)
    return statistics.median(times)


def jobs(port: str, fs: Path, tool_cls) -> dict:
    blob = (fs / "blob.bin").read_bytes()
    names = sorted(p.name for p in (fs / "d50").iterdir())
    up = os.urandom(SIZE)
    t = tool_cls(port)
    try:
        t.enter()
        r = {"exec_ms": round(1000 * median_time(lambda: t.exec("x = 1"), 20), 1)}
        r["ls_ok"] = t.ls("/d50") == names
        r["ls_ms"] = round(1000 * median_time(lambda: t.ls("/d50"), 5), 1)
        r["stat_ok"] = t.size("/blob.bin") == SIZE
        r["stat_ms"] = round(1000 * median_time(lambda: t.size("/blob.bin"), 10), 1)
        t0 = time.monotonic()
        got = t.read("/blob.bin")
        r["read_s"], r["read_ok"] = round(time.monotonic() - t0, 2), got == blob
        target = f"/up_{t.name}.bin"
        t0 = time.monotonic()
        t.write(target, up)
        r["write_s"] = round(time.monotonic() - t0, 2)
        r["write_ok"] = (fs / target[1:]).read_bytes() == up
        r["sha256_ok"] = t.sha256("/blob.bin") == hashlib.sha256(blob).hexdigest()
        r["sha256_ms"] = round(1000 * median_time(lambda: t.sha256("/blob.bin"), 3), 1)
    finally:
        t.close()
    return r


ERROR_CODE = {
    "ENOENT": "open('/nope.bin', 'rb')",
    "EACCES": "open('/secret.bin', 'rb')",
    "ENOSPC": "f = open('/big.bin', 'wb')\nf.write(b'x' * 40000)\nf.close()",
    "ETIMEDOUT": "raise OSError(110)",
    # an errno name elsewhere in the traceback: mpremote takes the first name it finds
    "ENOSPC in EIO_retry()": "def EIO_retry():\n    raise OSError(28)\nEIO_retry()",
}


def cli(cmd: list[str]) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    lines = (res.stderr.strip() or res.stdout.strip() or f"exit {res.returncode}").splitlines()
    return f"{lines[-1][:110]} (exit {res.returncode})"


def cli_fresh(cmd: list[str], leftover: Path) -> str:
    leftover.unlink(missing_ok=True)   # where the flash is not bounded, synack's copy landed
    return cli(cmd)


def errors(engine: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        fs = Path(d)
        (fs / "secret.bin").write_bytes(b"x")
        (fs / "secret.bin").chmod(0)
        big = fs.parent / f"big-{os.getpid()}.bin"
        big.write_bytes(os.urandom(40 * 1024))
        out: dict = {}
        try:
            with start_board("--fs", d, "--baud", str(BAUD), "--engine", engine,
                             "--flash-size", "16384", prefix=PRIV) as board:
                for tool in TOOLS:
                    t = tool(board.port)
                    try:
                        t.enter()
                        for name, code in ERROR_CODE.items():
                            out[f"{name}/{tool.name}"] = t.errno_of(code)
                            (fs / "big.bin").unlink(missing_ok=True)
                    finally:
                        t.close()
                synack = [sys.executable, "-m", "synack_host.cli"]
                mpremote = [sys.executable, "-m", "mpremote", "connect", board.port]
                p = ["-p", board.port]
                out["cli"] = {
                    "ENOENT": (cli(synack + ["cat", *p, "/nope.bin"]),
                               cli(mpremote + ["cat", ":/nope.bin"])),
                    "EACCES": (cli(synack + ["cat", *p, "/secret.bin"]),
                               cli(mpremote + ["cat", ":/secret.bin"])),
                    "ENOSPC": (cli(synack + ["cp", *p, str(big), ":/big.bin"]),
                               cli_fresh(mpremote + ["cp", str(big), ":/big.bin"],
                                         fs / "big.bin")),
                }
        finally:
            big.unlink(missing_ok=True)
    return out


def run_engine(engine: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        fs = Path(d)
        (fs / "blob.bin").write_bytes(os.urandom(SIZE))
        (fs / "d50").mkdir()
        for i in range(50):
            (fs / "d50" / f"file{i:02d}.txt").write_text(f"file {i}\n")
        with start_board("--fs", d, "--baud", str(BAUD), "--engine", engine) as board:
            result = {"engine": engine, "jobs": {c.name: jobs(board.port, fs, c) for c in TOOLS}}
            print(f"{engine}: {json.dumps(result['jobs'])}", file=sys.stderr)
            result["break_in"] = break_in(board.port, fs)
    result["errors"] = errors(engine)
    print(f"{engine}: {json.dumps(result['errors'])}", file=sys.stderr)
    return result


def report(r: dict) -> str:
    lines = ["# Host tools: synack's transport vs mpremote's SerialTransport", "",
             f"Measured {r['when']} by `bench/bench_host_tools.py` on the virtual board paced "
             f"at {BAUD} baud (line rate {BAUD // 10} B/s), mpremote {r['mpremote']}, its "
             "Python API (`SerialTransport`) and its command line. The machine is shared "
             f"with other jobs: load average (1 min) {r['load']} on {os.cpu_count()} cores "
             "at the end, so the times are as measured, not best cases.", "",
             "| engine | job | synack | mpremote |", "|---|---|---|---|"]
    for run in r["runs"]:
        e, s, m = run["engine"], run["jobs"]["synack"], run["jobs"]["mpremote"]

        def ok(x: dict, key: str) -> str:
            return "" if x[key] else " **WRONG**"
        lines += [
            f"| {e} | exec round trip (`x = 1`), median | {s['exec_ms']} ms | {m['exec_ms']} ms |",
            f"| {e} | ls of 50 files, median | {s['ls_ms']} ms{ok(s, 'ls_ok')} | "
            f"{m['ls_ms']} ms{ok(m, 'ls_ok')} |",
            f"| {e} | stat, median | {s['stat_ms']} ms{ok(s, 'stat_ok')} | "
            f"{m['stat_ms']} ms{ok(m, 'stat_ok')} |",
            f"| {e} | read 64 KiB random | {s['read_s']} s{ok(s, 'read_ok')} | "
            f"{m['read_s']} s{ok(m, 'read_ok')} |",
            f"| {e} | write 64 KiB random | {s['write_s']} s{ok(s, 'write_ok')} | "
            f"{m['write_s']} s{ok(m, 'write_ok')} |",
            f"| {e} | sha256 of 64 KiB on the board, median | {s['sha256_ms']} ms"
            f"{ok(s, 'sha256_ok')} | {m['sha256_ms']} ms{ok(m, 'sha256_ok')} |"]
        for label in PROGRAMS:
            cells = []
            for tool in ("synack", "mpremote"):
                b = run["break_in"][f"{label}/{tool}"]
                t = f", median {b['median_s']} s" if b["median_s"] is not None else ""
                cells.append(f"{b['ok']}/{b['tries']}{t}")
            lines.append(f"| {e} | enter raw REPL, main.py: {label} | {cells[0]} | {cells[1]} |")
        for name in ERROR_CODE:
            lines.append(f"| {e} | device OSError {name} → host errno (API) | "
                         f"{run['errors'][f'{name}/synack']} | "
                         f"{run['errors'][f'{name}/mpremote']} |")
        for name, (ours, theirs) in run["errors"]["cli"].items():
            lines.append(f"| {e} | {name} on the command line | `{ours}` | `{theirs}` |")
    lines += ["", "- Bytes: every read and write above is checked against the file on the "
              "host side (**WRONG** marks a mismatch).",
              "- Break-in: each try soft-reboots the board from the friendly REPL so "
              "main.py runs, then opens the port and enters the raw REPL (5 s limit) and "
              "runs `print('in')`. mpremote is driven as on a USB port "
              "(`is_pty = False`): on a pty it reads blocking and its timeout never fires. "
              "The printing loop prints a line every 2 ms (half the line rate): a real "
              "board's print() blocks while the UART is busy, the virtual unix engine's "
              "does not, and a backlog of minutes would build that no tool gets past. "
              "'catches 1st Ctrl-C' is an app that cleans up on KeyboardInterrupt and "
              "starts again; the unix engine stops such a program itself 1.5 s after a "
              "Ctrl-C (a second SIGINT, then a new VM), which a real board does not, so "
              "mpremote's single Ctrl-C gets in there.",
              "- EACCES: a file with mode 000, the board's process without "
              "CAP_DAC_OVERRIDE. ENOSPC: `--flash-size 16384` (the unix engine does not "
              "enforce it: 'no error'). ETIMEDOUT: raised by code, as a socket would. "
              "'ENOSPC in EIO_retry()': `raise OSError(28)` in a function of that name; "
              "mpremote looks for any errno name anywhere in the traceback.",
              ""]
    return "\n".join(lines)


def main() -> None:
    import importlib.metadata

    if sys.argv[1:2] == ["--report"]:   # rewrite the .md from the .json
        r = json.loads((REPORTS / "host_tools.json").read_text())
        (REPORTS / "host_tools.md").write_text(report(r))
        return

    runs = [run_engine(e) for e in ENGINES]
    r = {"when": time.strftime("%Y-%m-%d %H:%M"), "baud": BAUD,
         "mpremote": importlib.metadata.version("mpremote"),
         "load": round(os.getloadavg()[0], 2), "runs": runs}
    print(json.dumps(r, indent=2))
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "host_tools.json").write_text(json.dumps(r, indent=2) + "\n")
    (REPORTS / "host_tools.md").write_text(report(r))


if __name__ == "__main__":
    try:
        main()
    except TransportError as e:
        sys.exit(f"bench_host_tools: {e}")
