"""MicroPython modules for device code run by the virtual board's cpython engine.

``install_device_shims`` gives the code of the board (its REPL namespace and the modules
it imports from the flash) what a MicroPython port has: an ``os`` whose absolute paths
are rooted at the flash directory, ``machine`` (reset, Pin, UART over a host pty),
``network.WLAN`` and the ``u``-prefixed aliases. ``send`` reports machine.reset() /
machine.soft_reset() to the board process.
"""

from __future__ import annotations

import os
import signal
import sys
from stat import S_ISDIR

from .. import uart as _uart
from .flash import host_path

# CPython's path functions that MicroPython's os does not have and that the jail does not
# cover: device code does not see them (on a board they would not exist either)
_UNJAILED = {"walk", "fwalk", "removedirs", "renames", "link", "symlink", "mkfifo",
             "mknod", "chown", "lchown", "lchmod", "chroot", "chflags", "lchflags",
             "getxattr", "setxattr", "listxattr", "removexattr", "pathconf", "statvfs"}


def install_device_shims(root: str, uart1: str | None, ns: dict, send) -> None:
    import builtins
    import gc
    import types

    from . import install

    install()   # micropython module, time.ticks_*
    real_open, real_import = builtins.open, builtins.__import__

    def is_device(g) -> bool:
        return g is ns or str(g.get("__file__") or "").startswith(root + os.sep)

    def getcwd():
        rel = os.path.relpath(os.getcwd(), root)
        return "/" if rel == "." else "/" + rel

    def path(p, follow=True):
        """A device path -> its host path in the flash directory: '/x' is the x at the
        top of the flash, '..' stops at the top, and a path that leads outside (through
        a symlink) does not exist (ENOENT). Descriptors pass through."""
        if isinstance(p, int):
            return p
        p = os.fspath(p)
        if isinstance(p, bytes):
            return os.fsencode(host_path(root, getcwd(), os.fsdecode(p), follow))
        return host_path(root, getcwd(), p, follow)

    def link(p):
        return path(p, follow=False)    # the last component itself (remove, rename ...)

    def escapes(entry) -> bool:
        try:
            entry.is_symlink() and path(entry.path)
            return False
        except OSError:
            return True

    dev_os = types.ModuleType("os", "MicroPython os, rooted at the board's flash")
    dev_os.__dict__.update({k: v for k, v in vars(os).items()
                            if not k.startswith("__") and k not in _UNJAILED})

    def stat(p):
        st = os.stat(path(p))
        mode = 0x4000 if S_ISDIR(st.st_mode) else 0x8000
        t = int(st.st_mtime)
        return (mode, 0, 0, 0, 0, 0, st.st_size, t, t, t)

    def ilistdir(p="."):
        for e in os.scandir(path(p)):
            if escapes(e):
                continue     # a symlink out of the flash: not there, as stat says
            try:
                size = 0 if e.is_dir() else e.stat().st_size
            except OSError:
                size = 0     # a dangling symlink
            yield (e.name, 0x4000 if e.is_dir() else 0x8000, 0, size)

    flash_bytes = int(os.environ.get(FLASH_SIZE_ENV) or DEFAULT_FLASH_BYTES)

    def used() -> int:
        total = 0
        for d, _, files in os.walk(root):
            for f in files:
                try:
                    total += os.lstat(os.path.join(d, f)).st_size   # not through symlinks
                except OSError:
                    pass
        return total

    def statvfs(p="/"):
        blocks, free = flash_bytes // 4096, max(0, flash_bytes - used()) // 4096
        return (4096, 4096, blocks, free, free, 0, 0, 0, 0, 255)

    dev_os.__dict__.update(
        stat=stat, ilistdir=ilistdir, getcwd=getcwd, statvfs=statvfs,
        listdir=lambda p=".": [e[0] for e in ilistdir(p)],
        remove=lambda p: os.remove(link(p)), unlink=lambda p: os.unlink(link(p)),
        mkdir=lambda p, *a: os.mkdir(link(p), *a), rmdir=lambda p: os.rmdir(link(p)),
        chdir=lambda p: os.chdir(path(p)),
        rename=lambda a, b: os.rename(link(a), link(b)),
        replace=lambda a, b: os.replace(link(a), link(b)),
        # CPython's own, for code written for both: the same jail
        open=lambda p, *a, **kw: os.open(path(p), *a, **kw),
        scandir=lambda p=".": os.scandir(path(p)), lstat=lambda p: os.lstat(link(p)),
        makedirs=lambda p, *a, **kw: os.makedirs(path(p), *a, **kw),
        access=lambda p, *a, **kw: os.access(path(p), *a, **kw),
        truncate=lambda p, n: os.truncate(path(p), n),
        utime=lambda p, *a, **kw: os.utime(path(p), *a, **kw),
        chmod=lambda p, *a, **kw: os.chmod(path(p), *a, **kw),
        readlink=lambda p: os.readlink(link(p)),
        sync=lambda: None, dupterm=lambda *a: None,
        uname=lambda: ("esp32", "esp32", "1.27.0", "v1.27.0", "synack virtual board"))

    def device_open(file, *args, **kwargs):
        if not is_device(sys._getframe(1).f_globals):
            return real_open(file, *args, **kwargs)
        f = real_open(path(file), *args, **kwargs)   # the jail: ENOENT outside the flash
        mode = args[0] if args else kwargs.get("mode", "r")
        # the free space once, at open (after "w" truncated the file): not a walk per write
        return _BoundedFile(f, flash_bytes - used()) if set(mode) & set("wa+") else f

    def device_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name in ("os", "uos") and globals and is_device(globals):
            return dev_os
        return real_import(name, globals, locals, fromlist, level)

    builtins.open, builtins.__import__ = device_open, device_import

    def device_help(*args):
        if args:
            return help(*args)
        print("synack virtual board: MicroPython's REPL over a CPython engine.\n"
              "Ctrl-A raw REPL, Ctrl-B banner, Ctrl-C interrupt, Ctrl-D soft reboot,\n"
              "Ctrl-E paste mode. machine, network, gc and os are MicroPython shims.")

    ns["help"] = device_help
    for alias in ("time", "binascii", "hashlib", "json", "socket", "select", "struct",
                  "errno", "io", "re", "random", "collections", "asyncio", "ssl", "zlib"):
        try:
            sys.modules.setdefault("u" + alias, __import__(alias))
        except ImportError:
            pass
    gc.mem_free = lambda: 112_000            # ESP32 without PSRAM, after boot
    gc.mem_alloc = lambda: 8_000
    sys.modules["machine"] = _machine_module(uart1, send)
    sys.modules["network"] = _network_module()
    sys.modules["deflate"] = _deflate_module()
    sys.path[:0] = [root, os.path.join(root, "lib")]


FLASH_SIZE_ENV = "SYNACK_FLASH_BYTES"
DEFAULT_FLASH_BYTES = 2 * 1024 * 1024   # an ESP32's default MicroPython partition, roughly


class _BoundedFile:
    """A file opened for writing on a flash of fixed size: a write that does not fit
    fails with ENOSPC, as littlefs does on a full ESP32, and writes nothing."""

    def __init__(self, f, free: int):
        self._f, self._free = f, free

    def write(self, data):
        if len(data) > self._free:
            import errno
            raise OSError(errno.ENOSPC, "ENOSPC")
        self._free -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __iter__(self):
        return iter(self._f)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


_uart1: tuple | None = None


def _uart1_port(path: str, rxbuf) -> tuple:
    """The one UART(1) of this interpreter: (receiver, write descriptor), opened by the
    first UART(1) of the device code (then the receiver starts)."""
    global _uart1
    if _uart1 is None:
        rx = _uart.RxBuffer(_uart.open_port(path), _uart.rxbuf_size(rxbuf))
        rx.start()
        _uart1 = (rx, os.open(path, os.O_WRONLY | os.O_NOCTTY))
    elif rxbuf is not None:
        _uart1[0].resize(_uart.rxbuf_size(rxbuf))
    return _uart1


def _machine_module(uart1: str | None, send):
    import types

    m = types.ModuleType("machine", "synack virtual board: machine shims")

    def reset():
        send(b"H")
        signal.pause()   # the board replaces this process

    def soft_reset():
        send(b"S")
        signal.pause()

    class Pin:
        IN, OUT, OPEN_DRAIN, PULL_UP, PULL_DOWN, IRQ_FALLING, IRQ_RISING = 1, 3, 7, 2, 1, 2, 1

        def __init__(self, id, mode=-1, pull=-1, value=None, **kw):
            self.id, self._v = id, value or 0

        def value(self, v=None):
            if v is None:
                return self._v
            self._v = 1 if v else 0

        def on(self):
            self._v = 1

        def off(self):
            self._v = 0

        def irq(self, *a, **kw):
            return None

        __call__ = value

    class UART:
        """UART(1) is the pty given by ``--uart1`` (a virtual modem, usually), received
        into a buffer of ``rxbuf`` bytes as on an ESP32 (sim/uart.py: what arrives while
        it is full is lost and logged as an overrun)."""

        def __init__(self, id, baudrate=115200, **kw):
            if id != 1 or not uart1:
                raise ValueError(f"UART({id}) is not connected on this virtual board")
            self._rx, self._tx = _uart1_port(uart1, kw.get("rxbuf"))
            self.init(baudrate, **kw)

        def init(self, baudrate=115200, timeout=0, rxbuf=None, **kw):
            self._t = timeout / 1000
            self._rx.baud = baudrate
            if rxbuf is not None:
                self._rx.resize(_uart.rxbuf_size(rxbuf))

        def deinit(self):
            pass

        def any(self):
            return self._rx.any()

        def read(self, n=None):
            data = self._rx.read(-1 if n is None else n, self._t)
            return data or None

        def readinto(self, buf, n=None):
            data = self.read(len(buf) if n is None else n)
            if not data:
                return None
            buf[:len(data)] = data
            return len(data)

        def readline(self):
            return self._rx.read(-1, self._t, line=True) or None

        def write(self, data):
            if isinstance(data, str):
                data = data.encode()
            mv = memoryview(data)
            while mv:   # a UART's write returns once its bytes are queued
                try:
                    mv = mv[os.write(self._tx, mv):]
                except BlockingIOError:
                    import select
                    select.select([], [self._tx], [], 0.05)
            return len(data)

        def flush(self):
            pass

    class RTC:
        def datetime(self, t=None):
            import time

            lt = time.localtime()
            return (lt[0], lt[1], lt[2], lt[6], lt[3], lt[4], lt[5], 0)

    m.__dict__.update(
        reset=reset, soft_reset=soft_reset, Pin=Pin, UART=UART, RTC=RTC,
        unique_id=lambda: b"\x24\x0a\xc4\x00\x5a\x4b",
        freq=lambda *a: 160_000_000, idle=lambda: None,
        reset_cause=lambda: 1, PWRON_RESET=1, HARD_RESET=2, SOFT_RESET=5,
        disable_irq=lambda: 0, enable_irq=lambda state=0: None)
    return m


def _network_module():
    import types

    n = types.ModuleType("network", "synack virtual board: Wi-Fi is always connected")

    class WLAN:
        def __init__(self, interface=0):
            self._active = False

        def active(self, flag=None):
            if flag is None:
                return self._active
            self._active = bool(flag)

        def connect(self, ssid=None, key=None, **kw):
            self._active = True

        def disconnect(self):
            pass

        def isconnected(self):
            return True

        def status(self, *a):
            return 1010   # STAT_GOT_IP

        def ifconfig(self, *a):
            return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

        def config(self, *a, **kw):
            return "synack-virtual" if a else None

    n.__dict__.update(WLAN=WLAN, STA_IF=0, AP_IF=1, STAT_GOT_IP=1010,
                      hostname=lambda *a: "synack-virtual")
    return n


def _deflate_module():
    """MicroPython's ``deflate`` (v1.21+): DeflateIO streams over zlib."""
    import types
    import zlib

    d = types.ModuleType("deflate")
    AUTO, RAW, ZLIB, GZIP = 0, 1, 2, 3
    wbits_of = {AUTO: 32 + 15, RAW: -15, ZLIB: 15, GZIP: 16 + 15}

    class DeflateIO:
        def __init__(self, stream, format=AUTO, wbits=0, close=False):
            self._stream = stream
            self._z = zlib.decompressobj(wbits_of[format])
            self._out = b""
            self._close = close

        def read(self, n=-1):
            while (n < 0 or len(self._out) < n) and not self._z.eof:
                chunk = self._stream.read(256)
                if not chunk:
                    break
                self._out += self._z.decompress(chunk)
            if n < 0:
                n = len(self._out)
            out, self._out = self._out[:n], self._out[n:]
            return out

        def readinto(self, buf):
            data = self.read(len(buf))
            buf[:len(data)] = data
            return len(data)

        def close(self):
            if self._close:
                self._stream.close()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

    d.__dict__.update(DeflateIO=DeflateIO, AUTO=AUTO, RAW=RAW, ZLIB=ZLIB, GZIP=GZIP)
    return d
