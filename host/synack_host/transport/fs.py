"""The board's filesystem through a RawRepl: list, stat, read, hash, remove - one exec
each - and a device OSError as the host's errno.

Why not mpremote's ``Transport.fs_*`` (bench/reports/host_tools.md has the figures):

* **read** - mpremote evals ``r(256)`` once per 256 bytes and gets a bytes repr back
  (random data: ~3.5 characters a byte, and a round trip each); here one exec prints
  base64 lines (4/3 a byte, no round trip): 2.2x faster for 64 KiB at 115200 baud.
* **ls, stat, hash** - as fast as mpremote's, so its code would do; but its helpers
  assign ``f``, ``r``, ``w``, ``h``, ``buf`` on the board (a ``synack connect`` chain's
  own variables), its Transport API is declared unstable by its authors, and it would
  make mpremote a run-time dependency for some thirty lines of board code.
* **errno** - equal on what boards print; but mpremote takes the first errno name
  found *anywhere* in the traceback (an OSError raised in a function named
  ``EIO_retry`` comes out as EIO) and maps neither ``[Errno 13]`` without a name nor
  ``(13, 'msg')``. Here only the exception line is read: the name MicroPython prints,
  else its number through MicroPython's numbering (py/mperrno.h: Linux's, not macOS's).
"""

from __future__ import annotations

import base64
import errno
import re

from .repl import DeviceError

# py/mperrno.h (MICROPY_USE_INTERNAL_ERRNO): the numbers a board prints, by name, so a
# host whose own numbering differs (macOS: EAGAIN is 35, ETIMEDOUT 60) maps them right
MP_ERRNO = dict(enumerate(
    "EPERM ENOENT ESRCH EINTR EIO ENXIO E2BIG ENOEXEC EBADF ECHILD EAGAIN ENOMEM EACCES "
    "EFAULT ENOTBLK EBUSY EEXIST EXDEV ENODEV ENOTDIR EISDIR EINVAL ENFILE EMFILE ENOTTY "
    "ETXTBSY EFBIG ENOSPC ESPIPE EROFS EMLINK EPIPE EDOM ERANGE".split(), start=1))
MP_ERRNO.update({95: "EOPNOTSUPP", 97: "EAFNOSUPPORT", 98: "EADDRINUSE",
                 103: "ECONNABORTED", 104: "ECONNRESET", 105: "ENOBUFS", 106: "EISCONN",
                 107: "ENOTCONN", 110: "ETIMEDOUT", 111: "ECONNREFUSED", 113: "EHOSTUNREACH",
                 114: "EALREADY", 115: "EINPROGRESS", 125: "ECANCELED"})

# what MicroPython prints after "OSError: ": "[Errno 2] ENOENT", "2" (a build without
# errno names), "(2, 'msg')" (two arguments), or a name in a message of the code's own
_NUMBER = re.compile(r"^\[Errno (\d+)\]|^(\d+)$|^\((\d+),")
_NAME = re.compile(r"\b(E[A-Z0-9]{2,})\b")


def device_errno(e: DeviceError) -> int | None:
    """The host errno of an ``OSError`` raised on the board, or None (another
    exception, or an OSError that carries no errno). Only the exception line is read."""
    if e.exc_type != "OSError":
        return None
    message = e.message.strip()
    for name in _NAME.findall(message):
        if isinstance(getattr(errno, name, None), int):
            return getattr(errno, name)
    m = _NUMBER.match(message)
    if not m:
        return None
    number = int(m.group(1) or m.group(2) or m.group(3))
    name = MP_ERRNO.get(number)
    # a number outside MicroPython's table is the port's own: taken as it is
    return getattr(errno, name, number) if name else number


def board_oserror(e: DeviceError, path: str) -> OSError | None:
    """A device OSError as the host's ``OSError(errno, strerror, path)`` (so
    FileNotFoundError for ENOENT), or None when it has no errno."""
    import os

    code = device_errno(e)
    return None if code is None else OSError(code, os.strerror(code), path)


# Board code is kept short (one space a level, short names with '_' first, so a chain's
# own variables stay): at 115200 baud every byte of it costs 87 us, and for stat the
# code is most of what crosses the line.
_LS = """import os
_o=[]
for _e in os.ilistdir(%r):_o.append((_e[0],_e[1]==16384,_e[3] if len(_e)>3 else -1))
print(repr(sorted(_o)))
"""

# (is a directory, size) of a board path, or None when it does not exist
_STAT = """import os
try:_s=os.stat(%r);print(repr((_s[0]&16384!=0,_s[6])))
except OSError:print(None)
"""

# 384 bytes are 512 characters of base64: short lines, and no multi-kilobyte string on
# a board with little RAM
_CAT = """import binascii
with open(%r,'rb') as _f:
 while 1:
  _b=_f.read(384)
  if not _b:break
  print(binascii.b2a_base64(_b).decode().strip())
"""

_SHA256 = """import hashlib,binascii
_h=hashlib.sha256()
_m=memoryview(bytearray(512))
with open(%r,'rb') as _f:
 while 1:
  _n=_f.readinto(_m)
  if not _n:break
  _h.update(_m[:_n])
print(binascii.hexlify(_h.digest()).decode())
"""


def list_dir(repl, path: str) -> list[tuple[str, bool, int]]:
    """Sorted (name, is a directory, size or -1) of a board directory."""
    entries = repl.eval_code(_LS % path)
    if not isinstance(entries, list):
        raise ValueError(f"unexpected answer from the board to ls: {str(entries)[:200]!r}")
    return entries


def stat(repl, path: str) -> tuple[bool, int] | None:
    """(is a directory, size) of a board path, or None when there is none."""
    return repl.eval_code(_STAT % path)


def read_file(repl, path: str) -> bytes:
    """A board file's bytes, exactly (base64 lines on the wire)."""
    return b"".join(base64.b64decode(line) for line in repl.exec(_CAT % path).split())


def sha256(repl, path: str) -> str:
    """The hex sha256 of a board file, computed on the board."""
    return repl.exec(_SHA256 % path).decode().strip()


def remove(repl, path: str) -> None:
    repl.exec(f"import os\nos.remove({path!r})")
