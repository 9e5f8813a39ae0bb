"""Firmware images for the virtual ROM loader, built with esptool's own image classes
(checksum and appended SHA-256 as esptool computes them), so that tests and benches
flash something a ROM would accept without downloading a real firmware.

``build_image("esp32", version="v1.24.1 on 2024-11-29", size=1536 * 1024)`` gives an
image of about ``size`` bytes: a DRAM segment holding the MicroPython banner string
(what the virtual ROM looks for to decide what it boots) and a flash-mapped DROM
segment filling the rest. The filler is one 4 KiB pattern per sector, stamped with the
sector number: it compresses to a few KiB (fast flashing at any baud rate), yet a
sector written at the wrong offset is told apart. ``random=True`` makes it
incompressible.

``build_firmware("esp32", version=...)`` lays out what a real MicroPython
``firmware.bin`` holds, to be written at the chip's boot offset: a second-stage
bootloader image (no version string), the partition table at flash 0x8000 and the
application, holding the version, at 0x10000 (the factory partition).
"""

from __future__ import annotations

import os
import random as _random
import struct

# per chip: image class name, a DRAM and a DROM (flash-mapped data) load address
_LAYOUT = {
    "esp32": ("ESP32FirmwareImage", 0x3FFB0000, 0x3F400020, 0x40080000),
    "esp32s3": ("ESP32S3FirmwareImage", 0x3FC88000, 0x3C000020, 0x40375000),
}
MIB = 1024 * 1024


def banner_blob(version: str) -> bytes:
    """The string MicroPython's banner is printed from, NUL-terminated as in .rodata."""
    return f"MicroPython {version}; synack test image with ESP32".encode() + b"\0"


def filler(size: int, random: bool = False, seed: int = 0) -> bytes:
    if random:
        return _random.Random(seed).randbytes(size)
    sector = bytes(range(256)) * 16
    out = bytearray()
    for n in range(-(-size // 4096)):
        out += struct.pack("<I", n) + sector[4:]
    return bytes(out[:size])


def build_image(chip: str = "esp32", version: str | None = "v1.24.1 on 2024-11-29",
                size: int = 64 * 1024, random: bool = False, seed: int = 0) -> bytes:
    """A valid image for ``chip`` of about ``size`` bytes (at least ~100 bytes);
    ``version=None`` leaves the MicroPython string out."""
    from esptool import bin_image
    from esptool.bin_image import ELFSection   # an ImageSegment with a name

    try:
        cls_name, dram, drom, entry = _LAYOUT[chip]
    except KeyError:
        raise ValueError(f"no image layout for chip {chip!r}; known: "
                         f"{', '.join(_LAYOUT)}") from None
    image = getattr(bin_image, cls_name)()
    image.chip_id = image.ROM_LOADER.IMAGE_CHIP_ID
    image.flash_size_freq = image.ROM_LOADER.FLASH_SIZES["4MB"]
    image.entrypoint = entry
    head = banner_blob(version) if version else b"synack test image\0"
    head += b"\0" * (-len(head) % 4)
    image.segments = [ELFSection(b".dram0.data", dram, head, 0)]
    bulk = max(4, size - len(head) - 24 - 64)    # headers, checksum, digest
    bulk -= bulk % 4
    image.segments.append(ELFSection(b".flash.rodata", drom, filler(bulk, random, seed), 0))
    data = image.save(None)
    if not isinstance(data, bytes):
        raise RuntimeError("esptool's image.save(None) returned no bytes")
    return data


def write_image(path: str | os.PathLike, **options) -> bytes:
    data = build_image(**options)
    with open(path, "wb") as f:
        f.write(data)
    return data


PARTITION_TABLE = 0x8000
APP_OFFSET = 0x10000
BOOT_OFFSETS = {"esp32": 0x1000, "esp32s3": 0x0}


def partition_table(app_size: int) -> bytes:
    """An ESP-IDF partition table (binary: 32-byte entries, magic 0xAA50): nvs and
    phy_init data partitions and the factory app at APP_OFFSET; 0xFF after the last."""
    def entry(ptype: int, subtype: int, offset: int, size: int, label: str) -> bytes:
        return struct.pack("<2sBBII16sI", b"\xaa\x50", ptype, subtype, offset, size,
                           label.encode(), 0)
    app = -(-app_size // 0x10000) * 0x10000
    table = (entry(1, 0x02, 0x9000, 0x6000, "nvs") + entry(1, 0x01, 0xF000, 0x1000, "phy_init")
             + entry(0, 0x00, APP_OFFSET, app, "factory"))
    return table + b"\xff" * (0xC00 - len(table))


def build_firmware(chip: str = "esp32", version: str | None = "v1.24.1 on 2024-11-29",
                   app_size: int = 256 * 1024, corrupt_app: bool = False) -> bytes:
    """A merged ``firmware.bin`` (bootloader + partition table + app) for ``chip``'s
    boot offset; ``corrupt_app`` flips a byte inside the app (its SHA-256 then fails)."""
    base = BOOT_OFFSETS[chip]
    loader = build_image(chip, version=None, size=16 * 1024)
    app = bytearray(build_image(chip, version=version, size=app_size))
    if corrupt_app:
        app[len(app) // 2] ^= 0xFF
    out = bytearray(loader)
    out += b"\xff" * (PARTITION_TABLE - base - len(out))
    out += partition_table(len(app))
    out += b"\xff" * (APP_OFFSET - base - len(out))
    return bytes(out + app)
