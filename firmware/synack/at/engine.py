"""AT command engine, sans-I/O: one command in flight, URCs dispatched as they arrive.

The engine sits on the parser and knows what the command in flight is waiting for. It
produces the bytes to write (``begin()`` and, after a ``>`` prompt, ``take_output()``)
and consumes received bytes (``receive()``); a driver (at/driver.py) moves the bytes
between it and a UART. Nothing here blocks or sleeps, so the same engine runs under the
blocking driver, under asyncio, and in tests fed one byte at a time.

Rules:
- A URC is handed to its handler the moment it is parsed, also in the middle of a
  command's reply; it never becomes part of that reply. Handlers must only record
  state (set a flag, fire a TCP event): they run inside ``receive()``. A handler that
  raises (a garbled URC it cannot parse) is contained: the URC is counted in
  ``malformed`` and kept as ``last_malformed``; the command in flight is unaffected.
- ``receive()`` never raises, and ``abort()`` always returns the engine to idle.
- Echo (``AT+CSQ`` coming back while echo is on) is dropped.
- A reply line without the command's expected prefix is counted as unexpected and
  dropped, so line noise cannot be mistaken for an answer.
- A final result or payload when no command is in flight (a late reply to a command
  that already timed out) is counted and dropped.
- A command keeps at most ``_MAX_LINES`` reply lines; more are counted (``overflow``,
  and ``Reply.dropped`` / the CommandError's text) and dropped, so a modem that
  streams lines cannot exhaust the heap.
- A length-framed line registered with ``on_framed_urc`` goes with its payload to its
  handler, before or after the final result of the command in flight: SIMCom's
  ``AT+CCHRECV`` answers ``OK`` first, then ``+CCHRECV: DATA,<s>,<n>`` and n bytes.
- A command begun with ``lone_line=True`` answers with one information line and no
  final result code (SIM800 ``AT+CIFSR`` prints the address only): its first reply line
  completes it as an ``OK`` would; ``ERROR`` still fails it.
- ``payload_delay_ms``: a payload goes out that long after its prompt (u-blox asks 50 ms
  after ``@``); a final result code that comes first cancels it.
"""

import time

from micropython import const

from .errors import CommandError, CommandTimeout
from .parser import FINAL, LINE, NOISE, PAYLOAD, PROMPT, URC

_IDLE = const(0)
_WAIT_PROMPT = const(1)   # command sent, payload waiting for the ">" prompt
_WAIT_FINAL = const(2)    # waiting for the final result code
_DONE = const(3)          # final result received, not yet collected by finish()
_MAX_LINES = const(16)    # reply lines kept per command
_MAX_OTHER = const(4)     # unprefixed lines kept per command (error context)


class Reply:
    """What a command returned: its information lines and an optional payload."""

    __slots__ = ("lines", "payload", "dropped")

    def __init__(self, lines, payload, dropped=0):
        self.lines = lines
        self.payload = payload
        self.dropped = dropped  # reply lines beyond _MAX_LINES, not kept

    def line(self, prefix):
        """The first line starting with ``prefix`` (bytes), or None."""
        for ln in self.lines:
            if ln.startswith(prefix):
                return ln
        return None


class Engine:
    def __init__(self, parser, success=(b"OK",), payload_delay_ms=0):
        self.parser = parser
        self.success = success
        # how long the payload waits after its prompt (u-blox: 50 ms after "@")
        self.payload_delay_ms = payload_delay_ms
        self._prompt_at = 0  # pragma: no mutate -- set when the prompt arrives
        self._handlers = []
        self._framed = []  # [(prefix, handler)]: length-framed URCs (on_framed_urc)
        self._framed_urc = None  # (handler, line) whose payload is still to come
        self._state = _IDLE
        self.command = None
        self._prefix = None  # pragma: no mutate -- begin() sets it before any read
        self._payload_out = None
        self._lines = []  # pragma: no mutate -- begin() sets it before any read
        self._payload_in = None  # pragma: no mutate -- begin() sets it before any read
        self._result = None  # pragma: no mutate -- begin() sets it before any read
        self._other = []  # pragma: no mutate -- begin() sets it; unprefixed lines (error context)
        self._dropped = 0  # pragma: no mutate -- begin() sets it; lines beyond _MAX_LINES
        self._deadline = 0  # pragma: no mutate -- begin() sets it before any read
        self._timeout_ms = 0
        self._lone = False  # the command in flight ends with its first reply line
        # Diagnostics counters.
        self.noise = 0
        self.unexpected = 0
        self.urcs = 0
        self.malformed = 0         # URCs whose handler raised (garbled URC)
        self.last_malformed = None  # the last such URC line, for diagnostics
        self.overflow = 0          # reply lines dropped beyond _MAX_LINES

    # -- URC handlers ----------------------------------------------------------
    def on_urc(self, prefix, handler, first=False):
        """Call ``handler(line)`` for every URC line that starts with ``prefix``. The
        first matching prefix wins: ``first=True`` puts this one ahead of those
        registered so far (a dialect's catch-all, such as ``b"+C"``, comes last)."""
        if first:
            self._handlers.insert(0, (prefix, handler))
        else:
            self._handlers.append((prefix, handler))

    def on_framed_urc(self, prefix, handler):
        """Call ``handler(line, payload)`` for a length-framed line starting with
        ``prefix`` (the parser's ``framed`` table must announce it) once its payload has
        arrived, whether a command is in flight or not. ``payload`` is None when the
        parser found it damaged (bytes lost on the UART: see the parser's trailer).
        Exceptions of the handler are contained as for ``on_urc``."""
        self._framed.append((prefix, handler))

    def _framed_call(self, handler, line, payload):
        self.urcs += 1
        try:
            handler(line, payload)
        except Exception:  # a garbled header must not wedge the engine
            self.malformed += 1
            self.last_malformed = line

    def _dispatch(self, line):
        self.urcs += 1
        for prefix, handler in self._handlers:
            if line.startswith(prefix):
                try:
                    handler(line)
                except Exception:  # a garbled URC must not wedge the engine
                    self.malformed += 1
                    self.last_malformed = line
                return
        self.unexpected += 1

    # -- command lifecycle -----------------------------------------------------
    @property
    def busy(self):
        return self._state != _IDLE

    def begin(self, command, prefix=None, payload=None, timeout_ms=5000, now=None,
              lone_line=False):
        """Start ``command`` (bytes, without CR); returns the bytes to write.

        ``prefix``: the information-line prefix this command answers with (b"+CSQ:").
        ``payload``: raw bytes to send after the ``>`` prompt (AT+CIPSEND).
        ``lone_line``: the first reply line (with ``prefix``) is the whole answer; no
        final result code follows it (SIM800 AT+CIFSR).
        """
        if self._state != _IDLE:
            raise RuntimeError("AT command in flight: " + (self.command or b"").decode())
        self.command = command
        self._prefix = prefix
        self._payload_out = payload
        self._lines = []
        self._other = []
        self._dropped = 0
        self._payload_in = None
        self._result = None  # pragma: no mutate -- read only once a final result set it
        self._timeout_ms = timeout_ms
        self._lone = lone_line
        self._framed_urc = None  # a payload cut short before this command is forgotten
        self._deadline = time.ticks_add(time.ticks_ms() if now is None else now, timeout_ms)
        self.parser.response_prefix = prefix
        self._state = _WAIT_PROMPT if payload is not None else _WAIT_FINAL
        return command + b"\r"

    def receive(self, data):
        """Feed received bytes and process every complete event.
        Returns the number of bytes taken (all of them unless the parser is full
        of an incomplete payload, which cannot happen with reads ≤ max_payload)."""
        taken = 0
        while taken < len(data):  # pragma: no mutate -- <=: feeds b"", takes 0, stops
            n = self.parser.feed(data[taken:] if taken else data)
            taken += n
            self._drain()
            if n == 0:  # cannot happen with reads <= max_payload; never drop silently
                self.noise += len(data) - taken  # pragma: no mutate -- unreachable (n > 0)
                break  # pragma: no mutate -- unreachable (break or return: same result)
        return taken

    def _drain(self):
        parser = self.parser
        while True:
            ev = parser.next_event()
            if ev is None:
                return
            kind, value = ev
            if kind == URC:
                self._dispatch(value)
            elif kind == LINE:
                self._on_line(value)
            elif kind == FINAL:
                if self._state == _WAIT_FINAL or self._state == _WAIT_PROMPT:
                    self._payload_out = None  # not sent yet (no prompt, or its delay): never
                    self._result = value
                    self._state = _DONE
                    parser.response_prefix = None
                else:
                    self.unexpected += 1
            elif kind == PROMPT:
                if self._state == _WAIT_PROMPT:
                    self._state = _WAIT_FINAL
                    self._prompt_at = time.ticks_ms()
                else:
                    self.unexpected += 1
            elif kind == PAYLOAD:
                pending = self._framed_urc
                if pending is not None:
                    self._framed_urc = None
                    self._framed_call(pending[0], pending[1], value)
                elif self._state == _WAIT_FINAL:
                    self._payload_in = value
                else:
                    self.unexpected += 1
            elif kind == NOISE:
                self.noise += len(value)
                pending = self._framed_urc
                if pending is not None:  # its payload failed the framing check
                    self._framed_urc = None
                    self._framed_call(pending[0], pending[1], None)

    def _on_line(self, line):
        for prefix, handler in self._framed:
            if line.startswith(prefix):
                if self.parser.in_payload():
                    self._framed_urc = (handler, line)  # the payload comes next
                else:
                    self._framed_call(handler, line, b"")  # announced 0 bytes
                return
        if self._state == _IDLE or self._state == _DONE:
            # Not an answer to anything: boot banners, echo of a timed-out command.
            self.unexpected += 1
            return
        if line == self.command or line[:2] in (b"AT", b"at"):
            return  # echo
        if self._prefix is None or line.startswith(self._prefix):
            if len(self._lines) < _MAX_LINES:
                self._lines.append(line)
            else:
                self._dropped += 1
                self.overflow += 1
            if self._lone and self._state == _WAIT_FINAL:  # the line is the answer
                self._result = self.success[0]
                self._state = _DONE
                self.parser.response_prefix = None
        else:
            # e.g. "+IP ERROR: No data" before ERROR: kept (bounded) to explain errors.
            self.unexpected += 1
            if len(self._other) < _MAX_OTHER:
                self._other.append(line)

    def take_output(self):
        """Bytes the driver must write now (the payload, once the prompt arrived)."""
        if self._payload_out is not None and self._state != _WAIT_PROMPT:
            if (self.payload_delay_ms and time.ticks_diff(time.ticks_ms(), self._prompt_at)
                    < self.payload_delay_ms):
                return None  # the modem wants a pause after its prompt
            out = self._payload_out
            self._payload_out = None
            return out
        return None

    @property
    def done(self):
        return self._state == _DONE

    def expired(self, now=None):
        if self._state in (_IDLE, _DONE):
            return False
        now = time.ticks_ms() if now is None else now
        return time.ticks_diff(now, self._deadline) >= 0

    def finish(self):
        """Collect the reply of a finished command, or raise CommandError."""
        if self._state != _DONE:
            raise RuntimeError("AT command not finished")
        result = self._result
        reply = Reply(self._lines, self._payload_in, self._dropped)
        other = self._other
        command = self.command
        self._reset_command()
        if result in self.success:
            return reply
        raise CommandError(command, result, reply.lines + other, reply.dropped)

    def abort(self):
        """Give up on the command in flight: forget partial input; returns the
        CommandTimeout to raise. The next command should re-sync (see driver)."""
        detail = ""
        if self.parser.in_payload():
            detail = "payload cut short, %d bytes buffered" % self.parser.buffered()
        elif self._state == _WAIT_PROMPT:
            detail = "no '>' prompt"
        err = CommandTimeout(self.command or b"", self._timeout_ms, detail)
        self._framed_urc = None
        self.parser.reset()
        self._reset_command()
        return err

    def _reset_command(self):
        self._state = _IDLE
        self._lone = False
        self.command = None
        self._prefix = None  # pragma: no mutate -- begin() sets it before any read
        self._payload_out = None
        self._lines = []  # pragma: no mutate -- begin() sets it before any read
        self._other = []  # pragma: no mutate -- begin() sets it before any read
        self._dropped = 0  # pragma: no mutate -- begin() sets it before any read
        self._payload_in = None  # pragma: no mutate -- begin() sets it before any read
        self._result = None  # pragma: no mutate -- begin() sets it before any read
        self.parser.response_prefix = None
