"""asyncio driver for the AT engine (MicroPython ``asyncio`` and CPython ``asyncio``).

Same engine and pump as the blocking ``Channel``; waiting yields to other tasks instead
of sleeping. A lock keeps one command in flight when several tasks share the modem.
"""

import asyncio
import time

from .driver import _RESYNC_QUIET_MS, _RESYNC_TIMEOUT_MS, _never, _Pump


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
        await self._run(b"AT", None, None, _RESYNC_TIMEOUT_MS)
        await self.wait_for(_never, _RESYNC_QUIET_MS)
