"""The SIM7600 driver (firmware/synack/modems/sim7600.py) against a scripted modem that
answers as the SIMCom AT manual says, in-process and without a pty, so each case runs in
milliseconds: the bring-up sequence and its failures, every URC and what it records,
connect outcomes (+CIPOPEN codes, the modem's keepalive, link numbers), sends and their
+CIPSEND confirmation, reads, readiness for poll, close, and the bearer reopened by a
connect after the network dropped it. The TCP lifecycle is checked on the socket's own
event log, the errors by errno and message."""

import errno

import pytest

from synack import socket as synsocket
from synack import tcp
from synack.at import driver as at_driver
from synack.at import engine as at_engine
from synack.at.errors import CommandError, CommandTimeout
from synack.modems import base, cellular, links, sim7600

import farmodem
from farmodem import (OK, POLLERR, POLLHUP, POLLIN, POLLOUT, Clock, arg, events,
                      on_one_clock, oserror, prompted, read, sock_on)


def cipsend(accepted=None, urc=True):
    """AT+CIPSEND=<link>,<size>: ``>``, the payload, OK, then +CIPSEND: <link>,<size>,
    <accepted> (all of it unless ``accepted`` says otherwise; -1: the send failed)."""
    def answer(link, size):
        sent = size if accepted is None else accepted
        return OK + (b"\r\n+CIPSEND: %d,%d,%d\r\n" % (link, size, sent) if urc else b"")
    return prompted(b"\r\n>", answer)


def rxget(data, rest=0):
    def reply(line):
        link = int(line.split(b",")[1])
        return (b"\r\n+CIPRXGET: 2,%d,%d,%d\r\n" % (link, len(data), rest) + data
                + b"\r\nOK\r\n")
    return reply


def cipopen(err=0):
    return lambda line: OK + b"\r\n+CIPOPEN: %d,%d\r\n" % (arg(line, 0), err)


def cipclose(err=0):
    return lambda line: OK + b"\r\n+CIPCLOSE: %d,%d\r\n" % (arg(line, 0), err)


BRING_UP = {
    **farmodem.READY,
    b'AT+CGDCONT=1,"IP","internet"': OK,
    b"AT+CIPMODE=0": OK, b"AT+CIPRXGET=1": OK,
    b"AT+NETOPEN": OK + b"\r\n+NETOPEN: 0\r\n",
    b"AT+CIPOPEN=": cipopen(0),
    b"AT+CIPCLOSE=": cipclose(0),
    b"AT+CIPSEND=": cipsend(),
}
START_COMMANDS = farmodem.START + [b'AT+CGDCONT=1,"IP","internet"', b"AT+CIPMODE=0",
                                   b"AT+CIPRXGET=1", b"AT+NETOPEN"]


class Far(farmodem.Far):
    """The SIM7600's far end: BRING_UP answered unless a case says otherwise."""

    DEFAULTS = BRING_UP


fast_clock = farmodem.clock_fixture()
modem_on, started, connected = farmodem.helpers(Far, sim7600.SIM7600)


# -- bring-up ---------------------------------------------------------------------------
def test_start_brings_the_modem_up_in_the_manuals_order():
    far = Far()
    modem = modem_on(far)
    assert not modem.net_open and modem.rssi_dbm is None and modem.reboots == 0
    modem.start(register_timeout_ms=100)
    assert far.commands == START_COMMANDS
    assert modem.net_open
    assert modem.rssi_dbm == -73
    assert modem.bearer_reopens == 0


def test_start_enters_the_pin_when_the_sim_asks_for_it():
    far = Far({b"AT+CPIN?": b"\r\n+CPIN: SIM PIN\r\n" + OK, b'AT+CPIN="1234"': OK})
    modem = sim7600.SIM7600(far, apn="internet", pin="1234", poll_ms=5)
    far.replies[b'AT+CPIN="1234"'] = lambda line: (
        far.replies.__setitem__(b"AT+CPIN?", b"\r\n+CPIN: READY\r\n" + OK) or OK)
    modem.start(register_timeout_ms=100)
    assert b'AT+CPIN="1234"' in far.commands
    assert modem.net_open


def test_netopen_confirmed_later_by_its_urc():
    far = Far({b"AT+NETOPEN": OK})
    far.later(b"\r\n+NETOPEN: 0\r\n")
    modem = modem_on(far)
    modem.start(register_timeout_ms=100)
    assert modem.net_open


def test_netopen_already_opened_counts_as_open():
    far = Far({b"AT+NETOPEN": b"\r\n+IP ERROR: Network is already opened\r\n\r\nERROR\r\n"})
    modem = modem_on(far)
    modem.start(register_timeout_ms=100)
    assert modem.net_open


def test_netopen_rejected_is_a_pdp_error_with_the_modems_words():
    far = Far({b"AT+NETOPEN": b"\r\n+IP ERROR: no APN\r\n\r\nERROR\r\n"})
    modem = modem_on(far)
    with pytest.raises(base.PDPError) as exc:
        modem.start(register_timeout_ms=100)
    assert str(exc.value) == "AT+NETOPEN failed: AT+NETOPEN -> ERROR; +IP ERROR: no APN"
    assert not modem.net_open


def test_netopen_failure_code_names_the_apn():
    far = Far({b"AT+NETOPEN": OK + b"\r\n+NETOPEN: 1\r\n"})
    modem = modem_on(far)
    with pytest.raises(base.PDPError) as exc:
        modem.start(register_timeout_ms=100)
    assert str(exc.value) == ("packet data context failed: +NETOPEN: 1 (check the APN "
                              "'internet' and the data plan)")
    assert not modem.net_open


def test_netopen_without_its_urc_gives_up_after_75_s(fast_clock):
    far = Far({b"AT+NETOPEN": OK})
    modem = modem_on(far)
    t0 = fast_clock.now
    with pytest.raises(base.PDPError) as exc:
        modem.bearer_open()
    assert str(exc.value) == "no +NETOPEN within 75 s"
    assert 75000 <= fast_clock.now - t0 < 80000
    assert not modem.net_open


def test_netopen_urc_of_an_earlier_attempt_is_not_taken_for_this_one():
    # the first NETOPEN failed (+NETOPEN: 1); the next one must wait for its own answer
    far = Far({b"AT+NETOPEN": OK + b"\r\n+NETOPEN: 1\r\n"})
    modem = modem_on(far)
    with pytest.raises(base.PDPError):
        modem.bearer_open()
    far.replies[b"AT+NETOPEN"] = OK
    far.later(b"\r\n+NETOPEN: 0\r\n")
    modem.bearer_open()
    assert modem.net_open


def test_bring_up_errors_stop_start():
    far = Far({b"AT+CEREG?": b"\r\n+CEREG: 0,3\r\n" + OK,
               b"AT+CREG?": b"\r\n+CREG: 0,3\r\n" + OK})
    with pytest.raises(base.RegistrationDenied):
        modem_on(far).start(register_timeout_ms=100)
    assert b"AT+NETOPEN" not in far.commands


def test_replies_without_a_space_after_the_colon_read_the_same():
    far = Far({b"AT+CPIN?": b"\r\n+CPIN:READY\r\n" + OK, b"AT+CSQ": b"\r\n+CSQ:20,99\r\n" + OK,
               b"AT+CEREG?": b"\r\n+CEREG:0,1\r\n" + OK})
    modem = modem_on(far)
    modem.start(register_timeout_ms=100)
    assert modem.rssi_dbm == -73 and modem.net_open


def test_signal_is_read_from_its_own_line_only():
    far = Far({b"AT+CSQ": b"\r\n+CPSI: LTE,Online\r\n\r\n+CSQ: 31,99\r\n" + OK})
    modem = modem_on(far)
    modem.start(register_timeout_ms=100)
    assert modem.rssi_dbm == -51


def test_registered_in_the_eps_domain_alone_is_registered():
    far = Far({b"AT+CEREG?": b"\r\n+CEREG: 0,1\r\n" + OK, b"AT+CREG?": b"\r\n+CREG: 0,0\r\n" + OK})
    modem = modem_on(far)
    modem.start(register_timeout_ms=100)
    assert modem.net_open and b"AT+CREG?" not in far.commands


# -- URCs: what each records --------------------------------------------------------------
def test_informational_urcs_are_consumed_quietly():
    far, modem = started()
    urcs = modem.at.engine.urcs
    for urc in (b"+CPIN: READY", b"SMS DONE", b"PB DONE", b"+CREG: 1", b"+CGREG: 1",
                b"+CEREG: 1"):
        far.inject(b"\r\n" + urc + b"\r\n")
    modem.at.poll(0)
    assert modem.at.engine.unexpected == 0 and modem.at.engine.malformed == 0
    assert modem.at.engine.urcs == urcs + 6
    assert modem.net_open and modem.reboots == 0


def test_data_urc_marks_only_its_link_readable():
    far, modem, s = connected()
    s2 = sock_on(modem)
    s2.connect(("10.0.0.2", 81))
    far.inject(b"\r\n+CIPRXGET: 1,1\r\n")
    modem.at.poll(0)
    assert modem.links[1].rx_pending and not modem.links[0].rx_pending
    far.inject(b"\r\n+CIPRXGET: 1,9\r\n\r\n+CIPRXGET: 1,10\r\n")  # no such socket
    modem.at.poll(0)
    assert modem.at.engine.malformed == 0


@pytest.mark.parametrize("reason, event, state", [
    (b"1", "PEER_FIN", "CLOSE_WAIT"), (b"2", "TIMEOUT", "CLOSED"),
    (b"0", "RESET", "CLOSED"), (b"", "RESET", "CLOSED")])
def test_ipclose_reason_is_the_tcp_event(reason, event, state):
    far, modem, s = connected()
    far.inject(b"\r\n+IPCLOSE: 0" + (b"," + reason if reason else b"") + b"\r\n")
    modem.at.poll(0)
    assert modem.links[0].peer_closed
    assert events(s)[-1] == event
    assert s.state == state


def test_ipclose_of_another_or_no_link_changes_nothing():
    far, modem, s = connected()
    for urc in (b"+IPCLOSE: 1,1", b"+IPCLOSE: 10,1", b"+IPCLOSE: -1,1"):
        far.inject(b"\r\n" + urc + b"\r\n")
    modem.at.poll(0)
    assert s.state == "ESTABLISHED" and not modem.links[0].peer_closed
    assert modem.at.engine.malformed == 0


def test_ipclose_in_the_same_read_as_cipopen_closes_after_the_handshake():
    far = Far({b"AT+CIPOPEN=": OK + b"\r\n+CIPOPEN: 0,0\r\n\r\n+IPCLOSE: 0,1\r\n"})
    modem = modem_on(far)
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert events(s) == ["CONNECT", "CONNECTED", "PEER_FIN"]
    assert s.state == "CLOSE_WAIT"


def test_ipclose_after_the_socket_closed_is_ignored():
    far, modem, s = connected({b"AT+CIPCLOSE=": OK})   # +CIPCLOSE never comes
    s.settimeout(0.05)
    link = modem.links[0]
    s.tcp.fire(tcp.CLOSE)
    far.inject(b"\r\n+IPCLOSE: 0,1\r\n")   # FIN_WAIT_1 accepts PEER_FIN
    modem.at.poll(0)
    assert link.peer_closed and s.state == "CLOSING"
    s.tcp.fire(tcp.FIN_ACKED)
    s.tcp.fire(tcp.TIME_WAIT_DONE)
    far.inject(b"\r\n+IPCLOSE: 0,1\r\n")   # CLOSED accepts nothing: no error
    modem.at.poll(0)
    assert s.state == "CLOSED" and modem.at.engine.malformed == 0


def test_cipopen_urc_records_the_error_of_its_link_only():
    far, modem = started({b"AT+CIPOPEN=": OK})
    s = sock_on(modem)
    s.setblocking(False)
    with pytest.raises(OSError):
        s.connect(("10.0.0.1", 80))
    far.inject(b"\r\n+CIPOPEN: 1,0\r\n\r\n+CIPOPEN: 0\r\n\r\n+CIPOPEN: 12,0\r\n")
    modem.at.poll(0)
    assert modem.links[0].open_err is None
    far.inject(b"\r\n+CIPOPEN: 0,4\r\n")
    modem.at.poll(0)
    assert modem.links[0].open_err == 4


def test_cipclose_urc_records_only_the_two_value_form():
    far, modem, s = connected()
    link = modem.links[0]
    far.inject(b"\r\n+CIPCLOSE: 0,1,0,0,0,0,0,0,0,0\r\n")   # the query's form
    far.inject(b"\r\n+CIPCLOSE: 10,0\r\n\r\n+CIPCLOSE: 1,0\r\n\r\n+CIPCLOSE: 0\r\n")
    modem.at.poll(0)
    assert link.close_err is None
    far.inject(b"\r\n+CIPCLOSE: 0,2\r\n")
    modem.at.poll(0)
    assert link.close_err == 2
    assert modem.at.engine.malformed == 0


def test_cipsend_urc_records_the_count_of_the_three_value_form_only():
    far, modem, s = connected()
    link = modem.links[0]
    far.inject(b"\r\n+CIPSEND: 0,5\r\n\r\n+CIPSEND: 1,5,5\r\n\r\n+CIPSEND: 0,5,5,5\r\n")
    modem.at.poll(0)
    assert link.sent is None
    far.inject(b"\r\n+CIPSEND: 0,5,3\r\n")
    modem.at.poll(0)
    assert link.sent == 3


@pytest.mark.parametrize("urc", [b"+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY", b"+NETCLOSE: 0"])
def test_network_lost_resets_every_link(urc):
    far, modem, s = connected()
    s2 = sock_on(modem)
    s2.connect(("10.0.0.2", 81))
    far.inject(b"\r\n" + urc + b"\r\n")
    modem.at.poll(0)
    assert not modem.net_open
    for sock, n in ((s, 0), (s2, 1)):
        assert sock.state == "CLOSED" and events(sock)[-1] == "RESET"
        assert modem.links[n].peer_closed
    assert modem.reboots == 0


def test_network_lost_leaves_a_closed_link_alone():
    far, modem, s = connected()
    far.inject(b"\r\n+IPCLOSE: 0,2\r\n")
    modem.at.poll(0)
    far.inject(b"\r\n+NETCLOSE: 0\r\n")
    modem.at.poll(0)
    assert events(s) == ["CONNECT", "CONNECTED", "TIMEOUT"]
    assert modem.at.engine.malformed == 0


def test_reboot_counts_and_loses_the_network():
    far, modem, s = connected()
    far.inject(b"\r\nRDY\r\n")
    modem.at.poll(0)
    far.inject(b"\r\nRDY\r\n")
    modem.at.poll(0)
    assert modem.reboots == 2
    assert not modem.net_open
    assert s.state == "CLOSED" and events(s)[-1] == "RESET"


# -- DNS ----------------------------------------------------------------------------------
def test_ipv4_literal_resolves_without_asking_the_modem():
    far, modem = started()
    assert modem.getaddrinfo("10.1.2.3", 8080) == [(2, 1, 6, "", ("10.1.2.3", 8080))]
    assert modem.getaddrinfo(b"10.1.2.3", 1) == [(2, 1, 6, "", ("10.1.2.3", 1))]
    assert far.commands == []


def test_name_resolves_with_cdnsgip_to_its_first_address():
    far, modem = started({b"AT+CDNSGIP=": b'\r\n+CDNSGIP: 1,"example.com","93.184.216.34",'
                                          b'"10.0.0.9"\r\n' + OK})
    assert modem.getaddrinfo("example.com", 443) == [(2, 1, 6, "", ("93.184.216.34", 443))]
    assert far.commands == [b'AT+CDNSGIP="example.com"']


def test_dns_reply_lines_of_other_commands_are_not_the_answer():
    far, modem = started({b"AT+CDNSGIP=": b'\r\n+CSQ: 1,"x","1.2.3.4"\r\n'
                                          b'\r\n+CDNSGIP: 1,"example.com","5.6.7.8"\r\n' + OK})
    assert modem.getaddrinfo("example.com", 80)[0][4] == ("5.6.7.8", 80)


def test_dns_failure_is_ehostunreach_naming_the_host():
    far, modem = started({b"AT+CDNSGIP=": b"\r\n+CME ERROR: 10\r\n"})
    e = oserror(modem.getaddrinfo, "nowhere.example", 80)
    assert e.errno == errno.EHOSTUNREACH
    assert str(e.args[1]) == ('DNS lookup of nowhere.example failed: '
                              'AT+CDNSGIP="nowhere.example" -> +CME ERROR: 10 '
                              '(SIM not inserted)')


def test_dns_malformed_reply_is_ehostunreach_quoting_it():
    far, modem = started({b"AT+CDNSGIP=": b'\r\n+CDNSGIP: 0,"x"\r\n' + OK})
    e = oserror(modem.getaddrinfo, "x.example", 80)
    assert e.errno == errno.EHOSTUNREACH
    assert e.args[1] == ("DNS lookup of x.example failed: malformed reply "
                         "[b'+CDNSGIP: 0,\"x\"']")


def test_dns_without_an_answer_times_out_after_30_s(fast_clock):
    far, modem = started({b"AT+CDNSGIP=": None})
    e = oserror(modem.getaddrinfo, "slow.example", 80)
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == ('DNS lookup of slow.example: AT+CDNSGIP="slow.example": '
                         'no answer within 30000 ms')


# -- keepalive in the modem: AT+CTCPKA ----------------------------------------------------
@pytest.mark.parametrize("idle, interval, count, mechanism", [
    (60, 60, 1, "modem"), (7200, 4500, 10, "modem"), (120, 60, 5, "modem"),
    (7260, 60, 5, "probe"), (60, 4560, 5, "probe"), (60, 60, 11, "probe"),
    (90, 60, 5, "probe"), (60, 90, 5, "probe"), (7200, 75, 10, "probe")])
def test_keepalive_in_the_modem_takes_whole_minutes_in_its_ranges(idle, interval, count,
                                                                    mechanism):
    far, modem = started()
    s = sock_on(modem)
    assert s.keepalive(idle, interval, count) == mechanism


def test_modem_keepalive_is_set_before_the_connect_and_only_when_it_changes():
    far, modem = started({b"AT+CTCPKA=": OK})
    for _ in range(2):
        s = sock_on(modem)
        assert s.keepalive(120, 60, 5) == "modem"
        s.connect(("10.0.0.1", 80))
        s.close()
    s = sock_on(modem)
    s.keepalive(60, 120, 3)
    s.connect(("10.0.0.1", 80))
    ctcpka = [c for c in far.commands if c.startswith(b"AT+CTCPKA")]
    assert ctcpka == [b"AT+CTCPKA=1,2,5,1", b"AT+CTCPKA=1,1,3,2"]
    assert far.commands.index(b"AT+CTCPKA=1,2,5,1") < far.commands.index(
        b'AT+CIPOPEN=0,"TCP","10.0.0.1",80')


def test_modem_keepalive_rejected_is_einval_and_sent_again_next_time():
    far, modem = started({b"AT+CTCPKA=": b"\r\n+CME ERROR: 4\r\n"})
    s = sock_on(modem)
    s.keepalive(120, 60, 5)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.EINVAL
    assert e.args[1] == ("modem rejected AT+CTCPKA: AT+CTCPKA=1,2,5,1 -> +CME ERROR: 4 "
                         "(operation not supported)")
    assert s.state == "CLOSED" and modem.links == [None] * sim7600.LINKS
    far.replies[b"AT+CTCPKA="] = OK
    s = sock_on(modem)
    s.keepalive(120, 60, 5)
    s.connect(("10.0.0.1", 80))
    assert far.commands.count(b"AT+CTCPKA=1,2,5,1") == 2


def test_modem_keepalive_unanswered_is_etimedout(fast_clock):
    far, modem = started({b"AT+CTCPKA=": None})
    s = sock_on(modem)
    s.keepalive(120, 60, 5)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == "AT+CTCPKA=1,2,5,1: no answer within 5000 ms"


def test_keepalive_not_in_minutes_cannot_be_set_in_the_modem():
    far, modem = started()
    e = oserror(modem._set_keepalive, sim7600._ka.Keepalive(90, 60, 5))
    assert e.errno == errno.EINVAL
    assert "not expressible in AT+CTCPKA minutes" in e.args[1]
    assert far.commands == []


# -- connect ------------------------------------------------------------------------------
def test_connect_opens_the_first_free_link_and_logs_the_handshake():
    far, modem, s = connected()
    assert far.commands == [b'AT+CIPOPEN=0,"TCP","10.0.0.1",80']
    assert events(s) == ["CONNECT", "CONNECTED"] and s.state == "ESTABLISHED"
    assert modem.links[0].tcp is s.tcp
    s2 = sock_on(modem)
    s2.connect(("10.0.0.2", 65535))
    assert far.commands[-1] == b'AT+CIPOPEN=1,"TCP","10.0.0.2",65535'
    assert modem.links[1].tcp is s2.tcp


@pytest.mark.parametrize("port", [0, 65536, -1, "80", 80.0, None])
def test_connect_to_a_port_out_of_range_is_einval(port):
    far, modem = started()
    e = oserror(sock_on(modem).connect, ("10.0.0.1", port))
    assert e.errno == errno.EINVAL
    assert e.args[1] == "invalid port %r" % (port,)
    assert far.commands == []


def test_connect_to_port_1_is_fine():
    far, modem = started()
    sock_on(modem).connect(("10.0.0.1", 1))
    assert far.commands == [b'AT+CIPOPEN=0,"TCP","10.0.0.1",1']


@pytest.mark.parametrize("err, code, text, last", [
    (1, errno.ECONNREFUSED, "network failure (refused or reset by peer)", "REFUSED"),
    (2, errno.EHOSTUNREACH, "network not opened (AT+NETOPEN)", "TIMEOUT"),
    (3, errno.EINVAL, "wrong parameter", "TIMEOUT"),
    (4, errno.EADDRINUSE, "operation not supported (link in use)", "TIMEOUT"),
    (10, errno.ETIMEDOUT, "timeout", "TIMEOUT"),
    (11, errno.EHOSTUNREACH, "DNS lookup failed", "TIMEOUT"),
    (7, errno.ECONNABORTED, "error", "TIMEOUT")])
def test_cipopen_error_is_the_sockets_error(err, code, text, last):
    far, modem = started({b"AT+CIPOPEN=": cipopen(err)})
    s = sock_on(modem)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == code
    assert e.args[1] == "connect to 10.0.0.1:80 failed: +CIPOPEN: 0,%d (%s)" % (err, text)
    assert events(s) == ["CONNECT", last] and s.state == "CLOSED"
    assert modem.links == [None] * sim7600.LINKS
    assert modem.net_open == (err != 2)   # 2: the bearer is down though no URC said so


def test_connect_rejected_by_the_modem_is_eio_and_frees_the_link():
    far, modem = started({b"AT+CIPOPEN=": b"\r\n+CME ERROR: 3\r\n"})
    s = sock_on(modem)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.EIO
    assert e.args[1] == ('modem rejected the connect: AT+CIPOPEN=0,"TCP","10.0.0.1",80 -> '
                         '+CME ERROR: 3 (operation not allowed)')
    assert events(s) == ["CONNECT", "RESET"]
    assert modem.links == [None] * sim7600.LINKS
    assert s.poll_flags(POLLIN) == POLLHUP   # no handle left


def test_connect_unanswered_closes_the_link_it_may_have_opened(fast_clock):
    far, modem = started({b"AT+CIPOPEN=": None})
    s = sock_on(modem)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == ('connect: AT+CIPOPEN=0,"TCP","10.0.0.1",80: no answer within '
                         '5000 ms')
    assert far.commands[-2:] == [b"AT", b"AT+CIPCLOSE=0"]   # resynced, then closed
    assert events(s) == ["CONNECT", "TIMEOUT"]
    assert modem.links == [None] * sim7600.LINKS


def test_connect_without_cipopen_in_time_is_etimedout_and_closes_the_link():
    far, modem = started({b"AT+CIPOPEN=": OK})
    s = sock_on(modem, timeout=0.05)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == "connect to 10.0.0.1:80: no +CIPOPEN within 50 ms"
    assert far.commands[-1] == b"AT+CIPCLOSE=0"
    assert events(s) == ["CONNECT", "TIMEOUT"]
    assert modem.links == [None] * sim7600.LINKS


def test_abort_waits_for_the_modem_to_free_the_link_number():
    far, modem = started({b"AT+CIPOPEN=": OK})
    far.replies[b"AT+CIPCLOSE="] = lambda line: far.later(b"\r\n+CIPCLOSE: 0,0\r\n") or OK
    s = sock_on(modem, timeout=0.05)
    oserror(s.connect, ("10.0.0.1", 80))
    assert not far.queue and not far.rx     # the +CIPCLOSE was waited for and taken


def test_abort_of_a_link_the_modem_does_not_close_gives_up(fast_clock):
    far, modem = started({b"AT+CIPOPEN=": OK, b"AT+CIPCLOSE=": None})
    s = sock_on(modem, timeout=1)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.ETIMEDOUT
    assert modem.links == [None] * sim7600.LINKS
    assert events(s) == ["CONNECT", "TIMEOUT"]


def test_nonblocking_connect_is_told_by_the_cipopen_urc():
    far, modem = started({b"AT+CIPOPEN=": OK})
    s = sock_on(modem)
    s.setblocking(False)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.EINPROGRESS
    assert s.connect_done() is False
    assert s.poll_flags(POLLOUT) == 0
    far.inject(b"\r\n+CIPOPEN: 0,0\r\n")
    assert s.connect_done() is True
    assert s.state == "ESTABLISHED"


def test_network_lost_during_a_connect_is_econnreset():
    far, modem = started({b"AT+CIPOPEN=": OK})
    s = sock_on(modem)
    s.setblocking(False)
    oserror(s.connect, ("10.0.0.1", 80))
    far.inject(b"\r\n+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY\r\n")
    modem.at.poll(0)
    e = oserror(s.connect_done)
    assert e.errno == errno.ECONNRESET
    assert e.args[1] == "connect to 10.0.0.1:80: the network went away"
    assert modem.links == [None] * sim7600.LINKS


def test_connect_waits_for_cipopen_up_to_the_modems_limit_without_a_timeout(fast_clock):
    far, modem = started({b"AT+CIPOPEN=": OK})
    s = synsocket.socket(backend=modem)     # blocking, no timeout: the modem's 130 s
    t0 = fast_clock.now
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == "connect to 10.0.0.1:80: no +CIPOPEN within 130000 ms"
    assert 130000 <= fast_clock.now - t0 < 140000


def test_all_ten_links_taken_is_enobufs():
    far, modem = started()
    socks = [sock_on(modem) for _ in range(sim7600.LINKS)]
    for i, s in enumerate(socks):
        s.connect(("10.0.0.1", 80 + i))
    assert far.commands[-1] == b'AT+CIPOPEN=9,"TCP","10.0.0.1",89'
    e = oserror(sock_on(modem).connect, ("10.0.0.1", 99))
    assert e.errno == errno.ENOBUFS
    assert e.args[1] == "all 10 modem links are in use"


def test_a_link_reset_by_the_network_is_reused_once_all_are_taken():
    far, modem = started()
    socks = [sock_on(modem) for _ in range(sim7600.LINKS)]
    for s in socks:
        s.connect(("10.0.0.1", 80))
    far.inject(b"\r\n+IPCLOSE: 7,0\r\n\r\n+IPCLOSE: 3,0\r\n")
    modem.at.poll(0)
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert far.commands[-1] == b'AT+CIPOPEN=3,"TCP","10.0.0.1",80'
    assert modem.links[3].tcp is s.tcp and modem.links[7].tcp is socks[7].tcp
    socks[3].close()   # the old socket: its link serves another one now
    assert modem.links[3].tcp is s.tcp


# -- the bearer reopened by a connect ------------------------------------------------------
def lose_network(far, modem):
    far.inject(b"\r\n+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY\r\n")
    modem.at.poll(0)
    assert not modem.net_open


def test_connect_reopens_a_bearer_the_network_dropped():
    far, modem = started()
    lose_network(far, modem)
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert far.commands == [b"AT+CEREG?", b"AT+NETOPEN", b'AT+CIPOPEN=0,"TCP","10.0.0.1",80']
    assert modem.net_open and modem.bearer_reopens == 1
    assert events(s) == ["BEARER_UP", "CONNECT", "CONNECTED"]
    s2 = sock_on(modem)
    s2.connect(("10.0.0.1", 81))
    assert modem.bearer_reopens == 1 and events(s2) == ["CONNECT", "CONNECTED"]


def test_connect_on_a_modem_never_started_does_not_bring_it_up():
    far = Far()
    modem = modem_on(far)
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert far.commands == [b'AT+CIPOPEN=0,"TCP","10.0.0.1",80']
    assert events(s) == ["CONNECT", "CONNECTED"] and modem.bearer_reopens == 0


def test_a_network_loss_still_unread_is_seen_before_the_connect():
    far, modem = started()
    far.inject(b"\r\n+NETCLOSE: 0\r\n")
    sock_on(modem).connect(("10.0.0.1", 80))
    assert far.commands[:2] == [b"AT+CEREG?", b"AT+NETOPEN"]


def test_reopen_after_a_reboot_is_the_whole_bring_up():
    far, modem = started()
    far.inject(b"\r\nRDY\r\n")
    modem.at.poll(0)
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert far.commands == START_COMMANDS + [b'AT+CIPOPEN=0,"TCP","10.0.0.1",80']
    assert events(s) == ["BEARER_UP", "CONNECT", "CONNECTED"]
    lose_network(far, modem)
    far.commands.clear()
    sock_on(modem).connect(("10.0.0.1", 81))   # settings kept since: NETOPEN only
    assert far.commands[:2] == [b"AT+CEREG?", b"AT+NETOPEN"]


def test_reopen_registered_roaming_is_fine():
    far, modem = started()
    lose_network(far, modem)
    far.replies[b"AT+CEREG?"] = b"\r\n+CEREG: 0,5\r\n" + OK
    sock_on(modem).connect(("10.0.0.1", 80))
    assert modem.net_open


def test_reopen_failing_every_time_is_ehostunreach_after_its_attempts(fast_clock):
    far, modem = started()
    lose_network(far, modem)
    far.replies[b"AT+CEREG?"] = b"\r\n+CEREG: 0,2\r\n" + OK
    far.replies[b"AT+CREG?"] = b"\r\n+CREG: 0,2\r\n" + OK
    far.commands.clear()
    s = synsocket.socket(backend=modem)
    waits = spy_on_polls(modem)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.EHOSTUNREACH
    assert e.args[1] == ("network not open and reopening it failed (3 attempts): not "
                         "registered on the network: +CREG/+CEREG stat 2 (searching)")
    assert far.commands.count(b"AT+CEREG?") == 3
    assert events(s) == ["BEARER_FAILED"] * 3 and s.state == "CLOSED"
    assert not modem.net_open and modem.bearer_reopens == 0
    assert modem.links == [None] * sim7600.LINKS
    assert waits == [0, 1000, 2000]   # a look at the URCs, then waits of 1 s and 2 s


def test_reopen_attempts_and_backoff_can_be_set():
    far, modem = started()
    modem.reopen_attempts = 2
    modem.reopen_backoff_ms = 10
    lose_network(far, modem)
    far.replies[b"AT+NETOPEN"] = OK + b"\r\n+NETOPEN: 1\r\n"
    s = sock_on(modem)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert "(2 attempts): packet data context failed: +NETOPEN: 1" in e.args[1]
    assert far.commands.count(b"AT+NETOPEN") == 2


def test_second_reopen_attempt_succeeds():
    far, modem = started()
    modem.reopen_backoff_ms = 10
    lose_network(far, modem)
    answers = [OK + b"\r\n+NETOPEN: 1\r\n", OK + b"\r\n+NETOPEN: 0\r\n"]
    far.replies[b"AT+NETOPEN"] = lambda line: answers.pop(0)
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert events(s) == ["BEARER_FAILED", "BEARER_UP", "CONNECT", "CONNECTED"]
    assert modem.bearer_reopens == 1


def test_reopen_stops_when_the_next_wait_would_pass_the_connects_limit():
    far, modem = started()
    modem.reopen_backoff_ms = 500
    lose_network(far, modem)
    far.replies[b"AT+NETOPEN"] = OK + b"\r\n+NETOPEN: 1\r\n"
    s = sock_on(modem, timeout=0.3)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.EHOSTUNREACH and "(1 attempts)" in e.args[1]
    assert far.commands.count(b"AT+NETOPEN") == 1


def test_reopen_registration_wait_is_bounded_by_the_connects_limit(monkeypatch):
    # after a reboot the bring-up waits for registration: 10 s at most, less when the
    # connect's own limit is shorter
    monkeypatch.setattr(cellular, "time", Clock(step=0))
    far, modem = started()
    far.inject(b"\r\nRDY\r\n")
    modem.at.poll(0)
    modem.reopen_attempts = 1
    limits = []

    def start_steps(register_timeout_ms):
        limits.append(register_timeout_ms)
        raise base.NotRegistered(base.REG_SEARCHING)
        yield  # a steps generator, as the real one

    modem.start_steps = start_steps
    for timeout in (None, 4, 20):
        s = synsocket.socket(backend=modem)
        s.settimeout(timeout)
        e = oserror(s.connect, ("10.0.0.1", 80))
        assert e.errno == errno.EHOSTUNREACH and "stat 2" in e.args[1]
    assert limits == [10000, 4000, 10000]


def spy_on_polls(modem):
    """The waits of the modem's channel's poll() calls, in order."""
    waits = []
    poll = modem.at.poll

    def spy(timeout_ms=0):
        waits.append(timeout_ms)
        return poll(timeout_ms)

    modem.at.poll = spy
    return waits


# -- send ---------------------------------------------------------------------------------
def test_send_writes_the_payload_and_returns_what_the_modem_confirmed():
    far, modem, s = connected()
    assert s.send(b"hello") == 5
    assert far.commands[-1] == b"AT+CIPSEND=0,5" and far.payloads == [b"hello"]
    far.replies[b"AT+CIPSEND="] = cipsend(accepted=2)
    assert s.send(bytearray(b"world")) == 2


def test_send_takes_at_most_1500_bytes_a_time():
    far, modem, s = connected()
    data = bytes(range(256)) * 8
    assert s.send(data) == 1500
    assert far.commands[-1] == b"AT+CIPSEND=0,1500" and far.payloads == [data[:1500]]
    assert s.send(memoryview(data)[:1500]) == 1500


def test_send_confirmed_later_by_its_urc():
    far, modem, s = connected({b"AT+CIPSEND=": cipsend(urc=False)})
    far.later(b"\r\n+CIPSEND: 0,3,3\r\n")
    assert s.send(b"abc") == 3


def test_send_confirmation_of_an_earlier_send_is_not_taken_for_this_one(fast_clock):
    far, modem, s = connected()
    assert s.send(b"abc") == 3
    far.replies[b"AT+CIPSEND="] = cipsend(urc=False)
    e = oserror(s.send, b"defg")
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == "no +CIPSEND confirmation for link 0"


def test_send_the_modem_failed_is_a_reset():
    far, modem, s = connected({b"AT+CIPSEND=": cipsend(accepted=-1)})
    e = oserror(s.send, b"abc")
    assert e.errno == errno.ECONNRESET
    assert e.args[1] == "modem could not send on link 0"


def test_send_of_nothing_confirmed_as_nothing_is_zero():
    far, modem, s = connected({b"AT+CIPSEND=": cipsend(accepted=0)})
    assert s.send(b"abc") == 0


def test_send_without_a_prompt_times_out_after_10_s(fast_clock):
    far, modem, s = connected({b"AT+CIPSEND=": None})
    s.settimeout(None)
    e = oserror(s.send, b"abc")
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == "link 0: AT+CIPSEND=0,3: no answer within 10000 ms (no '>' prompt)"


def test_send_after_the_peer_closed_is_enotconn():
    far, modem, s = connected()
    far.inject(b"\r\n+IPCLOSE: 0,1\r\n")
    modem.at.poll(0)
    n = len(far.commands)
    e = oserror(s.send, b"abc")
    assert e.errno == errno.ENOTCONN
    assert e.args[1] == "send on a connection in state CLOSE_WAIT"
    assert len(far.commands) == n


def test_send_on_a_link_that_was_given_up_is_enotconn():
    far, modem, s = connected()
    modem.links[0] = None
    e = oserror(s.send, b"abc")
    assert e.errno == errno.ENOTCONN


def test_send_before_the_handshake_completed_is_enotconn():
    far, modem = started({b"AT+CIPOPEN=": OK})
    s = sock_on(modem)
    s.setblocking(False)
    oserror(s.connect, ("10.0.0.1", 80))
    e = oserror(modem.send, s, b"abc", 0)
    assert e.errno == errno.ENOTCONN
    assert e.args[1] == "send on a connection in state SYN_SENT"


# -- receive ------------------------------------------------------------------------------
def test_recv_asks_for_what_fits_and_reads_exactly_that():
    far, modem, s = connected({b"AT+CIPRXGET=2,": rxget(b"hello")})
    far.inject(b"\r\n+CIPRXGET: 1,0\r\n")
    assert read(modem, s, 64) == b"hello"
    assert far.commands[-1] == b"AT+CIPRXGET=2,0,64"
    assert not modem.links[0].rx_pending


def test_recv_asks_for_at_most_1500_bytes():
    data = bytes(range(256)) * 6
    far, modem, s = connected({b"AT+CIPRXGET=2,": rxget(data[:1500], rest=36)})
    buf = bytearray(4096)
    assert s.recv_into(buf) == 1500 and buf[:1500] == data[:1500]
    assert far.commands[-1] == b"AT+CIPRXGET=2,0,1500"
    assert modem.links[0].rx_pending      # rest 36: the modem holds more


def test_recv_of_exactly_what_was_asked_is_fine():
    far, modem, s = connected({b"AT+CIPRXGET=2,": rxget(b"abcd")})
    assert s.recv_into(bytearray(4)) == 4


def test_recv_framing_of_another_link_or_a_negative_rest_is_eio():
    for header in (b"+CIPRXGET: 2,1,2,0", b"+CIPRXGET: 2,0,2,-1", b"+CIPRXGET: 2,0,2",
                   b"+CIPRXGET: 2,0,2,0,0"):
        far, modem, s = connected({b"AT+CIPRXGET=2,": lambda line, h=header: (
            b"\r\n" + h + b"\r\nhi\r\nOK\r\n")})
        e = oserror(read, modem, s, 10)
        assert e.errno == errno.EIO, header
        assert e.args[1] == ("link 0: bad +CIPRXGET framing (asked 10 bytes; header [%r], "
                             "2 bytes followed); data may be lost" % header)
        assert modem.at.needs_resync and modem.links[0].rx_pending


def test_recv_with_no_data_waits_then_times_out():
    far, modem, s = connected({b"AT+CIPRXGET=2,": b"\r\n+IP ERROR: No data\r\n\r\nERROR\r\n"})
    e = oserror(read, modem, s, 10, 50)
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == "no data on link 0"
    assert not modem.links[0].rx_pending
    assert far.commands.count(b"AT+CIPRXGET=2,0,10") >= 2   # polled again meanwhile


def test_nonblocking_recv_with_no_data_is_eagain_after_one_read():
    far, modem, s = connected({b"AT+CIPRXGET=2,": rxget(b"")})
    n = len(far.commands)
    e = oserror(read, modem, s, 10, 0)
    assert e.errno == errno.EAGAIN
    assert far.commands[n:] == [b"AT+CIPRXGET=2,0,10"]


def test_recv_wakes_on_the_data_urc():
    reads = [rxget(b""), rxget(b"late")]
    far, modem, s = connected({b"AT+CIPRXGET=2,": lambda line: reads.pop(0)(line)},
                              poll_ms=60000)
    far.later(b"\r\n+CIPRXGET: 1,0\r\n")
    s.settimeout(5)
    assert s.recv(10) == b"late"


def test_blocking_recv_without_a_timeout_polls_every_poll_ms(fast_clock):
    reads = [rxget(b"")] * 3 + [rxget(b"x")]
    far, modem, s = connected({b"AT+CIPRXGET=2,": lambda line: reads.pop(0)(line)},
                              poll_ms=700)
    s.settimeout(None)
    t0 = fast_clock.now
    assert s.recv(10) == b"x"
    assert 3 * 700 <= fast_clock.now - t0 < 4 * 700 + 3000


def test_recv_after_the_peer_closed_reads_the_rest_then_eof():
    reads = [rxget(b"bye"), rxget(b"")]
    far, modem, s = connected({b"AT+CIPRXGET=2,": lambda line: reads.pop(0)(line)})
    far.inject(b"\r\n+IPCLOSE: 0,1\r\n")
    modem.at.poll(0)
    assert s.recv(10) == b"bye"
    assert s.recv(10) == b""


def test_recv_on_a_link_the_network_reset_is_econnreset():
    far, modem, s = connected()
    far.inject(b"\r\n+IPCLOSE: 0,0\r\n")
    modem.at.poll(0)
    e = oserror(s.recv, 10)
    assert e.errno == errno.ECONNRESET
    assert e.args[1] == "connection reset (link 0)"


def test_recv_after_a_keepalive_timeout_is_etimedout():
    far, modem, s = connected()
    far.inject(b"\r\n+IPCLOSE: 0,2\r\n")
    modem.at.poll(0)
    e = oserror(s.recv, 10)
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == ("link 0: the peer stopped answering (keepalive or retransmission "
                         "timeout)")


def test_recv_on_a_link_that_was_given_up_is_econnreset():
    far, modem, s = connected()
    modem.links[0] = None
    assert oserror(s.recv, 10).errno == errno.ECONNRESET


def test_recv_cut_short_marks_the_link_readable_and_names_the_read(fast_clock):
    far, modem, s = connected({b"AT+CIPRXGET=2,": b"\r\n+CIPRXGET: 2,0,10,0\r\nhel"})
    e = oserror(read, modem, s, 64)
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == ("link 0: AT+CIPRXGET=2,0,64: no answer within 5000 ms (payload "
                         "cut short, 3 bytes buffered)")
    assert modem.links[0].rx_pending


# -- readiness (select.poll, asyncio) -----------------------------------------------------
def test_poll_flags_of_a_quiet_link_are_writable_only(fast_clock):
    far, modem, s = connected(poll_ms=10 ** 9)
    modem.links[0].checked = fast_clock.now
    assert s.poll_flags(POLLIN | POLLOUT) == POLLOUT
    assert s.poll_flags(POLLIN) == 0
    assert s.poll_flags(POLLOUT) == POLLOUT
    assert s.poll_flags(0) == 0


def test_poll_flags_readable_once_the_data_urc_came():
    far, modem, s = connected(poll_ms=10 ** 9)
    modem.links[0].checked = 10 ** 12
    far.inject(b"\r\n+CIPRXGET: 1,0\r\n")
    assert s.poll_flags(POLLIN) == POLLIN
    assert s.poll_flags(POLLOUT) == POLLOUT
    assert s.poll_flags(POLLIN | POLLOUT) == POLLIN | POLLOUT


def test_poll_flags_readable_anyway_after_poll_ms_without_a_read(fast_clock):
    far, modem, s = connected(poll_ms=1000)
    modem.links[0].checked = fast_clock.now
    assert s.poll_flags(POLLIN) == 0            # 250 ms later
    fast_clock.now = modem.links[0].checked + 999 - 250
    assert s.poll_flags(POLLIN) == POLLIN       # 1000 ms: ask the modem again


def test_poll_flags_after_the_peer_closed_are_readable_and_hung_up():
    far, modem, s = connected(poll_ms=10 ** 9)
    modem.links[0].checked = 10 ** 12
    far.inject(b"\r\n+IPCLOSE: 0,1\r\n")
    assert s.poll_flags(POLLIN | POLLOUT) == POLLIN | POLLHUP
    assert s.poll_flags(POLLOUT) == POLLHUP


def test_poll_flags_of_a_dropped_link_are_error_and_hangup_with_what_was_asked():
    far, modem, s = connected()
    far.inject(b"\r\n+NETCLOSE: 0\r\n")
    assert s.poll_flags(POLLIN | POLLOUT) == POLLHUP | POLLERR | POLLIN | POLLOUT
    assert s.poll_flags(POLLIN) == POLLHUP | POLLERR | POLLIN
    assert s.poll_flags(0) == POLLHUP | POLLERR
    modem.links[0] = None
    assert modem.poll_flags(s, POLLOUT | 2) == POLLHUP | POLLERR | POLLOUT


def test_poll_flags_not_writable_before_the_handshake():
    far, modem = started({b"AT+CIPOPEN=": OK})
    s = sock_on(modem)
    s.setblocking(False)
    oserror(s.connect, ("10.0.0.1", 80))
    modem.links[0].checked = 10 ** 12
    assert modem.poll_flags(s, POLLOUT | POLLIN) == 0


def test_a_read_resets_the_poll_clock(fast_clock):
    far, modem, s = connected({b"AT+CIPRXGET=2,": rxget(b"x")}, poll_ms=1000)
    before = fast_clock.now
    s.recv(1)
    assert modem.links[0].checked > before


# -- close --------------------------------------------------------------------------------
def test_active_close_is_complete_when_the_modem_confirms_it():
    far, modem, s = connected()
    s.close()
    assert far.commands[-1] == b"AT+CIPCLOSE=0"
    assert s.tcp.states() == ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1",
                              "FIN_WAIT_2", "TIME_WAIT", "CLOSED"]
    assert modem.links == [None] * sim7600.LINKS


def test_close_confirmed_later_by_its_urc():
    far, modem, s = connected({b"AT+CIPCLOSE=": OK})
    far.later(b"\r\n+CIPCLOSE: 0,0\r\n")
    s.close()
    assert s.tcp.states()[-1] == "CLOSED" and events(s)[-1] == "TIME_WAIT_DONE"


def test_passive_close_after_the_peers_fin():
    far, modem, s = connected()
    far.inject(b"\r\n+IPCLOSE: 0,1\r\n")
    modem.at.poll(0)
    s.close()
    assert s.tcp.states() == ["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSE_WAIT",
                              "LAST_ACK", "CLOSED"]
    assert events(s)[-1] == "FIN_ACKED"


def test_passive_close_the_modem_had_done_already_is_still_complete():
    far, modem, s = connected({b"AT+CIPCLOSE=": b"\r\n+CIPCLOSE: 0,4\r\n\r\nERROR\r\n"})
    far.inject(b"\r\n+IPCLOSE: 0,1\r\n")
    modem.at.poll(0)
    s.close()
    assert events(s)[-2:] == ["CLOSE", "FIN_ACKED"] and s.state == "CLOSED"


def test_close_with_a_close_error_resets():
    far, modem, s = connected({b"AT+CIPCLOSE=": cipclose(2)})
    s.close()
    assert events(s)[-2:] == ["CLOSE", "RESET"] and s.state == "CLOSED"


def test_close_unanswered_gives_the_link_up_as_timed_out(fast_clock):
    far, modem, s = connected({b"AT+CIPCLOSE=": None})
    s.close()
    assert events(s)[-2:] == ["CLOSE", "TIMEOUT"] and s.state == "CLOSED"
    assert modem.links == [None] * sim7600.LINKS


def test_close_waits_15_s_for_its_urc(fast_clock):
    far, modem, s = connected({b"AT+CIPCLOSE=": OK})
    t0 = fast_clock.now
    s.close()
    assert 15000 <= fast_clock.now - t0 < 17000
    assert events(s)[-2:] == ["CLOSE", "RESET"]


def test_close_of_a_passively_closed_link_unanswered_is_a_timeout(fast_clock):
    far, modem, s = connected({b"AT+CIPCLOSE=": None})
    far.inject(b"\r\n+IPCLOSE: 0,1\r\n")
    modem.at.poll(0)
    s.close()
    assert events(s)[-2:] == ["CLOSE", "TIMEOUT"]


def test_close_of_a_socket_reset_by_the_network_tells_the_modem_once():
    far, modem, s = connected()
    far.inject(b"\r\n+IPCLOSE: 0,0\r\n")
    modem.at.poll(0)
    s.close()
    assert far.commands[-1] == b"AT+CIPCLOSE=0"
    assert events(s) == ["CONNECT", "CONNECTED", "RESET"]
    assert modem.links == [None] * sim7600.LINKS


def test_close_of_a_never_connected_socket_sends_nothing():
    far, modem = started()
    s = sock_on(modem)
    s.close()
    modem.close(s)
    assert far.commands == []


def test_close_mid_connect_gives_the_link_back():
    far, modem = started({b"AT+CIPOPEN=": OK})
    s = sock_on(modem)
    s.setblocking(False)
    oserror(s.connect, ("10.0.0.1", 80))
    s.close()
    assert events(s) == ["CONNECT", "CLOSE"]
    assert modem.links == [None] * sim7600.LINKS


# -- construction ---------------------------------------------------------------------------
def test_modem_defaults():
    far = Far()
    modem = sim7600.SIM7600(far)
    assert modem.apn == "" and modem.pin is None and modem.poll_ms == 500
    assert modem.reopen_attempts == 3 and modem.reopen_backoff_ms == 1000
    assert modem.links == [None] * 10 and modem.name == "sim7600"
    assert modem.connect_limit_ms == 130000
    modem = sim7600.SIM7600(far, apn="web", pin="0000", poll_ms=7)
    assert (modem.apn, modem.pin, modem.poll_ms) == ("web", "0000", 7)


def test_channel_can_be_given():
    from synack.at.driver import Channel
    from synack.at.parser import Parser
    chan = Channel(Far(), Parser(urcs=sim7600.URCS, framed=sim7600.FRAMED))
    assert sim7600.SIM7600(None, channel=chan).at is chan


def test_parser_takes_a_full_1500_byte_read_and_its_trailer():
    data = bytes(range(256)) * 5 + bytes(220)
    far, modem, s = connected({b"AT+CIPRXGET=2,": rxget(data[:1500])})
    assert s.recv(1500) == data[:1500]
    assert modem.at.engine.parser.max_payload == 1500


def test_errors_of_the_at_layer_are_what_they_say():
    assert issubclass(CommandError, Exception) and issubclass(CommandTimeout, Exception)


def test_connect_poll_without_a_wait_waits_the_modems_own_limit(fast_clock):
    far, modem = started({b"AT+CIPOPEN=": OK})
    s = sock_on(modem)
    s.setblocking(False)
    oserror(s.connect, ("10.0.0.1", 80))
    t0 = fast_clock.now
    assert modem.connect_poll(s, None) is False
    assert 130000 <= fast_clock.now - t0 < 131000


def test_abort_waits_for_its_own_cipclose_not_an_earlier_one():
    far, modem = started({b"AT+CIPOPEN=": OK})
    far.replies[b"AT+CIPCLOSE="] = lambda line: far.later(b"\r\n+CIPCLOSE: 0,0\r\n") or OK
    s = sock_on(modem, timeout=0.05)
    s.setblocking(False)
    oserror(s.connect, ("10.0.0.1", 80))
    far.inject(b"\r\n+CIPCLOSE: 0,4\r\n")    # stale: before the abort's AT+CIPCLOSE
    modem.at.poll(0)
    assert modem.links[0].close_err == 4
    modem.connect_abort(s, 50)
    assert not far.queue and not far.rx


# -- details the first mutation run showed unpinned ------------------------------------------
def test_urcs_without_a_space_after_the_colon_are_read():
    far, modem, s = connected()
    link = modem.links[0]
    far.inject(b"\r\n+CIPSEND:0,5,4\r\n\r\n+CIPCLOSE:0,3\r\n")
    modem.at.poll(0)
    assert (link.sent, link.close_err) == (4, 3)
    far.inject(b"\r\n+IPCLOSE:0,1\r\n")
    modem.at.poll(0)
    assert s.state == "CLOSE_WAIT"
    far.replies[b"AT+NETOPEN"] = OK + b"\r\n+NETOPEN:0\r\n"
    modem.bearer_open()
    assert modem.net_open


def test_dns_reply_without_a_space_after_the_colon():
    far, modem = started({b"AT+CDNSGIP=": b'\r\n+CDNSGIP:1,"h.example","10.9.8.7"\r\n' + OK})
    assert modem.getaddrinfo("h.example", 80)[0][4] == ("10.9.8.7", 80)


def test_dns_malformed_reply_quotes_its_first_line_only():
    far, modem = started({b"AT+CDNSGIP=": b'\r\n+CDNSGIP: 0,"x"\r\n\r\n+CDNSGIP: 0,"y"\r\n' + OK})
    e = oserror(modem.getaddrinfo, "x.example", 80)
    assert e.args[1] == ("DNS lookup of x.example failed: malformed reply "
                         "[b'+CDNSGIP: 0,\"x\"']")


def test_a_stray_line_before_the_reads_header_is_not_taken_for_it():
    far, modem, s = connected({b"AT+CIPRXGET=2,": lambda line: (
        b"\r\n+CIPHEAD: 1\r\n" + rxget(b"hello")(line))})
    assert read(modem, s, 64) == b"hello"


def test_close_after_a_connect_timeout_is_quiet():
    far, modem = started({b"AT+CIPOPEN=": OK})
    s = sock_on(modem, timeout=0.05)
    oserror(s.connect, ("10.0.0.1", 80))
    n = len(far.commands)
    s.close()
    assert far.commands[n:] == []


def test_send_rejected_by_the_modem_names_the_link_and_the_reply():
    far, modem, s = connected({b"AT+CIPSEND=": b"\r\n+CME ERROR: 3\r\n"})
    e = oserror(s.send, b"abc")
    assert e.errno == errno.ECONNRESET
    assert e.args[1] == "link 0: AT+CIPSEND=0,3 -> +CME ERROR: 3 (operation not allowed)"


def test_keepalive_not_in_minutes_names_it():
    far, modem = started()
    ka = sim7600._ka.Keepalive(90, 60, 5)
    e = oserror(modem._set_keepalive, ka)
    assert e.args[1] == "%r is not expressible in AT+CTCPKA minutes" % ka


def test_poll_flags_never_waits(monkeypatch):
    clock = on_one_clock(monkeypatch, modules=(links, at_driver, at_engine))
    far, modem, s = connected(poll_ms=10 ** 9)
    before = clock.now
    s.poll_flags(POLLIN | POLLOUT)
    assert clock.now == before


def test_poll_flags_readable_exactly_poll_ms_after_the_last_read(monkeypatch):
    clock = Clock(step=0)
    monkeypatch.setattr(links, "time", clock)
    far, modem, s = connected(poll_ms=1000)
    modem.links[0].checked = clock.now
    clock.now += 999
    assert s.poll_flags(POLLIN) == 0
    clock.now += 1
    assert s.poll_flags(POLLIN) == POLLIN


def unregistered():
    return Far({b"AT+CEREG?": b"\r\n+CEREG: 0,2\r\n" + OK, b"AT+CREG?": b"\r\n+CREG: 0,2\r\n" + OK})


def test_start_waits_for_registration_as_long_as_it_is_told(monkeypatch):
    clock = on_one_clock(monkeypatch, modules=(links, base, at_driver, at_engine))
    modem = modem_on(unregistered())
    t0 = clock.now
    with pytest.raises(base.NotRegistered):
        modem.start(register_timeout_ms=3000)
    assert clock.now - t0 == 3000


def test_start_waits_a_minute_for_registration_by_default(monkeypatch):
    clock = on_one_clock(monkeypatch, modules=(links, base, at_driver, at_engine))
    modem = modem_on(unregistered())
    t0 = clock.now
    with pytest.raises(base.NotRegistered):
        modem.start()
    assert clock.now - t0 == 60000


def test_an_apn_changed_after_construction_is_checked_at_start():
    far = Far()
    modem = modem_on(far)
    modem.apn = 'x";+CFUN=0;"'
    with pytest.raises(ValueError) as exc:
        modem.start(register_timeout_ms=100)
    assert str(exc.value).startswith("invalid APN 'x\";+CFUN=0;\"'")
    assert not any(c.startswith(b"AT+CGDCONT") for c in far.commands)


def test_pin_and_apn_are_refused_at_construction_by_name_and_limit():
    with pytest.raises(ValueError) as exc:
        sim7600.SIM7600(Far(), apn="internet", pin="123456789")
    assert str(exc.value) == ("invalid PIN '123456789': printable ASCII without '\"', at most "
                              "8 characters")
    sim7600.SIM7600(Far(), apn="internet", pin="12345678")
    with pytest.raises(ValueError) as exc:
        sim7600.SIM7600(Far(), apn='a"b')
    assert str(exc.value) == ("invalid APN 'a\"b': printable ASCII without '\"', at most 100 "
                              "characters")


def test_a_payload_not_followed_by_its_trailer_is_eio_never_wrong_data():
    far, modem, s = connected({b"AT+CIPRXGET=2,": b"\r\n+CIPRXGET: 2,0,5,0\r\nhelloX\r\nOK\r\n"})
    e = oserror(read, modem, s, 64)
    assert e.errno == errno.EIO


def test_a_new_link_counts_as_just_read(monkeypatch):
    far, modem, s = connected(poll_ms=10 ** 9)
    assert s.poll_flags(POLLIN) == 0


def test_cipopen_urcs_of_no_link_or_without_an_error_are_ignored_cleanly():
    far, modem = started({b"AT+CIPOPEN=": OK})
    s = sock_on(modem)
    s.setblocking(False)
    oserror(s.connect, ("10.0.0.1", 80))
    far.inject(b"\r\n+CIPOPEN: 12,0\r\n\r\n+CIPOPEN: 0\r\n")
    modem.at.poll(0)
    assert modem.at.engine.malformed == 0 and modem.links[0].open_err is None
    far.inject(b"\r\n+CIPOPEN:0,0\r\n")
    assert s.connect_done() is True


def test_rest_of_one_byte_keeps_the_link_readable():
    far, modem, s = connected({b"AT+CIPRXGET=2,": rxget(b"ab", rest=1)})
    assert read(modem, s, 2) == b"ab"
    assert modem.links[0].rx_pending


def test_close_after_a_failed_connect_is_quiet():
    for replies in ({b"AT+CIPOPEN=": cipopen(1)}, {b"AT+CIPOPEN=": b"\r\nERROR\r\n"}):
        far, modem = started(replies)
        s = sock_on(modem)
        oserror(s.connect, ("10.0.0.1", 80))
        n = len(far.commands)
        s.close()
        assert far.commands[n:] == []
    far, modem = started({b"AT+CIPOPEN=": OK})
    s = sock_on(modem)
    s.setblocking(False)
    oserror(s.connect, ("10.0.0.1", 80))
    far.inject(b"\r\n+NETCLOSE: 0\r\n")
    modem.at.poll(0)
    oserror(s.connect_done)
    n = len(far.commands)
    s.close()
    assert far.commands[n:] == []


def test_connect_returns_as_soon_as_cipopen_comes(monkeypatch):
    clock = on_one_clock(monkeypatch)
    far, modem = started()
    far.replies[b"AT+CIPOPEN="] = lambda line: far.later(b"\r\n+CIPOPEN: 0,0\r\n") or OK
    t0 = clock.now
    sock_on(modem, timeout=5).connect(("10.0.0.1", 80))
    assert clock.now - t0 < 10


def test_recv_asks_again_while_a_millisecond_is_left(monkeypatch):
    on_one_clock(monkeypatch)
    far, modem, s = connected({b"AT+CIPRXGET=2,": rxget(b"")}, poll_ms=1)
    n = len(far.commands)
    e = oserror(read, modem, s, 10, 1)
    assert e.errno == errno.ETIMEDOUT
    assert far.commands[n:] == [b"AT+CIPRXGET=2,0,10"] * 2


def test_reopen_tries_again_when_the_wait_ends_exactly_at_the_limit(monkeypatch):
    on_one_clock(monkeypatch)
    far, modem = started()
    lose_network(far, modem)
    far.replies[b"AT+NETOPEN"] = OK + b"\r\n+NETOPEN: 1\r\n"
    s = sock_on(modem, timeout=3)       # waits 1 s and 2 s: the third try starts at 3 s
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert "(3 attempts)" in e.args[1]


def test_reopen_after_a_reboot_has_what_is_left_of_the_limit(monkeypatch):
    on_one_clock(monkeypatch)
    far, modem = started()
    far.inject(b"\r\nRDY\r\n")
    modem.at.poll(0)
    modem.reopen_attempts = 2
    limits = []

    def start_steps(register_timeout_ms):
        limits.append(register_timeout_ms)
        raise base.NotRegistered(base.REG_SEARCHING)
        yield  # a steps generator, as the real one

    modem.start_steps = start_steps
    oserror(sock_on(modem, timeout=4).connect, ("10.0.0.1", 80))
    assert limits == [4000, 3000]


def test_every_reopen_is_counted():
    far, modem = started()
    for i in (1, 2):
        lose_network(far, modem)
        sock_on(modem).connect(("10.0.0.1", 80 + i))
        assert modem.bearer_reopens == i


def test_no_reopen_attempts_at_all_is_ehostunreach():
    far, modem = started()
    modem.reopen_attempts = 0
    lose_network(far, modem)
    e = oserror(sock_on(modem).connect, ("10.0.0.1", 80))
    assert e.args[1] == "network not open and reopening it failed (0 attempts): None"


def test_close_after_an_unanswered_connect_is_quiet(fast_clock):
    far, modem = started({b"AT+CIPOPEN=": None})
    s = sock_on(modem)
    assert oserror(s.connect, ("10.0.0.1", 80)).errno == errno.ETIMEDOUT
    n = len(far.commands)
    s.close()
    assert far.commands[n:] == []
