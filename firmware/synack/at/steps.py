"""AT dialogues as generators (sans-I/O): one description of a multi-command exchange
(a modem's bring-up, its bearer open) that a blocking caller and an asyncio task both run.

A *steps* generator yields requests and gets each one's result back from ``yield``:

- ``command(cmd, prefix, timeout_ms)`` -> the Reply (``Channel.command``); an error
  (CommandError, CommandTimeout, a UART's OSError) is raised at the ``yield``, so the
  generator catches it exactly as it would catch ``at.command``'s;
- ``wait_for(predicate, timeout_ms)`` -> True once ``predicate()`` holds, False on
  timeout, URCs processed meanwhile (``Channel.wait_for``); ``predicate`` None: a
  bounded idle poll (``Channel.poll``), result None;
- ``pause(ms, clock)`` -> None: ``clock.sleep_ms(ms)`` when blocking (the caller's
  ``time`` module, so that a test's fake clock is the one slept on), no I/O.

``run(at, steps)`` runs them on a blocking ``Channel`` and returns the generator's
return value. ``Stepper(at, steps)`` runs the same generator on the same Channel without
ever waiting: each ``advance()`` does what can be done now (a non-blocking socket's
``connect_done()`` polls one); ``at.aio.run_async`` is a Stepper advanced between
awaits, so the waits go to the event loop. Requests are plain tuples.

    def bearer_steps(at):
        yield command(b"AT+NETOPEN")
        if not (yield wait_for(lambda: opened, 75000)):
            raise PDPError("no +NETOPEN")
    run(at, bearer_steps(at))                # blocking
    await run_async(at, bearer_steps(at))    # from a task
"""

import time

from micropython import const

COMMAND = const(0)
WAIT = const(1)
PAUSE = const(2)

# After a timeout the modem may still answer the old command; a resync waits until the
# line has been quiet this long after a fresh "AT" -> "OK" before trusting replies again.
# (Public names: MicroPython inlines a const whose name starts with _.)
RESYNC_QUIET_MS = const(100)
RESYNC_TIMEOUT_MS = const(2000)


def command(cmd, prefix=None, timeout_ms=None, payload=None, lone_line=False):
    """A command request; ``timeout_ms`` None: the channel's default (5 s)."""
    return (COMMAND, cmd, prefix, timeout_ms, payload, lone_line)


def wait_for(predicate, timeout_ms):
    return (WAIT, predicate, timeout_ms)


def poll(timeout_ms):
    """Process URCs for ``timeout_ms`` (a wait that nothing ends early)."""
    return (WAIT, None, timeout_ms)


def pause(ms, clock):
    return (PAUSE, ms, clock)


def execute(at, req):
    """Carry out one request on a blocking channel; its result."""
    kind = req[0]
    if kind == COMMAND:
        _, cmd, prefix, timeout_ms, payload, lone_line = req
        if payload is None and not lone_line:
            if timeout_ms is None:
                return at.command(cmd, prefix)
            return at.command(cmd, prefix, timeout_ms=timeout_ms)
        return at.command(cmd, prefix, payload, 5000 if timeout_ms is None else timeout_ms,
                          lone_line)
    if kind == WAIT:
        if req[1] is None:
            return at.poll(req[2])
        return at.wait_for(req[1], req[2])
    req[2].sleep_ms(req[1])
    return None


def run(at, steps):
    """Run a steps generator on the blocking channel ``at``: each request executed,
    its result sent back (its exception thrown back) into the generator. Returns the
    generator's return value; an exception it does not catch propagates."""
    result = None
    error = None
    while True:
        try:
            req = steps.send(result) if error is None else steps.throw(error)
        except StopIteration as e:
            return e.value
        error = None
        try:
            result = execute(at, req)
        except Exception as e:  # thrown into the generator: its try/except decides
            result = None
            error = e


def _never():
    return False


def quiet(at, ms):
    """A predicate for ``wait_for``: true once ``at`` has received nothing for ``ms``."""
    seen = [at.rx_bytes, time.ticks_ms()]

    def check():
        now = time.ticks_ms()
        if at.rx_bytes != seen[0]:
            seen[0] = at.rx_bytes
            seen[1] = now
            return False
        return time.ticks_diff(now, seen[1]) >= ms

    return check


def resync_steps(at):
    """Re-pair commands and replies after a timeout or lost framing: drop stale input,
    send ``AT``, then wait until the line is quiet, so that a late reply to the old
    command cannot be taken as the answer to the next one."""
    at.needs_resync = False  # pragma: no mutate -- None: only its truth is read
    at._discard_input()
    at.engine.parser.reset()
    yield command(b"AT", timeout_ms=RESYNC_TIMEOUT_MS)
    yield wait_for(quiet(at, RESYNC_QUIET_MS), RESYNC_TIMEOUT_MS)


# Stepper._cmd: where the request's command is
_IDLE = const(0)      # not begun (the engine is another's, or a resync runs first)
_SENT = const(1)      # begun, its reply not complete
_ANSWERED = const(2)  # complete: _reply or _failed holds the outcome


class Stepper:
    """A steps generator on a blocking Channel, run without waiting: ``advance()`` does
    what can be done now and returns True once the generator returned (its value in
    ``value``); it raises what the generator raised. ``cancel()`` gives it up (a
    command in flight is aborted and the channel resyncs before the next one).

    A command waits while the engine serves another's; a blocking ``at.command()``
    issued meanwhile first completes this Stepper's command in flight (``at.owner``),
    whose reply is kept for its next ``advance()``."""

    def __init__(self, at, steps):
        self.at = at
        self.value = None
        self.done = False  # pragma: no mutate -- None: only its truth is read
        self._gen = steps
        self._req = None  # type: tuple | None
        self._result = None
        self._error = None  # type: Exception | None
        self._cmd = _IDLE
        self._resync = None  # type: Stepper | None
        self._deadline = 0
        self._reply = None
        self._failed = None  # type: Exception | None

    def advance(self):
        if self.done:
            return True
        while True:
            req = self._req
            if req is None:
                try:
                    if self._error is None:
                        req = self._gen.send(self._result)
                    else:
                        req = self._gen.throw(self._error)
                except StopIteration as e:
                    self.value = e.value
                    self.done = True
                    return True
                self._req = req
                self._result = self._error = None
                self._start(req)
            try:
                if not self._progress(req):
                    return False
            except Exception as e:  # thrown into the generator: its try/except decides
                self._error = e
                self._result = None
            self._req = None

    def cancel(self):
        if self._cmd == _SENT:
            self.at._interrupted()
            self.at.owner = None
        if self._resync is not None:
            self._resync.cancel()
        self._cmd = _IDLE
        self._gen.close()

    def _start(self, req):
        kind = req[0]
        self._cmd = _IDLE
        if kind == WAIT:
            self._deadline = time.ticks_add(time.ticks_ms(), req[2])
        elif kind == PAUSE:
            self._deadline = time.ticks_add(time.ticks_ms(), req[1])

    def _progress(self, req):
        """Carry the request on as far as it goes now: True once it is complete (its
        result in ``_result``); raises its error."""
        kind = req[0]
        if kind == COMMAND:
            return self._command(req)
        if kind == PAUSE:
            return time.ticks_diff(self._deadline, time.ticks_ms()) <= 0
        at = self.at
        predicate = _never if req[1] is None else req[1]
        while not predicate():
            if at.pump():
                if time.ticks_diff(time.ticks_ms(), self._deadline) <= 0:
                    continue  # (input that never stops ends the wait all the same)
            elif time.ticks_diff(self._deadline, time.ticks_ms()) > 0:
                return False
            self._result = None if req[1] is None else predicate()
            return True
        self._result = None if req[1] is None else True
        return True

    def _command(self, req):
        at = self.at
        if self._cmd == _IDLE:
            if self._resync is None:
                if at.engine.busy:  # another's command: after it
                    return False
                if at.needs_resync:
                    self._resync = Stepper(at, resync_steps(at))
            if self._resync is not None:  # its own commands wait for the engine
                try:
                    finished = self._resync.advance()
                except Exception:  # the resync's AT timed out: the command's error
                    self._resync = None
                    raise
                if not finished:
                    return False
                self._resync = None
            _, cmd, prefix, timeout_ms, payload, lone_line = req
            at._begin(cmd, prefix, payload, 5000 if timeout_ms is None else timeout_ms,
                      lone_line)
            self._cmd = _SENT
            at.owner = self
        if self._cmd == _SENT and not self.answer():
            return False
        self._cmd = _IDLE
        failed = self._failed
        self._failed = None
        if failed is not None:
            raise failed
        self._result = self._reply
        self._reply = None
        return True

    def answer(self):
        """Take in what arrived for the command in flight: True once it is complete
        (``_ANSWERED``). The channel's engine is free again then."""
        at = self.at
        try:
            if not at._advance():
                return False
            self._reply = at.engine.finish()
        except Exception as e:  # CommandError, CommandTimeout, the UART's OSError
            self._failed = e
        at._interrupted()  # the engine idle again, also after a failure
        at.owner = None
        self._cmd = _ANSWERED
        return True

    def complete(self, sleep_ms):
        """Block until the command in flight is answered (``Channel.command`` calls this
        for the owner of the engine before sending its own)."""
        while self._cmd == _SENT and not self.answer():
            sleep_ms(self.at.poll_ms)
