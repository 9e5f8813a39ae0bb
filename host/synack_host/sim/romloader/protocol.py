"""The ESP serial bootloader protocol: packets, opcodes, status codes, checksum.

Facts from Espressif's "Serial Protocol" documentation (esptool docs, advanced topics)
and from what esptool v5 sends and expects:

* request:  ``00 <op> <size:u16> <checksum:u32> <data...>`` (little-endian);
* response: ``01 <op> <size:u16> <value:u32> <data...> <status...>``; ``value`` carries
  READ_REG's result (and a ROM's SYNC echo), ``op`` repeats the request's opcode;
* status bytes end the data: the ROM loaders of ESP32 and ESP32-S3 send four
  (``status, error, 0, 0``), the flasher stub two; esptool reads only the first two
  as a big-endian 16-bit code, non-zero = failure;
* checksum: XOR of the payload of MEM_DATA / FLASH_DATA / FLASH_DEFL_DATA over seed
  0xEF, in the low byte of the header's checksum field; ignored for other commands.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

CHECKSUM_SEED = 0xEF
HEADER = struct.Struct("<BBHI")        # direction, opcode, size, checksum/value
DIR_REQUEST, DIR_RESPONSE = 0x00, 0x01
SYNC_PAYLOAD = b"\x07\x07\x12\x20" + b"\x55" * 32

# opcode -> name, for every command this loader knows (ROM and stub); the loader's
# dispatch table says which of them each mode accepts
COMMANDS: dict[int, str] = {
    0x02: "FLASH_BEGIN", 0x03: "FLASH_DATA", 0x04: "FLASH_END",
    0x05: "MEM_BEGIN", 0x06: "MEM_END", 0x07: "MEM_DATA",
    0x08: "SYNC", 0x09: "WRITE_REG", 0x0A: "READ_REG",
    0x0B: "SPI_SET_PARAMS", 0x0D: "SPI_ATTACH", 0x0E: "READ_FLASH_SLOW",
    0x0F: "CHANGE_BAUDRATE", 0x10: "FLASH_DEFL_BEGIN", 0x11: "FLASH_DEFL_DATA",
    0x12: "FLASH_DEFL_END", 0x13: "SPI_FLASH_MD5", 0x14: "GET_SECURITY_INFO",
    0xD0: "ERASE_FLASH", 0xD1: "ERASE_REGION", 0xD2: "READ_FLASH", 0xD3: "RUN_USER_CODE",
}
OPCODES = {name: op for op, name in COMMANDS.items()}

# ROM loader error codes (second status byte; the first is 1)
ROM_INVALID_MESSAGE = 0x05     # "Received message is invalid": bad length, unknown command
ROM_FAILED = 0x06              # "Failed to act on received message"
ROM_BAD_CHECKSUM = 0x07        # "Invalid CRC in message"
ROM_FLASH_WRITE_ERROR = 0x08
ROM_FLASH_READ_ERROR = 0x09
ROM_READ_LENGTH_ERROR = 0x0A   # "flash read length error": more than 64 bytes asked
ROM_DEFLATE_ERROR = 0x0B

# flasher stub response codes, sent big-endian: 0xC100 is the bytes C1 00
STUB_BAD_DATA_LEN = 0xC000
STUB_BAD_CHECKSUM = 0xC100
STUB_BAD_BLOCKSIZE = 0xC200
STUB_FAILED_SPI_OP = 0xC400
STUB_NOT_IN_FLASH_MODE = 0xC600
STUB_INFLATE_ERROR = 0xC700
STUB_NOT_ENOUGH_DATA = 0xC800
STUB_TOO_MUCH_DATA = 0xC900
STUB_NOT_IMPLEMENTED = 0xFF00


class CommandFailed(Exception):
    """A command the loader refuses: ``code`` is the ROM's error byte or the stub's
    16-bit code (the loader picks the one of its mode)."""

    def __init__(self, rom: int, stub: int, why: str):
        super().__init__(why)
        self.rom = rom
        self.stub = stub


def checksum(data: bytes, seed: int = CHECKSUM_SEED) -> int:
    for b in data:
        seed ^= b
    return seed


@dataclass(frozen=True)
class Request:
    op: int
    checksum: int
    data: bytes

    @property
    def name(self) -> str:
        return COMMANDS.get(self.op, f"0x{self.op:02x}")


def parse_request(frame: bytes) -> Request:
    """A SLIP frame's body as a request, or CommandFailed(invalid message)."""
    if len(frame) < HEADER.size:
        raise CommandFailed(ROM_INVALID_MESSAGE, STUB_BAD_DATA_LEN,
                            f"{len(frame)}-byte frame is shorter than a header")
    direction, op, size, chk = HEADER.unpack_from(frame)
    if direction != DIR_REQUEST:
        raise CommandFailed(ROM_INVALID_MESSAGE, STUB_BAD_DATA_LEN,
                            f"direction byte 0x{direction:02x} is not a request")
    if size != len(frame) - HEADER.size:
        raise CommandFailed(ROM_INVALID_MESSAGE, STUB_BAD_DATA_LEN,
                            f"size field {size} but {len(frame) - HEADER.size} data bytes")
    return Request(op, chk, frame[HEADER.size:])


def words(data: bytes, count: int, name: str, allowed: tuple[int, ...] = ()) -> tuple:
    """``count`` little-endian u32 from ``data``, whose length must be count*4 (or one
    of ``allowed``), else CommandFailed(bad length)."""
    sizes = allowed or (count * 4,)
    if len(data) not in sizes:
        raise CommandFailed(ROM_INVALID_MESSAGE, STUB_BAD_DATA_LEN,
                            f"{name} wants {' or '.join(map(str, sizes))} bytes, "
                            f"got {len(data)}")
    return struct.unpack_from(f"<{count}I", data)


def data_block(req: Request) -> tuple[int, bytes]:
    """The ``<size> <seq> 0 0 <payload>`` body of the *_DATA commands, checked against
    its size field and the header's checksum: (seq, payload)."""
    if len(req.data) < 16:
        raise CommandFailed(ROM_INVALID_MESSAGE, STUB_NOT_ENOUGH_DATA,
                            f"{req.name} shorter than its 16-byte header")
    size, seq, _, _ = struct.unpack_from("<IIII", req.data)
    payload = req.data[16:]
    if size != len(payload):
        raise CommandFailed(ROM_INVALID_MESSAGE, STUB_TOO_MUCH_DATA,
                            f"{req.name} says {size} bytes, carries {len(payload)}")
    if checksum(payload) != req.checksum & 0xFF:
        raise CommandFailed(ROM_BAD_CHECKSUM, STUB_BAD_CHECKSUM,
                            f"{req.name} seq {seq}: checksum 0x{checksum(payload):02x}, "
                            f"header says 0x{req.checksum & 0xFF:02x}")
    return seq, payload


def response(op: int, stub: bool, value: int = 0, data: bytes = b"",
             error: int = 0) -> bytes:
    """One response body (not yet SLIP-framed). ``error`` 0 is success; otherwise the
    ROM's error byte (ROM) or the stub's 16-bit code (stub)."""
    if stub:
        status = struct.pack(">H", error)
    else:
        status = bytes([1 if error else 0, error, 0, 0])
    body = data + status
    return HEADER.pack(DIR_RESPONSE, op, len(body), value & 0xFFFFFFFF) + body
