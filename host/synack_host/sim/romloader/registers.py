"""The chip's registers as READ_REG / WRITE_REG see them, with the one peripheral
esptool drives through them: the SPI1 controller's "user command", which sends one
command byte to the flash chip and latches up to 32 bits of its answer in W0.

esptool's ``run_spiflash_command`` sets SPI_USR (which phases), SPI_USR1 (address and
dummy lengths), SPI_USR2 (command byte, 8 bits), SPI_MISO_DLEN (bits to read),
SPI_ADDR, then sets bit 18 (USR) of SPI_CMD and polls until the bit clears; then it
reads W0. This model runs the command the moment USR is written, so the first poll
sees it done.
"""

from __future__ import annotations

from collections.abc import Callable

from .chips import Chip
from .flash import Flash

SPI_CMD_USR = 1 << 18
SPI_USR_ADDR = 1 << 30
SPI_USR_MISO = 1 << 28
ADDR_LEN_SHIFT = 26
RDID, RDSFDP = 0x9F, 0x5A
RDSR = (0x05, 0x35, 0x15)
# write enable/disable, volatile status enable, status writes: accepted, no effect
NO_DATA = (0x06, 0x04, 0x50, 0x01, 0x31, 0x11)
MAX_REGISTERS = 4096     # distinct addresses a host may write; beyond, writes are lost


class RegisterFile:
    def __init__(self, chip: Chip, flash: Flash, mac: bytes, baud: Callable[[], int],
                 download: bool = True):
        self.chip = chip
        self.flash = flash
        self._baud = baud
        self._regs: dict[int, int] = dict(chip.registers)
        self._regs.update(chip.mac_words(mac))
        self._regs[chip.strap_reg] = chip.strap_download if download else chip.strap_flash
        self.spi_commands: list[int] = []    # command bytes run, for the log

    def read(self, addr: int) -> int:
        if addr == self.chip.uart_clkdiv_reg:
            return self.chip.apb_hz // self._baud()   # what the ROM's auto-baud set
        return self._regs.get(addr, 0)

    def write(self, addr: int, value: int, mask: int = 0xFFFFFFFF) -> None:
        value = (value & mask) | (self.read(addr) & ~mask & 0xFFFFFFFF)
        if addr == self.chip.spi.cmd_reg and value & SPI_CMD_USR:
            self._spi_user_command()
            value &= ~SPI_CMD_USR            # done at once: the poll sees it clear
        if addr in self._regs or len(self._regs) < MAX_REGISTERS:
            self._regs[addr] = value

    def _spi_user_command(self) -> None:
        spi = self.chip.spi
        r = self._regs.get
        usr = r(spi.base + spi.usr, 0)
        command = r(spi.base + spi.usr2, 0) & 0xFF
        self.spi_commands.append(command)
        read_bits = (r(spi.base + spi.miso_dlen, 0) + 1) if usr & SPI_USR_MISO else 0
        addr = 0
        if usr & SPI_USR_ADDR:
            addr_len = ((r(spi.base + spi.usr1, 0) >> ADDR_LEN_SHIFT) & 0x3F) + 1
            addr = r(spi.addr_reg, 0)
            if spi.addr_msb:
                addr >>= 32 - addr_len
        if command == RDID:
            answer = self.flash.jedec_id
        elif command == RDSFDP:
            answer = int.from_bytes(self.flash.sfdp(addr, 4), "little")
        elif command in RDSR:
            answer = 0                       # not busy, no write protection
        elif command in NO_DATA:
            return
        else:
            answer = 0xFFFFFFFF              # no answer: MISO floats high
        if read_bits:
            self._regs[spi.base + spi.w0] = answer & ((1 << min(read_bits, 32)) - 1)
