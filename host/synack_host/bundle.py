"""Send many files as one compressed bundle: what makes a full deploy fast on a UART.

Python sources compress far better as one zlib stream than file by file (the later files
reuse the earlier ones' words), and one upload costs fewer raw-REPL round trips than
many. The bundle is

    repeat: 2-byte name length, name (the target path), 4-byte size, data   (big endian)

zlib-compressed and uploaded to ``/.synack-bundle.z`` - as raw bytes to code running on
the board (upload.py: length and sha256 checked there) followed in the same exec by the
unpacking, or, on boards without what that needs, in base64 chunks as deploy's other
writes - and unpacked by streaming it through ``deflate.DeflateIO``: every file goes to
``<target>.tmp`` first, and only when all of them are complete are they renamed over the
old ones, so a link that breaks mid-upload leaves every previous version in place.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

from . import upload
from .deploy import (_OPEN, CHUNK, DeployError, Item, _chunk_code, _discard, _parents, failure,
                     run_steps)

BUNDLE = "/.synack-bundle.z"

_UNPACK_FN = """
import os, deflate
def _unpack(bundle, dirs, stale):
    for d in dirs:
        try:
            os.mkdir(d)
        except OSError:
            pass
    s = open(bundle, 'rb')
    z = deflate.DeflateIO(s, deflate.ZLIB)
    m = memoryview(bytearray(512))
    done = []
    while True:
        h = z.read(2)
        if not h:
            break
        name = z.read(int.from_bytes(h, 'big')).decode()
        left = int.from_bytes(z.read(4), 'big')
        f = open(name + '.tmp', 'wb')
        while left:
            n = z.readinto(m[:min(left, 512)])
            if not n:
                raise OSError(5, 'bundle ends inside ' + name)
            f.write(m[:n])
            left -= n
        f.close()
        done.append(name)
    s.close()
    os.remove(bundle)
    for name in done:
        try:
            os.rename(name + '.tmp', name)
        except OSError:
            os.remove(name)
            os.rename(name + '.tmp', name)
    for p in stale:
        try:
            os.remove(p)
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
    steps = [(_OPEN % ([], BUNDLE), 0)]
    for i in range(0, len(packed), CHUNK):
        chunk = packed[i:i + CHUNK]
        steps.append((_chunk_code(chunk), len(chunk) * total // len(packed)))
    steps.append(("_f.close()\n" + _UNPACK_FN + _unpack_call(items), 0))
    temporaries = [BUNDLE] + [i.target + ".tmp" for i in items]
    run_steps(board, steps, progress, temporaries, f"{len(items)} files ({total} bytes)")
    return len(packed)


def _unpack_call(items: list[Item]) -> str:
    dirs = sorted({d for i in items for d in _parents(i.target)}, key=len)
    stale = [p for i in items for p in i.stale]
    return f"_unpack({BUNDLE!r}, {dirs!r}, {stale!r})\n"


def send_bundle_binary(repl, items: list[Item],
                       progress: Callable[[int], None] | None = None,
                       window: int = upload.WINDOW, depth: int = upload.DEPTH,
                       stall_ms: int = upload.STALL_MS) -> int:
    """Upload ``items`` as one bundle of raw bytes and unpack it, in one exec (upload.py);
    returns the compressed size. ``repl`` is a RawRepl on a board with deflate and
    what upload.py needs."""
    packed = pack(items)
    total = sum(len(i.data) for i in items)
    code = (upload.RECV + _UNPACK_FN
            + upload.recv_call(BUNDLE, packed, window, depth, stall_ms) + _unpack_call(items))
    done = [0, 0]   # payload bytes sent, file bytes reported

    def step(n: int) -> None:   # file bytes, scaled from payload bytes, adding up to total
        done[0] += n
        now = done[0] * total // len(packed)
        if progress:
            progress(now - done[1])
        done[1] = now

    what = f"{len(items)} files ({total} bytes)"
    try:
        upload.stream(repl, code, packed, step, window)
    except upload.DeviceError as e:
        _discard(repl, [BUNDLE] + [i.target + ".tmp" for i in items])
        raise failure(e, what) from None
    except upload.UploadError as e:
        raise DeployError(f"writing {what}: {e}; the previous files are kept") from None
    return len(packed)


def send_changed(board, plan, progress: Callable[[int], None] | None = None) -> None:
    """Send a deploy plan's changed files: one bundle of raw bytes when the board can
    take it (and ``board`` is synack's RawRepl), else one base64 bundle when the board
    can inflate and several files changed, else file by file."""
    if plan.binary and plan.changed and hasattr(board, "link"):
        send_bundle_binary(board, plan.changed, progress)
        return
    if plan.deflate and len(plan.changed) > 1:
        send_bundle(board, plan.changed, progress)
        return
    from .deploy import send_item

    for item in plan.changed:
        send_item(board, item, progress, compress=plan.deflate)
