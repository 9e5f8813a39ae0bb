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
    return events_of(p, chunks)


def events_of(p, chunks):
    """Feed ``chunks`` to the parser ``p`` as a driver does (what fits, then every
    event); the events."""
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


# -- payloads inside their line: u-blox AT+USORD in binary mode ----------------------------
INLINE = ((b"+USORD:", 1),)


def parse_inline(chunks, max_payload=1536):
    """Events of a parser with the in-line table, and its framing count at the end."""
    p = Parser(urcs=(b"+UUSORD:",), inline=INLINE, prompt=b"@", max_payload=max_payload)
    p.response_prefix = b"+USORD:"
    return events_of(p, chunks), p.framing


def check_inline(data, expected, framing=0, max_payload=1536):
    """Whole, byte by byte and split in two at every point: the same events."""
    for chunks in feed_variants(data):
        eq(parse_inline(chunks, max_payload), (expected, framing),
           "fed as %d chunks" % len(chunks))


def test_inline_payload_between_quotes_on_its_line():
    check_inline(b'\r\n+USORD: 3,5,"hello"\r\n\r\nOK\r\n',
                 [(LINE, b"+USORD: 3,5"), (PAYLOAD, b"hello"), (FINAL, b"OK")])


def test_inline_payload_may_hold_line_ends_quotes_and_any_byte():
    payload = b'a"b\r\nOK\r\n"\r\n+UUSORD: 0,1\r\n\x00\xff@>"'
    data = b'\r\n+USORD: 0,%d,"' % len(payload) + payload + b'"\r\n\r\nOK\r\n\r\n+UUSORD: 0,7\r\n'
    check_inline(data, [(LINE, b"+USORD: 0,%d" % len(payload)), (PAYLOAD, payload),
                        (FINAL, b"OK"), (URC, b"+UUSORD: 0,7")])
    every = bytes(range(256)) * 4    # 1024 bytes, the R4's largest read
    out, framing = parse_inline([b'\r\n+USORD: 6,1024,"' + every + b'"\r\n\r\nOK\r\n'])
    eq((out, framing), ([(LINE, b"+USORD: 6,1024"), (PAYLOAD, every), (FINAL, b"OK")], 0))


def test_inline_zero_length_and_the_r4s_empty_form():
    check_inline(b'\r\n+USORD: 0,0,""\r\n\r\nOK\r\n',
                 [(LINE, b"+USORD: 0,0"), (PAYLOAD, b""), (FINAL, b"OK")])
    # the R4 leaves the length out when there is nothing: an ordinary line
    check_inline(b'\r\n+USORD: 0,""\r\n\r\nOK\r\n', [(LINE, b'+USORD: 0,""'), (FINAL, b"OK")])
    # AT+USORD=<s>,0 asks how much is waiting: no quote, an ordinary line
    check_inline(b"\r\n+USORD: 0,23\r\n\r\nOK\r\n", [(LINE, b"+USORD: 0,23"), (FINAL, b"OK")])


def test_inline_payload_waits_for_its_closing_quote_and_line_end():
    p = Parser(inline=INLINE)
    p.feed(b'\r\n+USORD: 1,3,')
    eq(p.next_event(), None)                 # no quote yet: not a header yet
    p.feed(b'"ab')
    eq((p.next_event(), p.in_payload()), ((LINE, b"+USORD: 1,3"), True))
    for part in (b'c', b'"', b'\r'):
        p.feed(part)
        eq(p.next_event(), None)
    p.feed(b'\n')
    eq((p.next_event(), p.in_payload(), p.buffered()), ((PAYLOAD, b"abc"), False, 0))


def test_inline_length_over_the_buffer_is_a_framing_error_never_an_overflow():
    tail = b"x" * 10 + b'\r\n"\r\n'   # the unframeable payload, CR LF in it
    data = b'\r\n+USORD: 0,10,"' + tail + b"\r\nOK\r\n"
    # the rest of its line is dropped; what its CR LF leaves is read as lines (the
    # driver resyncs: the framing count changed)
    check_inline(data, [(NOISE, b"+USORD: 0,10,"), (LINE, b'"'), (FINAL, b"OK")],
                 framing=1, max_payload=8)
    for bad in (b"1025x", b"-1", b"", b"99999999999"):
        check_inline(b'\r\n+USORD: 0,' + bad + b',"zz"\r\n\r\nOK\r\n',
                     [(NOISE, b"+USORD: 0," + bad + b","), (FINAL, b"OK")], framing=1)


def test_inline_payload_without_its_closing_quote_is_a_framing_error_then_lines_again():
    # a byte gained on the UART: the quote is not where the length puts it
    check_inline(b'\r\n+USORD: 0,3,"abcd"\r\n\r\nOK\r\n\r\n+UUSORD: 0,9\r\n',
                 [(LINE, b"+USORD: 0,3"), (NOISE, b"abc"), (FINAL, b"OK"),
                  (URC, b"+UUSORD: 0,9")], framing=1)
    # the quote but no line end after it; a zero-length payload with no closing quote
    check_inline(b'\r\n+USORD: 0,3,"abc"x\r\nOK\r\n',
                 [(LINE, b"+USORD: 0,3"), (NOISE, b"abc"), (FINAL, b"OK")], framing=1)
    check_inline(b'\r\n+USORD: 0,0,"\r\nOK\r\n',
                 [(LINE, b"+USORD: 0,0"), (NOISE, b""), (FINAL, b"OK")], framing=1)
    # bytes lost: the announced length runs into what follows; the rest of that line goes
    check_inline(b'\r\n+USORD: 0,9,"abc"\r\n\r\nOK\r\n\r\nERROR\r\n',
                 [(LINE, b"+USORD: 0,9"), (NOISE, b'abc"\r\n\r\nO'), (FINAL, b"ERROR")],
                 framing=1)


def test_inline_is_only_for_its_prefix_and_leaves_the_other_events_alone():
    check_inline(b'\r\n+UDCONF: 1,0\r\n\r\n+X: 0,3,"abc"\r\n@\r\nOK\r\n',
                 [(LINE, b"+UDCONF: 1,0"), (LINE, b'+X: 0,3,"abc"'), (PROMPT, None),
                  (FINAL, b"OK")])
    # HEX mode's reply is not binary: its digits fail the framing
    check_inline(b'\r\n+USORD: 0,2,"6869"\r\n\r\nOK\r\n',
                 [(LINE, b"+USORD: 0,2"), (NOISE, b"68"), (FINAL, b"OK")], framing=1)


def test_reset_forgets_an_inline_payload_cut_short():
    p = Parser(inline=INLINE)
    p.feed(b'\r\n+USORD: 0,10,"abc')
    eq((p.next_event(), p.next_event(), p.in_payload()),
       ((LINE, b"+USORD: 0,10"), None, True))
    p.reset()
    eq(p.in_payload(), False)
    p.feed(b"\r\nOK\r\n")
    eq(p.next_event(), (FINAL, b"OK"))
