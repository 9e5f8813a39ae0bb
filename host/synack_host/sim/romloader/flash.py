"""A SPI NOR flash chip backed by a host file.

NOR flash semantics, because they are what make flashing bugs visible: erasing sets
whole 4 KiB sectors to 0xFF, and programming can only clear bits (new = old & data), so
a loader that writes without erasing first leaves wrong bytes, as on the real chip.

The file holds the whole chip, byte for byte (``esptool read-flash 0 4MB`` gives the
same bytes); it is created erased (all 0xFF) when it does not exist, and must be exactly
the flash size when it does.
"""

from __future__ import annotations

import os

SECTOR = 0x1000
SIZES = {"1MB": 1 << 20, "2MB": 2 << 20, "4MB": 4 << 20, "8MB": 8 << 20, "16MB": 16 << 20}
MANUFACTURER = 0xC8     # GigaDevice
MEMORY_TYPE = 0x40      # GD25Q series (quad SPI NOR)
# the SFDP header at SFDP address 0: signature "SFDP", revision 1.6, one parameter header
SFDP = b"SFDP\x06\x01\x00\xff" + b"\x00\x06\x01\x10\x30\x00\x00\xff"


class FlashError(ValueError):
    """An address range outside the chip, or a misaligned erase."""


def parse_size(text: str) -> int:
    """``4MB`` / ``4MiB`` / ``4194304`` -> bytes; a power of two from 1 to 16 MiB."""
    t = text.strip().upper().replace("MIB", "MB")
    size = SIZES.get(t)
    if size is None:
        try:
            size = int(t, 0)
        except ValueError:
            raise FlashError(f"flash size must be one of {', '.join(SIZES)} (or bytes), "
                             f"got {text!r}") from None
    if size not in SIZES.values():
        raise FlashError(f"flash size must be one of {', '.join(SIZES)}, got {text!r}")
    return size


class Flash:
    def __init__(self, path: str | os.PathLike, size: int):
        if size not in SIZES.values():
            raise FlashError(f"unsupported flash size {size}")
        self.path = os.fspath(path)
        self.size = size
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.path, flags, 0o644)
        have = os.fstat(self._fd).st_size
        if have == 0:
            for pos in range(0, size, 1 << 20):     # a new chip comes erased
                os.pwrite(self._fd, b"\xff" * (1 << 20), pos)
        elif have != size:
            os.close(self._fd)
            raise FlashError(f"{self.path} is {have} bytes, not the flash size {size}: "
                             "give the matching --flash-size or a new file")

    @property
    def jedec_id(self) -> int:
        """RDID (0x9F) as the SPI controller's W0 register holds it: manufacturer in
        the low byte, then memory type, then capacity (log2 of the size)."""
        return MANUFACTURER | (MEMORY_TYPE << 8) | ((self.size.bit_length() - 1) << 16)

    def _check(self, addr: int, length: int) -> None:
        if addr < 0 or length < 0 or addr + length > self.size:
            raise FlashError(f"0x{addr:x}+0x{length:x} is outside the "
                             f"{self.size >> 20} MiB flash")

    def read(self, addr: int, length: int) -> bytes:
        self._check(addr, length)
        return os.pread(self._fd, length, addr)

    def program(self, addr: int, data: bytes) -> None:
        """Page program: bits can only go from 1 to 0."""
        self._check(addr, len(data))
        old = self.read(addr, len(data))
        new = (int.from_bytes(old, "little") & int.from_bytes(data, "little"))
        os.pwrite(self._fd, new.to_bytes(len(data), "little"), addr)

    def erase(self, addr: int, length: int) -> None:
        if addr % SECTOR or length % SECTOR:
            raise FlashError(f"erase of 0x{addr:x}+0x{length:x} is not sector aligned")
        self._check(addr, length)
        for pos in range(addr, addr + length, 1 << 20):
            os.pwrite(self._fd, b"\xff" * min(1 << 20, addr + length - pos), pos)

    def erase_covering(self, addr: int, length: int) -> None:
        """Erase every sector that [addr, addr+length) touches (what a loader does
        before writing there)."""
        start = addr - addr % SECTOR
        end = -(-(addr + length) // SECTOR) * SECTOR
        self.erase(start, min(end, self.size) - start)

    def sfdp(self, addr: int, nbytes: int) -> bytes:
        table = SFDP + b"\xff" * 256
        return table[addr:addr + nbytes].ljust(nbytes, b"\xff")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
