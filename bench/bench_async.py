"""How long modem operations stall an asyncio event loop, per virtual modem dialect at
115200 baud: a ticker task wakes every 10 ms and records when it woke; the gaps between
its wakes while a scenario runs next to it are the figures (largest and 99th percentile;
minus the 10 ms period, the stall).

Scenarios, one Rig (a virtual modem process and the firmware's driver) per dialect:
bring-up (``start_async``); download and upload of ``--bytes`` with ``AsyncClient`` to a
local HTTP server; the same download with the blocking ``Client`` inside a coroutine (the
loop should stall for the whole transfer); a GET after the network dropped the bearer
(the AsyncClient's non-blocking connect reopens it). One AT exchange still runs without
yielding, so the largest gap is meant to stay near the longest single exchange at line
rate; rows above that bound are marked in the report (NOTE says why none should be).

Run: .venv/bin/python bench/bench_async.py [--dialects D ...] [--bytes N] [--quick]
     -> bench/reports/async.md (+ .json)
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import math
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "firmware"), str(ROOT / "tests")]

from synack_host.sim.shims import install  # noqa: E402

install()

from modemrig import Rig  # noqa: E402
from synack.http.aclient import AsyncClient  # noqa: E402
from synack.http.client import Client  # noqa: E402

BAUD = 115200
BYTES_PER_MS = BAUD / 10 / 1000  # 11.52 at 8N1
TICK_MS = 10
SCENARIO_S = 120  # no scenario may take longer (a 64 KiB transfer takes ~6-10 s)
RECONNECT_BYTES = 1024  # the reconnect scenario is about the reopen, not the transfer
DIALECTS = ["sim7600", "bg96", "sim800", "sara-r4"]
REPORTS = Path(__file__).resolve().parent / "reports"
TIMEOUTS = {"read_timeout_ms": 20000, "connect_timeout_ms": 20000}
# the most payload bytes one send command carries (firmware/synack/modems/<dialect>.py)
MAX_SEND = {"sim7600": 1500, "bg96": 1460, "sim800": 1460, "sara-r4": 1024}
# what the figures rest on; rows marked over are a regression to look into
NOTE = (
    "Why the AsyncClient stays within one exchange: after every socket call that did "
    "not block it gives way (`tasks.give_way()`: `sleep_ms(0)` on MicroPython, whose "
    "scheduler orders tasks by due time; a 0.1 ms timer on CPython, whose loop runs a "
    "timer-woken task one pass late). Without that (as first measured) a bulk transfer "
    "never awaited, because a modem with data always answers a read and accepts a send, "
    "and the loop stalled for the whole body, as the blocking Client row still shows. "
    "The bearer reopen of a non-blocking connect (`connect_prepare`) never stalls.")


class Handler(http.server.BaseHTTPRequestHandler):
    """GET /N: N zero bytes; POST: reads the body, answers its length."""
    protocol_version = "HTTP/1.1"
    timeout = 30  # per socket operation: a stuck client ends the handler thread
    disable_nagle_algorithm = True

    def log_message(self, *args):  # quiet
        pass

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._answer(bytes(int(self.path.strip("/") or 0)))

    def do_POST(self):
        left, got = int(self.headers.get("Content-Length", 0)), 0
        while left:
            piece = self.rfile.read(min(left, 65536))
            if not piece:
                break
            got, left = got + len(piece), left - len(piece)
        self._answer(str(got).encode())


class Server:
    """ThreadingHTTPServer on 127.0.0.1 in a thread (as tests/test_http_client.py)."""

    def __init__(self):
        class Threading(http.server.ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

        self.httpd = Threading(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(2)


async def ticking(work) -> dict:
    """Run ``work()`` (a coroutine function) next to the 10 ms ticker: its duration and
    the ticker's gaps while it ran. The wait_for bounds awaiting work; blocking work is
    bounded by its own timeouts (it cannot be cancelled)."""
    wakes: list[float] = []
    done = False

    async def ticker():
        while True:
            wakes.append(time.monotonic())  # first: the wake that ends a stall counts
            if done:
                return
            await asyncio.sleep(TICK_MS / 1000)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(5 * TICK_MS / 1000)  # the ticker is in its rhythm first
    t0 = time.monotonic()
    try:
        result = await asyncio.wait_for(work(), SCENARIO_S)
    finally:
        took = time.monotonic() - t0
        done = True
        await asyncio.wait_for(task, 1)
    # the gaps that end after the work began (the settling ones are not its doing)
    gaps = sorted((b - a) * 1000 for a, b in zip(wakes, wakes[1:], strict=False) if b > t0)
    p99 = gaps[max(0, math.ceil(0.99 * len(gaps)) - 1)]  # nearest rank
    return {"duration_s": round(took, 2), "max_gap_ms": round(gaps[-1], 1),
            "p99_gap_ms": round(p99, 1), "wakes": len(gaps), "result": result}


def async_client(rig: Rig) -> AsyncClient:
    return AsyncClient(backend=rig.modem, poll_ms=50, **TIMEOUTS)


async def async_get(rig: Rig, url: str) -> int:
    client = async_client(rig)
    try:
        r = await client.get(url)
        body = await r.read()
    finally:
        client.close()
    assert r.status == 200, r.status
    return len(body)


async def async_post(rig: Rig, url: str, size: int) -> int:
    client = async_client(rig)
    try:
        r = await client.post(url, body=bytes(size))
        answer = await r.read()
    finally:
        client.close()
    assert r.status == 200, r.status
    return int(answer)  # what the server read


async def blocking_get(rig: Rig, url: str) -> int:
    # the blocking Client in a coroutine: no await until the body is in (the comparison)
    client = Client(backend=rig.modem, **TIMEOUTS)
    try:
        r = client.get(url)
        body = r.read()
    finally:
        client.close()
    assert r.status == 200, r.status
    return len(body)


def run_dialect(dialect: str, size: int, server: Server) -> list[dict]:
    rows = []

    def scenario(name: str, work, moved: int | None = None) -> None:
        row = {"dialect": dialect, "scenario": name, **asyncio.run(ticking(work)),
               "bound_ms": round(bound_ms(dialect))}
        got = row.pop("result")
        if moved is not None:
            if got != moved:
                sys.exit(f"{dialect} {name}: {got} of {moved} bytes")
            row["bytes"] = moved
            row["Bps"] = round(moved / row["duration_s"])
        rows.append(row)
        print(line(row), flush=True)

    with Rig("--baud", str(BAUD), dialect=dialect, start=False) as rig:
        scenario("bring-up", lambda: rig.modem.start_async(register_timeout_ms=3000))
        scenario("download", lambda: async_get(rig, f"{server.url}{size}"), size)
        scenario("upload", lambda: async_post(rig, server.url, size), size)
        scenario("download (blocking Client)",
                 lambda: blocking_get(rig, f"{server.url}{size}"), size)
        # the network drops the bearer; the driver sees it (its URC) before the GET
        rig.proc.fault("network-lost")
        if not rig.modem.at.wait_for(lambda: not rig.modem.net_open, 3000):
            sys.exit(f"{dialect}: the driver did not see the network loss")
        scenario("reconnect after network loss",
                 lambda: async_get(rig, f"{server.url}{RECONNECT_BYTES}"), RECONNECT_BYTES)
        if not rig.modem.bearer_reopens:
            sys.exit(f"{dialect}: the GET after the network loss reopened no bearer")
    return rows


def line(r: dict) -> str:
    bps = f"{r['Bps']:>7}" if "Bps" in r else "      -"
    return (f"{r['dialect']:8} {r['scenario']:29} {r['duration_s']:7.2f} s "
            f"max {r['max_gap_ms']:7.1f} ms  p99 {r['p99_gap_ms']:7.1f} ms  {bps} B/s")


def bound_ms(dialect: str) -> float:
    """The longest single AT exchange of a transfer: the dialect's largest send, with
    ~60 bytes of command, prompt and confirmation, at line rate (SARA-R4: + its wait)."""
    return (MAX_SEND[dialect] + 60) / BYTES_PER_MS + (50 if dialect == "sara-r4" else 0)


def report(rows: list[dict], size: int) -> str:
    lines = [
        "# asyncio event-loop stalls from modem operations, per dialect at 115200 baud", "",
        f"A ticker task wakes every {TICK_MS} ms next to each scenario; the figures are the "
        "gaps between its wakes while the scenario ran: the largest and the 99th "
        f"percentile (minus {TICK_MS} ms: how long the loop was stalled), and how many "
        "gaps there were. Each dialect's firmware driver (on CPython) talks to a virtual "
        "modem of that dialect paced at 115200 baud, to an HTTP server on 127.0.0.1. "
        "Measured by `bench/bench_async.py` on this machine (2 cores).", "",
        "One AT exchange still runs without yielding (a send: command, prompt, payload, "
        "confirmation; a read: command and its reply), so the largest gap is bounded by "
        "the longest single exchange: about (payload + header bytes) / "
        f"{BYTES_PER_MS} bytes per ms (column *bound*: the dialect's largest send; "
        "SARA-R4 adds its ~50 ms wait after the `@` prompt). The blocking `Client` row is "
        "the comparison: it stalls the loop for the whole transfer.", "",
        f"Download and upload: {size} bytes (`AsyncClient`, poll_ms=50, default "
        f"chunk 512); reconnect: a {RECONNECT_BYTES}-byte GET whose connect reopens the "
        "bearer. Rows marked **over** have a largest gap above the bound.", "",
        "| dialect | scenario | duration (s) | largest gap (ms) | p99 gap (ms) | gaps "
        "| B/s | bound (ms) |",
        "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        over = " **over**" if r["max_gap_ms"] > r["bound_ms"] + 2 * TICK_MS else ""
        lines.append(f"| {r['dialect']} | {r['scenario']} | {r['duration_s']} | "
                     f"{r['max_gap_ms']}{over} | {r['p99_gap_ms']} | {r['wakes']} | "
                     f"{r.get('Bps', '-')} | {r['bound_ms']} |")
    lines += ["", NOTE]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dialects", nargs="+", default=DIALECTS, choices=DIALECTS)
    ap.add_argument("--bytes", type=int, default=64 * 1024)
    ap.add_argument("--quick", action="store_true", help="8 KiB transfers: a fast check")
    args = ap.parse_args()
    size = 8 * 1024 if args.quick else args.bytes
    server = Server()
    try:
        rows = [row for d in args.dialects for row in run_dialect(d, size, server)]
    finally:
        server.close()
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "async.json").write_text(json.dumps(rows, indent=1) + "\n")
    (REPORTS / "async.md").write_text(report(rows, size))
    print(f"report: {REPORTS / 'async.md'}")


if __name__ == "__main__":
    main()
