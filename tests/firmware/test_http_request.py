"""HTTP request writer, URL helpers and error messages. Runs on CPython and on the
MicroPython VM."""

from portable import eq, raises

from synack.http.errors import HTTPError, LimitError, LocalProtocolError, TooManyRedirects
from synack.http.request import (HTTP10, LAST_CHUNK, build_head, chunk_header, encode_head,
                                 header_pairs, host_header, is_token, join_url, parse_url,
                                 split_url)
from synack.http.response import DATA, END, RESPONSE, Reader

PORTABLE = True


def test_request_head_bytes():
    eq(encode_head("GET", "/a?b=1", [("Host", "example.com"), (b"Accept", b"*/*")]),
       b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n")
    eq(encode_head(b"POST", b"/x", [(b"Content-Length", 12)], HTTP10),
       b"POST /x HTTP/1.0\r\nContent-Length: 12\r\n\r\n")
    eq(encode_head("OPTIONS", "*", []), b"OPTIONS * HTTP/1.1\r\n\r\n")


def test_header_injection_and_bad_tokens_are_refused():
    for name, value in (("X", "a\r\nEvil: 1"), ("X", "a\nb"), ("X", "nul\x00"),
                        ("Bad Name", "v"), ("", "v"), ("X:", "v"), ("é", "v")):
        err = raises(LocalProtocolError, encode_head, "GET", "/", [(name, value)])
        eq(str(err).startswith("header"), True, str(err))
    raises(LocalProtocolError, encode_head, "GE T", "/", [])
    raises(LocalProtocolError, encode_head, "GET", "/a b", [])
    raises(LocalProtocolError, encode_head, "GET", "", [])
    raises(LocalProtocolError, encode_head, "GET", "/", [], b"HTTP/2")
    eq(is_token(b"X-Custom_Header.1~"), True)
    eq(is_token(b"a(b"), False)


def test_client_head_framing_and_persistence():
    def head(method=b"GET", body=None, headers=(), version=b"HTTP/1.1", keep=True, port=80):
        data, close_after = build_head(method, "h", port, "/", body, list(headers), version,
                                       keep)
        return data.decode().split("\r\n")[1:-2], close_after
    eq(head(), (["Host: h"], False))
    eq(head(port=8080, body=b"abc", method=b"PUT"), (["Host: h:8080", "Content-Length: 3"],
                                                     False))
    eq(head(method=b"POST"), (["Host: h", "Content-Length: 0"], False))
    eq(head(method=b"POST", body=iter([b"x"])), (["Host: h", "Transfer-Encoding: chunked"],
                                                 False))
    raises(LocalProtocolError, head, b"POST", iter([b"x"]), (), HTTP10)
    eq(head(version=HTTP10, keep=False), (["Host: h"], True))
    eq(head(version=HTTP10, keep=True), (["Host: h", "Connection: keep-alive"], False))
    eq(head(keep=False), (["Host: h", "Connection: close"], True))
    eq(head(headers=[("Connection", "Close")]), (["Host: h", "Connection: Close"], True))
    eq(head(headers=[("host", "virtual"), ("X-A", 1)]), (["host: virtual", "X-A: 1"], False))
    eq(header_pairs({"a": "b"}), [("a", "b")])
    eq(header_pairs(None), [])
    eq(header_pairs((("a", "b"),)), [("a", "b")])


def test_chunked_body_framing_round_trips_through_the_reader():
    pieces = [b"hello ", b"x" * 300, b"!"]
    wire = bytearray(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for p in pieces:
        wire += chunk_header(len(p)) + p + b"\r\n"
    wire += LAST_CHUNK
    eq(chunk_header(300), b"12c\r\n")
    r = Reader()
    r.start()
    r.feed(bytes(wire))
    body = bytearray()
    kinds = []
    while True:
        kind, value = r.next_event()
        kinds.append(kind)
        if kind == DATA:
            body.extend(value)
        if kind == END:
            break
    eq(bytes(body), b"".join(pieces))
    eq((kinds[0], kinds[-1]), (RESPONSE, END))


def test_parse_url():
    eq(parse_url("http://example.com"), ("example.com", 80, "/"))
    eq(parse_url("http://example.com/"), ("example.com", 80, "/"))
    eq(parse_url("HTTP://10.0.0.1:8080/p/q?x=1#frag"), ("10.0.0.1", 8080, "/p/q?x=1"))
    eq(parse_url("http://h?x=1"), ("h", 80, "/?x=1"))
    eq(parse_url(b"http://h:81/"), ("h", 81, "/"))
    eq(parse_url("https://example.com/x"), ("example.com", 443, "/x"))
    eq(split_url("HTTPS://h:8443/"), (True, "h", 8443, "/"))
    eq(split_url("http://h/"), (False, "h", 80, "/"))
    for bad in ("ftp://example.com/", "example.com/x", "http://:80/", "http://h:0/",
                "http://h:99999/", "http://h:x/", "http://user:pw@h/", "https://:443/"):
        raises(LocalProtocolError, parse_url, bad)
    err = raises(LocalProtocolError, parse_url, "ftp://example.com/")
    eq(str(err), "unsupported URL scheme 'ftp' (only http and https)")


def test_parse_url_reads_ports_and_hosts_strictly():
    # int() takes a sign, spaces and underscores, and on CPython other scripts' digits;
    # a port is 1 to 5 ASCII digits. A host the resolver would choke on (CPython's
    # raises UnicodeError for an empty or 64-character label) is refused here.
    for bad in ("http://h:+80/", "http://h: 80/", "http://h:8_0/", "http://h:\u0668\u0660/",
                "http://h:\u00b2/", "http://h:080808/", "http://../x", "http://a..b/",
                "http://.h/", "http://" + "a" * 64 + ".com/", "http://h\u00e9.example/",
                "http://" + "a." * 127 + "b/", "http://h\x7f/", b"http://h\xff/"):
        err = raises(LocalProtocolError, parse_url, bad)
        eq("bad " in str(err), True, str(err))
    eq(parse_url("http://" + "a" * 63 + ".example.:08080/x"),
       ("a" * 63 + ".example.", 8080, "/x"))


def test_redirect_location_bytes_never_fail_to_decode():
    eq(join_url("h", 80, "/a", b"/\xff"), "http://h/\xff")
    eq(join_url("h", 80, "/a", b"caf\xc3\xa9"), "http://h/caf\u00e9")


def test_host_header_and_redirect_targets():
    eq(host_header("h", 80), "h")
    eq(host_header("h", 8080), "h:8080")
    eq(host_header("h", 443, True), "h")
    eq(host_header("h", 80, True), "h:80")
    eq(join_url("h", 443, "/a/b", "/root", True), "https://h/root")
    eq(join_url("h", 443, "/a/b", "//other/x", True), "https://other/x")
    eq(join_url("h", 80, "/a/b?q", "http://other:81/x"), "http://other:81/x")
    eq(join_url("h", 80, "/a/b?q", "//other/x"), "http://other/x")
    eq(join_url("h", 8080, "/a/b?q", "/root"), "http://h:8080/root")
    eq(join_url("h", 80, "/a/b?q", "c?d=1"), "http://h/a/c?d=1")
    eq(join_url("h", 80, "/a/b", "?page=2"), "http://h/a/b?page=2")
    eq(join_url("h", 80, "/", b"next"), "http://h/next")


def test_error_messages_carry_status_and_url():
    e = HTTPError("boom")
    eq((str(e), e.status, e.url), ("boom", None, None))
    e = TooManyRedirects("more than 5 redirects", 302, "http://h/loop")
    eq(str(e), "HTTP 302: more than 5 redirects (http://h/loop)")
    e = LimitError("body size", 10, "too big", 200)
    eq((e.limit, e.value, e.status, isinstance(e, HTTPError)), ("body size", 10, 200, True))
