"""AT engine (sans-I/O): one command in flight, URCs dispatched mid-reply, echo and
noise dropped, timeouts that leave the engine ready for the next command."""

from portable import eq, feed_variants, raises

from synack.at.engine import Engine
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
