"""The event loop of a virtual device on a paced pty (the virtual board and the virtual
modem share it).

One turn (``step``) watches the pty for the events pacing allows, sleeps until the first
of: I/O on a watched descriptor, a timer, pacing letting a burst move, or the owner's own
deadline; then runs what is due, in this order: I/O callbacks, calls queued from other
threads, timers, the host bytes pacing releases now (``take_input``), the owner's
``settle`` and finally the pty's output. The owner plugs in through three callables, so
the loop knows nothing of REPLs or AT commands.

Why sleep instead of select for short waits: epoll rounds its timeout up to whole
milliseconds, longer than one 16-byte burst at 115200 baud; a precise sleep followed by
a zero-timeout poll keeps a paced line at its rate.
"""

from __future__ import annotations

import collections
import heapq
import selectors
import time
from collections.abc import Callable

from .pty import PtyLink, Waker

PRECISE_WAIT_S = 0.002    # shorter waits are slept, not selected (see above)

Callback = Callable[[int], None]


class PacedLoop:
    """Selector, timers and a waker around one paced pty.

    ``take_input(chunk)`` gets the host bytes pacing releases; ``prepare()`` runs before
    each wait (re-watch the owner's descriptors) and returns the longest the loop may
    sleep (None: no limit of its own); ``settle()`` runs once the input is taken.
    """

    def __init__(self, pty: PtyLink, idle_wait_s: float, take_input: Callable[[bytes], None],
                 prepare: Callable[[], float | None] = lambda: None,
                 settle: Callable[[], None] = lambda: None):
        self.pty = pty
        self.idle_wait_s = idle_wait_s
        self._take_input = take_input
        self._prepare = prepare
        self._settle = settle
        self.sel: selectors.BaseSelector | None = selectors.DefaultSelector()
        self._waker = Waker()
        self._watched: dict[int, tuple[int, Callback]] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._calls: collections.deque[Callable[[], None]] = collections.deque()
        self._stop_requested = False
        self.watch(self._waker.fd, selectors.EVENT_READ, self._waker.drain)

    # -- what the owner schedules --------------------------------------------------------
    def watch(self, fileobj, events: int, callback: Callback | None) -> None:
        """Call ``callback(mask)`` when ``fileobj`` is ready for ``events`` (0: stop).

        A change always unregisters before it registers again: a descriptor number that
        was closed and reused (an engine replaced, a socket reopened) must reach the
        kernel anew, which a mere ``modify`` would not do."""
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        if fd < 0 or self.sel is None:
            return
        old = self._watched.get(fd)
        if old is not None and events and old == (events, callback):
            return
        if old is not None:
            self.sel.unregister(fd)
            del self._watched[fd]
        if events and callback is not None:
            self.sel.register(fd, events, callback)
            self._watched[fd] = (events, callback)

    def later(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the loop after ``delay_s``."""
        self._seq += 1
        heapq.heappush(self._timers, (time.monotonic() + delay_s, self._seq, fn))

    def cancel_timers(self) -> None:
        """Forget every timer (a device that powers off forgets what it was waiting for)."""
        self._timers.clear()

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the loop; safe from other threads and signal handlers."""
        self._calls.append(fn)
        self._waker.wake()

    # -- running -------------------------------------------------------------------------
    def _on_pty(self, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            self.pty.fill()
        if mask & selectors.EVENT_WRITE:
            self.pty.flush()

    def step(self, max_wait: float | None = None) -> None:
        """One turn: wait for I/O, a timer, pacing or the owner, then do what is due."""
        assert self.sel is not None, "the loop is closed"
        pty_events = (selectors.EVENT_READ if self.pty.wants_fill() else 0) | (
            selectors.EVENT_WRITE if self.pty.wants_flush() else 0)
        self.watch(self.pty.master, pty_events, self._on_pty)
        wait = min(self.idle_wait_s if max_wait is None else max_wait, self.pty.delay())
        owner_wait = self._prepare()
        if owner_wait is not None:
            wait = min(wait, owner_wait)
        if self._timers:
            wait = min(wait, self._timers[0][0] - time.monotonic())
        if wait < PRECISE_WAIT_S:
            time.sleep(max(0.0, wait))
            wait = 0.0
        for key, mask in self.sel.select(wait):
            if key.fd in self._watched:   # an earlier callback may have unwatched it
                key.data(mask)
        while self._calls:
            self._calls.popleft()()
        while self._timers and self._timers[0][0] <= time.monotonic():
            heapq.heappop(self._timers)[2]()
        while self.pty.has_input():
            chunk = self.pty.read()
            if not chunk:
                break
            self._take_input(chunk)
        self._settle()
        self.pty.flush()

    def serve(self) -> None:
        """Run the loop until ``request_stop()``; a stop asked for before the loop began
        (a thread not scheduled yet) holds too, so a loop is served once."""
        while not self._stop_requested:
            self.step()

    def request_stop(self) -> None:
        """Ask the loop to end; safe from signal handlers and other threads."""
        self._stop_requested = True
        self._waker.wake()

    @property
    def closed(self) -> bool:
        return self.sel is None

    def close(self) -> None:
        """Release the selector and the wake-up pipe (idempotent); the pty is the
        owner's to close (it may outlive the loop)."""
        if self.sel is None:
            return
        self.sel.close()
        self.sel = None
        self._watched.clear()
        self._waker.close()
