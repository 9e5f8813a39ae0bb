"""The BG96 driver (firmware/synack/modems/bg96.py) against a scripted modem that answers
as Quectel's BG96 TCP/IP AT manual says, in-process and without a pty (tests/farmodem.py),
so each case runs in milliseconds: the bring-up sequence and its failures, every URC and
what it records (garbled ones doing nothing), connect outcomes by +QIOPEN code, sends
(SEND OK / SEND FAIL / ERROR), reads (+QIRD framing), the peer's close with data still
in the modem, close, DNS by URC, the modem's keepalive, and the bearer reopened by a
connect after the network dropped the context. The TCP lifecycle is checked on the
socket's own event log, the errors by errno and message."""

import errno

import pytest

from synack import modems
from synack import keepalive as synka
from synack import socket as synsocket
from synack.modems import base, bg96

import farmodem
from farmodem import (ACTIVE_CLOSE, OK, PASSIVE_CLOSE, POLLHUP, POLLIN, POLLOUT, arg,
                      events, oserror, prompted, read, sock_on, urc)


def qiopen(err=0):
    """AT+QIOPEN=1,<id>,...: OK, then +QIOPEN: <id>,<err>."""
    return lambda line: OK + b"\r\n+QIOPEN: %d,%d\r\n" % (arg(line, 1), err)


def qisend(result=b"SEND OK"):
    """AT+QISEND=<id>,<n>: the prompt, n bytes from the host, then ``result``."""
    return prompted(b"\r\n> ", lambda link, size: b"\r\n" + result + b"\r\n")


def qird(data):
    """AT+QIRD=<id>,<max>: +QIRD: <n>, the n bytes, OK (+QIRD: 0 and OK when empty)."""
    if not data:
        return b"\r\n+QIRD: 0\r\n" + OK
    return b"\r\n+QIRD: %d\r\n" % len(data) + data + b"\r\n" + OK


def dns_urcs(*ips, err=0):
    if err:
        return b'\r\n+QIURC: "dnsgip",%d\r\n' % err
    return (b'\r\n+QIURC: "dnsgip",0,%d,600\r\n' % len(ips)
            + b"".join(b'\r\n+QIURC: "dnsgip","%s"\r\n' % ip for ip in ips))


QICSGP = b'AT+QICSGP=1,1,"internet","",""'
BRING_UP = {
    **farmodem.READY,
    QICSGP: OK,
    b"AT+QIACT=1": OK,
    b"AT+QIACT?": b'\r\n+QIACT: 1,1,1,"10.64.0.2"\r\n' + OK,
    b"AT+QIDEACT=1": OK,
    b"AT+QIOPEN=": qiopen(0),
    b"AT+QICLOSE=": OK,
    b"AT+QISEND=": qisend(),
    b"AT+QIRD=": qird(b""),
    b"AT+QICFG=": OK,
}
START_COMMANDS = farmodem.START + [QICSGP, b"AT+QIACT=1"]
OPEN0 = b'AT+QIOPEN=1,0,"TCP","10.0.0.1",80,0,0'
NO_LINKS = [None] * bg96.LINKS


class Far(farmodem.Far):
    """The BG96's far end: BRING_UP answered unless a case says otherwise."""

    DEFAULTS = BRING_UP


fast_clock = farmodem.clock_fixture()
modem_on, started, connected = farmodem.helpers(Far, bg96.BG96)


def quiet(modem):
    """No URC line was garbled enough to make a handler raise, none went unhandled."""
    return modem.at.engine.malformed == 0 and modem.at.engine.unexpected == 0


# -- bring-up ---------------------------------------------------------------------------
def test_start_brings_the_modem_up_in_the_manuals_order():
    far = Far()
    modem = modem_on(far)
    assert not modem.net_open and modem.rssi_dbm is None and modem.reboots == 0
    modem.start(register_timeout_ms=100)
    assert far.commands == START_COMMANDS
    assert modem.net_open and modem.rssi_dbm == -73 and modem.bearer_reopens == 0


def test_start_enters_the_pin_when_the_sim_asks_for_it():
    far = Far({b"AT+CPIN?": b"\r\n+CPIN: SIM PIN\r\n" + OK})
    far.replies[b'AT+CPIN="1234"'] = lambda line: (
        far.replies.__setitem__(b"AT+CPIN?", b"\r\n+CPIN: READY\r\n" + OK) or OK)
    modem = bg96.BG96(far, apn="internet", pin="1234", poll_ms=5)
    modem.start(register_timeout_ms=100)
    assert b'AT+CPIN="1234"' in far.commands and modem.net_open


@pytest.mark.parametrize("replies, error, text", [
    ({b"AT+CPIN?": b"\r\n+CME ERROR: 10\r\n"}, base.NoSIM, "no SIM card"),
    ({b"AT+CPIN?": b"\r\n+CPIN: SIM PIN\r\n" + OK}, base.SIMLocked, "SIM PIN"),
    ({b"AT+CEREG?": b"\r\n+CEREG: 0,3\r\n" + OK, b"AT+CREG?": b"\r\n+CREG: 0,3\r\n" + OK},
     base.RegistrationDenied, "denied"),
], ids=["no-sim", "pin", "denied"])
def test_bring_up_failures_stop_before_the_context(replies, error, text):
    far = Far(replies)
    with pytest.raises(error) as exc:
        modem_on(far).start(register_timeout_ms=100)
    assert text in str(exc.value)
    assert QICSGP not in far.commands and b"AT+QIACT=1" not in far.commands


def test_qiact_failing_is_a_pdp_error_naming_the_apn():
    far = Far({b"AT+QIACT=1": b"\r\nERROR\r\n", b"AT+QIACT?": OK})
    modem = modem_on(far)
    with pytest.raises(base.PDPError) as exc:
        modem.start(register_timeout_ms=100)
    assert str(exc.value) == ("AT+QIACT=1 failed: AT+QIACT=1 -> ERROR (check the APN "
                              "'internet' and the data plan)")
    assert far.commands[-2:] == [b"AT+QIACT=1", b"AT+QIACT?"]
    assert not modem.net_open


def test_qiact_error_for_a_context_active_already_counts_as_open():
    far = Far({b"AT+QIACT=1": b"\r\nERROR\r\n"})
    modem = modem_on(far)
    modem.start(register_timeout_ms=100)
    assert modem.net_open


@pytest.mark.parametrize("listing", [b'\r\n+QIACT: 2,1,1,"10.0.0.9"\r\n',
                                     b'\r\n+QIACT: 1,0,1,"0.0.0.0"\r\n', b"\r\n+QIACT: x\r\n",
                                     b""])
def test_qiact_error_with_context_1_not_active_is_a_pdp_error(listing):
    far = Far({b"AT+QIACT=1": b"\r\n+CME ERROR: 561\r\n", b"AT+QIACT?": listing + OK})
    modem = modem_on(far)
    with pytest.raises(base.PDPError):
        modem.start(register_timeout_ms=100)
    assert not modem.net_open


def test_qiact_unanswered_gives_up_after_150_s(fast_clock):
    far = Far({b"AT+QIACT=1": None})
    modem = modem_on(far)
    t0 = fast_clock.now
    with pytest.raises(base.PDPError) as exc:
        modem.bearer_open()
    assert str(exc.value) == "AT+QIACT=1: no answer within 150000 ms"
    assert 150000 <= fast_clock.now - t0 < 152000
    assert not modem.net_open


def test_bearer_close_deactivates_context_1_and_reset_reboots_with_cfun():
    far, modem = started()
    modem.bearer_down()
    assert far.commands == [b"AT+QIDEACT=1"] and not modem.net_open
    far.replies[b"AT+CFUN=1,1"] = lambda line: far.later(b"\r\nRDY\r\n") or OK
    modem.reset(wait_ms=100)
    assert far.commands[-1] == b"AT+CFUN=1,1" and modem.reboots == 1


def test_apn_and_pin_are_checked_at_construction():
    with pytest.raises(ValueError):
        bg96.BG96(Far(), apn='x",""\rAT+CFUN=0')
    with pytest.raises(ValueError):
        bg96.BG96(Far(), apn="internet", pin="123456789")


# -- URCs: what each records --------------------------------------------------------------
def test_informational_urcs_are_consumed_quietly():
    far, modem = started()
    urcs = modem.at.engine.urcs
    lines = (b"+CPIN: READY", b"APP RDY", b"+QIND: SMS DONE", b"+QUSIM: 1", b"+CFUN: 1",
             b"+CEREG: 1", b"+CREG: 1", b"POWERED DOWN", b'+QIURC: "incoming full"')
    urc(far, modem, *lines)
    assert quiet(modem) and modem.at.engine.urcs == urcs + len(lines)
    assert modem.net_open and modem.reboots == 0


def test_recv_urc_marks_only_its_link_readable():
    far, modem, s = connected()
    s2 = sock_on(modem)
    s2.connect(("10.0.0.2", 81))
    urc(far, modem, b'+QIURC: "recv",1')
    assert modem.links[1].rx_pending and not modem.links[0].rx_pending


@pytest.mark.parametrize("line", [
    b'+QIURC: "recv",O', b'+QIURC: "recv",', b'+QIURC: "recv"', b'+QIURC: "recv",12',
    b'+QIURC: "recv",-1', b'+QIURC: "closed",', b'+QIURC: "closed",x', b'+QIURC: "closed"',
    b'+QIURC: "pdpdeact"', b'+QIURC: "pdpdeact",x', b'+QIURC: "pdpdeact",2', b"+QIURC:",
    b'+QIURC: "dnsgip",x', b'+QIURC: "dnsgip"', b'+QIURC: "what",0', b"+QIOPEN: 0",
    b"+QIOPEN: O,0", b"+QIOPEN: 0,5,6", b"+QIOPEN: 12,0", b"+QIOPEN:"])
def test_a_garbled_urc_changes_nothing(line):
    far, modem, s = connected()
    link = modem.links[0]
    link.open_err = None
    urc(far, modem, line)
    assert quiet(modem)
    assert (link.rx_pending, link.peer_closed, link.open_err) == (False, False, None)
    assert s.state == "ESTABLISHED" and modem.net_open and not modem.deact_pending
    assert modem._dns_err is None and modem._dns_ips == []


def test_closed_urc_is_the_peers_fin_and_leaves_the_data_readable():
    far, modem, s = connected()
    urc(far, modem, b'+QIURC: "closed",0')
    assert modem.links[0].peer_closed and modem.links[0].readable()
    assert events(s)[-1] == "PEER_FIN" and s.state == "CLOSE_WAIT"


def test_closed_urc_of_another_link_changes_nothing():
    far, modem, s = connected()
    urc(far, modem, b'+QIURC: "closed",1', b'+QIURC: "closed",11')
    assert s.state == "ESTABLISHED" and not modem.links[0].peer_closed and quiet(modem)


def test_closed_urc_with_the_qiopen_closes_after_the_handshake():
    far, modem = started({b"AT+QIOPEN=": OK + b'\r\n+QIOPEN: 0,0\r\n\r\n+QIURC: "closed",0\r\n'})
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert events(s) == ["CONNECT", "CONNECTED", "PEER_FIN"] and s.state == "CLOSE_WAIT"


def test_pdpdeact_of_context_1_resets_every_link_and_marks_the_bearer_down():
    far, modem, s = connected()
    s2 = sock_on(modem)
    s2.connect(("10.0.0.2", 81))
    urc(far, modem, b'+QIURC: "pdpdeact",1')
    assert not modem.net_open and modem.deact_pending and modem.reboots == 0
    for sock, n in ((s, 0), (s2, 1)):
        assert sock.state == "CLOSED" and events(sock)[-1] == "RESET"
        assert modem.links[n].peer_closed


def test_qiopen_urc_records_the_error_of_its_link_only():
    far, modem = started({b"AT+QIOPEN=": OK})
    s = sock_on(modem)
    s.setblocking(False)
    oserror(s.connect, ("10.0.0.1", 80))
    urc(far, modem, b"+QIOPEN: 1,0", b"+QIOPEN: 0")
    assert modem.links[0].open_err is None
    urc(far, modem, b"+QIOPEN:0,566")
    assert modem.links[0].open_err == 566


def test_reboot_counts_loses_everything_and_forgets_the_keepalive_setting():
    far, modem, s = connected()
    modem._keepalive = "1,2,30,3"
    urc(far, modem, b"RDY")
    urc(far, modem, b"RDY")
    assert modem.reboots == 2 and not modem.net_open and not modem.deact_pending
    assert modem._keepalive == bg96.KEEPALIVE_OFF
    assert s.state == "CLOSED" and events(s)[-1] == "RESET"


# -- DNS ----------------------------------------------------------------------------------
def test_ipv4_literal_resolves_without_asking_the_modem():
    far, modem = started()
    assert modem.getaddrinfo("10.1.2.3", 8080) == [(2, 1, 6, "", ("10.1.2.3", 8080))]
    assert far.commands == []


def test_invalid_host_name_is_einval_without_a_command():
    far, modem = started()
    assert oserror(modem.getaddrinfo, 'x";+CFUN=0', 80).errno == errno.EINVAL
    assert far.commands == []


def test_name_resolves_from_the_dnsgip_urcs_after_the_ok():
    def answer(line):   # the header and each address in a read of their own
        for piece in (b'\r\n+QIURC: "dnsgip",0,2,600\r\n', b'\r\n+QIURC: "dnsgip","93.184.216.34"'
                      b"\r\n", b'\r\n+QIURC: "dnsgip","10.0.0.9"\r\n'):
            far.later(piece)
        return OK

    far, modem = started({b"AT+QIDNSGIP=": answer})
    assert modem.getaddrinfo("example.com", 443) == [
        (2, 1, 6, "", ("93.184.216.34", 443)), (2, 1, 6, "", ("10.0.0.9", 443))]
    assert far.commands == [b'AT+QIDNSGIP=1,"example.com"']


def test_dns_urcs_in_the_same_read_as_the_ok_are_taken():
    far, modem = started({b"AT+QIDNSGIP=": OK + dns_urcs(b"1.2.3.4")})
    assert modem.getaddrinfo("a.example", 1)[0][4] == ("1.2.3.4", 1)


def test_dns_error_code_is_ehostunreach_naming_it():
    far, modem = started({b"AT+QIDNSGIP=": OK + dns_urcs(err=565)})
    e = oserror(modem.getaddrinfo, "nowhere.example", 80)
    assert e.errno == errno.EHOSTUNREACH
    assert e.args[1] == ('DNS lookup of nowhere.example failed: +QIURC: "dnsgip",565 '
                         "(DNS parse failed)")


def test_dns_with_no_address_is_ehostunreach():
    far, modem = started({b"AT+QIDNSGIP=": OK + dns_urcs()})
    e = oserror(modem.getaddrinfo, "empty.example", 80)
    assert e.errno == errno.EHOSTUNREACH and e.args[1].endswith('"dnsgip",0 (no address)')


def test_dns_command_rejected_is_ehostunreach():
    far, modem = started({b"AT+QIDNSGIP=": b"\r\n+CME ERROR: 561\r\n"})
    e = oserror(modem.getaddrinfo, "x.example", 80)
    assert e.errno == errno.EHOSTUNREACH
    assert e.args[1] == ('DNS lookup of x.example failed: AT+QIDNSGIP=1,"x.example" -> '
                         "+CME ERROR: 561")


def test_dns_without_its_urcs_times_out_after_60_s(fast_clock):
    far, modem = started({b"AT+QIDNSGIP=": OK})
    t0 = fast_clock.now
    e = oserror(modem.getaddrinfo, "slow.example", 80)
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == 'DNS lookup of slow.example: no +QIURC: "dnsgip" within 60 s'
    assert 60000 <= fast_clock.now - t0 < 62000


def test_dns_command_unanswered_is_etimedout(fast_clock):
    far, modem = started({b"AT+QIDNSGIP=": None})
    assert oserror(modem.getaddrinfo, "slow.example", 80).errno == errno.ETIMEDOUT


def test_dns_gives_what_came_when_an_announced_address_never_does(fast_clock):
    far, modem = started({b"AT+QIDNSGIP=": OK + b'\r\n+QIURC: "dnsgip",0,2,600\r\n'
                                          b'\r\n+QIURC: "dnsgip","5.6.7.8"\r\n'})
    assert modem.getaddrinfo("half.example", 80) == [(2, 1, 6, "", ("5.6.7.8", 80))]


def test_dns_ignores_garbled_lines_and_an_earlier_lookups_answer():
    far, modem = started({b"AT+QIDNSGIP=": OK + dns_urcs(err=565)})
    oserror(modem.getaddrinfo, "first.example", 80)
    far.replies[b"AT+QIDNSGIP="] = OK + (b'\r\n+QIURC: "dnsgip",x\r\n\r\n+QIURC: "dnsgip","1.2.3"'
                                         b"\r\n") + dns_urcs(b"9.9.9.9")
    assert modem.getaddrinfo("second.example", 80) == [(2, 1, 6, "", ("9.9.9.9", 80))]
    assert quiet(modem)


# -- keepalive in the modem: AT+QICFG="tcp/keepalive" ---------------------------------------
@pytest.mark.parametrize("idle, interval, count, mechanism", [
    (60, 25, 3, "modem"), (7200, 100, 10, "modem"), (120, 60, 5, "modem"),
    (7200, 75, 10, "modem"), (90, 60, 5, "probe"), (7260, 60, 5, "probe"),
    (60, 24, 5, "probe"), (60, 101, 5, "probe"), (60, 60, 2, "probe"), (60, 60, 11, "probe")])
def test_keepalive_in_the_modem_takes_whole_minutes_idle_and_its_ranges(idle, interval, count,
                                                                         mechanism):
    far, modem = started()
    assert sock_on(modem).keepalive(idle, interval, count) == mechanism


def test_keepalive_args_are_idle_minutes_interval_seconds_and_count():
    assert bg96.keepalive_args(synka.Keepalive(120, 30, 4)) == "1,2,30,4"
    assert bg96.keepalive_args(synka.Keepalive(90, 30, 4)) is None


def test_modem_keepalive_is_set_before_the_connect_only_when_it_changes_and_off_after():
    far, modem = started()
    for _ in range(2):
        s = sock_on(modem)
        assert s.keepalive(120, 60, 5) == "modem"
        s.connect(("10.0.0.1", 80))
        s.close()
    s = sock_on(modem)
    s.keepalive(60, 30, 3)
    s.connect(("10.0.0.1", 80))
    sock_on(modem).connect(("10.0.0.1", 81))     # no keepalive asked: off again
    sock_on(modem).connect(("10.0.0.1", 82))
    qicfg = [c for c in far.commands if c.startswith(b"AT+QICFG")]
    assert qicfg == [b'AT+QICFG="tcp/keepalive",1,2,60,5', b'AT+QICFG="tcp/keepalive",1,1,30,3',
                     b'AT+QICFG="tcp/keepalive",0']
    assert far.commands.index(qicfg[0]) < far.commands.index(OPEN0)


def test_modem_keepalive_rejected_is_einval_and_sent_again_next_time():
    far, modem = started({b"AT+QICFG=": b"\r\n+CME ERROR: 4\r\n"})
    s = sock_on(modem)
    s.keepalive(120, 60, 5)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.EINVAL
    assert e.args[1] == ('modem rejected AT+QICFG: AT+QICFG="tcp/keepalive",1,2,60,5 -> '
                         "+CME ERROR: 4 (operation not supported)")
    assert s.state == "CLOSED" and modem.links == NO_LINKS
    far.replies[b"AT+QICFG="] = OK
    s = sock_on(modem)
    s.keepalive(120, 60, 5)
    s.connect(("10.0.0.1", 80))
    assert far.commands.count(b'AT+QICFG="tcp/keepalive",1,2,60,5') == 2


def test_keepalive_off_failing_does_not_fail_the_connect():
    far, modem = started()
    modem._keepalive = "1,2,60,5"
    far.replies[b"AT+QICFG="] = b"\r\nERROR\r\n"
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert s.state == "ESTABLISHED" and modem._keepalive == "1,2,60,5"


def test_modem_keepalive_unanswered_is_etimedout(fast_clock):
    far, modem = started({b"AT+QICFG=": None})
    s = sock_on(modem)
    s.keepalive(120, 60, 5)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == 'AT+QICFG="tcp/keepalive",1,2,60,5: no answer within 5000 ms'


def test_keepalive_is_sent_again_after_a_reboot():
    far, modem = started()
    s = sock_on(modem)
    s.keepalive(120, 60, 5)
    s.connect(("10.0.0.1", 80))
    urc(far, modem, b"RDY")
    s = sock_on(modem)
    s.keepalive(120, 60, 5)
    s.connect(("10.0.0.1", 81))
    assert far.commands.count(b'AT+QICFG="tcp/keepalive",1,2,60,5') == 2


# -- connect ------------------------------------------------------------------------------
def test_connect_opens_the_first_free_connection_in_buffer_mode():
    far, modem, s = connected()
    assert far.commands == [OPEN0]
    assert events(s) == ["CONNECT", "CONNECTED"] and s.state == "ESTABLISHED"
    assert modem.links[0].tcp is s.tcp
    s2 = sock_on(modem)
    s2.connect(("example.com", 65535))
    assert far.commands[-1] == b'AT+QIOPEN=1,1,"TCP","example.com",65535,0,0'


@pytest.mark.parametrize("err, code, text, last", [
    (566, errno.ECONNREFUSED, "socket connect failed", "REFUSED"),
    (565, errno.EHOSTUNREACH, "DNS parse failed", "TIMEOUT"),
    (569, errno.ETIMEDOUT, "operation timeout", "TIMEOUT"),
    (563, errno.EADDRINUSE, "socket identity has been used", "TIMEOUT"),
    (561, errno.EHOSTUNREACH, "activate PDP context failed", "TIMEOUT"),
    (570, errno.EHOSTUNREACH, "PDP context broken down", "TIMEOUT"),
    (552, errno.EINVAL, "invalid parameters", "TIMEOUT"),
    (568, errno.EAGAIN, "operation busy", "TIMEOUT"),
    (550, errno.ECONNABORTED, "error", "TIMEOUT")])
def test_qiopen_error_is_the_sockets_error(err, code, text, last):
    far, modem = started({b"AT+QIOPEN=": qiopen(err)})
    s = sock_on(modem)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == code
    assert e.args[1] == "connect to 10.0.0.1:80 failed: +QIOPEN: 0,%d (%s)" % (err, text)
    assert events(s) == ["CONNECT", last] and s.state == "CLOSED"
    assert modem.links == NO_LINKS
    gone = err in (561, 570)   # the context is down though no URC said so
    assert modem.net_open != gone and modem.deact_pending == gone


def test_connect_rejected_by_the_modem_is_eio_and_frees_the_link():
    far, modem = started({b"AT+QIOPEN=": b"\r\n+CME ERROR: 3\r\n"})
    s = sock_on(modem)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.EIO
    assert e.args[1] == ("modem rejected the connect: " + OPEN0.decode()
                         + " -> +CME ERROR: 3 (operation not allowed)")
    assert events(s) == ["CONNECT", "RESET"] and modem.links == NO_LINKS


def test_connect_unanswered_closes_the_connection_it_may_have_opened(fast_clock):
    far, modem = started({b"AT+QIOPEN=": None})
    s = sock_on(modem)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == "connect: " + OPEN0.decode() + ": no answer within 5000 ms"
    assert far.commands[-2:] == [b"AT", b"AT+QICLOSE=0"]   # resynced, then closed
    assert events(s) == ["CONNECT", "TIMEOUT"] and modem.links == NO_LINKS


def test_connect_without_qiopen_in_time_is_etimedout_and_closes_the_connection():
    far, modem = started({b"AT+QIOPEN=": OK})
    s = sock_on(modem, timeout=0.05)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == "connect to 10.0.0.1:80: no +QIOPEN within 50 ms"
    assert far.commands[-1] == b"AT+QICLOSE=0"
    assert events(s) == ["CONNECT", "TIMEOUT"] and modem.links == NO_LINKS


def test_nonblocking_connect_is_told_by_the_qiopen_urc():
    far, modem = started({b"AT+QIOPEN=": OK})
    s = sock_on(modem)
    s.setblocking(False)
    assert oserror(s.connect, ("10.0.0.1", 80)).errno == errno.EINPROGRESS
    assert s.connect_done() is False and s.poll_flags(POLLOUT) == 0
    far.inject(b"\r\n+QIOPEN: 0,0\r\n")
    assert s.connect_done() is True and s.state == "ESTABLISHED"


def test_pdpdeact_during_a_connect_is_econnreset():
    far, modem = started({b"AT+QIOPEN=": OK})
    s = sock_on(modem)
    s.setblocking(False)
    oserror(s.connect, ("10.0.0.1", 80))
    urc(far, modem, b'+QIURC: "pdpdeact",1')
    e = oserror(s.connect_done)
    assert e.errno == errno.ECONNRESET and modem.links == NO_LINKS


def test_connect_waits_for_qiopen_up_to_the_modems_limit_without_a_timeout(fast_clock):
    far, modem = started({b"AT+QIOPEN=": OK})
    s = synsocket.socket(backend=modem)
    t0 = fast_clock.now
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.args[1] == "connect to 10.0.0.1:80: no +QIOPEN within 155000 ms"
    assert 155000 <= fast_clock.now - t0 < 160000


def test_all_twelve_connections_taken_is_enobufs():
    far, modem = started()
    for i in range(bg96.LINKS):
        sock_on(modem).connect(("10.0.0.1", 80 + i))
    assert far.commands[-1] == b'AT+QIOPEN=1,11,"TCP","10.0.0.1",91,0,0'
    e = oserror(sock_on(modem).connect, ("10.0.0.1", 99))
    assert e.errno == errno.ENOBUFS and e.args[1] == "all 12 modem connections are in use"


def test_a_connection_reset_by_the_network_is_closed_on_the_modem_before_reuse():
    far, modem = started()
    socks = [sock_on(modem) for _ in range(bg96.LINKS)]
    for s in socks:
        s.connect(("10.0.0.1", 80))
    urc(far, modem, b'+QIURC: "pdpdeact",1')
    far.commands.clear()
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert far.commands[-2:] == [b"AT+QICLOSE=0", OPEN0]   # else the modem says 563
    assert modem.links[0].tcp is s.tcp


# -- the bearer reopened by a connect ------------------------------------------------------
def test_connect_after_pdpdeact_deactivates_and_reactivates_the_context():
    far, modem = started()
    urc(far, modem, b'+QIURC: "pdpdeact",1')
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert far.commands == [b"AT+CEREG?", b"AT+QIDEACT=1", b"AT+QIACT=1", OPEN0]
    assert modem.net_open and not modem.deact_pending and modem.bearer_reopens == 1
    assert events(s) == ["BEARER_UP", "CONNECT", "CONNECTED"]
    assert "BEARER_UP" in s.tcp.format_history()[0]
    s2 = sock_on(modem)
    s2.connect(("10.0.0.1", 81))
    assert events(s2) == ["CONNECT", "CONNECTED"] and modem.bearer_reopens == 1


def test_connect_after_a_qiopen_561_reopens_the_context():
    far, modem = started({b"AT+QIOPEN=": qiopen(561)})
    oserror(sock_on(modem).connect, ("10.0.0.1", 80))
    far.replies[b"AT+QIOPEN="] = qiopen(0)
    far.commands.clear()
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert far.commands == [b"AT+CEREG?", b"AT+QIDEACT=1", b"AT+QIACT=1", OPEN0]
    assert events(s)[0] == "BEARER_UP"


def test_reopen_after_a_reboot_is_the_whole_bring_up():
    far, modem = started()
    urc(far, modem, b'+QIURC: "pdpdeact",1')
    urc(far, modem, b"RDY")   # nothing left to deactivate after a reboot
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert far.commands == START_COMMANDS + [OPEN0]
    assert events(s) == ["BEARER_UP", "CONNECT", "CONNECTED"]


def test_reopen_failing_every_time_is_ehostunreach():
    far, modem = started()
    modem.reopen_backoff_ms = 1
    urc(far, modem, b'+QIURC: "pdpdeact",1')
    far.replies[b"AT+QIACT=1"] = b"\r\nERROR\r\n"
    far.replies[b"AT+QIACT?"] = OK
    s = sock_on(modem)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.EHOSTUNREACH
    assert "(3 attempts): AT+QIACT=1 failed" in e.args[1]
    assert events(s) == ["BEARER_FAILED"] * 3 and not modem.net_open
    assert far.commands.count(b"AT+QIDEACT=1") == 1   # once, for the dropped context


# -- send ---------------------------------------------------------------------------------
def test_send_writes_the_payload_and_send_ok_takes_it():
    far, modem, s = connected()
    assert s.send(b"hello") == 5
    assert far.commands[-1] == b"AT+QISEND=0,5" and far.payloads == [b"hello"]


def test_send_takes_at_most_1460_bytes_a_time():
    far, modem, s = connected()
    data = bytes(range(256)) * 8
    assert s.send(data) == 1460
    assert far.commands[-1] == b"AT+QISEND=0,1460" and far.payloads == [data[:1460]]


def test_send_fail_on_a_nonblocking_socket_is_eagain():
    far, modem, s = connected({b"AT+QISEND=": qisend(b"SEND FAIL")})
    e = oserror(modem.send, s, memoryview(b"abc"), 0)
    assert e.errno == errno.EAGAIN
    assert e.args[1] == "connection 0: the modem's send buffer is full (SEND FAIL)"
    assert far.commands.count(b"AT+QISEND=0,3") == 1


def test_send_fail_is_tried_again_until_the_buffer_takes_it():
    answers = [qisend(b"SEND FAIL"), qisend(b"SEND FAIL"), qisend()]
    far, modem, s = connected({b"AT+QISEND=": lambda line: answers.pop(0)(line)})
    assert s.send(b"abc") == 3
    assert far.payloads == [b"abc"] * 3


def test_send_fail_for_longer_than_the_timeout_is_etimedout(fast_clock):
    far, modem, s = connected({b"AT+QISEND=": qisend(b"SEND FAIL")})
    e = oserror(modem.send, s, memoryview(b"abc"), 1000)
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == ("connection 0: the modem's send buffer stayed full (SEND FAIL) "
                         "for 1000 ms")


def test_send_fail_then_the_connection_closed_is_econnreset():
    far, modem, s = connected({b"AT+QISEND=": lambda line: far.later(
        b'\r\n+QIURC: "closed",0\r\n') or qisend(b"SEND FAIL")(line)})
    e = oserror(s.send, b"abc")
    assert e.errno == errno.ECONNRESET
    assert e.args[1] == "connection 0 closed while its send waited (SEND FAIL)"


def test_send_error_is_a_reset_naming_the_reply():
    far, modem, s = connected({b"AT+QISEND=": qisend(b"ERROR")})
    e = oserror(s.send, b"abc")
    assert e.errno == errno.ECONNRESET
    assert e.args[1] == "connection 0: AT+QISEND=0,3 -> ERROR"


def test_send_refused_before_the_prompt_is_a_reset():
    far, modem, s = connected({b"AT+QISEND=": b"\r\nERROR\r\n"})
    assert oserror(s.send, b"abc").errno == errno.ECONNRESET
    assert far.payloads == []


def test_send_without_a_prompt_times_out_after_10_s(fast_clock):
    far, modem, s = connected({b"AT+QISEND=": None})
    s.settimeout(None)
    e = oserror(s.send, b"abc")
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == ("connection 0: AT+QISEND=0,3: no answer within 10000 ms "
                         "(no '>' prompt)")


def test_send_after_the_peer_closed_is_enotconn_without_a_command():
    far, modem, s = connected()
    urc(far, modem, b'+QIURC: "closed",0')
    n = len(far.commands)
    e = oserror(s.send, b"abc")
    assert e.errno == errno.ENOTCONN and len(far.commands) == n


# -- receive ------------------------------------------------------------------------------
def test_recv_asks_for_what_fits_and_reads_exactly_that():
    far, modem, s = connected({b"AT+QIRD=": qird(b"hello")})
    urc(far, modem, b'+QIURC: "recv",0')
    assert read(modem, s, 64) == b"hello"
    assert far.commands[-1] == b"AT+QIRD=0,64"
    assert not modem.links[0].rx_pending   # a short read emptied the modem's buffer


def test_recv_asks_for_at_most_1500_bytes_and_a_full_read_stays_readable():
    data = bytes(range(256)) * 6
    far, modem, s = connected({b"AT+QIRD=": qird(data[:1500])})
    buf = bytearray(4096)
    assert s.recv_into(buf) == 1500 and buf[:1500] == data[:1500]
    assert far.commands[-1] == b"AT+QIRD=0,1500"
    assert modem.links[0].rx_pending
    assert modem.at.engine.parser.max_payload == 1500


def test_recv_binary_data_with_line_ends_and_ok_inside_is_exact():
    data = b"\r\nOK\r\n+QIURC: \"closed\",0\r\n\x00\xff>"
    far, modem, s = connected({b"AT+QIRD=": qird(data)})
    assert read(modem, s, 64) == data and s.state == "ESTABLISHED"


def test_nonblocking_recv_with_nothing_is_eagain_after_one_read():
    far, modem, s = connected()
    n = len(far.commands)
    e = oserror(read, modem, s, 10, 0)
    assert e.errno == errno.EAGAIN and far.commands[n:] == [b"AT+QIRD=0,10"]


def test_recv_with_nothing_polls_then_times_out():
    far, modem, s = connected()
    e = oserror(read, modem, s, 10, 50)
    assert e.errno == errno.ETIMEDOUT and e.args[1] == "no data on connection 0"
    assert far.commands.count(b"AT+QIRD=0,10") >= 2


def test_recv_wakes_on_the_recv_urc():
    reads = [qird(b""), qird(b"late")]
    far, modem, s = connected({b"AT+QIRD=": lambda line: reads.pop(0)}, poll_ms=60000)
    far.later(b'\r\n+QIURC: "recv",0\r\n')
    s.settimeout(5)
    assert s.recv(10) == b"late"


@pytest.mark.parametrize("reply", [
    b"\r\n+QIRD: 2,0\r\nhi\r\n" + OK,       # the query's form
    b"\r\n+QIRD: 20\r\n" + bytes(20) + b"\r\n" + OK,   # more than asked
    b"\r\n+QIRD: x\r\nhi\r\n" + OK,         # no count
    b"\r\n+QIRD: 2\r\nhiX\r\n" + OK,        # a byte more than announced
    b"\r\n+QIRD: 3\r\nhi\r\n" + OK,         # a byte less
    OK])                                     # no header at all
def test_recv_framing_that_does_not_add_up_is_eio_and_resyncs(reply):
    far, modem, s = connected({b"AT+QIRD=": reply})
    e = oserror(read, modem, s, 10)
    assert e.errno == errno.EIO
    assert e.args[1].startswith("connection 0: bad +QIRD framing (asked 10 bytes; header ")
    assert e.args[1].endswith("; data may be lost") and "resync" not in e.args[1]
    assert modem.at.needs_resync and modem.links[0].rx_pending
    assert s.state == "ESTABLISHED"
    far.replies[b"AT+QIRD="] = qird(b"ok")
    assert read(modem, s, 10) == b"ok"
    assert b"AT" in far.commands[-3:]        # resynced before the next read


def test_recv_error_is_eio():
    far, modem, s = connected({b"AT+QIRD=": b"\r\n+CME ERROR: 3\r\n"})
    e = oserror(read, modem, s, 10)
    assert e.errno == errno.EIO
    assert e.args[1] == "connection 0: AT+QIRD=0,10 -> +CME ERROR: 3 (operation not allowed)"


def test_recv_cut_short_marks_the_connection_readable(fast_clock):
    far, modem, s = connected({b"AT+QIRD=": b"\r\n+QIRD: 10\r\nhel"})
    e = oserror(read, modem, s, 64)
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == ("connection 0: AT+QIRD=0,64: no answer within 5000 ms (payload "
                         "cut short, 3 bytes buffered)")
    assert modem.links[0].rx_pending and modem.at.needs_resync


def test_peer_close_with_data_still_in_the_modem_reads_it_all_then_eof():
    reads = [qird(b"bye "), qird(b"for now"), qird(b"")]
    far, modem, s = connected({b"AT+QIRD=": lambda line: reads.pop(0)})
    urc(far, modem, b'+QIURC: "recv",0', b'+QIURC: "closed",0')
    assert s.poll_flags(POLLIN) == POLLIN | POLLHUP
    assert read(modem, s, 4) == b"bye "
    assert read(modem, s, 64) == b"for now"
    assert read(modem, s, 64) == b""      # +QIRD: 0 after the close: end of stream
    assert s.state == "CLOSE_WAIT"
    s.close()
    assert far.commands[-1] == b"AT+QICLOSE=0"
    assert s.tcp.states() == PASSIVE_CLOSE and modem.links == NO_LINKS


def test_recv_after_pdpdeact_is_econnreset():
    far, modem, s = connected()
    urc(far, modem, b'+QIURC: "pdpdeact",1')
    e = oserror(s.recv, 10)
    assert e.errno == errno.ECONNRESET and e.args[1] == "connection reset (connection 0)"


# -- close --------------------------------------------------------------------------------
def test_active_close_is_complete_when_qiclose_answers_ok():
    far, modem, s = connected()
    s.close()
    assert far.commands[-1] == b"AT+QICLOSE=0"
    assert s.tcp.states() == ACTIVE_CLOSE and modem.links == NO_LINKS


def test_close_error_of_an_unknown_connection_resets():
    far, modem, s = connected({b"AT+QICLOSE=": b"\r\nERROR\r\n"})
    s.close()
    assert events(s)[-2:] == ["CLOSE", "RESET"] and s.state == "CLOSED"
    assert modem.links == NO_LINKS


def test_passive_close_the_modem_had_released_is_still_complete():
    far, modem, s = connected({b"AT+QICLOSE=": b"\r\nERROR\r\n"})
    urc(far, modem, b'+QIURC: "closed",0')
    s.close()
    assert events(s)[-2:] == ["CLOSE", "FIN_ACKED"] and s.state == "CLOSED"


def test_close_unanswered_gives_up_after_15_s_as_timed_out(fast_clock):
    far, modem, s = connected({b"AT+QICLOSE=": None})
    t0 = fast_clock.now
    s.close()
    assert 15000 <= fast_clock.now - t0 < 17000
    assert events(s)[-2:] == ["CLOSE", "TIMEOUT"] and modem.links == NO_LINKS


def test_close_of_a_connection_reset_by_the_network_tells_the_modem_once():
    far, modem, s = connected()
    urc(far, modem, b'+QIURC: "pdpdeact",1')
    s.close()
    assert far.commands[-1] == b"AT+QICLOSE=0" and far.commands.count(b"AT+QICLOSE=0") == 1
    assert events(s) == ["CONNECT", "CONNECTED", "RESET"] and modem.links == NO_LINKS


def test_close_of_a_never_connected_socket_sends_nothing():
    far, modem = started()
    sock_on(modem).close()
    assert far.commands == []


# -- construction ---------------------------------------------------------------------------
def test_modem_defaults_and_the_dialect_table():
    modem = bg96.BG96(Far())
    assert modem.apn == "" and modem.pin is None and modem.poll_ms == 500
    assert modem.links == NO_LINKS and len(NO_LINKS) == 12 and modem.name == "bg96"
    assert modem.connect_limit_ms == 155000 and modem.RESET_COMMAND == b"AT+CFUN=1,1"
    assert modems.driver("bg96") is bg96.BG96
    assert modems.dialect_of(b"BG96") == modems.dialect_of(b"EG91") == "bg96"


def test_channel_can_be_given():
    from synack.at.driver import Channel
    from synack.at.engine import Engine
    from synack.at.parser import Parser
    chan = Channel(Far(), engine=Engine(Parser(urcs=bg96.URCS, framed=bg96.FRAMED,
                                               extra_finals=bg96.FINALS), bg96.SUCCESS))
    modem = bg96.BG96(None, apn="internet", channel=chan)
    assert modem.at is chan
    modem.start(register_timeout_ms=100)
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert s.send(b"x") == 1
