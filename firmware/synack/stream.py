"""The MicroPython stream calls, written once over a ``recv_into`` (or ``readinto``):
shared by synack.socket and synack.tls so both read and write alike.

MicroPython semantics: ``readinto``/``read``/``readline`` fill what they can and, on a
non-blocking stream with nothing there, return None; ``write`` takes ``(buf)``,
``(buf, n)`` or ``(buf, off, n)`` and str as well as bytes.
"""

import errno

from micropython import const

_CHUNK = const(512)


def view(buf, off=None, n=None):
    """The part of ``buf`` that ``write(buf[, off[, n]])`` sends, as a memoryview
    (``write(buf, n)``: the first n bytes; str is encoded)."""
    if isinstance(buf, str):
        buf = buf.encode()
    mv = memoryview(buf)
    if n is None:
        return mv if off is None else mv[:max(off, 0)]
    off = min(max(off or 0, 0), len(mv))
    return mv[off:off + max(n, 0)]


def readinto(recv_into, buf, nbytes, nonblocking):
    """Fill ``buf`` (or ``nbytes`` of it) with ``recv_into`` calls unless the stream
    ends first. EAGAIN (``nonblocking()`` true when asked) ends it: what came, or None."""
    mv = memoryview(buf)
    if nbytes is not None:
        mv = mv[:nbytes]
    got = 0
    while got < len(mv):
        try:
            n = recv_into(mv[got:])
        except OSError as e:
            if e.args[0] == errno.EAGAIN and nonblocking():
                return got or None
            raise
        if not n:
            break
        got += n
    return got


def read(readinto_, size):
    """``read(n)``: n bytes unless the stream ends first; ``read()``: to the end."""
    if size is None or size < 0:
        out = bytearray()
        chunk = bytearray(_CHUNK)
        while True:
            n = readinto_(chunk)
            if not n:
                return None if n is None and not out else bytes(out)
            out.extend(chunk if n == len(chunk) else chunk[:n])
    buf = bytearray(size)
    n = readinto_(buf)
    if n is None:
        return None
    return bytes(buf) if n == size else bytes(buf[:n])


def readline(readinto_, limit):
    """A line with its ``\\n`` (or what came before the end of the stream); the part
    available now, or None, on a non-blocking stream."""
    out = bytearray()
    one = bytearray(1)
    while limit < 0 or len(out) < limit:
        n = readinto_(one)
        if n is None:
            return bytes(out) if out else None
        if not n:
            break
        out.append(one[0])
        if one[0] == 10:
            break
    return bytes(out)
