"""The blocking AT driver (at/driver.py Channel) on a UART as MicroPython has it:
``readinto`` returns None when nothing is there and short counts, ``any()`` may say more
than ``readinto`` then gives, ``write`` may take part of the bytes (or None), replies come
split at every point, and a full receive buffer loses bytes (an overrun). Whatever the
UART does, a reply is either exact or an error -- never wrong data -- and the channel
is never wedged: the next command works. Runs on CPython and in the MicroPython VM."""

from portable import eq, raises, with_clock

from synack.at import driver
from synack.at import engine as engine_mod
from synack.at import steps as steps_mod
from synack.at.driver import Channel
from synack.at.engine import Engine
from synack.at.errors import CommandTimeout
from synack.at.parser import Parser

PORTABLE = True

URCS = (b"+CIPRXGET: 1,", b"+IPCLOSE:")
FRAMED = ((b"+CIPRXGET: 2,", 1),)
# payload bytes that look like protocol: a final result, a prompt, a URC, a NUL
PAYLOAD = b"\r\nOK\r\n> +IPCLOSE: 0,1\r\n\x00\xff"
READ = b"AT+CIPRXGET=2,0,64"
READ_REPLY = (b"\r\n+CIPRXGET: 2,0,%d,0\r\n" % len(PAYLOAD)) + PAYLOAD + b"\r\nOK\r\n"


class Uart:
    """A scripted modem behind a MicroPython-like UART. ``replies`` maps a command
    (without CR) to its answer; ``reads`` is the cycle of what each ``readinto``
    may return: a byte count, or None (nothing there this round). ``lose`` drops
    received bytes by their index in the stream (an overrun)."""

    def __init__(self, replies, reads=(4096,), lose=(), any_extra=0, writes=(None, 1, 4096)):
        self.replies = replies
        self.reads = list(reads)
        self.round = 0
        self.lose = set(lose)
        self.any_extra = any_extra
        self.writes = list(writes)
        self.rx = bytearray()
        self.seen = 0          # bytes the modem sent, lost ones included
        self.out = bytearray()
        self.commands = []
        self.payload_for = None

    def _modem_sends(self, data):
        for b in data:
            if self.seen not in self.lose:
                self.rx.append(b)
            self.seen += 1

    def write(self, data):
        step = self.writes.pop(0) if len(self.writes) > 1 else self.writes[0]
        if step is None:
            return None
        n = min(step, len(data))
        self.out += bytes(data[:n])
        while True:
            if self.payload_for is not None:
                size, answer = self.payload_for
                if len(self.out) < size:
                    break
                self.commands.append(bytes(self.out[:size]))
                self.out = self.out[size:]
                self.payload_for = None
                self._modem_sends(answer)
                continue
            i = self.out.find(b"\r")
            if i < 0:
                break
            cmd = bytes(self.out[:i])
            self.out = self.out[i + 1:]
            self.commands.append(cmd)
            answer = self.replies.get(cmd)
            if answer is None:
                continue        # a command the modem never answers
            if isinstance(answer, tuple):   # (prompt, payload size, answer after it)
                self._modem_sends(answer[0])
                self.payload_for = (answer[1], answer[2])
            else:
                self._modem_sends(answer)
        return n

    def any(self):
        return len(self.rx) + self.any_extra if self.rx else self.any_extra

    def readinto(self, buf):
        step = self.reads[self.round % len(self.reads)]
        self.round += 1
        if step is None or not self.rx:
            return None
        n = min(step, len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n


def channel(uart):
    return Channel(uart, Parser(urcs=URCS, framed=FRAMED, max_payload=256, trailer=b"\r\n"))


def replies(extra=None):
    r = {b"AT": b"\r\nOK\r\n", b"AT+CSQ": b"\r\n+CSQ: 21,99\r\n\r\nOK\r\n", READ: READ_REPLY}
    if extra:
        r.update(extra)
    return r


def test_framed_read_split_at_every_point_with_empty_rounds_between():
    for cut in range(1, len(READ_REPLY)):
        uart = Uart(replies(), reads=(cut, None, None, 4096, 4096))
        reply = channel(uart).command(READ, b"+CIPRXGET: 2,", timeout_ms=1000)
        eq(reply.payload, PAYLOAD, "cut at %d" % cut)
        eq(reply.lines, [b"+CIPRXGET: 2,0,%d,0" % len(PAYLOAD)])


def test_one_byte_reads_none_rounds_and_an_any_that_says_too_much():
    uart = Uart(replies(), reads=(1, None, 1, 2, None, 3), any_extra=100)
    ch = channel(uart)
    for _ in range(3):
        eq(ch.command(READ, b"+CIPRXGET: 2,", timeout_ms=2000).payload, PAYLOAD)
        eq(ch.command(b"AT+CSQ", b"+CSQ:", timeout_ms=2000).lines, [b"+CSQ: 21,99"])


def test_short_and_none_writes_still_send_every_byte():
    send = (b"\r\n> ", 5, b"\r\nOK\r\n\r\n+CIPSEND: 0,5,5\r\n")
    uart = Uart(replies({b"AT+CIPSEND=0,5": send}),
                writes=(None, 1, None, 2, 1, None, 3))
    ch = channel(uart)
    ch.command(b"AT+CIPSEND=0,5", payload=b"ab\rc\n", timeout_ms=2000)
    eq(uart.commands, [b"AT+CIPSEND=0,5", b"ab\rc\n"])
    eq(ch.tx_bytes, len(b"AT+CIPSEND=0,5\r") + 5)


def test_any_byte_lost_from_a_framed_read_is_an_error_never_wrong_data():
    # One lost byte anywhere in the reply (an overrun): the read either fails (timeout:
    # the payload never completes or the OK never comes) or comes back without a
    # payload (the framing check caught it: the caller reports EIO) -- and the channel
    # answers the next command at once.
    outcomes = {}
    for lost in range(len(READ_REPLY)):
        uart = Uart(replies(), lose=(lost,), reads=(7, None))
        ch = channel(uart)
        try:
            reply = ch.command(READ, b"+CIPRXGET: 2,", timeout_ms=60)
        except CommandTimeout:
            outcome = "timeout"
        else:
            if reply.payload == PAYLOAD:
                # only a lost byte of the separators around the header or the OK's
                # blank line leaves the data whole
                outcome = "intact"
            else:
                eq(reply.payload, None, "byte %d lost: wrong data delivered" % lost)
                outcome = "no payload"
                # header and payload disagree: the dialect raises EIO and resyncs
                ch.needs_resync = True   # (synack.modems.sim7600 _read)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        eq(ch.command(b"AT+CSQ", b"+CSQ:", timeout_ms=1000).lines, [b"+CSQ: 21,99"],
           "after byte %d lost" % lost)
        eq(ch.engine.busy, False)
    eq(outcomes.get("timeout", 0) > 0 and outcomes.get("no payload", 0) > 0, True,
       repr(outcomes))


def test_an_overrun_of_many_bytes_mid_payload_times_out_then_resyncs():
    head = len(READ_REPLY) - len(PAYLOAD) - 6
    uart = Uart(replies(), lose=range(head + 3, head + 3 + 12), reads=(5, None))
    ch = channel(uart)
    e = raises(CommandTimeout, ch.command, READ, b"+CIPRXGET: 2,", None, 60)
    eq("payload cut short" in str(e) or "no answer" in str(e), True, str(e))
    eq(ch.needs_resync, True)
    eq(ch.command(b"AT+CSQ", b"+CSQ:", timeout_ms=1000).lines, [b"+CSQ: 21,99"])
    eq(uart.commands[-2:], [b"AT", b"AT+CSQ"])   # the resync's AT came first


def test_resync_does_not_spin_on_a_uart_whose_any_never_drops_to_zero():
    # any() says bytes wait but readinto has none: the resync's drain gives up at once
    uart = Uart(replies(), any_extra=5)
    ch = channel(uart)
    raises(CommandTimeout, ch.command, b"AT+NOANSWER", None, None, 30)
    eq(ch.command(b"AT+CSQ", b"+CSQ:", timeout_ms=1000).lines, [b"+CSQ: 21,99"])


# -- waiting for URCs: wait_for and poll end exactly at their deadline ---------------------
def _counting(results):
    """A predicate that answers ``results`` in turn (then its last answer), and counts."""
    calls = []

    def predicate():
        calls.append(1)
        return results[min(len(calls), len(results)) - 1]

    return predicate, calls


def test_wait_for_is_true_at_once_when_the_predicate_holds():
    def run(clock):
        ch = channel(Uart(replies()))
        eq(ch.wait_for(lambda: True, 0), True)
        eq(ch.wait_for(lambda: True, 1000), True)
        eq(clock.sleeps, [])
    with_clock(driver, run)


def test_wait_for_zero_checks_once_more_at_the_deadline_and_never_sleeps():
    def run(clock):
        ch = channel(Uart(replies()))
        never, calls = _counting([False])
        eq(ch.wait_for(never, 0), False)
        eq(len(calls), 2)
        eq(clock.sleeps, [])
    with_clock(driver, run)


def test_wait_for_sleeps_while_time_is_left_and_sees_the_predicate_come_true():
    def run(clock):
        ch = channel(Uart(replies()))
        later, calls = _counting([False, True])
        eq(ch.wait_for(later, 1), True)     # 1 ms left is still time to wait
        eq(clock.sleeps, [1])
        never, calls = _counting([False])
        eq(ch.wait_for(never, 3), False)
        eq(clock.sleeps, [1, 1, 1, 1])
    with_clock(driver, run)


def test_poll_without_a_timeout_takes_what_arrived_and_does_not_wait():
    def run(clock):
        uart = Uart(replies())
        ch = channel(uart)
        seen = []
        ch.engine.on_urc(b"+IPCLOSE:", seen.append)
        uart._modem_sends(b"\r\n+IPCLOSE: 0,1\r\n")
        ch.poll()
        eq(seen, [b"+IPCLOSE: 0,1"])
        ch.poll()
        eq(clock.sleeps, [])
    with_clock(driver, run)


def test_wait_for_sleeps_even_when_any_says_more_than_readinto_gives():
    def run(clock):
        ch = channel(Uart(replies(), any_extra=5))
        eq(ch.wait_for(lambda: False, 3), False)
        eq(clock.sleeps, [1, 1, 1])
    with_clock(driver, run)


def test_bytes_moved_are_counted_both_ways():
    uart = Uart(replies())
    ch = channel(uart)
    ch.command(b"AT+CSQ", b"+CSQ:", timeout_ms=1000)
    eq((ch.tx_bytes, ch.rx_bytes), (len(b"AT+CSQ\r"), len(b"\r\n+CSQ: 21,99\r\n\r\nOK\r\n")))
    ch.command(b"AT", timeout_ms=1000)
    eq((ch.tx_bytes, ch.rx_bytes), (len(b"AT+CSQ\rAT\r"),
                                    len(b"\r\n+CSQ: 21,99\r\n\r\nOK\r\n\r\nOK\r\n")))


def _shared_clock(fn):
    """``fn(clock)`` with the driver, the engine and the steps (a resync's) on one fake
    clock."""
    real = engine_mod.time, steps_mod.time

    def run(clock):
        engine_mod.time = steps_mod.time = clock
        try:
            return fn(clock)
        finally:
            engine_mod.time, steps_mod.time = real
    return with_clock(driver, run)


def test_a_command_waits_five_seconds_by_default():
    def run(clock):
        ch = channel(Uart(replies()))
        e = raises(CommandTimeout, ch.command, b"AT+NOANSWER")
        eq(str(e), "AT+NOANSWER: no answer within 5000 ms")
        eq(clock.now, 5000)
    _shared_clock(run)


def test_resync_drops_stale_input_unread():
    uart = Uart(replies())
    ch = channel(uart)
    raises(CommandTimeout, ch.command, b"AT+NOANSWER", None, None, 30)
    uart._modem_sends(b"\r\n+CSQ: 9,9\r\n\r\nOK\r\n")   # the late answer, then noise
    uart._modem_sends(b"garbage\r\n")
    eng = ch.engine
    before = (eng.unexpected, eng.noise)
    eq(ch.command(b"AT+CSQ", b"+CSQ:", timeout_ms=1000).lines, [b"+CSQ: 21,99"])
    eq((eng.unexpected, eng.noise), before)
    eq(uart.commands[-2:], [b"AT", b"AT+CSQ"])


def test_resync_waits_two_seconds_for_the_modems_ok():
    def run(clock):
        uart = Uart(replies())
        ch = channel(uart)
        ch.needs_resync = True
        del uart.replies[b"AT"]
        e = raises(CommandTimeout, ch.command, b"AT+CSQ", b"+CSQ:", None, 1000)
        eq(str(e), "AT: no answer within 2000 ms")
        eq(ch.needs_resync, True)      # the next command tries the resync again
    _shared_clock(run)


def test_resync_waits_until_the_line_was_quiet_for_100_ms():
    def run(clock):
        uart = Uart(replies())
        ch = channel(uart)
        ch.needs_resync = True
        ch.command(b"AT+CSQ", b"+CSQ:", timeout_ms=1000)
        eq(ch.needs_resync, False)
        eq(clock.sleeps, [1] * 100)
    _shared_clock(run)


class Chatter(Uart):
    """After the resync's OK the modem keeps talking, one byte a millisecond."""

    def __init__(self, clock):
        super().__init__(replies())
        self.clock = clock
        self.talking = False
        self.chatted = 0

    def any(self):
        return 1 if self.talking and not self.rx else super().any()

    def readinto(self, buf):
        if self.rx:
            n = super().readinto(buf)
            self.talking = True     # the OK is out: from now on, noise
            return n
        self.clock.now += 1
        self.chatted += 1
        buf[0] = 0x2e
        return 1


def test_resync_gives_up_waiting_for_quiet_after_two_seconds():
    def run(clock):
        uart = Chatter(clock)
        ch = channel(uart)
        ch.resync()
        eq(uart.chatted, 2001)  # a byte a millisecond, until the first one past 2 s
        eq(ch.needs_resync, False)
    _shared_clock(run)


def test_resync_drops_stale_input_of_many_chunks():
    uart = Uart(replies())
    ch = channel(uart)
    raises(CommandTimeout, ch.command, b"AT+NOANSWER", None, None, 30)
    uart._modem_sends(b"\r\n+CSQ: 9,9\r\n" * 60 + b"\r\nOK\r\n")  # 786 bytes: 4 chunks
    eng = ch.engine
    before = (eng.unexpected, eng.noise)
    eq(ch.command(b"AT+CSQ", b"+CSQ:", timeout_ms=1000).lines, [b"+CSQ: 21,99"])
    eq((eng.unexpected, eng.noise), before)


def test_a_payload_that_lost_its_framing_resyncs_the_next_command_only():
    bad = b"\r\n+CIPRXGET: 2,0,3,0\r\nabcd\r\nOK\r\n"     # 3 announced, 4 came
    uart = Uart(replies({READ: bad}))
    ch = channel(uart)
    eq(ch.command(READ, b"+CIPRXGET: 2,", timeout_ms=1000).payload, None)
    eq(ch.needs_resync, True)
    eq(ch.command(b"AT+CSQ", b"+CSQ:", timeout_ms=1000).lines, [b"+CSQ: 21,99"])
    eq(ch.command(b"AT+CSQ", b"+CSQ:", timeout_ms=1000).lines, [b"+CSQ: 21,99"])
    eq(uart.commands[1:], [b"AT", b"AT+CSQ", b"AT+CSQ"])


def test_channel_uses_the_engine_it_is_given():
    eng = Engine(Parser())
    eq(Channel(Uart(replies()), engine=eng).engine is eng, True)


class PyserialUart:
    """pyserial's way: ``in_waiting`` instead of ``any()``."""

    def __init__(self, uart):
        self.uart = uart
        self.write = uart.write
        self.readinto = uart.readinto

    @property
    def in_waiting(self):
        return len(self.uart.rx)


def test_a_uart_with_in_waiting_instead_of_any_works():
    ch = channel(PyserialUart(Uart(replies())))
    eq(ch.command(b"AT+CSQ", b"+CSQ:", timeout_ms=1000).lines, [b"+CSQ: 21,99"])


class BrokenUart(Uart):
    """A UART whose first write fails (the port vanished for a moment)."""

    def write(self, data):
        if not self.commands and not getattr(self, "failed", False):
            self.failed = True
            raise OSError(5, "write failed")
        return super().write(data)


def test_a_failed_write_leaves_the_channel_idle_for_the_next_command():
    uart = BrokenUart(replies())
    ch = channel(uart)
    raises(OSError, ch.command, b"AT+CSQ", b"+CSQ:", None, 1000)
    eq(ch.engine.busy, False)
    eq(ch.needs_resync, True)
    eq(ch.command(b"AT+CSQ", b"+CSQ:", timeout_ms=1000).lines, [b"+CSQ: 21,99"])
