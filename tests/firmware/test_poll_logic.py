"""Poll scheduling without I/O: interval measured start to start, jitter, exponential
backoff with a cap, Retry-After, recovery, tick wrap-around. Runs on CPython and on the
MicroPython VM."""

import time

from portable import eq, raises

from synack.poll import (CHANGED, FAILED, NOT_MODIFIED, Schedule, _Rand, classify,
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
