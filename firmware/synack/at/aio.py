"""asyncio driver for the AT engine (MicroPython ``asyncio`` and CPython ``asyncio``).

Same engine and pump as the blocking ``Channel``; waiting yields to other tasks instead
of sleeping. A lock keeps one command in flight when several tasks share the modem.

``run_async(channel, steps)`` runs an at/steps.py generator (a modem's bring-up) on the
*blocking* ``Channel`` a modem driver owns, as a coroutine: its commands are the
Channel's own (``_begin``, ``_advance``, ``finish``, the resync after a timeout) with
every wait an ``await``, so other tasks run while the modem takes seconds to answer.
"""

import asyncio
import time

from .driver import RESYNC_QUIET_MS, RESYNC_TIMEOUT_MS, _never, _Pump
from .steps import COMMAND, WAIT


class AsyncChannel(_Pump):
    def __init__(self, uart, parser=None, engine=None, poll_ms=2):
        super().__init__(uart, parser, engine)
        self.poll_s = poll_ms / 1000
        self.lock = asyncio.Lock()

    async def command(self, cmd, prefix=None, payload=None, timeout_ms=5000):
        """Send ``cmd`` and return its Reply; raise CommandError / CommandTimeout."""
        async with self.lock:
            if self.needs_resync:
                await self._resync()
            return await self._run(cmd, prefix, payload, timeout_ms)

    async def _run(self, cmd, prefix, payload, timeout_ms):
        self._begin(cmd, prefix, payload, timeout_ms)
        try:
            while not self._advance():
                await asyncio.sleep(self.poll_s)
        finally:
            self._interrupted()  # also when the task is cancelled mid-command
        return self.engine.finish()

    async def wait_for(self, predicate, timeout_ms):
        """Process input (URCs) until ``predicate()`` is true; False on timeout."""
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while not predicate():
            if not self.pump():
                if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                    return predicate()
                await asyncio.sleep(self.poll_s)
        return True

    async def _resync(self):
        # See Channel.resync: drain whatever trails the "AT" reply for a quiet period.
        self.needs_resync = False  # pragma: no mutate -- None: only its truth is read
        self._discard_input()
        self.engine.parser.reset()
        await self._run(b"AT", None, None, RESYNC_TIMEOUT_MS)
        await self.wait_for(_never, RESYNC_QUIET_MS)


if hasattr(asyncio, "sleep_ms"):
    _sleep_ms = asyncio.sleep_ms  # type: ignore[attr-defined]
else:
    def _sleep_ms(ms):
        return asyncio.sleep(ms / 1000)


async def run_async(at, steps):
    """``steps.run`` as a coroutine on the blocking Channel ``at``: the generator's
    return value, or the exception it does not catch. While a request waits, the event
    loop runs other tasks (which must not send commands on ``at`` meanwhile: a command
    of theirs finds the engine busy)."""
    result = None
    error = None
    while True:
        try:
            req = steps.send(result) if error is None else steps.throw(error)
        except StopIteration as e:
            return e.value
        error = None
        try:
            result = await _execute(at, req)
        except Exception as e:  # thrown into the generator: its try/except decides
            result = None
            error = e


async def _execute(at, req):
    kind = req[0]
    if kind == COMMAND:
        _, cmd, prefix, timeout_ms, payload, lone_line = req
        return await _command(at, cmd, prefix, payload,
                              5000 if timeout_ms is None else timeout_ms, lone_line)
    if kind == WAIT:
        predicate = req[1]
        done = await _wait_for(at, _never if predicate is None else predicate, req[2])
        return None if predicate is None else done
    await _sleep_ms(req[1])
    return None


async def _command(at, cmd, prefix, payload, timeout_ms, lone_line):
    # Channel.command with awaits for its sleeps
    while at.engine.busy:  # another coroutine's command on this channel: after it
        await _sleep_ms(at.poll_ms)
    if at.needs_resync:
        await _resync(at)
    at._begin(cmd, prefix, payload, timeout_ms, lone_line)
    try:
        while not at._advance():
            await _sleep_ms(at.poll_ms)
    finally:
        at._interrupted()  # also when the task is cancelled mid-command
    return at.engine.finish()


async def _wait_for(at, predicate, timeout_ms):
    # Channel.wait_for with awaits for its sleeps
    deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
    while not predicate():
        if not at.pump():
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                return predicate()
            await _sleep_ms(at.poll_ms)
    return True


async def _resync(at):
    # Channel.resync with awaits for its sleeps
    at.needs_resync = False  # pragma: no mutate -- None: only its truth is read
    at._discard_input()
    at.engine.parser.reset()
    await _command(at, b"AT", None, None, RESYNC_TIMEOUT_MS, False)
    deadline = time.ticks_add(time.ticks_ms(), RESYNC_TIMEOUT_MS)
    quiet_since = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), quiet_since) < RESYNC_QUIET_MS:
        if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
            return
        if at.pump():
            quiet_since = time.ticks_ms()
        else:
            await _sleep_ms(at.poll_ms)
