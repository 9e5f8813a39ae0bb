"""One conformance suite for every modem dialect: the firmware's driver of a dialect
against the virtual modem of the same dialect (a process on a pty), to real TCP servers
on 127.0.0.1. What a socket user can rely on whatever the modem: bring-up failures
named, DNS, byte-exact bulk data, two connections at once, both closes with their TCP
states, a refused port, data found when its URC is lost, the network lost and the
bearer reopened by the next connect, keepalive (the modem's or the documented
fallback), and every runtime fault of the virtual modem survived: the socket raises
only OSError and the next connection works.

A dialect is tested here when it is in both tables (firmware ``modems.DRIVERS``, virtual
``DIALECTS``); one in a single table fails ``test_both_tables_name_the_same_dialects``.
"""

import errno
import random
import re
import shutil
import subprocess
import time

import pytest

from synack import modems
from synack.modems import base
from synack_host.hil.servers import ScriptedServer
from synack_host.sim.modem import DIALECTS
from modemrig import Rig, roundtrip

ACTIVE_CLOSE = ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2",
                "TIME_WAIT", "CLOSED"]
PASSIVE_CLOSE = ["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]
NAMES = sorted(set(modems.DRIVERS) & set(DIALECTS))


def test_both_tables_name_the_same_dialects():
    assert sorted(modems.DRIVERS) == sorted(DIALECTS)


@pytest.fixture(params=NAMES)
def dialect(request):
    return request.param


@pytest.fixture
def make_rig(dialect):
    rigs = []

    def make(*args, **kw):
        r = Rig(*args, dialect=dialect, poll_ms=100, **kw)
        rigs.append(r)
        return r

    yield make
    for r in rigs:
        r.close()


@pytest.fixture
def rig(make_rig):
    return make_rig()


# -- bring-up ---------------------------------------------------------------------------
@pytest.mark.parametrize("args, error", [
    (("--sim", "absent"), base.NoSIM),
    (("--sim", "pin"), base.SIMLocked),
    (("--registration", "denied"), base.RegistrationDenied),
    (("--registration", "searching"), base.NotRegistered),
    (("--pdp-fail",), base.PDPError),
], ids=["no-sim", "pin", "denied", "searching", "pdp-fail"])
def test_bring_up_failures_are_named(make_rig, args, error):
    rig = make_rig(*args, start=False)
    with pytest.raises(error):
        rig.modem.start(register_timeout_ms=1500)


def test_the_pin_unlocks_the_sim(dialect):
    with Rig("--sim", "pin", dialect=dialect, start=False) as rig:
        rig.modem.pin = "1234"
        rig.modem.start(register_timeout_ms=1500)
        assert rig.modem.is_up()


def test_detect_names_the_dialect(rig, dialect):
    assert modems.detect(rig.uart) == dialect


# -- DNS and data -------------------------------------------------------------------------
def test_dns_through_the_modem(rig, echo):
    assert rig.modem.getaddrinfo("localhost", echo.port)[0][-1] == ("127.0.0.1", echo.port)
    with pytest.raises(OSError) as exc:
        rig.modem.getaddrinfo("no-such-host.invalid", 80)
    assert exc.value.errno in (errno.EHOSTUNREACH, errno.ETIMEDOUT)


def test_64k_random_binary_roundtrip_byte_exact(rig, echo):
    data = random.Random(1).randbytes(64 * 1024)
    s = rig.socket()
    s.connect(("127.0.0.1", echo.port))
    assert roundtrip(s, data) == data
    s.close()
    assert s.tcp.states() == ACTIVE_CLOSE


def test_two_sockets_at_once(rig, echo):
    a, b = rig.socket(), rig.socket()
    a.connect(("127.0.0.1", echo.port))
    b.connect(("127.0.0.1", echo.port))
    assert a.handle != b.handle
    rnd = random.Random(2)
    for _ in range(4):
        da, db = rnd.randbytes(3000), rnd.randbytes(2000)
        a.sendall(da)
        b.sendall(db)
        assert b.read(len(db)) == db
        assert a.read(len(da)) == da
    a.close()
    b.close()
    assert echo.connections == 2


def test_passive_close_when_the_server_closes_first(rig):
    def say_bye(conn):
        conn.sendall(b"bye\n" + bytes(3000))
        conn.close()

    with ScriptedServer(say_bye) as server:
        s = rig.socket()
        s.connect(("127.0.0.1", server.port))
        assert s.readline() == b"bye\n"
        assert s.read() == bytes(3000)   # what the modem held, then the end of stream
        assert s.state == "CLOSE_WAIT"
        s.close()
    assert s.tcp.states() == PASSIVE_CLOSE


def test_a_closed_port_is_refused(rig, echo):
    port = echo.port
    echo.stop()
    s = rig.socket()
    with pytest.raises(OSError) as exc:
        s.connect(("127.0.0.1", port))
    assert exc.value.errno == errno.ECONNREFUSED
    assert s.tcp.states() == ["CLOSED", "SYN_SENT", "CLOSED"]


def test_data_arrives_when_every_data_urc_is_lost(make_rig, echo):
    rig = make_rig("--drop-data-urcs")
    s = rig.socket()
    s.connect(("127.0.0.1", echo.port))
    data = random.Random(3).randbytes(5000)
    assert roundtrip(s, data, chunk=1000) == data
    s.close()


def test_network_loss_resets_sockets_and_the_next_connect_reopens_the_bearer(rig, echo):
    s = rig.socket()
    s.connect(("127.0.0.1", echo.port))
    rig.proc.network_lost()
    rig.modem.at.wait_for(lambda: s.state == "CLOSED", 3000)
    with pytest.raises(OSError) as exc:
        s.recv(10)
    assert exc.value.errno in (errno.ECONNRESET, errno.ETIMEDOUT)
    s.close()
    s2 = rig.socket()
    s2.connect(("127.0.0.1", echo.port))      # no start(): the bearer reopens itself
    assert roundtrip(s2, b"back") == b"back"
    assert any("BEARER_UP" in line for line in s2.tcp.format_history())
    s2.close()


KEEPALIVE_MINUTE_S = 2.0  # the virtual modem's keepalive minute: 2 s of host time


def keepalive_timer_s(port):
    """The keepalive timer (s) of the established TCP socket to 127.0.0.1:``port`` on
    this host, as ``ss -tno`` shows it (``timer:(keepalive,1.9sec,0)``): the virtual
    modem's link socket; None when it has no keepalive timer."""
    out = subprocess.run(["ss", "-tnoH", "state", "established", "dst",
                          "127.0.0.1:%d" % port], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    found = re.search(r"timer:\(keepalive,([\d.]+)(ms|sec|min)", out)
    if found is None:
        return None
    value, unit = float(found.group(1)), found.group(2)
    return value / 1000 if unit == "ms" else value * 60 if unit == "min" else value


def test_keepalive_is_the_modems_or_the_documented_fallback(make_rig, echo):
    # "modem": the modem's own TCP keepalive, seen on its real socket (the virtual
    # modem's host socket has the keepalive timer, within the idle time asked);
    # "probe": the documented fallback, a synack.heartbeat, notices a silent peer
    # within idle + misses x timeout over this dialect's links
    if shutil.which("ss") is None:
        pytest.skip("needs ss (Debian package iproute2) to see the modem's socket")
    rig = make_rig("--keepalive-minute", str(KEEPALIVE_MINUTE_S))
    plain = rig.socket()
    plain.connect(("127.0.0.1", echo.port))
    assert roundtrip(plain, b"no keepalive") == b"no keepalive"
    assert keepalive_timer_s(echo.port) is None     # so the check below can fail
    plain.close()
    s = rig.socket()
    mechanism = s.keepalive(idle=60, interval=60, count=3)   # 1 minute idle, per dialect
    if mechanism == "probe":
        s.close()
        dead_peer_found_by_the_heartbeat(rig)
        return
    assert mechanism == "modem", mechanism
    s.connect(("127.0.0.1", echo.port))
    assert roundtrip(s, b"alive") == b"alive"
    timer = keepalive_timer_s(echo.port)
    s.close()
    assert timer is not None, "the modem's link socket has no keepalive timer"
    assert 0 < timer <= KEEPALIVE_MINUTE_S + 0.5, timer


def dead_peer_found_by_the_heartbeat(rig):
    from synack import heartbeat as hbm
    from synack_host.hil.middlebox import heartbeat_server

    with ScriptedServer(heartbeat_server(answer=False)) as silent:
        s = rig.socket()
        s.connect(("127.0.0.1", silent.port))
        hb = hbm.Heartbeat(idle_ms=500, timeout_ms=500, misses=2)
        t0 = time.monotonic()
        result = hbm.Driver(s, hb, lambda line: None, poll_ms=50).run(duration_ms=10000)
        took = time.monotonic() - t0
        s.close()
    assert result == "dead" and hb.pings_sent == 2, (result, hb.pings_sent)
    assert took <= 0.5 + 2 * 0.5 + 1.0, took   # + 1 s: the modem's read round trips


# -- every runtime fault: only OSError escapes, and the next connection works -------------
# the fault requests, in the dialect's own words where a fault names a command
FAULTS = {
    "reboot": "reboot",
    "network-lost": "network-lost",
    "delay": "delay 0.3 2",
    "garbage": "garbage \\xff\\xfe noise",
    "drop-registration": "drop-registration 0.5",
    "close-link": "close-link {link}",
    "lose-urc": "lose-urc 2",
    "cme-error": "cme-error {send} 3",
    "lose-ok": "lose-ok 1",
    "send-fail": "send-fail",
    "truncate-read": "truncate-read",
    "ipclose-during-send": "ipclose-during-send",
    "malformed-urc": "malformed-urc",
}
# faults after which the connection itself must still carry the data
HARMLESS = {"delay", "garbage", "lose-urc", "malformed-urc"}


def test_every_dialect_has_every_fault(dialect):
    missing = set(FAULTS) - set(DIALECTS[dialect].fault_table)
    assert not missing, "%s lacks faults %s" % (dialect, sorted(missing))


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_raises_only_oserror_and_the_next_connection_works(rig, echo, dialect, fault):
    s = rig.socket(timeout=6)
    s.connect(("127.0.0.1", echo.port))
    assert roundtrip(s, b"before") == b"before"
    request = FAULTS[fault].format(link=s.handle, send=DIALECTS[dialect].wording.send)
    rig.proc.fault(request)
    data = random.Random(4).randbytes(3000)
    try:
        got = roundtrip(s, data, chunk=1000)
    except OSError:
        got = None
    if fault in HARMLESS:
        assert got == data
    assert rig.proc.status()["pending"] == {}, "the fault was never exercised"
    try:
        s.close()
    except OSError:
        pass
    rig.proc.heal()
    s2 = rig.socket(timeout=10)
    s2.connect(("127.0.0.1", echo.port))
    assert roundtrip(s2, b"after " + fault.encode()) == b"after " + fault.encode()
    s2.close()


# -- field diagnostics --------------------------------------------------------------------
def test_the_diag_report_reads_every_dialect(rig, dialect, monkeypatch):
    from synack import diag

    monkeypatch.setattr(diag, "_reg", {"modem": rig.modem})
    c = diag.report(link="cellular")["cellular"]
    assert c["modem"] == "answering" and c["sim"] == "READY", c
    assert c["model"] and c["iccid"] and c["iccid"].isdigit(), c
    assert c["registration"]["state"] == "registered (home)", c
    assert c["bearer"] == "open" and c["signal_dbm"] is not None, c
    # what a dialect may lack (a 2G modem has no EPS registration, not every one answers
    # AT+CGMR/AT+CGSN); the SIM, signal and registration queries must all answer
    optional = {"revision", "imei", "apn", "operator", "registration_eps", "registration_gprs"}
    assert set(c["errors"]) <= optional, c
