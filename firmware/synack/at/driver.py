"""Thin I/O drivers that move bytes between a UART-like object and the AT engine.

A UART-like object has ``write(bytes)``, ``readinto(buf)`` and either ``any()``
(machine.UART) or ``in_waiting`` (pyserial). As on MicroPython, ``readinto`` may return
None (nothing there) or fewer bytes than asked, ``write`` None or a short count; bytes
come split at any point. Each round reads at most ``_CHUNK`` bytes and the wait between
empty rounds is ``poll_ms`` (1 ms): at 115200 baud (11.5 bytes/ms) the driver drains the
UART far faster than it fills, so a receive buffer that holds the largest reply (see
synack.link.modem_uart) never overruns while a command runs. A payload that failed the
parser's framing check (bytes lost) marks the channel for a resync, as a timeout does.

``Channel`` is the blocking driver; at/aio.py has the asyncio one. Both share ``_Pump``:
read what is available, feed the engine, write what the engine wants written. All
waiting is bounded by the command's timeout. Whatever interrupts a command (a timeout, a
UART error, Ctrl-C, a cancelled task), the driver aborts it so the engine is idle again
and marks the channel for a resync before the next command.
"""

import time

from micropython import const

from .engine import Engine
from .parser import Parser
from .steps import _never, resync_steps, run

_CHUNK = const(256)
_DISCARD_ROUNDS = const(64)  # chunks dropped at most before a resync's AT (16 KiB)


class _Pump:
    def __init__(self, uart, parser=None, engine=None):
        self.uart = uart
        self.engine = engine or Engine(parser or Parser())
        self._chunk = bytearray(_CHUNK)
        self._mv = memoryview(self._chunk)
        self._any = getattr(uart, "any", None)
        self.needs_resync = False  # pragma: no mutate -- None: only its truth is read
        self.owner = None  # the steps.Stepper whose command is in flight, if any
        self._framing = self.engine.parser.framing
        self.rx_bytes = 0
        self.tx_bytes = 0

    def _available(self):
        if self._any is not None:
            return self._any()
        return self.uart.in_waiting

    def pump(self):
        """One non-blocking round of I/O; returns the number of bytes received."""
        out = self.engine.take_output()  # pragma: no mutate -- the take after receive() has it
        if out is not None:
            self._write(out)  # pragma: no mutate -- reached only with output left over
        n = self._available()
        if not n:
            return 0
        if n > _CHUNK:  # pragma: no mutate -- >=: n is _CHUNK either way
            n = _CHUNK  # pragma: no mutate -- None: the slice is the whole chunk too
        got = self.uart.readinto(self._mv[:n])
        if not got:
            return 0
        self.rx_bytes += got
        self.engine.receive(self._mv[:got])
        out = self.engine.take_output()  # pragma: no mutate -- else the next pump's take has it
        if out is not None:
            self._write(out)
        return got

    def _write(self, data):
        mv = memoryview(data)
        while len(mv):
            n = self.uart.write(mv)
            if n is None:  # some UARTs return None when nothing could be queued
                n = 0
            self.tx_bytes += n
            mv = mv[n:]

    def _advance(self):
        """Pump until idle; True once the command in flight is done. Raises the
        CommandTimeout when it expires (checked even while bytes keep arriving)."""
        eng = self.engine
        while True:
            got = self.pump()
            if eng.done:
                framing = eng.parser.framing
                if framing != self._framing:
                    # a payload lost bytes (the parser caught it): what follows it may
                    # be its tail, not replies; re-pair before the next command
                    self._framing = framing
                    self.needs_resync = True
                return True
            if eng.expired():
                self.needs_resync = True
                raise eng.abort()
            if not got:
                return False

    def _begin(self, cmd, prefix, payload, timeout_ms, lone_line=False):
        out = self.engine.begin(cmd, prefix, payload, timeout_ms, lone_line=lone_line)
        written = False  # pragma: no mutate -- None: only its truth is read
        try:
            self._write(out)
            written = True
        finally:
            if not written:  # the UART failed (or Ctrl-C): do not leave the engine busy
                self._interrupted()

    def _interrupted(self):
        """After the command's wait ended: if it ended without the command being done
        (an exception is on its way out), abort it so that the engine is idle for the
        next command, which resyncs first."""
        eng = self.engine
        if eng.busy and not eng.done:
            eng.abort()
            self.needs_resync = True

    def _discard_input(self):
        # Bounded: a modem that never stops talking (or a UART whose any() says more
        # than readinto gives) cannot keep the resync here.
        for _ in range(_DISCARD_ROUNDS):
            n = self._available()
            if not n:
                return
            if not self.uart.readinto(self._mv[:min(n, _CHUNK)]):
                return


class Channel(_Pump):
    """Blocking AT channel: ``command()`` sends one command and waits for its reply."""

    def __init__(self, uart, parser=None, engine=None, poll_ms=1):
        super().__init__(uart, parser, engine)
        self.poll_ms = poll_ms

    def command(self, cmd, prefix=None, payload=None, timeout_ms=5000, lone_line=False):
        """Send ``cmd`` and return its Reply; raise CommandError / CommandTimeout.
        ``lone_line``: the command answers with one line and no final result code
        (see engine.Engine.begin). A Stepper's command in flight is answered first."""
        owner = self.owner
        if owner is not None:
            owner.complete(time.sleep_ms)
        if self.needs_resync:
            self.resync()
        self._begin(cmd, prefix, payload, timeout_ms, lone_line)
        try:
            while not self._advance():
                time.sleep_ms(self.poll_ms)
        finally:
            self._interrupted()
        return self.engine.finish()

    def wait_for(self, predicate, timeout_ms):
        """Process input (URCs) until ``predicate()`` is true; False on timeout.
        With a predicate that is never true this is a bounded idle poll."""
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while not predicate():
            if not self.pump():
                if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                    return predicate()
                time.sleep_ms(self.poll_ms)
            elif time.ticks_diff(time.ticks_ms(), deadline) > 0:
                return predicate()  # input that never stops ends the wait all the same
        return True

    def poll(self, timeout_ms=0):
        """Process incoming URCs for up to ``timeout_ms`` while no command runs."""
        self.wait_for(_never, timeout_ms)

    def resync(self):
        """Re-pair commands and replies after a timeout (steps.resync_steps)."""
        run(self, resync_steps(self))
