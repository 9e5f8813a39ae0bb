"""Property tests (hypothesis) of the HTTP response reader, the client and the poller
against server bytes: arbitrary bytes, realistic responses and mutations of them, fed
in any fragmentation. CPython only; bounded (200 examples each, derandomized).

- The reader yields a response and its body, or raises an HTTPError subclass; nothing
  else (no UnicodeError, ValueError, IndexError, MemoryError ...).
- Whole, byte at a time, or split anywhere: the same events, body and error.
- Valid responses (Content-Length, chunked with extensions and trailers, delimited by
  the end of the connection, after 1xx interim responses) give their body byte-exact.
- ``Client`` and ``Poller.poll()`` over a scripted backend let out only HTTPError or
  OSError (poll() lets out nothing: it counts a failure), and the next poll works.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synack import tcp
from synack.backend import Backend
from synack.http.client import Client
from synack.http.errors import HTTPError
from synack.http.head import text
from synack.http.response import DATA, END, NEED_DATA, RESPONSE, Reader
from synack.poll import CHANGED, FAILED, NOT_MODIFIED, Poller, retry_after_ms

SETTINGS = settings(max_examples=200, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# field-value bytes (RFC 9110 5.5): VCHAR, obs-text, and SP/HTAB inside
VALUE_BYTES = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
SMALL = {"max_header_bytes": 2048, "max_headers": 16, "max_line": 256,
         "max_body": 4096}


# -- driving the reader -----------------------------------------------------------------
def _feed(r, chunk, how):
    # the three ways a client hands data over: bytes, a memoryview, a bigger bytearray
    if how == 0:
        r.feed(bytes(chunk))
    elif how == 1:
        r.feed(memoryview(bytearray(chunk)))
    else:
        buf = bytearray(chunk) + b"\xaa" * 5
        r.feed(buf, len(chunk))


def read_all(chunks, method=b"GET", eof=True, how=0, **limits):
    """What the reader makes of ``chunks``: a list of ("head", ...) and ("end", body,
    trailers) events, then ("error", class, message) or ("need", body) if it wants
    more. Any exception that is not an HTTPError propagates: the property fails."""
    r = Reader(**limits)
    r.start(method)
    out = []
    body = bytearray()

    def pump():
        while True:
            kind, value = r.next_event()
            if kind == NEED_DATA:
                return False
            if kind == RESPONSE:
                out.append(("head", value.version, value.status, value.reason,
                            list(value.headers), value.keep_alive, value.length,
                            value.chunked, r.informational))
            elif kind == DATA:
                assert len(value) > 0, "empty DATA event"
                body.extend(value)
            elif kind == END:
                out.append(("end", bytes(body), list(value)))
                return True
            else:
                raise AssertionError(f"unknown event {kind}")

    try:
        for chunk in chunks:
            if not len(chunk):
                continue
            _feed(r, chunk, how)
            if pump():
                return out
        if eof:
            r.feed_eof()
            if pump():
                return out
    except HTTPError as e:
        return out + [("error", type(e).__name__, str(e))]
    return out + [("need", bytes(body))]


def split(data, sizes):
    """``data`` cut into pieces of the given sizes (cycled)."""
    out, pos, i = [], 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        out.append(data[pos:pos + n])
        pos += n
        i += 1
    return out


def same_whatever_the_fragmentation(data, sizes, method=b"GET", eof=True, **limits):
    whole = read_all([data], method, eof, 0, **limits)
    assert read_all([data[i:i + 1] for i in range(len(data))], method, eof, 1,
                    **limits) == whole
    assert read_all(split(data, sizes), method, eof, 2, **limits) == whole
    return whole


# -- realistic responses and their mutations -------------------------------------------
HUGE = [b"999999999999999", b"99999999999999999999", b"18446744073709551616", b"-1",
        b"1e9", b"0x10", b"\xc2\xb2", b"\xd9\xa1", b"+7", b"7_0", b"ffffffff", b"100000000"]
NOT_ASCII = [b"\xff", b"\xc3\xa9", b"\xe2\x80\xa8", b"\x00", b"\r", b"\x85", b"\xed\xa0\x80"]
# the fields a client and the poller read
NAMES = [b"ETag", b"Location", b"Retry-After", b"Last-Modified", b"Content-Type"]
# values that were trouble: not UTF-8, not ASCII digits, not a URL, not a host
NASTY = [b"\xff\xfe", b"\"\xe9t\xe9\"", b"\xc2\xb2", b"1\xd9\xa1", b"/\xff", b"http://../x",
         b"http://" + b"a" * 64 + b"/", b"http://h:+80/", b"http://h:\xc2\xb2/", b"//h\xc3\xa9/",
         b"https://h/", b"http://h:99999/", b"?q=\x80", b"999999999999999"]

tokens = st.one_of(st.sampled_from(NAMES), st.binary(min_size=1, max_size=12).map(
    lambda b: bytes(TCHAR[c % len(TCHAR)] for c in b)))
values = st.one_of(st.sampled_from(NASTY + HUGE), st.binary(max_size=40).map(
    lambda b: bytes(VALUE_BYTES[c % len(VALUE_BYTES)] for c in b)))
reasons = st.binary(max_size=20).map(
    lambda b: bytes((VALUE_BYTES + b" \t")[c % (len(VALUE_BYTES) + 2)] for c in b))
FRAMING_NAMES = (b"content-length", b"transfer-encoding", b"connection")


@st.composite
def responses(draw, framings=("length", "chunked", "close")):
    """(wire bytes, expected) for a valid response; expected holds the status, version,
    reason, headers, body and trailers the reader must report."""
    version = draw(st.sampled_from([10, 11]))
    status = draw(st.sampled_from([200, 201, 203, 206, 301, 302, 303, 307, 400, 404, 429,
                                   500, 503, 599]))
    reason = draw(reasons)
    headers = [(n, v.strip(b" \t")) for n, v in draw(st.lists(st.tuples(tokens, values),
                                                               max_size=6))
               if n.lower() not in FRAMING_NAMES]
    body = draw(st.binary(max_size=1500))
    framing = draw(st.sampled_from(framings))
    interim = draw(st.integers(0, 2))
    wire = bytearray()
    for _ in range(interim):
        wire += b"HTTP/1.1 100 Continue\r\n\r\n"
    wire += b"HTTP/1.%d %d " % (version - 10, status) + reason + b"\r\n"
    for n, v in headers:
        wire += n + b": " + v + b"\r\n"
    trailers = []
    if framing == "length":
        wire += b"Content-Length: %d\r\n\r\n" % len(body) + body
        headers.append((b"Content-Length", b"%d" % len(body)))
    elif framing == "chunked":
        wire += b"Transfer-Encoding: chunked\r\n\r\n"
        headers.append((b"Transfer-Encoding", b"chunked"))
        sizes = draw(st.lists(st.integers(1, 700), min_size=1, max_size=5))
        for piece in split(body, sizes):
            ext = draw(st.sampled_from([b"", b";x=1", b" ; name=\"v\""]))
            wire += b"%x" % len(piece) + ext + b"\r\n" + piece + b"\r\n"
        wire += b"0\r\n"
        trailers = [(n, v) for n, v in draw(st.lists(st.tuples(tokens, values), max_size=2))]
        for n, v in trailers:
            wire += n + b": " + v + b"\r\n"
        wire += b"\r\n"
    else:
        wire += b"\r\n" + body
    expected = {"version": version, "status": status, "reason": reason,
                "headers": [(n.lower(), v) for n, v in headers], "body": body,
                "trailers": [(n.lower(), v) for n, v in trailers], "framing": framing,
                "interim": interim}
    return bytes(wire), expected



@st.composite
def mutated(draw):
    """A realistic response with a few mutations: byte flips, insertions, deletions,
    truncation, huge or odd numbers, non-ASCII bytes, header lines that frame a body."""
    wire, _ = draw(responses())
    data = bytearray(wire)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "number",
                                   "non-ascii", "header", "length"]))
        pos = draw(st.integers(0, len(data)))
        at = data.find(b"Content-Length: ")
        if op == "length" and at >= 0:   # the same response announcing another size
            end = data.find(b"\r\n", at)
            data[at + 16:end] = draw(st.sampled_from(HUGE + [b"0", b"1", b"65536"]))
        elif op == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[pos:]
        elif op == "number":
            data[pos:pos] = draw(st.sampled_from(HUGE))
        elif op == "non-ascii":
            data[pos:pos] = draw(st.sampled_from(NOT_ASCII))
        else:
            line = draw(st.sampled_from([
                b"Content-Length: ", b"Transfer-Encoding: chunked", b"Retry-After: ",
                b"Location: ", b"ETag: ", b"Connection: close", b" folded"]))
            end = data.find(b"\r\n")
            at = end + 2 if end >= 0 else len(data)
            data[at:at] = line + draw(st.sampled_from(HUGE + NOT_ASCII + [b"/x"])) + b"\r\n"
    return bytes(data)


# absolute URLs with odd hosts (empty or 64-byte labels) and ports (signs, non-ASCII)
labels = st.one_of(st.just(b""), st.just(b"a" * 64), st.binary(max_size=70).map(
    lambda b: bytes(b"abcdefghijklmnopqrstuvwxyz0123456789-"[c % 37] for c in b)))
ports = st.sampled_from([b"", b":80", b":0", b":+80", b": 80", b":8_0", b":\xc2\xb2",
                         b":65536", b":"])
urls = st.builds(lambda hs, port, path: b"http://" + b".".join(hs) + port + path,
                 st.lists(labels, min_size=1, max_size=4), ports,
                 st.sampled_from([b"", b"/", b"/x?y=1"]))


@st.composite
def redirects(draw):
    """A 3xx whose Location is anything a server might send."""
    status = draw(st.sampled_from([301, 302, 303, 307, 308]))
    location = draw(st.one_of(st.sampled_from(NASTY), urls, values, st.binary(
        max_size=30).filter(lambda b: b"\r" not in b and b"\n" not in b and b"\x00" not in b)))
    body = draw(st.binary(max_size=20))
    return (b"HTTP/1.1 %d Moved\r\nLocation: " % status + location.strip()
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


@st.composite
def lying(draw):
    """A response whose Content-Length is not what follows: a petabyte, or a few more
    bytes than the server sends before it closes."""
    body = draw(st.binary(max_size=200))
    length = draw(st.sampled_from([b"999999999999999", b"1000000000000", b"4097", b"%d"
                                   % (len(body) + 1)]))
    return b"HTTP/1.1 200 OK\r\nContent-Length: " + length + b"\r\n\r\n" + body


fragments = st.lists(st.integers(1, 40), min_size=1, max_size=8)
any_bytes = st.one_of(
    st.binary(max_size=400),
    st.binary(max_size=300).map(lambda b: b"HTTP/1.1 200 OK\r\n" + b),
    st.binary(max_size=300).map(
        lambda b: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b),
)


# what a server may answer a client with
answers = st.one_of(responses().map(lambda rw: rw[0]), redirects(), lying(), mutated(),
                    any_bytes)


# -- the reader ----------------------------------------------------------------------------
@SETTINGS
@given(any_bytes, fragments, st.sampled_from([b"GET", b"HEAD"]), st.booleans(),
       st.booleans())
def test_arbitrary_bytes_give_a_response_or_an_http_error(data, sizes, method, eof, small):
    same_whatever_the_fragmentation(data, sizes, method, eof, **(SMALL if small else {}))


@SETTINGS
@given(mutated(), fragments, st.booleans(), st.booleans())
def test_mutated_responses_give_a_response_or_an_http_error(data, sizes, eof, small):
    result = same_whatever_the_fragmentation(data, sizes, b"GET", eof,
                                             **(SMALL if small else {}))
    for event in result:
        if event[0] == "head":   # what a client then does with the head never fails
            reason, headers = event[3], event[4]
            text(reason)
            for _, value in headers:
                text(value)
                retry_after_ms(value)


@SETTINGS
@given(responses(), fragments, st.binary(max_size=30))
def test_valid_responses_give_their_body_byte_exact(rw, sizes, trailing):
    wire, want = rw
    close = want["framing"] == "close"
    data = wire if close else wire + trailing   # bytes beyond the end stay unconsumed
    result = same_whatever_the_fragmentation(data, sizes, b"GET", True)
    length = len(want["body"]) if want["framing"] == "length" else None
    keep = want["version"] == 11 and not close
    assert result == [
        ("head", want["version"], want["status"], want["reason"], want["headers"], keep,
         length, want["framing"] == "chunked", want["interim"]),
        ("end", want["body"], want["trailers"]),
    ]


@SETTINGS
@given(responses(framings=("length", "chunked")), fragments)
def test_valid_responses_to_head_have_no_body(rw, sizes):
    wire, want = rw
    head_only = wire[:wire.rindex(b"\r\n\r\n") + 4] if want["framing"] == "length" else \
        wire[:wire.index(b"Transfer-Encoding: chunked\r\n\r\n") + 30]
    result = same_whatever_the_fragmentation(head_only, sizes, b"HEAD", False)
    assert result[-1] == ("end", b"", [])


# -- the client and the poller, over a scripted backend -----------------------------------
class Scripted(Backend):
    """A socket backend without a network: each connection reads the next script of
    ``scripts`` (bytes, in pieces of ``sizes``), then the end of the stream."""

    name = "scripted"

    def __init__(self, scripts, sizes=(4096,)):
        self.scripts = list(scripts)
        self.sizes = sizes
        self.connects = 0

    def connect_start(self, sock, host, port, limit_ms):
        self.connects += 1
        host.encode("idna")   # as CPython's resolver does: UnicodeError for a bad label
        data = self.scripts.pop(0) if self.scripts else b""
        sock.tcp.fire(tcp.CONNECT)
        sock.tcp.fire(tcp.CONNECTED)
        return [data, 0, 0], True

    def send(self, sock, mv, timeout_ms):
        return len(mv)

    def recv_into(self, sock, mv, timeout_ms):
        data, pos, i = sock.handle
        n = min(len(mv), self.sizes[i % len(self.sizes)], len(data) - pos)
        mv[:n] = data[pos:pos + n]
        sock.handle[1:] = [pos + n, i + 1]
        return n

    def close(self, sock, timeout_ms):
        pass


GOOD = b"HTTP/1.1 200 OK\r\nETag: \"g\"\r\nContent-Length: 4\r\n\r\ngood"


def use_response(r):
    """Everything an application may do with a response."""
    r.header("etag")
    r.header("retry-after")
    r.header("location")
    r.header("content-type", "")
    try:
        r.raise_for_status()
    except HTTPError:
        pass
    return r.read()


@SETTINGS
@given(answers, fragments, st.sampled_from([None, 4096]))
def test_client_lets_out_only_http_errors(data, sizes, max_body):
    backend = Scripted([data, data, data, GOOD], sizes)
    c = Client(backend=backend, chunk=64, max_body=max_body, max_line=256,
               max_redirects=1)
    try:
        use_response(c.get("http://h/x"))
    except (HTTPError, OSError):
        pass
    c.close()


@SETTINGS
@given(st.lists(answers, min_size=1, max_size=3), fragments)
def test_poller_lets_out_nothing_and_polls_again(scripts, sizes):
    backend = Scripted(scripts + [GOOD] * 4, sizes)
    bodies = []
    p = Poller("http://h/state", lambda r: bodies.append(use_response(r)),
               client=Client(backend=backend, chunk=64, max_line=256, max_redirects=1),
               interval_ms=0, backoff_ms=10, backoff_cap_ms=1000)
    outcomes = [p.poll()[0] for _ in scripts]
    for outcome in outcomes:
        assert outcome in (CHANGED, NOT_MODIFIED, FAILED)
    assert p.errors == outcomes.count(FAILED)
    if p.errors:
        assert isinstance(p.last_error, (HTTPError, OSError)), repr(p.last_error)
    backend.scripts = [GOOD]   # whatever came before, a good answer is a good poll
    assert p.poll()[0] == CHANGED and bodies[-1] == b"good" and p.etag == '"g"'
