"""What the virtual ROM loader knows about each chip, as data (one entry per chip, the
way esptool's ``targets/`` has one class per chip).

Register addresses and eFuse layouts are the ones esptool v5 reads (its
``targets/esp32.py`` and ``targets/esp32s3.py``), filled with values of a plausible
part: an ESP32-D0WD-V3 rev v3.1 and an ESP32-S3 (QFN56) rev v0.2, both with a 40 MHz
crystal. Registers not listed read as 0 (security features off, no custom SPI pins,
flash voltage from the strapping pins).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Spi:
    """The SPI1 (flash) controller's user-command registers: esptool drives them with
    WRITE_REG/READ_REG to send RDID, RDSFDP and RDSR to the flash chip."""
    base: int
    usr: int
    usr1: int
    usr2: int
    mosi_dlen: int
    miso_dlen: int
    w0: int
    addr_msb: bool      # ESP32: the address sits in the top bits of SPI_ADDR_REG

    @property
    def cmd_reg(self) -> int:
        return self.base

    @property
    def addr_reg(self) -> int:
        return self.base + 0x04


@dataclass(frozen=True)
class Chip:
    key: str                   # esptool's --chip name, and LoadFirmwareImage's
    name: str                  # esptool's CHIP_NAME
    boot_offset: int           # where the ROM finds the (second-stage) bootloader
    magic_reg_value: int       # what reads at 0x40001000 (chip detection on ESP32)
    chip_id: int | None        # GET_SECURITY_INFO's chip ID; None: ROM lacks the command
    spi: Spi
    mac_regs: tuple[int, int]  # (register with MAC bytes 2..5, register with bytes 0..1)
    registers: dict[int, int]  # fixed register values (eFuses, ROM data)
    uart_clkdiv_reg: int | None    # ESP32: esptool derives the crystal from it
    apb_hz: int                # the ROM's APB clock: UART divider = apb_hz / baud
    strap_reg: int
    strap_download: int        # GPIO strapping value with BOOT (GPIO0) held low
    strap_flash: int
    rom_banner: str            # first lines a reset prints, before "rst:"
    watchdog_reg: int | None = None  # RTC_CNTL_WDTCONFIG0: enabling it resets the chip
    reset_causes: dict[str, str] = field(default_factory=dict)
    boot_modes: dict[str, str] = field(default_factory=dict)

    def mac_words(self, mac: bytes) -> dict[int, int]:
        """The two eFuse words esptool packs into the base MAC (``>II`` of the high
        word then the low word, first two bytes dropped)."""
        low = struct.unpack(">I", mac[2:6])[0]
        high = (mac[0] << 8) | mac[1]
        return {self.mac_regs[0]: low, self.mac_regs[1]: high}

    def reset_line(self, cause: str, download: bool) -> str:
        strap = self.strap_download if download else self.strap_flash
        mode = self.boot_modes["download" if download else "flash"]
        return f"rst:{self.reset_causes[cause]},boot:0x{strap:x} ({mode})\r\n"


ESP32_EFUSE = 0x3FF5A000
ESP32 = Chip(
    key="esp32", name="ESP32", boot_offset=0x1000,
    magic_reg_value=0x00F01D83, chip_id=None,
    spi=Spi(base=0x3FF42000, usr=0x1C, usr1=0x20, usr2=0x24, mosi_dlen=0x28,
            miso_dlen=0x2C, w0=0x80, addr_msb=True),
    mac_regs=(ESP32_EFUSE + 4 * 1, ESP32_EFUSE + 4 * 2),
    registers={
        0x40001000: 0x00F01D83,
        # word 3: package D0WD (bits 9-11 = 1), revision bit 0 (bit 15)
        ESP32_EFUSE + 4 * 3: (1 << 9) | (1 << 15),
        # word 4: CK8M frequency calibration (bits 0-7); with RTCCALICFG1 below the
        # ROM's crystal estimate is exactly 40 MHz, so CHANGE_BAUDRATE is not skewed
        ESP32_EFUSE + 4 * 4: 100,
        # word 5: revision bit 1 (bit 20), minor revision 1 (bits 24-25)
        ESP32_EFUSE + 4 * 5: (1 << 20) | (1 << 24),
        0x3FF6607C: 1 << 31,             # APB_CTL_DATE: revision bit 2 -> v3
        0x3FF5F06C: 1024 << 7,           # RTCCALICFG1: RTC calibration value
    },
    uart_clkdiv_reg=0x3FF40014, apb_hz=40_000_000,
    strap_reg=0x3FF44038, strap_download=0x03, strap_flash=0x13,
    rom_banner="ets Jun  8 2016 00:22:57\r\n\r\n",
    reset_causes={"poweron": "0x1 (POWERON_RESET)", "software": "0xc (SW_CPU_RESET)",
                  "watchdog": "0x10 (RTCWDT_RTC_RESET)"},
    boot_modes={"download": "DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2)",
                "flash": "SPI_FAST_FLASH_BOOT"},
)

S3_EFUSE = 0x60007000
S3_BLOCK1 = S3_EFUSE + 0x44
ESP32S3 = Chip(
    key="esp32s3", name="ESP32-S3", boot_offset=0x0,
    magic_reg_value=0x00000009, chip_id=9,
    spi=Spi(base=0x60002000, usr=0x18, usr1=0x1C, usr2=0x20, mosi_dlen=0x24,
            miso_dlen=0x28, w0=0x58, addr_msb=False),
    mac_regs=(S3_BLOCK1, S3_BLOCK1 + 4),
    registers={
        0x40001000: 0x00000009,
        S3_BLOCK1 + 4 * 3: 2 << 18,      # minor revision 2 (low bits), package QFN56
        S3_EFUSE + 0x5C + 4 * 4: 1,      # BLOCK2 word 4: block version major 1
    },
    uart_clkdiv_reg=None, apb_hz=40_000_000,
    strap_reg=0x60004038, strap_download=0x0, strap_flash=0x8,
    rom_banner="ESP-ROM:esp32s3-20210327\r\nBuild:Mar 27 2021\r\n",
    watchdog_reg=0x60008098,
    reset_causes={"poweron": "0x1 (POWERON)", "software": "0x3 (RTC_SW_SYS_RST)",
                  "watchdog": "0x10 (RTCWDT_RTC_RST)"},
    boot_modes={"download": "DOWNLOAD(USB/UART0)", "flash": "SPI_FAST_FLASH_BOOT"},
)

CHIPS: dict[str, Chip] = {c.key: c for c in (ESP32, ESP32S3)}


def parse_mac(text: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff`` (or ``-`` separated) -> 6 bytes; ValueError otherwise."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"a MAC is six hex pairs like 24:6f:28:aa:bb:cc, got {text!r}")
    try:
        mac = bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"a MAC is six hex pairs like 24:6f:28:aa:bb:cc, got {text!r}") from None
    if mac[0] & 1:
        raise ValueError(f"{text} is a multicast address; a base MAC has bit 0 of its "
                         "first byte clear")
    return mac
