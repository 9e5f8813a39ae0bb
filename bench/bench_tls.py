"""What software TLS costs (issue 11): the heap of one TLS session on MicroPython (the
unix port's mbedTLS through synack.tls, over a native synack socket), the bytes on the
wire of one full handshake versus one kept-alive poll (counted through the synack
socket: TLS records, no TCP/IP headers), and the added latency of an https poll over an
http one, over native sockets (CPython and the unix port) and over the virtual SIM7600
paced at 115200 baud.

The server is tests/test_tls.py's keep-alive HTTP(S) server (CPython ssl, a P-256 leaf
from a CA made by the openssl command); a poll is GET with If-None-Match answered 304.

Run: .venv/bin/python bench/bench_tls.py -> bench/reports/tls.md and tls.json
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "firmware"))
sys.path.insert(0, str(ROOT / "tests"))

from synack_host.sim.shims import install  # noqa: E402

install()

from test_stream_on_unix_port import run_mp  # noqa: E402
from test_tls import Server, make_pki  # noqa: E402

from synack.http.client import Client  # noqa: E402
from synack.poll import Poller  # noqa: E402

REPORTS = ROOT / "bench" / "reports"
POLLS = 100
MODEM_POLLS = 20


def polls_ms(client: Client, url: str, n: int) -> tuple[list[float], Poller]:
    p = Poller(url, client=client, interval_ms=0)
    p.poll()                           # the first: connection (+ handshake) and the 200
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        p.poll()
        times.append((time.perf_counter() - t0) * 1000)
    assert p.errors == 0, p.last_error
    return times, p


def cpython_side(pki: Path, backend=None, n: int = POLLS) -> dict:
    cadata = (pki / "ca.der").read_bytes()
    out: dict = {}
    with Server() as plain, Server(pki / "leaf.pem", pki / "leaf.key") as https:
        for scheme, server in (("http", plain), ("https", https)):
            c = Client(backend=backend, cadata=cadata, read_timeout_ms=30000,
                       connect_timeout_ms=30000)
            t0 = time.perf_counter()
            c.get(f"{scheme}://localhost:{server.port}/poll").read()
            first = (time.perf_counter() - t0) * 1000
            sock = c._pool[0][1]
            wire0 = (sock.wire_in, sock.wire_out) if scheme == "https" else None
            times, p = polls_ms(c, f"{scheme}://localhost:{server.port}/poll", n)
            row = {"first_request_ms": round(first, 2),
                   "poll_median_ms": round(statistics.median(times), 3),
                   "poll_p90_ms": round(sorted(times)[int(len(times) * 0.9) - 1], 3),
                   "polls": n + 1, "connections": c.connections, "handshakes": c.handshakes}
            if wire0 is not None:
                sock = c._pool[0][1]
                row["wire_bytes_per_poll"] = round(
                    (sock.wire_in + sock.wire_out - wire0[0] - wire0[1]) / (n + 1), 1)
            else:
                row["wire_bytes_per_poll"] = round(
                    (len(server.received) / len(server.paths))
                    + len(server._answer(b"GET /poll HTTP/1.1\r\nIf-None-Match: \"v1\"")), 1)
            out[scheme] = row
            p.close()
        # one handshake's records, through tls.wrap on a synack socket
        from synack import socket as synsocket
        from synack import tls
        s = synsocket.socket(backend=backend) if backend else synsocket.socket()
        s.settimeout(30)
        s.connect(("localhost", https.port))
        t0 = time.perf_counter()
        t = tls.wrap(s, "localhost", cadata=cadata)
        out["handshake"] = {"ms": round((time.perf_counter() - t0) * 1000, 2),
                            "wire_in": t.wire_in, "wire_out": t.wire_out,
                            "version": t._ssl.version(), "cipher": t._ssl.cipher()[0]}
        t.close()
    return out


MP_SCRIPT = r"""
import gc, time, ssl
from synack import tls
from synack.http.client import Client
CADATA = open(CA, 'rb').read()
def alloc():
    gc.collect()
    return gc.mem_alloc()
def rss():
    # mbedTLS's own buffers are malloc'd outside the GC heap: the process's anonymous RSS
    for line in open('/proc/self/status'):
        if line.startswith('RssAnon:'):
            return int(line.split()[1]) * 1024
# one TLS session: tls.wrap (context + handshake) on a connected synack socket
s = socket.socket()
s.settimeout(20)
s.connect(('127.0.0.1', HTTPS))
base = alloc()
rss0 = rss()
t0 = time.ticks_us()
ctx = tls.Context(cadata=CADATA)
after_ctx = alloc()
t1 = time.ticks_us()
t = tls.wrap(s, 'localhost', context=ctx)
t2 = time.ticks_us()
after_hs = alloc()
print('heap', after_ctx - base, after_hs - base, gc.mem_free() + gc.mem_alloc())
print('rss', rss() - rss0)
print('handshake', time.ticks_diff(t2, t1) // 1000, t.wire_in, t.wire_out)
c = t._ssl.cipher()
print('cipher', c[0] if isinstance(c, tuple) else c)
t.write(b'GET /poll HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: "v1"\r\n\r\n')
w = t.wire_in + t.wire_out
while t.readline() != b'\r\n':
    pass
print('poll_wire', t.wire_in + t.wire_out - w)
t.close()
del t, ctx
print('after_close', alloc() - base)
def polls(url, n):
    c = Client(cadata=CADATA, read_timeout_ms=20000)
    c.get(url).read()
    heap = alloc()
    times = []
    for i in range(n):
        t0 = time.ticks_us()
        r = c.get(url, headers={'If-None-Match': '"v1"'})
        r.drain()
        times.append(time.ticks_diff(time.ticks_us(), t0))
    times.sort()
    print('polls', url.split(':')[0], times[len(times) // 2], heap, c.connections, c.handshakes)
    c.close()
polls('http://localhost:%d/poll' % HTTP, N)
polls('https://localhost:%d/poll' % HTTPS, N)
"""


def micropython_side(pki: Path, tmp: Path) -> dict:
    with Server() as plain, Server(pki / "leaf.pem", pki / "leaf.key") as https:
        out = run_mp(MP_SCRIPT, tmp, None, HTTP=plain.port, HTTPS=https.port,
                     CA=str(pki / "ca.der"), N=POLLS)
    res: dict = {}
    for line in out:
        k, *v = line.split()
        if k == "heap":
            res["heap_context_bytes"], res["heap_session_bytes"], res["heap_total"] = map(
                int, v)
        elif k == "handshake":
            res["handshake_ms"], res["handshake_wire_in"], res["handshake_wire_out"] = map(
                int, v)
        elif k == "cipher":
            res["cipher"] = v[0]
        elif k == "rss":
            res["rss_session_bytes"] = int(v[0])
        elif k == "poll_wire":
            res["poll_wire_bytes"] = int(v[0])
        elif k == "after_close":
            res["heap_left_after_close"] = int(v[0])
        elif k == "polls":
            res[f"{v[0]}_poll_median_us"] = int(v[1])
            res[f"{v[0]}_client_heap_bytes"] = int(v[2])
            res[f"{v[0]}_connections_handshakes"] = [int(v[3]), int(v[4])]
    return res


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pki = make_pki(tmp)
        data: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "polls": POLLS}
        data["cpython_native"] = cpython_side(pki)
        print("CPython, native:", json.dumps(data["cpython_native"]))
        from modemrig import Rig
        with Rig("--baud", "115200", poll_ms=100) as rig:
            data["cpython_modem_115200"] = cpython_side(pki, rig.modem, MODEM_POLLS)
        print("CPython, virtual SIM7600 at 115200 baud:",
              json.dumps(data["cpython_modem_115200"]))
        mp_tmp = tmp / "mp"
        mp_tmp.mkdir()
        data["micropython_unix"] = micropython_side(pki, mp_tmp)
        print("MicroPython unix port:", json.dumps(data["micropython_unix"]))
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "tls.json").write_text(json.dumps(data, indent=2) + "\n")
    (REPORTS / "tls.md").write_text(report(data))
    print("wrote", REPORTS / "tls.md")


def report(d: dict) -> str:
    n, m, mp = d["cpython_native"], d["cpython_modem_115200"], d["micropython_unix"]
    lines = [
        "# What software TLS costs",
        "",
        f"Measured {d['date']} by `bench/bench_tls.py`: `synack.tls` and the https `Client` "
        "against tests/test_tls.py's keep-alive server (CPython ssl, P-256 leaf from a test "
        "CA). A poll is `GET` with `If-None-Match` answered `304`. Wire bytes are counted "
        "through the synack socket (TLS records or HTTP bytes; no TCP/IP headers).",
        "",
        "## Heap of one TLS session (MicroPython unix port, mbedTLS)",
        "",
        f"- `tls.Context` (one CA parsed): **{mp['heap_context_bytes']} B**",
        f"- context + handshake done (`tls.wrap`): **{mp['heap_session_bytes']} B** "
        f"of a {mp['heap_total']} B heap (measured with `gc.collect()` + `gc.mem_alloc()`, "
        "so mbedTLS's buffers count only where the port allocates them on the GC heap)",
        f"- mbedTLS's own buffers and handshake state, which the unix port allocates with "
        f"malloc outside the GC heap: the process's anonymous RSS grew by "
        f"**{mp['rss_session_bytes']} B** over the handshake (page-granular; on an ESP32 "
        "these come from the IDF heap, not MicroPython's)",
        f"- left on the GC heap after `close()` and dropping the objects: "
        f"{mp['heap_left_after_close']} B",
        f"- an https Client with its pooled connection holds "
        f"{mp['https_client_heap_bytes'] - mp['http_client_heap_bytes']} B more GC heap than "
        "an http one after the first request",
        "",
        "## Bytes on the wire: one full handshake vs one kept-alive poll",
        "",
        "| stack | handshake in / out (B) | kept-alive https poll (B) | http poll (B) |",
        "|---|---|---|---|",
        f"| CPython ssl ({n['handshake']['version']}, {n['handshake']['cipher']}) | "
        f"{n['handshake']['wire_in']} / {n['handshake']['wire_out']} | "
        f"{n['https']['wire_bytes_per_poll']} | {n['http']['wire_bytes_per_poll']} |",
        f"| MicroPython unix port (mbedTLS, {mp['cipher']}) | {mp['handshake_wire_in']} / "
        f"{mp['handshake_wire_out']} | {mp['poll_wire_bytes']} (one 304, a minimal request) | "
        "- |",
        "",
        "One handshake costs as many bytes as about %.0f kept-alive polls: keep-alive over "
        "TLS (one handshake for all the polls) is what makes https polling affordable on a "
        "metered cellular link." % ((n["handshake"]["wire_in"] + n["handshake"]["wire_out"])
                                    / n["https"]["wire_bytes_per_poll"]),
        "",
        "## Added latency of an https poll",
        "",
        "| path | http poll (median) | https poll (median) | added | first https request "
        "(CA context + TCP + TLS handshake) | connections / handshakes after all polls |",
        "|---|---|---|---|---|---|",
        f"| CPython, native sockets ({n['https']['polls']} polls) | "
        f"{n['http']['poll_median_ms']} ms | {n['https']['poll_median_ms']} ms | "
        f"{n['https']['poll_median_ms'] - n['http']['poll_median_ms']:.3f} ms | "
        f"{n['https']['first_request_ms']} ms | {n['https']['connections']} / "
        f"{n['https']['handshakes']} |",
        f"| MicroPython unix port, native ({d['polls']} polls) | "
        f"{mp['http_poll_median_us'] / 1000:.3f} ms | {mp['https_poll_median_us'] / 1000:.3f} ms"
        f" | {(mp['https_poll_median_us'] - mp['http_poll_median_us']) / 1000:.3f} ms | "
        f"{mp['handshake_ms']} ms (handshake alone) | "
        f"{mp['https_connections_handshakes'][0]} / {mp['https_connections_handshakes'][1]} |",
        f"| CPython, virtual SIM7600 at 115200 baud ({m['https']['polls']} polls) | "
        f"{m['http']['poll_median_ms']} ms | {m['https']['poll_median_ms']} ms | "
        f"{m['https']['poll_median_ms'] - m['http']['poll_median_ms']:.1f} ms | "
        f"{m['https']['first_request_ms']} ms | {m['https']['connections']} / "
        f"{m['https']['handshakes']} |",
        "",
        f"Handshake alone over the modem at 115200 baud: {m['handshake']['ms']} ms "
        f"({m['handshake']['wire_in']} B in, {m['handshake']['wire_out']} B out).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
