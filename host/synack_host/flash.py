"""Flash one board with esptool's public API (``esptool.cmds``), then prove it boots.

``inspect_image(path)`` checks a firmware file before any port is opened: the ESP image
magic, segments, checksum and appended SHA-256 as esptool's own parser
(``esptool.bin_image.LoadFirmwareImage``) reads them, and the chip the extended header
names. ``flash_board(port, image, options)`` then, in order:

1. connects to the ROM loader (``detect_chip``) at 115200 and reads the chip, its MAC and
   its flash size - still in the ROM, still nothing written - and refuses an image for
   another chip or larger than the flash: no FLASH_BEGIN has been sent at that point;
2. starts esptool's flasher stub (``run_stub``; not with ``stub=False``, the ROM then
   writes), raises the baud rate, optionally erases the chip (``erase_flash``), writes
   (``write_flash``: compressed, MD5 checked) and verifies (``verify_flash``);
3. resets into the application (``reset_chip``; ``soft-reset`` goes back to the ROM and
   uses its "run user code", which is also what the virtual ROM loader understands) and
   reads the port until MicroPython's banner shows its version.

esptool's console output goes to a per-thread sink (several boards flash at once in
threads): kept for ``--verbose`` and for error messages, its progress bar turned into
``report(phase, done, total, offset)`` calls. Every failure is a FlashError naming the
port, and, during the write, the flash offset reached.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .flash_image import CHIPS, MAX_IMAGE, FlashError, ImageInfo, chip_class, chip_key  # noqa: F401
from .flash_image import inspect_image  # noqa: F401  (re-exported for callers)
from .flash_output import Report, Sink, esptool_output

ROM_BAUD = 115200             # what every ESP ROM listens at after reset
BANNER_RE = re.compile(rb"MicroPython (v\d+\.\d+\.\d+[^\s;]*(?: on \d{4}-\d{2}-\d{2})?)"
                       rb"(?:; ([^\r\n]*))?\r?\n")
BANNER_NUDGE_S = 3.0          # no banner yet: Ctrl-B asks the friendly REPL for it again


# -- one board ------------------------------------------------------------------------
@dataclass
class FlashOptions:
    offset: int | None = None       # None: the chip's bootloader offset
    chip: str = "auto"
    erase: bool = False
    baud: int = 460800
    verify: bool = True
    before: str = "default-reset"   # esptool's connect mode
    after: str = "hard-reset"       # esptool's reset mode
    boot_timeout: float = 15.0
    connect_attempts: int = 3
    stub: bool = True               # False: the ROM loader writes (slower; a fallback)


@dataclass
class Flashed:
    port: str
    chip: str = ""
    mac: str = ""
    flash_size: int = 0
    offset: int = 0
    version: str | None = None          # what the banner showed
    banner: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def _mac_text(mac) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def flash_board(port: str, image: ImageInfo, opts: FlashOptions,
                report: Report | None = None,
                echo: Callable[[str], None] | None = None) -> Flashed:
    """Flash ``image`` to the board on ``port`` and wait for its banner (unless
    ``opts.after`` is ``no-reset``); FlashError on any failure."""
    sink = Sink(echo=echo, report=report)
    result = Flashed(port)
    with esptool_output(sink):
        try:
            esp = _connect(port, opts, sink, result)
            try:
                esp = _write(esp, port, image, opts, sink, result)
                _reset(esp, port, image, opts, sink, result)
            finally:
                with contextlib.suppress(Exception):
                    esp._port.close()
        except FlashError as e:
            e.result = result          # what was learnt before it failed: chip, MAC
            raise
    return result


def _step(sink: Sink, result: Flashed, name: str):
    """Time one phase into ``result.timings``."""
    @contextlib.contextmanager
    def timed():
        sink.set_phase(name)
        t = time.monotonic()
        try:
            yield
        finally:
            result.timings[name] = round(time.monotonic() - t, 3)
    return timed()


SILENCE = ("No more data", "Timed out", "No serial data", "timed out", "Timeout")


def _esptool_failure(e: BaseException, sink: Sink) -> str:
    """esptool's message on one line, without its troubleshooting link."""
    text = " ".join(str(e).split()) or type(e).__name__
    text = re.sub(r"\s*(This can have many causes|For troubleshooting)[^.]*?(https?://\S+)?$",
                  "", text.replace("\\[", "["))
    return text.rstrip(" .,")


def _connect(port: str, opts: FlashOptions, sink: Sink, result: Flashed):
    from esptool.cmds import detect_chip

    with _step(sink, result, "connecting"):
        try:
            esp = detect_chip(port, ROM_BAUD, opts.before, False, opts.connect_attempts)
        except Exception as e:     # FatalError, serial errors, OSError
            raise FlashError(f"{port}: no ESP ROM loader answers ({_esptool_failure(e, sink)}); "
                             "hold BOOT and press EN to put the board in download mode"
                             ) from None
    result.chip = chip_key(esp.CHIP_NAME)
    return esp


def _write(esp, port: str, image: ImageInfo, opts: FlashOptions, sink: Sink,
           result: Flashed):
    from esptool.cmds import (attach_flash, detect_flash_size, erase_flash, run_stub,
                              verify_flash, write_flash)
    from esptool.util import flash_size_bytes

    offset = image.default_offset if opts.offset is None else opts.offset
    result.offset = offset
    phase = "checking"
    try:
        with _step(sink, result, "checking"):
            result.mac = _mac_text(esp.read_mac())
            if opts.chip != "auto" and result.chip != opts.chip:
                raise FlashError(f"{port}: the board is an {esp.CHIP_NAME}, --chip says "
                                 f"{opts.chip}; nothing was written")
            if result.chip != image.chip:
                raise FlashError(f"{port}: {image.path} is an {image.chip_name} image, but "
                                 f"the board is an {esp.CHIP_NAME}; nothing was written")
            attach_flash(esp)
            size_name = detect_flash_size(esp)
            result.flash_size = (flash_size_bytes(size_name) or 0) if size_name else 0
        if result.flash_size and offset + len(image.data) > result.flash_size:
            raise FlashError(f"{port}: {image.path} ({len(image.data)} bytes) at "
                             f"0x{offset:x} does not fit in the board's {size_name} flash; "
                             "nothing was written")
        phase = "stub" if opts.stub else "baud"
        with _step(sink, result, phase):
            if opts.stub:
                esp = run_stub(esp)
            if opts.baud != ROM_BAUD:
                esp.change_baud(opts.baud)
            attach_flash(esp)
        if opts.erase:
            phase = "erasing"
            with _step(sink, result, "erasing"):
                erase_flash(esp)
        phase = "writing"
        with _step(sink, result, "writing"):
            write_flash(esp, [(offset, image.data)], compress=True)
        if opts.verify:
            phase = "verifying"
            with _step(sink, result, "verifying"):
                verify_flash(esp, [(offset, image.data)])
    except FlashError:
        raise
    except Exception as e:     # esptool's FatalError, serial errors, OSError
        why = _esptool_failure(e, sink)
        if phase == "writing":
            where = f"0x{sink.offset:08x}" if sink.offset is not None else f"0x{offset:08x}"
            what = ("the board stopped answering" if any(w in why for w in SILENCE)
                    else "writing failed")
            raise FlashError(f"{port}: {what} at flash offset {where} ({sink.done} of "
                             f"{sink.total or len(image.data)} bytes sent; esptool: {why})"
                             ) from None
        raise FlashError(f"{port}: {phase} failed: {why}") from None
    return esp


def _reset(esp, port: str, image: ImageInfo, opts: FlashOptions, sink: Sink,
           result: Flashed) -> None:
    from esptool.cmds import reset_chip

    with _step(sink, result, "resetting"):
        try:
            if opts.after == "soft-reset" and esp.IS_STUB:
                # the stub cannot run the app: back to the ROM, whose FLASH_END can
                esp.soft_reset(True)
                esp._port.baudrate = ROM_BAUD
                rom = chip_class(result.chip)(esp._port, ROM_BAUD)
                rom.connect("no-reset")
                esp = rom
            reset_chip(esp, opts.after)
        except Exception as e:
            raise FlashError(f"{port}: written and verified, but the reset "
                             f"({opts.after}) failed: {_esptool_failure(e, sink)}") from None
    if opts.after == "no-reset":
        return
    with _step(sink, result, "booting"):
        result.version, result.banner = wait_banner(esp._port, port, opts.boot_timeout)
    if image.version and result.version and not result.version.startswith(
            image.version.split(" on ")[0]):
        raise FlashError(f"{port}: the board boots {result.version}, but the image holds "
                         f"{image.version}")


def wait_banner(ser, port: str, timeout: float) -> tuple[str, str]:
    """Read ``ser`` (a pyserial port, at 115200) until MicroPython's banner; returns
    (version, banner line)."""
    import serial

    ser.baudrate = ROM_BAUD
    ser.timeout = 0.05
    buf = b""
    deadline = time.monotonic() + timeout
    nudge = time.monotonic() + BANNER_NUDGE_S
    while time.monotonic() < deadline:
        try:
            chunk = ser.read(ser.in_waiting or 1)
        except (serial.SerialException, OSError) as e:
            raise FlashError(f"{port}: the port went away while the board booted: {e}") from None
        buf = (buf + chunk)[-8192:]
        m = BANNER_RE.search(buf)
        if m:
            line = m.group(0).decode(errors="replace").strip()
            return m.group(1).decode(errors="replace"), line
        if nudge and time.monotonic() > nudge:
            nudge = 0.0
            with contextlib.suppress(serial.SerialException, OSError):
                ser.write(b"\x02")     # Ctrl-B: the friendly REPL prints the banner again
        if not chunk:
            time.sleep(0.02)
    last = buf[-120:].decode(errors="replace").strip().splitlines()[-2:]
    seen = f" (last output: {' | '.join(last)!r})" if last else " (no output at all)"
    raise FlashError(f"{port}: flashed and verified, but no MicroPython banner within "
                     f"{timeout:.0f} s of the reset{seen}; on a board without auto-reset "
                     "press EN, on the virtual board use --after soft-reset")
