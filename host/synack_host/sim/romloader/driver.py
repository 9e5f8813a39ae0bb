"""The virtual chip on a pty: ROM download mode, then (after a reset with BOOT
released) whatever the flash boots into - the virtual MicroPython board on the same pty.

This is the thin I/O driver around ``Loader`` (sans-I/O) and ``boot.boot``: it moves
bytes between the pty and the loader, paces the line at the loader's baud rate (115200
after reset, then what CHANGE_BAUDRATE sets, switched only once the reply is out, as
the ROM does), and acts on the loader's events once their reply has been sent:

=============  ===================================================================
``run``        ROM FLASH_END / FLASH_DEFL_END "run user code" (esptool ``--no-stub
               --after soft-reset``, ``esptool run``): boot from flash
``reboot``     a software reset (FLASH_END reboot, the stub's way back): the strap
               is still latched, so the ROM loader again
``watchdog``   ESP32-S3 RTC watchdog enabled (``--after watchdog-reset``): a system
               reset that samples the strapping pins: boot from flash
=============  ===================================================================

A pty has no DTR/RTS, so esptool's ``--after hard-reset`` RTS pulse does nothing here;
the control socket (``--control PATH``, same line protocol as the modem's fault
socket, so ``synack sim fault PATH reset`` works) stands in for the buttons:
``reset`` (press EN with BOOT released: boot from flash), ``download`` (hold BOOT,
press EN: ROM loader), ``status`` and ``log`` (JSON: phase, loader mode, baud,
commands received); one fault, ``stall N``: after N more bytes from the host the chip
stops answering (a hung chip, a cable pulled mid-write) until ``reset``/``download``.
"""

from __future__ import annotations

import json
import selectors
import time
from collections.abc import Callable
from typing import Any

from ..control import ControlServer, Fault, FaultError
from ..pty import PtyLink, Waker, serve_until_signalled
from . import boot as boot_mod
from .chips import Chip
from .flash import Flash
from .loader import INITIAL_BAUD, Loader

DOWNLOAD, MICROPYTHON, BOOT_ERROR, HALTED = "download", "micropython", "boot-error", "halted"
STALLED = "stalled"       # the ``stall`` fault fired: input ignored, nothing answered
ERROR_PERIOD_S = 1.0      # between two watchdog resets of a chip that cannot boot
IDLE_WAIT_S = 0.5
WATCHDOG_DELAY_S = 0.05   # enabled RTC watchdog -> reset; esptool's lock write comes first
STATUS_TAIL = 100         # commands in the status answer (``log`` has them all)

MakeBoard = Callable[[str, PtyLink], Any]     # (version, pty) -> a started board.Board


class DownloadBoard:
    def __init__(self, chip: Chip, flash: Flash, mac: bytes, make_board: MakeBoard,
                 pace: bool = True, board_baud: int | None = None,
                 link_path: str | None = None, control_path: str | None = None,
                 trace: Callable[[str], None] | None = None):
        self.chip = chip
        self.flash = flash
        self.make_board = make_board
        self.pace = pace
        self.board_baud = board_baud
        self.trace = trace
        self.pty = PtyLink(INITIAL_BAUD if pace else None, link_path)
        self.loader = Loader(chip, flash, mac, on_log=self._log_command)
        self.sel = selectors.DefaultSelector()
        self._waker = Waker()
        self.sel.register(self._waker.fd, selectors.EVENT_READ, self._waker.drain)
        self._pty_events = 0
        self.board: Any = None
        self.phase = DOWNLOAD
        self.boot_detail = ""
        self.version: str | None = None
        self.dropped = 0                     # host bytes a chip not listening ignored
        self._events: list[tuple] = []
        self._cycles: list[str] = []
        self._next_cycle = 0.0
        self._watchdog_at: float | None = None
        self._running = False
        self.stall_left: int | None = None  # host bytes until the ``stall`` fault fires
        self.control = ControlServer(self, control_path) if control_path else None
        self.enter_download("poweron")

    @property
    def port(self) -> str:
        return self.pty.path

    # -- what the control socket's ControlServer needs ---------------------------------
    @property
    def fault_table(self) -> dict[str, Fault]:
        return CONTROLS

    def watch(self, sock, events: int, callback) -> None:
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        if events:
            self.sel.register(sock, events, callback)

    # -- phases ------------------------------------------------------------------------
    def _stop_board(self) -> None:
        if self.board is not None:
            self.board.close(keep_pty=True)
            self.board = None

    def enter_download(self, cause: str) -> None:
        """A reset with BOOT (GPIO0) held low: the ROM prints why and waits."""
        self._stop_board()
        self.loader.reset()
        self.pty.set_baud(INITIAL_BAUD if self.pace else None)
        self.pty.clear_input()
        self._events.clear()
        self._cycles = []
        self._watchdog_at = None
        self.stall_left = None
        self.phase = DOWNLOAD
        self.pty.write((self.chip.rom_banner + self.chip.reset_line(cause, download=True)
                        + "waiting for download\r\n").encode())
        self._trace(f"download mode ({cause} reset)")

    def boot(self, cause: str) -> None:
        """A reset with BOOT released: the ROM boots what the flash holds."""
        self._stop_board()
        self.pty.set_baud(INITIAL_BAUD if self.pace else None)
        self.pty.clear_input()
        self._events.clear()
        self._watchdog_at = None
        self.stall_left = None
        result = boot_mod.boot(self.chip, self.flash, cause)
        self.boot_detail, self.version = result.detail, result.version
        self._trace(f"boot ({cause} reset): {result.kind}: {result.detail}")
        self.pty.write(result.console.encode())
        if result.kind == "micropython":
            assert result.version is not None
            self.pty.set_baud(self.board_baud)
            self.phase = MICROPYTHON
            self.board = self.make_board(result.version, self.pty)
        elif result.kind == "error":
            self.phase = BOOT_ERROR
            self._cycles = list(result.cycles)
            self._next_cycle = time.monotonic()
        else:
            self.phase = HALTED

    # -- loop --------------------------------------------------------------------------
    def _on_pty(self, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            self.pty.fill()
        if mask & selectors.EVENT_WRITE:
            self.pty.flush()

    def step(self, max_wait: float = IDLE_WAIT_S) -> None:
        if self.phase == MICROPYTHON:
            self.board.step(min(max_wait, 0.05))     # short: the control socket waits
            for key, mask in self.sel.select(0):
                key.data(mask)
            return
        events = (selectors.EVENT_READ if self.pty.wants_fill() else 0) | (
            selectors.EVENT_WRITE if self.pty.wants_flush() else 0)
        if events != self._pty_events:
            if self._pty_events:
                self.sel.unregister(self.pty.master)
            if events:
                self.sel.register(self.pty.master, events, self._on_pty)
            self._pty_events = events
        wait = min(max_wait, self.pty.delay())
        if self._cycles:
            wait = min(wait, max(0.0, self._next_cycle - time.monotonic()))
        if self._watchdog_at is not None:
            wait = min(wait, max(0.0, self._watchdog_at - time.monotonic()))
        if wait < 0.002:
            time.sleep(max(0.0, wait))   # pacing needs finer steps than epoll's 1 ms
            wait = 0.0
        for key, mask in self.sel.select(wait):
            key.data(mask)
        while self.phase != DOWNLOAD and self.pty.has_input():
            chunk = self.pty.read()      # a chip in a boot loop does not listen
            if not chunk:
                break
            self.dropped += len(chunk)
        while self.phase == DOWNLOAD and self.pty.has_input():
            chunk = self.pty.read()
            if not chunk:
                break
            if self.stall_left is not None and len(chunk) >= self.stall_left:
                self.dropped += len(chunk) - self.stall_left
                chunk, self.stall_left = chunk[:self.stall_left], None
                self.phase = STALLED
                self._trace("stalled: the chip stops answering")
            elif self.stall_left is not None:
                self.stall_left -= len(chunk)
            self.loader.receive(chunk)
            self.pty.write(self.loader.take_output())
            self._events += self.loader.take_events()
        self._act()
        if self._cycles and time.monotonic() >= self._next_cycle:
            self.pty.write(self._cycles.pop(0).encode())
            self._next_cycle = time.monotonic() + ERROR_PERIOD_S
        if self._watchdog_at is not None and time.monotonic() >= self._watchdog_at:
            self.boot("watchdog")
        self.pty.flush()
        self._act()     # at once: the host may send its next command right after the reply

    def _act(self) -> None:
        """Loader events, each once the replies before it have left (a baud change
        sent earlier would garble them; a reset earlier would cut them off)."""
        while self._events and self.pty.pending_out == 0:
            kind, *args = self._events.pop(0)
            self._trace(f"event {kind} {args or ''}")
            if kind == "baud" and self.pace:
                self.pty.set_baud(args[0])
            elif kind == "reboot":
                self.enter_download("software")
            elif kind == "run":
                self.boot("software")
            elif kind == "watchdog":
                self._watchdog_at = time.monotonic() + WATCHDOG_DELAY_S
            if self.phase != DOWNLOAD:
                return

    def serve(self) -> None:
        self._running = True
        while self._running:
            self.step()

    def request_stop(self) -> None:
        self._running = False
        self._waker.wake()
        if self.board is not None:
            self.board.request_stop()

    def run_until_signalled(self) -> None:
        serve_until_signalled(self.serve, self.request_stop, self.close)

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None
        self._stop_board()
        self.sel.close()
        self.pty.close()
        self._waker.close()
        self.flash.close()

    # -- status ------------------------------------------------------------------------
    def _log_command(self, entry: dict) -> None:
        if self.trace:
            self.trace("rom: " + " ".join(f"{k}={v:#x}" if isinstance(v, int) else f"{k}={v}"
                                          for k, v in entry.items()))

    def _trace(self, text: str) -> None:
        if self.trace:
            self.trace(f"board: {text}")

    def status(self, everything: bool = False) -> dict:
        log = list(self.loader.log)
        return {"phase": self.phase, "chip": self.chip.key, "loader": self.loader.mode,
                "state": self.loader.state, "baud": self.loader.baud,
                "flash": self.flash.path, "flash_size": self.flash.size,
                "boot": self.boot_detail, "version": self.version,
                "counts": dict(self.loader.counts), "dropped": self.dropped,
                "stall_left": self.stall_left,
                "commands": log if everything else log[-STATUS_TAIL:]}


def _reset(board: DownloadBoard, args: list[str]) -> str:
    board.boot("poweron")
    return f"booted: {board.phase}" + (f" ({board.boot_detail})" if board.boot_detail else "")


def _download(board: DownloadBoard, args: list[str]) -> str:
    board.enter_download("poweron")
    return "download mode"


def _status(board: DownloadBoard, args: list[str]) -> str:
    return json.dumps(board.status(), sort_keys=True)


def _log(board: DownloadBoard, args: list[str]) -> str:
    return json.dumps(board.status(everything=True)["commands"])


def _stall(board: DownloadBoard, args: list[str]) -> str:
    if len(args) != 1 or not args[0].isdigit():
        raise FaultError("stall wants one argument: the host bytes to take before stalling")
    if board.phase != DOWNLOAD:
        raise FaultError(f"the chip is not in download mode ({board.phase})")
    board.stall_left = int(args[0])
    return f"stalls after {board.stall_left} more bytes from the host"


def _clear_log(board: DownloadBoard, args: list[str]) -> str:
    if args:
        raise FaultError("clear-log takes no arguments")
    board.loader.log.clear()
    board.loader.counts.clear()
    return "log cleared"


CONTROLS: dict[str, Fault] = {
    "reset": Fault(_reset, "reset", "press EN with BOOT released: boot from flash"),
    "download": Fault(_download, "download", "hold BOOT, press EN: the ROM loader"),
    "status": Fault(_status, "status", "phase, loader mode, baud, counts, last commands (JSON)"),
    "log": Fault(_log, "log", "every command received (JSON list)"),
    "stall": Fault(_stall, "stall N", "after N more bytes from the host the chip stops "
                   "answering (ignores input) until reset/download"),
    "clear-log": Fault(_clear_log, "clear-log", "forget the commands received so far"),
}
