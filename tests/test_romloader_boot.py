"""Leaving download mode: the virtual chip boots what esptool flashed - the MicroPython
board with the image's version in its banner - or prints the ROM's boot error loop."""

from __future__ import annotations

import time

import pytest

from serialclient import SerialClient
from synack_host.sim.romloader.images import build_image
from synack_host.sim.romloader.launch import start_download_board
from test_romloader_esptool import esptool, ok

VERSION = "v1.24.1 on 2024-11-29"


@pytest.fixture
def board(tmp_path):
    running = []

    def make(*args):
        running.append(start_download_board(*args, flash=tmp_path / "flash.bin"))
        return running[-1]

    yield make
    for b in running:
        b.stop()


def wait_phase(b, phase: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = b.status()
        if status["phase"] == phase or time.monotonic() > deadline:
            assert status["phase"] == phase, status
            return status
        time.sleep(0.05)


def test_control_reset_boots_the_flashed_micropython_then_download_again(board, tmp_path):
    b = board()
    fw = tmp_path / "fw.bin"
    fw.write_bytes(build_image("esp32", version=VERSION, size=256 * 1024))
    ok(esptool(b.port, "--baud", "921600", "write-flash", "0x1000", str(fw)))
    port = SerialClient(b.port)
    try:
        assert "micropython" in b.reset()
        port.until(b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n")
        port.until(f"MicroPython {VERSION}; ".encode() + b"synack virtual board", 10)
        port.write(b"print(6*7)\r")
        port.until(b"42\r\n>>> ")
    finally:
        port.s.close()
    assert b.download() == "download mode"
    assert "ESP32-D0WD-V3" in ok(esptool(b.port, "--no-stub", "read-mac"))


def test_no_stub_soft_reset_runs_user_code(board, tmp_path):
    b = board("--chip", "esp32s3")
    fw = tmp_path / "fw.bin"
    fw.write_bytes(build_image("esp32s3", version=VERSION, size=64 * 1024))
    r = esptool(b.port, "--no-stub", "--after", "soft-reset", "write-flash", "--compress",
                "0x0", str(fw))
    ok(r)
    status = wait_phase(b, "micropython")
    assert status["version"] == VERSION
    port = SerialClient(b.port)     # what was printed before the port opened is gone
    try:
        port.write(b"\x02")          # Ctrl-B: the banner again
        port.until(f"MicroPython {VERSION}; ".encode() + b"synack virtual board "
                   b"(cpython engine) with ESP32S3")
    finally:
        port.s.close()


def test_s3_watchdog_reset_boots_from_flash(board, tmp_path):
    b = board("--chip", "esp32s3")
    fw = tmp_path / "fw.bin"
    fw.write_bytes(build_image("esp32s3", version=VERSION, size=64 * 1024))
    ok(esptool(b.port, "--after", "watchdog-reset", "write-flash", "0x0", str(fw)))
    assert wait_phase(b, "micropython")["version"] == VERSION


def test_erased_and_corrupted_images_give_the_boot_error_loop(board, tmp_path):
    b = board()
    port = SerialClient(b.port)
    try:
        b.reset()                   # nothing flashed yet: an erased chip
        text = port.until(b"rst:0x10 (RTCWDT_RTC_RESET)", 5)
        assert text.count(b"invalid header: 0xffffffff\r\n") >= 6
        assert b.status()["phase"] == "boot-error"
        b.download()
        image = bytearray(build_image("esp32", version=VERSION, size=64 * 1024))
        image[5000] ^= 0x01          # one bit: the checksum no longer matches
        fw = tmp_path / "bad.bin"
        fw.write_bytes(bytes(image))
        port.quiet(0.2)
        ok(esptool(b.port, "--baud", "921600", "write-flash", "0x1000", str(fw)))
        port.quiet(0.2)
        b.reset()
        text = port.until(b"ets_main.c 371 \r\n")
        assert b"csum err:0x" in text and b"MicroPython" not in text
        assert wait_phase(b, "boot-error")["version"] is None
    finally:
        port.s.close()


@pytest.mark.parametrize("chip", ["esp32", "esp32s3"])
def test_a_real_firmware_layout_boots_the_app_behind_the_partition_table(tmp_path, chip):
    """What a real MicroPython firmware.bin holds: the bootloader at the boot offset (no
    version in it), the partition table at 0x8000, the app (with the version) at 0x10000.
    The version comes from the factory app; a corrupt app is the bootloader's complaint."""
    from synack_host.sim.romloader.boot import boot
    from synack_host.sim.romloader.chips import CHIPS
    from synack_host.sim.romloader.flash import Flash
    from synack_host.sim.romloader.images import BOOT_OFFSETS, build_firmware

    def booted(image: bytes, name: str):
        flash = Flash(tmp_path / name, 4 << 20)
        try:
            flash.program(BOOT_OFFSETS[chip], image)
            return boot(CHIPS[chip], flash)
        finally:
            flash.close()

    good = booted(build_firmware(chip, version="v1.25.0 on 2025-04-15"), "good.bin")
    assert (good.kind, good.version) == ("micropython", "v1.25.0 on 2025-04-15"), good
    bad = booted(build_firmware(chip, corrupt_app=True), "bad.bin")
    assert bad.kind == "error" and "csum err" in bad.detail, bad    # the app's checksum
    assert "entry 0x" in bad.cycles[0], bad     # ... after the bootloader was loaded
    none = booted(build_firmware(chip, version=None), "none.bin")
    assert none.kind == "no-firmware", none
