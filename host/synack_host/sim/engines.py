"""Engines that run the virtual board's Python code.

The "cpython" engine runs device code in a separate, persistent CPython process (the
*child*), so that a busy loop can be interrupted with SIGINT (which CPython turns into
KeyboardInterrupt, as MicroPython turns Ctrl-C into one) and a crash of the code does not
take the board down. A soft reset replaces the child with a fresh one; a spare child is
started ahead of time because mpremote soft-resets on every connection.

Parent and child speak frames over two pipes: ``kind`` (1 byte), length (4 bytes, big
endian), payload. Parent -> child: ``X`` run source as a file ("<stdin>"), ``1`` run one
interactive line (expression values are printed), ``F`` run a file of the flash by name.
``I`` (with a SIGINT) is a Ctrl-C. Child -> parent: ``O`` output bytes (already in REPL
form, ``\\n`` -> ``\\r\\n``), ``D`` done (payload: MicroPython-style traceback text,
empty if none), ``E`` done by sys.exit(), ``H``/``S`` the code asked for machine.reset() /
machine.soft_reset(). Running code's stdin and ``micropython.kbd_intr`` are frames too
(``R``/``P``/``K`` out, ``i``/``p`` back: stdin.py), on every engine.

The child works in the board's flash directory. Device code (the REPL namespace and
modules imported from the flash) sees a MicroPython-flavoured ``os`` whose absolute paths
are rooted at the flash directory; the rest of the child sees the real one.
"""

from __future__ import annotations

import os
import signal
import struct
import sys

from .engine_base import CPythonEngine, FrameReader, _set_parent_death_signal, frame
from .shims.device import install_device_shims
from .shims.flash import host_path

ENGINES = ("cpython", "micropython", "unix")


def make_engine(name: str, root: str, uart1: str | None = None,
                micropython: str | None = None) -> CPythonEngine:
    if name == "micropython":
        from .engine_wasm import WasmEngine
        return WasmEngine(root, uart1)
    if name == "unix":
        from .engine_unix import UnixEngine
        return UnixEngine(root, uart1, micropython)
    if name != "cpython":
        raise NotImplementedError(f"engine {name!r} is not implemented "
                                  f"(available: {', '.join(ENGINES)})")
    return CPythonEngine(root, uart1)


# ====================================================================== child side
# Everything below runs in the engine process only.
class _Child:
    running = False    # SIGINT raises KeyboardInterrupt only while device code runs
    in_io = False      # ... but never in the middle of writing a frame
    pending = False


def _send(kind: bytes, payload: bytes = b"") -> None:
    _Child.in_io = True
    try:
        data = frame(kind, payload)
        while data:
            n = os.write(_OUT_FD, data)
            data = data[n:]
    finally:
        _Child.in_io = False
    if _Child.pending and _Child.running:
        _Child.pending = False
        raise KeyboardInterrupt


def _on_sigint(signum, stack) -> None:
    if _Child.running and not _Child.in_io:
        raise KeyboardInterrupt
    _Child.pending = True   # raised as soon as device code runs (again)


class _PortOut:
    """sys.stdout/sys.stderr of device code: everything goes to the serial port."""

    encoding = "utf-8"

    class _Raw:
        def write(self, data) -> int:
            _send(b"O", bytes(data))
            return len(data)

    buffer = _Raw()

    def write(self, text: str) -> int:
        if text:
            _send(b"O", text.replace("\n", "\r\n").encode("utf-8", "replace"))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


# CPython wording -> MicroPython wording, for the messages users compare by eye
_MESSAGES = (("is not defined", "isn't defined"), ("division by zero", "divide by zero"))


def _format_exception(exc: BaseException, root: str) -> str:
    import traceback

    lines = ["Traceback (most recent call last):"]
    frames = traceback.extract_tb(exc.__traceback__)

    def shown(filename: str) -> str | None:
        if filename.startswith(root + os.sep):
            return os.path.relpath(filename, root)
        return filename if filename.startswith("<stdin>") else None

    for fs in frames:
        # engine and library frames are left out: the device would not show them
        if shown(fs.filename):
            lines.append(f'  File "{shown(fs.filename)}", line {fs.lineno}, in {fs.name}')
    name = type(exc).__name__
    if isinstance(exc, SyntaxError):
        lines.append(f'  File "{shown(exc.filename or "") or exc.filename}", line {exc.lineno}')
        msg = exc.msg
    elif isinstance(exc, OSError) and exc.errno:
        # MicroPython has no OSError subclasses for errnos; hosts (mpremote) parse this
        import errno

        name, msg = "OSError", f"[Errno {exc.errno}] {errno.errorcode.get(exc.errno, '')}"
    else:
        msg = str(exc)
    for old, new in _MESSAGES:
        msg = msg.replace(old, new)
    lines.append(f"{name}: {msg}")
    return "\r\n".join(lines) + "\r\n"


def _execute(kind: bytes, payload: bytes, ns: dict, root: str) -> str | None:
    """Run one request; returns the traceback text ('' on success, None: sys.exit())."""
    error = ""
    try:
        if kind == b"F":
            name = payload.decode()
            filename = host_path(root, "/", name)     # the flash's jail: ENOENT outside
            with open(filename, "rb") as f:
                source, mode = f.read(), "exec"
            filename = os.path.join(root, name)
        else:
            source, filename = payload, "<stdin>"
            mode = "single" if kind == b"1" else "exec"
        code = compile(source, filename, mode, dont_inherit=True)
        _Child.running = True
        try:
            if _Child.pending:   # Ctrl-C arrived before the code started
                raise KeyboardInterrupt
            exec(code, ns)
        finally:
            _Child.running = False
            _Child.pending = False
    except SystemExit:
        # sys.exit() at the REPL soft-resets a MicroPython board; in boot.py/main.py it
        # just ends the file (a soft reset would run main.py again, for ever)
        return None if kind != b"F" else ""
    except BaseException as e:   # noqa: BLE001 - the device prints every exception
        _Child.running = False
        error = _format_exception(e, root)
    return error


_INBOX: list[tuple[bytes, bytes]] = []   # frames from the board not taken yet
_READER = FrameReader()
_SEQ = [0]


def _fill() -> None:
    """Block for the board's next frames (EOFError: the board has gone)."""
    data = os.read(_IN_FD, 65536)
    if not data:
        raise EOFError
    _INBOX.extend(_READER.feed(data))


def _request(kind: bytes, payload: bytes) -> bytes:
    """A stdin request of device code: wait for the board's reply with our sequence
    number (a Ctrl-C's KeyboardInterrupt ends the wait; a late reply is then dropped)."""
    _SEQ[0] += 1
    seq = struct.pack(">I", _SEQ[0])
    _send(kind, seq + payload)
    while True:
        for i, (k, p) in enumerate(_INBOX):
            if k in (b"i", b"p") and p[:4] == seq:
                del _INBOX[i]
                return p[4:]
        _fill()


def _install_stdin() -> None:
    import select

    from .shims import install
    from .stdin import PortIn, poll_module

    install()   # the micropython module's directory on sys.path
    import micropython

    sys.stdin = PortIn(_request)   # type: ignore[assignment]
    sys.modules["select"] = sys.modules["uselect"] = poll_module(select, sys.stdin)
    # the board decides what a received 0x03 is (stdin.py)
    micropython.kbd_intr = lambda c: _send(b"K", struct.pack(">i", c))


def _child_main(root: str, uart1: str) -> None:
    global _OUT_FD, _IN_FD
    # the frame pipe gets private descriptors; stray C-level output goes to stderr
    _OUT_FD = os.dup(1)
    _IN_FD = os.dup(0)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    _set_parent_death_signal()
    signal.signal(signal.SIGINT, _on_sigint)
    ns: dict = {"__name__": "__main__"}
    # before the flash joins sys.path: an import now would cache its lib/ as missing
    _install_stdin()
    install_device_shims(root, uart1 or None, ns, _send)
    sys.stdout = sys.stderr = _PortOut()   # type: ignore[assignment]
    while True:
        if not _INBOX:
            try:
                _fill()
            except KeyboardInterrupt:
                continue
            except EOFError:
                return
            _Child.pending = False   # an interrupt before this read was meant for old code
            continue
        kind, payload = _INBOX.pop(0)
        if kind in (b"I", b"i", b"p"):   # stdin replies: to code that was interrupted
            continue
        # an interrupt queued behind this request: the host pressed Ctrl-C before
        # the code could start (a slow start, main.py at power-up)
        _Child.pending = any(k == b"I" for k, _ in _INBOX)
        try:
            error = _execute(kind, payload, ns, root)
            if error is None:
                _send(b"E")
            else:
                _send(b"D", error.encode("utf-8", "replace"))
        except KeyboardInterrupt:   # landed after the code finished: too late
            _send(b"D", b"")


_OUT_FD = 1
_IN_FD = 0

if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
