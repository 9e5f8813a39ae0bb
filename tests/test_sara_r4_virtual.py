"""The SARA-R4 driver (firmware/synack/modems/sara_r4.py) on CPython drives the virtual
SARA-R410M-02B (``synack sim modem --dialect sara-r4``) over its pty to real TCP servers
on 127.0.0.1: what is the SARA-R4's own beyond the conformance suite
(tests/conformance/): the model and its settings, its error texts, the socket numbers
the modem gives (and gives back), a half-closed peer read to the end, the bearer
reopened after network loss, binary reads (raw bytes between quotes on the reply line,
as a raw serial client sees them too), and every fault as u-blox words it."""

import errno
import random
import time

import pytest

from atclient import Client
from synack.modems import base, sara_r4
from synack_host.servers import EchoServer, ScriptedServer
from modemrig import (ACTIVE_CLOSE, PASSIVE_CLOSE, after_network_loss, echoed, events,
                      pair, refused, rig_fixtures, roundtrip, start_error, unresolved)

rig_factory, rig = rig_fixtures("sara-r4", poll_ms=100)


def test_bring_up_names_the_model_and_opens_the_bearer(rig):
    m = rig.modem
    assert isinstance(m, sara_r4.SARAR4)
    assert m.model == b"SARA-R410M-02B" and not m.keepidle
    assert m.net_open and m.rssi_dbm == -73
    assert m.at.command(b"AT+UDCONF=1", b"+UDCONF:").lines == [b"+UDCONF: 1,0"]   # binary
    assert m.at.command(b"AT+CGEREP?", b"+CGEREP:").lines == [b"+CGEREP: 1,0"]


@pytest.mark.parametrize("args, error, text", [
    (("--sim", "absent"), base.NoSIM, "+CME ERROR: 10"),
    (("--registration", "denied"), base.RegistrationDenied, "denied"),
    (("--pdp-fail",), base.PDPError, "AT+CGACT=1,1 -> +CME ERROR: 148"),
])
def test_bring_up_failures_are_named(rig_factory, args, error, text):
    assert text in start_error(rig_factory, args, error)


def test_dns_resolves_names_and_fails_with_ehostunreach(rig):
    assert rig.modem.getaddrinfo("localhost", 80) == [(2, 1, 6, "", ("127.0.0.1", 80))]
    exc = unresolved(rig.modem.getaddrinfo, "nowhere.invalid")
    assert 'AT+UDNSRN=0,"nowhere.invalid" -> +CME ERROR: 100' in str(exc)


def test_64k_reaches_the_server_once_and_frees_the_socket(rig, echo):
    echoed(rig, echo, random.Random(1).randbytes(64 * 1024))
    assert echo.wait_for(lambda: echo.closed_by_client == [True])
    assert echo.received == 64 * 1024
    assert rig.modem.links == [None] * sara_r4.SOCKETS


def test_two_sockets_on_the_modems_numbers_and_one_closed_leaves_the_other(rig, echo):
    a, b = pair(rig, echo)
    assert {a.handle, b.handle} == {0, 1}       # the modem's numbers
    a.close()
    assert b.state == "ESTABLISHED" and roundtrip(b, b"still fine") == b"still fine"
    b.close()
    assert a.tcp.states() == b.tcp.states() == ACTIVE_CLOSE


def test_passive_close_reads_the_rest_then_eof(rig):
    def speak_and_hang_up(conn):
        conn.sendall(b"last words")
        conn.shutdown(1)
        time.sleep(0.5)

    with ScriptedServer(speak_and_hang_up) as srv:
        s = rig.socket()
        s.connect(("127.0.0.1", srv.port))
        got = b""
        while True:
            chunk = s.recv(100)
            if not chunk:
                break
            got += chunk
        assert got == b"last words"
        assert s.state == "CLOSE_WAIT"
        s.close()
        assert s.tcp.states() == PASSIVE_CLOSE
        assert rig.modem.links == [None] * sara_r4.SOCKETS


def test_refused_port_is_econnrefused_and_frees_the_socket(rig, echo):
    assert "+UUSOCO: 0,111 (connection refused)" in str(refused(rig, echo))
    with EchoServer() as again:
        s2 = rig.socket()
        s2.connect(("127.0.0.1", again.port))
        assert s2.handle == 0                   # the number was given back
        assert roundtrip(s2, b"hello") == b"hello"
        s2.close()


def test_network_loss_resets_sockets_and_the_next_connect_reopens_the_bearer(rig, echo):
    s, s2 = after_network_loss(rig, echo)
    assert events(s)[-1] == "RESET"
    assert events(s2) == ["BEARER_UP", "CONNECT", "CONNECTED"]
    assert rig.modem.net_open and rig.modem.bearer_reopens == 1
    s2.close()


# -- the shared faults, in u-blox's words ------------------------------------------------
def connected(rig, echo):
    s = rig.socket(timeout=3)
    s.connect(("127.0.0.1", echo.port))
    return s


def test_lost_data_urcs_are_made_up_for_by_polling(rig, echo):
    s = connected(rig, echo)
    assert rig.proc.fault("lose-urc 3") == "the next 3 data URC(s) will be lost"
    assert roundtrip(s, b"polled") == b"polled"
    assert rig.proc.status()["pending"] == {"lose-urc": 2}
    s.close()


def test_malformed_urcs_are_counted_and_change_nothing(rig, echo):
    s = connected(rig, echo)
    assert rig.proc.fault("malformed-urc") == "queued: '+UUSOCL: O', '+UUSORD: 0,'"
    assert roundtrip(s, b"fine") == b"fine"
    assert s.state == "ESTABLISHED"
    assert rig.modem.at.engine.unexpected == 0
    s.close()


def test_a_socket_the_network_closes_reads_eof(rig, echo):
    s = connected(rig, echo)
    assert rig.proc.fault(f"close-link {s.handle}") == f"link {s.handle} closed (+UUSOCL: 0)"
    assert s.recv(10) == b""
    assert s.state == "CLOSE_WAIT"
    s.close()
    assert s.tcp.states() == PASSIVE_CLOSE


def test_a_link_lost_during_a_write_is_econnreset(rig, echo):
    s = connected(rig, echo)
    rig.proc.fault("ipclose-during-send")
    with pytest.raises(OSError) as exc:
        s.send(b"x" * 100)
    assert exc.value.errno == errno.ECONNRESET
    assert "AT+USOWR=0,100 -> +CME ERROR: 3" in str(exc.value)
    assert s.recv(10) == b""                    # its +UUSOCL came too
    s.close()


def ten_bytes_waiting(rig, echo):
    """A connected socket whose 10 bytes came back from the echo server to the modem."""
    s = connected(rig, echo)
    s.sendall(b"0123456789")
    assert echo.wait_for(lambda: echo.received == 10)
    time.sleep(0.2)
    return s


def test_a_read_cut_short_times_out_and_the_channel_recovers(rig, echo):
    s = ten_bytes_waiting(rig, echo)
    rig.proc.fault("truncate-read")
    with pytest.raises(OSError) as exc:
        s.recv(10)
    assert exc.value.errno == errno.ETIMEDOUT
    assert roundtrip(s, b"after") == b"after"   # resynced; that read's bytes are lost
    s.close()


def test_a_read_cut_short_in_a_long_download_times_out_and_the_channel_recovers(rig):
    # binary reads of 1024 bytes; the cut one is followed by the modem's +UUSORD (more
    # data waits), which the parser counts into the payload it still waits for
    data = random.Random(2).randbytes(8000)

    def send(conn):
        conn.sendall(data)
        time.sleep(8)

    with ScriptedServer(send) as srv:
        s = rig.socket(timeout=10)
        s.connect(("127.0.0.1", srv.port))
        buf = bytearray(4096)
        assert s.readinto(buf, 1024) == 1024 and buf[:1024] == data[:1024]
        rig.proc.fault("truncate-read")
        with pytest.raises(OSError) as exc:
            s.recv_into(buf)
        assert exc.value.errno == errno.ETIMEDOUT
        got = b""
        while len(got) < len(data) - 2048:      # that read's bytes are lost, no others
            got += s.recv(4096)
        assert data.endswith(got)
        assert rig.modem.at.command(b"AT+CSQ", b"+CSQ:").lines   # the channel works
        s.close()


def test_a_read_that_does_not_frame_is_eio_and_the_socket_reads_on(rig, echo):
    s = ten_bytes_waiting(rig, echo)
    rig.modem.at.command(b"AT+UDCONF=1,1")      # HEX mode, behind the driver's back
    with pytest.raises(OSError) as exc:
        s.recv(10)
    assert exc.value.errno == errno.EIO
    assert "bad +USORD reply (asked 512 bytes; header [b'+USORD: 0,10']" in str(exc.value)
    assert rig.modem.at.engine.parser.framing == 1 and rig.modem.reboots == 0
    rig.modem.at.command(b"AT+UDCONF=1,0")
    assert roundtrip(s, b'"\r\nOK\r\n"') == b'"\r\nOK\r\n"'   # that read's bytes are lost
    assert s.state == "ESTABLISHED"
    s.close()


def test_garbage_between_binary_reads_changes_nothing(rig, echo):
    s = connected(rig, echo)
    data = bytes(range(256)) * 8
    rig.proc.fault('garbage \\x00"\\r\\n"\\r')   # quotes and line ends, between lines
    assert roundtrip(s, data, chunk=1024) == data
    s.close()


def test_an_unannounced_reboot_is_found_out_and_the_next_connect_brings_it_up(rig, echo):
    s = connected(rig, echo)
    assert rig.proc.fault("reboot") == "rebooting"
    time.sleep(0.3)                               # booted: echo on, settings lost
    with pytest.raises(OSError) as exc:
        s.recv(10)
    assert exc.value.errno == errno.ECONNRESET
    assert rig.modem.reboots == 1 and not rig.modem.net_open
    s2 = connected(rig, echo)
    assert events(s2) == ["BEARER_UP", "CONNECT", "CONNECTED"]
    assert roundtrip(s2, b"back") == b"back"
    s2.close()


def test_a_send_the_network_never_delivered_ends_the_socket_with_etimedout(rig, echo):
    s = connected(rig, echo)
    rig.proc.fault("send-fail")
    assert s.send(b"lost") == 4                 # taken: +USOWR: 0,4
    with pytest.raises(OSError) as exc:         # then +UUSOCL; its error is not a FIN
        while True:
            assert s.recv(10) != b"", "a failed socket read as end of stream"
    assert exc.value.errno == errno.ETIMEDOUT
    assert "socket 0 ended by error 110 (connection timed out)" in str(exc.value)
    assert events(s)[-2:] == ["PEER_FIN", "TIMEOUT"]
    s.close()


# -- the virtual SARA-R4's read words, as a raw serial client sees them --------------------
def test_usord_answers_raw_bytes_between_quotes_or_hex_digits_in_hex_mode():
    from synack_host.sim.launch import start_modem

    payload = b'a"\r\nOK\r\n\x00\xff"'

    def speak(conn):
        conn.sendall(payload)
        time.sleep(3)

    with ScriptedServer(speak) as srv:
        proc = start_modem("--dialect", "sara-r4")
        c = Client(proc.port)
        try:
            time.sleep(0.5)   # booted: the R4 says nothing at boot
            c.cmd("ATE0")
            assert c.cmd("AT+UDCONF=1") == b"\r\n+UDCONF: 1,0\r\n\r\nOK\r\n"  # binary
            assert c.cmd("AT+USOCR=6") == b"\r\n+USOCR: 0\r\n\r\nOK\r\n"
            c.cmd('AT+USOCO=0,"127.0.0.1",%d,1' % srv.port, b"+UUSOCO: 0,0\r\n")
            c.until(b"+UUSORD: 0,%d\r\n" % len(payload))
            c.s.write(b"AT+USORD=0,5\r")
            assert c.take(len(b'\r\n+USORD: 0,5,"') + 5 + 3) == (
                b'\r\n+USORD: 0,5,"' + payload[:5] + b'"\r\n')
            assert c.until(b"OK\r\n") == b"\r\nOK\r\n"
            assert c.until(b"\r\n", 1) + c.until(b"\r\n", 1) == b"\r\n+UUSORD: 0,6\r\n"
            assert c.cmd("AT+UDCONF=1,1") == b"\r\nOK\r\n"
            assert c.cmd("AT+USORD=0,1024") == (b'\r\n+USORD: 0,6,"' + payload[5:].hex().upper()
                                                 .encode() + b'"\r\n\r\nOK\r\n')
            assert c.cmd("AT+USORD=0,1024") == b'\r\n+USORD: 0,""\r\n\r\nOK\r\n'
        finally:
            c.s.close()
            assert proc.stop() == 0
