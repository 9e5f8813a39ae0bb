"""Boards shared through labgrid (issue 16): the HIL suite on 1 place versus sharded on 3
places in parallel, side by side in one run on one farm; and deploy throughput over
RFC 2217 (ser2net on 127.0.0.1) versus the board's local pty, same board, same baud.

Run: .venv/bin/python bench/bench_farm.py [-k EXPR]  -> bench/reports/farm.md (+ .json)
(the whole suite by default; the machine is shared, so the figures are as measured)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synack_host import farm
from synack_host.packaging import firmware_files

REPORTS = Path(__file__).resolve().parent / "reports"
SYNACK = [sys.executable, "-m", "synack_host.cli"]
BAUD = 115200


def run(args: list[str], env: dict | None = None, check: bool = True,
        timeout: float = 1800) -> tuple[float, str]:
    t0 = time.monotonic()
    res = subprocess.run([*SYNACK, *args], capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **(env or {})}, check=False)
    dt = time.monotonic() - t0
    if check and res.returncode != 0:
        sys.exit(f"synack {' '.join(args[:3])} failed ({res.returncode}): "
                 f"{(res.stdout + res.stderr)[-1500:]}")
    return dt, res.stdout


def counts(out: str) -> str:
    m = re.search(r"(\d+) passed, (\d+) failed, (\d+) skipped", out)
    return m.group(0) if m else "?"


def hil_bench(k: str | None, tmp: Path) -> dict:
    state_dir = tmp / "farm3"
    _, up = run(["farm", "up", "--boards", "3", "--background", "--state-dir", str(state_dir)])
    info = json.loads((state_dir / farm.STATE_FILE).read_text())
    env = {"LG_COORDINATOR": info["coordinator"]}
    sel = ["-k", k] if k else []
    try:
        # deploy once on every board first, so both runs start from deployed boards
        for p in info["places"]:
            run(["deploy", "-p", p["url"]])
        t1, out1 = run(["hil", "--place", "synack-1", *sel, "--junit", str(tmp / "one.xml"),
                        "--logdir", str(tmp / "l1")], env, check=False)
        t3, out3 = run(["hil", "--places", "synack-1,synack-2,synack-3", *sel, "--junit",
                        str(tmp / "three.xml"), "--logdir", str(tmp / "l3")], env, check=False)
    finally:
        run(["farm", "down", "--state-dir", str(state_dir)], check=False)
    return {"selection": k or "the whole suite", "one_place_s": round(t1, 1),
            "one_place": counts(out1), "three_places_s": round(t3, 1),
            "three_places": counts(out3), "speedup": round(t1 / t3, 2)}


def deploy_bench(tmp: Path) -> dict:
    """One paced board (unix engine: .mpy bundle), ser2net in front of it; a fresh
    destination per run so every run sends the whole package."""
    from synack_host.sim.launch_board import start_board

    port = farm.free_port()
    config = tmp / "ser2net.yaml"
    out: dict = {"baud": BAUD}
    with start_board("--baud", str(BAUD), "--engine", "unix", "--fs", str(tmp / "fs")) as b:
        config.write_text(farm.ser2net_yaml([(b.port, port)], BAUD))
        server = subprocess.Popen([farm.ser2net_binary(), "-n", "-d", "-c", str(config)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            url = f"rfc2217://127.0.0.1:{port}?ign_set_control"
            for i, (name, where) in enumerate((("pty", b.port), ("rfc2217", url)) * 2):
                dt, _ = run(["deploy", "-p", where, "--dest", f"/d{i}"])
                out.setdefault(f"{name}_s", []).append(round(dt, 2))
            _, plan = run(["deploy", "-p", url, "--dest", "/x", "--dry-run", "--json"])
        finally:
            server.terminate()
            server.wait(10)
    bundle = json.loads(plan.splitlines()[-1]).get("bytes_to_send")
    out["pty_best_s"], out["rfc2217_best_s"] = min(out["pty_s"]), min(out["rfc2217_s"])
    out["files"] = len(firmware_files())
    out["bundle_bytes"] = bundle
    out["rfc2217_over_pty"] = round(out["rfc2217_best_s"] / out["pty_best_s"], 2)
    return out


def report(hil: dict, dep: dict) -> str:
    return f"""# Farm: HIL sharded over labgrid places, deploy over RFC 2217

`bench/bench_farm.py`, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, **a machine
shared with other jobs while it ran: figures as measured, not a quiet-machine best.**
Farm: `synack farm up --boards 3` (unix engine, sim7600, unpaced), all on 127.0.0.1;
each board deployed once before the runs.

## HIL suite: 1 place vs 3 places in parallel ({hil['selection']})

| run | wall time | result |
|---|---|---|
| `synack hil --place synack-1` | {hil['one_place_s']} s | {hil['one_place']} |
| `synack hil --places synack-1,synack-2,synack-3` | {hil['three_places_s']} s | \
{hil['three_places']} |
| speed-up | **{hil['speedup']}×** | |

The shards are dealt round-robin from the collected order, so one shard can hold more of
the slow tests (the fault matrix); each child also starts pytest and checks its place.
Tests that need a board in a network namespace (`test_network_paths`) skip on a farm
board as on any real board.

## Deploy over RFC 2217 vs the local pty ({dep['baud']} baud, same board)

{dep['files']} files, {dep['bundle_bytes']} bytes of .mpy (the payload; deploy sends them as
one deflate bundle, so B/s of payload can exceed the line's {dep['baud'] // 10} B/s); a
fresh destination each run (the whole package is sent), two runs each, alternating. Each
time is the whole command (start, break-in, survey, upload, unpack).

| path | runs | best (payload B/s) |
|---|---|---|
| local pty | {', '.join(map(str, dep['pty_s']))} s | {dep['pty_best_s']} s \
({dep['bundle_bytes'] / dep['pty_best_s']:.0f} B/s) |
| `rfc2217://` through ser2net | {', '.join(map(str, dep['rfc2217_s']))} s | \
{dep['rfc2217_best_s']} s ({dep['bundle_bytes'] / dep['rfc2217_best_s']:.0f} B/s) |
| RFC 2217 / pty | | {dep['rfc2217_over_pty']}× |
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", help="only HIL tests matching this expression")
    args = ap.parse_args()
    if farm.missing_tools():
        sys.exit(farm.missing_tools())
    with tempfile.TemporaryDirectory(prefix="bench-farm-") as tmp:
        dep = deploy_bench(Path(tmp))
        print(json.dumps(dep), flush=True)
        hil = hil_bench(args.k, Path(tmp))
        print(json.dumps(hil), flush=True)
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "farm.json").write_text(json.dumps({"hil": hil, "deploy": dep}, indent=2) + "\n")
    (REPORTS / "farm.md").write_text(report(hil, dep))
    print((REPORTS / "farm.md").read_text())


if __name__ == "__main__":
    main()
