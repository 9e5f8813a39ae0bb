"""Property tests (hypothesis, CPython only) of the AT parser and engine and of the
command-parameter validators: fragmentation never changes the events, URCs never land
in a reply, framed payloads (after their line, or inside it between quotes as u-blox's
binary AT+USORD reply) are byte-exact, the engine always gets back to idle and
``receive()`` never raises, and no accepted host name or parameter can end a quoted
string or a command line. Bounded and derandomized so the file runs in seconds."""

import errno

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synack.at import quote
from synack.at.engine import Engine
from synack.at.errors import CommandError
from synack.at.parser import PAYLOAD, Parser
from synack.modems import sara_r4, sim7600

SETTINGS = settings(max_examples=200, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAX_LINE = 64  # small, so that over-long lines are common
MAX_PAYLOAD = 300

URC_LINES = [b"+CIPRXGET: 1,0", b"+IPCLOSE: 1,2", b"+CIPOPEN: 0,0", b"+CIPCLOSE: 0,0",
             b"+CIPSEND: 0,5,5", b"+NETOPEN: 0", b"+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY",
             b"RDY", b"+CPIN: READY", b"SMS DONE", b"+CREG: 1", b"+IPCLOSE: 0,",
             b"+CIPRXGET: 1,O", b"+NETOPEN: x", b"+CIPOPEN: ,"]


def framed(payload):
    return b"\r\n+CIPRXGET: 2,0,%d,0\r\n" % len(payload) + payload


TOKENS = st.one_of(
    st.sampled_from([b"\r\nOK\r\n", b"\r\nERROR\r\n", b"\r\n+CME ERROR: 10\r\n", b"\r\n> ",
                     b"\r\n+CSQ: 20,99\r\n", b"AT+CSQ\r\r\n", b"\r\n", b"\r", b"\n",
                     b"\r\n+CIPRXGET: 2,0,x,0\r\n", b"\r\n+CIPRXGET: 2,0,99999,0\r\n"]),
    st.sampled_from(URC_LINES).map(lambda u: b"\r\n" + u + b"\r\n"),
    st.binary(max_size=MAX_PAYLOAD).map(framed),
    st.binary(max_size=40),
    st.integers(MAX_LINE - 2, 3 * MAX_LINE).map(lambda n: b"L" * n),  # long lines
    st.text("ABC+:, 019\x00\x7f", max_size=MAX_LINE + 4).map(str.encode),
)
STREAMS = st.lists(TOKENS, max_size=14).map(b"".join)


def cuts(data):
    """A strategy for the same bytes cut into pieces at random points."""
    n = len(data)
    return st.lists(st.integers(0, n), max_size=12).map(
        lambda points: [data[a:b] for a, b in zip([0] + sorted(points),
                                                  sorted(points) + [n], strict=True)])


# the parser tables of a dialect with payloads after their line, and of one with them inside
SIM7600 = {"urcs": sim7600.URCS, "framed": sim7600.FRAMED}
SARA = {"urcs": sara_r4.URCS, "inline": sara_r4.INLINE, "prompt": b"@"}


def events(chunks, prefix=None, tables=SIM7600):
    p = Parser(max_line=MAX_LINE, max_payload=MAX_PAYLOAD, **tables)
    p.response_prefix = prefix
    out = []
    for chunk in chunks:
        mv = memoryview(chunk)
        while len(mv):
            n = p.feed(mv)
            mv = mv[n:]
            ev = p.next_event()
            while ev is not None:
                out.append(ev)
                ev = p.next_event()
    return out, p


@SETTINGS
@given(st.data())
def test_any_fragmentation_gives_the_same_events(data):
    stream = data.draw(STREAMS)
    chunks = data.draw(cuts(stream))
    prefix = data.draw(st.sampled_from([None, b"+CSQ:", b"+CIPRXGET: 2,", b"+CIPOPEN:"]))
    whole, p1 = events([stream], prefix)
    pieces, p2 = events(chunks, prefix)
    bytewise, p3 = events([stream[i:i + 1] for i in range(len(stream))], prefix)
    assert pieces == whole
    assert bytewise == whole
    assert p1.discarded == p2.discarded == p3.discarded


def feed(eng, chunks):
    for c in chunks:
        assert eng.receive(c) == len(c)


def make_engine():
    eng = Engine(Parser(urcs=sim7600.URCS, framed=sim7600.FRAMED, max_line=MAX_LINE,
                        max_payload=MAX_PAYLOAD))
    seen = []
    for prefix in sim7600.URCS:
        eng.on_urc(prefix, seen.append)
    return eng, seen


def usord(payload):
    return b'\r\n+USORD: 0,%d,"' % len(payload) + payload + b'"\r\n'


SARA_URCS = [b"+UUSORD: 0,5", b"+UUSOCL: 1", b"+UUSOCO: 0,0", b"+CGEV: NW DETACH",
             b"+UUSORD: 0,", b"+UUSOCL: O"]
SARA_STREAMS = st.lists(st.one_of(
    st.sampled_from([b"\r\nOK\r\n", b'\r\n+USORD: 0,""\r\n', b'\r\n+USORD: 0,x,"',
                     b'\r\n+USORD: 0,99999,"', b"\r\n+USORD: 0,12\r\n", b"\r\n@", b'"',
                     b"\r", b"\n", b'\r\n+USORD: 0,3,"ab']),
    st.sampled_from(SARA_URCS).map(lambda u: b"\r\n" + u + b"\r\n"),
    st.binary(max_size=MAX_PAYLOAD).map(usord),
    st.binary(max_size=40),
    st.integers(MAX_LINE - 2, 3 * MAX_LINE).map(lambda n: b"L" * n),
), max_size=14).map(b"".join)


@SETTINGS
@given(st.data())
def test_inline_payloads_any_fragmentation_gives_the_same_events(data):
    stream = data.draw(SARA_STREAMS)
    whole, p1 = events([stream], b"+USORD:", SARA)
    pieces, p2 = events(data.draw(cuts(stream)), b"+USORD:", SARA)
    bytewise, p3 = events([stream[i:i + 1] for i in range(len(stream))], b"+USORD:", SARA)
    assert pieces == whole
    assert bytewise == whole
    assert p1.framing == p2.framing == p3.framing
    assert p1.discarded == p2.discarded == p3.discarded


@SETTINGS
@given(st.data())
def test_inline_payloads_are_byte_exact(data):
    payload = data.draw(st.binary(max_size=MAX_PAYLOAD) | st.sampled_from(
        [b'"\r\nOK\r\n"', b"+UUSORD: 0,1\r\n", b'"', b'""\r\n', b"\r\n@", b""]))
    before = data.draw(st.lists(st.sampled_from(SARA_URCS), max_size=3))
    after = data.draw(st.lists(st.sampled_from(SARA_URCS), max_size=3))
    stream = (b"".join(b"\r\n" + u + b"\r\n" for u in before) + usord(payload)
              + b"".join(b"\r\n" + u + b"\r\n" for u in after) + b"\r\nOK\r\n")
    eng = Engine(Parser(max_line=MAX_LINE, max_payload=MAX_PAYLOAD, **SARA))
    seen = []
    for prefix in sara_r4.URCS:
        eng.on_urc(prefix, seen.append)
    eng.begin(b"AT+USORD=0,%d" % MAX_PAYLOAD, b"+USORD:", now=0)
    feed(eng, data.draw(cuts(stream)))
    reply = eng.finish()
    assert reply.payload == payload
    assert reply.lines == [b"+USORD: 0,%d" % len(payload)]
    assert seen == before + after
    assert eng.parser.framing == 0 and eng.noise == 0


@SETTINGS
@given(st.data())
def test_urcs_never_land_in_a_reply(data):
    items = data.draw(st.lists(st.one_of(
        st.sampled_from(URC_LINES).map(lambda u: ("urc", u)),
        st.integers(0, 99).map(lambda n: ("reply", b"+CSQ: %d,99" % n))), max_size=20))
    stream = b"AT+CSQ\r\r\n" + b"".join(b"\r\n" + v + b"\r\n" for _, v in items) + b"\r\nOK\r\n"
    eng, seen = make_engine()
    eng.begin(b"AT+CSQ", b"+CSQ:", now=0)
    feed(eng, data.draw(cuts(stream)))
    reply = eng.finish()
    replies = [v for k, v in items if k == "reply"]
    assert reply.lines == replies[:16]
    assert reply.dropped == max(0, len(replies) - 16)
    assert seen == [v for k, v in items if k == "urc"]
    assert not eng.busy


@SETTINGS
@given(st.data())
def test_framed_payloads_are_byte_exact(data):
    payload = data.draw(st.binary(max_size=MAX_PAYLOAD) | st.sampled_from(
        [b"\r\nOK\r\n", b"+IPCLOSE: 0,1\r\n", b"\r\n> ", b"\r", b"\n" * 10]))
    before = data.draw(st.lists(st.sampled_from(URC_LINES), max_size=3))
    after = data.draw(st.lists(st.sampled_from(URC_LINES), max_size=3))
    stream = (b"".join(b"\r\n" + u + b"\r\n" for u in before) + framed(payload)
              + b"".join(b"\r\n" + u + b"\r\n" for u in after) + b"\r\nOK\r\n")
    eng, seen = make_engine()
    eng.begin(b"AT+CIPRXGET=2,0,%d" % MAX_PAYLOAD, b"+CIPRXGET: 2,", now=0)
    feed(eng, data.draw(cuts(stream)))
    reply = eng.finish()
    assert (reply.payload or b"") == payload
    assert reply.lines == [b"+CIPRXGET: 2,0,%d,0" % len(payload)]
    assert seen == before + after
    evs, _ = events([stream], b"+CIPRXGET: 2,")
    assert [v for k, v in evs if k == PAYLOAD] == ([payload] if payload else [])


class _NoUart:
    def write(self, data):
        return len(data)

    def any(self):
        return 0

    def readinto(self, buf):
        return 0


def _explode(line):
    raise ValueError("handler failure")


@SETTINGS
@given(st.data())
def test_engine_always_returns_to_idle_and_receive_never_raises(data):
    # The SIM7600's own URC handlers on its engine, plus one that always raises.
    modem = sim7600.SIM7600(_NoUart())
    eng = modem.at.engine
    eng.on_urc(b"+CME", _explode)
    eng.parser.urcs += (b"+CMTI:",)
    eng.on_urc(b"+CMTI:", _explode)
    for _ in range(data.draw(st.integers(1, 3))):
        if data.draw(st.booleans()):
            prefix = data.draw(st.sampled_from([None, b"+CSQ:", b"+CIPRXGET: 2,"]))
            payload = data.draw(st.sampled_from([None, b"hello"]))
            eng.begin(b"AT+X", prefix, payload, now=0)
        stream = data.draw(STREAMS) + data.draw(st.sampled_from([b"", b"\r\n+CMTI: 1\r\n"]))
        feed(eng, data.draw(cuts(stream)))  # receive() must not raise, while busy or idle
        eng.take_output()
        if eng.done:
            try:
                eng.finish()
            except CommandError:
                pass
        elif eng.busy:
            eng.abort()
        assert not eng.busy
    # Whatever came before, a command gets its answer -- at the latest after one
    # timeout (abort), as when a late framed reply left the parser inside a payload.
    eng.begin(b"AT", now=0)
    eng.receive(b"\r\nOK\r\n")
    if not eng.done:
        assert eng.parser.in_payload()
        eng.abort()
        eng.begin(b"AT", now=0)
        eng.receive(b"\r\nOK\r\n")
    eng.finish()
    assert not eng.busy


HOST_CHARS = st.characters(codec="utf-8")


@SETTINGS
@given(st.text(HOST_CHARS, max_size=80) | st.text('ab.-_"; \r\n\x001\u0661', max_size=30))
def test_no_accepted_host_name_can_inject(text):
    if quote.is_host(text):
        b = quote.host(text)
        assert not any(c in b for c in b'"; \r\n,')
        assert all(48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in b"-._" for c in b)
        assert 1 <= len(b) <= 253
    else:
        try:
            quote.host(text)
        except OSError as e:
            assert e.errno == errno.EINVAL
        else:
            raise AssertionError("host() accepted what is_host() rejects")


@SETTINGS
@given(st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,20}"
                     r"[a-z0-9])?){0,4}\Z"))
def test_ordinary_host_names_are_accepted(name):
    assert quote.host(name) == name.encode()


@SETTINGS
@given(st.text(HOST_CHARS, max_size=120))
def test_no_accepted_parameter_can_inject(text):
    if quote.is_param(text):
        b = quote.param(text, "APN")
        assert b'"' not in b and b"\r" not in b and b"\n" not in b
        assert all(32 <= c <= 126 for c in b)
    else:
        try:
            quote.param(text, "APN")
        except ValueError:
            pass
        else:
            raise AssertionError("param() accepted what is_param() rejects")
