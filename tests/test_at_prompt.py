"""The data prompt of another byte and a pause after it: u-blox's ``AT+USOWR=<s>,<n>``
prompts ``@`` (not ``>``) and asks for at least 50 ms before the bytes. The parser takes
the prompt byte (``Parser(prompt=b"@")``), the engine the pause
(``Engine(parser, payload_delay_ms=50)``): the payload is held until then, and never sent
once the command has ended (ERROR after the prompt)."""

import time

import pytest

from synack.at import engine as at_engine
from synack.at.driver import Channel
from synack.at.engine import Engine
from synack.at.errors import CommandError, CommandTimeout
from synack.at.parser import Parser

import farmodem
from farmodem import Clock, Prompted

USOWR = b"AT+USOWR=0,5"


def usowr(far_prompt=b"\r\n@"):
    return Prompted(far_prompt, 5, lambda data: b"\r\n+USOWR: 0,%d\r\n\r\nOK\r\n" % len(data))


def test_an_at_prompt_asks_for_the_payload():
    far = farmodem.Far({USOWR: usowr()})
    at = Channel(far, Parser(prompt=b"@"))
    reply = at.command(USOWR, b"+USOWR:", payload=b"a\r\n\"@", timeout_ms=500)
    assert far.payloads == [b"a\r\n\"@"]
    assert reply.lines == [b"+USOWR: 0,5"]
    assert not at.needs_resync


def test_the_default_parser_does_not_take_an_at_sign_for_the_prompt():
    far = farmodem.Far({USOWR: usowr()})
    at = Channel(far, Parser())
    with pytest.raises(CommandTimeout) as exc:
        at.command(USOWR, b"+USOWR:", payload=b"hello", timeout_ms=50)
    assert "no '>' prompt" in str(exc.value)
    assert far.payloads == []


def test_the_payload_waits_the_delay_after_the_prompt(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(at_engine, "time", clock)
    eng = Engine(Parser(prompt=b"@"), payload_delay_ms=50)
    eng.begin(USOWR, b"+USOWR:", payload=b"hello")
    assert eng.take_output() is None          # no prompt yet
    eng.receive(b"\r\n@")
    assert eng.take_output() is None          # the prompt, but not 50 ms after it
    clock.now += 49
    assert eng.take_output() is None
    clock.now += 1
    assert eng.take_output() == b"hello"
    assert eng.take_output() is None          # once
    eng.receive(b"\r\n+USOWR: 0,5\r\n\r\nOK\r\n")
    assert eng.finish().lines == [b"+USOWR: 0,5"]


def test_without_a_delay_the_payload_follows_the_prompt_at_once(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(at_engine, "time", clock)
    eng = Engine(Parser(prompt=b"@"))
    eng.begin(USOWR, payload=b"hello")
    eng.receive(b"\r\n@")
    assert eng.take_output() == b"hello"


def test_an_error_during_the_delay_means_the_payload_is_never_sent(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(at_engine, "time", clock)
    eng = Engine(Parser(prompt=b"@"), payload_delay_ms=50)
    eng.begin(USOWR, payload=b"hello")
    eng.receive(b"\r\n@\r\n+CME ERROR: 3\r\n")
    clock.now += 100
    assert eng.take_output() is None
    with pytest.raises(CommandError) as exc:
        eng.finish()
    assert exc.value.code == 3
    assert not eng.busy


def test_a_final_right_after_the_prompt_sends_nothing_even_without_a_delay():
    # "@" and ERROR in one read: the command is over before the payload could go out;
    # bytes written now would be taken for a command line.
    far = farmodem.Far({USOWR: b"\r\n@\r\nERROR\r\n"})
    at = Channel(far, Parser(prompt=b"@"))
    with pytest.raises(CommandError):
        at.command(USOWR, payload=b"AT+X\r", timeout_ms=200)
    assert far.commands == [USOWR] and far.tx == bytearray()


def test_the_channel_writes_the_payload_no_sooner_than_the_delay():
    class Timed(farmodem.Far):
        def write(self, data):
            if self._need:
                self.payload_at = time.monotonic()
            return super().write(data)

    far = Timed({USOWR: lambda line: far.__setattr__("prompt_at", time.monotonic())
                 or usowr()})
    at = Channel(far, engine=Engine(Parser(prompt=b"@"), payload_delay_ms=50))
    assert at.command(USOWR, b"+USOWR:", payload=b"hello", timeout_ms=1000).lines == \
        [b"+USOWR: 0,5"]
    assert far.payloads == [b"hello"]
    assert far.payload_at - far.prompt_at >= 0.049   # ticks_ms counts whole ms
