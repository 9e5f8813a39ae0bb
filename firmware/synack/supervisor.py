"""The device's online/offline state machine: bring the link up, keep it up, and when
it falls over reconnect with exponential backoff and jitter, re-initialising the link
(a modem reset) after repeated failures.

A *link* is any object with ``up()`` (blocking bring-up; raises on failure), ``down()``
and ``is_up()``: ``link.modem.ModemLink`` wraps a synack modem backend, a Wi-Fi link has the same
three methods. *Sessions* (a heartbeat connection, an MQTT client ...) have the same
interface and ride on the link; the device is ONLINE when the link and every session
are up. A link may also have ``reinit()``; without it REINIT calls ``down()``; and
``up_async()`` and ``reinit_async()``, coroutines that do ``up()``'s and ``reinit()``'s
work without blocking the event loop (``ModemLink``), which the asyncio task
(tasks.supervise) awaits: ``async_call()`` hands one out when the LINK_UP or REINIT
step is due and ``async_done()`` takes its outcome.

``Supervisor.step(now_ms)`` does at most one transition (calling the link where the
state needs it) and returns the ticks at which it wants to run again; ``run()`` is the
blocking loop on top. States are one table (``TRANSITIONS``); a transition that is not
in it raises ``SupervisorStateError``.

Backoff: the n-th consecutive failure waits min(cap, base * 2**(n-1)) minus up to
``jitter_pct`` % of it, so a fleet that lost the same cell tower does not come back in
lockstep. After ``reinit_after`` failures in a row the next attempt is preceded by REINIT.
"""

import time

from micropython import const

OFFLINE = const(0)   # nothing up (just lost, or stopped)
LINK_UP = const(1)   # bringing the link, then the sessions, up
ONLINE = const(2)    # link and sessions up; watched every check_ms
BACKOFF = const(3)   # waiting before the next attempt
REINIT = const(4)    # re-initialising the link after repeated failures
STATE_NAMES = ("OFFLINE", "LINK_UP", "ONLINE", "BACKOFF", "REINIT")

START = const(0)          # the supervisor wants to be online
UP_OK = const(1)
UP_FAILED = const(2)
LOST = const(3)           # the link or a session went down while ONLINE
RETRY = const(4)          # the backoff delay elapsed
REINIT_DUE = const(5)     # the backoff elapsed after `reinit_after` failures in a row
REINIT_DONE = const(6)
REINIT_FAILED = const(7)
STOP = const(8)           # accepted in every state but OFFLINE (handled in _fire)
EVENT_NAMES = ("START", "UP_OK", "UP_FAILED", "LOST", "RETRY", "REINIT_DUE", "REINIT_DONE",
               "REINIT_FAILED", "STOP")

TRANSITIONS = {
    (OFFLINE, START): LINK_UP,
    (LINK_UP, UP_OK): ONLINE,
    (LINK_UP, UP_FAILED): BACKOFF,
    (ONLINE, LOST): OFFLINE,
    (BACKOFF, RETRY): LINK_UP,
    (BACKOFF, REINIT_DUE): REINIT,
    (REINIT, REINIT_DONE): LINK_UP,
    (REINIT, REINIT_FAILED): BACKOFF,
}

_LOG_SIZE = const(16)
_NO_ENTRY = (0, 0, 0, 0)
_MASK32 = const(0xFFFFFFFF)


class SupervisorStateError(Exception):
    def __init__(self, state, event):
        super().__init__("supervisor event %s is illegal in state %s"
                         % (EVENT_NAMES[event], STATE_NAMES[state]))
        self.state = state
        self.event = event


class Supervisor:
    """``Supervisor(link, sessions=(), on_change=None, ...)``; ``on_change(old, new)``
    gets state numbers (``STATE_NAMES[new]`` for the name). ``events(name, cause)``,
    if given, gets each transition's event name and, for UP_FAILED, LOST and
    REINIT_FAILED, the cause as text (e.g. ``synack.blackbox``'s recorder)."""

    def __init__(self, link, sessions=(), on_change=None, base_ms=1000, cap_ms=300000,
                 jitter_pct=25, reinit_after=5, check_ms=1000, seed=None, events=None):
        if base_ms <= 0 or cap_ms < base_ms or not 0 <= jitter_pct < 100 or reinit_after < 1:
            raise ValueError("supervisor needs 0 < base_ms <= cap_ms, 0 <= jitter_pct < 100, "
                             "reinit_after >= 1")
        self.link = link
        self.sessions = tuple(sessions)
        self.on_change = on_change
        self.events = events      # optional sink: events(event name, cause or None)
        self.base_ms = base_ms
        self.cap_ms = cap_ms
        self.jitter_pct = jitter_pct
        self.reinit_after = reinit_after
        self.check_ms = check_ms
        self.state = OFFLINE
        self.wanted = False
        # counters
        self.attempts = 0         # bring-up attempts
        self.connects = 0         # successful bring-ups
        self.reconnects = 0       # successful bring-ups after the first
        self.losses = 0           # ONLINE -> OFFLINE
        self.reinits = 0
        self._async_state = None  # type: int | None  # the state async_call() answered in
        self.failures = {}        # cause (exception class name, "link lost" ...) -> count
        self.in_row = 0           # consecutive failures (drives the backoff)
        self.since_reinit = 0     # consecutive failures since the last REINIT
        self.last_error = None    # the exception (or text) of the last failure
        self.last_delay_ms = 0
        self._wake = 0  # pragma: no mutate -- _failed() sets it before BACKOFF reads it
        if seed is None:
            seed = time.ticks_diff(time.ticks_us(), 0) ^ id(self)
        self._seed = seed & _MASK32 or 1   # xorshift must not start at 0
        self._log = [_NO_ENTRY] * _LOG_SIZE  # type: list[tuple]
        self._n = 0

    @property
    def state_name(self):
        return STATE_NAMES[self.state]

    @property
    def online(self):
        return self.state == ONLINE

    def _fire(self, event, now):
        old = self.state
        if event == STOP:
            new = OFFLINE if old != OFFLINE else -1
        else:
            new = TRANSITIONS.get((old, event), -1)
        if new < 0:
            raise SupervisorStateError(old, event)
        self.state = new
        self._log[self._n % _LOG_SIZE] = (now, event, old, new)
        self._n += 1
        if self.on_change is not None:
            self.on_change(old, new)
        if self.events is not None:
            _emit(self.events, event, self.last_error if event in _CAUSED else None)

    def history(self):
        """Logged transitions, oldest first: [(ticks_ms, event, old, new), ...]."""
        first = self._n - _LOG_SIZE if self._n > _LOG_SIZE else 0
        return [self._log[i % _LOG_SIZE] for i in range(first, self._n)]

    def format_history(self):
        return ["%d %s %s -> %s" % (t, EVENT_NAMES[e], STATE_NAMES[a], STATE_NAMES[b])
                for (t, e, a, b) in self.history()]

    # -- backoff --------------------------------------------------------------------
    def _rand16(self):
        # xorshift32: `random` is optional in MicroPython builds, this is 6 lines.
        x = self._seed
        x ^= (x << 13) & _MASK32
        x ^= x >> 17
        x ^= (x << 5) & _MASK32
        self._seed = x
        return x & 0xFFFF

    def backoff_ms(self, failures):
        """The delay after ``failures`` consecutive failures, jitter included."""
        d = self.base_ms
        for _ in range(failures - 1):
            d *= 2
            if d >= self.cap_ms:
                break
        d = min(d, self.cap_ms)
        return d - d * self.jitter_pct * self._rand16() // (100 * 65536)

    def _failed(self, cause, error, now):
        self.failures[cause] = self.failures.get(cause, 0) + 1
        self.last_error = error
        self.in_row += 1
        self.since_reinit += 1
        self.last_delay_ms = self.backoff_ms(self.in_row)
        self._wake = time.ticks_add(now, self.last_delay_ms)

    # -- control --------------------------------------------------------------------
    def start(self):
        self.wanted = True

    def stop(self, now=None):
        """Take sessions and link down and stay OFFLINE until start()."""
        self.wanted = False
        self._take_down(True)
        if self.state != OFFLINE:
            self._fire(STOP, time.ticks_ms() if now is None else now)

    def _take_down(self, link_too):
        for s in reversed(self.sessions):
            _quietly(s.down)
        if link_too:
            _quietly(self.link.down)

    def _lost_cause(self):
        """None while everything is up, else what went down."""
        try:
            if not self.link.is_up():
                return "link lost"
            for s in self.sessions:
                if not s.is_up():
                    return "session lost"
        except Exception as e:  # a probe that raises is a link we cannot use
            return "%s in is_up" % type(e).__name__
        return None

    def step(self, now=None):
        """Do what the current state needs; returns the ticks to call again at, or None
        when stopped. With ``now`` None the real clock is read (also after the blocking
        calls, so backoff counts from when a failed attempt ended)."""
        real = now is None
        if real:
            now = time.ticks_ms()
        st = self.state
        if st == OFFLINE:
            if not self.wanted:
                return None
            self._fire(START, now)
            return now
        if st == LINK_UP:
            return self._bring_up(now, real)
        if st == ONLINE:
            cause = self._lost_cause()
            if cause is None:
                return time.ticks_add(now, self.check_ms)
            self.losses += 1
            self.failures[cause] = self.failures.get(cause, 0) + 1
            self.last_error = cause
            self._take_down(cause != "session lost")
            self._fire(LOST, now)
            return now
        if st == BACKOFF:
            if time.ticks_diff(now, self._wake) < 0:
                return self._wake
            self._fire(REINIT_DUE if self.since_reinit >= self.reinit_after else RETRY, now)
            return now
        return self._reinit(now, real)

    def async_call(self):
        """For an asyncio task: the link's coroutine function for the call the next
        ``step()`` would block in, or None (then ``step()``): ``up_async`` in LINK_UP with
        the link down, ``reinit_async`` in REINIT (the sessions are taken down here
        first). The task awaits it and passes the outcome to ``async_done()`` in place
        of that step."""
        st = self.state
        call = None
        if st == REINIT:
            call = getattr(self.link, "reinit_async", None)
            if call is not None:
                self._take_down(False)
        elif st == LINK_UP:
            call = getattr(self.link, "up_async", None)
            try:
                if call is not None and self.link.is_up():
                    call = None
            except Exception:  # step() probes again and counts the failure
                call = None
        self._async_state = st if call is not None else None
        return call

    def async_done(self, error=None, now=None):
        """The step after the caller made ``async_call()``'s call itself: ``error`` None
        if it worked, else its exception. Returns the ticks to call ``step()`` at.
        Stopped meanwhile: a link brought up goes down again unless the supervisor was
        started again."""
        real = now is None
        if real:
            now = time.ticks_ms()
        st = self._async_state
        self._async_state = None
        done = True if error is None else error
        if self.state != st:
            if st == LINK_UP and error is None and not self.wanted:
                _quietly(self.link.down)
            return now
        if st == REINIT:
            return self._reinit(now, real, done)
        return self._bring_up(now, real, done)

    def _bring_up(self, now, real, link_done=None):
        # link_done: None = bring the link up here; True / an exception = async_done()'s
        self.attempts += 1
        try:
            if link_done is None:
                if not self.link.is_up():
                    self.link.up()
            elif link_done is not True:
                raise link_done
            for s in self.sessions:
                if not s.is_up():
                    s.up()
        except Exception as e:  # every bring-up error is a cause to count, then retry
            if real:
                now = time.ticks_ms()
            self._failed(type(e).__name__, e, now)
            self._fire(UP_FAILED, now)
            return self._wake
        if real:
            now = time.ticks_ms()
        if self.connects:
            self.reconnects += 1
        self.connects += 1
        self.in_row = 0
        self.since_reinit = 0
        self._fire(UP_OK, now)
        return time.ticks_add(now, self.check_ms)

    def _reinit(self, now, real, link_done=None):
        # link_done: None = re-initialise the link here; True / an exception = async_done()'s
        try:
            if link_done is None:
                self._take_down(False)
                reinit = getattr(self.link, "reinit", None)
                if reinit is not None:
                    reinit()
                else:
                    self.link.down()
            elif link_done is not True:
                raise link_done
        except Exception as e:
            if real:
                now = time.ticks_ms()
            self._failed("reinit " + type(e).__name__, e, now)
            self._fire(REINIT_FAILED, now)
            return self._wake
        self.reinits += 1
        self.since_reinit = 0
        self._fire(REINIT_DONE, time.ticks_ms() if real else now)
        return now

    def run(self, duration_ms=None, stop=None, idle=None):
        """Supervise until ``duration_ms`` elapsed or ``stop()`` is true. Time between
        steps goes to ``idle(ms)`` (e.g. a heartbeat Driver.run) or sleeps. Returns the
        state name."""
        self.start()
        end = None if duration_ms is None else time.ticks_add(time.ticks_ms(), duration_ms)
        while not (stop is not None and stop()):
            now = time.ticks_ms()
            if end is not None and time.ticks_diff(end, now) <= 0:
                break
            wake = self.step()
            if wake is None:
                break
            now = time.ticks_ms()
            wait = time.ticks_diff(wake, now)
            if end is not None:
                wait = min(wait, time.ticks_diff(end, now))
            if wait > 0:
                if idle is not None:
                    idle(wait)
                else:
                    time.sleep_ms(wait)
        return self.state_name


_CAUSED = (UP_FAILED, LOST, REINIT_FAILED)


def _emit(sink, event, cause):
    # An event sink (e.g. blackbox.Blackbox.supervisor_event) is a recorder: its own
    # failure must not stop the supervision it records.
    try:
        sink(EVENT_NAMES[event], None if cause is None else
             (cause if isinstance(cause, str) else "%s: %s" % (type(cause).__name__, cause)))
    except Exception:  # a failing recorder is ignored
        return


def _quietly(fn):
    # Tearing down a link that is already gone fails in link-specific ways; the
    # supervisor is going to bring it up again anyway.
    try:
        fn()
    except Exception:  # teardown errors must not stop recovery
        return
