"""``synack flash`` (esptool v5's public API underneath) against the virtual ROM loader:
a 1.5 MiB image written compressed at 921600 after CHANGE_BAUDRATE, byte for byte at the
chip's offset, MD5-verified, then the board's banner with the image's version; images
refused before any FLASH_BEGIN reaches the loader (its command log is the proof); a
loader that stops answering mid-write. The plain esptool command lines are
tests/test_romloader_esptool.py's."""

from __future__ import annotations

import io
import json
import time

import pytest

from synack_host import cli
from synack_host.flash_commands import Rows
from synack_host.sim.romloader.images import build_image
from synack_host.sim.romloader.launch import start_download_board

pytest.importorskip("esptool")

MIB = 1024 * 1024
MAC = "24:6f:28:12:34:56"
VERSION = "v1.25.0 on 2025-04-15"
VIRTUAL = ["--before", "no-reset", "--after", "soft-reset"]
WRITES = {"FLASH_BEGIN", "FLASH_DEFL_BEGIN", "FLASH_DATA", "FLASH_DEFL_DATA", "ERASE_FLASH",
          "ERASE_REGION"}


def synack(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def flash_bytes(path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def test_a_merged_firmware_bin_boots_the_app_version(tmp_path, capsys):
    """A real MicroPython firmware.bin is bootloader + partition table (0x8000) + app
    (0x10000) written at 0x1000: the version reported is the app's, seen on the banner."""
    from synack_host.sim.romloader.images import build_firmware

    image = build_firmware("esp32", version=VERSION)
    (tmp_path / "firmware.bin").write_bytes(image)
    flash = tmp_path / "flash.bin"
    board = start_download_board("--mac", MAC, "--no-pacing", flash=flash)
    try:
        code, out, err = synack(capsys, "flash", tmp_path / "firmware.bin", "-p", board.port,
                                *VIRTUAL)
        assert code == 0, err
        assert flash_bytes(flash, 0x1000, len(image)) == image
        assert f"boots MicroPython {VERSION}" in out
        assert board.status()["version"] == VERSION
    finally:
        board.stop()


def test_flash_1_5_mib_at_921600_then_the_banner(tmp_path, capsys):
    image = build_image("esp32", version=VERSION, size=3 * MIB // 2)
    (tmp_path / "fw.bin").write_bytes(image)
    flash = tmp_path / "flash.bin"
    board = start_download_board("--mac", MAC, flash=flash)      # paced like a UART
    try:
        t = time.monotonic()
        code, out, err = synack(capsys, "flash", tmp_path / "fw.bin", "-p", board.port,
                                "--baud", "921600", *VIRTUAL, "--record", tmp_path / "r.jsonl")
        elapsed = time.monotonic() - t
        assert code == 0, err
        assert flash_bytes(flash, 0x1000, len(image)) == image
        assert flash_bytes(flash, 0, 0x1000) == b"\xff" * 0x1000
        assert flash_bytes(flash, 0x1000 + len(image), 0x1000) == b"\xff" * 0x1000
        log = board.commands()
        assert {"cmd": "CHANGE_BAUDRATE", "mode": "stub", "baud": 921600} in log
        begin = [e for e in log if e["cmd"] == "FLASH_DEFL_BEGIN"]
        assert begin == [{"cmd": "FLASH_DEFL_BEGIN", "mode": "stub", "offset": 0x1000,
                          "size": len(image)}]
        md5 = [e for e in log if e["cmd"] == "SPI_FLASH_MD5"]
        assert len(md5) >= 2 and all(e["offset"] == 0x1000 for e in md5)  # write + verify
        # the chip was identified and checked in the ROM before the stub went up
        first_mem = next(i for i, e in enumerate(log) if e["cmd"] == "MEM_BEGIN")
        assert any(e["cmd"] == "READ_REG" for e in log[:first_mem])
        status = board.status()
        assert (status["phase"], status["version"]) == ("micropython", VERSION)
        assert f"boots MicroPython {VERSION}" in out and f"MAC {MAC}" in out
        assert "writing" in err and "booting" in err        # phases, piped: plain lines
        record = json.loads((tmp_path / "r.jsonl").read_text())
        assert record["result"] == "ok" and record["micropython"] == VERSION
        assert (record["chip"], record["mac"], record["offset"]) == ("esp32", MAC, 0x1000)
        assert record["device_id"] == "246f28123456" and record["verified"] is True
        assert set(record["timings"]) >= {"connecting", "writing", "verifying", "booting"}
        import hashlib
        assert record["image_sha256"] == hashlib.sha256(image).hexdigest()
        assert elapsed < 20
    finally:
        board.stop()


@pytest.fixture(scope="module")
def small_board(tmp_path_factory):
    """An ESP32 with a 1 MB flash, unpaced: the refusals run against it in turn."""
    tmp = tmp_path_factory.mktemp("refuse")
    board = start_download_board("--mac", MAC, "--flash-size", "1MB", "--no-pacing",
                                 flash=tmp / "flash.bin")
    yield board
    board.stop()


def _truncated(tmp_path):
    return build_image("esp32", version=VERSION, size=64 * 1024)[:40000]


def _corrupt(tmp_path):
    image = bytearray(build_image("esp32", version=VERSION, size=64 * 1024))
    image[5000] ^= 1
    return bytes(image)


@pytest.mark.parametrize("make, fragment, connects", [
    (lambda t: build_image("esp32s3", version=VERSION, size=64 * 1024),
     "is an ESP32-S3 image, but the board is an ESP32; nothing was written", True),
    (lambda t: build_image("esp32", version=VERSION, size=3 * MIB // 2),
     "does not fit in the board's 1MB flash; nothing was written", True),
    (_truncated, "is truncated", False),
    (_corrupt, "is corrupt", False),
    (lambda t: b"PK\x03\x04 a zip file, not firmware" * 100,
     "is not an ESP firmware image (it starts with 0x50", False),
], ids=["wrong-chip", "too-big", "truncated", "corrupt", "not-esp"])
def test_refused_before_any_flash_begin(small_board, tmp_path, capsys, make, fragment,
                                        connects):
    small_board.control("clear-log")
    (tmp_path / "fw.bin").write_bytes(make(tmp_path))
    code, out, err = synack(capsys, "flash", tmp_path / "fw.bin", "-p", small_board.port,
                            *VIRTUAL)
    assert code == 1
    assert fragment in err.splitlines()[-1] and err.splitlines()[-1].startswith("synack: ")
    counts = small_board.status()["counts"]
    assert not WRITES & counts.keys(), counts
    assert "MEM_BEGIN" not in counts          # refused in the ROM: not even the stub
    assert ("SYNC" in counts) == connects     # file faults: the port was never opened
    assert small_board.status()["loader"] == "rom"


def test_a_loader_that_stops_answering_mid_write(tmp_path, capsys):
    image = build_image("esp32", version=VERSION, size=256 * 1024, random=True)
    (tmp_path / "fw.bin").write_bytes(image)
    board = start_download_board("--no-pacing", flash=tmp_path / "flash.bin")
    try:
        board.control("stall 100000")
        t = time.monotonic()
        code, out, err = synack(capsys, "flash", tmp_path / "fw.bin", "-p", board.port,
                                "--baud", "921600", *VIRTUAL)
        assert time.monotonic() - t < 20
        assert code == 1
        line = err.splitlines()[-1]
        assert line.startswith(f"synack: {board.port}: the board stopped answering at "
                               "flash offset 0x000"), line
        offset = int(line.split("flash offset ")[1].split()[0], 16)
        assert 0x1000 < offset < 0x1000 + 100000
        assert "Traceback" not in err
        status = board.status()
        assert status["phase"] == "stalled"
        assert "FLASH_END" not in status["counts"]
    finally:
        board.stop()


def test_bad_chip_option_against_the_image(tmp_path, capsys):
    (tmp_path / "fw.bin").write_bytes(build_image("esp32", version=VERSION))
    code, _, err = synack(capsys, "flash", tmp_path / "fw.bin", "-p", "/dev/null",
                          "--chip", "esp32s3")
    assert code == 1 and "is an ESP32 image, --chip says esp32s3" in err


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rows_redraw_in_place_on_a_terminal():
    err = _Tty()
    rows = Rows(err, ["/dev/a", "/dev/bb"])
    rows.update("/dev/a", "writing", 50, 100, 0x11000)
    rows.update("/dev/bb", "connecting", 0, 0, None)
    rows.finish("/dev/a", {"result": "ok", "micropython": VERSION})
    text = err.getvalue()
    assert "\x1b[2A" in text and "\x1b[K" in text
    assert "writing [############............]  50% at 0x00011000" in text
    assert f"/dev/a   ok  {VERSION}" in text


def test_esp32s3_at_0x0_through_the_rom_loader_no_stub(tmp_path, capsys):
    image = build_image("esp32s3", version=VERSION, size=128 * 1024)
    (tmp_path / "fw.bin").write_bytes(image)
    board = start_download_board("--chip", "esp32s3", "--no-pacing", flash=tmp_path / "f.bin")
    try:
        code, out, err = synack(capsys, "flash", tmp_path / "fw.bin", "-p", board.port,
                                "--no-stub", "--baud", "921600", *VIRTUAL)
        assert code == 0, err
        assert flash_bytes(tmp_path / "f.bin", 0, len(image)) == image    # S3 boots at 0x0
        log = board.commands()
        assert "MEM_BEGIN" not in {e["cmd"] for e in log}                 # no stub
        assert all(e["mode"] == "rom" for e in log)
        assert [e["offset"] for e in log if e["cmd"] == "FLASH_DEFL_BEGIN"] == [0]
        assert board.status()["version"] == VERSION
        assert f"boots MicroPython {VERSION}" in out
    finally:
        board.stop()
