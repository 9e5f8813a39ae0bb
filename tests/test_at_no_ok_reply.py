"""A command whose answer is one line and no final result code (SIM800 ``AT+CIFSR``
prints the local address only): ``lone_line=True`` on the engine and the blocking
channel. The first reply line completes the command; ERROR still fails it; URCs and the
echo are never taken for that line; the option lasts one command only."""

import pytest

from synack.at.driver import Channel
from synack.at.engine import Engine
from synack.at.errors import CommandError, CommandTimeout
from synack.at.parser import Parser

import farmodem


def channel(replies, urcs=(b"+PDP:",)):
    far = farmodem.Far(replies)
    return far, Channel(far, Parser(urcs=urcs))


def test_the_first_line_is_the_whole_answer():
    far, at = channel({b"AT+CIFSR": b"\r\n10.64.0.2\r\n"})
    reply = at.command(b"AT+CIFSR", lone_line=True, timeout_ms=200)
    assert reply.lines == [b"10.64.0.2"] and reply.payload is None
    assert not at.engine.busy and not at.needs_resync


def test_without_the_option_the_same_answer_times_out():
    far, at = channel({b"AT+CIFSR": b"\r\n10.64.0.2\r\n"})
    with pytest.raises(CommandTimeout):
        at.command(b"AT+CIFSR", timeout_ms=50)


def test_error_still_fails_it():
    far, at = channel({b"AT+CIFSR": b"\r\nERROR\r\n"})
    with pytest.raises(CommandError) as exc:
        at.command(b"AT+CIFSR", lone_line=True, timeout_ms=200)
    assert exc.value.result == b"ERROR"
    assert not at.engine.busy


def test_a_urc_and_the_echo_before_the_line_are_not_the_answer():
    seen = []
    far, at = channel({b"AT+CIFSR": b"AT+CIFSR\r\r\n+PDP: DEACT\r\n\r\n10.0.0.7\r\n"})
    at.engine.on_urc(b"+PDP:", seen.append)
    assert at.command(b"AT+CIFSR", lone_line=True, timeout_ms=200).lines == [b"10.0.0.7"]
    assert seen == [b"+PDP: DEACT"]


def test_with_a_prefix_only_a_line_with_it_completes_the_command():
    far, at = channel({b"AT+X": b"\r\nnoise\r\n\r\n+X: 1\r\n"})
    assert at.command(b"AT+X", b"+X:", lone_line=True, timeout_ms=200).lines == [b"+X: 1"]


def test_what_follows_the_line_belongs_to_the_next_command():
    # the modem's next answer is the next command's, never a stale OK of this one
    far, at = channel({b"AT+CIFSR": b"\r\n10.64.0.2\r\n", b"AT+CSQ": b"\r\n+CSQ: 9,99\r\n"})
    at.command(b"AT+CIFSR", lone_line=True, timeout_ms=200)
    with pytest.raises(CommandTimeout):           # the option lasts one command only
        at.command(b"AT+CSQ", b"+CSQ:", timeout_ms=50)


def test_the_engine_alone_completes_on_the_line():
    eng = Engine(Parser(), success=(b"SHUT OK", b"OK"))
    eng.begin(b"AT+CIFSR", lone_line=True, now=0)
    eng.receive(b"\r\n10.1.2.3\r\n")
    assert eng.done
    assert eng.finish().lines == [b"10.1.2.3"]    # success, whatever the success codes
    eng.begin(b"AT", now=0)
    eng.receive(b"\r\n1.2.3.4\r\n")
    assert not eng.done                           # reset after the command
