"""Poll scheduling without I/O: interval measured start to start, jitter, exponential
backoff with a cap, Retry-After, recovery, tick wrap-around. Runs on CPython and on the
MicroPython VM."""

import time

import portable
from portable import eq, raises

from synack import tcp
from synack.backend import Backend
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


class Scripted(Backend):
    """A socket backend without a network: each connection reads the next response of
    ``responses`` in pieces of ``piece`` bytes, then the end of the stream."""

    name = "scripted"

    def __init__(self, responses, piece=7):
        self.responses = list(responses)
        self.piece = piece
        self.sent = []

    def connect_start(self, sock, host, port, limit_ms):
        sock.tcp.fire(tcp.CONNECT)
        sock.tcp.fire(tcp.CONNECTED)
        return [self.responses.pop(0) if self.responses else b"", 0], True

    def send(self, sock, mv, timeout_ms):
        self.sent.append(bytes(mv))
        return len(mv)

    def recv_into(self, sock, mv, timeout_ms):
        data, pos = sock.handle
        n = min(len(mv), self.piece, len(data) - pos)
        mv[:n] = data[pos:pos + n]
        sock.handle[1] = pos + n
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


def test_status_300_is_not_news():
    eq([classify(s) for s in (299, 300)], [CHANGED, FAILED])


def test_retry_after_of_one_second_and_of_too_many_digits():
    eq((retry_after_ms("1"), retry_after_ms(b"0")), (1000, 0))
    eq((retry_after_ms("123456789"), retry_after_ms("1234567890")), (123456789000, 0))


def test_schedule_defaults_and_the_smallest_settings_allowed():
    s = Schedule()
    eq((s.interval_ms, s.jitter_ms, s.backoff_ms, s.backoff_cap_ms, s.failures),
       (30000, 0, 1000, 300000, 0))
    s = Schedule(0, 0, 1, 1)            # 1 ms backoff, capped at 1 ms: allowed
    eq([s.next_delay(0, 0, FAILED) for _ in range(3)], [1, 1, 1])
    e = raises(ValueError, Schedule, 10, 2, 5, 4)
    eq(str(e), "bad schedule: interval 10, jitter 2, backoff 5..4 ms")


def test_default_random_jitter_covers_exactly_0_to_limit():
    from synack.poll import _default_rand
    rand = _default_rand()
    seen = set(rand(3) for _ in range(200))
    eq(sorted(seen), [0, 1, 2, 3])


def with_clock(fn, now=0):
    from synack import poll
    return portable.with_clock(poll, fn, now)


def test_fallback_jitter_source_is_xorshift32_seeded_from_the_ticks():
    # The seed is the tick count hashed (Knuth's multiplier), never 0: xorshift
    # stays at 0 forever. Then the classic 32-bit xorshift (13, 17, 5).
    eq(with_clock(lambda c: _Rand().x, 0), 1)
    eq(with_clock(lambda c: _Rand().x, 1), 2654435762)
    eq(with_clock(lambda c: _Rand().x, 3), (3 * 2654435761 + 1) & 0xFFFFFFFF)
    eq(with_clock(lambda c: _Rand().x, 4050964655), 1)  # hashes to 0
    r = _Rand()
    r.x = 1
    eq([r(0xFFFFFFFE) for _ in range(4)], [270369, 67634689, 2647435461, 307599695])
    eq(r.x, 307599695)
    r.x = 0x80000001
    eq(r(0xFFFFFFFE), 2148294689)


class Counted(Poller):
    """A poller whose poll() only records when it ran and returns scripted delays."""

    def __init__(self, clock, delays, on_poll=None, **kw):
        Poller.__init__(self, "http://h/t", client=Client(backend=Scripted([])), **kw)
        self.clock = clock
        self.delays = list(delays)
        self.at = []
        self.on_poll = on_poll

    def poll(self):
        self.at.append(self.clock.now)
        if self.on_poll is not None:
            self.on_poll(self)
        return CHANGED, self.delays.pop(0)


def test_run_sleeps_in_slices_between_polls_and_not_after_the_last():
    def check(clock):
        p = Counted(clock, [101, 0, 30, 5000], jitter_ms=200, rand=Fixed(120))
        eq(p.run(polls=4), 4)
        eq(p.at, [120, 221, 221, 251])    # first_delay, then each poll's delay
        eq(clock.sleeps, [100, 20, 100, 1, 30])
        eq(clock.now, 251)                # no sleep after the last poll
        eq(p.delays, [])
        p = Counted(clock, [7])
        eq(p.run(polls=0), 0)
        eq(p.at, [])
    with_clock(check)


def test_run_until_a_stop_function_says_so_noticed_within_a_sleep_slice():
    def check(clock):
        p = Counted(clock, [300] * 10)
        eq(p.run(stop=lambda: clock.now >= 1000), 4)
        eq(p.at, [0, 300, 600, 900])
        eq(clock.sleeps, [100] * 10)
        eq(clock.now, 1000)
    with_clock(check)


def test_stop_ends_run_after_the_current_poll_and_run_starts_again():
    def check(clock):
        p = Counted(clock, [50] * 10, on_poll=lambda p: len(p.at) == 2 and p.stop())
        eq(p.run(), 2)
        eq((p.at, clock.sleeps), ([0, 50], [50]))
        eq(p.run(polls=3), 3)             # a new run() is not stopped by the old stop()
        eq(p.at, [0, 50, 50, 100, 150])
    with_clock(check)


def test_stop_during_a_sleep_is_noticed_within_a_slice():
    def check(clock):
        p = Counted(clock, [10000])
        real_sleep = clock.sleep_ms

        def sleep_ms(ms):
            real_sleep(ms)
            if clock.now >= 250:
                p.stop()
        clock.sleep_ms = sleep_ms
        eq(p.run(polls=2), 1)
        eq((clock.sleeps, clock.now), ([100, 100, 100], 300))
    with_clock(check)


class Recording(Scripted):
    def __init__(self, responses, piece=7):
        Scripted.__init__(self, responses, piece)
        self.timeouts = []

    def recv_into(self, sock, mv, timeout_ms):
        self.timeouts.append(timeout_ms)
        return Scripted.recv_into(self, sock, mv, timeout_ms)


def test_poller_defaults_and_fresh_counters():
    p = Poller("http://h/t", client=Client(backend=Scripted([])))
    s = p.schedule
    eq((s.interval_ms, s.jitter_ms, s.backoff_ms, s.backoff_cap_ms), (30000, 0, 1000, 300000))
    eq(p.stats(), {"polls": 0, "ok": 0, "not_modified": 0, "errors": 0, "connections": 0})
    eq((p.etag, p.last_modified, p.last_status, p.last_error, p.delay_ms),
       (None, None, None, None, 0))
    eq(Poller("http://h/t", jitter_ms=10, rand=Fixed(3)).schedule.first_delay(), 3)
    eq(isinstance(Poller("http://h/t").client, Client), True)  # one is made if none given


def test_poller_sends_validators_headers_and_long_poll_preference():
    bodies = []
    backend = Recording([
        b"HTTP/1.1 200 OK\r\nLast-Modified: Mon\r\nContent-Length: 2\r\n\r\nv1",
        b"HTTP/1.1 304 Not Modified\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nETag: \"e2\"\r\nLast-Modified: Tue\r\nContent-Length: 2\r\n\r\nv2",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
    ])
    p = Poller("http://h/t", lambda resp: bodies.append(resp.read()),
               client=Client(backend=backend, read_timeout_ms=5000), interval_ms=0,
               backoff_ms=10, long_poll_ms=1001, headers={"X-Key": "k"})
    eq([p.poll()[0] for _ in range(5)], [CHANGED, NOT_MODIFIED, CHANGED, NOT_MODIFIED, FAILED])
    eq(bodies, [b"v1", b"v2"])
    eq(p.stats(), {"polls": 5, "ok": 2, "not_modified": 2, "errors": 1, "connections": 5})
    eq((p.etag, p.last_modified, p.last_status), ('"e2"', "Tue", 503))
    eq((str(p.last_error), p.last_error.status, p.last_error.url),
       ("HTTP 503: poll answered 503 Busy (http://h/t)", 503, "http://h/t"))
    sent = [req.split(b"\r\n\r\n")[0].split(b"\r\n")[1:] for req in backend.sent]
    for lines in sent:
        eq(b"X-Key: k" in lines and b"Prefer: wait=2" in lines, True, repr(lines))
    eq([[ln for ln in lines if ln.startswith(b"If-")] for lines in sent],
       [[], [b"If-Modified-Since: Mon"], [b"If-Modified-Since: Mon"],
        [b'If-None-Match: "e2"'], [b'If-None-Match: "e2"']])
    # each read waits for the long poll's wait plus the read timeout (0: a probe)
    eq(set(backend.timeouts) - {0}, {6001})


def test_long_poll_without_a_client_read_timeout_and_headers_as_pairs():
    backend = Recording([b"HTTP/1.1 304 Not Modified\r\n\r\n"])
    p = Poller("http://h/t", client=Client(backend=backend, read_timeout_ms=None),
               long_poll_ms=2000, headers=[("X-A", "1"), ("X-B", "2")])
    eq(p.poll()[0], NOT_MODIFIED)
    lines = backend.sent[0].split(b"\r\n")
    eq([ln for ln in lines if ln.startswith(b"X-") or ln.startswith(b"Prefer")],
       [b"X-A: 1", b"X-B: 2", b"Prefer: wait=2"])
    eq(set(backend.timeouts) - {0}, {2000})


def test_a_stop_function_also_cuts_the_first_jittered_wait():
    def check(clock):
        p = Counted(clock, [10], jitter_ms=1000, rand=Fixed(900))
        eq(p.run(stop=lambda: clock.now >= 200), 0)
        eq((p.at, clock.sleeps), ([], [100, 100]))
    with_clock(check)
