"""The V.250 front end every virtual-modem dialect shares.

``Modem`` owns a paced pty (``pty.PtyLink``) served by a ``loop.PacedLoop`` (which also
serves the dialect's TCP sockets and timers), and the command line: assembly with
character echo, a data mode for payloads whose prompt the dialect chooses (``> `` on most,
``@`` on u-blox), verbose result codes, CME error modes, URC queueing, the front-end
faults (canned replies, late answers, CME errors, lost OKs) and the control socket. A
dialect fills ``commands``::

    commands = {"+CSQ": Command(run=csq), "+CMEE": Command(set=..., read=..., test=...)}

Handlers are plain functions ``fn(modem, args)``; ``args`` is the parsed ``=a,"b",c``
list (quotes removed). A handler raises ``ArgError`` for bad parameters, which the front
end answers with CME error 50 in the current CMEE mode.

Why URCs are queued: a URC written while the host is mid-way through typing a command
(echo on), or while a payload is being collected, would land inside a line or a payload.
Real drivers must survive URCs *between* lines (see reference/at-dialects.md), so the
rig emits them exactly there and nowhere else.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

from ..control import ControlServer, Fault
from ..loop import PacedLoop
from ..pty import PtyLink, serve_until_signalled
from .commands import ArgError, CannedReply, Command, escape, int_arg, split_command
from .faults import Armed

CR, LF, BS, DEL = 13, 10, 8, 127
MAX_LINE = 1024           # longer command lines are answered with ERROR
BOOT_DELAY_S = 0.1        # power-up URCs come this long after power-on
IDLE_WAIT_S = 0.25        # longest sleep of the loop when nothing is scheduled
HOLD_URCS_S = 1.0         # longest a half-typed, echoed command line holds URCs back
URC_RECHECK_S = 0.05      # a held URC may become releasable by time alone
OUT_LIMIT = 64 * 1024     # bytes queued toward a host that does not read; beyond: overrun

CME_TEXT = {3: "operation not allowed", 4: "operation not supported",
            10: "SIM not inserted", 11: "SIM PIN required", 16: "incorrect password",
            50: "Incorrect parameters", 100: "unknown"}


def _echo(modem: Modem, args: list[str]) -> None:
    if args not in ([], ["0"], ["1"]):
        return modem.reply("ERROR")
    modem.echo = args == ["1"]
    modem.ok()


def _cmee_set(modem: Modem, args: list[str]) -> None:
    modem.cmee = int_arg(args, 0, 0, 2)
    modem.ok()


def _cmee_read(modem: Modem, args: list[str]) -> None:
    modem.reply(f"+CMEE: {modem.cmee}")
    modem.ok()


def _cmee_test(modem: Modem, args: list[str]) -> None:
    modem.reply("+CMEE: (0-2)")
    modem.ok()


# V.250 commands of the front end itself (every dialect has them).
FRONTEND_COMMANDS = {
    "E": Command(run=_echo),
    "+CMEE": Command(set=_cmee_set, read=_cmee_read, test=_cmee_test),
}


class Modem:
    """Generic AT front end on a pty. Subclasses extend ``commands`` and the
    ``reset_state``, ``boot_urcs`` and ``network_lost`` hooks (each calling super)."""

    commands: dict[str, Command] = FRONTEND_COMMANDS
    fault_table: dict[str, Fault] = {}      # what --control accepts (faults.py)
    payload_prompt = b"\r\n> "              # what asks for a payload (expect_payload)

    def __init__(self, baud: int | None = None, faults: tuple[str, ...] = (),
                 link_path: str | None = None, trace: Callable[[str], None] | None = None,
                 control_path: str | None = None):
        self.faults = [CannedReply(f) for f in faults]
        self.armed = Armed()
        self.trace = trace
        self.pty = PtyLink(baud, link_path, out_limit=OUT_LIMIT)
        self._overrunning = False   # an overrun is being reported (trace once per episode)
        self.loop = PacedLoop(self.pty, IDLE_WAIT_S, take_input=self._feed,
                              prepare=self._wait_limit, settle=self._release_urcs)
        self._urcs: list[bytes] = []
        self._line = bytearray()
        self._line_at = 0.0
        self._data_need = 0
        self._data = bytearray()
        self._data_done: Callable[[bytes], None] | None = None
        self._thread: threading.Thread | None = None
        try:
            self.control = ControlServer(self, control_path) if control_path else None
        except BaseException:
            self.loop.close()    # nothing started yet: release the pty (and its --link)
            self.pty.close()
            raise
        self.power_on()

    @property
    def port(self) -> str:
        """The pty path to open like a serial port."""
        return self.pty.path

    # -- hooks of the layers above -------------------------------------------------------
    def reset_state(self) -> None:
        """Forget everything a power cycle forgets (links, bearer ...)."""

    def boot_urcs(self) -> list[str]:
        """What the modem says once it has booted (e.g. RDY)."""
        return []

    def network_lost(self) -> None:
        """Simulated loss of the bearer (SIGUSR1 in the CLI)."""

    def status(self) -> dict:
        """What the ``status`` fault request reports; the layers above add their state."""
        return {"booted": self.booted, "echo": self.echo, "cmee": self.cmee,
                "tx_queued": self.pty.pending_out, "overrun": self.pty.overrun,
                "pending": self.pending_faults()}

    def pending_faults(self) -> dict[str, int]:
        """Armed faults not yet carried out, by fault name (dialects add theirs)."""
        return self.armed.pending()

    def heal(self) -> None:
        """Forget the faults still pending (the layers above add theirs)."""
        self.armed.clear()

    def inject(self, data: bytes) -> None:
        """Raw bytes for the host at the next line boundary, like a URC (line noise)."""
        self._urcs.append(bytes(data))
        self._release_urcs()

    # -- power -------------------------------------------------------------------------
    def power_on(self) -> None:
        """(Re)start: echo on, CMEE 0, nothing pending; deaf until the boot URCs."""
        self.echo = True
        self.cmee = 0
        self.booted = False
        self.loop.cancel_timers()
        self._urcs.clear()
        self._line.clear()
        self._data_need = 0
        self._data_done = None
        self.reset_state()
        self.later(BOOT_DELAY_S, self._boot)

    def _boot(self) -> None:
        self.pty.clear_input()   # what the host sent while we were deaf is lost
        self.booted = True
        self.urc(*self.boot_urcs())

    # -- output ------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Queue bytes for the host as they are (prompts, payloads)."""
        if self.trace:
            self.trace("<- " + escape(data))
        self._tx(data)

    def _tx(self, data: bytes) -> None:
        """Into the output queue; a host that does not read loses what does not fit."""
        if self.pty.write(data):
            if self.trace and not self._overrunning:
                self.trace(f"!! output overrun: the host is not reading; bytes beyond "
                           f"{OUT_LIMIT} queued are dropped ({self.pty.overrun} so far)")
            self._overrunning = True
        elif self._overrunning and not self.pty.pending_out:
            self._overrunning = False

    def reply(self, *lines: str) -> None:
        """Information lines or a final result: ``\\r\\n<line>\\r\\n`` each."""
        self.send(b"".join(b"\r\n" + ln.encode("latin-1") + b"\r\n" for ln in lines))

    def ok(self) -> None:
        """The final OK, unless the lose-ok fault swallows it (information lines, a
        payload and URCs still come)."""
        if self.armed.take("oks_to_lose"):
            if self.trace:
                self.trace("<- (OK lost: lose-ok fault)")
            return
        self.reply("OK")

    def error(self, cme: int | None = None) -> None:
        """``ERROR``, or ``+CME ERROR: <n|text>`` when CMEE is 1 or 2 and a code is given."""
        if cme is None or self.cmee == 0:
            self.reply("ERROR")
        elif self.cmee == 1:
            self.reply(f"+CME ERROR: {cme}")
        else:
            self.reply(f"+CME ERROR: {CME_TEXT.get(cme, cme)}")

    def urc(self, *lines: str) -> None:
        """Unsolicited result codes: written at the next line boundary of the output."""
        self._urcs.extend(b"\r\n" + ln.encode("latin-1") + b"\r\n" for ln in lines)
        self._release_urcs()

    def _at_boundary(self) -> bool:
        if not self.booted or self._data_need:
            return False
        typing = self.echo and self._line
        return not typing or time.monotonic() - self._line_at > HOLD_URCS_S

    def _release_urcs(self) -> None:
        if self._urcs and self._at_boundary():
            urcs, self._urcs = self._urcs, []
            self.send(b"".join(urcs))

    def expect_data(self, n: int, done: Callable[[bytes], None]) -> None:
        """Data mode: the next ``n`` raw bytes (not echoed, any value) go to ``done``."""
        self._data_need = n
        self._data = bytearray()
        self._data_done = done

    def expect_payload(self, n: int, done: Callable[[bytes], None]) -> None:
        """The dialect's prompt, then data mode for ``n`` bytes."""
        self.send(self.payload_prompt)
        self.expect_data(n, done)

    # -- scheduling (the loop's) ----------------------------------------------------------
    def later(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the loop after ``delay_s`` (forgotten at a power cycle)."""
        self.loop.later(delay_s, fn)

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the loop; safe from other threads and signal handlers."""
        self.loop.call_soon(fn)

    def watch(self, fileobj, events: int, callback: Callable[[int], None] | None) -> None:
        """Call ``callback(mask)`` when ``fileobj`` is ready for ``events`` (0: stop)."""
        self.loop.watch(fileobj, events, callback)

    def _wait_limit(self) -> float | None:
        return URC_RECHECK_S if self._urcs else None

    # -- input -------------------------------------------------------------------------
    def _feed(self, chunk: bytes) -> None:
        i = 0
        while i < len(chunk) and self.booted:
            if self._data_need:
                take = chunk[i:i + self._data_need]
                i += len(take)
                self._data += take
                self._data_need -= len(take)
                if not self._data_need and self._data_done:
                    done, self._data_done = self._data_done, None
                    if self.trace:
                        self.trace("-> " + escape(self._data))
                    done(bytes(self._data))
                continue
            b = chunk[i]
            i += 1
            if b == CR:
                # An LF the host sent together with the CR ends the line too; one that
                # comes later is an empty line, or payload if a prompt came first.
                nxt = chunk[i] if i < len(chunk) else self.pty.peek()
                if nxt == LF:
                    if i < len(chunk):
                        i += 1
                    else:
                        self.pty.discard(1)
                if self.echo:
                    self._tx(b"\r\n" if nxt == LF else b"\r")
                line, self._line = bytes(self._line), bytearray()
                if line.strip():
                    self._command(line)
                continue
            if self.echo:
                self._tx(bytes([b]))
            if b in (BS, DEL):
                del self._line[-1:]
            elif b != LF and len(self._line) <= MAX_LINE:
                self._line.append(b)
            self._line_at = time.monotonic()

    def _command(self, raw: bytes) -> None:
        if self.trace:
            self.trace("-> " + escape(raw + b"\r"))
        text = raw.decode("latin-1").strip()
        start = text.upper().find("AT")
        if start < 0:
            return   # V.250: characters before "AT" are ignored; no AT, no answer
        text = text[start:]
        upper = text.upper()
        for fault in self.faults:
            if fault.count > 0 and upper.startswith(fault.prefix):
                fault.count -= 1
                if fault.response != "SILENT":
                    self.reply(fault.response)
                return
        if len(raw) > MAX_LINE:
            return self.reply("ERROR")
        if self.armed.take("delay_count"):
            return self.later(self.armed.delay_s, lambda: self._execute(text))
        self._execute(text)

    def _execute(self, text: str) -> None:
        code = self.armed.cme_for(text.upper())
        if code is not None:      # the cme-error fault: not executed
            return self.error(code)
        body = text[2:]
        if not body:
            return self.ok()
        try:
            name, form, args = split_command(body)
            handler = getattr(self.commands.get(name), form, None)
            if handler is None:
                return self.reply("ERROR")
            handler(self, args)
        except ArgError:
            self.error(50)

    # -- running -----------------------------------------------------------------------
    def step(self, max_wait: float = IDLE_WAIT_S) -> None:
        """One turn of the loop: wait for I/O or a timer, then do what is due."""
        self.loop.step(max_wait)

    def serve(self) -> None:
        """Run the loop until ``request_stop()`` (from another thread or a signal)."""
        self.loop.serve()

    def request_stop(self) -> None:
        """Ask the loop to end; safe from signal handlers and other threads."""
        self.loop.request_stop()

    def start(self) -> Modem:
        """Serve in a background thread (for tests that run the modem in-process)."""
        self._thread = threading.Thread(target=self.serve, name="virtual-modem", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        """End the loop, join its thread (bounded) and release every resource."""
        self.request_stop()
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.close()

    def run_until_signalled(self) -> None:
        """Serve in the main thread until SIGTERM or SIGINT; SIGUSR1 = network lost."""
        serve_until_signalled(self.serve, self.request_stop, self.close,
                              {signal.SIGUSR1: lambda: self.call_soon(self.network_lost)})

    def close(self) -> None:
        """Release the sockets, the pty, the selector and the wake-up pipe (idempotent)."""
        if self.loop.closed:
            return
        self.reset_state()
        if self.control:
            self.control.close()
        self.loop.close()
        self.pty.close()
