"""A non-blocking connect on a modem whose bearer the network dropped (issue 12,
"non-blocking all the way down"): the bearer's reopen is the backend's
``connect_prepare`` (an at/steps.Stepper), advanced by ``connect_done()`` a step at a
time, so that no call of the socket waits for the modem: AT+NETOPEN is sent, and
``connect_done()`` says False until its +NETOPEN URC arrives, then the handshake
starts. Failures, the connect's limit and a close meanwhile end it cleanly (the AT
engine idle, the next connect works). On the scripted SIM7600 of test_sim7600_driver."""

import errno

import pytest

from synack import connect
from synack import socket as synsocket
from synack import tcp
from synack.modems import cellular

from farmodem import OK, POLLIN, POLLOUT, events, oserror
from test_sim7600_driver import Far, started

LOST = b"\r\n+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY\r\n"


def dropped(netopen_urc=None, **replies):
    """A started modem whose bearer the network dropped; its next AT+NETOPEN answers OK
    only (the +NETOPEN URC is the test's to send) unless ``netopen_urc`` is given."""
    far, modem = started(replies)
    far.replies[b"AT+NETOPEN"] = OK + (netopen_urc or b"")
    far.inject(LOST)
    modem.at.poll(0)
    assert not modem.net_open
    return far, modem


def nonblocking(modem, limit_ms=5000, pending=True):
    """A non-blocking socket whose connect() started (EINPROGRESS), or with ``pending``
    False one that may also have finished at once (the scripted modem answers every
    command and URC together): then it is stepped to its end."""
    s = synsocket.socket(backend=modem)
    s.setblocking(False)
    s.connect_timeout_ms = limit_ms
    try:
        s.connect(("10.0.0.1", 80))
    except OSError as e:
        assert e.errno == errno.EINPROGRESS
    else:
        assert not pending, "connect() did not return EINPROGRESS"
    if not pending:
        for _ in range(1000):
            if s.connect_done():
                break
    return s


def test_connect_returns_at_once_and_connect_done_steps_the_reopen():
    far, modem = dropped()
    s = nonblocking(modem)
    # registration asked, AT+NETOPEN sent, and nothing waited for its URC
    assert far.commands == [b"AT+CEREG?", b"AT+NETOPEN"], far.commands
    assert not modem.at.engine.busy and s.state == "CLOSED"
    assert [s.connect_done() for _ in range(3)] == [False] * 3
    assert s.poll_flags(POLLIN | POLLOUT) == 0
    assert oserror(s.send, b"x").errno == errno.EAGAIN
    far.inject(b"\r\n+NETOPEN: 0\r\n")
    assert s.connect_done() in (False, True)  # the handshake started: AT+CIPOPEN
    assert b"AT+CIPOPEN=0,\"TCP\",\"10.0.0.1\",80" in far.commands
    while not s.connect_done():
        pass
    assert s.state == "ESTABLISHED" and modem.net_open and modem.bearer_reopens == 1
    assert events(s)[:3] == ["BEARER_UP", "CONNECT", "CONNECTED"], events(s)
    s.close()


def test_a_reopen_that_fails_is_the_connects_error_and_the_next_connect_tries_again():
    far, modem = dropped()
    modem.reopen_attempts = 1
    s = nonblocking(modem)
    assert s.connect_done() is False
    far.inject(b"\r\n+NETOPEN: 1\r\n")
    e = oserror(s.connect_done)
    assert e.errno == errno.EHOSTUNREACH and "+NETOPEN: 1" in e.args[1]
    assert events(s) == ["BEARER_FAILED"] and not modem.at.engine.busy
    assert oserror(s.connect_done).errno == errno.ENOTCONN  # it ended; nothing pending
    far.replies[b"AT+NETOPEN"] = OK + b"\r\n+NETOPEN: 0\r\n"
    assert nonblocking(modem, pending=False).state == "ESTABLISHED"


def test_a_reopen_past_the_connects_limit_is_etimedout_and_leaves_the_modem_usable(
        monkeypatch):
    far, modem = dropped()
    now = [0]
    clock = type("C", (), {"ticks_ms": staticmethod(lambda: now[0]),
                           "ticks_add": staticmethod(lambda a, b: a + b),
                           "ticks_diff": staticmethod(lambda a, b: a - b),
                           "sleep_ms": staticmethod(lambda ms: None)})
    monkeypatch.setattr(connect, "time", clock)
    s = nonblocking(modem, limit_ms=1000)
    assert s.connect_done() is False
    now[0] = 1000
    e = oserror(s.connect_done)
    assert e.errno == errno.ETIMEDOUT and "within 1000 ms" in e.args[1]
    assert not modem.at.engine.busy and modem.at.owner is None
    far.inject(b"\r\n+NETOPEN: 0\r\n")  # the late answer: taken, nothing waits for it
    far.replies[b"AT+NETOPEN"] = b"\r\n+IP ERROR: Network is already opened\r\n\r\nERROR\r\n"
    monkeypatch.undo()
    s2 = synsocket.socket(backend=modem)
    s2.settimeout(1)
    s2.connect(("10.0.0.1", 80))
    assert s2.state == "ESTABLISHED"


def test_close_during_the_reopen_gives_it_up():
    far, modem = dropped()
    modem.at.needs_resync = False
    s = nonblocking(modem)
    s.close()
    assert s.state == "CLOSED" and not modem.at.engine.busy and modem.at.owner is None
    assert b"AT+CIPOPEN" not in b" ".join(far.commands)


def test_a_bearer_that_is_up_prepares_nothing():
    far, modem = started()
    assert modem.connect_prepare(synsocket.socket(backend=modem), 1000) is None
    nonblocking(modem, pending=False)
    assert far.commands[0].startswith(b"AT+CIPOPEN=")  # the handshake began at once


def test_a_modem_never_started_prepares_nothing():
    modem = started()[1]
    modem._started_at_reboot = -1
    modem.net_open = False
    assert modem.connect_prepare(synsocket.socket(backend=modem), 1000) is None


@pytest.mark.parametrize("blocking", [True, False])
def test_both_connects_log_the_same_bearer_reopen(blocking):
    far, modem = dropped(b"\r\n+NETOPEN: 0\r\n")
    if blocking:
        s = synsocket.socket(backend=modem)
        s.settimeout(1)
        s.connect(("10.0.0.1", 80))
    else:
        s = nonblocking(modem, pending=False)
    assert events(s)[:3] == ["BEARER_UP", "CONNECT", "CONNECTED"]
    assert s.tcp.state == tcp.ESTABLISHED and modem.bearer_reopens == 1
    assert isinstance(modem, cellular.ModemBackend)


def test_connects_that_come_during_a_reopen_share_it():
    far, modem = dropped()
    first, second = nonblocking(modem), nonblocking(modem)
    assert far.commands.count(b"AT+NETOPEN") == 1
    assert [first.connect_done(), second.connect_done()] == [False, False]
    far.inject(b"\r\n+NETOPEN: 0\r\n")
    for s in (first, second):
        for _ in range(100):
            if s.connect_done():
                break
        assert s.state == "ESTABLISHED"
    assert far.commands.count(b"AT+NETOPEN") == 1 and modem.bearer_reopens == 1
    assert events(first)[:3] == ["BEARER_UP", "CONNECT", "CONNECTED"]
    assert events(second)[:2] == ["CONNECT", "CONNECTED"]


def test_a_connect_that_gives_up_leaves_the_shared_reopen_to_the_other():
    far, modem = dropped()
    first, second = nonblocking(modem), nonblocking(modem)
    first.close()                      # the reopen goes on for the second
    far.inject(b"\r\n+NETOPEN: 0\r\n")
    for _ in range(100):
        if second.connect_done():
            break
    assert second.state == "ESTABLISHED" and modem.net_open
    assert far.commands.count(b"AT+NETOPEN") == 1


def test_a_failed_shared_reopen_fails_every_connect_and_the_next_one_tries_again():
    far, modem = dropped()
    modem.reopen_attempts = 1
    first, second = nonblocking(modem), nonblocking(modem)
    far.inject(b"\r\n+NETOPEN: 1\r\n")
    for s in (first, second):
        assert oserror(lambda: [s.connect_done() for _ in range(100)]).errno == \
            errno.EHOSTUNREACH
    far.replies[b"AT+NETOPEN"] = OK + b"\r\n+NETOPEN: 0\r\n"
    assert nonblocking(modem, pending=False).state == "ESTABLISHED"
    assert far.commands.count(b"AT+NETOPEN") == 2


def test_the_last_connect_to_give_up_cancels_the_reopen():
    far, modem = dropped()
    first, second = nonblocking(modem), nonblocking(modem)
    first.close()
    second.close()
    assert not modem.at.engine.busy and modem.at.owner is None and not modem.net_open
