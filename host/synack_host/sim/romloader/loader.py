"""The ESP serial bootloader as a sans-I/O state machine: ROM loader, then flasher stub.

``Loader.receive(bytes)`` takes what the host sent; ``take_output()`` gives the bytes to
send back; ``take_events()`` says what the driver must do besides (change the line's
baud rate once the reply is out, reboot, boot from flash). Nothing here touches a port.

Two tables drive it. ``MODES`` says which commands the ROM loader and the stub accept
(the stub adds ERASE_*/READ_FLASH, drops READ_FLASH_SLOW). ``TABLE`` gives each command
its handler, the session state it needs (a *_DATA needs its *_BEGIN) and the state it
leaves; a command that fails leaves the state as it was. Whatever the host sends - a
broken frame, an unknown opcode, a command out of turn - gets the error response of
the current mode (ROM: status 1 + error byte + 2 reserved; stub: a 16-bit code),
never an exception.

What runs from RAM (MEM_END with the execute flag) is taken to be esptool's flasher
stub: it announces itself with the ``OHAI`` frame and answers in stub format from then on.
"""

from __future__ import annotations

import collections
import hashlib
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from . import protocol as p
from .chips import Chip
from .flash import Flash, FlashError
from .registers import RegisterFile
from .slip import SlipDecoder, SlipError, encode

ROM, STUB = "rom", "stub"
IDLE, FLASHING, DEFLATING, MEM, READING = "idle", "flash", "flash-defl", "mem", "reading"
MAX_RAM = 512 * 1024          # bytes a RAM download may announce (the chip's SRAM)
MAX_READ_PACKET = 4096        # stub: largest READ_FLASH packet
INITIAL_BAUD = 115200         # the ROM's UART after reset
LOG_LIMIT = 20000             # commands kept in the log (counts are never dropped)
INFLATE_STEP = 64 * 1024      # decompressed bytes produced per step (memory bound)


@dataclass(frozen=True)
class Row:
    handler: str               # Loader method name
    needs: str | None = None   # session state the command requires
    leaves: str | None = None  # session state after success (None: unchanged)


TABLE: dict[str, Row] = {
    "SYNC": Row("_sync"), "READ_REG": Row("_read_reg"), "WRITE_REG": Row("_write_reg"),
    "SPI_ATTACH": Row("_spi_attach"), "SPI_SET_PARAMS": Row("_spi_set_params"),
    "GET_SECURITY_INFO": Row("_security_info"), "CHANGE_BAUDRATE": Row("_change_baud"),
    "MEM_BEGIN": Row("_mem_begin", leaves=MEM),
    "MEM_DATA": Row("_mem_data", needs=MEM),
    "MEM_END": Row("_mem_end", needs=MEM, leaves=IDLE),
    "FLASH_BEGIN": Row("_flash_begin", leaves=FLASHING),
    "FLASH_DATA": Row("_flash_data", needs=FLASHING),
    "FLASH_END": Row("_flash_end", needs=FLASHING, leaves=IDLE),
    "FLASH_DEFL_BEGIN": Row("_flash_begin", leaves=DEFLATING),
    "FLASH_DEFL_DATA": Row("_defl_data", needs=DEFLATING),
    "FLASH_DEFL_END": Row("_flash_end", needs=DEFLATING, leaves=IDLE),
    "SPI_FLASH_MD5": Row("_md5"), "READ_FLASH_SLOW": Row("_read_flash_slow"),
    "ERASE_FLASH": Row("_erase_flash"), "ERASE_REGION": Row("_erase_region"),
    "READ_FLASH": Row("_read_flash", leaves=READING),
}
_COMMON = {"SYNC", "READ_REG", "WRITE_REG", "SPI_ATTACH", "SPI_SET_PARAMS",
           "GET_SECURITY_INFO", "CHANGE_BAUDRATE", "MEM_BEGIN", "MEM_DATA", "MEM_END",
           "FLASH_BEGIN", "FLASH_DATA", "FLASH_END", "FLASH_DEFL_BEGIN",
           "FLASH_DEFL_DATA", "FLASH_DEFL_END", "SPI_FLASH_MD5"}
MODES: dict[str, frozenset[str]] = {
    ROM: frozenset(_COMMON | {"READ_FLASH_SLOW"}),
    STUB: frozenset(_COMMON | {"ERASE_FLASH", "ERASE_REGION", "READ_FLASH"}),
}


def _fail(rom: int, stub: int, why: str) -> p.CommandFailed:
    return p.CommandFailed(rom, stub, why)


class Loader:
    def __init__(self, chip: Chip, flash: Flash, mac: bytes,
                 on_log: Callable[[dict], None] | None = None):
        self.chip = chip
        self.flash = flash
        self.baud = INITIAL_BAUD
        self.regs = RegisterFile(chip, flash, mac, lambda: self.baud)
        self.log: collections.deque[dict] = collections.deque(maxlen=LOG_LIMIT)
        self.counts: collections.Counter[str] = collections.Counter()
        self.on_log = on_log
        self._out = bytearray()
        self._events: list[tuple] = []
        self.reset()

    def reset(self) -> None:
        """A chip reset into download mode: the ROM loader, nothing half done."""
        self.mode = ROM
        self.state = IDLE
        self.baud = INITIAL_BAUD
        self._slip = SlipDecoder()
        self._session: dict = {}
        self._note: dict = {}
        # the ROM assumes a 2 MiB chip until SPI_SET_PARAMS says otherwise (esptool
        # sends it before flash work: "Configuring flash size...")
        self.rom_flash_size = min(2 << 20, self.flash.size)

    # -- the sans-I/O interface -----------------------------------------------------
    def receive(self, data: bytes) -> None:
        for frame in self._slip.feed(data):
            if self.state == READING:
                self._read_ack(frame)
            elif isinstance(frame, SlipError):
                op = frame.head[1] if len(frame.head) > 1 else 0
                self._record(p.COMMANDS.get(op, f"0x{op:02x}"), error=frame.reason)
                self._reply(op, error=self._code(p.ROM_INVALID_MESSAGE, p.STUB_BAD_DATA_LEN))
            else:
                self._command(frame)

    def take_output(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def take_events(self) -> list[tuple]:
        events, self._events = self._events, []
        return events

    # -- dispatch -------------------------------------------------------------------
    def _command(self, frame: bytes) -> None:
        self._note = {}
        try:
            req = p.parse_request(frame)
        except p.CommandFailed as e:
            self._record(p.COMMANDS.get(frame[1], "?") if len(frame) > 1 else "?", error=str(e))
            self._reply(frame[1] if len(frame) > 1 else 0, error=self._code(e.rom, e.stub))
            return
        row = TABLE.get(req.name)
        try:
            if row is None or req.name not in MODES[self.mode]:
                raise _fail(p.ROM_INVALID_MESSAGE, p.STUB_NOT_IMPLEMENTED,
                            f"{req.name} is not a {self.mode} loader command")
            if row.needs is not None and self.state != row.needs:
                raise _fail(p.ROM_FAILED, p.STUB_NOT_IN_FLASH_MODE,
                            f"{req.name} outside a {row.needs} session (state {self.state})")
            value, data = getattr(self, row.handler)(req)
        except (p.CommandFailed, FlashError, zlib.error) as e:
            rom, stub = ((e.rom, e.stub) if isinstance(e, p.CommandFailed) else
                         (p.ROM_FAILED, p.STUB_FAILED_SPI_OP))
            self._session.pop("after_reply", None)    # a failed command has no sequel
            self._record(req.name, error=str(e))
            self._reply(req.op, error=self._code(rom, stub))
            if row is not None and row.leaves in (FLASHING, DEFLATING, MEM):
                self.state = IDLE          # a failed BEGIN leaves no session open
            return
        self._record(req.name)
        self._reply(req.op, value, data)
        if row.leaves is not None:
            self.state = row.leaves
        for follow_up in self._session.pop("after_reply", []):
            follow_up()

    def _code(self, rom: int, stub: int) -> int:
        return stub if self.mode == STUB else rom

    def _reply(self, op: int, value: int = 0, data: bytes = b"", error: int = 0) -> None:
        self._out += encode(p.response(op, self.mode == STUB, value, data, error))

    def _record(self, name: str, error: str | None = None) -> None:
        entry = {"cmd": name, "mode": self.mode, **self._note}
        if error:
            entry["error"] = error
        self.counts[name] += 1
        self.log.append(entry)
        if self.on_log:
            self.on_log(entry)

    def _after_reply(self, action: Callable[[], None]) -> None:
        self._session.setdefault("after_reply", []).append(action)

    def _event(self, *event) -> None:
        self._events.append(event)

    # -- handlers: each returns (value, data) or raises CommandFailed ----------------
    def _sync(self, req: p.Request) -> tuple[int, bytes]:
        if req.data != p.SYNC_PAYLOAD:
            raise _fail(p.ROM_INVALID_MESSAGE, p.STUB_BAD_DATA_LEN, "not a SYNC pattern")
        # eight answers: the ROM's echo the first word (esptool's sign of a ROM), the
        # stub's carry 0 (its sign that the stub is already running)
        value = 0 if self.mode == STUB else 0x20120707
        for _ in range(7):
            self._reply(req.op, value)
        return value, b""

    def _read_reg(self, req: p.Request) -> tuple[int, bytes]:
        (addr,) = p.words(req.data, 1, "READ_REG")
        self._note = {"addr": addr}
        return self.regs.read(addr), b""

    def _write_reg(self, req: p.Request) -> tuple[int, bytes]:
        if not req.data or len(req.data) % 16:
            raise _fail(p.ROM_INVALID_MESSAGE, p.STUB_NOT_ENOUGH_DATA,
                        f"WRITE_REG wants 16-byte entries, got {len(req.data)} bytes")
        for addr, value, mask, _delay in struct.iter_unpack("<IIII", req.data):
            self._note = {"addr": addr}
            self.regs.write(addr, value, mask)
            if addr == self.chip.watchdog_reg and value & mask & (1 << 31):
                self._after_reply(lambda: self._event("watchdog"))
        return 0, b""

    def _spi_attach(self, req: p.Request) -> tuple[int, bytes]:
        # the ROM takes an extra "is legacy" word that the stub does not
        p.words(req.data, 1 if self.mode == STUB else 2, "SPI_ATTACH")
        self._session["attached"] = True
        return 0, b""

    def _spi_set_params(self, req: p.Request) -> tuple[int, bytes]:
        _id, total, *_ = p.words(req.data, 6, "SPI_SET_PARAMS")
        self._note = {"size": total}
        self.rom_flash_size = min(total, self.flash.size)
        return 0, b""

    def _security_info(self, req: p.Request) -> tuple[int, bytes]:
        if self.chip.chip_id is None:      # the ESP32 ROM has no such command
            raise _fail(p.ROM_INVALID_MESSAGE, p.STUB_NOT_IMPLEMENTED,
                        f"{self.chip.name} has no GET_SECURITY_INFO")
        p.words(req.data, 0, "GET_SECURITY_INFO")
        # flags, flash_crypt_cnt, 7 key purposes, chip ID, API version: all off
        return 0, struct.pack("<IBBBBBBBBII", 0, 0, 0, 0, 0, 0, 0, 0, 0,
                              self.chip.chip_id, 0)

    def _change_baud(self, req: p.Request) -> tuple[int, bytes]:
        new, _old = p.words(req.data, 2, "CHANGE_BAUDRATE")
        if not 300 <= new <= 5_000_000:
            raise _fail(p.ROM_INVALID_MESSAGE, p.STUB_BAD_DATA_LEN, f"baud rate {new}")
        self._note = {"baud": new}

        def switch() -> None:
            self.baud = new
            self._event("baud", new)       # the reply still goes out at the old rate
        self._after_reply(switch)
        return 0, b""

    def _mem_begin(self, req: p.Request) -> tuple[int, bytes]:
        size, blocks, block_size, addr = p.words(req.data, 4, "MEM_BEGIN")
        self._note = {"addr": addr, "size": size}
        if size > MAX_RAM:
            raise _fail(p.ROM_INVALID_MESSAGE, p.STUB_TOO_MUCH_DATA, f"{size} bytes of RAM")
        self._session.update(mem_left=size, mem_total=self._session.get("mem_total", 0))
        return 0, b""

    def _mem_data(self, req: p.Request) -> tuple[int, bytes]:
        seq, payload = p.data_block(req)
        self._note = {"seq": seq}
        if len(payload) > self._session["mem_left"]:
            raise _fail(p.ROM_INVALID_MESSAGE, p.STUB_TOO_MUCH_DATA, "more than MEM_BEGIN said")
        self._session["mem_left"] -= len(payload)
        self._session["mem_total"] += len(payload)
        return 0, b""

    def _mem_end(self, req: p.Request) -> tuple[int, bytes]:
        no_run, entry = p.words(req.data, 2, "MEM_END")
        self._note = {"entry": entry}
        if not no_run and self.mode == ROM:
            def become_stub() -> None:
                self.mode = STUB
                self._out += encode(b"OHAI")
                self._event("stub", self._session.pop("mem_total", 0))
            self._after_reply(become_stub)
        return 0, b""

    def _flash_begin(self, req: p.Request) -> tuple[int, bytes]:
        size, blocks, block_size, offset, *enc = p.words(
            req.data, len(req.data) // 4, req.name, allowed=(16, 20))
        self._note = {"offset": offset, "size": size}
        if enc and enc[0]:
            raise _fail(p.ROM_FAILED, p.STUB_FAILED_SPI_OP, "no flash encryption here")
        if block_size == 0 or block_size > 0x4000 and self.mode == ROM:
            raise _fail(p.ROM_INVALID_MESSAGE, p.STUB_BAD_BLOCKSIZE, f"block size {block_size}")
        if self.mode == ROM and offset + size > self.rom_flash_size:
            raise _fail(p.ROM_FAILED, 0, f"0x{offset:x}+0x{size:x} beyond the "
                        f"{self.rom_flash_size >> 20} MiB the ROM was told of")
        self.flash.erase_covering(offset, size)    # both erase what will be written
        self._session.update(offset=offset, pos=offset, left=size, block=block_size,
                             inflate=zlib.decompressobj())
        return 0, b""

    def _write(self, data: bytes) -> None:
        s = self._session
        if self.mode == STUB:                      # the stub drops the 0xFF padding
            data = data[:s["left"]]
        elif len(data) > s["left"] and data[s["left"]:].strip(b"\xff"):
            raise _fail(p.ROM_FLASH_WRITE_ERROR, p.STUB_TOO_MUCH_DATA,
                        "data beyond the erased region")
        else:
            data = data[:max(0, min(len(data), self.flash.size - s["pos"]))]
        self.flash.program(s["pos"], data)
        s["pos"] += len(data)
        s["left"] = max(0, s["left"] - len(data))

    def _flash_data(self, req: p.Request) -> tuple[int, bytes]:
        seq, payload = p.data_block(req)
        self._note = {"seq": seq, "offset": self._session["pos"]}
        self._write(payload)
        return 0, b""

    def _defl_data(self, req: p.Request) -> tuple[int, bytes]:
        seq, payload = p.data_block(req)
        self._note = {"seq": seq, "offset": self._session["pos"]}
        inflate = self._session["inflate"]
        try:
            chunk = inflate.decompress(payload, INFLATE_STEP)
            while chunk:
                if len(chunk) > self._session["left"]:
                    raise _fail(p.ROM_DEFLATE_ERROR, p.STUB_TOO_MUCH_DATA,
                                "inflates beyond the announced size")
                self._write(chunk)
                chunk = inflate.decompress(inflate.unconsumed_tail, INFLATE_STEP)
        except zlib.error as e:
            raise _fail(p.ROM_DEFLATE_ERROR, p.STUB_INFLATE_ERROR, f"inflate: {e}") from None
        return 0, b""

    def _flash_end(self, req: p.Request) -> tuple[int, bytes]:
        (run,) = p.words(req.data, 1, req.name)
        self._note = {"run": run}
        if self.mode == STUB and self._session.get("left"):
            raise _fail(p.ROM_FAILED, p.STUB_BAD_DATA_LEN,
                        f"{self._session['left']} bytes still expected")
        if self.mode == ROM:
            # "run user code" boots from flash; 0 reboots (BOOT still latched low)
            self._after_reply(lambda: self._event("run" if run else "reboot"))
        elif not run:
            self._after_reply(lambda: self._event("reboot"))   # stub -> back to ROM
        return 0, b""

    def _range(self, data: bytes, name: str) -> tuple[int, int]:
        addr, size, *_ = p.words(data, len(data) // 4, name, allowed=(8, 16))
        self._note = {"offset": addr, "size": size}
        if addr + size > self.flash.size:
            raise _fail(p.ROM_FLASH_READ_ERROR, p.STUB_FAILED_SPI_OP,
                        f"0x{addr:x}+0x{size:x} beyond the flash")
        return addr, size

    def _md5(self, req: p.Request) -> tuple[int, bytes]:
        addr, size = self._range(req.data, "SPI_FLASH_MD5")
        digest = hashlib.md5()
        for pos in range(addr, addr + size, 1 << 20):
            digest.update(self.flash.read(pos, min(1 << 20, addr + size - pos)))
        # the ROM answers in hex text, the stub in raw bytes
        return 0, digest.digest() if self.mode == STUB else digest.hexdigest().encode()

    def _read_flash_slow(self, req: p.Request) -> tuple[int, bytes]:
        addr, size = p.words(req.data, 2, "READ_FLASH_SLOW")
        self._note = {"offset": addr, "size": size}
        if size > 64:
            raise _fail(p.ROM_READ_LENGTH_ERROR, 0, f"{size} bytes: at most 64")
        data = self.flash.read(addr, max(0, min(64, self.flash.size - addr)))
        return 0, data.ljust(64, b"\xff")          # always a 64-byte block

    def _erase_flash(self, req: p.Request) -> tuple[int, bytes]:
        self.flash.erase(0, self.flash.size)
        return 0, b""

    def _erase_region(self, req: p.Request) -> tuple[int, bytes]:
        addr, size = self._range(req.data, "ERASE_REGION")
        if addr % 0x1000 or size % 0x1000:
            raise _fail(p.ROM_INVALID_MESSAGE, p.STUB_BAD_DATA_LEN, "not sector aligned")
        self.flash.erase(addr, size)
        return 0, b""

    # -- stub READ_FLASH: data packets, one in flight, each acked, then the MD5 ------
    def _read_flash(self, req: p.Request) -> tuple[int, bytes]:
        addr, size = self._range(req.data, "READ_FLASH")
        packet = p.words(req.data, 4, "READ_FLASH")[2]
        if not 0 < packet <= MAX_READ_PACKET:
            raise _fail(0, p.STUB_BAD_DATA_LEN, f"packet size {packet}")
        self._session["read"] = {"pos": addr, "end": addr + size, "packet": packet,
                                 "size": size, "md5": hashlib.md5()}
        self._after_reply(self._send_read_packet)
        return 0, b""

    def _send_read_packet(self) -> None:
        r = self._session["read"]
        if r["pos"] >= r["end"]:
            if r["size"] == 0:
                self._finish_read()
            return
        chunk = self.flash.read(r["pos"], min(r["packet"], r["end"] - r["pos"]))
        r["pos"] += len(chunk)
        r["md5"].update(chunk)
        self._out += encode(chunk)

    def _read_ack(self, frame: bytes | SlipError) -> None:
        r = self._session["read"]
        if isinstance(frame, SlipError) or len(frame) != 4:
            self._finish_read()            # the stub gives up and sends what it has
            return
        acked = struct.unpack("<I", frame)[0]
        self._send_read_packet()
        if r["pos"] >= r["end"] and acked >= r["size"]:
            self._finish_read()

    def _finish_read(self) -> None:
        self._out += encode(self._session.pop("read")["md5"].digest())
        self.state = IDLE
