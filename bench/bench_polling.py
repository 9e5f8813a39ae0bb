"""Wire cost of 100 polls (issue 4): the firmware's Poller (on CPython, native sockets)
against the reference HTTP server, HTTP/1.1 keep-alive versus HTTP/1.0, measured with a
tcpdump capture on the loopback: TCP connections, packets and bytes on the wire (IP
packets: headers included), and connection reuse. Target: keep-alive >= 99 % reuse.

Run as root (tcpdump): .venv/bin/python bench/bench_polling.py -> bench/reports/polling.md
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "firmware"))

from synack_host.sim.shims import install  # noqa: E402

install()

import dpkt  # noqa: E402

from synack.http.client import Client  # noqa: E402
from synack.native import NativeBackend  # noqa: E402
from synack.poll import Poller  # noqa: E402
from synack_host.hil.capture import Capture, unavailable  # noqa: E402
from synack_host.hil.http_server import HttpServer  # noqa: E402

POLLS = 100
REPORTS = ROOT / "bench" / "reports"


def ip_bytes(pcap: Path) -> tuple[int, int]:
    """(packets, bytes of the IP packets) in a capture on the loopback (Ethernet framing)."""
    packets = total = 0
    with open(pcap, "rb") as f:
        for _, frame in dpkt.pcap.Reader(f):
            packets += 1
            total += len(frame) - 14
    return packets, total


def measure(version: str, tmp: Path) -> dict:
    with HttpServer(version=version) as server:
        server.set_resource(b"x" * 200)
        capture = Capture(tmp, ports=[server.port], name=f"http{version}") if not unavailable() \
            else None
        if capture:
            capture.start()
        client = Client(backend=NativeBackend(), http10=(version == "1.0"))
        poller = Poller(server.url(), lambda resp: resp.read(), client=client, interval_ms=0)
        t0 = time.monotonic()
        poller.run(polls=POLLS)
        seconds = time.monotonic() - t0
        poller.close()
        result = {"version": version, "polls": poller.polls, "ok": poller.ok,
                  "not_modified": poller.not_modified, "errors": poller.errors,
                  "client_connections": client.connections,
                  "server_connections": server.connections, "seconds": round(seconds, 3)}
    if capture:
        flows = capture.stop()
        packets, wire = ip_bytes(capture.pcap_path)
        result.update(wire_connections=len(flows), packets=packets, wire_bytes=wire,
                      payload_bytes=sum(f.client_bytes + f.server_bytes for f in flows))
    connections = result.get("wire_connections", result["server_connections"])
    result["reuse"] = round(1 - (connections - 1) / max(POLLS - 1, 1), 4)
    return result


def main() -> None:
    REPORTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure("1.1", Path(tmp)), measure("1.0", Path(tmp))]
    why = unavailable()
    lines = ["# Wire cost of 100 polls", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M')} by `bench/bench_polling.py`: the "
             "firmware's Poller (CPython, native sockets, 127.0.0.1) polling the reference "
             "HTTP server 100 times with ETag / If-None-Match (1 × 200 with a 200-byte body, "
             "then 304s).", ""]
    if why:
        lines += [f"No capture ({why}): wire columns are empty; connections are counted by "
                  "the server.", ""]
    lines += ["| HTTP | TCP connections | packets | bytes on the wire (IP) | TCP payload "
              "bytes | 200/304/errors | connection reuse | seconds |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['version']} | {r.get('wire_connections', r['server_connections'])}"
                     f" | {r.get('packets', '')} | {r.get('wire_bytes', '')} | "
                     f"{r.get('payload_bytes', '')} | {r['ok']}/{r['not_modified']}/"
                     f"{r['errors']} | {r['reuse'] * 100:.1f} % | {r['seconds']} |")
    ka, h10 = rows
    if "wire_bytes" in ka:
        lines += ["", f"Keep-alive saves {h10['packets'] - ka['packets']} packets and "
                  f"{h10['wire_bytes'] - ka['wire_bytes']} bytes per 100 polls "
                  f"({h10['wire_bytes'] / ka['wire_bytes']:.2f}× fewer bytes)."]
    lines += [f"Target: keep-alive ≥ 99 % connection reuse — measured {ka['reuse'] * 100:.1f} %"
              f" ({'met' if ka['reuse'] >= 0.99 else 'MISSED'})."]
    text = "\n".join(lines) + "\n"
    (REPORTS / "polling.md").write_text(text)
    (REPORTS / "polling.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
