"""AT engine (sans-I/O): one command in flight, URCs dispatched mid-reply, echo and
noise dropped, timeouts that leave the engine ready for the next command."""

from portable import eq, feed_variants, raises

from synack.at.engine import Engine, Reply
from synack.at.errors import CommandError, CommandTimeout
from synack.at.parser import Parser

PORTABLE = True


def make():
    eng = Engine(Parser(urcs=(b"+CIPRXGET: 1,", b"+IPCLOSE:"),
                        framed=((b"+CIPRXGET: 2,", 1),)))
    seen = []
    eng.on_urc(b"+CIPRXGET: 1,", seen.append)
    eng.on_urc(b"+IPCLOSE:", seen.append)
    return eng, seen


def test_reply_lines_and_urc_mid_reply():
    for chunks in feed_variants(b"AT+CSQ\r\r\n+CIPRXGET: 1,2\r\n\r\n+CSQ: 21,99\r\n"
                                b"\r\nOK\r\n"):
        eng, seen = make()
        eq(eng.begin(b"AT+CSQ", b"+CSQ:", now=0), b"AT+CSQ\r")
        for c in chunks:
            eng.receive(c)
        eq(eng.done, True)
        reply = eng.finish()
        eq(reply.lines, [b"+CSQ: 21,99"])
        eq(seen, [b"+CIPRXGET: 1,2"])
        eq(eng.busy, False)


def test_error_results_raise_with_code():
    eng, _ = make()
    eng.begin(b"AT+CPIN?", b"+CPIN:", now=0)
    eng.receive(b"\r\n+CME ERROR: 10\r\n")
    e = raises(CommandError, eng.finish)
    eq(e.code, 10)
    eq("SIM not inserted" in str(e), True)
    eng.begin(b"AT+NETOPEN", now=0)
    eng.receive(b"\r\n+IP ERROR: Network is already opened\r\n\r\nERROR\r\n")
    e = raises(CommandError, eng.finish)
    eq(e.code, None)
    eq(e.lines, [b"+IP ERROR: Network is already opened"])
    eq("already opened" in str(e), True)


def test_prompt_then_payload_out():
    eng, _ = make()
    eng.begin(b"AT+CIPSEND=0,3", payload=b"a\r\n", now=0)
    eq(eng.take_output(), None)  # not before the prompt
    eng.receive(b"AT+CIPSEND=0,3\r\r\n> ")
    eq(eng.take_output(), b"a\r\n")
    eq(eng.take_output(), None)
    eng.receive(b"\r\nOK\r\n")
    eq(eng.finish().lines, [])


def test_error_instead_of_the_prompt_ends_the_command_and_sends_nothing():
    # AT+CIPSEND on a link the modem has closed: ERROR (or +CME ERROR) comes where the
    # ">" prompt was expected. The command is over at once, not left to time out, and
    # its payload is never written.
    for answer, code in ((b"\r\nERROR\r\n", None), (b"\r\n+CME ERROR: 3\r\n", 3)):
        for chunks in feed_variants(b"AT+CIPSEND=0,3\r" + answer):
            eng, _ = make()
            eng.begin(b"AT+CIPSEND=0,3", payload=b"abc", now=0)
            for c in chunks:
                eng.receive(c)
            eq(eng.done, True)
            eq(eng.expired(now=10 ** 6), False)
            eq(eng.take_output(), None)
            e = raises(CommandError, eng.finish)
            eq((e.code, eng.busy, eng.unexpected), (code, False, 0))


def test_binary_read_payload():
    payload = bytes(range(256)) * 2
    data = ("\r\n+CIPRXGET: 2,0,%d,0\r\n" % len(payload)).encode() + payload + b"\r\nOK\r\n"
    eng, seen = make()
    eng.begin(b"AT+CIPRXGET=2,0,512", b"+CIPRXGET: 2,", now=0)
    eng.receive(data)
    reply = eng.finish()
    eq(reply.payload, payload)
    eq(reply.line(b"+CIPRXGET: 2,"), b"+CIPRXGET: 2,0,512,0")
    eq(seen, [])


def test_one_command_in_flight():
    eng, _ = make()
    eng.begin(b"AT", now=0)
    raises(RuntimeError, eng.begin, b"AT", None, None, 1000, 0)


def test_timeout_truncated_payload_then_next_command_works():
    eng, seen = make()
    eng.begin(b"AT+CIPRXGET=2,0,10", b"+CIPRXGET: 2,", timeout_ms=100, now=0)
    eng.receive(b"\r\n+CIPRXGET: 2,0,10,0\r\nabc")
    eq(eng.expired(now=50), False)
    eq(eng.expired(now=100), True)
    err = eng.abort()
    eq(isinstance(err, CommandTimeout), True)
    eq("cut short" in str(err), True)
    eng.begin(b"AT", now=200)
    eng.receive(b"\r\nOK\r\n")
    eq(eng.finish().lines, [])


def test_stale_final_and_noise_are_counted_not_delivered():
    eng, seen = make()
    eng.receive(b"\r\nOK\r\n\r\nRDY\r\n\x00\xff\r\n")  # nothing in flight
    eq(eng.unexpected, 2)
    eq(eng.noise > 0, True)
    eng.begin(b"AT+CSQ", b"+CSQ:", now=0)
    eng.receive(b"\r\nSMS DONE\r\n\r\n+CSQ: 5,99\r\n\r\nOK\r\n")
    eq(eng.finish().lines, [b"+CSQ: 5,99"])


def _strict_ipclose(line):
    # a handler that parses like the SIM7600 one did: int() of each field
    link, reason = line[9:].split(b",")
    return int(link), int(reason)


def test_malformed_urc_is_contained_and_engine_stays_usable():
    # Issue 10 defect 1: a garbled URC used to raise out of receive() and leave the
    # engine busy for good ("AT command in flight" for every later command).
    eng = Engine(Parser(urcs=(b"+IPCLOSE:",)))
    eng.on_urc(b"+IPCLOSE:", _strict_ipclose)
    eng.receive(b"\r\n+IPCLOSE: 0,\r\n")  # idle
    eq(eng.malformed, 1)
    eq(eng.last_malformed, b"+IPCLOSE: 0,")
    eng.begin(b"AT+CSQ", b"+CSQ:", now=0)
    eng.receive(b"\r\n+CSQ: 9,99\r\n\r\n+IPCLOSE: x,1\r\n\r\nOK\r\n")  # mid-reply
    eq(eng.malformed, 2)
    eq(eng.last_malformed, b"+IPCLOSE: x,1")
    eq(eng.finish().lines, [b"+CSQ: 9,99"])
    eq(eng.busy, False)
    eng.begin(b"AT", now=0)
    eng.receive(b"\r\n+IPCLOSE: 1,1\r\n\r\nOK\r\n")  # a good one still dispatches
    eq(eng.finish().lines, [])
    eq(eng.malformed, 2)


def test_reply_lines_are_capped_and_the_overflow_reported():
    # Issue 10 defect 4: a command's reply lines grew without bound.
    eng = Engine(Parser())
    eng.begin(b"AT+COPS=?", now=0)
    for i in range(1000):
        eng.receive(b"\r\nline %d\r\n" % i)
    eng.receive(b"\r\nOK\r\n")
    reply = eng.finish()
    eq(len(reply.lines), 16)
    eq(reply.lines[0], b"line 0")
    eq(reply.dropped, 984)
    eq(eng.overflow, 984)
    eng.begin(b"AT+X", b"+X:", now=0)
    for i in range(20):
        eng.receive(b"\r\n+X: %d\r\n" % i)
    eng.receive(b"\r\nERROR\r\n")
    e = raises(CommandError, eng.finish)
    eq(len(e.lines), 16)
    eq(e.dropped, 4)
    eq("4 more lines dropped" in str(e), True)
    eng.begin(b"AT", now=0)
    eng.receive(b"\r\nOK\r\n")
    eq(eng.finish().dropped, 0)


def test_abort_returns_to_idle_from_every_state():
    eng, _ = make()
    for payload, data in ((None, b""), (b"x", b""), (b"x", b"\r\n> "),
                          (None, b"\r\n+CIPRXGET: 2,0,9,0\r\nab"), (None, b"\r\nOK\r\n")):
        eng.begin(b"AT+X", payload=payload, now=0)
        eng.receive(data)
        eng.abort()
        eq(eng.busy, False)
        eng.begin(b"AT", now=0)
        eng.receive(b"\r\nOK\r\n")
        eq(eng.finish().lines, [])


class _FlakyUart:
    """Answers OK to every command line; readinto raises once when ``fail`` is set."""

    def __init__(self):
        self.rx = bytearray()
        self.tx = bytearray()
        self.fail = False
        self.hold = False  # keep replies back (a command waiting)

    def write(self, data):
        self.tx += data
        while b"\r" in self.tx:
            i = self.tx.find(b"\r")
            if not self.hold:
                self.rx += b"\r\nOK\r\n"
            self.tx = self.tx[i + 1:]
        return len(data)

    def any(self):
        return 1 if self.fail else len(self.rx)

    def readinto(self, buf):
        if self.fail:
            self.fail = False
            raise OSError(5, "UART error")
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n


def test_driver_aborts_a_command_when_its_wait_raises():
    from synack.at.driver import Channel

    uart = _FlakyUart()
    chan = Channel(uart, Parser())
    eq(chan.command(b"AT").lines, [])
    uart.hold = True
    uart.fail = True
    raises(OSError, chan.command, b"AT+CSQ")
    eq(chan.engine.busy, False)  # not wedged: the next command goes out (after a resync)
    eq(chan.needs_resync, True)
    uart.hold = False
    eq(chan.command(b"AT+CGMM").lines, [])
    eq(chan.engine.busy, False)


def test_a_fresh_engine_is_idle_with_nothing_counted():
    eng = Engine(Parser())
    eq((eng.busy, eng.done, eng.command, eng.take_output(), eng.expired(now=0)),
       (False, False, None, None, False))
    eq((eng.noise, eng.unexpected, eng.urcs, eng.malformed, eng.last_malformed,
        eng.overflow), (0, 0, 0, 0, None, 0))
    err = eng.abort()                    # nothing in flight: still a usable error
    eq((err.command, err.timeout_ms, str(err)), (b"", 0, ": no answer within 0 ms"))
    eq(eng.busy, False)
    reply = Reply([b"+A: 1", b"+B: 2"], None)
    eq((reply.dropped, reply.line(b"+B:"), reply.line(b"+C:")), (0, b"+B: 2", None))


def test_misuse_errors_name_the_command_in_flight():
    eng = Engine(Parser())
    eq(str(raises(RuntimeError, eng.finish)), "AT command not finished")
    eng.begin(b"AT+CSQ", now=0)
    eq(str(raises(RuntimeError, eng.begin, b"AT")), "AT command in flight: AT+CSQ")
    eq(str(raises(RuntimeError, eng.finish)), "AT command not finished")


def test_default_timeout_is_5_s_and_expired_reads_the_clock():
    eng = Engine(Parser())
    eng.begin(b"AT", now=1000)
    eq((eng.expired(now=5999), eng.expired(now=6000)), (False, True))
    eq(eng.abort().timeout_ms, 5000)
    eng.begin(b"AT", timeout_ms=10 ** 6)      # now from the tick counter
    eq(eng.expired(), False)


def test_every_urc_is_counted_and_one_without_handler_is_unexpected():
    eng = Engine(Parser(urcs=(b"+IPCLOSE:", b"+CMTI:")))
    seen = []
    eng.on_urc(b"+IPCLOSE:", seen.append)
    eng.receive(b"\r\n+IPCLOSE: 0,1\r\n\r\n+CMTI: \"SM\",1\r\n\r\n+CMTI: \"SM\",2\r\n"
                b"\r\n+IPCLOSE: 1,1\r\n")
    eq((eng.urcs, eng.unexpected, seen), (4, 2, [b"+IPCLOSE: 0,1", b"+IPCLOSE: 1,1"]))


def test_a_reply_prefix_that_is_also_a_urc_answers_the_command():
    # +CIPCLOSE: answers AT+CIPCLOSE? and also arrives unsolicited: while the command
    # waits for it, it is a reply line, not a URC.
    eng = Engine(Parser(urcs=(b"+CIPCLOSE:",)))
    seen = []
    eng.on_urc(b"+CIPCLOSE:", seen.append)
    eng.begin(b"AT+CIPCLOSE?", b"+CIPCLOSE:", now=0)
    eng.receive(b"\r\n+CIPCLOSE: 0,0,0\r\n\r\nOK\r\n")
    eq((eng.finish().lines, seen), ([b"+CIPCLOSE: 0,0,0"], []))
    eng.receive(b"\r\n+CIPCLOSE: 1,0\r\n")       # no command: unsolicited again
    eq(seen, [b"+CIPCLOSE: 1,0"])


def test_a_read_larger_than_the_parser_buffer_is_taken_whole():
    eng = Engine(Parser(max_line=16, max_payload=8))   # a 25-byte buffer
    eng.begin(b"AT+X", b"+X:", now=0)
    data = b"".join(b"\r\n+X: %d\r\n" % i for i in range(10)) + b"\r\nOK\r\n"
    eq(eng.receive(data), len(data))
    eq(eng.finish().lines, [b"+X: %d" % i for i in range(10)])
    eq(eng.noise, 0)


def test_echo_in_either_case_is_dropped():
    eng = Engine(Parser())
    eng.begin(b"AT+CSQ", now=0)              # no prefix: every other line is kept
    eng.receive(b"AT+CSQ\r\r\nat+csq\r\r\nATE0\r\r\n\r\n+CSQ: 1,99\r\n\r\nOK\r\n")
    eq((eng.finish().lines, eng.unexpected), ([b"+CSQ: 1,99"], 0))


def test_late_finals_prompts_payloads_and_noise_are_each_counted():
    eng, _ = make()
    eng.receive(b"\r\nOK\r\n\r\nERROR\r\n")                 # finals with nothing in flight
    eq(eng.unexpected, 2)
    eng.receive(b"\r\n> \r\n> ")                            # prompts nobody waits for
    eq(eng.unexpected, 4)
    eng.begin(b"AT+CSQ", b"+CSQ:", now=0)
    eng.receive(b"\r\n> \r\n> ")                            # not while waiting for OK
    eq(eng.unexpected, 6)
    eng.abort()
    eng.receive(b"\r\n+CIPRXGET: 2,0,1,0\r\na\r\n+CIPRXGET: 2,0,1,0\r\nb")
    eq(eng.unexpected, 10)     # two payload lines and two payloads, nothing in flight
    before = eng.noise
    eng.receive(b"\r\n\x00\x01\r\n")
    one = eng.noise - before
    eng.receive(b"\r\n\x00\x01\r\n")
    eq((one > 0, eng.noise - before), (True, 2 * one))


def test_error_context_keeps_the_first_4_unprefixed_lines():
    eng = Engine(Parser())
    eng.begin(b"AT+X", b"+X:", now=0)
    eng.receive(b"".join(b"\r\nnote %d\r\n" % i for i in range(6)) + b"\r\nERROR\r\n")
    e = raises(CommandError, eng.finish)
    eq((e.lines, eng.unexpected), ([b"note 0", b"note 1", b"note 2", b"note 3"], 6))


def test_timeout_messages_say_what_was_missing():
    eng, _ = make()
    eng.begin(b"AT+CIPSEND=0,1", payload=b"x", timeout_ms=100, now=0)
    eq(str(eng.abort()), "AT+CIPSEND=0,1: no answer within 100 ms (no '>' prompt)")
    eng.begin(b"AT+CSQ", timeout_ms=200, now=0)
    eq(str(eng.abort()), "AT+CSQ: no answer within 200 ms")
    eng.begin(b"AT+CIPRXGET=2,0,9", timeout_ms=300, now=0)
    eng.receive(b"\r\n+CIPRXGET: 2,0,9,0\r\nabc")
    eq(str(eng.abort()),
       "AT+CIPRXGET=2,0,9: no answer within 300 ms (payload cut short, 3 bytes buffered)")
    eq((eng.command, eng.busy), (None, False))


def test_a_reply_without_payload_has_none():
    eng = Engine(Parser())
    eng.begin(b"AT", now=0)
    eng.receive(b"\r\nOK\r\n")
    eq(eng.finish().payload, None)


def test_inline_binary_read_whatever_the_fragmentation_then_a_garbled_one():
    # u-blox AT+USORD in binary mode: the bytes between quotes on the reply line itself
    payload = b'x"\r\nOK\r\n\x00"'
    data = b'\r\n+USORD: 0,%d,"' % len(payload) + payload + b'"\r\n\r\nOK\r\n'
    for chunks in feed_variants(data):
        eng = Engine(Parser(urcs=(b"+UUSORD:",), inline=((b"+USORD:", 1),), prompt=b"@"))
        eng.begin(b"AT+USORD=0,1024", b"+USORD:", now=0)
        for c in chunks:
            eng.receive(c)
        reply = eng.finish()
        eq((reply.lines, reply.payload, eng.parser.framing, eng.unexpected),
           ([b"+USORD: 0,%d" % len(payload)], payload, 0, 0))
    # a byte gained: the reply ends without its payload, the framing count tells, and
    # the next command is answered
    eng.begin(b"AT+USORD=0,1024", b"+USORD:", now=0)
    eng.receive(b'\r\n+USORD: 0,2,"abc"\r\n\r\nOK\r\n')
    reply = eng.finish()
    eq((reply.lines, reply.payload, eng.parser.framing), ([b"+USORD: 0,2"], None, 1))
    eng.begin(b"AT", now=0)
    eng.receive(b"\r\nOK\r\n")
    eq(eng.finish().lines, [])
