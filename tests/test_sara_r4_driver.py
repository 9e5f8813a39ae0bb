"""The SARA-R4 driver (firmware/synack/modems/sara_r4.py) against a scripted modem that
answers as u-blox's SARA-R4 AT manual says, in-process and without a pty: the bring-up
and its failures, every URC (and garbled ones), connects on the modem's own socket
numbers and their +UUSOCO outcomes, ``@``-prompted writes, binary reads (the bytes
between quotes on the reply line) and their framing checks, the peer's close with data
still buffered, our close, the modem's keepalive, DNS, the bearer reopened by a connect
after the network dropped it, and a reset (no boot URC) or a reboot nobody announced.
The TCP lifecycle is checked on the socket's event log, the errors by errno and
message."""

import errno

import pytest

from synack import tcp
from synack.modems import base, sara_r4

import farmodem
from farmodem import (ACTIVE_CLOSE, OK, PASSIVE_CLOSE, POLLHUP, POLLIN, POLLOUT, Prompted,
                      arg, events, oserror, prompted, read, sock_on, urc)

EMPTY = [None] * sara_r4.SOCKETS
# AT+CGEREP?: as start() left it, and as a reboot leaves it (the default)
CGEREP_ON = b"\r\n+CGEREP: 1,0\r\n" + OK
CGEREP_OFF = b"\r\n+CGEREP: 0,0\r\n" + OK


class Far(farmodem.Far):
    """The SARA-R4's far end: the bring-up answered, sockets numbered by the modem (the
    lowest free one), connects and closes confirmed by their URCs, unless a case says
    otherwise."""

    def __init__(self, replies=None):
        self.sockets = set()
        super().__init__(replies, {
            **farmodem.READY,
            b"AT+CGMM": b"\r\nSARA-R410M-02B\r\n" + OK,
            b'AT+CGDCONT=1,"IP","internet"': OK, b"AT+UDCONF=1,0": OK,
            b"AT+CGEREP=1": OK, b"AT+CGATT=1": OK, b"AT+CGACT=1,1": OK,
            b"AT+CGACT?": b"\r\n+CGACT: 1,1\r\n" + OK,
            b"AT+CGACT=0,1": OK, b"AT+CFUN=15": OK,
            b"AT+CGEREP?": CGEREP_ON,
            b"AT+USOCR=6": self.usocr,
            b"AT+USOCO=": usoco(0),
            b"AT+USOCL=": self.usocl,
            b"AT+USOWR=": usowr(),
        })

    def usocr(self, line):
        n = min(set(range(7)) - self.sockets)
        self.sockets.add(n)
        return b"\r\n+USOCR: %d\r\n" % n + OK

    def usocl(self, line):
        n = arg(line, 0)
        if n not in self.sockets:
            return b"\r\n+CME ERROR: 3\r\n"
        self.sockets.discard(n)
        return OK + b"\r\n+UUSOCL: %d\r\n" % n


def usoco(err=0):
    return lambda line: OK + b"\r\n+UUSOCO: %d,%d\r\n" % (arg(line, 0), err)


def usowr(accepted=None):
    """AT+USOWR=<s>,<n>: ``@``, the payload, then +USOWR: <s>,<accepted> and OK."""
    def answer(n, size):
        return b"\r\n+USOWR: %d,%d\r\n" % (n, size if accepted is None else accepted) + OK
    return prompted(b"\r\n@", answer)


def usord(data):
    """AT+USORD=<s>,<max> in binary mode: what fits of ``data``, raw between quotes."""
    def reply(line):
        n, size = arg(line, 0), arg(line, 1)
        chunk = data[:size]
        if not chunk:
            return b'\r\n+USORD: %d,""\r\n' % n + OK
        return b'\r\n+USORD: %d,%d,"' % (n, len(chunk)) + chunk + b'"\r\n' + OK
    return reply


START_COMMANDS = farmodem.START + [b"AT+CGMM", b'AT+CGDCONT=1,"IP","internet"',
                                   b"AT+UDCONF=1,0", b"AT+CGEREP=1", b"AT+CGATT=1",
                                   b"AT+CGACT=1,1", b"AT+CGACT?"]


fast_clock = farmodem.clock_fixture(sara_r4)
modem_on, started, connected = farmodem.helpers(Far, sara_r4.SARAR4)


# -- bring-up ---------------------------------------------------------------------------
def test_start_brings_the_modem_up_in_the_manuals_order():
    far = Far()
    modem = modem_on(far)
    assert not modem.net_open and modem.rssi_dbm is None
    modem.start(register_timeout_ms=100)
    assert far.commands == START_COMMANDS
    assert modem.net_open and modem.rssi_dbm == -73
    assert modem.model == b"SARA-R410M-02B" and not modem.keepidle
    assert modem.reboots == 0 and modem.bearer_reopens == 0


def test_a_sara_r5_takes_the_keepidle_option():
    far = Far({b"AT+CGMM": b"\r\nSARA-R510M8S\r\n" + OK})
    modem = modem_on(far)
    modem.start(register_timeout_ms=100)
    assert modem.keepidle and modem.net_open


def test_a_model_query_the_modem_refuses_is_no_model():
    far = Far({b"AT+CGMM": b"\r\nERROR\r\n"})
    modem = modem_on(far)
    modem.start(register_timeout_ms=100)
    assert modem.model == b"" and not modem.keepidle and modem.net_open


def test_the_apn_and_pin_are_checked_when_the_driver_is_made():
    with pytest.raises(ValueError):
        sara_r4.SARAR4(Far(), apn='x"; AT+CFUN=0')
    with pytest.raises(ValueError):
        sara_r4.SARAR4(Far(), pin="12345678901")


@pytest.mark.parametrize("failing, answer, text", [
    (b"AT+CGATT=1", b"\r\n+CME ERROR: 30\r\n",
     "packet data context failed: AT+CGATT=1 -> +CME ERROR: 30"),
    (b"AT+CGACT=1,1", b"\r\n+CME ERROR: 148\r\n",
     "packet data context failed: AT+CGACT=1,1 -> +CME ERROR: 148"),
    (b"AT+CGACT?", b"\r\n+CGACT: 1,0\r\n" + OK,
     "context 1 not active after AT+CGACT=1,1: [b'+CGACT: 1,0']"),
    (b"AT+CGACT?", b"\r\n+CGACT: 1,X\r\n" + OK,
     "context 1 not active after AT+CGACT=1,1: [b'+CGACT: 1,X']"),
])
def test_a_bearer_that_does_not_open_is_a_pdp_error(failing, answer, text):
    far = Far({failing: answer})
    modem = modem_on(far)
    with pytest.raises(base.PDPError) as exc:
        modem.start(register_timeout_ms=100)
    assert str(exc.value).startswith(text)
    assert not modem.net_open


def test_the_pdp_error_names_the_apn():
    far = Far({b"AT+CGACT=1,1": b"\r\n+CME ERROR: 148\r\n"})
    with pytest.raises(base.PDPError) as exc:
        modem_on(far).start(register_timeout_ms=100)
    assert str(exc.value).endswith("(check the APN 'internet' and the data plan)")


def test_an_attach_without_an_answer_gives_up_after_360_s(fast_clock):
    far = Far({b"AT+CGATT=1": None})
    modem = modem_on(far)
    t0 = fast_clock.now
    with pytest.raises(base.PDPError) as exc:
        modem.bearer_open()
    assert str(exc.value) == "AT+CGATT=1: no answer within 360000 ms"
    assert 360000 <= fast_clock.now - t0 < 365000


def test_bring_up_errors_stop_start():
    far = Far({b"AT+CEREG?": b"\r\n+CEREG: 0,3\r\n" + OK,
               b"AT+CREG?": b"\r\n+CREG: 0,3\r\n" + OK})
    with pytest.raises(base.RegistrationDenied):
        modem_on(far).start(register_timeout_ms=100)
    assert b"AT+CGATT=1" not in far.commands and b"AT+UDCONF=1,0" not in far.commands


def test_bearer_down_deactivates_context_1():
    far, modem = started()
    modem.bearer_down()
    assert far.commands == [b"AT+CGACT=0,1"] and not modem.net_open


# -- reset: no boot URC -------------------------------------------------------------------
def test_reset_counts_the_reboot_and_waits_for_at_to_answer_again():
    far, modem, s = connected()
    answers = [None, None, OK]   # deaf while it boots, then back
    far.replies[b"AT"] = lambda line: answers.pop(0) if answers else OK
    far.commands.clear()
    modem.reset(wait_ms=5000)
    assert far.commands[0] == b"AT+CFUN=15" and set(far.commands[1:]) == {b"AT"}
    assert not answers                          # asked until it answered
    assert modem.reboots == 1 and not modem.net_open
    assert s.state == "CLOSED" and events(s)[-1] == "RESET"
    far.commands.clear()
    sock_on(modem).connect(("10.0.0.1", 80))   # the settings are lost: the whole bring-up
    assert far.commands[:len(START_COMMANDS)] == START_COMMANDS


def test_a_reset_after_which_the_modem_stays_silent_is_modem_not_responding(fast_clock):
    far, modem = started()
    far.replies[b"AT"] = None
    with pytest.raises(base.ModemNotResponding) as exc:
        modem.reset(wait_ms=3000)
    assert str(exc.value) == "modem did not answer AT within 3000 ms after AT+CFUN=15"
    assert far.commands == [b"AT+CFUN=15", b"AT", b"AT", b"AT"]


# -- URCs: what each records --------------------------------------------------------------
def test_informational_urcs_are_consumed_quietly():
    far, modem = started()
    urcs = modem.at.engine.urcs
    urc(far, modem, b"+CPIN: READY", b"+CREG: 1", b"+CGREG: 1", b"+CEREG: 1",
        b"+CGEV: NW PDN ACT 1", b"+CGEV: NW PDN DEACT 2", b"+CGEV: NW PDN DEACT x",
        b"+CGEV:", b"+CGEV: NW MODIFY 1,2,0")
    assert modem.at.engine.urcs == urcs + 9
    assert modem.at.engine.unexpected == 0 and modem.at.engine.malformed == 0
    assert modem.net_open


def test_data_urc_marks_only_its_socket_readable():
    far, modem, s = connected()
    s2 = sock_on(modem)
    s2.connect(("10.0.0.2", 81))
    urc(far, modem, b"+UUSORD: 1,12")
    assert modem.links[1].rx_pending and not modem.links[0].rx_pending
    urc(far, modem, b"+UUSORD: 0", b"+UUSORD: 0,", b"+UUSORD: 0,0", b"+UUSORD: O,5",
        b"+UUSORD: 7,5", b"+UUSORD: -1,5", b"+UUSORD: 0,5,5", b"+UUSORD: 2,5")
    assert not modem.links[0].rx_pending
    assert modem.at.engine.malformed == 0


def test_open_urc_records_the_error_of_its_socket_only():
    far, modem = started({b"AT+USOCO=": OK})
    s = sock_on(modem)
    s.setblocking(False)
    oserror(s.connect, ("10.0.0.1", 80))
    urc(far, modem, b"+UUSOCO: 1,0", b"+UUSOCO: 0", b"+UUSOCO: 9,0", b"+UUSOCO: 0,X",
        b"+UUSOCO: 0,-1", b"+UUSOCO: 0,0,0")
    assert modem.links[0].open_err is None
    urc(far, modem, b"+UUSOCO: 0,111")
    assert modem.links[0].open_err == 111
    assert modem.at.engine.malformed == 0


def test_close_urc_is_the_peers_fin():
    far, modem, s = connected()
    urc(far, modem, b"+UUSOCL: 0")
    assert modem.links[0].peer_closed
    assert events(s) == ["CONNECT", "CONNECTED", "PEER_FIN"] and s.state == "CLOSE_WAIT"


def test_close_urc_of_another_or_no_socket_changes_nothing():
    far, modem, s = connected()
    urc(far, modem, b"+UUSOCL: 1", b"+UUSOCL: 7", b"+UUSOCL: O", b"+UUSOCL: ",
        b"+UUSOCL: 0,0", b"+UUSOCL: -1")
    assert s.state == "ESTABLISHED" and not modem.links[0].peer_closed
    assert modem.at.engine.malformed == 0


def test_close_urc_in_the_same_read_as_the_connect_closes_after_the_handshake():
    far = Far({b"AT+USOCO=": OK + b"\r\n+UUSOCO: 0,0\r\n\r\n+UUSOCL: 0\r\n"})
    modem = modem_on(far)
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert events(s) == ["CONNECT", "CONNECTED", "PEER_FIN"] and s.state == "CLOSE_WAIT"


@pytest.mark.parametrize("line", [b"+CGEV: NW DETACH", b"+CGEV: ME DETACH",
                                  b"+CGEV: NW PDN DEACT 1", b"+CGEV: ME PDN DEACT 1",
                                  b"+CGEV: NW PDN DEACT 1,0", b"+UUPSDD: 0"])
def test_network_lost_resets_every_socket(line):
    far, modem, s = connected()
    s2 = sock_on(modem)
    s2.connect(("10.0.0.2", 81))
    urc(far, modem, line)
    assert not modem.net_open and modem.reboots == 0
    for sock in (s, s2):
        assert sock.state == "CLOSED" and events(sock)[-1] == "RESET"
    assert modem.links[0].peer_closed and modem.links[1].peer_closed


# -- DNS ----------------------------------------------------------------------------------
def test_ipv4_literal_resolves_without_asking_the_modem():
    far, modem = started()
    assert modem.getaddrinfo("10.1.2.3", 8080) == [(2, 1, 6, "", ("10.1.2.3", 8080))]
    assert far.commands == []


def test_name_resolves_with_udnsrn():
    far, modem = started({b"AT+UDNSRN=": b'\r\n+UDNSRN: "93.184.216.34"\r\n' + OK})
    assert modem.getaddrinfo("example.com", 443) == [(2, 1, 6, "", ("93.184.216.34", 443))]
    assert far.commands == [b'AT+UDNSRN=0,"example.com"']


def test_dns_failure_is_ehostunreach_naming_the_host():
    far, modem = started({b"AT+UDNSRN=": b"\r\n+CME ERROR: 100\r\n"})
    e = oserror(modem.getaddrinfo, "nowhere.example", 80)
    assert e.errno == errno.EHOSTUNREACH
    assert e.args[1].startswith('DNS lookup of nowhere.example failed: '
                                'AT+UDNSRN=0,"nowhere.example" -> +CME ERROR: 100')


@pytest.mark.parametrize("answer", [b'\r\n+UDNSRN: "1.2.3"\r\n' + OK, OK,
                                    b"\r\n+UDNSRN: \r\n" + OK])
def test_dns_malformed_reply_is_ehostunreach_quoting_it(answer):
    far, modem = started({b"AT+UDNSRN=": answer})
    e = oserror(modem.getaddrinfo, "x.example", 80)
    assert e.errno == errno.EHOSTUNREACH
    assert e.args[1].startswith("DNS lookup of x.example failed: malformed reply")


def test_dns_without_an_answer_times_out_after_70_s(fast_clock):
    far, modem = started({b"AT+UDNSRN=": None})
    e = oserror(modem.getaddrinfo, "slow.example", 80)
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == ('DNS lookup of slow.example: AT+UDNSRN=0,"slow.example": '
                         'no answer within 70000 ms')


def test_dns_of_a_name_that_is_not_one_is_einval():
    far, modem = started()
    assert oserror(modem.getaddrinfo, 'a"b', 80).errno == errno.EINVAL
    assert far.commands == []


# -- keepalive: AT+USOSO -------------------------------------------------------------------
@pytest.mark.parametrize("idle, interval, count", [(60, 75, 9), (7200, 75, 9), (60, 60, 5)])
def test_a_sara_r4_leaves_keepalive_to_the_application(idle, interval, count):
    far, modem = started()
    assert sock_on(modem).keepalive(idle, interval, count) == "probe"


@pytest.mark.parametrize("idle, interval, count, mechanism", [
    (60, 75, 9, "modem"), (1, 75, 9, "modem"), (7200, 75, 9, "modem"),
    (60, 60, 9, "probe"), (60, 75, 5, "probe")])
def test_a_sara_r5_keeps_the_idle_time_its_probes_are_fixed(idle, interval, count,
                                                            mechanism):
    far, modem = started({b"AT+CGMM": b"\r\nSARA-R510M8S\r\n" + OK})
    assert sock_on(modem).keepalive(idle, interval, count) == mechanism


def test_modem_keepalive_is_set_on_the_new_socket_before_its_connect():
    far, modem = started({b"AT+CGMM": b"\r\nSARA-R510S\r\n" + OK, b"AT+USOSO=": OK})
    s = sock_on(modem)
    assert s.keepalive(120, 75, 9) == "modem"
    s.connect(("10.0.0.1", 80))
    assert far.commands == [b"AT+CGEREP?", b"AT+USOCR=6", b"AT+USOSO=0,65535,8,1",
                            b"AT+USOSO=0,6,2,120000", b'AT+USOCO=0,"10.0.0.1",80,1']
    assert s.state == "ESTABLISHED"


def test_modem_keepalive_rejected_is_einval_and_closes_the_new_socket():
    far, modem = started({b"AT+CGMM": b"\r\nSARA-R510S\r\n" + OK,
                          b"AT+USOSO=": b"\r\n+CME ERROR: 4\r\n"})
    s = sock_on(modem)
    s.keepalive(120, 75, 9)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.EINVAL
    assert e.args[1] == ("modem rejected AT+USOSO: AT+USOSO=0,65535,8,1 -> +CME ERROR: 4 "
                         "(operation not supported)")
    assert far.commands == [b"AT+CGEREP?", b"AT+USOCR=6", b"AT+USOSO=0,65535,8,1",
                            b"AT+USOCL=0,1"]
    assert modem.links == EMPTY and far.sockets == set()


def test_keepalive_not_expressible_cannot_be_set_in_the_modem():
    far, modem = started({b"AT+CGMM": b"\r\nSARA-R510S\r\n" + OK})
    e = oserror(modem._set_keepalive, 0, sara_r4._ka.Keepalive(60, 60, 9))
    assert e.errno == errno.EINVAL and "not expressible with AT+USOSO" in e.args[1]
    assert far.commands == []


# -- connect ------------------------------------------------------------------------------
def test_connect_creates_a_socket_and_connects_it_asynchronously():
    far, modem, s = connected()
    # first: is +CGEV reporting still on (no unannounced reboot)?
    assert far.commands == [b"AT+CGEREP?", b"AT+USOCR=6", b'AT+USOCO=0,"10.0.0.1",80,1']
    assert events(s) == ["CONNECT", "CONNECTED"] and s.state == "ESTABLISHED"
    assert s.handle == 0 and modem.links[0].tcp is s.tcp


def test_the_socket_takes_the_number_the_modem_gives():
    far, modem = started({b"AT+USOCR=6": b"\r\n+USOCR: 5\r\n" + OK})
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert s.handle == 5 and modem.links[5].tcp is s.tcp
    assert far.commands[-1] == b'AT+USOCO=5,"10.0.0.1",80,1'


def test_a_number_the_modem_gives_again_resets_the_socket_that_had_it():
    far, modem, s = connected()
    far.sockets.clear()           # the modem freed 0 (its +UUSOCL was lost)
    s2 = sock_on(modem)
    s2.connect(("10.0.0.2", 81))
    assert s2.handle == 0 and modem.links[0].tcp is s2.tcp
    assert s.state == "CLOSED" and events(s)[-1] == "RESET"
    n = len(far.commands)
    s.close()                     # the old socket no longer owns number 0
    assert far.commands[n:] == [] and s2.state == "ESTABLISHED"


@pytest.mark.parametrize("port", [0, 65536, -1, "80", None])
def test_connect_to_a_port_out_of_range_is_einval(port):
    far, modem = started()
    e = oserror(sock_on(modem).connect, ("10.0.0.1", port))
    assert e.errno == errno.EINVAL and far.commands == []


@pytest.mark.parametrize("err, code, text, last", [
    (111, errno.ECONNREFUSED, "connection refused", "REFUSED"),
    (110, errno.ETIMEDOUT, "connection timed out", "TIMEOUT"),
    (113, errno.EHOSTUNREACH, "host unreachable", "TIMEOUT"),
    (100, errno.EHOSTUNREACH, "network down", "TIMEOUT"),
    (101, errno.EHOSTUNREACH, "network unreachable", "TIMEOUT"),
    (104, errno.ECONNRESET, "connection reset", "TIMEOUT"),
    (103, errno.ECONNABORTED, "connection aborted", "TIMEOUT"),
    (160, errno.EHOSTUNREACH, "host name not found", "TIMEOUT"),
    (7, errno.ECONNABORTED, "error", "TIMEOUT")])
def test_open_error_is_the_sockets_error_and_the_socket_is_closed(err, code, text, last):
    far, modem = started({b"AT+USOCO=": usoco(err)})
    s = sock_on(modem)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == code
    assert e.args[1] == "connect to 10.0.0.1:80 failed: +UUSOCO: 0,%d (%s)" % (err, text)
    assert events(s) == ["CONNECT", last] and s.state == "CLOSED"
    assert far.commands[-1] == b"AT+USOCL=0,1" and far.sockets == set()
    assert modem.links == EMPTY
    assert modem.net_open == (err not in (100, 101))   # the bearer is down: reopen next


def test_socket_creation_refused_is_enobufs_and_nothing_is_connected():
    far, modem = started({b"AT+USOCR=6": b"\r\n+CME ERROR: 3\r\n"})
    s = sock_on(modem)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.ENOBUFS
    assert e.args[1] == ("modem could not create a socket: AT+USOCR=6 -> +CME ERROR: 3 "
                         "(operation not allowed)")
    assert far.commands == [b"AT+CGEREP?", b"AT+USOCR=6"]
    assert events(s) == [] and modem.links == EMPTY


@pytest.mark.parametrize("answer", [b"\r\n+USOCR: 7\r\n" + OK, b"\r\n+USOCR: X\r\n" + OK,
                                    b"\r\n+USOCR: 0,1\r\n" + OK, OK])
def test_socket_creation_answered_malformed_is_eio(answer):
    far, modem = started({b"AT+USOCR=6": answer})
    e = oserror(sock_on(modem).connect, ("10.0.0.1", 80))
    assert e.errno == errno.EIO and e.args[1].startswith("AT+USOCR: malformed reply")
    assert modem.links == EMPTY


def test_socket_creation_unanswered_is_etimedout(fast_clock):
    far, modem = started({b"AT+USOCR=6": None})
    e = oserror(sock_on(modem).connect, ("10.0.0.1", 80))
    assert e.errno == errno.ETIMEDOUT and e.args[1] == "AT+USOCR=6: no answer within 5000 ms"


def test_connect_rejected_by_the_modem_is_eio_and_closes_the_socket():
    far, modem = started({b"AT+USOCO=": b"\r\n+CME ERROR: 3\r\n"})
    s = sock_on(modem)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.EIO
    assert e.args[1] == ('modem rejected the connect: AT+USOCO=0,"10.0.0.1",80,1 -> '
                         '+CME ERROR: 3 (operation not allowed)')
    assert far.commands[-1] == b"AT+USOCL=0,1" and far.sockets == set()
    assert events(s) == ["CONNECT", "RESET"] and modem.links == EMPTY


def test_connect_unanswered_closes_the_socket_it_may_have_opened(fast_clock):
    far, modem = started({b"AT+USOCO=": None})
    s = sock_on(modem)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.ETIMEDOUT
    assert far.commands[-2:] == [b"AT", b"AT+USOCL=0,1"]   # resynced, then closed
    assert events(s) == ["CONNECT", "TIMEOUT"] and modem.links == EMPTY


def test_connect_without_its_urc_in_time_is_etimedout_and_closes_the_socket():
    far, modem = started({b"AT+USOCO=": OK})
    s = sock_on(modem, timeout=0.05)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == "connect to 10.0.0.1:80: no +UUSOCO within 50 ms"
    assert far.commands[-1] == b"AT+USOCL=0,1" and not far.rx and not far.queue
    assert events(s) == ["CONNECT", "TIMEOUT"] and modem.links == EMPTY


def test_nonblocking_connect_is_told_by_the_open_urc():
    far, modem = started({b"AT+USOCO=": OK})
    s = sock_on(modem)
    s.setblocking(False)
    assert oserror(s.connect, ("10.0.0.1", 80)).errno == errno.EINPROGRESS
    assert s.connect_done() is False and s.poll_flags(POLLOUT) == 0
    far.inject(b"\r\n+UUSOCO: 0,0\r\n")
    assert s.connect_done() is True and s.state == "ESTABLISHED"


def test_a_second_connect_waits_for_the_first_ones_outcome():
    far, modem = started({b"AT+USOCO=": OK})
    first = sock_on(modem)
    first.setblocking(False)
    oserror(first.connect, ("10.0.0.1", 80))
    far.replies[b"AT+USOCO="] = usoco(0)
    far.later(b"\r\n+UUSOCO: 0,0\r\n")
    second = sock_on(modem)
    second.connect(("10.0.0.2", 81))
    assert far.commands[-2:] == [b"AT+USOCR=6", b'AT+USOCO=1,"10.0.0.2",81,1']
    assert modem.links[0].open_err == 0 and second.state == "ESTABLISHED"


def test_a_second_connect_while_the_first_is_still_pending_is_eagain():
    far, modem = started({b"AT+USOCO=": OK})
    first = sock_on(modem)
    first.setblocking(False)
    oserror(first.connect, ("10.0.0.1", 80))
    n = len(far.commands)
    second = sock_on(modem, timeout=0.05)
    e = oserror(second.connect, ("10.0.0.2", 81))
    assert e.errno == errno.EAGAIN
    assert e.args[1] == ("another connect is still pending on the modem (the SARA-R4 "
                         "takes one at a time)")
    assert far.commands[n:] == [b"AT+CGEREP?"] and events(second) == []


def test_all_seven_sockets_taken_is_enobufs_without_asking_for_one():
    far, modem = started()
    for i in range(sara_r4.SOCKETS):
        sock_on(modem).connect(("10.0.0.1", 80 + i))
    n = len(far.commands)
    e = oserror(sock_on(modem).connect, ("10.0.0.1", 99))
    assert e.errno == errno.ENOBUFS and e.args[1] == "all 7 modem sockets are in use"
    assert far.commands[n:] == [b"AT+CGEREP?"]


def test_a_socket_reset_by_the_network_is_closed_on_the_modem_and_reused():
    far, modem = started()
    socks = [sock_on(modem) for _ in range(sara_r4.SOCKETS)]
    for s in socks:
        s.connect(("10.0.0.1", 80))
    socks[3].tcp.fire(tcp.RESET)        # as a keepalive timeout would leave it
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert far.commands[-3:] == [b"AT+USOCL=3,1", b"AT+USOCR=6", b'AT+USOCO=3,"10.0.0.1",80,1']
    assert modem.links[3].tcp is s.tcp


# -- send: AT+USOWR, "@", the bytes --------------------------------------------------------
def test_send_writes_the_payload_after_the_prompt_and_returns_what_the_modem_took():
    far, modem, s = connected()
    data = b'bin\r\n"@\x00\xff'
    assert s.send(data) == len(data)
    assert far.commands[-1] == b"AT+USOWR=0,%d" % len(data)
    assert far.payloads == [data]


def test_send_takes_at_most_1024_bytes_a_time():
    far, modem, s = connected()
    assert s.send(bytes(3000)) == 1024
    assert far.commands[-1] == b"AT+USOWR=0,1024" and far.payloads == [bytes(1024)]


def test_send_of_a_part_returns_the_part():
    far, modem, s = connected({b"AT+USOWR=": usowr(accepted=300)})
    assert s.send(bytes(1000)) == 300


def test_send_the_modem_refuses_is_a_reset():
    far, modem, s = connected({b"AT+USOWR=": b"\r\n+CME ERROR: 3\r\n"})
    e = oserror(s.send, b"x")
    assert e.errno == errno.ECONNRESET
    assert e.args[1] == "socket 0: AT+USOWR=0,1 -> +CME ERROR: 3 (operation not allowed)"
    assert far.payloads == [] and far.tx == bytearray()


@pytest.mark.parametrize("timeout, ms", [(None, 120000), (30, 30000), (1, 5000), (0, 5000)])
def test_send_without_a_prompt_times_out_within_the_sockets_timeout(fast_clock, timeout, ms):
    far, modem, s = connected({b"AT+USOWR=": None})
    s.settimeout(timeout)
    e = oserror(s.send, b"x")
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == ("socket 0: AT+USOWR=0,1: no answer within %d ms "
                         "(no '>' prompt)" % ms)
    assert modem.at.needs_resync


def test_send_refused_after_an_unannounced_reboot_counts_the_reboot():
    far, modem, s = connected({b"AT+USOWR=": b"\r\nERROR\r\n"})
    far.replies[b"AT+CGEREP?"] = CGEREP_OFF
    assert oserror(s.send, b"x").errno == errno.ECONNRESET
    assert far.commands[-2:] == [b"AT+USOWR=0,1", b"AT+CGEREP?"]
    assert modem.reboots == 1 and not modem.net_open and s.state == "CLOSED"


@pytest.mark.parametrize("line", [b"+USOWR: 1,5", b"+USOWR: 0,6", b"+USOWR: 0",
                                  b"+USOWR: 0,X"])
def test_send_confirmed_with_other_numbers_is_eio(line):
    far, modem, s = connected({b"AT+USOWR=": lambda cmd: Prompted(
        b"\r\n@", 5, lambda p: b"\r\n" + line + b"\r\n" + OK)})
    e = oserror(s.send, b"hello")
    assert e.errno == errno.EIO
    assert e.args[1] == "socket 0: AT+USOWR of 5 bytes confirmed as [%r]" % line


def test_send_the_modem_takes_nothing_of_is_eagain_when_nonblocking():
    far, modem, s = connected({b"AT+USOWR=": usowr(accepted=0)})
    s.setblocking(False)
    e = oserror(s.send, b"abc")
    assert e.errno == errno.EAGAIN and e.args[1] == "socket 0: the modem took no bytes"
    s.settimeout(1)
    assert s.send(b"abc") == 0


def test_send_after_the_peer_closed_is_enotconn_without_a_command():
    far, modem, s = connected()
    urc(far, modem, b"+UUSOCL: 0")
    n = len(far.commands)
    assert oserror(s.send, b"x").errno == errno.ENOTCONN
    assert far.commands[n:] == []


# -- reads: AT+USORD in binary mode, the bytes between quotes on the reply line -----------
def test_recv_reads_the_raw_bytes_between_the_quotes():
    data = b'a"b\r\nOK\r\n"\r\n+UUSOCL: 0\r\nc,\x00\xff"'
    far, modem, s = connected({b"AT+USORD=": usord(data)})
    urc(far, modem, b"+UUSORD: 0,%d" % len(data))
    assert read(modem, s, 64) == data
    assert far.commands[-1] == b"AT+USORD=0,64"
    assert not modem.links[0].rx_pending and s.state == "ESTABLISHED"
    assert modem.at.engine.unexpected == 0 and not modem.at.needs_resync


def test_the_modem_is_configured_for_binary_reads():
    far = Far()
    modem_on(far).start(register_timeout_ms=100)
    assert b"AT+UDCONF=1,0" in far.commands and b"AT+UDCONF=1,1" not in far.commands


def test_recv_asks_for_at_most_1024_bytes_and_expects_more_after_a_full_read():
    data = bytes(range(256)) * 5
    far, modem, s = connected({b"AT+USORD=": usord(data)})
    buf = bytearray(4096)
    assert s.recv_into(buf) == 1024 and buf[:1024] == data[:1024]
    assert far.commands[-1] == b"AT+USORD=0,1024"
    assert modem.links[0].rx_pending


def test_a_read_of_zero_bytes_in_either_form_is_nothing_there():
    for answer in (b'\r\n+USORD: 0,""\r\n' + OK, b'\r\n+USORD: 0,0,""\r\n' + OK):
        far, modem, s = connected({b"AT+USORD=": answer})
        n = len(far.commands)
        assert oserror(read, modem, s, 10, 0).errno == errno.EAGAIN
        assert far.commands[n:] == [b"AT+USORD=0,10"] and not modem.at.needs_resync


def test_a_data_urc_during_the_read_keeps_the_socket_readable():
    far, modem, s = connected({b"AT+USORD=": lambda line: b"\r\n+UUSORD: 0,9\r\n"
                               + usord(b"ab")(line)})
    assert read(modem, s, 64) == b"ab"
    assert modem.links[0].rx_pending


def test_recv_with_no_data_waits_then_times_out():
    far, modem, s = connected({b"AT+USORD=": usord(b"")})
    e = oserror(read, modem, s, 10, 50)
    assert e.errno == errno.ETIMEDOUT and e.args[1] == "no data on socket 0"
    assert far.commands.count(b"AT+USORD=0,10") >= 2   # polled again meanwhile


def test_nonblocking_recv_with_no_data_is_eagain_after_one_read():
    far, modem, s = connected({b"AT+USORD=": usord(b"")})
    n = len(far.commands)
    assert oserror(read, modem, s, 10, 0).errno == errno.EAGAIN
    assert far.commands[n:] == [b"AT+USORD=0,10"]


@pytest.mark.parametrize("reply, header, followed", [
    (b'+USORD: 1,2,"hi"', b"+USORD: 1,2", "2"),           # another socket
    (b'+USORD: 0,11,"' + bytes(11) + b'"', b"+USORD: 0,11", "11"),   # more than asked
    (b'+USORD: 0,2,"hi!"', b"+USORD: 0,2", "no"),        # a byte gained: no closing quote
    (b'+USORD: 0,2,"6869"', b"+USORD: 0,2", "no"),       # HEX mode, on behind our back
    (b'+USORD: 0,X,"hi"', None, "no"),                    # the length not a number
    (b'+USORD: 0,2000,"hi"', None, "no"),                 # more than the parser holds
    (b"+USORD: 0,2", b"+USORD: 0,2", "no"),               # no bytes at all
    (b"+USORD: 0", b"+USORD: 0", "no"),
    (b'+USORD: 1,""', b'+USORD: 1,""', "no"),             # nothing, of another socket
    (b'+USORD: 0,"x"', b'+USORD: 0,"x"', "no")])
def test_a_read_that_does_not_add_up_is_eio_and_resyncs(reply, header, followed):
    far, modem, s = connected({b"AT+USORD=": b"\r\n" + reply + b"\r\n" + OK})
    e = oserror(read, modem, s, 10)
    assert e.errno == errno.EIO
    assert e.args[1] == ("socket 0: bad +USORD reply (asked 10 bytes; header %r, %s bytes "
                         "followed); data may be lost" % ([header] if header else [], followed))
    assert modem.links[0].rx_pending and s.state == "ESTABLISHED"
    # resynced, then asked whether +CGEV reporting is still on (it is: not a reboot)
    assert far.commands[-3:] == [b"AT+USORD=0,10", b"AT", b"AT+CGEREP?"]
    assert modem.reboots == 0
    far.replies[b"AT+USORD="] = usord(b'"ok"\r\n')
    assert read(modem, s, 10) == b'"ok"\r\n'      # the socket stays usable


def test_a_read_without_its_line_is_eio():
    far, modem, s = connected({b"AT+USORD=": OK})
    assert oserror(read, modem, s, 10).errno == errno.EIO


def test_a_garbled_read_after_an_unannounced_reboot_finds_the_reboot():
    far, modem, s = connected({b"AT+USORD=": b'\r\n+USORD: 0,2,"hi!"\r\n' + OK})
    far.replies[b"AT+CGEREP?"] = CGEREP_OFF
    e = oserror(read, modem, s, 10)
    assert e.errno == errno.ECONNRESET and e.args[1] == "socket 0: the modem rebooted"
    assert modem.reboots == 1 and not modem.net_open
    assert s.state == "CLOSED" and events(s)[-1] == "RESET"


def test_recv_on_a_socket_the_modem_no_longer_has_is_econnreset():
    far, modem, s = connected({b"AT+USORD=": b"\r\n+CME ERROR: 3\r\n"})
    e = oserror(s.recv, 10)
    assert e.errno == errno.ECONNRESET and e.args[1] == "connection reset (socket 0)"
    assert far.commands[-2:] == [b"AT+USORD=0,512", b"AT+CGEREP?"]
    assert modem.reboots == 0 and events(s)[-1] == "RESET"


def test_recv_on_a_socket_lost_in_a_reboot_counts_the_reboot():
    far, modem, s = connected({b"AT+USORD=": b"\r\nERROR\r\n"})
    far.replies[b"AT+CGEREP?"] = CGEREP_OFF
    assert oserror(s.recv, 10).errno == errno.ECONNRESET
    assert modem.reboots == 1 and not modem.net_open


def test_recv_cut_short_times_out_and_marks_the_socket_readable(fast_clock):
    far, modem, s = connected({b"AT+USORD=": b'\r\n+USORD: 0,10,"hel'})
    e = oserror(read, modem, s, 64)
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == ("socket 0: AT+USORD=0,64: no answer within 5000 ms (payload cut "
                         "short, 3 bytes buffered)")
    assert modem.links[0].rx_pending and modem.at.needs_resync


def test_peer_close_with_data_buffered_reads_the_rest_then_eof():
    # +UUSOCL comes only once the data is read (AT manual)
    data = [b"last"]
    far, modem, s = connected({b"AT+USORD=": lambda line: usord(
        data.pop(0) if data else b"")(line)})
    urc(far, modem, b"+UUSORD: 0,4")
    assert s.poll_flags(POLLIN) == POLLIN
    assert s.recv(10) == b"last"
    far.later(b"\r\n+UUSOCL: 0\r\n")
    s.settimeout(1)
    assert s.recv(10) == b""                    # the URC arrived while waiting: EOF
    assert s.state == "CLOSE_WAIT"
    assert s.poll_flags(POLLIN | POLLOUT) == POLLIN | POLLHUP


@pytest.mark.parametrize("answer", [b"\r\n+USOCTL: 0,1,0\r\n" + OK, b"\r\n+CME ERROR: 3\r\n",
                                    b"\r\n+USOCTL: 1,1,110\r\n" + OK,
                                    b"\r\n+USOCTL: 0,10,110\r\n" + OK,
                                    b"\r\n+USOCTL: 0,1\r\n" + OK])
def test_end_of_stream_after_a_clean_close_or_an_unclear_answer_is_eof(answer):
    far, modem, s = connected({b"AT+USORD=": usord(b""), b"AT+USOCTL=": answer})
    urc(far, modem, b"+UUSOCL: 0")
    assert s.recv(10) == b""
    assert far.commands[-2:] == [b"AT+USORD=0,512", b"AT+USOCTL=0,1"]
    assert s.state == "CLOSE_WAIT"


@pytest.mark.parametrize("err, code, event, text", [
    (110, errno.ETIMEDOUT, "TIMEOUT", "connection timed out"),
    (104, errno.ECONNRESET, "RESET", "connection reset"),
    (5, errno.ECONNRESET, "RESET", "error")])
def test_a_socket_that_ended_by_an_error_says_so_instead_of_eof(err, code, event, text):
    far, modem, s = connected({b"AT+USORD=": usord(b""),
                               b"AT+USOCTL=": b"\r\n+USOCTL: 0,1,%d\r\n" % err + OK})
    urc(far, modem, b"+UUSOCL: 0")
    e = oserror(s.recv, 10)
    assert e.errno == code and e.args[1] == "socket 0 ended by error %d (%s)" % (err, text)
    assert events(s)[-2:] == ["PEER_FIN", event] and s.state == "CLOSED"
    assert oserror(s.recv, 10).errno == code       # and so it stays
    s.close()
    assert far.commands[-1] == b"AT+USOCL=0,1"


def test_recv_after_the_network_reset_the_socket_is_econnreset():
    far, modem, s = connected()
    urc(far, modem, b"+CGEV: NW DETACH")
    e = oserror(s.recv, 10)
    assert e.errno == errno.ECONNRESET


# -- close: AT+USOCL=<s>,1 and +UUSOCL -----------------------------------------------------
def test_close_waits_for_its_urc_and_completes_the_active_close():
    far, modem, s = connected()
    s.close()
    assert far.commands[-1] == b"AT+USOCL=0,1" and not far.rx and not far.queue
    assert s.tcp.states() == ACTIVE_CLOSE and modem.links == EMPTY


def test_close_whose_urc_comes_later_waits_for_it():
    far, modem, s = connected()
    far.replies[b"AT+USOCL="] = lambda line: far.later(b"\r\n+UUSOCL: 0\r\n") or OK
    s.close()
    assert not far.queue and s.tcp.states() == ACTIVE_CLOSE


def test_close_after_the_peer_closed_and_the_modem_freed_the_socket():
    far, modem, s = connected()
    urc(far, modem, b"+UUSOCL: 0")
    far.sockets.clear()                         # AT+USOCL: +CME ERROR: 3
    s.close()
    assert s.tcp.states() == PASSIVE_CLOSE and modem.links == EMPTY


def test_close_the_modem_never_confirms_gives_the_socket_up(fast_clock):
    far, modem, s = connected({b"AT+USOCL=": OK})
    t0 = fast_clock.now
    s.close()
    assert 135000 <= fast_clock.now - t0 < 140000
    assert events(s)[-2:] == ["CLOSE", "TIMEOUT"] and modem.links == EMPTY


def test_close_unanswered_gives_the_socket_up(fast_clock):
    far, modem, s = connected({b"AT+USOCL=": None})
    s.close()
    assert events(s)[-1] == "TIMEOUT" and s.state == "CLOSED" and modem.links == EMPTY


def test_a_close_urc_of_another_socket_during_our_close_is_that_ones_peer_close():
    far, modem, s = connected()
    s2 = sock_on(modem)
    s2.connect(("10.0.0.2", 81))
    far.replies[b"AT+USOCL="] = lambda line: b"\r\n+UUSOCL: 1\r\n" + far.usocl(line)
    s.close()
    assert s.tcp.states() == ACTIVE_CLOSE
    assert events(s2)[-1] == "PEER_FIN" and s2.state == "CLOSE_WAIT"


# -- the bearer reopened by a connect ------------------------------------------------------
def lose_network(far, modem):
    urc(far, modem, b"+CGEV: NW PDN DEACT 1")
    assert not modem.net_open


def test_connect_reopens_a_bearer_the_network_dropped():
    far, modem = started()
    lose_network(far, modem)
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert far.commands == [b"AT+CGEREP?", b"AT+CEREG?", b"AT+CGATT=1", b"AT+CGACT=1,1",
                            b"AT+CGACT?", b"AT+USOCR=6", b'AT+USOCO=0,"10.0.0.1",80,1']
    assert modem.net_open and modem.bearer_reopens == 1
    assert events(s) == ["BEARER_UP", "CONNECT", "CONNECTED"]
    s2 = sock_on(modem)
    s2.connect(("10.0.0.1", 81))
    assert modem.bearer_reopens == 1 and events(s2) == ["CONNECT", "CONNECTED"]


def test_a_reopen_the_network_refuses_is_ehostunreach_after_its_attempts():
    far, modem = started()
    modem.reopen_backoff_ms = 5
    lose_network(far, modem)
    far.replies[b"AT+CGACT=1,1"] = b"\r\n+CME ERROR: 148\r\n"
    s = sock_on(modem)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.EHOSTUNREACH
    assert "(3 attempts): packet data context failed: AT+CGACT=1,1" in e.args[1]
    assert events(s) == ["BEARER_FAILED"] * 3 and modem.links == EMPTY
    assert b"AT+USOCR=6" not in far.commands


def test_an_open_error_saying_the_network_is_down_makes_the_next_connect_reopen():
    far, modem = started({b"AT+USOCO=": usoco(100)})
    oserror(sock_on(modem).connect, ("10.0.0.1", 80))
    far.replies[b"AT+USOCO="] = usoco(0)
    far.commands.clear()
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert far.commands[1:3] == [b"AT+CEREG?", b"AT+CGATT=1"]
    assert events(s) == ["BEARER_UP", "CONNECT", "CONNECTED"]


def test_a_connect_finds_an_unannounced_reboot_and_brings_the_modem_up_again():
    far, modem, s = connected()
    far.replies[b"AT+CGEREP?"] = CGEREP_OFF   # settings lost
    far.commands.clear()
    s2 = sock_on(modem)
    far.replies[b"AT+CGEREP=1"] = lambda line: far.replies.__setitem__(
        b"AT+CGEREP?", CGEREP_ON) or OK
    s2.connect(("10.0.0.1", 80))
    assert modem.reboots == 1 and s.state == "CLOSED" and events(s)[-1] == "RESET"
    assert far.commands[0] == b"AT+CGEREP?"
    assert far.commands[1:1 + len(START_COMMANDS)] == START_COMMANDS
    assert events(s2) == ["BEARER_UP", "CONNECT", "CONNECTED"]


def test_is_up_finds_an_unannounced_reboot():
    # the supervisor's periodic check is where a reboot with no URC is noticed
    far, modem, s = connected()
    far.replies[b"AT+CGEREP?"] = CGEREP_ON
    assert modem.is_up() and modem.reboots == 0
    far.replies[b"AT+CGEREP?"] = CGEREP_OFF   # settings lost
    assert not modem.is_up()
    assert modem.reboots == 1 and s.state == "CLOSED" and events(s)[-1] == "RESET"


@pytest.mark.parametrize("answer", [b"\r\n+CGEREP: X,0\r\n" + OK, OK, b"\r\nERROR\r\n",
                                    b"\r\n+CGEREP: 2,0\r\n" + OK])
def test_a_cgerep_answer_that_does_not_say_off_is_no_reboot(answer):
    far, modem, s = connected()
    far.replies[b"AT+CGEREP?"] = answer
    assert modem.is_up() and modem.reboots == 0 and s.state == "ESTABLISHED"
