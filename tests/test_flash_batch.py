"""``synack flash --ports``: three virtual boards in download mode at once, one of them
the wrong chip. The two good ones are flashed, boot, get the firmware package and a
config made from their own MAC (the loader's --mac, read back by esptool); the third
is reported failed; one JSON record per board; exit status 1; the Wi-Fi key is in no
output and no record."""

from __future__ import annotations

import json

import pytest

from synack_host import cli, secrets
from synack_host.sim.romloader.images import build_image
from synack_host.sim.romloader.launch import start_download_board

pytest.importorskip("esptool")

VERSION = "v1.24.1 on 2024-11-29"
MACS = ["24:6f:28:00:00:01", "24:6f:28:00:00:02", "24:6f:28:00:00:03"]
KEY = "not-in-any-log-7f3a"
TEMPLATE = json.dumps({"wifi": {"ssid": "lab-{device_id}", "key": KEY},
                       "server_host": "dev-{device_id}.example.net"})


@pytest.fixture
def boards(tmp_path):
    running = []
    try:
        for i, mac in enumerate(MACS):
            chip = "esp32s3" if i == 2 else "esp32"      # the third: the wrong chip
            fs = tmp_path / f"fs{i}"
            fs.mkdir()
            running.append(start_download_board(
                "--chip", chip, "--mac", mac, "--no-pacing", "--fs", str(fs),
                flash=tmp_path / f"flash{i}.bin"))
        yield running
    finally:
        for b in running:
            b.stop()
        secrets.forget_all()


def test_batch_of_three_one_wrong_chip(boards, tmp_path, capsys):
    image = build_image("esp32", version=VERSION, size=256 * 1024)
    (tmp_path / "fw.bin").write_bytes(image)
    (tmp_path / "template.json").write_text(TEMPLATE)
    record = tmp_path / "records.jsonl"
    code = cli.main(["flash", str(tmp_path / "fw.bin"), "--ports", *[b.port for b in boards],
                     "--baud", "921600", "--before", "no-reset", "--after", "soft-reset",
                     "--deploy", "--config-template", str(tmp_path / "template.json"),
                     "--record", str(record)])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.splitlines()[-1].startswith(f"synack: 1 of 3 boards failed; first: "
                                           f"{boards[2].port}: ")
    assert "is an ESP32 image, but the board is an ESP32-S3" in err.splitlines()[-1]

    lines = record.read_text().splitlines()
    assert len(lines) == 3
    recs = {r["port"]: r for r in map(json.loads, lines)}
    for i, b in enumerate(boards[:2]):
        r = recs[b.port]
        assert r["result"] == "ok", r
        assert (r["mac"], r["chip"], r["micropython"]) == (MACS[i], "esp32", VERSION)
        assert len(r["package_sha256"]) == 64 and r["files_sent"] == r["files"] > 10
        assert r["config_bytes"] > 0 and "provisioning" in r["timings"]
        assert (tmp_path / f"flash{i}.bin").read_bytes()[0x1000:0x1000 + len(image)] == image
        fs = tmp_path / f"fs{i}"
        config = json.loads((fs / "synack_config.json").read_text())
        dev = MACS[i].replace(":", "")
        assert config == {"wifi": {"ssid": f"lab-{dev}", "key": KEY},
                          "server_host": f"dev-{dev}.example.net"}
        assert (fs / "lib" / "synack" / "__init__.py").is_file()
    assert recs[boards[0].port]["package_sha256"] == recs[boards[1].port]["package_sha256"]
    bad = recs[boards[2].port]
    assert bad["result"] == "failed" and "ESP32-S3" in bad["error"]
    assert (bad["chip"], bad["mac"]) == ("esp32s3", MACS[2])
    assert not {"FLASH_BEGIN", "FLASH_DEFL_BEGIN"} & boards[2].status()["counts"].keys()

    # the summary: one row per board, in the order given
    rows = [line.split() for line in out.splitlines()[1:4]]
    assert [r[0] for r in rows] == [b.port for b in boards]
    assert [r[3] for r in rows] == ["ok", "ok", "failed"]
    assert KEY not in out + err + record.read_text()
