"""What the virtual chip does when it boots from flash (BOOT released), sans-I/O.

The ROM reads the image at the chip's boot offset (0x1000 on ESP32, 0x0 on ESP32-S3).
This module checks it with esptool's own image parser (``LoadFirmwareImage``: magic,
segments, the XOR checksum, the appended SHA-256) and decides:

* ``micropython``: a valid image whose segments hold a MicroPython version string
  (``MicroPython v1.24.1 on 2024-11-29``) - the virtual MicroPython board comes up
  with that version in its banner;
* ``no-firmware``: a valid image without one - nothing this rig can run, the chip
  stays silent after the ROM's load lines;
* ``error``: the ROM's (or second-stage bootloader's) complaint, repeated as the real
  chip repeats it while its watchdog resets it over and over; ``cycles`` holds one
  chunk of console text per reset, so the driver can pace them and stop after a few
  (a real chip loops forever).

Where the version string may also sit in an app behind a partition table (a real
MicroPython ``firmware.bin`` written at 0x1000 holds the second-stage bootloader, the
partition table at 0x8000 and the app at 0x10000), the factory/first app partition is
checked the same way.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from .chips import Chip
from .flash import Flash

VERSION_RE = re.compile(rb"MicroPython (v\d+\.\d+\.\d+[0-9A-Za-z.\-+_]* on \d{4}-\d{2}-\d{2})")
PARTITION_TABLE = 0x8000
PARTITION_MAGIC = b"\xaa\x50"
ERROR_LINES = 6          # complaint lines printed per reset
ERROR_CYCLES = 3         # resets printed before the virtual chip goes quiet
MAX_IMAGE = 16 << 20


@dataclass
class BootResult:
    kind: str                       # "micropython", "no-firmware" or "error"
    version: str | None = None
    console: str = ""               # printed once, at this boot
    cycles: list[str] = field(default_factory=list)   # error: one chunk per reset
    detail: str = ""                # for logs and the status query


def _load(chip: Chip, flash: Flash, offset: int):
    """(image, problem): esptool's parsed image, or None and the ROM's complaint."""
    from esptool.bin_image import LoadFirmwareImage
    from esptool.util import FatalError

    head = flash.read(offset, 4)
    if head[0] != 0xE9:
        return None, f"invalid header: 0x{struct.unpack('<I', head)[0]:08x}"
    data = flash.read(offset, min(MAX_IMAGE, flash.size - offset))
    try:
        image = LoadFirmwareImage(chip.key, data)
    except (FatalError, struct.error, ValueError) as e:
        return None, f"invalid header: 0x{struct.unpack('<I', head)[0]:08x} ({e})"
    calc = image.calculate_checksum()
    if image.checksum != calc:
        return image, f"csum err:0x{image.checksum:02x}!=0x{calc:02x}"
    if getattr(image, "append_digest", False) and image.stored_digest != image.calc_digest:
        return image, "E (312) esp_image: Image hash failed - image is corrupt"
    return image, None


def _load_lines(image) -> str:
    return "".join(f"load:0x{s.addr:08x},len:{len(s.data)}\r\n" for s in image.segments)


def _version(image) -> str | None:
    for seg in image.segments:
        m = VERSION_RE.search(bytes(seg.data))
        if m:
            return m.group(1).decode()
    return None


def _app_offsets(flash: Flash) -> list[int]:
    """App partitions of the partition table at 0x8000, factory first."""
    table = flash.read(PARTITION_TABLE, 0xC00)
    apps = []
    for i in range(0, len(table), 32):
        entry = table[i:i + 32]
        if entry[:2] != PARTITION_MAGIC:
            break
        ptype, subtype, offset = entry[2], entry[3], struct.unpack_from("<I", entry, 4)[0]
        if ptype == 0 and offset < flash.size:
            apps.append((subtype != 0, offset))
    return [off for _, off in sorted(apps)]


def boot(chip: Chip, flash: Flash, cause: str = "poweron") -> BootResult:
    header = chip.rom_banner + chip.reset_line(cause, download=False)
    image, problem = _load(chip, flash, chip.boot_offset)
    if problem is not None:
        return _error(chip, header, image, problem)
    assert image is not None
    console = header + _load_lines(image) + f"entry 0x{image.entrypoint:08x}\r\n"
    version = _version(image)
    if version is None:
        for offset in _app_offsets(flash):
            app, app_problem = _load(chip, flash, offset)
            if app_problem is not None:
                return _error(chip, console, None, app_problem)
            version = _version(app)
            if version:
                break
    if version is None:
        return BootResult("no-firmware", console=console,
                          detail=f"valid image at 0x{chip.boot_offset:x}, no MicroPython "
                                 "version string: nothing to run")
    return BootResult("micropython", version=version, console=console,
                      detail=f"MicroPython {version}")


def _error(chip: Chip, header: str, image, problem: str) -> BootResult:
    loads = _load_lines(image) if image is not None else ""
    if problem.startswith("invalid header"):
        # the ROM retries the read, printing the same line, until its watchdog fires
        complaint = (problem.split(" (")[0] + "\r\n") * ERROR_LINES
    else:
        complaint = loads + problem + "\r\n" + (
            "ets_main.c 371 \r\n" if chip.key == "esp32" and "csum" in problem else "")
    first = header + complaint
    again = chip.rom_banner + chip.reset_line("watchdog", download=False) + complaint
    return BootResult("error", console="", cycles=[first] + [again] * (ERROR_CYCLES - 1),
                      detail=problem)
