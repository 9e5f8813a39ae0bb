"""Fuzz the HTTP response side (issue 10): a long run of mutated server responses.

Each input is a realistic response (Content-Length, chunked with extensions and
trailers, delimited by the end of the connection, 1xx first, HTTP/1.0; headers a
poller reads: ETag, Last-Modified, Retry-After, Location) with 1 to 4 mutations: bit
flips, inserted and deleted bytes, truncation, huge or odd numbers (a petabyte
Content-Length, 2**64, "-1", "+5", "\u00b2", Arabic-Indic digits, 9 hex digits),
non-ASCII and control bytes in header lines, extra framing headers, bare LF, obs-fold.

For every input:

1. the sans-I/O reader (``synack.http.response.Reader``) reads it whole and again in a
   random fragmentation (pieces of 1 to 64 bytes, or byte by byte) with random limits;
   both must give the same result (else a *divergence*);
2. on a head, what the client and the poller do with it: ``text()`` of the reason and
   of every value, ``Response.header()``, ``retry_after_ms()``, and following a 3xx's
   Location the way ``core.BaseClient._follow`` does (``join_url``, ``parse_url``);
3. every 16th input also goes through ``Poller.poll()`` with a real ``Client`` over a
   scripted socket backend (in random pieces), which must return an outcome.

A *crash* is any exception that is not an ``HTTPError`` (from ``poll()``: any
exception). A *hang* is one input taking over 1 s (a 5 s timer also interrupts a
real loop). Memory: each worker's peak RSS (getrusage), and the largest Python
allocation for one input (tracemalloc, over the first ``--traced`` inputs of each
worker: tracing slows the run down).

Run: .venv/bin/python bench/fuzz_http.py [--inputs N] [--workers 2] [--seed S]
Prints the figures and writes bench/reports/fuzz_http.md and .json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import resource
import signal
import sys
import time
import traceback
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "firmware"))

from synack_host.sim.shims import install  # noqa: E402

install()

from synack import tcp  # noqa: E402
from synack.backend import Backend  # noqa: E402
from synack.http.client import Client  # noqa: E402
from synack.http.core import Plan  # noqa: E402
from synack.http.errors import HTTPError  # noqa: E402
from synack.http.head import text  # noqa: E402
from synack.http.response import DATA, END, NEED_DATA, RESPONSE, Reader  # noqa: E402
from synack.poll import CHANGED, FAILED, NOT_MODIFIED, Poller, retry_after_ms  # noqa: E402

REPORTS = ROOT / "bench" / "reports"
HANG_S = 1.0
HARD_TIMEOUT_S = 5
POLL_EVERY = 16
KEEP_EXAMPLES = 5

NUMBERS = [b"999999999999999", b"1000000000000000", b"18446744073709551616", b"1" * 40,
           b"-1", b"+5", b"0x10", b"1e9", b"7_0", b" 5", b"5 5", b"\xc2\xb2", b"\xd9\xa1",
           b"\xd9\xa1\xd9\xa2", b"ffffffff", b"fffffffff", b"00000000000000000001", b"0"]
NOT_ASCII = [b"\xff", b"\xfe\xff", b"\xc3\xa9", b"\xc3", b"\xe2\x80\xa8", b"\xed\xa0\x80",
             b"\x85", b"\xc0\xaf", b"\x00", b"\r", b"\x7f", b"\x1b[2J", b"\xf0\x9f\x92\xa9"]
VALUES = [b'"v1"', b'W/"x"', b"Wed, 21 Oct 2015 07:28:00 GMT", b"120", b"/next",
          b"http://10.0.0.2:8080/a?b=1", b"//other/x", b"?page=2", b"rel/ative",
          b"http://../x", b"http://" + b"a" * 64 + b".example/", b"http://h:+80/",
          b"http://h:\xc2\xb2/", b"https://h/", b"/\xff\xfe", b"http://h\xc3\xa9.example/"]
FIELDS = [b"ETag", b"Last-Modified", b"Retry-After", b"Location", b"Content-Type",
          b"Cache-Control", b"X-Name", b"Set-Cookie"]
FRAMING = [b"Content-Length: ", b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip",
           b"Connection: close", b"Connection: keep-alive", b" obs-fold", b"\tfolded"]


class Hang(BaseException):
    """Raised by the hard timer: one input ran for HARD_TIMEOUT_S."""


# -- inputs ---------------------------------------------------------------------------------
def realistic(rng: random.Random) -> bytes:
    """A valid response of the kinds servers send."""
    version = rng.choice([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"])
    status = rng.choice([200, 200, 200, 204, 206, 301, 302, 303, 304, 307, 308, 400, 404,
                         429, 500, 503])
    reason = rng.choice([b"OK", b"Found", b"Service Unavailable", b"", b"Not Modified",
                         b"Besch\xe4ftigt", b"Tr\xc3\xa8s bien"])
    out = bytearray()
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        out += rng.choice([b"HTTP/1.1 100 Continue\r\n\r\n",
                           b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"])
    out += b"%s %d %s\r\n" % (version, status, reason)
    for _ in range(rng.randint(0, 5)):
        out += rng.choice(FIELDS) + b": " + rng.choice(VALUES) + b"\r\n"
    body = rng.randbytes(rng.choice([0, 1, 5, 40, 300, 1500]))
    framing = rng.choice(["length", "length", "chunked", "chunked", "close"])
    if framing == "length":
        out += b"Content-Length: %d\r\n\r\n" % len(body) + body
    elif framing == "chunked":
        out += b"Transfer-Encoding: chunked\r\n\r\n"
        pos = 0
        while pos < len(body):
            n = rng.randint(1, 700)
            piece = body[pos:pos + n]
            pos += n
            out += b"%x%s\r\n" % (len(piece), rng.choice([b"", b";x=1", b" ; a=\"b\""]))
            out += piece + b"\r\n"
        out += b"0\r\n"
        if rng.random() < 0.3:
            out += b"X-Sum: 55\r\n"
        out += b"\r\n"
    else:
        out += b"\r\n" + body
    return bytes(out)


def mutate(rng: random.Random, data: bytes) -> bytes:
    d = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        pos = rng.randint(0, len(d))
        head_end = d.find(b"\r\n\r\n")
        in_head = rng.randint(0, head_end) if head_end > 0 else pos
        if op == 0 and d:                                    # bit flip
            i = rng.randrange(len(d))
            d[i] ^= 1 << rng.randrange(8)
        elif op == 1:                                        # insertion
            d[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 2:                                        # deletion
            del d[pos:pos + rng.randint(1, 16)]
        elif op == 3:                                        # truncation
            del d[pos:]
        elif op == 4:                                        # a number where one was
            at = d.find(rng.choice([b"Content-Length: ", b"Retry-After: "]))
            if at >= 0:
                start = d.index(b" ", at) + 1
                end = d.find(b"\r\n", start)
                d[start:end if end >= 0 else len(d)] = rng.choice(NUMBERS)
            else:
                d[pos:pos] = rng.choice(NUMBERS)
        elif op == 5:                                        # a chunk size or status
            at = d.find(b"\r\n\r\n")
            if at >= 0 and rng.random() < 0.5:
                d[at + 4:at + 4] = rng.choice(NUMBERS) + b"\r\n"
            else:
                d[9:12] = rng.choice(NUMBERS)[:3]
        elif op == 6:                                        # non-ASCII in the head
            d[in_head:in_head] = rng.choice(NOT_ASCII)
        elif op == 7:                                        # a header line
            line = rng.choice(FRAMING + FIELDS)
            if line.endswith(b": ") or not line.startswith((b" ", b"\t", b"Co", b"Tr")):
                line = line.rstrip(b": ") + b": " + rng.choice(NUMBERS + NOT_ASCII + VALUES)
            at = d.find(b"\r\n")
            at = at + 2 if at >= 0 else len(d)
            d[at:at] = line + b"\r\n"
        else:                                                # CRLF -> LF, or CR alone
            at = d.find(b"\r\n", pos)
            if at >= 0:
                d[at:at + 2] = rng.choice([b"\n", b"\r", b"\r\r\n", b""])
    return bytes(d)


def fragment(rng: random.Random, data: bytes) -> list:
    r = rng.random()
    if r < 0.1 and len(data) <= 600:
        return [data[i:i + 1] for i in range(len(data))]
    out, pos = [], 0
    while pos < len(data):
        n = rng.randint(1, 64)
        out.append(data[pos:pos + n])
        pos += n
    return out


LIMITS = [{}, {"max_body": 4096}, {"max_body": 1048576},
          {"max_header_bytes": 512, "max_headers": 8, "max_line": 128, "max_body": 1000}]


# -- driving the reader and what the client does with a head ------------------------------
def read(chunks, method, eof, limits):
    """The reader's result, as comparable values; ("error", ...) for an HTTPError."""
    r = Reader(**limits)
    r.start(method)
    out = []
    size = 0
    heads = []
    try:
        for chunk in chunks:
            if not chunk:
                continue
            r.feed(chunk)
            while True:
                kind, value = r.next_event()
                if kind == NEED_DATA:
                    break
                if kind == DATA:
                    size += len(value)
                elif kind == RESPONSE:
                    heads.append(value)
                    out.append(("head", value.status, value.reason, tuple(value.headers)))
                elif kind == END:
                    return out + [("end", size, tuple(value))], heads
        if eof:
            r.feed_eof()
            while True:
                kind, value = r.next_event()
                if kind == NEED_DATA:
                    break
                if kind == DATA:
                    size += len(value)
                elif kind == END:
                    return out + [("end", size, tuple(value))], heads
    except HTTPError as e:
        return out + [("error", type(e).__name__, str(e))], heads
    return out + [("need", size)], heads


class _Resp:
    """What ``BaseClient._follow`` reads of a response."""

    def __init__(self, head):
        self.head = head
        self.status = head.status


def use_head(client, head):
    """What the client and the poller do with a response head: may raise HTTPError
    (a Location we cannot follow), nothing else."""
    text(head.reason)
    for _, value in head.headers:
        text(value)
    retry_after_ms(head.header(b"retry-after"))
    for name in (b"etag", b"last-modified", b"content-type"):
        v = head.header(name)
        if v is not None:
            text(v)
    if head.status in (301, 302, 303, 307, 308) and head.header(b"location") is not None:
        plan = Plan(client, "GET", "http://10.0.0.2:8080/a/b?c=1", None, None, None, None)
        client._hop(plan)
        client._follow(plan, _Resp(head))
        client._hop(plan)   # the next request's head: host, port and target checked


class Scripted(Backend):
    """A socket backend without a network: each connection reads the next script, in
    random pieces, then the end of the stream. Its handle: [script, bytes read]."""

    name = "scripted"

    def __init__(self, rng):
        self.rng = rng
        self.scripts = []

    def connect_start(self, sock, host, port, limit_ms):
        host.encode("idna")   # as CPython's resolver: UnicodeError for a bad label
        sock.tcp.fire(tcp.CONNECT)
        sock.tcp.fire(tcp.CONNECTED)
        return [self.scripts.pop(0) if self.scripts else b"", 0], True

    def send(self, sock, mv, timeout_ms):
        return len(mv)

    def recv_into(self, sock, mv, timeout_ms):
        data, pos = sock.handle
        n = min(len(mv), self.rng.randint(1, 200), len(data) - pos)
        mv[:n] = data[pos:pos + n]
        sock.handle[1] = pos + n
        return n

    def close(self, sock, timeout_ms):
        pass


def _on_change(resp):
    resp.header("etag")
    resp.header("content-type")
    resp.read()


# -- one worker ----------------------------------------------------------------------------
def _alarm(signum, frame):
    raise Hang()


def worker(args):
    index, n, seed, traced = args
    rng = random.Random(seed * 1000003 + index)
    signal.signal(signal.SIGALRM, _alarm)
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    client = Client(backend=Scripted(rng))
    backend = Scripted(rng)
    poller = Poller("http://10.0.0.2:8080/state", _on_change,
                    client=Client(backend=backend, chunk=256, max_redirects=2),
                    interval_ms=0, backoff_ms=1, backoff_cap_ms=10)
    stats = {"inputs": 0, "bytes": 0, "crashes": 0, "hangs": 0, "divergences": 0,
             "responses": 0, "bodies": 0, "http_errors": 0, "incomplete": 0,
             "redirects_checked": 0, "polls": 0, "poll_outcomes": [0, 0, 0],
             "slowest_s": 0.0, "traced_inputs": 0, "peak_alloc_per_input": 0,
             "peak_alloc_per_poll": 0}
    examples = {}
    # warm up every path once (first-call allocations are not per input)
    good = b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n"
    use_head(client, read([good], b"GET", True, {})[1][0])
    backend.scripts = [good, b"HTTP/1.1 200 OK\r\nETag: \"a\"\r\nContent-Length: 1\r\n\r\nx"]
    poller.poll()
    # a Location to https: the TLS layer (CPython's ssl, ~1.2 MB) and the client's one
    # TLS context (its CA store, ~0.6 MB) are made on their first use
    backend.scripts = [b"HTTP/1.1 302 Found\r\nLocation: https://10.0.0.2/x\r\n"
                       b"Content-Length: 0\r\n\r\n"]
    poller.poll()
    t0 = time.perf_counter()
    if traced:
        tracemalloc.start()
    for i in range(n):
        data = mutate(rng, realistic(rng)) if rng.random() < 0.97 else rng.randbytes(
            rng.randint(0, 200))
        method = b"HEAD" if rng.random() < 0.05 else b"GET"
        eof = rng.random() < 0.8
        limits = rng.choice(LIMITS)
        chunks = fragment(rng, data)
        tracing = traced and i < traced
        if traced and i == traced:
            tracemalloc.stop()
        if tracing:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        stage = "reader"
        signal.setitimer(signal.ITIMER_REAL, HARD_TIMEOUT_S)
        try:
            whole, heads = read([data], method, eof, limits)
            parts, _ = read(chunks, method, eof, limits)
            if parts != whole:
                stats["divergences"] += 1
                examples.setdefault("divergence", []).append(
                    {"input": repr(data[:300]), "whole": repr(whole)[:300],
                     "fragmented": repr(parts)[:300]})
            stage = "head"
            for head in heads:
                try:
                    use_head(client, head)
                except HTTPError:
                    pass
                if head.status in (301, 302, 303, 307, 308):
                    stats["redirects_checked"] += 1
            if tracing:
                peak = tracemalloc.get_traced_memory()[1] - base
                stats["peak_alloc_per_input"] = max(stats["peak_alloc_per_input"], peak)
            if i % POLL_EVERY == 0:
                stage = "poll"
                if tracing:
                    tracemalloc.reset_peak()
                    base = tracemalloc.get_traced_memory()[0]
                backend.scripts = [data, data, data]
                outcome, _ = poller.poll()
                stats["polls"] += 1
                stats["poll_outcomes"][outcome] += 1
                if tracing:
                    peak = tracemalloc.get_traced_memory()[1] - base
                    stats["peak_alloc_per_poll"] = max(stats["peak_alloc_per_poll"], peak)
        except Hang:
            stats["hangs"] += 1
            examples.setdefault("hang", []).append({"stage": stage, "input": repr(data[:300])})
        except Exception as e:  # noqa: BLE001 (counting them is the point)
            stats["crashes"] += 1
            key = "crash %s in %s: %s" % (type(e).__name__, stage,
                                          traceback.extract_tb(e.__traceback__)[-1].name)
            found = examples.setdefault(key, [])
            if len(found) < KEEP_EXAMPLES:
                found.append({"input": repr(data[:300]), "error": repr(e)[:200]})
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        took = time.perf_counter() - start
        if took > HANG_S:
            stats["hangs"] += 1
            examples.setdefault("hang", []).append({"stage": stage, "seconds": took,
                                                    "input": repr(data[:300])})
        stats["slowest_s"] = max(stats["slowest_s"], took)
        if tracing:
            stats["traced_inputs"] += 1
        stats["inputs"] += 1
        stats["bytes"] += len(data)
        last = whole[-1][0] if whole else "need"
        stats["responses"] += any(e[0] == "head" for e in whole)
        stats["bodies"] += last == "end"
        stats["http_errors"] += last == "error"
        stats["incomplete"] += last == "need"
    if tracemalloc.is_tracing():
        tracemalloc.stop()
    stats["seconds"] = time.perf_counter() - t0
    stats["rss_start_kib"] = rss_start
    stats["peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for v in examples.values():
        del v[KEEP_EXAMPLES:]
    stats["examples"] = examples
    return stats


# -- the run and its report -------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=1_000_000,
                    help="inputs in all (default 1,000,000)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument("--traced", type=int, default=20000,
                    help="inputs per worker measured with tracemalloc (default 20000)")
    args = ap.parse_args()

    shares = [args.inputs // args.workers + (i < args.inputs % args.workers)
              for i in range(args.workers)]
    print(f"fuzzing the HTTP response side: {args.inputs} inputs, {args.workers} workers, "
          f"seed {args.seed} ...", flush=True)
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")   # fresh workers: their own peak RSS
    with ctx.Pool(args.workers) as pool:
        results = pool.map(worker, [(i, n, args.seed, min(args.traced, n))
                                    for i, n in enumerate(shares)])
    duration = time.perf_counter() - t0

    total = {k: sum(r[k] for r in results) for k in
             ("inputs", "bytes", "crashes", "hangs", "divergences", "responses", "bodies",
              "http_errors", "incomplete", "redirects_checked", "polls", "traced_inputs")}
    outcomes = [sum(r["poll_outcomes"][i] for r in results) for i in range(3)]
    examples = {}
    for r in results:
        for k, v in r["examples"].items():
            examples.setdefault(k, []).extend(v)
    report = {
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "python": sys.version.split()[0],
        "seed": args.seed,
        "workers": args.workers,
        "duration_s": round(duration, 1),
        "inputs_per_s": round(total["inputs"] / duration),
        **total,
        "poll_outcomes": {"CHANGED": outcomes[CHANGED], "NOT_MODIFIED": outcomes[NOT_MODIFIED],
                          "FAILED": outcomes[FAILED]},
        "slowest_input_ms": round(max(r["slowest_s"] for r in results) * 1000, 2),
        "per_worker": [{"inputs": r["inputs"], "seconds": round(r["seconds"], 1),
                        "peak_rss_kib": r["peak_rss_kib"], "rss_start_kib": r["rss_start_kib"],
                        "peak_alloc_per_input_bytes": r["peak_alloc_per_input"],
                        "peak_alloc_per_poll_bytes": r["peak_alloc_per_poll"],
                        "traced_inputs": r["traced_inputs"]} for r in results],
        "examples": examples,
    }
    print(f"  {total['inputs']} inputs ({total['bytes'] / 1e6:.1f} MB) in {duration:.1f} s, "
          f"{report['inputs_per_s']} inputs/s")
    print(f"  crashes {total['crashes']}, hangs {total['hangs']}, divergences "
          f"{total['divergences']}")
    print(f"  reader: {total['responses']} heads, {total['bodies']} complete responses, "
          f"{total['http_errors']} HTTPErrors, {total['incomplete']} waiting for more")
    print(f"  {total['redirects_checked']} redirects followed or refused, {total['polls']} "
          f"polls: {report['poll_outcomes']}")
    for w, r in enumerate(report["per_worker"]):
        print(f"  worker {w}: peak RSS {r['peak_rss_kib'] / 1024:.1f} MiB; largest "
              f"allocation for one input: reader + head {r['peak_alloc_per_input_bytes']} B, "
              f"poll {r['peak_alloc_per_poll_bytes']} B (over {r['traced_inputs']} traced "
              f"inputs)")
    print(f"  slowest input {report['slowest_input_ms']} ms")
    for k, v in examples.items():
        print(f"  {k}: {v[0]}")

    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "fuzz_http.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# HTTP response fuzzing",
        "",
        f"Measured {report['measured']} by `bench/fuzz_http.py --inputs {args.inputs}` "
        f"(CPython {report['python']}, {args.workers} worker processes, seed {args.seed}).",
        "",
        "Inputs: realistic responses with 1 to 4 mutations (bit flips, insertions, "
        "deletions, truncation, huge and non-ASCII numbers, non-ASCII and control bytes "
        "in the head, extra framing headers, bare LF), 3 % random bytes. Each is read by "
        "the sans-I/O reader whole and in a random fragmentation (1-64 byte pieces, or "
        "byte by byte), its head handled as the client and poller do (header text, "
        "Retry-After, following a Location); every 16th also goes through "
        "`Poller.poll()` with a `Client` over a scripted socket backend.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| inputs | {total['inputs']:,} ({total['bytes'] / 1e6:.1f} MB) |",
        f"| duration | {duration:.1f} s ({report['inputs_per_s']:,} inputs/s) |",
        f"| crashes (an exception not in the HTTPError family) | {total['crashes']} |",
        f"| hangs (one input over {HANG_S:g} s) | {total['hangs']} |",
        f"| whole vs fragmented divergences | {total['divergences']} |",
        f"| slowest input | {report['slowest_input_ms']} ms |",
        f"| reader: heads / complete responses / HTTPErrors / waiting for more "
        f"| {total['responses']:,} / {total['bodies']:,} / {total['http_errors']:,} / "
        f"{total['incomplete']:,} |",
        f"| redirects followed or refused | {total['redirects_checked']:,} |",
        f"| polls: changed / not modified / failed | {outcomes[CHANGED]:,} / "
        f"{outcomes[NOT_MODIFIED]:,} / {outcomes[FAILED]:,} |",
        "",
        "| worker | inputs | seconds | peak RSS | largest allocation for one input: "
        "reader + head handling | one `Poller.poll()` |",
        "|---|---|---|---|---|---|",
    ]
    for w, r in enumerate(report["per_worker"]):
        lines.append(f"| {w} | {r['inputs']:,} | {r['seconds']} | "
                     f"{r['peak_rss_kib'] / 1024:.1f} MiB | "
                     f"{r['peak_alloc_per_input_bytes']:,} B | "
                     f"{r['peak_alloc_per_poll_bytes']:,} B |")
    lines += ["", f"Allocations measured with tracemalloc over the first "
              f"{report['per_worker'][0]['traced_inputs']:,} inputs of each worker (after "
              "one warm-up of every path); peak RSS by getrusage."]
    if examples:
        lines += ["", "## Findings", ""]
        for k, v in examples.items():
            lines.append(f"- {k} ({len(v)} kept): `{v[0]}`")
    lines.append("")
    (REPORTS / "fuzz_http.md").write_text("\n".join(lines))
    print(f"report: {REPORTS / 'fuzz_http.md'}")


if __name__ == "__main__":
    main()
