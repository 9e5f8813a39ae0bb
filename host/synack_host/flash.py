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
import hashlib
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .command import describe_os_error, read_regular_file

CHIPS = ("esp32", "esp32s2", "esp32s3", "esp32c3", "esp32c6")
MAX_IMAGE = 16 << 20          # the largest flash these chips map
ROM_BAUD = 115200             # what every ESP ROM listens at after reset
BANNER_RE = re.compile(rb"MicroPython (v\d+\.\d+\.\d+[^\s;]*(?: on \d{4}-\d{2}-\d{2})?)"
                       rb"(?:; ([^\r\n]*))?\r?\n")
VERSION_RE = re.compile(rb"MicroPython (v\d+\.\d+\.\d+[0-9A-Za-z.\-+_]* on \d{4}-\d{2}-\d{2})")
BANNER_NUDGE_S = 3.0          # no banner yet: Ctrl-B asks the friendly REPL for it again

Report = Callable[[str, int, int, "int | None"], None]   # phase, done, total, offset


class FlashError(Exception):
    """What went wrong, for ``synack: <message>``; names the port once one is open.
    From flash_board, ``result`` holds what was learnt before (chip, MAC, timings)."""

    result: Flashed | None = None


# -- the image ------------------------------------------------------------------------
@dataclass
class ImageInfo:
    path: str
    data: bytes
    chip: str                 # esptool's chip key: esp32, esp32s3 ...
    chip_name: str            # ESP32, ESP32-S3 ...
    version: str | None       # the MicroPython version string the image holds
    sha256: str = ""
    md5: str = ""

    @property
    def default_offset(self) -> int:
        return chip_class(self.chip).BOOTLOADER_FLASH_OFFSET


def chip_class(key: str):
    from esptool.targets import CHIP_DEFS

    return CHIP_DEFS[key]


def chip_key(chip_name: str) -> str:
    """esptool's CHIP_NAME (``ESP32-S3``) -> its key (``esp32s3``)."""
    return re.sub(r"[-()]", "", chip_name.lower())


def inspect_image(path: str) -> ImageInfo:
    """Read and check a firmware file; FlashError says what is wrong with it."""
    try:
        data = read_regular_file(path, MAX_IMAGE)
    except OSError as e:
        raise FlashError(f"cannot read image {path}: {describe_os_error(e)}") from None
    return check_image(path, data)


def check_image(path: str, data: bytes) -> ImageInfo:
    from esptool.bin_image import LoadFirmwareImage
    from esptool.targets import CHIP_DEFS

    if not data:
        raise FlashError(f"{path} is empty")
    if data[:4] == b"\x7fELF":
        raise FlashError(f"{path} is an ELF file, not a flash image; flash the .bin built "
                         "from it (esptool elf2image)")
    if data[0] != 0xE9:
        raise FlashError(f"{path} is not an ESP firmware image (it starts with "
                         f"0x{data[0]:02x}; an ESP image starts with 0xE9)")
    image: Any
    with esptool_output(Sink()):
        try:
            image = LoadFirmwareImage("esp32", data)      # the common header: chip ID
            by_id = {cls.IMAGE_CHIP_ID: key for key, cls in CHIP_DEFS.items()
                     if key in CHIPS}
            key = by_id.get(image.chip_id)
            if key is None:
                raise FlashError(f"{path} is an image for chip ID {image.chip_id}, not one "
                                 f"of {', '.join(CHIPS)}")
            image = LoadFirmwareImage(key, data)
        except FlashError:
            raise
        except struct.error:
            raise FlashError(f"{path} is truncated: it ends inside the image header "
                             f"({len(data)} bytes)") from None
        except Exception as e:   # esptool's FatalError, RuntimeError for bad fields
            text = " ".join(str(e).split())
            if "End of file" in text:
                raise FlashError(f"{path} is truncated ({len(data)} bytes): {text}") from None
            raise FlashError(f"{path} is not a valid ESP image: {text}") from None
    calc = image.calculate_checksum()
    if image.checksum != calc:
        raise FlashError(f"{path} is corrupt: its checksum byte is 0x{image.checksum:02x}, "
                         f"its segments sum to 0x{calc:02x}")
    if getattr(image, "append_digest", False) and image.stored_digest != image.calc_digest:
        what = ("truncated: the SHA-256 that ends the image is missing"
                if len(image.stored_digest) < 32 else
                "corrupt: its appended SHA-256 does not match its contents")
        raise FlashError(f"{path} is {what}")
    m = VERSION_RE.search(data)
    return ImageInfo(path, data, key, CHIP_DEFS[key].CHIP_NAME,
                     m.group(1).decode() if m else None,
                     hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())


# -- esptool's output -----------------------------------------------------------------
@dataclass
class Sink:
    """One board's share of esptool's output."""
    echo: Callable[[str], None] | None = None     # --verbose: each line as it comes
    report: Report | None = None
    phase: str = "connecting"
    lines: list[str] = field(default_factory=list)
    offset: int | None = None                     # "Writing at 0x..." last seen
    done: int = 0
    total: int = 0

    def line(self, text: str) -> None:
        text = text.replace("\\[", "[")
        self.lines.append(text)
        del self.lines[:-200]
        if self.echo and text.strip():
            self.echo(text)

    def progress(self, done: int, total: int, prefix: str) -> None:
        m = re.search(r"at (0x[0-9a-fA-F]+)", prefix)
        if m:
            self.offset = int(m.group(1), 16)
        self.done, self.total = done, total
        if self.report:
            self.report(self.phase, done, total, self.offset)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        if self.report:
            self.report(phase, 0, 0, None)

    def tail(self, n: int = 3) -> str:
        return " / ".join(t.strip() for t in self.lines[-n:] if t.strip())


_local = threading.local()
_install_lock = threading.Lock()
_users = 0                      # threads inside esptool_output
_previous: Any = None           # the logger that was there before


def _make_dispatcher():
    from esp_pylib.logger import EspLogBase

    class Dispatch(EspLogBase):
        """esptool's logger, routed to the calling thread's Sink."""

        def _sink(self) -> Sink | None:
            return getattr(_local, "sink", None)

        def _text(self, *args, **kwargs) -> None:
            sink = self._sink()
            if sink is not None:
                sink.line(" ".join(str(a) for a in args))

        print = err = warn = note = hint = debug = _text

        def set_verbosity(self, mode) -> None:
            pass

        def progress_bar(self, cur_iter, total_iters, prefix="", suffix="",
                         bar_length=30) -> None:
            sink = self._sink()
            if sink is not None:
                sink.progress(cur_iter, total_iters, prefix)

    return Dispatch()


@contextlib.contextmanager
def esptool_output(sink: Sink) -> Iterator[Sink]:
    """Route esptool's console output in this thread to ``sink``."""
    from esp_pylib.logger import EspLog

    import esptool.logger  # noqa: F401  (installs esptool's own logger first)

    global _users, _previous
    with _install_lock:
        if _users == 0:
            _previous = EspLog.instance
            EspLog.set_logger(_make_dispatcher())
        _users += 1
    previous, _local.sink = getattr(_local, "sink", None), sink
    try:
        yield sink
    finally:
        _local.sink = previous
        with _install_lock:
            _users -= 1
            if _users == 0 and _previous is not None:
                EspLog.set_logger(_previous)
            elif _users == 0:
                EspLog._reset()


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
