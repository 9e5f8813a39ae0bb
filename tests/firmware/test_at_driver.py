"""The blocking AT driver (at/driver.py Channel) on a UART as MicroPython has it:
``readinto`` returns None when nothing is there and short counts, ``any()`` may say more
than ``readinto`` then gives, ``write`` may take part of the bytes (or None), replies come
split at every point, and a full receive buffer loses bytes (an overrun). Whatever the
UART does, a reply is either exact or an error -- never wrong data -- and the channel
is never wedged: the next command works. Runs on CPython and in the MicroPython VM."""

from portable import eq, raises

from synack.at.driver import Channel
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
