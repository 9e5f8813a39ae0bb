"""Poll scheduling without I/O: interval measured start to start, jitter, exponential
backoff with a cap, Retry-After, recovery, tick wrap-around. Runs on CPython and on the
MicroPython VM."""

import time

from portable import eq, raises

from synack import tcp
from synack.http.client import Client
from synack.poll import (CHANGED, FAILED, NOT_MODIFIED, Poller, Schedule, _Rand, classify,
                         retry_after_ms)

PORTABLE = True


class Fixed:
    """A rand(limit) that returns values from a list, and records the limits asked."""

    def __init__(self, *values):
        self.values = list(values)
        self.limits = []

    def __call__(self, limit):
        self.limits.append(limit)
        v = self.values.pop(0)
        if not 0 <= v <= limit:
            raise AssertionError("test value %d outside 0..%d" % (v, limit))
        return v


def test_interval_is_measured_from_poll_start_to_poll_start():
    s = Schedule(interval_ms=1000)
    eq(s.first_delay(), 0)
    eq(s.next_delay(0, 200, CHANGED), 800)
    eq(s.next_delay(1000, 1000, NOT_MODIFIED), 1000)
    eq(s.next_delay(2000, 2999, CHANGED), 1)
    # a long poll the server held for longer than the interval: poll again at once
    eq(s.next_delay(3000, 33000, NOT_MODIFIED), 0)


def test_jitter_is_added_to_every_delay():
    r = Fixed(7, 0, 250, 100)
    s = Schedule(interval_ms=1000, jitter_ms=250, backoff_ms=500, rand=r)
    eq(s.first_delay(), 7)
    eq(s.next_delay(0, 100, CHANGED), 900)
    eq(s.next_delay(0, 100, CHANGED), 1150)
    eq(s.next_delay(0, 100, FAILED), 600)
    eq(r.limits, [250, 250, 250, 250])


def test_backoff_doubles_up_to_the_cap_then_recovers():
    s = Schedule(interval_ms=5000, backoff_ms=1000, backoff_cap_ms=10000)
    delays = [s.next_delay(0, 50, FAILED) for _ in range(7)]
    eq(delays, [1000, 2000, 4000, 8000, 10000, 10000, 10000])
    eq(s.failures, 7)
    eq(s.next_delay(0, 50, CHANGED), 4950)  # first success: back to the interval
    eq(s.failures, 0)
    eq(s.next_delay(0, 50, FAILED), 1000)   # and a new error streak starts from the base
    eq(s.backoff(10 ** 6), 10000)           # no overflow, no huge ints


def test_retry_after_lengthens_but_never_passes_the_cap():
    s = Schedule(interval_ms=1000, backoff_ms=1000, backoff_cap_ms=60000)
    eq(s.next_delay(0, 10, FAILED, retry_after=30000), 30000)
    eq(s.next_delay(0, 10, FAILED, retry_after=500), 2000)
    eq(s.next_delay(0, 10, FAILED, retry_after=3600000), 60000)
    eq(retry_after_ms("120"), 120000)
    eq(retry_after_ms(" 5 "), 5000)
    for value in (None, "", "Wed, 21 Oct 2015 07:28:00 GMT", "-1", "1.5", "9" * 12):
        eq(retry_after_ms(value), 0, repr(value))


def test_retry_after_takes_ascii_digits_only():
    # "\u00b2" is a digit to str.isdigit() and not to int(); "\u0661" is one to both on
    # CPython; "+5" and "1_0" are numbers to int(). None of them is delay-seconds.
    for value in ("\u00b2", "1\u0661", "\u0661", "+5", "1_0", "0x10", b"\xc2\xb2", b"+5",
                  b"\xff", "0"):
        eq(retry_after_ms(value), 0, repr(value))
    eq((retry_after_ms(b"120"), retry_after_ms(b" 7\t"), retry_after_ms("999999999")),
       (120000, 7000, 999999999000))


def test_status_outcomes():
    eq([classify(s) for s in (200, 201, 203, 204, 304)],
       [CHANGED, CHANGED, CHANGED, NOT_MODIFIED, NOT_MODIFIED])
    eq([classify(s) for s in (301, 400, 404, 429, 500, 503)], [FAILED] * 6)


def test_tick_wrap_around():
    start = time.ticks_add(0, -300)        # just before the tick counter wraps
    end = time.ticks_add(start, 1000)      # just after it
    eq(end < start, True)
    s = Schedule(interval_ms=1500)
    eq(s.next_delay(start, end, CHANGED), 500)


def test_bad_settings_are_refused():
    raises(ValueError, Schedule, -1)
    raises(ValueError, Schedule, 1000, 0, 0)
    raises(ValueError, Schedule, 1000, 0, 2000, 1000)


def test_default_jitter_source_stays_in_range():
    r = _Rand()
    seen = set()
    for _ in range(500):
        v = r(9)
        eq(0 <= v <= 9, True, str(v))
        seen.add(v)
    eq(len(seen), 10)
    s = Schedule(interval_ms=100, jitter_ms=50)  # random module or the fallback
    for _ in range(50):
        d = s.next_delay(0, 0, CHANGED)
        eq(100 <= d <= 150, True, str(d))


class Scripted:
    """A socket backend without a network: each connection reads the next response of
    ``responses`` in pieces of ``piece`` bytes, then the end of the stream."""

    name = "scripted"

    def __init__(self, responses, piece=7):
        self.responses = list(responses)
        self.piece = piece
        self.sent = []

    def connect(self, sock, host, port, limit):
        sock._handle = [self.responses.pop(0) if self.responses else b"", 0]
        sock.tcp.fire(tcp.CONNECT)
        sock.tcp.fire(tcp.CONNECTED)

    def send(self, sock, mv, timeout_ms):
        self.sent.append(bytes(mv))
        return len(mv)

    def recv_into(self, sock, mv, timeout_ms):
        data, pos = sock._handle
        n = min(len(mv), self.piece, len(data) - pos)
        mv[:n] = data[pos:pos + n]
        sock._handle[1] = pos + n
        return n

    def close(self, sock, timeout_ms):
        pass


def test_poller_survives_server_bytes_that_are_not_text():
    # Each of these once raised UnicodeError or ValueError out of poll(): an ETag and a
    # reason phrase that are not UTF-8, a Retry-After of non-ASCII digits, a Location
    # that is not ASCII. Each is now an outcome, the ETag goes back byte for byte.
    etag = b'"\xff-1"'
    backend = Scripted([
        b"HTTP/1.1 200 OK\r\nETag: " + etag + b"\r\nContent-Length: 1\r\n\r\nA",
        b"HTTP/1.1 304 Not Modified\r\n\r\n",
        b"HTTP/1.1 503 Besch\xe4ftigt\r\nRetry-After: \xc2\xb2\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 302 Found\r\nLocation: /\xe9\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nLast-Modified: \xc0\r\n\r\nB",
    ])
    p = Poller("http://h/t", client=Client(backend=backend), interval_ms=0, backoff_ms=10)
    outcomes = [p.poll()[0] for _ in range(5)]
    eq(outcomes, [CHANGED, NOT_MODIFIED, FAILED, FAILED, CHANGED])
    eq(b"If-None-Match: " + etag + b"\r\n" in backend.sent[1], True, repr(backend.sent[1]))
    eq((p.etag, p.last_modified, p.schedule.failures, p.connections), (None, "\xc0", 0, 5))
    eq(str(p.last_error), "HTTP 302: Location is not a URL: b'/\\xe9' (http://h/t)")


def test_poller_waits_as_long_as_the_servers_retry_after():
    # 503 and 429 with Retry-After: the next poll comes when the server asked (never
    # after the cap); without one, the plain backoff.
    backend = Scripted([
        b"HTTP/1.1 503 Busy\r\nRetry-After: 120\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 429 Slow Down\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 503 Busy\r\nRetry-After: 86400\r\nContent-Length: 0\r\n\r\n",
    ])
    p = Poller("http://h/t", client=Client(backend=backend), interval_ms=0, backoff_ms=10,
               backoff_cap_ms=600000)
    eq([p.poll() for _ in range(4)],
       [(FAILED, 120000), (FAILED, 7000), (FAILED, 40), (FAILED, 600000)])
    eq((p.errors, p.last_status, p.delay_ms), (4, 503, 600000))
