"""Drop-in compatibility: an MQTT client written only against MicroPython's socket API
(tests/mqtt_app.py, which does ``import socket``) runs unchanged over the virtual SIM7600
once synack.socket is installed as ``socket`` — publish and subscribe through a real
broker (Debian's mosquitto on 127.0.0.1)."""

from __future__ import annotations

import importlib
import shutil
import socket as host_socket
import subprocess
import sys
import time

import pytest

from synack import socket as synsocket
from modemrig import Rig

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@pytest.fixture
def broker(tmp_path):
    if not shutil.which("mosquitto") and not shutil.which(MOSQUITTO):
        pytest.skip("mosquitto is not installed (Debian package mosquitto; scripts/setup.sh "
                    "installs it as root)")
    probe = host_socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            host_socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"mosquitto did not start: {proc.stderr.read().decode()}")
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(5)


@pytest.fixture
def app_over_modem():
    """mqtt_app imported with ``socket`` = synack.socket on the virtual SIM7600."""
    rig = Rig(poll_ms=100)
    synsocket.use(rig.modem)
    saved = sys.modules.get("socket")
    sys.modules["socket"] = synsocket         # what `import socket` finds on the board
    sys.modules.pop("mqtt_app", None)
    try:
        yield importlib.import_module("mqtt_app")
    finally:
        sys.modules["socket"] = saved
        sys.modules.pop("mqtt_app", None)
        synsocket.use(None)
        rig.close()


def test_mqtt_publish_and_subscribe_over_the_modem(broker, app_over_modem):
    assert app_over_modem.socket is synsocket
    sub = app_over_modem.MQTTClient("synack-sub", "127.0.0.1", broker)
    pub = app_over_modem.MQTTClient("synack-pub", "127.0.0.1", broker)
    sub.connect()
    sub.subscribe("synack/test")
    assert sub.check_msg() is None            # non-blocking read: nothing yet
    pub.connect()
    pub.publish("synack/test", b"hello over AT commands")
    deadline = time.monotonic() + 10
    got = None
    while got is None and time.monotonic() < deadline:
        got = sub.check_msg()
        time.sleep(0.05)
    assert got == ("synack/test", b"hello over AT commands")
    assert sub.sock.state == "ESTABLISHED" and sub.sock.tcp.states()[:3] == \
        ["CLOSED", "SYN_SENT", "ESTABLISHED"]
    pub.disconnect()
    sub.disconnect()
    assert sub.sock.state == "CLOSED"
