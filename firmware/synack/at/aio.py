"""asyncio driver for the AT engine (MicroPython ``asyncio`` and CPython ``asyncio``).

``run_async(channel, steps)`` runs an at/steps.py generator (a modem's bring-up, a
bearer reopen, a reset) as a coroutine on the *blocking* ``Channel`` a modem driver
owns: a ``steps.Stepper`` advanced between awaits, so other tasks run while the modem
takes seconds to answer. ``AsyncChannel`` is a channel whose own ``command`` and
``wait_for`` are coroutines (the same Stepper underneath); a lock keeps one command in
flight when several tasks share it.
"""

import asyncio

from .driver import _Pump
from .steps import Stepper, command, wait_for


if hasattr(asyncio, "sleep_ms"):
    _sleep_ms = asyncio.sleep_ms  # type: ignore[attr-defined]
else:
    def _sleep_ms(ms):
        return asyncio.sleep(ms / 1000)


async def run_async(at, steps):
    """``steps.run`` as a coroutine on the channel ``at``: the generator's return value,
    or the exception it does not catch. A task cancelled meanwhile aborts the command in
    flight (the channel resyncs before its next one)."""
    stepper = Stepper(at, steps)
    try:
        while not stepper.advance():
            await _sleep_ms(at.poll_ms)
    finally:
        if not stepper.done:
            stepper.cancel()
    return stepper.value


def _one(cmd, prefix, payload, timeout_ms):
    return (yield command(cmd, prefix, timeout_ms, payload))


def _until(predicate, timeout_ms):
    return (yield wait_for(predicate, timeout_ms))


class AsyncChannel(_Pump):
    def __init__(self, uart, parser=None, engine=None, poll_ms=2):
        super().__init__(uart, parser, engine)
        self.poll_ms = poll_ms
        self.lock = asyncio.Lock()

    @property
    def poll_s(self):
        return self.poll_ms / 1000

    async def command(self, cmd, prefix=None, payload=None, timeout_ms=5000):
        """Send ``cmd`` and return its Reply; raise CommandError / CommandTimeout."""
        async with self.lock:
            return await run_async(self, _one(cmd, prefix, payload, timeout_ms))

    async def wait_for(self, predicate, timeout_ms):
        """Process input (URCs) until ``predicate()`` is true; False on timeout."""
        return await run_async(self, _until(predicate, timeout_ms))
