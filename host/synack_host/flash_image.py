"""A firmware image for ``synack flash``, checked before any port is opened: the ESP
image magic, segments, checksum and appended SHA-256 as esptool's own parser
(``esptool.bin_image.LoadFirmwareImage``) reads them, and the chip the extended header
names; what it is for, the MicroPython version it holds, its hashes."""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Any

from .command import describe_os_error, read_regular_file
from .flash_output import Sink, esptool_output

CHIPS = ("esp32", "esp32s2", "esp32s3", "esp32c3", "esp32c6")
MAX_IMAGE = 16 << 20          # the largest flash these chips map
VERSION_RE = re.compile(rb"MicroPython (v\d+\.\d+\.\d+[0-9A-Za-z.\-+_]* on \d{4}-\d{2}-\d{2})")


class FlashError(Exception):
    """What went wrong, for ``synack: <message>``; names the port once one is open.
    From flash_board, ``result`` holds what was learnt before (chip, MAC, timings)."""

    result: Any = None


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
