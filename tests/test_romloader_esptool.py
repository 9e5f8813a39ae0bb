"""The real esptool (v5 CLI, unmodified) against the virtual ROM loader on a pty:
chip detection, MAC, flash ID, write-flash with and without the stub, compressed and
not, at 115200 and 921600, verify-flash, read-flash, erase-region, ESP32-S3. The flash
file is compared byte by byte; the loader's command log shows what esptool sent."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from synack_host.sim.romloader.images import build_image
from synack_host.sim.romloader.launch import start_download_board

pytest.importorskip("esptool")

MIB = 1024 * 1024
MAC = "24:6f:28:12:34:56"


@pytest.fixture
def board(tmp_path):
    """``board(*args)``: a virtual board in download mode on ``tmp_path/flash.bin``."""
    running = []

    def make(*args):
        b = start_download_board("--mac", MAC, *args, flash=tmp_path / "flash.bin")
        running.append(b)
        return b

    yield make
    for b in running:
        b.stop()


def esptool(port: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "esptool", "--port", port, "--before", "no-reset",
           "--after", "no-reset", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    r.args = " ".join(cmd[2:])
    return r


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, f"{r.args}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def flash_bytes(tmp_path, offset: int, length: int) -> bytes:
    with open(tmp_path / "flash.bin", "rb") as f:
        f.seek(offset)
        return f.read(length)


def image_file(tmp_path, name="fw.bin", **options) -> tuple[str, bytes]:
    data = build_image(**options)
    path = tmp_path / name
    path.write_bytes(data)
    return str(path), data


def test_chip_id_read_mac_and_flash_id_at_115200_write_nothing(board):
    b = board()
    out = ok(esptool(b.port, "chip-id"))
    assert "Detecting chip type... ESP32" in out and "ESP32-D0WD-V3 (revision v3.1)" in out
    assert f"MAC:                {MAC}" in out and "Stub flasher running." in out
    assert MAC in ok(esptool(b.port, "--no-stub", "read-mac"))
    out = ok(esptool(b.port, "flash-id"))
    assert "Manufacturer: c8" in out and "Device: 4016" in out
    assert "Detected flash size: 4MB" in out
    counts = b.status()["counts"]
    assert counts["GET_SECURITY_INFO"] >= 1 and counts["MEM_END"] == 2
    assert not {"FLASH_DATA", "FLASH_DEFL_BEGIN", "ERASE_REGION"} & counts.keys()
    # the only FLASH_BEGIN: --after no-reset's empty one that sends the stub back to ROM
    assert all(e["size"] == 0 for e in b.commands() if e["cmd"] == "FLASH_BEGIN")


def test_small_uncompressed_write_at_115200_paced(board, tmp_path):
    b = board()
    path, data = image_file(tmp_path, size=16 * 1024, random=True)
    t = time.monotonic()
    ok(esptool(b.port, "write-flash", "--no-compress", "0x1000", path))
    # 16 KiB at 11.5 KB/s (plus the stub upload) cannot take less than ~1.4 s
    assert time.monotonic() - t > 1.4
    assert flash_bytes(tmp_path, 0x1000, len(data)) == data
    assert b.status()["baud"] == 115200


def test_stub_compressed_1_5_mib_at_921600_verify_and_read_back(board, tmp_path):
    b = board()
    path, data = image_file(tmp_path, size=3 * MIB // 2)
    out = ok(esptool(b.port, "--baud", "921600", "write-flash", "0x1000", path))
    assert "Hash of data verified." in out and "compressed" in out
    assert flash_bytes(tmp_path, 0x1000, len(data)) == data
    assert flash_bytes(tmp_path, 0, 0x1000) == b"\xff" * 0x1000      # nothing before it
    assert flash_bytes(tmp_path, 0x1000 + len(data), 0x1000) == b"\xff" * 0x1000
    log = b.commands()
    begin = [e for e in log if e["cmd"] == "FLASH_DEFL_BEGIN"]
    assert begin and begin[0]["offset"] == 0x1000 and begin[0]["mode"] == "stub"
    assert {"cmd": "CHANGE_BAUDRATE", "mode": "stub", "baud": 921600} in log
    # --after no-reset: the stub's reboot leaves the ROM loader, at 115200 again
    assert (b.status()["loader"], b.status()["baud"]) == ("rom", 115200)
    ok(esptool(b.port, "--baud", "921600", "verify-flash", "0x1000", path))
    back = tmp_path / "back.bin"
    ok(esptool(b.port, "--baud", "921600", "read-flash", "0x1000", "0x40000", str(back)))
    assert back.read_bytes() == data[:0x40000]
    other, _ = image_file(tmp_path, "other.bin", size=64 * 1024, version="v1.0.0 on 2020-01-01")
    r = esptool(b.port, "--baud", "921600", "verify-flash", "0x1000", other)
    assert r.returncode != 0 and "digest mismatch" in r.stdout


def test_rom_compressed_1_5_mib_and_slow_read(board, tmp_path):
    b = board()
    path, data = image_file(tmp_path, size=3 * MIB // 2)
    out = ok(esptool(b.port, "--no-stub", "--baud", "921600", "write-flash", "--compress",
                     "0x1000", path))
    assert "Hash of data verified." in out
    assert flash_bytes(tmp_path, 0x1000, len(data)) == data
    status = b.status()
    assert "MEM_BEGIN" not in status["counts"] and status["loader"] == "rom"
    assert status["counts"]["FLASH_DEFL_DATA"] >= 1
    back = tmp_path / "back.bin"
    ok(esptool(b.port, "--no-stub", "--baud", "921600", "read-flash", "0x1000", "0x1000",
               str(back)))
    assert back.read_bytes() == data[:0x1000]
    assert b.status()["counts"]["READ_FLASH_SLOW"] == 0x1000 // 64


@pytest.mark.parametrize("stub", [True, False], ids=["stub", "no-stub"])
def test_uncompressed_1_5_mib_unpaced(board, tmp_path, stub):
    b = board("--no-pacing")
    path, data = image_file(tmp_path, size=3 * MIB // 2, random=True)
    ok(esptool(b.port, *([] if stub else ["--no-stub"]), "--baud", "921600",
               "write-flash", "--no-compress", "0x1000", path))
    assert flash_bytes(tmp_path, 0x1000, len(data)) == data
    counts = b.status()["counts"]
    assert counts["FLASH_DATA"] == -(-len(data) // (0x4000 if stub else 0x400))


def test_erase_region_stub_command_and_rom_flash_begin(board, tmp_path):
    b = board()
    path, data = image_file(tmp_path, size=64 * 1024, random=True)
    ok(esptool(b.port, "--baud", "921600", "write-flash", "0x10000", path))
    ok(esptool(b.port, "erase-region", "0x12000", "0x2000"))
    assert flash_bytes(tmp_path, 0x12000, 0x2000) == b"\xff" * 0x2000
    assert flash_bytes(tmp_path, 0x10000, 0x2000) == data[:0x2000]
    assert flash_bytes(tmp_path, 0x14000, 0x1000) == data[0x4000:0x5000]
    assert b.status()["counts"]["ERASE_REGION"] == 1
    # the ROM has no ERASE_REGION: esptool erases with an empty FLASH_BEGIN there
    ok(esptool(b.port, "--no-stub", "erase-region", "0x18000", "0x1000"))
    assert flash_bytes(tmp_path, 0x18000, 0x1000) == b"\xff" * 0x1000
    assert flash_bytes(tmp_path, 0x17000, 0x1000) == data[0x7000:0x8000]
    assert {"cmd": "FLASH_BEGIN", "mode": "rom", "offset": 0x18000, "size": 0x1000} \
        in b.commands()
    assert b.status()["counts"]["ERASE_REGION"] == 1


def test_esp32s3_detected_by_security_info_written_at_0(board, tmp_path):
    b = board("--chip", "esp32s3")
    path, data = image_file(tmp_path, chip="esp32s3", size=3 * MIB // 2)
    out = ok(esptool(b.port, "--baud", "921600", "write-flash", "0x0", path))
    assert "Detecting chip type... ESP32-S3" in out and MAC in out
    assert "ESP32-S3 (QFN56) (revision v0.2)" in out
    assert flash_bytes(tmp_path, 0, len(data)) == data
    log = b.commands()
    assert any(e["cmd"] == "GET_SECURITY_INFO" and "error" not in e for e in log)
    ok(esptool(b.port, "--chip", "esp32s3", "--no-stub", "--baud", "921600",
               "verify-flash", "0x0", path))
