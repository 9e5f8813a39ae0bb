"""HTTP polling: ask a server "anything new?" on a schedule, cheaply.

    from synack.http.client import Client
    from synack.poll import Poller

    def changed(resp):                 # called for a 2xx with new content
        print(resp.status, resp.read())

    p = Poller("http://example.com/state", changed, client=Client(backend=modem),
               interval_ms=30000, jitter_ms=3000)
    p.run()                            # forever; p.run(polls=10) or p.stop() to end

What makes a poll cheap, and how each is done here:

- one keep-alive connection for every poll (the client's pool): no handshake per poll;
- ETag / If-None-Match (and Last-Modified / If-Modified-Since): an unchanged resource
  costs a 304 with no body;
- long polling (``long_poll_ms``): the server holds the request until it has news or T
  ms pass, so news arrives at once without polling fast. The read timeout of each poll is
  T plus the client's own read timeout, and ``Prefer: wait=<T s>`` (RFC 7240) tells the
  server how long it may hold;
- jitter, so that a fleet of devices does not poll in lockstep;
- on errors, exponential backoff up to a cap (and a server's ``Retry-After``); the first
  success returns to the normal interval.

``Schedule`` is the decision part, without I/O: it takes times and outcomes and returns
the next delay, so it is tested on its own (also on the MicroPython VM). ``Poller`` is
the thin blocking loop around it.
"""

import time

from micropython import const

from .http.errors import HTTPError
from .http.head import digits, text

CHANGED = const(0)        # 2xx with content: new data
NOT_MODIFIED = const(1)   # 304, or 204 (a long poll that ended with nothing new)
FAILED = const(2)         # network or protocol error, or an error status
OUTCOME_NAMES = ("CHANGED", "NOT_MODIFIED", "FAILED")

_SLEEP_SLICE_MS = const(100)  # how promptly a sleeping poller notices stop()


def classify(status):
    """The outcome of a poll answered with ``status``."""
    if status == 304 or status == 204:
        return NOT_MODIFIED
    if 200 <= status < 300:
        return CHANGED
    return FAILED


def retry_after_ms(value):
    """A ``Retry-After`` header (bytes or str) in delay-seconds form, in ms; 0 if
    absent, a date (a device without a trustworthy clock cannot use an HTTP-date) or
    anything but 1 to 9 ASCII digits."""
    if not value:
        return 0
    seconds = digits(value.strip(), 10, 9)
    return seconds * 1000 if seconds > 0 else 0


class _Rand:
    # Fallback jitter source for ports built without the random module: a 32-bit
    # xorshift seeded from the tick counter. Jitter only has to differ between devices.
    def __init__(self):
        self.x = (time.ticks_diff(time.ticks_ms(), 0) * 2654435761 + 1) & 0xFFFFFFFF or 1

    def __call__(self, limit):
        x = self.x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.x = x
        return x % (limit + 1)


def _default_rand():
    try:
        import random
    except (ImportError, OSError):  # not built in (the VM reports a missing file)
        return _Rand()

    def rand(limit):
        return random.getrandbits(30) % (limit + 1)
    return rand


class Schedule:
    """When to poll next. ``next_delay()`` takes when a poll started and finished
    (``time.ticks_ms()`` values) and its outcome, and returns the delay in ms.

    After a success the period from poll start to poll start is ``interval_ms`` (a long
    poll that took longer is followed at once); after the n-th failure in a row the
    delay is ``backoff_ms * 2**(n-1)``, at most ``backoff_cap_ms``, or the server's
    Retry-After if longer (still capped). Every delay gets 0..``jitter_ms`` added.
    ``rand(limit)`` returns an int in 0..limit (injectable for tests)."""

    def __init__(self, interval_ms=30000, jitter_ms=0, backoff_ms=1000,
                 backoff_cap_ms=300000, rand=None):
        if interval_ms < 0 or jitter_ms < 0 or backoff_ms <= 0 or backoff_cap_ms < backoff_ms:
            raise ValueError("bad schedule: interval %d, jitter %d, backoff %d..%d ms"
                             % (interval_ms, jitter_ms, backoff_ms, backoff_cap_ms))
        self.interval_ms = interval_ms
        self.jitter_ms = jitter_ms
        self.backoff_ms = backoff_ms
        self.backoff_cap_ms = backoff_cap_ms
        self._rand = rand
        self.failures = 0  # consecutive failed polls

    def _jitter(self):
        if not self.jitter_ms:
            return 0
        if self._rand is None:
            self._rand = _default_rand()
        return self._rand(self.jitter_ms)

    def first_delay(self):
        """Before the first poll: jitter only, so devices that boot together spread out."""
        return self._jitter()

    def backoff(self, failures):
        """The delay after ``failures`` consecutive failures, before jitter."""
        delay = self.backoff_ms
        cap = self.backoff_cap_ms
        for _ in range(failures - 1):  # doubling with a cap: no huge ints, no overflow
            delay *= 2
            if delay >= cap:  # pragma: no mutate -- at delay == cap, > returns cap too
                return cap
        return delay

    def next_delay(self, started_ms, finished_ms, outcome, retry_after=0):  # pragma: no mutate
        # (a default of 0 or 1 ms never passes a backoff, which is >= 1 ms)
        if outcome == FAILED:
            self.failures += 1
            delay = self.backoff(self.failures)
            if retry_after > delay:  # pragma: no mutate -- equal: min() gives delay anyway
                delay = min(retry_after, self.backoff_cap_ms)
        else:
            self.failures = 0
            delay = self.interval_ms - time.ticks_diff(finished_ms, started_ms)
            if delay < 0:  # pragma: no mutate -- 0 or < 1: setting 0 to 0 changes nothing
                delay = 0
        return delay + self._jitter()


class Poller:
    """Polls ``url`` with ``client`` (a synack.http.client.Client; one is made if None).

    ``on_change(resp)`` is called for a 2xx response with new content, before its body
    is read: stream it with ``resp.readinto()`` or take it with ``resp.read()``; what
    it leaves is drained so the connection stays usable. A callback that raises stops
    ``run()`` (it is the application's bug, not the network's).

    Counters: ``polls``, ``ok`` (2xx with content), ``not_modified`` (304/204),
    ``errors``; ``connections`` (TCP connections the client opened). ``last_status``,
    ``last_error`` and ``delay_ms`` (the last delay chosen) show the latest poll."""

    def __init__(self, url, on_change=None, client=None, interval_ms=30000, jitter_ms=0,
                 backoff_ms=1000, backoff_cap_ms=300000, long_poll_ms=None, headers=None,
                 rand=None):
        if client is None:
            from .http.client import Client  # lazy: only a Poller without a client needs it
            client = Client()
        self.url = url
        self.on_change = on_change
        self.client = client
        self.schedule = Schedule(interval_ms, jitter_ms, backoff_ms, backoff_cap_ms, rand)
        self.long_poll_ms = long_poll_ms
        self.headers = headers
        # The validators of the last 2xx, as the server's bytes: sent back unchanged.
        self._etag = None  # type: bytes | None
        self._last_modified = None  # type: bytes | None
        self.polls = 0
        self.ok = 0
        self.not_modified = 0
        self.errors = 0
        self.last_status = None  # type: int | None
        self.last_error = None  # type: Exception | None
        self.delay_ms = 0
        self._stop = False  # pragma: no mutate -- run() resets it before any use

    @property
    def etag(self):
        """The ETag of the last 2xx as str (None if it had none), sent back as
        If-None-Match (byte for byte, whatever its charset)."""
        return None if self._etag is None else text(self._etag)

    @property
    def last_modified(self):
        """The Last-Modified of the last 2xx as str (None if it had none)."""
        return None if self._last_modified is None else text(self._last_modified)

    @property
    def connections(self):
        return self.client.connections

    def stats(self):
        return {"polls": self.polls, "ok": self.ok, "not_modified": self.not_modified,
                "errors": self.errors, "connections": self.client.connections}

    def _request_headers(self):
        headers = []
        if self.headers:
            headers.extend(self.headers.items() if isinstance(self.headers, dict)
                           else self.headers)
        if self._etag is not None:
            headers.append(("If-None-Match", self._etag))
        elif self._last_modified is not None:
            headers.append(("If-Modified-Since", self._last_modified))
        if self.long_poll_ms:
            headers.append(("Prefer", "wait=%d" % ((self.long_poll_ms + 999) // 1000)))
        return headers

    def poll(self):
        """One poll now. Returns (outcome, delay in ms until the next one)."""
        started, read_ms = self._begin()
        outcome = FAILED
        retry_after = 0  # pragma: no mutate -- 0 or 1 ms: never more than a backoff (>= 1)
        try:
            resp = self.client.get(self.url, headers=self._request_headers(),
                                   read_timeout_ms=read_ms)
            try:
                outcome, retry_after = self._answered(resp)
                if outcome == CHANGED and self.on_change is not None:
                    self.on_change(resp)
                resp.drain()
            finally:
                resp.close()
        except (OSError, HTTPError) as e:
            outcome = FAILED
            self.last_error = e
        return self._end(started, outcome, retry_after)

    async def poll_async(self):
        """``poll()`` with a synack.http.aclient.AsyncClient as ``client``: connecting,
        sending and reading are awaits, so other tasks run while a poll waits for the
        network (``tasks.poll`` uses it for such a client). ``on_change(resp)`` gets the
        AsyncResponse and may be a coroutine function (then it is awaited)."""
        started, read_ms = self._begin()
        outcome = FAILED
        retry_after = 0  # pragma: no mutate -- as in poll()
        try:
            resp = await self.client.get(self.url, headers=self._request_headers(),
                                         read_timeout_ms=read_ms)
            try:
                outcome, retry_after = self._answered(resp)
                if outcome == CHANGED and self.on_change is not None:
                    done = self.on_change(resp)
                    if done is not None and hasattr(done, "send"):  # a coroutine
                        await done
                await resp.drain()
            finally:
                resp.close()
        except (OSError, HTTPError) as e:
            outcome = FAILED
            self.last_error = e
        return self._end(started, outcome, retry_after)

    def _begin(self):
        self.polls += 1
        read_ms = None
        if self.long_poll_ms:
            read_ms = self.long_poll_ms + (self.client.read_timeout_ms or 0)
        return time.ticks_ms(), read_ms

    def _answered(self, resp):
        """Count and remember what the response says: (outcome, Retry-After ms)."""
        self.last_status = status = resp.status
        outcome = classify(status)
        if outcome == CHANGED:
            self.ok += 1
            self._etag = resp.head.header(b"etag")
            self._last_modified = resp.head.header(b"last-modified")
        elif outcome == NOT_MODIFIED:
            self.not_modified += 1
        else:
            self.last_error = HTTPError("poll answered %d %s" % (status, text(resp.reason)),
                                        status, self.url)
            return outcome, retry_after_ms(resp.head.header(b"retry-after"))
        return outcome, 0

    def _end(self, started, outcome, retry_after):
        if outcome == FAILED:
            self.errors += 1
        self.delay_ms = self.schedule.next_delay(started, time.ticks_ms(), outcome,
                                                 retry_after)
        return outcome, self.delay_ms

    def run(self, polls=None, stop=None):
        """Poll until ``polls`` polls are done, ``stop()`` returns True or ``self.stop()``
        was called; returns the number of polls made. No sleep after the last poll."""
        self._stop = False
        done = 0
        self._sleep(self.schedule.first_delay(), stop)
        while not self._stopped(stop) and (polls is None or done < polls):
            _, delay = self.poll()
            done += 1
            if polls is not None and done >= polls:
                break
            self._sleep(delay, stop)
        return done

    def stop(self):
        """Make ``run()`` return after the current poll (or sleep slice)."""
        self._stop = True

    def close(self):
        self.client.close()

    def _stopped(self, stop):
        return self._stop or (stop is not None and stop())

    def _sleep(self, ms, stop):
        deadline = time.ticks_add(time.ticks_ms(), ms)
        while not self._stopped(stop):
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0:
                return
            time.sleep_ms(min(left, _SLEEP_SLICE_MS))
