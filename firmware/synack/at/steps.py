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
return value; ``at.aio.run_async`` runs the same generator on the same Channel as an
asyncio coroutine whose waits go to the event loop. Requests are plain tuples.

    def bearer_steps(at):
        yield command(b"AT+NETOPEN")
        if not (yield wait_for(lambda: opened, 75000)):
            raise PDPError("no +NETOPEN")
    run(at, bearer_steps(at))                # blocking
    await run_async(at, bearer_steps(at))    # from a task
"""

from micropython import const

COMMAND = const(0)
WAIT = const(1)
PAUSE = const(2)


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
