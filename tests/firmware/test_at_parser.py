"""AT parser: every case fed whole, one byte at a time and split at every boundary
must give identical events. Runs on CPython and on the MicroPython VM."""

from portable import eq, feed_variants, raises

from synack.at.parser import (FINAL, LINE, NOISE, PAYLOAD, PROMPT, URC, Parser, fields,
                              uint)

PORTABLE = True

URCS = (b"+CIPRXGET: 1,", b"+IPCLOSE:", b"+CIPOPEN:", b"RDY")
FRAMED = ((b"+CIPRXGET: 2,", 1),)


def parse(chunks, prefix=None, max_line=256):
    p = Parser(urcs=URCS, framed=FRAMED, max_line=max_line)
    p.response_prefix = prefix
    out = []
    for chunk in chunks:
        mv = memoryview(chunk)
        while len(mv):
            n = p.feed(mv)
            mv = mv[n:]
            while True:
                ev = p.next_event()
                if ev is None:
                    break
                out.append(ev)
    return out


def check(data, expected, prefix=None, max_line=256):
    for chunks in feed_variants(data):
        eq(parse(chunks, prefix, max_line), expected, "fed as %d chunks" % len(chunks))


def test_reply_with_echo():
    check(b"AT+CSQ\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n",
          [(LINE, b"AT+CSQ"), (LINE, b"+CSQ: 20,99"), (FINAL, b"OK")])


def test_final_result_codes():
    check(b"\r\nERROR\r\n\r\n+CME ERROR: 10\r\n\r\n+CMS ERROR: 500\r\n\r\nNO CARRIER\r\n",
          [(FINAL, b"ERROR"), (FINAL, b"+CME ERROR: 10"), (FINAL, b"+CMS ERROR: 500"),
           (FINAL, b"NO CARRIER")])


def test_urc_between_echo_and_ok():
    check(b"AT+CIPCLOSE?\r\r\n+CIPRXGET: 1,3\r\n\r\n+CIPCLOSE: 1,0,0,0,0,0,0,0,0,0\r\n"
          b"\r\nOK\r\n",
          [(LINE, b"AT+CIPCLOSE?"), (URC, b"+CIPRXGET: 1,3"),
           (LINE, b"+CIPCLOSE: 1,0,0,0,0,0,0,0,0,0"), (FINAL, b"OK")])


def test_response_prefix_overrides_urc_table():
    check(b"\r\n+CIPOPEN: 0,\"TCP\",\"1.2.3.4\",80\r\n\r\nOK\r\n",
          [(LINE, b"+CIPOPEN: 0,\"TCP\",\"1.2.3.4\",80"), (FINAL, b"OK")], prefix=b"+CIPOPEN:")
    check(b"\r\n+CIPOPEN: 0,0\r\n", [(URC, b"+CIPOPEN: 0,0")])


def test_prompt():
    check(b"AT+CIPSEND=0,5\r\r\n> ", [(LINE, b"AT+CIPSEND=0,5"), (PROMPT, None)])
    check(b"\r\n>\r\nOK\r\n", [(PROMPT, None), (FINAL, b"OK")])


def test_binary_payload_all_byte_values():
    payload = bytes(range(256)) + b"\r\nOK\r\n" + bytes(range(255, -1, -1))
    n = len(payload)
    head = ("\r\n+CIPRXGET: 2,0,%d,7\r\n" % n).encode()
    data = head + payload + b"\r\nOK\r\n\r\n+IPCLOSE: 0,1\r\n"
    expected = [(LINE, head.strip()), (PAYLOAD, payload), (FINAL, b"OK"),
                (URC, b"+IPCLOSE: 0,1")]
    # every split point of the header and of the payload's edges, plus byte-by-byte
    eq(parse([data]), expected)
    eq(parse([data[i:i + 1] for i in range(len(data))]), expected, "byte by byte")
    for cut in list(range(0, 40)) + list(range(len(data) - 40, len(data))):
        eq(parse([data[:cut], data[cut:]]), expected, "split at %d" % cut)


def test_zero_length_payload():
    check(b"\r\n+CIPRXGET: 2,0,0,0\r\n\r\nOK\r\n",
          [(LINE, b"+CIPRXGET: 2,0,0,0"), (FINAL, b"OK")])  # no empty PAYLOAD event


def test_framed_payload_is_delivered_the_moment_its_last_byte_arrives():
    # Nothing follows the payload yet (the modem's OK is still on the wire): its announced
    # length alone tells that it is complete, whatever the fragmentation.
    for n in (1, 2, 5, 64):
        payload = bytes(range(65, 65 + n))
        head = b"+CIPRXGET: 2,0,%d,0" % n
        check(b"\r\n" + head + b"\r\n" + payload, [(LINE, head), (PAYLOAD, payload)])
    p = Parser(urcs=URCS, framed=FRAMED)
    p.feed(b"\r\n+CIPRXGET: 2,0,3,0\r\nab")
    eq((p.next_event(), p.next_event(), p.in_payload()),
       ((LINE, b"+CIPRXGET: 2,0,3,0"), None, True))
    p.feed(b"c")
    eq((p.next_event(), p.in_payload(), p.buffered()), ((PAYLOAD, b"abc"), False, 0))


def test_header_cr_then_lf_arriving_later():
    data = b"\r\n+CIPRXGET: 2,1,3,0\r\n\nAB\r\nOK\r\n"
    # the payload itself starts with LF: only the LF of the header's CRLF is skipped
    check(data, [(LINE, b"+CIPRXGET: 2,1,3,0"), (PAYLOAD, b"\nAB"), (FINAL, b"OK")])


def test_garbage_resynchronises():
    data = b"\x00\xff\xfe junk\x01\r\n\r\nOK\r\n"
    evs = parse([data])
    eq(evs[0][0], NOISE)
    eq(evs[-1], (FINAL, b"OK"))
    for chunks in feed_variants(data):
        eq(parse(chunks), evs)


def test_overlong_line_is_noise_and_next_line_parses():
    p = Parser(max_line=32)
    data = b"X" * 100 + b"\r\nOK\r\n"
    out = []
    mv = memoryview(data)
    while len(mv):
        n = p.feed(mv)
        mv = mv[n:]
        ev = p.next_event()
        while ev is not None:
            out.append(ev)
            ev = p.next_event()
    eq(out[-1], (FINAL, b"OK"))
    kinds = [e[0] for e in out[:-1]]
    eq(set(kinds), {NOISE})


def test_bad_payload_length_is_noise():
    check(b"\r\n+CIPRXGET: 2,0,99999,0\r\n\r\nOK\r\n",
          [(NOISE, b"+CIPRXGET: 2,0,99999,0"), (FINAL, b"OK")])
    check(b"\r\n+CIPRXGET: 2,0,x,0\r\n\r\nOK\r\n",
          [(NOISE, b"+CIPRXGET: 2,0,x,0"), (FINAL, b"OK")])


def test_reset_drops_truncated_payload():
    p = Parser(urcs=URCS, framed=FRAMED)
    p.feed(b"\r\n+CIPRXGET: 2,0,10,0\r\nabc")
    eq(p.next_event(), (LINE, b"+CIPRXGET: 2,0,10,0"))
    eq(p.next_event(), None)
    eq(p.in_payload(), True)
    p.reset()
    p.feed(b"\r\nOK\r\n")
    eq(p.next_event(), (FINAL, b"OK"))


def test_fields_honours_quotes():
    eq(fields(b'+CDNSGIP: 1,"a,b.example","10.0.0.1"', 9), [b"1", b"a,b.example", b"10.0.0.1"])
    eq(fields(b"+CSQ: 20,99", 5), [b"20", b"99"])


def test_overlong_line_tail_is_not_a_line_whatever_the_fragmentation():
    # Issue 10 defect 3: fed in pieces, the tail of an over-long line used to become a
    # line of its own -- here an OK that would answer the command in flight.
    check(b"A" * 32 + b"OK\r\n\r\n+CSQ: 1,2\r\n",
          [(NOISE, b"A" * 32), (LINE, b"+CSQ: 1,2")], max_line=32)
    # ... or a URC, or a framing header that swallows the next bytes as payload.
    check(b"Z" * 40 + b"+IPCLOSE: 0,1\r\n\r\nOK\r\n",
          [(NOISE, b"Z" * 32), (FINAL, b"OK")], max_line=32)
    check(b"Z" * 33 + b"+CIPRXGET: 2,0,4,0\r\n\r\nOK\r\n\r\n+IPCLOSE: 0,1\r\n",
          [(NOISE, b"Z" * 32), (FINAL, b"OK"), (URC, b"+IPCLOSE: 0,1")], max_line=32)


def test_overlong_line_discarded_up_to_lf_or_cr():
    check(b"\x01" * 50 + b"\nOK\r\n", [(NOISE, b"\x01" * 32), (FINAL, b"OK")], max_line=32)
    check(b"Q" * 90 + b"\rRDY\r", [(NOISE, b"Q" * 32), (URC, b"RDY")], max_line=32)
    p = Parser(max_line=32)
    p.feed(b"X" * 40)
    eq(p.next_event(), (NOISE, b"X" * 32))
    eq(p.next_event(), None)
    p.feed(b"X" * 100)
    eq(p.next_event(), None)
    eq(p.discarded, 108)
    p.feed(b"\r\nOK\r\n")
    eq(p.next_event(), (FINAL, b"OK"))


def test_line_of_exactly_max_line_is_a_line_whatever_the_fragmentation():
    line = b"+CSQ: " + b"9" * 26
    check(line + b"\r\nOK\r\n", [(LINE, line), (FINAL, b"OK")], max_line=32)
    check(line + b"9\r\nOK\r\n", [(NOISE, line), (FINAL, b"OK")], max_line=32)


def test_reset_ends_discarding():
    p = Parser(max_line=32)
    p.feed(b"X" * 40)
    eq(p.next_event(), (NOISE, b"X" * 32))
    p.reset()
    p.feed(b"OK\r\n")
    eq(p.next_event(), (FINAL, b"OK"))


def test_payload_length_must_be_plain_digits():
    for bad in (b"-1", b"+4", b"1_0", b"0x4", b" ", b"4 4"):
        check(b"\r\n+CIPRXGET: 2,0," + bad + b",0\r\n\r\nOK\r\n",
              [(NOISE, b"+CIPRXGET: 2,0," + bad + b",0"), (FINAL, b"OK")])


def test_numbers_are_one_to_nine_ascii_digits():
    eq([uint(v) for v in (b"0", b"9", b"09", b" 42 ", b"999999999")], [0, 9, 9, 42, 999999999])
    eq([uint(v) for v in (b"", b"  ", b"1000000000", b"/", b":", b"4a")], [-1] * 6)
    # a framing header without the length field is noise, not a crash
    check(b"\r\n+CIPRXGET: 2,0\r\n\r\nOK\r\n", [(NOISE, b"+CIPRXGET: 2,0"), (FINAL, b"OK")])


def test_tab_and_tilde_are_text_other_control_bytes_and_del_are_noise():
    check(b"\r\n+X: a\tb~\r\n", [(LINE, b"+X: a\tb~")])
    for bad in (b"\x1f", b"\x7f", b"\x80", b"\x00"):
        check(b"\r\n+X: " + bad + b"\r\nOK\r\n", [(NOISE, b"+X: " + bad), (FINAL, b"OK")])


def test_command_parameter_validation():
    # Issue 10 defect 5: what may be written between quotes in a command (at/quote.py).
    import errno

    from synack.at import quote

    for good in ("example.com", "a-b.example.com.", "10.0.0.1", "x", "a" * 63 + ".io"):
        eq(quote.is_host(good), True, good)
    eq(quote.host("Example.COM"), b"Example.COM")
    for bad in ('x";+CFUN=0;"', "a;b", "a\r\nb", "a b", "", "a..b", "-a", "a-", "a" * 64,
                "a." * 127 + "com", "ex\u00e4mple.com", "\u0661.2.3.4", None, 5):
        eq(quote.is_host(bad), False, repr(bad))
    e = raises(OSError, quote.host, 'x";+CFUN=0;"')
    eq(e.args[0], errno.EINVAL)
    eq(quote.is_ipv4("1.2.3.4"), True)
    eq(quote.is_ipv4("1.2.3.256"), False)
    eq(quote.is_ipv4("1.2.3"), False)
    eq(quote.param("internet", "APN"), b"internet")
    eq(quote.param(b"web.apn", "APN"), b"web.apn")
    for bad in ('a"b', "a\rb", "a\nb", "a\x00b", "caf\u00e9", "x" * 101):
        raises(ValueError, quote.param, bad, "APN")


def test_buffer_is_one_line_plus_one_byte_plus_one_payload():
    p = Parser()
    eq((p.max_line, p.max_payload, p.framing, p.discarded), (256, 1536, 0, 0))
    eq(p.feed(bytes(2000)), 256 + 1 + 1536)
    eq(Parser(max_line=8, max_payload=8).feed(b"x" * 20), 17)


def test_a_payload_of_exactly_max_payload_bytes_is_delivered():
    p = Parser(framed=FRAMED, max_payload=4)
    p.feed(b"\r\n+CIPRXGET: 2,0,4,0\r\nabcd\r\n+CIPRXGET: 2,0,5,0\r\n")
    eq([p.next_event() for _ in range(4)],
       [(LINE, b"+CIPRXGET: 2,0,4,0"), (PAYLOAD, b"abcd"), (NOISE, b"+CIPRXGET: 2,0,5,0"),
        None])


def test_in_payload_until_the_last_announced_byte():
    p = Parser(framed=FRAMED)
    p.feed(b"\r\n+CIPRXGET: 2,0,1,0\r\n")
    eq((p.next_event(), p.in_payload()), ((LINE, b"+CIPRXGET: 2,0,1,0"), True))
    p.feed(b"z")
    eq((p.next_event(), p.in_payload()), ((PAYLOAD, b"z"), False))


def test_reset_forgets_the_response_prefix():
    p = Parser(urcs=URCS)
    p.response_prefix = b"+IPCLOSE:"
    p.reset()
    p.feed(b"\r\n+IPCLOSE: 0,1\r\n")
    eq(p.next_event(), (URC, b"+IPCLOSE: 0,1"))


def test_a_payload_must_be_followed_by_the_trailer():
    framed = ((b"+CIPRXGET: 2,", 1),)
    good = b"\r\n+CIPRXGET: 2,0,3,0\r\nabc\r\n\r\nOK\r\n"
    for chunks in feed_variants(good):
        p = Parser(framed=framed, trailer=b"\r\n")
        out = []
        for c in chunks:
            p.feed(c)
            ev = p.next_event()
            while ev is not None:
                out.append(ev)
                ev = p.next_event()
        eq(out, [(LINE, b"+CIPRXGET: 2,0,3,0"), (PAYLOAD, b"abc"), (FINAL, b"OK")])
        eq(p.framing, 0)
    p = Parser(framed=framed, trailer=b"\r\n")
    p.feed(b"\r\n+CIPRXGET: 2,0,3,0\r\nabc")
    eq((p.next_event(), p.next_event()), ((LINE, b"+CIPRXGET: 2,0,3,0"), None))  # waits
    p.feed(b"\r")
    eq(p.next_event(), None)
    # a byte lost on the UART: the announced length ends inside the next line
    p.feed(b"\n\r\n+CIPRXGET: 2,0,3,0\r\nab\r\nOK\r\n+CIPRXGET: 2,0,2,0\r\nxyZZ")
    evs = []
    ev = p.next_event()
    while ev is not None:
        evs.append(ev)
        ev = p.next_event()
    eq(evs, [(PAYLOAD, b"abc"), (LINE, b"+CIPRXGET: 2,0,3,0"), (NOISE, b"ab\r"),
             (FINAL, b"OK"), (LINE, b"+CIPRXGET: 2,0,2,0"), (NOISE, b"xy")])
    eq(p.framing, 2)


def test_over_long_lines_add_up_in_discarded():
    p = Parser(max_line=8)
    p.feed(b"A" * 12 + b"\r\n")
    eq((p.next_event(), p.discarded), ((NOISE, b"A" * 8), 4))
    p.feed(b"B" * 10)
    eq((p.next_event(), p.discarded), ((NOISE, b"B" * 8), 6))
    p.feed(b"\r\nOK\r\n")
    eq((p.next_event(), p.discarded), ((FINAL, b"OK"), 6))


def test_prompt_then_text_on_the_same_line():
    # ">" (and one space after it) is the prompt; what follows starts the next line.
    check(b"\r\n>OK\r\n", [(PROMPT, None), (FINAL, b"OK")])
    check(b"\r\n> OK\r\n", [(PROMPT, None), (FINAL, b"OK")])
    p = Parser()
    out = []
    for chunk in (b"x \r\n", b">", b"OK\r\n"):   # a stale space behind the prompt
        p.feed(chunk)
        ev = p.next_event()
        while ev is not None:
            out.append(ev)
            ev = p.next_event()
    eq(out, [(LINE, b"x "), (PROMPT, None), (FINAL, b"OK")])
