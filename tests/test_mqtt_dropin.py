"""Drop-in compatibility: an MQTT client written only against MicroPython's socket API
(tests/mqtt_app.py, which does ``import socket`` and makes umqtt.simple's and
umqtt.robust's socket calls) runs unchanged over the virtual SIM7600 and over native
sockets once synack.socket is installed as ``socket`` — publish and subscribe through a
real broker (Debian's mosquitto on 127.0.0.1). A robust publisher whose link the network
closes, or whose modem loses the network, gets an OSError and reconnects by itself."""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import shutil
import socket as host_socket
import subprocess
import sys
import time

import pytest

from synack import socket as synsocket
from modemrig import Rig
from synack import tls
from test_tls import pki  # noqa: F401  (fixture: a test CA and leaf made by openssl)

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def _mosquitto(tmp_path, listener_conf=""):
    """Start mosquitto on a free 127.0.0.1 port (with ``listener_conf`` lines under the
    listener); yield the port; stop it."""
    if not shutil.which("mosquitto") and not shutil.which(MOSQUITTO):
        pytest.skip("mosquitto is not installed (Debian package mosquitto; scripts/setup.sh "
                    "installs it as root)")
    probe = host_socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    conf = tmp_path / "mosquitto.conf"
    # as root, mosquitto drops to its own user before reading the certificates, which
    # pytest's private temporary directories do not let it read: stay root for the test
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(f"{user}listener {port} 127.0.0.1\nallow_anonymous true\n{listener_conf}")
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
def broker(tmp_path):
    yield from _mosquitto(tmp_path)


@pytest.fixture
def tls_broker(tmp_path, pki):  # noqa: F811  (the fixture)
    """mosquitto with a TLS listener: its certificate is test_tls's leaf for localhost,
    signed by the test CA (``pki / "ca.pem"``)."""
    yield from _mosquitto(tmp_path, f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'leaf.pem'}\n"
                                    f"keyfile {pki / 'leaf.key'}\n")


@pytest.fixture
def app_over_modem():
    """mqtt_app imported with ``socket`` = synack.socket on the virtual SIM7600."""
    rig = Rig(poll_ms=100)
    with _app(rig.modem) as app:
        app.rig = rig
        try:
            yield app
        finally:
            rig.close()


@pytest.fixture(params=["native", "modem"])
def app(request):
    """mqtt_app over either backend (``app.rig``: the modem rig, or None)."""
    rig = Rig(poll_ms=100) if request.param == "modem" else None
    with _app(rig.modem if rig else None) as mod:
        mod.rig = rig
        try:
            yield mod
        finally:
            if rig:
                rig.close()


@contextlib.contextmanager
def _app(backend):
    # modules that use the host's socket module bind it before the swap
    import synack.native  # noqa: F401
    import synack_host.sim.control  # noqa: F401

    synsocket.use(backend)
    saved = sys.modules.get("socket")
    sys.modules["socket"] = synsocket         # what `import socket` finds on the board
    sys.modules.pop("mqtt_app", None)
    try:
        yield importlib.import_module("mqtt_app")
    finally:
        sys.modules["socket"] = saved
        sys.modules.pop("mqtt_app", None)
        synsocket.use(None)


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


def receive(sub, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = sub.check_msg()
        if got is not None:
            return got
        time.sleep(0.02)
    return None


def test_simple_and_robust_clients_over_both_backends(broker, app):
    sub = app.MQTTClient("synack-sub", "127.0.0.1", broker)
    pub = app.RobustClient("synack-pub", "127.0.0.1", broker)
    sub.connect()
    sub.subscribe("synack/both")
    pub.connect()
    big = bytes(range(256)) * 4                  # a two-byte remaining length
    pub.publish("synack/both", big)
    assert receive(sub) == ("synack/both", big)
    pub.publish("synack/both", b"x")
    assert receive(sub) == ("synack/both", b"x")
    assert pub.errors == [] and pub.reconnects == 0
    pub.disconnect()
    sub.disconnect()


def test_publisher_whose_link_the_network_closes_reconnects(broker, app_over_modem):
    app = app_over_modem
    sub = app.MQTTClient("synack-sub2", "127.0.0.1", broker)
    pub = app.RobustClient("synack-pub2", "127.0.0.1", broker)
    sub.connect()
    sub.subscribe("synack/robust")
    pub.connect()
    pub.publish("synack/robust", b"one")
    assert receive(sub) == ("synack/robust", b"one")
    old = pub.sock
    app.rig.proc.close_link(old._handle, 2)      # the network ends the publisher's link
    pub.publish("synack/robust", b"two")         # OSError inside, then a reconnect
    assert receive(sub) == ("synack/robust", b"two")
    assert pub.reconnects == 1 and pub.sock is not old
    assert [type(e) for e in pub.errors] and all(isinstance(e, OSError) for e in pub.errors)
    assert pub.errors[0].args[0] in (errno.ECONNRESET, errno.ENOTCONN, errno.ETIMEDOUT)
    pub.disconnect()
    sub.disconnect()


def test_after_network_lost_a_robust_publisher_recovers_without_start(broker,
                                                                      app_over_modem):
    app = app_over_modem
    modem = app.rig.modem
    pub = app.RobustClient("synack-pub3", "127.0.0.1", broker)
    pub.connect()
    pub.publish("synack/lost", b"before")
    app.rig.proc.network_lost()
    time.sleep(0.2)
    pub.publish("synack/lost", b"after")         # the error, a reconnect, the publish
    assert pub.reconnects == 1 and modem.bearer_reopens == 1
    assert all(isinstance(e, OSError) for e in pub.errors) and pub.errors
    sub = app.MQTTClient("synack-sub3", "127.0.0.1", broker)
    sub.connect()
    sub.subscribe("synack/lost")
    pub.publish("synack/lost", b"again")
    assert receive(sub) == ("synack/lost", b"again")
    assert "BEARER_UP" in " ".join(pub.sock.tcp.format_history())
    for _ in range(12):                          # more reconnects than the modem has links
        app.rig.proc.close_link(pub.sock._handle, 2)
        pub.publish("synack/lost", b"n")
    assert pub.reconnects == 13
    pub.disconnect()
    sub.disconnect()


def test_mqtt_over_tls_on_both_backends(tls_broker, app, pki):  # noqa: F811
    """umqtt.simple's TLS: a verified handshake right after connect, through
    ``ssl.wrap_socket(sock, server_hostname=...)`` with a synack.tls.Context as ``ssl``;
    publish/subscribe, a non-blocking check_msg and a reconnect all over TLS."""
    ctx = tls.Context(cadata=(pki / "ca.pem").read_bytes())
    sub = app.MQTTClient("synack-tls-sub", "localhost", tls_broker, ssl=ctx)
    pub = app.RobustClient("synack-tls-pub", "localhost", tls_broker, ssl=ctx)
    sub.connect()
    assert isinstance(sub.sock, tls.TLSSocket) and sub.sock.state == "ESTABLISHED"
    sub.subscribe("synack/tls")
    assert sub.check_msg() is None              # non-blocking over TLS: nothing yet
    pub.connect()
    big = bytes(range(256)) * 8
    pub.publish("synack/tls", big)
    assert receive(sub) == ("synack/tls", big)
    assert pub.sock.wire_in > 0 and pub.sock.wire_out > len(big)   # it went as records
    if app.rig is not None:                     # the network ends the publisher's link
        app.rig.proc.close_link(pub.sock.sock._handle, 2)
        pub.publish("synack/tls", b"after")
        assert receive(sub) == ("synack/tls", b"after")
        assert pub.reconnects == 1 and all(isinstance(e, OSError) for e in pub.errors)
    pub.disconnect()
    sub.disconnect()


@pytest.mark.parametrize("ca,host,cls", [("other.pem", "localhost", tls.UnknownCA),
                                         ("ca.pem", "127.0.0.1", tls.HostnameMismatch)])
def test_mqtt_over_tls_refuses_an_untrusted_broker(tls_broker, app, pki, ca, host,  # noqa: F811
                                                   cls):
    """An unknown CA and a certificate for another name are refused before CONNECT is
    sent: the OSError subclass tells which; the TCP connection is closed."""
    client = app.MQTTClient("synack-tls-bad", host, tls_broker,
                            ssl=tls.Context(cadata=(pki / ca).read_bytes()))
    with pytest.raises(cls) as info:
        client.connect()
    assert isinstance(info.value, OSError) and info.value.errno == errno.EACCES
    assert client.sock.state == "CLOSED"        # the plain socket, closed by wrap
