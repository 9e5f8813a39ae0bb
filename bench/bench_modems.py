"""Bulk TCP through each virtual modem dialect at 115200 baud (issue 12): the firmware's
driver of a dialect (on CPython) against the virtual modem of that dialect paced at the
line rate, to a real TCP server on 127.0.0.1; each direction on its own, as payload
bytes/s and as a fraction of the UART's line rate (11520 bytes/s at 8N1). Target: 0.9.

Upload: the device writes N bytes, the server counts them. Download: the server writes
N bytes, the device reads them. What caps a dialect is its format: each send is a command,
a prompt and a confirmation; each read a command and a header (SARA-R4: binary AT+USORD,
the raw bytes between quotes on the reply line); SARA-R4's write waits ~50 ms after its
`@` prompt.

Run: .venv/bin/python bench/bench_modems.py [--bytes N] [--dialect D ...]
     -> bench/reports/modems.md (+ .json); with --dialect only those rows are written
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "firmware"), str(ROOT / "tests")]

from synack_host.sim.shims import install  # noqa: E402

install()

from modemrig import Rig  # noqa: E402
from synack import modems  # noqa: E402
from synack_host.sim.modem import DIALECTS  # noqa: E402

BAUD = 115200
LINE_RATE = BAUD / 10
REPORTS = Path(__file__).resolve().parent / "reports"
CHUNK = 4096


class Sink:
    """Counts what arrives (upload) or sends ``size`` bytes then closes (download)."""

    def __init__(self, send: int = 0):
        self.ls = socket.create_server(("127.0.0.1", 0))
        self.port = self.ls.getsockname()[1]
        self.received = 0
        self.done = threading.Event()
        self.send = send
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.ls.accept()
        with conn:
            if self.send:
                conn.sendall(bytes(self.send))
                conn.shutdown(socket.SHUT_WR)
            while data := conn.recv(65536):
                self.received += len(data)
        self.done.set()

    def close(self) -> None:
        self.ls.close()
        self.thread.join(5)


def upload(rig: Rig, size: int) -> float:
    sink = Sink()
    s = rig.socket(timeout=30)
    s.connect(("127.0.0.1", sink.port))
    block = bytes(CHUNK)
    t0 = time.monotonic()
    sent = 0
    while sent < size:
        sent += s.write(block[:min(CHUNK, size - sent)])
    while sink.received < size and time.monotonic() - t0 < 600:
        time.sleep(0.005)
    dt = time.monotonic() - t0
    s.close()
    sink.close()
    if sink.received != size:
        sys.exit(f"upload: the server got {sink.received} of {size} bytes")
    return dt


def download(rig: Rig, size: int) -> float:
    sink = Sink(send=size)
    s = rig.socket(timeout=30)
    s.connect(("127.0.0.1", sink.port))
    buf = bytearray(CHUNK)
    got = 0
    t0 = time.monotonic()
    while got < size:
        n = s.readinto(buf)
        if not n:
            break
        got += n
    dt = time.monotonic() - t0
    s.close()
    sink.close()
    if got != size:
        sys.exit(f"download: the device got {got} of {size} bytes")
    return dt


def measure(dialect: str, size: int) -> dict:
    with Rig("--baud", str(BAUD), dialect=dialect, poll_ms=500) as rig:
        up = upload(rig, size)
        down = download(rig, size)
    return {"dialect": dialect, "bytes": size,
            "upload_s": round(up, 2), "upload_Bps": round(size / up),
            "upload_fraction": round(size / up / LINE_RATE, 3),
            "download_s": round(down, 2), "download_Bps": round(size / down),
            "download_fraction": round(size / down / LINE_RATE, 3)}


# where a dialect's format caps the rate below the line's (the reason, for the report)
CAPS = {
    "sara-r4": "upload: each AT+USOWR carries at most 1024 bytes and waits ~50 ms after "
               "its `@` prompt (u-blox's rule): 1024 B in 89 ms + 50 ms, at most ~0.64 "
               "(downloads read in binary mode, 1024 B per AT+USORD, and reach the "
               "target)",
}


def report(rows: list[dict]) -> str:
    lines = ["# Bulk TCP through each virtual modem dialect at 115200 baud", "",
             f"Line rate {LINE_RATE:.0f} bytes/s (8N1). Target: 0.9 of it each way. "
             "Measured by `bench/bench_modems.py` on this machine (2 cores).", "",
             "| dialect | bytes | upload B/s | upload / line | download B/s | download / line |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dialect']} | {r['bytes']} | {r['upload_Bps']} | "
                     f"{r['upload_fraction']} | {r['download_Bps']} | {r['download_fraction']} |")
    capped = [(r["dialect"], CAPS[r["dialect"]]) for r in rows if r["dialect"] in CAPS]
    if capped:
        lines += ["", "Below the target, and why:", ""]
        lines += [f"- **{name}**: {why}." for name, why in capped]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bytes", type=int, default=64 * 1024)
    ap.add_argument("--dialect", action="append", help="only these (repeatable)")
    args = ap.parse_args()
    names = args.dialect or sorted(set(modems.DRIVERS) & set(DIALECTS))
    rows = []
    for name in names:
        row = measure(name, args.bytes)
        print(f"{name:8} up {row['upload_Bps']:6} B/s ({row['upload_fraction']:.3f})  "
              f"down {row['download_Bps']:6} B/s ({row['download_fraction']:.3f})", flush=True)
        rows.append(row)
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "modems.json").write_text(json.dumps(rows, indent=1) + "\n")
    (REPORTS / "modems.md").write_text(report(rows))
    print(f"report: {REPORTS / 'modems.md'}")


if __name__ == "__main__":
    main()
