"""Send many files as one compressed bundle: what makes a full deploy fast on a UART.

Python sources compress far better as one zlib stream than file by file (the later files
reuse the earlier ones' words), and one upload costs fewer raw-REPL round trips than
many. The bundle is

    repeat: 2-byte name length, name (the target path), 4-byte size, data   (big endian)

zlib-compressed, uploaded (base64, as deploy's other writes) to ``/.synack-bundle.z`` and
unpacked on the board in one exec that streams it through ``deflate.DeflateIO``: every
file goes to ``<target>.tmp`` first, and only when all of them are complete are they
renamed over the old ones, so a link that breaks mid-upload leaves every previous
version in place.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

from .deploy import _OPEN, CHUNK, Item, _chunk_code, _parents, run_steps

BUNDLE = "/.synack-bundle.z"

_UNPACK = """
import os, deflate
_f.close()
for _d in %(dirs)r:
    try:
        os.mkdir(_d)
    except OSError:
        pass
_s = open(%(bundle)r, 'rb')
_z = deflate.DeflateIO(_s, deflate.ZLIB)
_b = bytearray(512)
_m = memoryview(_b)
_done = []
while True:
    _h = _z.read(2)
    if not _h:
        break
    _name = _z.read(int.from_bytes(_h, 'big')).decode()
    _left = int.from_bytes(_z.read(4), 'big')
    _f = open(_name + '.tmp', 'wb')
    while _left:
        _n = _z.readinto(_m[:min(_left, 512)])
        if not _n:
            raise OSError(5, 'bundle ends inside ' + _name)
        _f.write(_m[:_n])
        _left -= _n
    _f.close()
    _done.append(_name)
_s.close()
os.remove(%(bundle)r)
for _name in _done:
    try:
        os.rename(_name + '.tmp', _name)
    except OSError:
        os.remove(_name)
        os.rename(_name + '.tmp', _name)
for _p in %(stale)r:
    try:
        os.remove(_p)
    except OSError:
        pass
"""


def pack(items: list[Item]) -> bytes:
    raw = bytearray()
    for item in items:
        name = item.target.encode()
        raw += struct.pack(">H", len(name)) + name + struct.pack(">I", len(item.data))
        raw += item.data
    return zlib.compress(bytes(raw), 9)


def send_bundle(board, items: list[Item],
                progress: Callable[[int], None] | None = None) -> int:
    """Upload and unpack ``items`` in one bundle; returns the compressed size. The
    board must have ``deflate``. ``progress`` counts file bytes, as send_item does."""
    packed = pack(items)
    total = sum(len(i.data) for i in items)
    dirs = sorted({d for i in items for d in _parents(i.target)}, key=len)
    steps = [(_OPEN % ([], BUNDLE), 0)]
    for i in range(0, len(packed), CHUNK):
        chunk = packed[i:i + CHUNK]
        steps.append((_chunk_code(chunk), len(chunk) * total // len(packed)))
    stale = [p for i in items for p in i.stale]
    steps.append((_UNPACK % {"dirs": dirs, "bundle": BUNDLE, "stale": stale}, 0))
    temporaries = [BUNDLE] + [i.target + ".tmp" for i in items]
    run_steps(board, steps, progress, temporaries, f"{len(items)} files ({total} bytes)")
    return len(packed)


def send_changed(board, plan, progress: Callable[[int], None] | None = None) -> None:
    """Send a deploy plan's changed files: one bundle when the board can inflate and
    there are several, else file by file."""
    if plan.deflate and len(plan.changed) > 1:
        send_bundle(board, plan.changed, progress)
        return
    from .deploy import send_item

    for item in plan.changed:
        send_item(board, item, progress, compress=plan.deflate)
