"""Deploy throughput (issue 15): `synack deploy` versus `mpremote fs cp -r` of the same
firmware files to the virtual board paced at 115200 baud, side by side in one run, as
payload bytes/s and as a fraction of the line rate; and a no-change redeploy's time. On
two engines: cpython (takes .py sources) and unix, the real MicroPython unix port (synack
sends .mpy compiled with mpy-cross; mpremote copies the sources, as a user would).

Run: .venv/bin/python bench/bench_deploy.py   -> bench/reports/deploy.md (+ .json)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synack_host.packaging import FIRMWARE_DIR, firmware_files
from synack_host.sim.launch_board import start_board

BAUD = 115200
LINE_RATE = BAUD / 10
REPORTS = Path(__file__).resolve().parent / "reports"


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    dt = time.monotonic() - t0
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} failed: {res.stderr[-500:]}")
    return dt, res.stdout


def run_engine(engine: str, payload: int) -> dict:
    synack = [sys.executable, "-m", "synack_host.cli"]
    mpremote = [sys.executable, "-m", "mpremote"]
    board_args = ("--baud", str(BAUD), "--engine", engine)
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        with start_board("--fs", a, *board_args) as board:
            t_synack, _ = timed(synack + ["deploy", "-p", board.port])
            t_noop, _ = timed(synack + ["deploy", "-p", board.port])
            _, plan = timed(synack + ["deploy", "-p", board.port, "--dry-run", "--json"])
        with start_board("--fs", b, *board_args) as board:
            timed(mpremote + ["connect", board.port, "fs", "mkdir", ":lib"])
            t_mpremote, _ = timed(mpremote + ["connect", board.port, "fs", "cp", "-r",
                                              str(FIRMWARE_DIR / "synack"), ":lib/"])
        landed = json.loads(plan.splitlines()[-1])
        same = landed["changed"] == [] and all(
            (Path(b) / "lib" / f).read_bytes() == (FIRMWARE_DIR / f).read_bytes()
            for f in firmware_files())
        if not landed["compiled"]:   # sources on both sides: compare them byte for byte
            same = same and all((Path(a) / "lib" / f).read_bytes()
                                == (Path(b) / "lib" / f).read_bytes() for f in firmware_files())
    return {"engine": engine, "compiled": landed["compiled"],
            "synack_s": round(t_synack, 2), "synack_Bps": round(payload / t_synack),
            "mpremote_s": round(t_mpremote, 2), "mpremote_Bps": round(payload / t_mpremote),
            "speedup": round(t_mpremote / t_synack, 2), "noop_redeploy_s": round(t_noop, 2),
            "files_ok": same}


def main() -> None:
    payload = sum((FIRMWARE_DIR / f).stat().st_size for f in firmware_files())
    runs = [run_engine(e, payload) for e in ("cpython", "unix")]
    load = os.getloadavg()[0]
    r = {"payload_bytes": payload, "files": len(firmware_files()), "baud": BAUD,
         "load_average_1min": round(load, 2), "runs": runs}
    print(json.dumps(r, indent=2))
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "deploy.json").write_text(json.dumps(r, indent=2) + "\n")
    rows = []
    for run in runs:
        what = ".mpy" if run["compiled"] else ".py"
        rows += [f"| {run['engine']} | synack deploy ({what}, raw-byte upload) | "
                 f"{run['synack_s']} | {run['synack_Bps']} "
                 f"| {run['synack_Bps'] / LINE_RATE:.2f} |",
                 f"| {run['engine']} | mpremote fs cp -r (.py) | {run['mpremote_s']} | "
                 f"{run['mpremote_Bps']} | {run['mpremote_Bps'] / LINE_RATE:.2f} |"]
    (REPORTS / "deploy.md").write_text("\n".join([
        "# Deploy benchmark",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} by `bench/bench_deploy.py`: the "
        f"firmware package ({len(firmware_files())} files, {payload} bytes of .py) to the "
        f"virtual board paced at {BAUD} baud (line rate {LINE_RATE:.0f} B/s), on the "
        "cpython engine (takes sources) and on the unix engine (the MicroPython unix port: "
        "synack sends .mpy). Whole-command wall time, including starting the command, "
        "connecting and entering the raw REPL; payload B/s counts the .py bytes on both "
        f"sides. Load average (1 min) at the end: {load:.2f} on {os.cpu_count()} cores.",
        "",
        "| engine | tool | seconds | payload B/s | fraction of line rate |",
        "|---|---|---|---|---|",
        *rows,
        "",
        *[f"- {run['engine']}: speed-up {run['speedup']}× (target ≥ 4×); no-change "
          f"redeploy {run['noop_redeploy_s']} s (target < 2 s); files land right: "
          f"{run['files_ok']}." for run in runs],
        "",
    ]))


if __name__ == "__main__":
    main()
