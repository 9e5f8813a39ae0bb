"""The HIL Device's expect() (hil/device.py) against the virtual board: its buffer is
bounded (the oldest bytes go to the log file), successive expects move forward as
pexpect's do, and a failed expect names the pattern, shows the tail of the output and
points at the log file."""

from __future__ import annotations

import pytest

from synack_host.hil import device as device_mod
from synack_host.hil.device import Device, DeviceTimeout
from synack_host.sim.launch_board import start_board

PRINTS = "for i in range(%d):\n    print('line %%05d' %% i)\n"


@pytest.fixture
def dev(flash, tmp_path):
    with start_board("--fs", str(flash)) as running:
        d = Device(running.port, log_path=tmp_path / "device.log")
        try:
            yield d
        finally:
            d.close()


def test_expect_buffer_is_bounded_and_nothing_is_lost(dev, monkeypatch, tmp_path):
    monkeypatch.setattr(device_mod, "WATCH_LIMIT", 4096)
    dev.start(PRINTS % 3000)                          # 36 000 bytes
    dev.expect(r"line 02999\r\n", timeout=30)
    assert len(dev.watched) <= 4096 and dev.dropped > 0
    out = dev.finish(timeout=30)
    assert len(out) <= 4096 and out.endswith("line 02999\r\n")
    log = (tmp_path / "device.log").read_text()
    assert "beyond the watch limit" in log and "line 00000" in log   # the dropped head


def test_successive_expects_move_forward(dev):
    dev.start("import time\nfor i in range(3):\n    print('tick')\n    time.sleep(0.05)\n"
              "print('done')\n")
    first = dev.expect(r"tick")
    second = dev.expect(r"tick")
    third = dev.expect(r"tick")
    assert first.start() < second.start() < third.start()
    dev.expect(r"done")
    with pytest.raises(DeviceTimeout):
        dev.expect(r"tick", timeout=1)                # no fourth tick
    dev.finish(timeout=10)


def test_failed_expect_shows_pattern_tail_and_log(dev, tmp_path):
    dev.start("import time\nprint('hello from the board')\ntime.sleep(5)\n")
    with pytest.raises(DeviceTimeout) as exc:
        dev.expect(r"never printed", timeout=1)
    text = str(exc.value)
    assert "/never printed/" in text and "not within 1 s" in text
    assert "hello from the board" in text and str(tmp_path / "device.log") in text
    assert dev.finish(timeout=15) == "hello from the board\r\n"
