"""The virtual ROM loader's sans-I/O core: SLIP framing, checksum, each command's
response in ROM and stub form, bad input answered with the ROM's error response, and
what boot() makes of the image at the boot offset. No pty, no esptool process."""

from __future__ import annotations

import hashlib
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synack_host.sim.romloader import boot, protocol as p
from synack_host.sim.romloader.chips import ESP32, ESP32S3, parse_mac
from synack_host.sim.romloader.flash import Flash
from synack_host.sim.romloader.images import build_image
from synack_host.sim.romloader.loader import Loader
from synack_host.sim.romloader.slip import SlipDecoder, SlipError, encode

MAC = bytes.fromhex("246f28123456")


@pytest.fixture
def flash(tmp_path):
    f = Flash(tmp_path / "flash.bin", 4 << 20)
    yield f
    f.close()


def request(op: int, data: bytes = b"", chk: int = 0) -> bytes:
    return encode(struct.pack("<BBHI", 0, op, len(data), chk) + data)


def frames(loader: Loader) -> list[bytes]:
    out = SlipDecoder().feed(loader.take_output())
    assert not any(isinstance(f, SlipError) for f in out)
    return out  # type: ignore[return-value]


def ask(loader: Loader, op: int, data: bytes = b"", chk: int = 0) -> list[tuple]:
    """(op, value, data-with-status) of every response to one request."""
    loader.receive(request(op, data, chk))
    return [(f[1], struct.unpack_from("<I", f, 4)[0], f[8:]) for f in frames(loader)]


def status(resp: tuple) -> bytes:
    return resp[2][-4:]


# -- SLIP and checksum ------------------------------------------------------------
def test_slip_escapes_round_trip_whole_and_byte_by_byte():
    body = b"\x00\xc0\xdb\xdc\xdd\xc0\xc0end"
    wire = encode(body)
    assert wire == b"\xc0\x00\xdb\xdc\xdb\xdd\xdc\xdd\xdb\xdc\xdb\xdcend\xc0"
    assert SlipDecoder().feed(wire + wire) == [body, body]
    dec = SlipDecoder()
    got = [f for b in b"noise" + wire for f in dec.feed(bytes([b]))]
    assert got == [body] and dec.noise == 5


def test_slip_bad_escape_and_overlong_frame_are_errors_then_decoding_goes_on():
    dec = SlipDecoder(max_frame=8)
    out = dec.feed(b"\xc0\x00\x08\xdb\x01\xc0" + b"\xc0" + b"x" * 20 + b"\xc0" + encode(b"ok"))
    assert [type(f) for f in out] == [SlipError, SlipError, bytes]
    assert "escape" in out[0].reason and "longer" in out[1].reason and out[2] == b"ok"


def test_checksum_seed_and_xor():
    assert p.checksum(b"") == 0xEF
    assert p.checksum(b"\x01\x02") == 0xEF ^ 1 ^ 2


# -- ROM commands -----------------------------------------------------------------
def test_sync_rom_answers_eight_times_with_echo_and_four_status_bytes(flash):
    resps = ask(Loader(ESP32, flash, MAC), 0x08, p.SYNC_PAYLOAD)
    assert len(resps) == 8
    assert all(r == (0x08, 0x20120707, b"\0\0\0\0") for r in resps)


def test_read_reg_chip_magic_and_mac_efuses(flash):
    loader = Loader(ESP32, flash, MAC)
    [(op, value, data)] = ask(loader, 0x0A, struct.pack("<I", 0x40001000))
    assert (op, value, data) == (0x0A, 0x00F01D83, b"\0\0\0\0")
    words = [ask(loader, 0x0A, struct.pack("<I", 0x3FF5A000 + 4 * n))[0][1] for n in (2, 1)]
    assert struct.pack(">II", *words)[2:] == MAC     # esptool's ESP32ROM.read_mac


def test_security_info_unsupported_on_esp32_rom_and_chip_id_on_s3(flash):
    [r] = ask(Loader(ESP32, flash, MAC), 0x14)
    assert r[0] == 0x14 and status(r) == b"\x01\x05\0\0"
    [r] = ask(Loader(ESP32S3, flash, MAC), 0x14)
    assert len(r[2]) == 20 + 4 and struct.unpack_from("<I", r[2], 12)[0] == 9
    assert status(r) == b"\0\0\0\0"


@pytest.mark.parametrize("wire", [
    request(0x77),                                            # unknown opcode
    encode(b"\x00\x0a"),                                      # shorter than a header
    encode(struct.pack("<BBHI", 0, 0x0A, 9, 0) + b"\0" * 4),  # size field lies
    encode(struct.pack("<BBHI", 1, 0x0A, 4, 0) + b"\0" * 4),  # not a request
    request(0x0A, b"\0\0"),                                   # READ_REG without address
    request(0x08, b"\x55" * 36),                              # not the SYNC pattern
    b"\xc0\x00\x0a\xdb\x00\xc0",                              # broken escape
    request(0xD1, struct.pack("<II", 0, 0x1000)),             # stub-only command
])
def test_bad_input_gets_the_rom_invalid_message_response(flash, wire):
    loader = Loader(ESP32, flash, MAC)
    loader.receive(wire)
    [f] = frames(loader)
    assert f[0] == 1 and f[-4:] == b"\x01\x05\0\0"


def test_data_outside_a_session_and_bad_checksum(flash):
    loader = Loader(ESP32, flash, MAC)
    block = struct.pack("<IIII", 4, 0, 0, 0) + b"abcd"
    assert status(ask(loader, 0x03, block, p.checksum(b"abcd"))[0]) == b"\x01\x06\0\0"
    assert status(ask(loader, 0x02, struct.pack("<IIII", 4096, 1, 1024, 0))[0]) == b"\0" * 4
    assert status(ask(loader, 0x03, block, 0x00)[0]) == b"\x01\x07\0\0"
    assert flash.read(0, 4) == b"\xff" * 4               # the bad block was not written
    assert status(ask(loader, 0x03, block, p.checksum(b"abcd"))[0]) == b"\0" * 4
    assert flash.read(0, 4) == b"abcd"


def test_rom_md5_is_hex_text_and_compressed_write_lands(flash):
    loader = Loader(ESP32, flash, MAC)
    data = bytes(range(256)) * 64
    packed = zlib.compress(data)
    ask(loader, 0x10, struct.pack("<IIII", len(data), 1, 0x400, 0x3000))
    r = ask(loader, 0x11, struct.pack("<IIII", len(packed), 0, 0, 0) + packed,
            p.checksum(packed))
    assert status(r[0]) == b"\0" * 4
    [r] = ask(loader, 0x13, struct.pack("<IIII", 0x3000, len(data), 0, 0))
    assert r[2] == hashlib.md5(data).hexdigest().encode() + b"\0" * 4


def test_change_baudrate_takes_effect_after_its_reply(flash):
    loader = Loader(ESP32, flash, MAC)
    loader.receive(request(0x0F, struct.pack("<II", 921600, 0)))
    assert loader.take_events() == [("baud", 921600)] and loader.baud == 921600
    assert frames(loader)[0][-4:] == b"\0" * 4


def test_spi_user_command_reads_the_jedec_id(flash):
    loader = Loader(ESP32, flash, MAC)
    spi = ESP32.spi
    for addr, value in ((spi.base + spi.usr, 1 << 31 | 1 << 28), (spi.base + spi.miso_dlen, 23),
                        (spi.base + spi.usr2, 7 << 28 | 0x9F), (spi.cmd_reg, 1 << 18)):
        ask(loader, 0x09, struct.pack("<IIII", addr, value, 0xFFFFFFFF, 0))
    assert ask(loader, 0x0A, struct.pack("<I", spi.cmd_reg))[0][1] == 0      # done
    assert ask(loader, 0x0A, struct.pack("<I", spi.base + spi.w0))[0][1] == 0x1640C8


# -- the stub ---------------------------------------------------------------------
def stub_loader(flash, chip=ESP32) -> Loader:
    loader = Loader(chip, flash, MAC)
    text = b"\x00" * 64
    ask(loader, 0x05, struct.pack("<IIII", len(text), 1, 0x1800, 0x40080000))
    ask(loader, 0x07, struct.pack("<IIII", len(text), 0, 0, 0) + text, p.checksum(text))
    loader.receive(request(0x06, struct.pack("<II", 0, 0x40080000)))
    out = frames(loader)
    assert out[-1] == b"OHAI" and out[0][-4:] == b"\0" * 4     # ROM reply, then OHAI
    assert loader.mode == "stub"
    return loader


def test_stub_two_status_bytes_sync_zero_and_unknown_ff(flash):
    loader = stub_loader(flash)
    resps = ask(loader, 0x08, p.SYNC_PAYLOAD)
    assert len(resps) == 8 and all(r == (0x08, 0, b"\0\0") for r in resps)
    assert ask(loader, 0x0E, struct.pack("<II", 0, 64))[0][2] == b"\xff\x00"
    assert ask(loader, 0x03, b"short")[0][2] == b"\xc6\x00"     # not in flash mode


def test_stub_read_flash_streams_acked_blocks_then_md5(flash):
    loader = stub_loader(flash)
    flash.erase(0, 0x3000)
    flash.program(0x1000, b"hello" * 1000)
    length = 0x2000
    loader.receive(request(0xD2, struct.pack("<IIII", 0x1000, length, 0x1000, 64)))
    first = frames(loader)
    assert first[0][-2:] == b"\0\0" and first[1] == flash.read(0x1000, 0x1000)
    loader.receive(encode(struct.pack("<I", 0x1000)))
    [second] = frames(loader)
    loader.receive(encode(struct.pack("<I", 0x2000)))
    [digest] = frames(loader)
    assert digest == hashlib.md5(first[1] + second).digest()
    assert ask(loader, 0x13, struct.pack("<IIII", 0x1000, length, 0, 0))[0][2][:16] == digest


def test_stub_flash_end_reboot_returns_to_the_rom(flash):
    loader = stub_loader(flash)
    ask(loader, 0x02, struct.pack("<IIIII", 0, 0, 0x4000, 0, 0))
    ask(loader, 0x04, struct.pack("<I", 0))
    assert loader.take_events()[-1] == ("reboot",)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_never_raise_and_frames_always_get_answers(tmp_path_factory, junk):
    f = Flash(tmp_path_factory.mktemp("f") / "flash.bin", 1 << 20)
    try:
        loader = Loader(ESP32, f, MAC)
        loader.receive(junk + b"\xc0")
        loader.receive(request(0x0A, struct.pack("<I", 0x40001000)))
        out = frames(loader)
        assert out and out[-1][:2] == b"\x01\x0a"          # the loader still answers
    finally:
        f.close()


# -- boot -------------------------------------------------------------------------
def test_boot_finds_the_version_and_rejects_damage(flash):
    image = build_image("esp32", version="v1.24.1 on 2024-11-29", size=8192)
    erased = boot.boot(ESP32, flash)
    assert erased.kind == "error" and "invalid header: 0xffffffff" in erased.cycles[0]
    flash.program(0x1000, image)
    ok = boot.boot(ESP32, flash)
    assert (ok.kind, ok.version) == ("micropython", "v1.24.1 on 2024-11-29")
    assert "rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)" in ok.console
    digest_at = len(image) - 32
    flash.erase(0x1000, 0x3000)
    flash.program(0x1000, image[:digest_at] + bytes(32))
    assert "Image hash failed" in boot.boot(ESP32, flash).detail
    flash.erase(0x1000, 0x3000)
    bad = bytearray(image)
    bad[100] ^= 0xFF
    flash.program(0x1000, bytes(bad))
    assert boot.boot(ESP32, flash).detail.startswith("csum err")


def test_mac_parsing():
    assert parse_mac("24:6f:28:12:34:56") == MAC
    with pytest.raises(ValueError):
        parse_mac("25:6f:28:12:34:56")      # multicast bit
