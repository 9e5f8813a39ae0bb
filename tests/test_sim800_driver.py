"""The SIM800 driver (firmware/synack/modems/sim800.py) against a scripted modem that
answers as the SIM800 AT manual says, in-process (tests/farmodem.py): the bring-up and
each of its failures, every URC (the unprefixed ``<n>, CLOSED`` ones included, and
garbled ones), connect outcomes (CONNECT OK / CONNECT FAIL / ALREADY CONNECT / ERROR /
no answer), sends in quick send mode (DATA ACCEPT with its count, short or garbled;
SEND OK / SEND FAIL / ERROR), reads and their framing, close, the bearer reopened after
``+PDP: DEACT``, and DNS by ``+CDNSGIP`` URC."""

import errno

import pytest

from synack import keepalive
from synack import socket as synsocket
from synack.at.driver import Channel
from synack.at.engine import Engine
from synack.at.errors import CommandError
from synack.at.parser import Parser
from synack.modems import base, sim800

import farmodem
from farmodem import (ACTIVE_CLOSE, OK, PASSIVE_CLOSE, POLLERR, POLLHUP, POLLIN, arg,
                      events, oserror, prompted, read, sock_on, urc)


def cipstart(word=b"CONNECT OK"):
    return lambda line: OK + b"\r\n%d, %s\r\n" % (arg(line, 0), word)


def cipsend(accepted=None):
    """Quick send: ``DATA ACCEPT:<n>,<length>`` after the payload, the modem taking at
    most ``accepted`` bytes of it (None: all)."""
    return prompted(b"\r\n> ", lambda link, size: b"\r\nDATA ACCEPT:%d,%d\r\n"
                    % (link, min(size, accepted or size)))


def cipsend_result(result):
    """``<n>, SEND OK`` / ``<n>, SEND FAIL`` after the payload (normal mode's words)."""
    return prompted(b"\r\n> ", lambda link, size: b"\r\n%d, %s\r\n" % (link, result))


def cipsend_says(*lines):
    """``lines`` after the payload, whatever the send."""
    return prompted(b"\r\n> ", lambda link, size: b"".join(
        b"\r\n" + line + b"\r\n" for line in lines))


def cipclose(line):
    return b"\r\n%d, CLOSE OK\r\n" % arg(line, 0)


def rxget(data, rest=0):
    return lambda line: (b"\r\n+CIPRXGET: 2,%d,%d,%d\r\n" % (int(line.split(b",")[1]),
                                                             len(data), rest)
                         + data + b"\r\nOK\r\n")


BEARER = [b"AT+CIPSHUT", b"AT+CIPMUX=1", b"AT+CIPRXGET=1", b'AT+CSTT="internet","",""',
          b"AT+CIICR", b"AT+CIFSR"]
START_COMMANDS = farmodem.START + [b"AT+CREG?", b"AT+CIPQSEND=1"] + BEARER
BRING_UP = {
    **farmodem.READY,
    b"AT+CSQ": b"\r\n+CSQ: 17,0\r\n" + OK,
    b"AT+CEREG?": b"\r\nERROR\r\n",            # AT+CEREG? (LTE) is an ERROR on 2G
    b"AT+CIPQSEND=1": OK,
    b"AT+CIPSHUT": b"\r\nSHUT OK\r\n",
    b"AT+CIPMUX=1": OK, b"AT+CIPRXGET=1": OK, b'AT+CSTT="internet","",""': OK,
    b"AT+CIICR": OK, b"AT+CIFSR": b"\r\n10.64.0.2\r\n",
    b"AT+CIPSTART=": cipstart(),
    b"AT+CIPSEND=": cipsend(),
    b"AT+CIPCLOSE=": cipclose,
}


class Far(farmodem.Far):
    DEFAULTS = BRING_UP


fast_clock = farmodem.clock_fixture()
modem_on, started, connected = farmodem.helpers(Far, sim800.SIM800)


# -- bring-up ---------------------------------------------------------------------------
def test_start_brings_the_modem_up_in_the_manuals_order():
    far = Far()
    modem = modem_on(far)
    modem.start(register_timeout_ms=100)
    assert far.commands == START_COMMANDS
    assert modem.net_open and modem.local_ip == "10.64.0.2" and modem.rssi_dbm == -79
    # AT+CIFSR's address needs no OK: nothing is left over, the next command pairs up
    assert modem.at.engine.unexpected == 0
    assert not modem.at.needs_resync and not modem.at.engine.busy
    sock_on(modem).connect(("10.0.0.1", 80))
    assert far.commands[-1] == b'AT+CIPSTART=0,"TCP","10.0.0.1",80'


def test_start_sets_quick_send_after_registration_before_the_bearer():
    far = Far()
    modem_on(far).start(register_timeout_ms=100)
    assert far.commands.count(b"AT+CIPQSEND=1") == 1
    i = far.commands.index(b"AT+CIPQSEND=1")
    assert far.commands[i - 1] == b"AT+CREG?" and far.commands[i + 1] == b"AT+CIPSHUT"


def test_quick_send_refused_stops_the_bring_up_naming_it():
    far = Far({b"AT+CIPQSEND=1": b"\r\nERROR\r\n"})
    modem = modem_on(far)
    with pytest.raises(base.SettingRefused) as exc:
        modem.start(register_timeout_ms=100)
    assert str(exc.value) == "modem refused a setting: AT+CIPQSEND=1 -> ERROR"
    assert b"AT+CIPSHUT" not in far.commands and not modem.net_open


def test_start_enters_the_pin_when_the_sim_asks_for_it():
    far = Far({b"AT+CPIN?": b"\r\n+CPIN: SIM PIN\r\n" + OK})
    far.replies[b'AT+CPIN="1234"'] = lambda line: (
        far.replies.__setitem__(b"AT+CPIN?", b"\r\n+CPIN: READY\r\n" + OK) or OK)
    modem = sim800.SIM800(far, apn="internet", pin="1234", poll_ms=5)
    modem.start(register_timeout_ms=100)
    assert b'AT+CPIN="1234"' in far.commands and modem.net_open


@pytest.mark.parametrize("replies, error, text", [
    ({b"AT+CPIN?": b"\r\n+CME ERROR: 10\r\n"}, base.NoSIM, "no SIM card"),
    ({b"AT+CPIN?": b"\r\n+CPIN: SIM PIN\r\n" + OK}, base.SIMLocked, "SIM is locked"),
    ({b"AT+CREG?": b"\r\n+CREG: 0,3\r\n" + OK}, base.RegistrationDenied, "denied"),
    ({b"AT+CREG?": b"\r\n+CREG: 0,2\r\n" + OK}, base.NotRegistered, "stat 2"),
])
def test_bring_up_failures_stop_before_the_bearer(replies, error, text):
    far = Far(replies)
    modem = modem_on(far)
    with pytest.raises(error) as exc:
        modem.start(register_timeout_ms=100)
    assert text in str(exc.value)
    assert b"AT+CIPSHUT" not in far.commands and not modem.net_open


@pytest.mark.parametrize("step, answer, text", [
    (b"AT+CIICR", b"\r\nERROR\r\n", "at AT+CIICR: AT+CIICR -> ERROR"),
    (b'AT+CSTT="internet","",""', b"\r\n+CME ERROR: 3\r\n", "at AT+CSTT="),
    (b"AT+CIPMUX=1", b"\r\nERROR\r\n", "at AT+CIPMUX=1: AT+CIPMUX=1 -> ERROR"),
    (b"AT+CIFSR", b"\r\nERROR\r\n", "at AT+CIFSR: AT+CIFSR -> ERROR"),
])
def test_bearer_step_failing_is_a_pdp_error_naming_it(step, answer, text):
    far = Far({step: answer})
    modem = modem_on(far)
    with pytest.raises(base.PDPError) as exc:
        modem.start(register_timeout_ms=100)
    assert text in str(exc.value) and "check the APN 'internet'" in str(exc.value)
    assert far.commands[-1] == step and not modem.net_open


def test_ciicr_is_given_85_s(fast_clock):
    far = Far({b"AT+CIICR": None})
    modem = modem_on(far)
    with pytest.raises(base.PDPError) as exc:
        modem.bearer_open()
    assert "AT+CIICR: no answer within 85000 ms" in str(exc.value)


def test_cifsr_without_an_address_is_a_pdp_error():
    far = Far({b"AT+CIFSR": b"\r\nCall Ready\r\n\r\n+CIFSR: 1\r\n"})
    modem = modem_on(far)
    with pytest.raises(base.PDPError) as exc:
        modem.bearer_open()
    assert str(exc.value) == "AT+CIFSR gave no address: [b'+CIFSR: 1']"
    assert not modem.net_open


def test_cipshut_refused_is_a_pdp_error():
    far = Far({b"AT+CIPSHUT": b"\r\nERROR\r\n"})
    with pytest.raises(base.PDPError) as exc:
        modem_on(far).bearer_open()
    assert str(exc.value) == "AT+CIPSHUT failed: AT+CIPSHUT -> ERROR"
    assert far.commands == [b"AT+CIPSHUT"]


def test_bearer_close_is_cipshut_and_resets_every_link():
    far, modem, s = connected()
    modem.bearer_close()
    assert far.commands[-1] == b"AT+CIPSHUT" and not modem.net_open
    assert s.state == "CLOSED" and events(s)[-1] == "RESET"


# -- URCs -----------------------------------------------------------------------------------
def test_informational_urcs_are_consumed_quietly():
    far, modem = started()
    n = modem.at.engine.urcs
    urc(far, modem, b"Call Ready", b"SMS Ready", b"+CFUN: 1", b"+CPIN: READY",
        b"+CREG: 1", b"+CGREG: 1")
    assert modem.at.engine.urcs == n + 6
    assert modem.at.engine.unexpected == 0 and modem.at.engine.malformed == 0
    assert modem.net_open and modem.reboots == 0


def test_data_urc_marks_only_its_link_readable():
    far, modem, s = connected()
    sock_on(modem).connect(("10.0.0.2", 81))
    urc(far, modem, b"+CIPRXGET: 1,1", b"+CIPRXGET: 1,O", b"+CIPRXGET: 1,9",
        b"+CIPRXGET: 1,")
    assert modem.links[1].rx_pending and not modem.links[0].rx_pending
    assert modem.at.engine.malformed == 0


@pytest.mark.parametrize("line", [b"0, CLOSED", b"0,CLOSED"])
def test_closed_is_the_peers_fin(line):
    far, modem, s = connected()
    urc(far, modem, line)
    assert modem.links[0].peer_closed and events(s)[-1] == "PEER_FIN"
    assert s.state == "CLOSE_WAIT"


def test_garbled_or_other_link_events_change_nothing():
    far, modem, s = connected()
    urc(far, modem, b"1, CLOSED", b"0,", b"0, CLOSE", b"0, CLOSEDX", b"5,CLOSED",
        b"7, CLOSED", b"0, \xff")
    assert s.state == "ESTABLISHED" and not modem.links[0].peer_closed
    assert modem.links[0].open_err == 0
    assert modem.at.engine.malformed == 0


def test_link_events_never_become_a_commands_reply():
    far, modem, s = connected({b"AT+CSQ": b"\r\n0, CLOSED\r\n\r\n+CSQ: 9,0\r\n" + OK})
    assert modem.at.command(b"AT+CSQ").lines == [b"+CSQ: 9,0"]
    assert s.state == "CLOSE_WAIT"


def test_closed_in_the_same_read_as_connect_ok_closes_after_the_handshake():
    far, modem = started({b"AT+CIPSTART=": OK + b"\r\n0, CONNECT OK\r\n\r\n0, CLOSED\r\n"})
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert events(s) == ["CONNECT", "CONNECTED", "PEER_FIN"]


def test_pdp_deact_resets_every_link_and_the_bearer():
    far, modem, s = connected()
    s2 = sock_on(modem)
    s2.connect(("10.0.0.2", 81))
    urc(far, modem, b"+PDP: DEACT")
    assert not modem.net_open and modem.reboots == 0
    for sock in (s, s2):
        assert sock.state == "CLOSED" and events(sock)[-1] == "RESET"


def test_rdy_counts_a_reboot_and_loses_the_network():
    far, modem, s = connected()
    urc(far, modem, b"RDY")
    urc(far, modem, b"RDY")
    assert modem.reboots == 2 and not modem.net_open
    assert s.state == "CLOSED" and events(s)[-1] == "RESET"


# -- DNS --------------------------------------------------------------------------------------
def test_ipv4_literal_resolves_without_asking_the_modem():
    far, modem = started()
    assert modem.getaddrinfo("10.1.2.3", 8080) == [(2, 1, 6, "", ("10.1.2.3", 8080))]
    assert far.commands == []


@pytest.mark.parametrize("later", [False, True])
def test_name_resolves_from_the_urc_after_the_ok(later):
    answer = b'\r\n+CDNSGIP: 1,"Example.com","93.184.216.34","10.0.0.9"\r\n'
    far, modem = started({b"AT+CDNSGIP=": OK if later else OK + answer})
    if later:
        far.later(answer)
    assert modem.getaddrinfo("example.com", 443) == [(2, 1, 6, "", ("93.184.216.34", 443))]
    assert far.commands == [b'AT+CDNSGIP="example.com"']


def test_an_answer_before_the_ok_is_taken_too():
    far, modem = started({b"AT+CDNSGIP=": b'\r\n+CDNSGIP: 1,"h","10.9.8.7"\r\n' + OK})
    assert modem.getaddrinfo("h", 80)[0][4] == ("10.9.8.7", 80)


def test_a_late_answer_for_another_name_is_not_taken():
    far, modem = started({b"AT+CDNSGIP=": OK + b'\r\n+CDNSGIP: 1,"old","1.1.1.1"\r\n'})
    far.later(b'\r\n+CDNSGIP: 1,"new","2.2.2.2"\r\n')
    assert modem.getaddrinfo("new", 80)[0][4] == ("2.2.2.2", 80)


def test_dns_failure_is_ehostunreach_with_the_modems_code():
    far, modem = started({b"AT+CDNSGIP=": OK + b"\r\n+CDNSGIP: 0,8\r\n"})
    e = oserror(modem.getaddrinfo, "nowhere.example", 80)
    assert e.errno == errno.EHOSTUNREACH
    assert e.args[1] == "DNS lookup of nowhere.example failed: +CDNSGIP: 0,8"


def test_dns_command_refused_is_ehostunreach():
    far, modem = started({b"AT+CDNSGIP=": b"\r\nERROR\r\n"})
    e = oserror(modem.getaddrinfo, "x.example", 80)
    assert e.errno == errno.EHOSTUNREACH
    assert e.args[1] == 'DNS lookup of x.example failed: AT+CDNSGIP="x.example" -> ERROR'


def test_dns_malformed_answer_is_ehostunreach_quoting_it():
    far, modem = started({b"AT+CDNSGIP=": OK + b'\r\n+CDNSGIP: 1,"x.example","1.2.3"\r\n'})
    e = oserror(modem.getaddrinfo, "x.example", 80)
    assert e.errno == errno.EHOSTUNREACH
    assert e.args[1] == ("DNS lookup of x.example failed: malformed reply "
                         "b'+CDNSGIP: 1,\"x.example\",\"1.2.3\"'")


def test_dns_without_an_answer_times_out_after_30_s(fast_clock):
    far, modem = started({b"AT+CDNSGIP=": OK})
    t0 = fast_clock.now
    e = oserror(modem.getaddrinfo, "slow.example", 80)
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == "DNS lookup of slow.example: no +CDNSGIP within 30 s"
    assert 30000 <= fast_clock.now - t0 < 32000


def test_dns_command_unanswered_is_etimedout(fast_clock):
    far, modem = started({b"AT+CDNSGIP=": None})
    e = oserror(modem.getaddrinfo, "x.example", 80)
    assert e.errno == errno.ETIMEDOUT and "no answer within 5000 ms" in e.args[1]


# -- keepalive in the modem: AT+CIPTKA (seconds) ----------------------------------------------
@pytest.mark.parametrize("idle, interval, count, mechanism", [
    (30, 30, 1, "modem"), (7200, 600, 9, "modem"), (29, 30, 1, "probe"),
    (7201, 30, 1, "probe"), (30, 29, 1, "probe"), (30, 601, 1, "probe"),
    (30, 30, 10, "probe"), (7200, 75, 10, "probe")])
def test_keepalive_in_the_modem_takes_its_ranges(idle, interval, count, mechanism):
    far, modem = started()
    assert sock_on(modem).keepalive(idle, interval, count) == mechanism


def test_modem_keepalive_is_set_before_the_connect_and_only_when_it_changes():
    far, modem = started({b"AT+CIPTKA=": OK})
    for _ in range(2):
        s = sock_on(modem)
        s.keepalive(120, 60, 5)
        s.connect(("10.0.0.1", 80))
        s.close()
    s = sock_on(modem)
    s.keepalive(60, 30, 3)
    s.connect(("10.0.0.1", 80))
    assert [c for c in far.commands if c.startswith(b"AT+CIPTKA")] == [
        b"AT+CIPTKA=1,120,60,5", b"AT+CIPTKA=1,60,30,3"]
    assert far.commands.index(b"AT+CIPTKA=1,120,60,5") < far.commands.index(
        b'AT+CIPSTART=0,"TCP","10.0.0.1",80')


def test_modem_keepalive_rejected_is_einval_and_sent_again_next_time():
    far, modem = started({b"AT+CIPTKA=": b"\r\nERROR\r\n"})
    s = sock_on(modem)
    s.keepalive(120, 60, 5)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.EINVAL
    assert e.args[1] == "modem rejected AT+CIPTKA: AT+CIPTKA=1,120,60,5 -> ERROR"
    far.replies[b"AT+CIPTKA="] = OK
    s = sock_on(modem)
    s.keepalive(120, 60, 5)
    s.connect(("10.0.0.1", 80))
    assert far.commands.count(b"AT+CIPTKA=1,120,60,5") == 2


def test_modem_keepalive_unanswered_is_etimedout(fast_clock):
    far, modem = started({b"AT+CIPTKA=": None})
    s = sock_on(modem)
    s.keepalive(120, 60, 5)
    assert oserror(s.connect, ("10.0.0.1", 80)).errno == errno.ETIMEDOUT


def test_default_keepalive_is_the_applications_probe():
    far, modem = started()
    assert modem.keepalive_mechanism(keepalive.Keepalive()) == "probe"


# -- connect --------------------------------------------------------------------------------
def test_connect_opens_the_first_free_link_and_logs_the_handshake():
    far, modem, s = connected()
    assert far.commands == [b'AT+CIPSTART=0,"TCP","10.0.0.1",80']
    assert events(s) == ["CONNECT", "CONNECTED"] and s.state == "ESTABLISHED"
    s2 = sock_on(modem)
    s2.connect(("10.0.0.2", 65535))
    assert far.commands[-1] == b'AT+CIPSTART=1,"TCP","10.0.0.2",65535'
    assert modem.links[1].tcp is s2.tcp


def test_connect_fail_is_refused():
    far, modem = started({b"AT+CIPSTART=": cipstart(b"CONNECT FAIL")})
    s = sock_on(modem)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.ECONNREFUSED
    assert e.args[1] == ("connect to 10.0.0.1:80 failed: 0, CONNECT FAIL (refused, "
                         "unreachable or timed out)")
    assert s.tcp.states() == ["CLOSED", "SYN_SENT", "CLOSED"] and events(s)[-1] == "REFUSED"
    assert modem.links == [None] * sim800.LINKS
    assert b"AT+CIPCLOSE=0" not in far.commands


def test_already_connect_closes_the_stale_link_and_is_eaddrinuse():
    far, modem = started({b"AT+CIPSTART=": cipstart(b"ALREADY CONNECT")})
    s = sock_on(modem)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.EADDRINUSE
    assert e.args[1].startswith("connect to 10.0.0.1:80 failed: 0, ALREADY CONNECT")
    assert far.commands[-1] == b"AT+CIPCLOSE=0"
    assert events(s) == ["CONNECT", "TIMEOUT"] and modem.links == [None] * sim800.LINKS


def test_connect_rejected_by_the_modem_is_eio_and_frees_the_link():
    far, modem = started({b"AT+CIPSTART=": b"\r\nERROR\r\n"})
    s = sock_on(modem)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.EIO
    assert e.args[1] == ('modem rejected the connect: AT+CIPSTART=0,"TCP","10.0.0.1",80 '
                         '-> ERROR')
    assert events(s) == ["CONNECT", "RESET"] and modem.links == [None] * sim800.LINKS


def test_connect_unanswered_closes_the_link_it_may_have_opened(fast_clock):
    far, modem = started({b"AT+CIPSTART=": None})
    s = sock_on(modem)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.ETIMEDOUT
    assert far.commands[-2:] == [b"AT", b"AT+CIPCLOSE=0"]   # resynced, then closed
    assert events(s) == ["CONNECT", "TIMEOUT"] and modem.links == [None] * sim800.LINKS


def test_connect_without_its_outcome_in_time_is_etimedout_and_closes_the_link():
    far, modem = started({b"AT+CIPSTART=": OK})
    s = sock_on(modem, timeout=0.05)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == "connect to 10.0.0.1:80: no <n>, CONNECT within 50 ms"
    assert far.commands[-1] == b"AT+CIPCLOSE=0" and events(s) == ["CONNECT", "TIMEOUT"]


def test_connect_waits_up_to_the_modems_limit_without_a_timeout(fast_clock):
    far, modem = started({b"AT+CIPSTART=": OK})
    s = synsocket.socket(backend=modem)
    t0 = fast_clock.now
    assert oserror(s.connect, ("10.0.0.1", 80)).errno == errno.ETIMEDOUT
    assert 80000 <= fast_clock.now - t0 < 90000


def test_nonblocking_connect_is_told_by_the_urc():
    far, modem = started({b"AT+CIPSTART=": OK})
    s = sock_on(modem)
    s.setblocking(False)
    assert oserror(s.connect, ("10.0.0.1", 80)).errno == errno.EINPROGRESS
    assert s.connect_done() is False
    far.inject(b"\r\n0, CONNECT OK\r\n")
    assert s.connect_done() is True and s.state == "ESTABLISHED"


def test_all_six_links_taken_is_enobufs():
    far, modem = started()
    for i in range(sim800.LINKS):
        sock_on(modem).connect(("10.0.0.1", 80 + i))
    assert far.commands[-1] == b'AT+CIPSTART=5,"TCP","10.0.0.1",85'
    e = oserror(sock_on(modem).connect, ("10.0.0.1", 99))
    assert e.errno == errno.ENOBUFS and e.args[1] == "all 6 modem links are in use"


# -- the bearer reopened by a connect ---------------------------------------------------------
def test_connect_reopens_the_bearer_after_pdp_deact():
    far, modem = started()
    urc(far, modem, b"+PDP: DEACT")
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert far.commands == [b"AT+CEREG?", b"AT+CREG?"] + BEARER + [
        b'AT+CIPSTART=0,"TCP","10.0.0.1",80']
    assert events(s) == ["BEARER_UP", "CONNECT", "CONNECTED"]
    assert modem.net_open and modem.bearer_reopens == 1
    s2 = sock_on(modem)
    s2.connect(("10.0.0.1", 81))
    assert events(s2) == ["CONNECT", "CONNECTED"] and modem.bearer_reopens == 1


def test_reopen_failing_is_ehostunreach_after_its_attempts(fast_clock):
    far, modem = started()
    urc(far, modem, b"+PDP: DEACT")
    far.replies[b"AT+CIICR"] = b"\r\nERROR\r\n"
    s = sock_on(modem, timeout=None)
    e = oserror(s.connect, ("10.0.0.1", 80))
    assert e.errno == errno.EHOSTUNREACH
    assert "(3 attempts)" in e.args[1] and "AT+CIICR -> ERROR" in e.args[1]
    assert events(s) == ["BEARER_FAILED"] * 3 and far.commands.count(b"AT+CIICR") == 3


def test_reopen_after_a_reboot_is_the_whole_bring_up():
    far, modem = started()
    urc(far, modem, b"RDY")
    s = sock_on(modem)
    s.connect(("10.0.0.1", 80))
    assert far.commands == START_COMMANDS + [b'AT+CIPSTART=0,"TCP","10.0.0.1",80']


def test_reset_is_cfun_1_1_and_waits_for_rdy():
    far, modem = started({b"AT+CFUN=1,1": OK + b"\r\nRDY\r\n"})
    modem.reset(wait_ms=100)
    assert far.commands == [b"AT+CFUN=1,1"] and modem.reboots == 1


# -- send -------------------------------------------------------------------------------------
def test_send_returns_on_data_accept_with_its_count():
    far, modem, s = connected()
    assert s.send(b"hello") == 5
    assert far.commands[-1] == b"AT+CIPSEND=0,5" and far.payloads == [b"hello"]
    assert not modem.at.needs_resync and modem.at.engine.unexpected == 0


def test_a_short_data_accept_count_is_what_send_returns():
    far, modem, s = connected({b"AT+CIPSEND=": cipsend(accepted=3)})
    assert s.send(b"hello") == 3
    assert far.payloads == [b"hello"]


def test_sendall_sends_again_what_the_modem_did_not_accept():
    far, modem, s = connected({b"AT+CIPSEND=": cipsend(accepted=2)})
    s.sendall(b"hello")
    assert far.commands[-3:] == [b"AT+CIPSEND=0,5", b"AT+CIPSEND=0,3", b"AT+CIPSEND=0,1"]
    assert far.payloads == [b"hello", b"llo", b"o"]


@pytest.mark.parametrize("line", [b"DATA ACCEPT: 0,5", b"DATA ACCEPT:0, 5"])
def test_data_accept_with_spaces_is_taken(line):
    # the SIM900 manual writes "DATA ACCEPT: <n>,<length>"
    far, modem, s = connected({b"AT+CIPSEND=": cipsend_says(line)})
    assert s.send(b"hello") == 5


@pytest.mark.parametrize("line", [
    b"DATA ACCEPT:1,5",        # another link
    b"DATA ACCEPT:0,6",        # more than was sent
    b"DATA ACCEPT:0,0",        # nothing: sendall would spin
    b"DATA ACCEPT:0,5x", b"DATA ACCEPT:0", b"DATA ACCEPT:0,5,5", b"DATA ACCEPT:",
    b"DATA ACCEPT:O,5", b"DATA ACCEPT:0,-5"])
def test_a_garbled_data_accept_is_eio_and_the_next_send_resyncs(line):
    far, modem, s = connected({b"AT+CIPSEND=": cipsend_says(line)})
    e = oserror(s.send, b"hello")
    assert e.errno == errno.EIO
    assert e.args[1] == ("link 0: garbled or foreign %r after a send of 5 bytes; data may "
                         "be lost" % line)
    assert modem.at.needs_resync and s.state == "ESTABLISHED"
    far.replies[b"AT+CIPSEND="] = cipsend()
    assert s.send(b"again") == 5
    assert far.commands[-2:] == [b"AT", b"AT+CIPSEND=0,5"] and not modem.at.needs_resync


def test_urcs_during_a_send_are_handled_and_do_not_end_it():
    far, modem, s = connected({b"AT+CIPSEND=": cipsend_says(b"+CIPRXGET: 1,0",
                                                           b"DATA ACCEPT:0,2")})
    assert s.send(b"hi") == 2 and modem.links[0].rx_pending


@pytest.mark.parametrize("result", [b"0, SEND OK", b"0,SEND OK"])
def test_send_ok_of_normal_mode_still_counts_every_byte(result):
    # a modem that lost the setting (rebooted unseen) answers as in normal mode
    far, modem, s = connected({b"AT+CIPSEND=": cipsend_says(result)})
    assert s.send(b"hi") == 2 and not modem.at.needs_resync


def test_send_takes_at_most_1460_bytes_a_time():
    far, modem, s = connected()
    assert s.send(bytes(3000)) == 1460
    assert far.commands[-1] == b"AT+CIPSEND=0,1460"


def test_send_of_nothing_sends_nothing():
    far, modem, s = connected()
    assert modem.send(s, memoryview(b""), None) == 0
    assert far.commands[-1].startswith(b"AT+CIPSTART")


@pytest.mark.parametrize("answer, text", [
    (cipsend_result(b"SEND FAIL"), "link 0: AT+CIPSEND=0,3 -> 0, SEND FAIL"),
    (b"\r\nERROR\r\n", "link 0: AT+CIPSEND=0,3 -> ERROR")])
def test_send_failed_is_a_reset(answer, text):
    far, modem, s = connected({b"AT+CIPSEND=": answer})
    e = oserror(s.send, b"abc")
    assert e.errno == errno.ECONNRESET and e.args[1] == text


@pytest.mark.parametrize("answer, detail", [
    (None, " (no '>' prompt)"),                              # no prompt
    (cipsend_says(), ""),                                     # no DATA ACCEPT
])
def test_send_unanswered_times_out_after_10_s(fast_clock, answer, detail):
    # DATA ACCEPT needs no network round trip: 10 s, not a round trip's worst case
    far, modem, s = connected({b"AT+CIPSEND=": answer})
    t0 = fast_clock.now
    e = oserror(modem.send, s, memoryview(b"abc"), None)
    assert e.errno == errno.ETIMEDOUT
    assert e.args[1] == "link 0: AT+CIPSEND=0,3: no answer within 10000 ms" + detail
    assert 10000 <= fast_clock.now - t0 < 11000
    assert modem.at.needs_resync


def test_send_after_the_peer_closed_is_enotconn():
    far, modem, s = connected()
    urc(far, modem, b"0, CLOSED")
    e = oserror(modem.send, s, memoryview(b"abc"), None)
    assert e.errno == errno.ENOTCONN


# -- receive ----------------------------------------------------------------------------------
def test_recv_asks_for_what_fits_and_reads_exactly_that():
    far, modem, s = connected({b"AT+CIPRXGET=2,": rxget(b"hello")})
    urc(far, modem, b"+CIPRXGET: 1,0")
    assert read(modem, s, 64) == b"hello"
    assert far.commands[-1] == b"AT+CIPRXGET=2,0,64" and not modem.links[0].rx_pending


def test_recv_asks_for_at_most_1460_bytes_and_keeps_the_rest_pending():
    data = bytes(range(256)) * 6
    far, modem, s = connected({b"AT+CIPRXGET=2,": rxget(data[:1460], rest=76)})
    buf = bytearray(4096)
    assert s.recv_into(buf) == 1460 and buf[:1460] == data[:1460]
    assert far.commands[-1] == b"AT+CIPRXGET=2,0,1460" and modem.links[0].rx_pending


@pytest.mark.parametrize("answer", [rxget(b""), b"\r\n+CME ERROR: 3\r\n"])
def test_nonblocking_recv_with_nothing_held_is_eagain_after_one_read(answer):
    far, modem, s = connected({b"AT+CIPRXGET=2,": answer})
    n = len(far.commands)
    assert oserror(read, modem, s, 10, 0).errno == errno.EAGAIN
    assert far.commands[n:] == [b"AT+CIPRXGET=2,0,10"]
    assert not modem.links[0].rx_pending


@pytest.mark.parametrize("header", [b"+CIPRXGET: 2,1,2,0", b"+CIPRXGET: 2,0,2,-1",
                                    b"+CIPRXGET: 2,0,2", b"+CIPRXGET: 2,0,2,0,0",
                                    b"+CIPRXGET: 2,0,2,x"])
def test_a_read_whose_framing_does_not_add_up_is_eio_and_resyncs(header):
    far, modem, s = connected({b"AT+CIPRXGET=2,": b"\r\n" + header + b"\r\nhi\r\nOK\r\n"})
    e = oserror(read, modem, s, 10)
    assert e.errno == errno.EIO
    assert e.args[1] == ("link 0: bad +CIPRXGET framing (asked 10 bytes; header [%r], "
                         "2 bytes followed); data may be lost" % header)
    assert modem.at.needs_resync and modem.links[0].rx_pending


def test_a_payload_not_followed_by_its_trailer_is_eio():
    far, modem, s = connected({b"AT+CIPRXGET=2,": b"\r\n+CIPRXGET: 2,0,5,0\r\nhelloX\r\nOK"
                                                  b"\r\n"})
    assert oserror(read, modem, s, 64).errno == errno.EIO
    assert modem.at.needs_resync


def test_a_read_cut_short_is_etimedout_and_keeps_the_link_readable(fast_clock):
    far, modem, s = connected({b"AT+CIPRXGET=2,": b"\r\n+CIPRXGET: 2,0,10,0\r\nhel"})
    e = oserror(read, modem, s, 64)
    assert e.errno == errno.ETIMEDOUT and "payload cut short" in e.args[1]
    assert modem.links[0].rx_pending


def test_recv_after_the_peer_closed_reads_what_is_buffered_then_eof():
    reads = [rxget(b"bye", rest=3), rxget(b"!!!"), rxget(b"")]
    far, modem, s = connected({b"AT+CIPRXGET=2,": lambda line: reads.pop(0)(line)})
    urc(far, modem, b"+CIPRXGET: 1,0", b"0, CLOSED")
    assert s.poll_flags(POLLIN) == POLLIN | POLLHUP
    assert s.recv(10) == b"bye" and s.recv(10) == b"!!!" and s.recv(10) == b""
    assert s.state == "CLOSE_WAIT"


def test_recv_wakes_on_the_data_urc():
    reads = [rxget(b""), rxget(b"late")]
    far, modem, s = connected({b"AT+CIPRXGET=2,": lambda line: reads.pop(0)(line)},
                              poll_ms=60000)
    far.later(b"\r\n+CIPRXGET: 1,0\r\n")
    s.settimeout(5)
    assert s.recv(10) == b"late"


def test_recv_on_a_link_the_network_dropped_is_econnreset():
    far, modem, s = connected()
    urc(far, modem, b"+PDP: DEACT")
    assert oserror(s.recv, 10).errno == errno.ECONNRESET
    assert s.poll_flags(POLLIN) == POLLIN | POLLHUP | POLLERR


# -- close ------------------------------------------------------------------------------------
def test_active_close_is_complete_on_close_ok():
    far, modem, s = connected()
    s.close()
    assert far.commands[-1] == b"AT+CIPCLOSE=0"
    assert s.tcp.states() == ACTIVE_CLOSE and modem.links == [None] * sim800.LINKS


def test_passive_close_the_modem_had_done_already_is_complete():
    far, modem, s = connected({b"AT+CIPCLOSE=": b"\r\nERROR\r\n"})
    urc(far, modem, b"0, CLOSED")
    s.close()
    assert far.commands[-1] == b"AT+CIPCLOSE=0"
    assert s.tcp.states() == PASSIVE_CLOSE and events(s)[-1] == "FIN_ACKED"


def test_close_the_modem_refuses_on_an_open_link_is_a_reset():
    far, modem, s = connected({b"AT+CIPCLOSE=": b"\r\nERROR\r\n"})
    s.close()
    assert events(s)[-2:] == ["CLOSE", "RESET"] and s.state == "CLOSED"


def test_close_unanswered_gives_the_link_up_as_timed_out(fast_clock):
    far, modem, s = connected({b"AT+CIPCLOSE=": None})
    t0 = fast_clock.now
    s.close()
    assert events(s)[-2:] == ["CLOSE", "TIMEOUT"] and modem.links == [None] * sim800.LINKS
    assert 15000 <= fast_clock.now - t0 < 17000


def test_close_ok_without_a_space_is_fine_too():
    far, modem, s = connected({b"AT+CIPCLOSE=": b"\r\n0,CLOSE OK\r\n"})
    s.close()
    assert s.tcp.states() == ACTIVE_CLOSE


# -- construction -------------------------------------------------------------------------------
def test_modem_defaults():
    modem = sim800.SIM800(Far())
    assert (modem.apn, modem.pin, modem.poll_ms, modem.name) == ("", None, 500, "sim800")
    assert modem.links == [None] * 6 and modem.connect_limit_ms == 80000
    assert modem.RESET_COMMAND == b"AT+CFUN=1,1"
    assert modem.at.engine.parser.max_payload == 1460


def test_a_channel_can_be_given():
    parser = Parser(urcs=sim800.URCS, framed=sim800.FRAMED, extra_finals=sim800.FINALS)
    chan = Channel(Far(), engine=Engine(parser, success=sim800.SUCCESS))
    assert sim800.SIM800(None, channel=chan).at is chan


def test_apn_and_pin_are_checked_at_construction():
    with pytest.raises(ValueError):
        sim800.SIM800(Far(), apn='a"b')
    with pytest.raises(ValueError):
        sim800.SIM800(Far(), pin="123456789")
