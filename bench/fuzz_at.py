"""Fuzz the firmware's AT core with mutated SIM7600 streams (issue 10).

Each input is a realistic SIM7600 byte stream (a reply with echo, URCs in the middle,
length-framed binary reads, data prompts, bring-up answers, late replies) mutated by
byte flips, insertions of random bytes or protocol fragments, deletions, duplications
and truncation, then cut into random pieces. It drives the real Parser + Engine with the
SIM7600 driver's URC handlers registered (no UART: the bytes go to ``receive()``), in
two ways: with a command in flight (then ``finish()`` or, if it never finishes,
``abort()``; and the reply goes through the driver's own reply parsers: signal,
registration, DNS, framed read) and with the engine idle.

Counted per input:
- crash: any exception escaping receive()/finish()/abort() other than the documented
  CommandError, any non-documented exception from the reply parsers (only OSError and
  the ModemError family are documented), or an engine left busy after finish/abort;
- hang: an input taking more than 1 s (a watchdog also stops one after 10 s);
- memory: peak RSS of each worker (getrusage), and the peak of Python allocations over
  a tracemalloc-instrumented sample run.

Run: .venv/bin/python bench/fuzz_at.py [--inputs N] [--workers W] [--seed S]
Prints the figures and writes bench/reports/fuzz_at.md and .json.
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
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "firmware"))

from synack_host.sim.shims import install  # noqa: E402

install()

from synack import tcp  # noqa: E402
from synack.at.engine import Engine  # noqa: E402
from synack.at.errors import CommandError, ModemError  # noqa: E402
from synack.at.parser import Parser  # noqa: E402
from synack.modems import base, sim7600  # noqa: E402

REPORTS = ROOT / "bench" / "reports"
HANG_S = 1.0
WATCHDOG_S = 10
MAX_EXAMPLES = 5

FRAGMENTS = [b"\r\n", b"\r", b"\n", b"OK", b"\r\nOK\r\n", b"ERROR", b"> ", b">", b",", b":",
             b"\"", b"+CIPRXGET: 2,", b"+CIPRXGET: 1,", b"+IPCLOSE:", b"+CIPOPEN:",
             b"+CIPSEND:", b"+CIPCLOSE:", b"+NETOPEN:", b"+CME ERROR:", b"RDY", b"+CSQ:",
             b"+CREG:", b"+CEREG:", b"+CDNSGIP:", b"1500", b"99999", b"-1", b"x", b"\x00",
             b"\xff", b"AT+CSQ\r"]
URCS = [b"+CIPRXGET: 1,0", b"+CIPRXGET: 1,3", b"+IPCLOSE: 0,1", b"+IPCLOSE: 1,2",
        b"+CIPOPEN: 2,0", b"+CIPOPEN: 0,1", b"+CIPCLOSE: 1,0", b"+CIPSEND: 0,5,5",
        b"+CIPSEND: 3,5,-1", b"+NETOPEN: 0", b"+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY",
        b"+NETCLOSE: 0", b"RDY", b"+CPIN: READY", b"SMS DONE", b"PB DONE", b"+CREG: 1"]


def _urc(rnd):
    return b"\r\n" + rnd.choice(URCS) + b"\r\n"


def _maybe_urcs(rnd):
    return b"".join(_urc(rnd) for _ in range(rnd.choice((0, 0, 0, 1, 2))))


def _read_stream(rnd, echo):
    n = rnd.choice((0, 1, 5, 64, 512, 1460, 1500, rnd.randrange(1500)))
    payload = rnd.randbytes(n) if rnd.random() < 0.7 else (b"\r\nOK\r\n+IPCLOSE: 0,1\r\n" * 80)[:n]
    return ((b"AT+CIPRXGET=2,0,1500\r" if echo else b"") + _maybe_urcs(rnd)
            + b"\r\n+CIPRXGET: 2,0,%d,%d\r\n" % (n, rnd.randrange(3000)) + payload
            + _maybe_urcs(rnd) + b"\r\nOK\r\n" + _maybe_urcs(rnd))


# (command, response prefix, payload to send, stream maker, reply interpreter name)
def _commands():
    return [
        (b"AT+CSQ", b"+CSQ:", None,
         lambda r, e: (b"AT+CSQ\r" if e else b"") + _maybe_urcs(r)
         + b"\r\n+CSQ: %d,99\r\n\r\nOK\r\n" % r.choice((0, 20, 31, 99, 150)), "csq"),
        (b"AT+CEREG?", b"+CEREG:", None,
         lambda r, e: _maybe_urcs(r) + b"\r\n+CEREG: 0,%d\r\n" % r.randrange(6)
         + _maybe_urcs(r) + b"\r\nOK\r\n", "reg"),
        (b'AT+CDNSGIP="example.com"', b"+CDNSGIP:", None,
         lambda r, e: _maybe_urcs(r) + (b'\r\n+CDNSGIP: 1,"example.com","93.184.216.34"\r\n'
                                        b"\r\nOK\r\n" if r.random() < 0.8 else
                                        b"\r\n+CDNSGIP: 0,10\r\n\r\nERROR\r\n"), "dns"),
        (b"AT+CIPRXGET=2,0,1500", b"+CIPRXGET: 2,", None, _read_stream, "read"),
        (b"AT+CIPSEND=0,5", None, b"hello",
         lambda r, e: (b"AT+CIPSEND=0,5\r" if e else b"") + b"\r\n> " + _maybe_urcs(r)
         + b"\r\nOK\r\n" + b"\r\n+CIPSEND: 0,5,5\r\n", None),
        (b'AT+CIPOPEN=0,"TCP","10.0.0.1",80', None, None,
         lambda r, e: b"\r\nOK\r\n" + _maybe_urcs(r) + b"\r\n+CIPOPEN: 0,%d\r\n"
         % r.choice((0, 0, 1, 4, 10)), None),
        (b"AT+CIPCLOSE?", b"+CIPCLOSE:", None,
         lambda r, e: _maybe_urcs(r) + b"\r\n+CIPCLOSE: 1,0,0,0,0,0,0,0,0,0\r\n\r\nOK\r\n",
         None),
        (b"ATI", None, None,
         lambda r, e: b"\r\nManufacturer: SIMCOM INCORPORATED\r\nModel: SIMCOM_SIM7600G-H"
         b"\r\nRevision: LE20B04SIM7600G22\r\nIMEI: 861234567890123\r\n+GCAP: +CGSM"
         b"\r\n\r\nOK\r\n", None),
        (b"AT+NETOPEN", None, None,
         lambda r, e: b"\r\nOK\r\n" + _maybe_urcs(r) + b"\r\n+NETOPEN: 0\r\n"
         if r.random() < 0.7 else b"\r\n+IP ERROR: Network is already opened\r\n"
         b"\r\nERROR\r\n", None),
    ]


COMMANDS = _commands()


def mutate(rnd, data):
    data = bytearray(data)
    for _ in range(rnd.choice((0, 1, 1, 2, 3, 5, 8))):
        op = rnd.randrange(7)
        pos = rnd.randrange(len(data) + 1)
        if op == 0 and data:                       # flip bits of one byte
            i = min(pos, len(data) - 1)
            data[i] ^= 1 << rnd.randrange(8)
        elif op == 1:                              # insert random bytes
            data[pos:pos] = rnd.randbytes(rnd.choice((1, 1, 2, 8, 100, 400)))
        elif op == 2:                              # insert a protocol fragment
            data[pos:pos] = rnd.choice(FRAGMENTS)
        elif op == 3 and data:                     # delete a range
            del data[pos:pos + rnd.choice((1, 1, 2, 10, 200))]
        elif op == 4:                              # truncate
            del data[pos:]
        elif op == 5 and data:                     # duplicate a range
            end = pos + rnd.choice((2, 20, 300))
            data[pos:pos] = data[pos:end]
        elif op == 6:                              # an over-long line
            data[pos:pos] = b"L" * rnd.choice((255, 256, 257, 300, 2000))
    return bytes(data)


def fragment(rnd, data):
    style = rnd.randrange(4)
    if style == 0 or not data:
        return [data]
    if style == 1:  # UART-sized reads
        size = rnd.choice((1, 7, 64, 256))
        return [data[i:i + size] for i in range(0, len(data), size)]
    cuts = sorted(rnd.randrange(len(data) + 1) for _ in range(rnd.choice((1, 3, 20))))
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)], strict=True)]


class ReplayAt:
    """What the SIM7600 driver sees as its channel: the engine (URC handlers) and a
    ``command()`` that answers with the reply the fuzzed engine produced."""

    def __init__(self, engine):
        self.engine = engine
        self.needs_resync = False
        self.outcome = None

    def command(self, cmd, prefix=None, payload=None, timeout_ms=5000):
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    def wait_for(self, predicate, timeout_ms):
        return predicate()

    def poll(self, timeout_ms=0):
        return None


class Harness:
    def __init__(self):
        self.engine = Engine(Parser(urcs=sim7600.URCS, framed=sim7600.FRAMED,
                                    max_payload=sim7600.MAX_READ))
        self.at = ReplayAt(self.engine)
        self.modem = sim7600.SIM7600(None, apn="internet", channel=self.at)
        self.buf = memoryview(bytearray(sim7600.MAX_READ))
        self.last = (b"", False, [])
        self.reset_links()

    def reset_links(self):
        for n in range(4):  # links in the states the handlers act on
            conn = tcp.Connection()
            conn.fire(tcp.CONNECT)
            if n:
                conn.fire(tcp.CONNECTED)
            if n == 3:
                conn.fire(tcp.CLOSE)
            self.modem.links[n] = sim7600.Link(conn)

    def interpret(self, kind, outcome):
        """Run the driver's reply parser on what the engine returned."""
        self.at.outcome = outcome
        try:
            if kind == "csq":
                base.signal_dbm(self.at)
            elif kind == "reg":
                base.registration(self.at)
            elif kind == "dns":
                self.modem.getaddrinfo("example.com", 80)
            elif kind == "read":
                link = self.modem.links[0] or sim7600.Link(tcp.Connection())
                self.modem.read_link(0, link, self.buf)
        except (OSError, ModemError):
            pass  # the documented errors

    def run(self, rnd):
        eng = self.engine
        cmd, prefix, payload, make, kind = rnd.choice(COMMANDS)
        in_flight = rnd.random() < 0.75
        stream = make(rnd, rnd.random() < 0.5)
        if rnd.random() < 0.3:
            stream = make(rnd, False) + stream  # a late reply before this one
        data = mutate(rnd, stream)
        chunks = fragment(rnd, data)
        self.last = (cmd, in_flight, chunks)
        if in_flight:
            eng.begin(cmd, prefix, payload, now=0)
        for c in chunks:
            if eng.receive(c) != len(c):
                raise AssertionError("receive() did not take all bytes")
            eng.take_output()
        if len(eng._lines) > 16:
            raise AssertionError("reply lines not capped")
        if in_flight:
            if eng.done:
                try:
                    outcome = eng.finish()
                except CommandError as e:
                    outcome = e
                if kind:
                    self.interpret(kind, outcome)
            else:
                eng.abort()
        if eng.busy:
            raise AssertionError("engine busy after finish/abort")
        if rnd.random() < 0.01:
            self.reset_links()
        return len(data)


class Watchdog(Exception):
    pass


def _alarm(signum, frame):
    raise Watchdog("input ran for %d s" % WATCHDOG_S)


def worker(args):
    index, count, seed, traced = args
    rnd = random.Random(seed * 1000003 + index)
    h = Harness()
    signal.signal(signal.SIGALRM, _alarm)
    crashes = hangs = total_bytes = 0
    examples = []
    slowest = 0.0
    if traced:
        tracemalloc.start()
    t0 = time.perf_counter()
    for i in range(count):
        signal.setitimer(signal.ITIMER_REAL, WATCHDOG_S)
        t = time.perf_counter()
        try:
            total_bytes += h.run(rnd)
        except Watchdog:
            hangs += 1
            h = Harness()
        except Exception as e:  # a crash: record, start over with a fresh harness
            crashes += 1
            if len(examples) < MAX_EXAMPLES:
                cmd, in_flight, chunks = h.last
                examples.append({"worker": index, "input": i, "error": repr(e)[:300],
                                 "command": cmd.decode(), "in_flight": in_flight,
                                 "chunk_sizes": [len(c) for c in chunks][:50],
                                 "data_hex": b"".join(chunks).hex()[:4000]})
            h = Harness()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        dt = time.perf_counter() - t
        slowest = max(slowest, dt)
        if dt > HANG_S:
            hangs += 1
    elapsed = time.perf_counter() - t0
    traced_peak = tracemalloc.get_traced_memory()[1] if traced else None
    if traced:
        tracemalloc.stop()
    return {"worker": index, "inputs": count, "bytes": total_bytes, "crashes": crashes,
            "hangs": hangs, "examples": examples, "slowest_ms": round(slowest * 1000, 3),
            "seconds": round(elapsed, 2),
            "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "traced_peak_kb": None if traced_peak is None else round(traced_peak / 1024, 1),
            "engine": {"noise": h.engine.noise, "malformed": h.engine.malformed,
                       "overflow": h.engine.overflow, "unexpected": h.engine.unexpected,
                       "discarded": h.engine.parser.discarded}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=1_000_000, help="total inputs (1e6)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument("--traced", type=int, default=20_000,
                    help="inputs of a separate tracemalloc-instrumented run (0: none)")
    args = ap.parse_args()

    per = [args.inputs // args.workers + (1 if i < args.inputs % args.workers else 0)
           for i in range(args.workers)]
    print(f"fuzzing the AT core: {args.inputs} inputs on {args.workers} workers ...",
          flush=True)
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        jobs = [(i, n, args.seed, False) for i, n in enumerate(per)]
        if args.traced:
            jobs.append((args.workers, args.traced, args.seed, True))
        results = pool.map(worker, jobs, chunksize=1)
    wall = time.perf_counter() - t0
    main_runs = results[:args.workers]
    traced = results[args.workers] if args.traced else None
    total = {
        "inputs": sum(r["inputs"] for r in main_runs),
        "bytes": sum(r["bytes"] for r in main_runs),
        "crashes": sum(r["crashes"] for r in main_runs) + (traced["crashes"] if traced else 0),
        "hangs": sum(r["hangs"] for r in main_runs) + (traced["hangs"] if traced else 0),
        "slowest_input_ms": max(r["slowest_ms"] for r in results),
        "peak_rss_kb_per_worker": max(r["maxrss_kb"] for r in main_runs),
        "traced_peak_kb": traced["traced_peak_kb"] if traced else None,
        "traced_inputs": traced["inputs"] if traced else 0,
        "wall_seconds": round(wall, 1),
        "inputs_per_second": round(sum(r["inputs"] for r in main_runs) / wall),
    }
    report = {"measured": time.strftime("%Y-%m-%d %H:%M"), "workers": args.workers,
              "seed": args.seed, "python": sys.version.split()[0], "total": total,
              "runs": results}
    print(f"inputs {total['inputs']} ({total['bytes'] / 1e6:.1f} MB), crashes "
          f"{total['crashes']}, hangs {total['hangs']} (slowest input "
          f"{total['slowest_input_ms']} ms), peak RSS {total['peak_rss_kb_per_worker']} KiB "
          f"per worker, traced peak {total['traced_peak_kb']} KiB, {total['wall_seconds']} s "
          f"({total['inputs_per_second']} inputs/s)")
    for r in results:
        for ex in r["examples"]:
            print("  crash:", ex)

    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "fuzz_at.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# AT core fuzzing (issue 10)",
        "",
        f"Measured {report['measured']} by `bench/fuzz_at.py --inputs {args.inputs} "
        f"--workers {args.workers} --seed {args.seed}` on CPython {report['python']}.",
        "",
        "Mutated SIM7600 streams (bit flips, random and protocol-fragment insertions,",
        "deletions, duplications, truncation, over-long lines; random fragmentation) fed",
        "to Parser + Engine with the SIM7600 URC handlers registered, with a command in",
        "flight (then finish/abort and the driver's reply parsers) and idle.",
        "",
        "| inputs | bytes | crashes | hangs (> 1 s) | slowest input | peak RSS / worker "
        "| Python heap peak (tracemalloc) | wall time |",
        "|---|---|---|---|---|---|---|---|",
        f"| {total['inputs']} | {total['bytes']} | {total['crashes']} | {total['hangs']} "
        f"| {total['slowest_input_ms']} ms | {total['peak_rss_kb_per_worker']} KiB "
        f"| {total['traced_peak_kb']} KiB over {total['traced_inputs']} inputs "
        f"| {total['wall_seconds']} s |",
        "",
        "| worker | inputs | crashes | hangs | seconds | max RSS KiB | noise bytes "
        "| malformed URCs | lines over cap | discarded bytes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        e = r["engine"]
        lines.append(f"| {r['worker']}{' (traced)' if r['traced_peak_kb'] is not None else ''}"
                     f" | {r['inputs']} | {r['crashes']} | {r['hangs']} | {r['seconds']} "
                     f"| {r['maxrss_kb']} | {e['noise']} | {e['malformed']} | {e['overflow']} "
                     f"| {e['discarded']} |")
    examples = [ex for r in results for ex in r["examples"]]
    if examples:
        lines += ["", "## Crashes (first few)", ""]
        lines += [f"- worker {ex['worker']} input {ex['input']}: `{ex['error']}`"
                  for ex in examples]
    lines.append("")
    (REPORTS / "fuzz_at.md").write_text("\n".join(lines))
    print(f"report: {REPORTS / 'fuzz_at.md'}")


if __name__ == "__main__":
    main()
