"""HTTP request writer, URL helpers and error messages. Runs on CPython and on the
MicroPython VM."""

from portable import eq, raises

from synack.http.errors import HTTPError, LimitError, LocalProtocolError, TooManyRedirects
from synack.http.request import (HTTP10, LAST_CHUNK, build_head, chunk_header, encode_head,
                                 header_pairs, host_header, is_token, join_url, parse_url,
                                 split_url, to_bytes)
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


def test_request_keeps_the_connection_by_default():
    eq(build_head(b"GET", "h", 80, "/", None, []),
       (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", False))


def test_only_a_connection_header_asks_to_close():
    head, close_after = build_head(b"GET", "h", 80, "/", None, [("X-Note", "close")])
    eq(close_after, False)
    eq(head, b"GET / HTTP/1.1\r\nHost: h\r\nX-Note: close\r\n\r\n")
    eq(build_head(b"GET", "h", 80, "/", None, [("Connection", "Close")])[1], True)


def test_host_header_of_https_leaves_out_port_443():
    eq(build_head(b"GET", "h", 443, "/", None, [], tls=True)[0],
       b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    eq(build_head(b"GET", "h", 443, "/", None, [])[0],
       b"GET / HTTP/1.1\r\nHost: h:443\r\n\r\n")


def test_put_and_post_without_a_body_send_a_zero_length():
    for method in (b"PUT", b"POST"):
        eq(build_head(method, "h", 80, "/", None, [])[0],
           method + b" / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
    eq(build_head(b"DELETE", "h", 80, "/", None, [])[0],
       b"DELETE / HTTP/1.1\r\nHost: h\r\n\r\n")


def test_a_body_of_unknown_length_over_http10_is_refused_with_the_reason():
    e = raises(LocalProtocolError, build_head, b"POST", "h", 80, "/", iter([b"x"]), [],
               HTTP10)
    eq(str(e), "a body of unknown length needs HTTP/1.1 (chunked)")


def test_relative_redirect_keeps_the_path_before_the_first_question_mark():
    eq(join_url("h", 80, "/a/b?x=1?y=2", "?z"), "http://h/a/b?z")
    eq(join_url("h", 80, "/a/b c?x=1", "?z"), "http://h/a/b c?z")
    eq(join_url("h", 80, "/a/b?x=/c/d", "e"), "http://h/a/e")


def test_url_with_a_scheme_in_its_query_is_split_at_the_first():
    eq(split_url("http://h/x?next=https://other/"), (False, "h", 80, "/x?next=https://other/"))


def test_not_an_absolute_url_is_refused_naming_it():
    e = raises(LocalProtocolError, split_url, "/path/only")
    eq(str(e), "not an absolute URL: '/path/only'")
    eq(e.args, ("not an absolute URL: '/path/only'",))
    eq(HTTPError("x", 500).args, ("x",))


def _url_error(url):
    return str(raises(LocalProtocolError, split_url, url))


def test_url_errors_name_the_url():
    eq(_url_error("http://h:0/"), "bad port in URL 'http://h:0/'")
    eq(_url_error("http:///x"), "no host in URL 'http:///x'")
    eq(_url_error("http://?x=1"), "no host in URL 'http://?x=1'")
    eq(_url_error("http://a b/"), "bad host in URL 'http://a b/'")
    long = "http://" + "a." * 127 + "b/"
    eq(_url_error(long), "bad host in URL %r" % long)
    eq(_url_error("http://a..b/"), "bad host in URL 'http://a..b/'")
    eq(_url_error("http://u@h/"), "credentials in the URL are not supported: 'http://u@h/'")


def test_url_port_is_1_to_65535_in_at_most_5_digits():
    eq(split_url("http://h:1/")[2], 1)
    eq(split_url("http://h:65535/")[2], 65535)
    eq(split_url("http://h:00080/")[2], 80)
    for bad in ("http://h:65536/", "http://h:000080/"):
        eq(_url_error(bad), "bad port in URL %r" % bad)


def test_url_host_up_to_253_characters_one_trailing_dot_and_printable():
    host = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61
    eq(split_url("http://" + host + "/")[1], host)
    eq(split_url("http://" + host + "./")[1], host + ".")
    eq(_url_error("http://" + host + "d/"), "bad host in URL %r" % ("http://" + host + "d/"))
    eq(split_url("http://ab.c./")[1], "ab.c.")
    eq(_url_error("http://a../"), "bad host in URL 'http://a../'")
    eq(split_url("http://a~b/")[1], "a~b")


def test_url_host_port_split_at_the_last_colon():
    eq(split_url("http://[::1]:8080/x"), (False, "[::1]", 8080, "/x"))


def test_url_query_and_fragment_start_at_their_first_mark():
    eq(split_url("http://h?a=1?b=2"), (False, "h", 80, "/?a=1?b=2"))
    eq(split_url("http://h/a#b#c"), (False, "h", 80, "/a"))
    eq(split_url("http://h/a?x=#y"), (False, "h", 80, "/a?x="))


def test_request_target_and_header_values_are_checked_byte_by_byte():
    eq(encode_head(b"GET", b"/a!b\x80", []), b"GET /a!b\x80 HTTP/1.1\r\n\r\n")
    e = raises(LocalProtocolError, encode_head, b"GET", b"/a\x7fb", [])
    eq(str(e), "request target contains a space or control byte: b'/a\\x7fb'")
    eq(str(raises(LocalProtocolError, encode_head, b"GET", b"", [])), "empty request target")
    e = raises(LocalProtocolError, encode_head, b"GET", b"/", [("X-A", "a\rb")])
    eq(str(e), "header X-A: value contains CR, LF or NUL: b'a\\rb'")
    eq(str(raises(LocalProtocolError, encode_head, b"G T", b"/", [])),
       "method is not a token: b'G T'")
    eq(str(raises(LocalProtocolError, encode_head, b"GET", b"/", [], b"HTTP/2")),
       "unsupported version b'HTTP/2'")


def test_http10_request_line_and_keep_alive():
    eq(build_head(b"GET", "h", 80, "/", None, [], HTTP10),
       (b"GET / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", False))


def test_header_values_of_any_buffer_type():
    eq(to_bytes(bytearray(b"x")), b"x")
    eq(to_bytes(memoryview(b"yz")), b"yz")
    eq(to_bytes(7), b"7")
    eq(to_bytes("s"), b"s")


def test_tokens_are_letters_digits_and_tchar_punctuation():
    for good in (b"GET", b"X-Az_09", b"!#$%&'*+-.^_`|~"):
        eq(is_token(good), True, repr(good))
    for bad in (b"a[b", b"a{b", b"a@b", b"a:b", b"a b", b"a/b", b"", b"a\\x7f"):
        eq(is_token(bad), False, repr(bad))
