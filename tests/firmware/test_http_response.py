"""HTTP response reader: every case fed whole, one byte at a time and split in two at
every boundary must give the same events; framing, keep-alive, limits and every error.
Runs on CPython and on the MicroPython VM."""

from portable import eq, feed_variants, raises

from synack.http.errors import ConnectionClosed, LimitError, ProtocolError
from synack.http.head import Head, decimal, digits, hex_size, parse_status
from synack.http.head import text as as_text
from synack.http.response import DATA, END, ERROR, NEED_DATA, RESPONSE, Reader

PORTABLE = True


def _feed(r, chunk, how):
    # The three ways a caller may hand data over: bytes, a memoryview (no find(): the
    # reader scans bytes itself), and a bigger bytearray with a byte count.
    if how == 0:
        r.feed(bytes(chunk))
    elif how == 1:
        r.feed(memoryview(bytearray(chunk)))
    else:
        buf = bytearray(len(chunk) + 7)
        buf[:len(chunk)] = chunk
        r.feed(buf, len(chunk))


def parse(chunks, method=b"GET", eof=False, reader=None, how=0, **limits):
    """Events as plain values: ("head", status, version, reason, headers, keep_alive),
    ("body", bytes) with adjacent DATA merged, ("end", trailers)."""
    r = reader or Reader(**limits)
    r.start(method)
    out = []
    body = bytearray()

    def drain():
        while True:
            kind, value = r.next_event()
            if kind == NEED_DATA:
                return
            if kind == DATA:
                eq(len(value) > 0, True, "empty DATA event")
                body.extend(value)
                continue
            if body:
                out.append(("body", bytes(body)))
                body[:] = b""  # slice assignment (not del) works on MicroPython
            if kind == RESPONSE:
                out.append(("head", value.status, value.version, value.reason, value.headers,
                            value.keep_alive))
            elif kind == END:
                out.append(("end", value))
                return

    for chunk in chunks:
        _feed(r, chunk, how)
        drain()
    if eof:
        r.feed_eof()
        drain()
    if body:
        out.append(("body", bytes(body)))
    return out


def check(data, expected, method=b"GET", eof=False, **limits):
    for i, chunks in enumerate(feed_variants(data)):
        eq(parse(chunks, method, eof, how=i % 3, **limits), expected,
           "fed as %d chunks" % len(chunks))


def fails(data, exc_type, method=b"GET", eof=False, **limits):
    """Every way of feeding ``data`` raises ``exc_type``; returns the last error."""
    err = None
    for i, chunks in enumerate(feed_variants(data)):
        err = raises(exc_type, parse, chunks, method, eof, None, i % 3, **limits)
    return err


def test_content_length_body():
    check(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
          [("head", 200, 11, b"OK", [(b"content-length", b"5"),
                                     (b"content-type", b"text/plain")], True),
           ("body", b"hello"), ("end", [])])


def test_binary_body_all_byte_values():
    body = bytes(range(256))
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 256\r\n\r\n" + body
    eq(parse([data]), [("head", 200, 11, b"OK", [(b"content-length", b"256")], True),
                       ("body", body), ("end", [])])
    eq(parse([data[i:i + 1] for i in range(len(data))], how=1)[1], ("body", body))


def test_chunked_with_extensions_and_trailers():
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;name=value\r\nhello\r\n1A \r\n" + b"x" * 26 + b"\r\n"
            b"0\r\nX-Checksum: abc\r\nX-Other:  d e \r\n\r\n")
    check(data, [("head", 200, 11, b"OK", [(b"transfer-encoding", b"chunked")], True),
                 ("body", b"hello" + b"x" * 26),
                 ("end", [(b"x-checksum", b"abc"), (b"x-other", b"d e")])])


def test_close_delimited_body_ends_at_eof():
    data = b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\nall of this\r\nis body"
    check(data, [("head", 200, 10, b"OK", [(b"server", b"old")], False),
                 ("body", b"all of this\r\nis body"), ("end", [])], eof=True)


def test_interim_1xx_responses_are_skipped():
    data = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    check(data, [("head", 201, 11, b"Created", [(b"content-length", b"2")], True),
                 ("body", b"ok"), ("end", [])])
    r = Reader()
    parse([data], reader=r)
    eq(r.informational, 2)


def test_head_204_304_have_no_body():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    check(head, [("head", 200, 11, b"OK", [(b"content-length", b"1000")], True), ("end", [])],
          method=b"HEAD")
    check(b"HTTP/1.1 204 No Content\r\n\r\n",
          [("head", 204, 11, b"No Content", [], True), ("end", [])])
    check(b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 50\r\n\r\n',
          [("head", 304, 11, b"Not Modified", [(b"etag", b'"v1"'), (b"content-length", b"50")],
            True), ("end", [])])


def test_keep_alive_rules():
    def keep(status_line, *headers):
        data = status_line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"
        return parse([data], method=b"HEAD")[0][5]
    eq(keep(b"HTTP/1.1 200 OK"), True)
    eq(keep(b"HTTP/1.1 200 OK", b"Connection: close"), False)
    eq(keep(b"HTTP/1.1 200 OK", b"Connection: Upgrade, CLOSE"), False)
    eq(keep(b"HTTP/1.0 200 OK"), False)
    eq(keep(b"HTTP/1.0 200 OK", b"Connection: Keep-Alive"), True)
    eq(keep(b"HTTP/1.2 200 OK"), True)  # a later 1.x minor is read as 1.1
    # close-delimited, or both Transfer-Encoding and Content-Length: never reused
    eq(parse([b"HTTP/1.1 200 OK\r\n\r\n"])[0][5], False)
    ev = parse([b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"2\r\nab\r\n0\r\n\r\n"])
    eq(ev[0][5], False)
    eq(ev[1:], [("body", b"ab"), ("end", [])])


def test_lenient_but_unambiguous_input():
    # LF-only line ends, blank lines before the status line, a missing reason phrase,
    # obs-fold continuation lines, repeated identical Content-Length values.
    check(b"\r\n\nHTTP/1.1 200\nX-Long: a\n  b\n\tc\nContent-Length: 3, 3\n\nabc",
          [("head", 200, 11, b"", [(b"x-long", b"a b c"), (b"content-length", b"3, 3")], True),
           ("body", b"abc"), ("end", [])])


def test_two_responses_on_one_connection():
    r = Reader()
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA"
    second = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nB\r\n0\r\n\r\n"
    eq(parse([first], reader=r)[-2:], [("body", b"A"), ("end", [])])
    eq(r.unconsumed(), 0)
    eq(parse([second], reader=r)[-2:], [("body", b"B"), ("end", [])])
    # bytes beyond the end of a response stay unconsumed: the caller must not reuse
    eq(parse([first + b"junk"], reader=r)[-1], ("end", []))
    eq(r.unconsumed(), 4)
    eq(r.done, True)


def test_malformed_status_lines():
    for line in (b"HTP/1.1 200 OK", b"HTTP/1.1 20 OK", b"HTTP/1.1 2000 OK", b"HTTP/2 200 OK",
                 b"HTTP/1.1 200OK", b"HTTP/1.x 200 OK", b"HTTP/1.1  200 OK", b"hello",
                 b"HTTP/1.1 099 Low", b"SSH-2.0-OpenSSH_9.6"):
        err = raises(ProtocolError, parse, [line + b"\r\n\r\n"])
        eq("malformed status line" in str(err), True, str(err))
    err = fails(b"HTTP/1.1 OK 200\r\n\r\n", ProtocolError)
    eq(str(err), "malformed status line b'HTTP/1.1 OK 200'")


def test_malformed_headers_and_framing():
    base = b"HTTP/1.1 200 OK\r\n"
    cases = (
        (b"Bad Header: x\r\n\r\n", "malformed header line"),
        (b"Name : x\r\n\r\n", "malformed header line"),
        (b": x\r\n\r\n", "malformed header line"),
        (b"NoColon\r\n\r\n", "malformed header line"),
        (b" folded-first: x\r\n\r\n", "continuation"),
        (b"X: a\rb\r\n\r\n", "CR or NUL"),
        (b"Content-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"Content-Length: 1x\r\n\r\n", "bad Content-Length"),
        (b"Content-Length: 3\r\nContent-Length: 4\r\n\r\n", "bad Content-Length"),
        (b"Transfer-Encoding: gzip, chunked\r\n\r\n", "unsupported transfer coding"),
        (b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"Transfer-Encoding: chunked\r\n\r\n\r\n", "bad chunk size"),
        (b"Transfer-Encoding: chunked\r\n\r\n123456789\r\n", "bad chunk size"),
        (b"Transfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "not followed by CRLF"),
    )
    for rest, text in cases:
        err = raises(ProtocolError, parse, [base + rest])
        eq(text in str(err), True, "%r: %s" % (rest, err))
    err = fails(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", ProtocolError)
    eq("101" in str(err), True)


def test_numbers_are_ascii_digits_only():
    eq([digits(t) for t in (b"0", b"007", b"123456789012345", "42")], [0, 7, 123456789012345, 42])
    eq([digits(t, 16, 8) for t in (b"ff", b"FfFf", b"7fffffff", b"0")], [255, 65535, 2**31 - 1, 0])
    for t in (b"", b"+1", b"-1", b" 1", b"1 ", b"1_0", b"1.0", b"0x1", b"\xb2", b"\xd9\xa1",
              "\u00b2", "\u0661", "1\u0661", "", b"1234567890123456"):
        eq(digits(t), -1, repr(t))
    eq(digits(b"a"), -1)
    eq(digits(b"123", 10, 2), -1)
    eq((decimal(b"10"), decimal(b"1e3"), hex_size(b"1F"), hex_size(b"123456789")), (10, -1, 31, -1))
    # a status code or Content-Length that is not ASCII digits is malformed
    for line in (b"HTTP/1.1 2\xb2\xb2 OK", b"HTTP/1.1 +20 OK", b"HTTP/1.1 2_0 OK"):
        raises(ProtocolError, parse, [line + b"\r\n\r\n"])
    for value in (b"+5", b"\xd9\xa5", b"5_0", b" 5 5"):
        err = raises(ProtocolError, parse, [b"HTTP/1.1 200 OK\r\nContent-Length: " + value
                                            + b"\r\n\r\nabcde"])
        eq("bad Content-Length" in str(err), True, str(err))


def test_header_text_never_fails_to_decode():
    eq(as_text(b"plain"), "plain")
    eq(as_text(b"caf\xc3\xa9"), "caf\u00e9")        # UTF-8 stays UTF-8
    eq(as_text(b"caf\xe9"), "caf\u00e9")             # not UTF-8: ISO-8859-1
    eq(as_text(b"\xff\xfe\x80"), "\u00ff\u00fe\u0080")
    eq(as_text(b""), "")
    # the reader itself decodes nothing: the reason and values stay bytes
    check(b"HTTP/1.1 200 \xc4rger\r\nX-A: \xff\x80\r\nContent-Length: 0\r\n\r\n",
          [("head", 200, 11, b"\xc4rger", [(b"x-a", b"\xff\x80"), (b"content-length", b"0")],
            True), ("end", [])])
    err = fails(b"HTTP/1.1 200 OK\r\nX-\xff: 1\r\n\r\n", ProtocolError)
    eq(str(err), "HTTP 200: malformed header line b'X-\\xff: 1'")


def test_errors_carry_the_status_once_known():
    err = raises(ProtocolError, parse,
                 [b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: x\r\n\r\n"])
    eq(err.status, 502)
    eq(str(err), "HTTP 502: bad Content-Length b'x'")


def test_reader_stays_failed_after_an_error():
    r = Reader()
    r.start()
    r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nbad line\r\n\r\nx")
    first = raises(ProtocolError, r.next_event)
    again = raises(ProtocolError, r.next_event)
    eq(again is first, True)


def test_header_limits():
    big = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200 + b"\r\n\r\n"
    err = fails(big, LimitError, max_line=100)
    eq((err.limit, err.value), ("header line", 100))
    eq(str(err), "HTTP 200: header line longer than 100 bytes")
    many = b"HTTP/1.1 200 OK\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(10)) + b"\r\n"
    err = fails(many, LimitError, max_headers=9)
    eq((err.limit, err.value), ("header count", 9))
    check(many, parse([many]), max_headers=10)
    err = fails(many, LimitError, max_header_bytes=60)
    eq((err.limit, str(err)), ("header bytes", "HTTP 200: response headers exceed 60 bytes"))
    # 1xx responses count against the header budget: an endless stream of them stops
    err = raises(LimitError, parse, [b"HTTP/1.1 100 Continue\r\n\r\n" * 200])
    eq(err.limit, "header bytes")
    # trailers have the same limits
    err = raises(LimitError, parse, [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                     b"0\r\n" + b"T: x\r\n" * 40 + b"\r\n"])
    eq(err.limit, "header count")


def test_body_size_limit():
    err = fails(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", LimitError, max_body=10)
    eq((err.limit, err.status), ("body size", 200))
    eq(str(err), "HTTP 200: body of 11 bytes exceeds the limit of 10")
    check(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
          [("head", 200, 11, b"OK", [(b"content-length", b"10")], True),
           ("body", b"0123456789"), ("end", [])], max_body=10)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"4\r\nabcd\r\n" * 3
    err = fails(chunked, LimitError, max_body=10)
    eq(str(err), "HTTP 200: chunked body exceeds the limit of 10 bytes")
    err = fails(b"HTTP/1.0 200 OK\r\n\r\n" + b"z" * 11, LimitError, max_body=10)
    eq(err.limit, "body size")


def test_endless_chunked_body_is_stopped_by_the_body_limit():
    r = Reader(max_body=1000)
    r.start()
    r.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    eq(r.next_event()[0], RESPONSE)
    piece = b"10\r\n" + b"y" * 16 + b"\r\n"

    def forever():
        while True:
            r.feed(piece)
            while r.next_event()[0] != NEED_DATA:
                pass
    err = raises(LimitError, forever)
    eq(r.body_bytes, 992)  # 62 whole chunks; the 63rd would cross the limit
    eq(err.limit, "body size")


def test_end_of_stream_in_every_state():
    err = raises(ConnectionClosed, parse, [], b"GET", True)
    eq(str(err), "server closed the connection before sending a response")
    cases = (
        (b"HTTP/1.1 200 OK\r\nContent-", "in the middle of the response headers"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
         "connection closed after 3 of 10 body bytes"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
         "inside the chunked body (after 2 bytes)"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
         "inside the chunked body"),
    )
    for data, text in cases:
        err = fails(data, ProtocolError, eof=True)
        eq(isinstance(err, ConnectionClosed), False)
        eq(text in str(err), True, str(err))


def test_feed_rules():
    r = Reader()
    r.start()
    r.feed(b"HTTP/1.1 200 OK\r\n")
    raises(ValueError, r.feed, b"more")  # the first data was not consumed yet
    eq(r.next_event(), (NEED_DATA, None))
    r.feed(b"")
    eq(r.next_event(), (NEED_DATA, None))
    r.feed_eof()
    raises(ValueError, r.feed, b"late")


def test_content_length_of_up_to_15_digits():
    eq(decimal("9" * 15), 999999999999999)
    eq(decimal("1" * 16), -1)


def test_close_delimited_body_limit_names_its_size():
    err = fails(b"HTTP/1.0 200 OK\r\n\r\n" + b"z" * 11, LimitError, max_body=10)
    eq((err.limit, err.value), ("body size", 10))
    eq(str(err), "HTTP 200: body exceeds the limit of 10 bytes")


def test_chunked_body_limit_names_its_size():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"4\r\nabcd\r\n" * 3
    err = fails(chunked, LimitError, max_body=10)
    eq((err.limit, err.value), ("body size", 10))


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_chunk_extensions_are_ignored_from_the_first_semicolon():
    data = CHUNKED_HEAD + b"5;a=1;b=2\r\nhello\r\n0\r\n\r\n"
    check(data, [("head", 200, 11, b"OK", [(b"transfer-encoding", b"chunked")], True),
                 ("body", b"hello"), ("end", [])])


def test_bad_chunk_size_line_is_quoted_up_to_40_bytes():
    err = fails(CHUNKED_HEAD + b"zz\r\n", ProtocolError)
    eq(str(err), "HTTP 200: bad chunk size line b'zz'")
    long = b"g" * 50
    err = fails(CHUNKED_HEAD + long + b"\r\n", ProtocolError)
    eq(str(err), "HTTP 200: bad chunk size line %r" % (b"g" * 40))


def test_chunk_data_must_end_with_crlf():
    err = fails(CHUNKED_HEAD + b"2\r\nabX\r\n", ProtocolError)
    eq(str(err), "HTTP 200: chunk data not followed by CRLF")


def _trailers_pass(trailers, **limits):
    data = CHUNKED_HEAD + b"1\r\nx\r\n0\r\n" + trailers + b"\r\n"
    try:
        parse([data], **limits)
        return True
    except LimitError:
        return False


def test_trailers_have_a_header_budget_of_their_own():
    # the head's fields do not count against the trailers: each part gets the limits
    trailers = b"T: " + b"x" * 60 + b"\r\n"              # 65 bytes, then the empty line
    eq(_trailers_pass(trailers, max_header_bytes=67), True)
    eq(_trailers_pass(trailers, max_header_bytes=66), False)
    three = b"A: 1\r\nB: 2\r\nC: 3\r\n"
    eq(_trailers_pass(three, max_headers=3), True)
    eq(_trailers_pass(three, max_headers=2), False)


def test_reader_is_done_after_a_chunked_body_and_its_trailers():
    r = Reader()
    r.start()
    r.feed(CHUNKED_HEAD + b"1\r\nx\r\n0\r\nT: v\r\n\r\n")
    kinds = []
    while not kinds or kinds[-1] != END:
        kinds.append(r.next_event()[0])
    eq(kinds, [RESPONSE, DATA, END])
    eq(r.done, True)
    eq(r.next_event(), (NEED_DATA, None))


def test_close_delimited_body_of_exactly_the_limit_is_fine():
    check(b"HTTP/1.0 200 OK\r\n\r\n" + b"z" * 10,
          [("head", 200, 10, b"OK", [], False), ("body", b"z" * 10), ("end", [])],
          eof=True, max_body=10)


# every error the reader raises, by its exact message (the status once it is known)
ERRORS = (
    (b"HTTP/1.1 200 OK\r\n folded\r\n\r\n", False,
     "HTTP 200: header block starts with a continuation line"),
    (b"HTTP/1.1 200 OK\r\n" + b"x" * 100 + b"\r\n\r\n", False,
     "HTTP 200: malformed header line %r" % (b"x" * 80)),
    (b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n", False,
     "HTTP 200: header X-A has a CR or NUL in its value"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", False,
     "HTTP 200: unsupported transfer coding b'gzip, chunked'"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", False,
     "HTTP 200: bad Content-Length b'5, 6'"),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", False,
     "HTTP 101: unexpected 101 Switching Protocols"),
    (b"HTTP/1.1 2", True, "connection closed in the middle of the response headers"),
    (b"HTTP/1.1 200 OK\r\nContent-", True,
     "HTTP 200: connection closed in the middle of the response headers"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", True,
     "HTTP 200: connection closed after 2 of 5 body bytes"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc", True,
     "HTTP 200: connection closed inside the chunked body (after 3 bytes)"),
)


def test_reader_errors_say_exactly_what_is_wrong():
    for data, eof, text in ERRORS:
        err = raises(ProtocolError, parse, [data], b"GET", eof)
        eq(str(err), text)
        eq(isinstance(err, ConnectionClosed), False, text)


def test_header_count_limit_message():
    many = b"HTTP/1.1 200 OK\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(10)) + b"\r\n"
    eq(str(fails(many, LimitError, max_headers=9)), "HTTP 200: more than 9 header fields")


def test_content_length_limit_names_its_size():
    err = fails(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", LimitError, max_body=10)
    eq(err.value, 10)


def test_header_value_without_a_space_after_the_colon():
    check(b"HTTP/1.1 200 OK\r\nX-A:b\r\nContent-Length: 0\r\n\r\n",
          [("head", 200, 11, b"OK", [(b"x-a", b"b"), (b"content-length", b"0")], True),
           ("end", [])])


def test_chunked_body_of_exactly_the_limit_is_fine():
    data = CHUNKED_HEAD + b"4\r\nabcd\r\n6\r\nefghij\r\n0\r\n\r\n"
    check(data, [("head", 200, 11, b"OK", [(b"transfer-encoding", b"chunked")], True),
                 ("body", b"abcdefghij"), ("end", [])], max_body=10)


def test_received_counts_every_byte_of_the_response():
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    r = Reader()
    r.start()
    r.feed(data)
    while r.next_event()[0] != END:
        pass
    eq(r.received, len(data))


def test_bodyless_responses_have_length_zero():
    for method, head in ((b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
                         (b"GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
                         (b"GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n")):
        r = Reader()
        r.start(method)
        r.feed(head)
        kind, value = r.next_event()
        eq((kind, value.length), (RESPONSE, 0))


def test_header_lookup_takes_str_or_bytes_names_in_any_case():
    r = Reader()
    r.start()
    r.feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n")
    head = r.next_event()[1]
    eq(head.header("Content-Type"), b"text/plain")
    eq(head.header(b"CONTENT-TYPE"), b"text/plain")
    eq(head.tokens("content-type"), [b"text/plain"])


def test_reader_is_done_after_a_close_delimited_body():
    r = Reader()
    r.start()
    r.feed(b"HTTP/1.0 200 OK\r\n\r\nabc")
    eq(r.next_event()[0], RESPONSE)
    eq(r.next_event()[0], DATA)
    r.feed_eof()
    eq(r.next_event(), (END, []))
    eq(r.done, True)
    eq(r.next_event(), (NEED_DATA, None))


def test_reader_defaults():
    r = Reader()
    eq((r.max_header_bytes, r.max_headers, r.max_line, r.max_body), (4096, 32, 1024, None))
    eq(r.method, b"GET")


def test_reader_method_may_be_str():
    r = Reader()
    r.start("HEAD")
    r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    eq(r.next_event()[1].length, 0)


def test_header_budget_is_exact():
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"     # 17 + 19 + 2 bytes
    eq(parse([data], max_header_bytes=38)[-1], ("end", []))
    raises(LimitError, parse, [data], b"GET", False, None, 0, max_header_bytes=37)


def test_header_line_of_exactly_max_line_bytes_is_fine():
    line = b"X-Abc: 123456789012\r"        # 20 bytes before the LF
    check(b"HTTP/1.1 200 OK\r\n" + line + b"\nContent-Length: 0\r\n\r\n",
          [("head", 200, 11, b"OK", [(b"x-abc", b"123456789012"),
                                     (b"content-length", b"0")], True), ("end", [])],
          max_line=20)
    fails(b"HTTP/1.1 200 OK\r\nX-Abcd: 123456789012\r\n\r\n", LimitError, max_line=20)


def test_a_feed_starting_with_the_lf_of_a_split_line_may_be_long():
    r = Reader(max_line=100)
    r.start()
    r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r")
    eq(r.next_event(), (NEED_DATA, None))
    r.feed(b"\n" + b"x" * 200)
    eq(r.next_event()[0], RESPONSE)
    eq(bytes(r.next_event()[1]), b"x" * 200)


def test_received_counts_every_byte_however_it_is_fed():
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    for chunks in feed_variants(data):
        r = Reader()
        r.start()
        for chunk in chunks:
            r.feed(chunk)
            while r.next_event()[0] not in (NEED_DATA, END):
                pass
        eq(r.received, len(data))


def test_feed_misuse_is_a_value_error_saying_what():
    r = Reader()
    r.start()
    r.feed(b"HTTP/1.1 200 OK\r\n")
    eq(str(raises(ValueError, r.feed, b"more")), "feed() before the previous data was consumed")
    r.next_event()
    r.feed_eof()
    eq(str(raises(ValueError, r.feed, b"late")), "feed() after feed_eof()")


def test_a_failed_reader_is_in_the_error_state():
    r = Reader()
    r.start()
    r.feed(b"HTTP/1.1 200 OK\r\nbad line\r\n\r\n")
    raises(ProtocolError, r.next_event)
    eq(r.state, ERROR)
    eq(r.done, False)


def test_a_new_head_has_no_framing_yet():
    h = Head(11, 200, b"OK")
    eq((h.length, h.chunked, h.keep_alive, h.headers), (None, False, False, []))


def test_digits_are_ascii_digits_and_hex_letters_a_to_f():
    eq(digits(b"1:", 10, 5), -1)
    eq(hex_size(b"1g"), -1)
    eq(hex_size(b"fF"), 255)


def test_status_line_rules():
    eq(parse_status(b"HTTP/1.9 200 OK").version, 11)
    eq(parse_status(b"HTTP/1.0 200").version, 10)
    eq(parse_status(b"HTTP/1.1 404 ").reason, b"")
    for bad in (b"HTTP/2.0 200 OK", b"XTTP/1.1 200 OK", b"HTTP/1.1", b"HTTP/1.1 20",
                b"HTTP/1.: 200 OK", b"HTTP/1.1 200X", b"HTTP/1.1_200 OK", b"HTTP/1.1 099 x"):
        eq(parse_status(bad), None, repr(bad))


def test_header_bytes_limit_names_its_size():
    err = fails(b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 100 + b"\r\n\r\n", LimitError,
                max_header_bytes=60)
    eq((err.limit, err.value), ("header bytes", 60))


def test_malformed_status_line_is_quoted_up_to_80_bytes():
    line = b"garbage " * 15
    err = raises(ProtocolError, parse, [line + b"\r\n"])
    eq(str(err), "malformed status line %r" % line[:80])


def test_split_line_buffer_is_made_only_when_a_line_arrives_split():
    # Memory (bench/bench_memory.py): a head that arrives whole in one feed costs no
    # max_line buffer; the first line split across two feeds makes it, then it is kept.
    wire = b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n'
    r = Reader(max_line=64)
    eq(parse([wire], reader=r)[0][1], 304)
    eq(parse([wire[:27], wire[27:]], reader=r)[0][1], 304)  # split at a line's start
    eq(len(r._lmv), 0)
    eq(parse([wire[:20], wire[20:]], reader=r)[0][1], 304)  # split inside the status line
    eq(len(r._lmv), 64)
    kept = r._lmv
    eq(parse([wire[:30], wire[30:]], reader=r)[0][4], [(b"etag", b'"v1"')])
    eq(r._lmv is kept, True)
