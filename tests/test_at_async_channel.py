"""The asyncio AT driver (at/aio.py AsyncChannel) against a scripted modem: it uses the
parser and engine it is given, a command's reply prefix and its ``>`` payload reach the
modem, waiting (``wait_for``) ends exactly when the predicate holds or the deadline has
passed, and after a timeout the next command resyncs once, then the channel is trusted
again."""

import asyncio

import pytest

from synack.at import engine as engine_mod, steps
from synack.at.aio import AsyncChannel
from synack.at.engine import Engine
from synack.at.errors import CommandTimeout
from synack.at.parser import Parser


class Uart:
    """A modem behind a UART: ``replies`` maps a command line (bytes, no CR) to its
    answer; a ``(prompt, size, answer)`` tuple asks for ``size`` raw payload bytes after
    the prompt first (as AT+CIPSEND does). Unknown commands get ERROR."""

    def __init__(self, replies):
        self.replies = {b"AT": b"\r\nOK\r\n", **replies}
        self.rx = bytearray()
        self.tx = bytearray()
        self.commands = []
        self.payloads = []
        self._need = 0
        self._after = b""

    def write(self, data):
        self.tx += bytes(data)
        while self.tx:
            if self._need:
                take = bytes(self.tx[:self._need])
                del self.tx[:self._need]
                self._need -= len(take)
                self.payloads[-1] += take
                if not self._need:
                    self.rx += self._after
                continue
            i = self.tx.find(b"\r")
            if i < 0:
                break
            line = bytes(self.tx[:i])
            del self.tx[:i + 1]
            self.commands.append(line)
            reply = self.replies.get(line, b"\r\nERROR\r\n")
            if isinstance(reply, tuple):
                prompt, self._need, self._after = reply
                self.payloads.append(b"")
                reply = prompt
            self.rx += reply
        return len(data)

    def any(self):
        return len(self.rx)

    def readinto(self, buf):
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        del self.rx[:n]
        return n


class FrozenClock:
    """``time`` for a firmware module: ticks move only when a test moves them."""

    def __init__(self, now=0, step=0):
        self.now = now
        self.step = step

    def ticks_ms(self):
        t = self.now
        self.now += self.step
        return t

    def ticks_add(self, t, delta):
        return t + delta

    def ticks_diff(self, a, b):
        return a - b


@pytest.fixture
def clock(monkeypatch):
    c = FrozenClock()
    monkeypatch.setattr(steps, "time", c)
    return c


def test_channel_uses_the_parser_and_engine_it_is_given():
    parser = Parser(urcs=(b"+CIPRXGET: 1,",))
    chan = AsyncChannel(Uart({}), parser)
    assert chan.engine.parser is parser
    eng = Engine(Parser())
    assert AsyncChannel(Uart({}), engine=eng).engine is eng


def test_waiting_polls_every_two_ms_by_default():
    assert AsyncChannel(Uart({})).poll_s == 0.002
    assert AsyncChannel(Uart({}), poll_ms=20).poll_s == 0.02


def test_reply_keeps_only_lines_with_the_commands_prefix():
    uart = Uart({b"AT+CSQ": b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"})
    chan = AsyncChannel(uart)
    reply = asyncio.run(chan.command(b"AT+CSQ", b"+CSQ:"))
    assert reply.lines == [b"+CSQ: 20,99"]
    reply = asyncio.run(chan.command(b"AT+CSQ", b"+CREG:"))
    assert reply.lines == []


def test_payload_is_written_after_the_prompt():
    uart = Uart({b"AT+CIPSEND=0,5": (b"\r\n>", 5, b"\r\nOK\r\n")})
    chan = AsyncChannel(uart)
    reply = asyncio.run(chan.command(b"AT+CIPSEND=0,5", payload=b"hello"))
    assert reply.lines == []
    assert uart.payloads == [b"hello"]
    assert uart.commands == [b"AT+CIPSEND=0,5"]


def test_command_times_out_after_five_seconds_by_default(monkeypatch):
    # the engine's clock jumps a second per reading: the default limit shows in the error
    monkeypatch.setattr(engine_mod, "time", FrozenClock(step=1000))
    chan = AsyncChannel(Uart({b"AT+SLOW": b""}))
    with pytest.raises(CommandTimeout) as exc:
        asyncio.run(chan.command(b"AT+SLOW"))
    assert exc.value.timeout_ms == 5000
    assert "within 5000 ms" in str(exc.value)


def test_after_a_timeout_the_next_command_resyncs_once():
    uart = Uart({b"AT+SLOW": b"", b"AT+CSQ": b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"})
    chan = AsyncChannel(uart)

    async def main():
        with pytest.raises(CommandTimeout):
            await chan.command(b"AT+SLOW", timeout_ms=20)
        assert chan.needs_resync
        first = await chan.command(b"AT+CSQ", b"+CSQ:")
        assert not chan.needs_resync
        second = await chan.command(b"AT+CSQ", b"+CSQ:")
        return first, second

    first, second = asyncio.run(main())
    assert first.lines == second.lines == [b"+CSQ: 20,99"]
    assert uart.commands == [b"AT+SLOW", b"AT", b"AT+CSQ", b"AT+CSQ"]


def test_wait_for_is_true_at_once_when_the_predicate_holds(clock):
    chan = AsyncChannel(Uart({}))
    assert asyncio.run(chan.wait_for(lambda: True, 0)) is True
    assert asyncio.run(chan.wait_for(lambda: True, 1000)) is True


def test_wait_for_zero_checks_once_and_gives_up(clock):
    # the clock does not move: a wait of 0 must end by itself, not when time passes
    chan = AsyncChannel(Uart({}))
    calls = []

    def never():
        calls.append(1)
        return False

    assert asyncio.run(chan.wait_for(never, 0)) is False
    assert len(calls) == 2  # before the wait, and once more at the deadline


def test_wait_for_keeps_waiting_until_the_deadline_itself(clock):
    # one millisecond left is still time to wait: the predicate comes true later
    chan = AsyncChannel(Uart({}))
    calls = []

    def third_time():
        calls.append(1)
        return len(calls) >= 3

    assert asyncio.run(chan.wait_for(third_time, 1)) is True
    assert len(calls) == 3


def test_wait_for_processes_urcs_until_the_predicate_holds(clock):
    uart = Uart({})
    chan = AsyncChannel(uart, Parser(urcs=(b"+CIPRXGET: 1,",)))
    seen = []
    chan.engine.on_urc(b"+CIPRXGET: 1,", seen.append)
    uart.rx += b"\r\n+CIPRXGET: 1,3\r\n"
    assert asyncio.run(chan.wait_for(lambda: bool(seen), 0)) is True
    assert seen == [b"+CIPRXGET: 1,3"]
