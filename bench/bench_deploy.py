"""Deploy throughput (issue 3): `synack deploy` versus `mpremote fs cp -r` of the same
firmware files to the virtual board paced at 115200 baud, side by side in one run, as
payload bytes/s and as a fraction of the line rate; and a no-change redeploy's time.

Run: .venv/bin/python bench/bench_deploy.py   -> bench/reports/deploy.md (+ .json)
"""

from __future__ import annotations

import json
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


def timed(cmd: list[str]) -> float:
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    dt = time.monotonic() - t0
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} failed: {res.stderr[-500:]}")
    return dt


def main() -> None:
    payload = sum((FIRMWARE_DIR / f).stat().st_size for f in firmware_files())
    synack = [sys.executable, "-m", "synack_host.cli"]
    mpremote = [sys.executable, "-m", "mpremote"]
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        with start_board("--fs", a, "--baud", str(BAUD)) as board:
            t_synack = timed(synack + ["deploy", "-p", board.port])
            t_noop = timed(synack + ["deploy", "-p", board.port])
        with start_board("--fs", b, "--baud", str(BAUD)) as board:
            timed(mpremote + ["connect", board.port, "fs", "mkdir", ":lib"])
            t_mpremote = timed(mpremote + ["connect", board.port, "fs", "cp", "-r",
                                           str(FIRMWARE_DIR / "synack"), ":lib/"])
        same = all((Path(a) / "lib" / f).read_bytes() == (Path(b) / "lib" / f).read_bytes()
                   for f in firmware_files())
    r = {"payload_bytes": payload, "baud": BAUD,
         "synack_s": round(t_synack, 2), "synack_Bps": round(payload / t_synack),
         "mpremote_s": round(t_mpremote, 2), "mpremote_Bps": round(payload / t_mpremote),
         "speedup": round(t_mpremote / t_synack, 2), "noop_redeploy_s": round(t_noop, 2),
         "identical_files": same}
    print(json.dumps(r, indent=2))
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "deploy.json").write_text(json.dumps(r, indent=2) + "\n")
    (REPORTS / "deploy.md").write_text("\n".join([
        "# Deploy benchmark",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} by `bench/bench_deploy.py`: the "
        f"firmware package ({len(firmware_files())} files, {payload} bytes of .py; the "
        "virtual board's cpython engine takes sources) to the virtual board paced at "
        f"{BAUD} baud (line rate {LINE_RATE:.0f} B/s). Whole-command wall time, "
        "including connecting and entering the raw REPL.",
        "",
        "| tool | seconds | payload B/s | fraction of line rate |",
        "|---|---|---|---|",
        f"| synack deploy | {r['synack_s']} | {r['synack_Bps']} "
        f"| {r['synack_Bps'] / LINE_RATE:.2f} |",
        f"| mpremote fs cp -r | {r['mpremote_s']} | {r['mpremote_Bps']} "
        f"| {r['mpremote_Bps'] / LINE_RATE:.2f} |",
        "",
        f"Speed-up: {r['speedup']}× (target ≥ 4×). No-change redeploy: "
        f"{r['noop_redeploy_s']} s (target < 2 s). Files identical: {same}.",
        "",
    ]))


if __name__ == "__main__":
    main()
