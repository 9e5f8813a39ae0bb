"""What the field-diagnostics tests share: a flash holding the firmware and a small
application (main.py: a supervised modem link with a black box, registered with
synack.diag), a rig that runs it, and the ``synack`` command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from synack_host.sim.rig import start_rig

ROOT = Path(__file__).resolve().parents[1]

CELL_APP = """
import sys
sys.path.append('/lib')
import time
from synack import diag, blackbox, supervisor
from synack.modems.sim7600 import SIM7600
from synack.link import modem_uart
from synack.link.modem import ModemLink
bb = blackbox.Blackbox('/blackbox', echo=True)
modem = SIM7600(modem_uart(1, 115200), apn='internet')
bb.watch_modem(modem)
sup = supervisor.Supervisor(ModemLink(modem, register_timeout_ms=1500),
                            events=bb.supervisor_event, base_ms=300, cap_ms=1000)
diag.register(modem=modem, supervisor=sup, blackbox=bb)
sup.start()
while True:
    sup.step()
    bb.flush()
    time.sleep_ms(50)
"""

WIFI_APP = """
import sys, json
sys.path.append('/lib')
import time
from synack import diag, blackbox
from synack.link.wifi import WifiLink
cfg = json.load(open('/synack_config.json'))
bb = blackbox.Blackbox('/blackbox', echo=True)
wifi = WifiLink(cfg['wifi']['ssid'], cfg['wifi']['key'])
diag.register(wifi=wifi, blackbox=bb)
wifi.up()
bb.add('connect_err', 'auth with key %s refused' % cfg['wifi']['key'])
n = 0
while True:
    time.sleep_ms(200)
    n += 1
    print('tick')
    if n % 3 == 0:
        print('debug: joined with key', cfg['wifi']['key'])
"""


def make_flash(path: Path, app: str = CELL_APP, config: dict | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "firmware" / "synack", path / "lib" / "synack",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (path / "main.py").write_text(app)
    if config is not None:
        (path / "synack_config.json").write_text(json.dumps(config))
    return path


def synack(*args, timeout=90, env=None):
    return subprocess.run([sys.executable, "-m", "synack_host.cli", *args],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env=env)


def diag_json(port: str, *extra: str) -> dict:
    res = synack("diag", "-p", port, "--json", *extra)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    return json.loads(res.stdout)


def rig(flash: Path, *modem_args: str):
    return start_rig(fs=str(flash), baud=115200, modem_args=modem_args)


def wait_bearer(r, state: str = "open", timeout: float = 15) -> None:
    """Until the virtual modem says its bearer is ``state`` (the app brought it up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if r.modem.status().get("bearer") == state:
            return
        time.sleep(0.1)
    raise AssertionError(f"bearer not {state} within {timeout} s: {r.modem.status()}")
