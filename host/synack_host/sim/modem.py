"""Virtual-modem machinery shared by every AT dialect.

``Modem`` owns a paced pty (``pty.PtyLink``), a selector loop that also serves the
dialect's TCP sockets, a timer heap for delayed result codes, and the V.250 front end:
command-line assembly with character echo, ``>`` data mode, verbose result codes, CME
error modes and fault injection. A dialect subclasses it and fills ``commands``::

    commands = {"+CSQ": Command(run=csq), "+CMEE": Command(set=..., read=..., test=...)}

Handlers are plain functions ``fn(modem, args)``; ``args`` is the parsed ``=a,"b",c``
list (quotes removed). A handler raises ``ArgError`` for bad parameters, which the front
end answers with CME error 50 in the current CMEE mode.

Why URCs are queued: a URC written while the host is mid-way through typing a command
(echo on), or while a ``> `` payload is being collected, would land inside a line or a
payload. Real drivers must survive URCs *between* lines (see reference/at-dialects.md),
so the rig emits them exactly there and nowhere else.
"""

from __future__ import annotations

import calendar
import collections
import heapq
import re
import selectors
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .faults import FAULTS, ControlServer, Fault
from .pty import PtyLink, Waker, serve_until_signalled

CR, LF, BS, DEL = 13, 10, 8, 127
MAX_LINE = 1024           # longer command lines are answered with ERROR
BOOT_DELAY_S = 0.1        # power-up URCs come this long after power-on
IDLE_WAIT_S = 0.25        # longest sleep of the loop when nothing is scheduled
PRECISE_WAIT_S = 0.002    # shorter waits are slept, not selected (see step)
HOLD_URCS_S = 1.0         # longest a half-typed, echoed command line holds URCs back
OUT_LIMIT = 64 * 1024     # bytes queued toward a host that does not read; beyond: overrun

CME_TEXT = {3: "operation not allowed", 4: "operation not supported",
            10: "SIM not inserted", 11: "SIM PIN required", 16: "incorrect password",
            50: "Incorrect parameters", 100: "unknown"}

Handler = Callable[["Modem", list], None]


class ArgError(ValueError):
    """Bad command parameters: answered as CME error 50 (per the CMEE mode)."""


@dataclass(frozen=True)
class Command:
    """The four forms of one AT command; a missing form is answered with ERROR."""
    set: Handler | None = None    # AT+X=<args>
    read: Handler | None = None   # AT+X?
    test: Handler | None = None   # AT+X=?
    run: Handler | None = None    # AT+X  (basic commands: ATE1 -> run, args ["1"])


def parse_args(text: str) -> list[str]:
    """``0,"TCP","a,b",80`` -> ['0', 'TCP', 'a,b', '80']; an open quote is an ArgError."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if quoted:
        raise ArgError("unterminated string")
    out.append("".join(cur).strip())
    return out


def int_arg(args: list[str], i: int, lo: int, hi: int) -> int:
    """``args[i]`` as an int in lo..hi, else ArgError."""
    try:
        value = int(args[i])
    except (IndexError, ValueError):
        raise ArgError(f"parameter {i + 1} missing or not a number") from None
    if not lo <= value <= hi:
        raise ArgError(f"parameter {i + 1} outside {lo}..{hi}")
    return value


def split_command(body: str) -> tuple[str, str, list[str]]:
    """The text after ``AT`` -> (NAME, form, args); form is set/read/test/run.

    ``+CIPOPEN=0,"TCP"`` -> ('+CIPOPEN', 'set', ['0', 'TCP']); ``E0`` -> ('E', 'run', ['0']).
    """
    if body[:1].isalpha():                       # basic syntax: one letter + number
        return body[0].upper(), "run", [body[1:]] if body[1:] else []
    for i, ch in enumerate(body):
        if ch in "=?":
            name, rest = body[:i].upper(), body[i:]
            if rest == "?":
                return name, "read", []
            if rest == "=?":
                return name, "test", []
            if rest.startswith("="):
                return name, "set", parse_args(rest[1:])
            raise ArgError("unexpected text after '?'")
    return body.upper(), "run", []


class CannedReply:
    """``PREFIX|RESPONSE[|COUNT]``: the next COUNT commands starting with PREFIX are not
    executed; RESPONSE is the final line (``SILENT``: no answer at all)."""

    def __init__(self, spec: str):
        parts = spec.split("|")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ValueError(f"bad --fault {spec!r}: expected PREFIX|RESPONSE[|COUNT]")
        self.prefix = parts[0].upper()
        self.response = parts[1]
        try:
            self.count = int(parts[2]) if len(parts) == 3 else 1
        except ValueError:
            raise ValueError(f"bad --fault {spec!r}: COUNT must be a number") from None


def escape(data: bytes) -> str:
    return repr(bytes(data))[2:-1]


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


CCLK_FORMAT = re.compile(r"(\d\d)/(\d\d)/(\d\d),(\d\d):(\d\d):(\d\d)([+-])(\d\d)$")


def cclk_text(unix_seconds: float, zone_quarters: int) -> str:
    """27.007 ``yy/MM/dd,hh:mm:ss±zz``: local time at ``zone_quarters`` quarter hours
    from UTC."""
    t = time.gmtime(int(unix_seconds) + zone_quarters * 900)
    sign = "-" if zone_quarters < 0 else "+"
    return (f"{t.tm_year % 100:02d}/{t.tm_mon:02d}/{t.tm_mday:02d},"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}{sign}{abs(zone_quarters):02d}")


def _cclk_read(modem: Modem, args: list[str]) -> None:
    modem.reply(f'+CCLK: "{cclk_text(time.time() + modem.clock_offset_s, modem.clock_zone)}"')
    modem.ok()


def _cclk_set(modem: Modem, args: list[str]) -> None:
    """``AT+CCLK="yy/MM/dd,hh:mm:ss±zz"`` sets the clock (kept as an offset from the
    host's) and its zone; anything else is CME error 50."""
    m = CCLK_FORMAT.match(args[0]) if len(args) == 1 else None
    if m is None:
        raise ArgError("expected \"yy/MM/dd,hh:mm:ss±zz\"")
    yy, mo, d, h, mi, s, sign, zz = m.groups()
    try:
        local = calendar.timegm(time.strptime(f"20{yy}-{mo}-{d} {h}:{mi}:{s}",
                                              "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        raise ArgError("no such date") from None
    zone = int(zz) * (-1 if sign == "-" else 1)
    if abs(zone) > 96:
        raise ArgError("time zone beyond 24 h")
    modem.clock_zone = zone
    modem.clock_offset_s = local - zone * 900 - time.time()
    modem.ok()


# V.250 / 27.007 commands every dialect answers the same way.
BASE_COMMANDS = {
    "E": Command(run=_echo),
    "+CMEE": Command(set=_cmee_set, read=_cmee_read, test=_cmee_test),
    "+CCLK": Command(read=_cclk_read, set=_cclk_set),
}


class Modem:
    """Generic AT front end on a pty. Dialects set ``commands`` (usually
    ``{**BASE_COMMANDS, ...}``) and override the ``reset_state``, ``boot_urcs`` and
    ``network_lost`` hooks."""

    commands: dict[str, Command] = BASE_COMMANDS
    fault_table: dict[str, Fault] = FAULTS     # what --control accepts (faults.py)

    def __init__(self, baud: int | None = None, faults: tuple[str, ...] = (),
                 link_path: str | None = None, trace: Callable[[str], None] | None = None,
                 control_path: str | None = None, clock_zone: int = 0):
        if not -96 <= clock_zone <= 96:
            raise ValueError("clock zone: -96..96 quarter hours")
        # AT+CCLK: the host's clock (UTC) plus an offset, reported in a time zone (quarter
        # hours); AT+CCLK= sets both. Kept across reboots, as network time would be.
        self.clock_zone = clock_zone
        self.clock_offset_s = 0.0
        self.faults = [CannedReply(f) for f in faults]
        self._delay_s = 0.0
        self._delay_count = 0
        self.trace = trace
        self.pty = PtyLink(baud, link_path, out_limit=OUT_LIMIT)
        self._overrunning = False   # an overrun is being reported (trace once per episode)
        self.sel = selectors.DefaultSelector()
        self._waker = Waker()
        self.sel.register(self._waker.fd, selectors.EVENT_READ, self._waker.drain)
        self._watched: dict[int, int] = {}     # fd -> events, to modify registrations
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._calls: collections.deque[Callable[[], None]] = collections.deque()
        self._urcs: list[bytes] = []
        self._line = bytearray()
        self._line_at = 0.0
        self._data_need = 0
        self._data = bytearray()
        self._data_done: Callable[[bytes], None] | None = None
        self._running = False
        self._thread: threading.Thread | None = None
        try:
            self.control = ControlServer(self, control_path) if control_path else None
        except BaseException:
            self.sel.close()    # nothing started yet: release the pty (and its --link)
            self.pty.close()
            self._waker.close()
            raise
        self.power_on()

    @property
    def port(self) -> str:
        """The pty path to open like a serial port."""
        return self.pty.path

    # -- dialect hooks -----------------------------------------------------------------
    def reset_state(self) -> None:
        """Forget everything a power cycle forgets (links, bearer ...)."""

    def boot_urcs(self) -> list[str]:
        """What the modem says once it has booted (e.g. RDY)."""
        return []

    def network_lost(self) -> None:
        """Simulated loss of the bearer (SIGUSR1 in the CLI)."""

    def status(self) -> dict:
        """What the ``status`` fault request reports; dialects add their state."""
        return {"booted": self.booted, "echo": self.echo, "cmee": self.cmee,
                "tx_queued": self.pty.pending_out, "overrun": self.pty.overrun}

    # -- injected faults (faults.py) ---------------------------------------------------
    def delay_replies(self, seconds: float, count: int) -> None:
        """The next ``count`` commands run ``seconds`` after they arrive: a busy modem."""
        self._delay_s, self._delay_count = seconds, count

    def heal(self) -> None:
        """Forget the faults still pending (dialects add theirs)."""
        self._delay_count = 0

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
        self._timers.clear()
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

    # -- scheduling --------------------------------------------------------------------
    def later(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the loop after ``delay_s`` (forgotten at a power cycle)."""
        self._seq += 1
        heapq.heappush(self._timers, (time.monotonic() + delay_s, self._seq, fn))

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the loop; safe from other threads and signal handlers."""
        self._calls.append(fn)
        self._wake()

    def watch(self, fileobj, events: int, callback: Callable[[int], None]) -> None:
        """Call ``callback(mask)`` when ``fileobj`` is ready for ``events`` (0: stop)."""
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        old = self._watched.get(fd, 0)
        if fd < 0 or self.sel is None:
            return
        if events and old == events and self.sel.get_key(fd).data == callback:
            return
        if events and old:
            self.sel.modify(fd, events, callback)
        elif events:
            self.sel.register(fd, events, callback)
        elif old:
            self.sel.unregister(fd)
        if events:
            self._watched[fd] = events
        else:
            self._watched.pop(fd, None)

    def _wake(self) -> None:
        self._waker.wake()

    # -- input -------------------------------------------------------------------------
    def _on_pty(self, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            self.pty.fill()
        if mask & selectors.EVENT_WRITE:
            self.pty.flush()

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
                # comes later is an empty line, or payload if a '>' prompt came first.
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
        if self._delay_count > 0:
            self._delay_count -= 1
            return self.later(self._delay_s, lambda: self._execute(text))
        self._execute(text)

    def _execute(self, text: str) -> None:
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

    # -- loop --------------------------------------------------------------------------
    def step(self, max_wait: float = IDLE_WAIT_S) -> None:
        """One turn of the loop: wait for I/O or a timer, then do what is due."""
        events = 0
        if self.pty.wants_fill():
            events |= selectors.EVENT_READ
        if self.pty.wants_flush():
            events |= selectors.EVENT_WRITE
        self.watch(self.pty.master, events, self._on_pty)
        wait = min(max_wait, self.pty.delay())
        if self._timers:
            wait = min(wait, self._timers[0][0] - time.monotonic())
        if self._urcs:
            wait = min(wait, 0.05)   # a held URC may become releasable by time alone
        if wait < PRECISE_WAIT_S:
            # epoll rounds timeouts up to whole milliseconds, longer than one 16-byte
            # burst at 115200 baud: sleep precisely instead, then only poll.
            time.sleep(max(0.0, wait))
            wait = 0.0
        for key, mask in self.sel.select(wait):
            key.data(mask)
        while self._calls:
            self._calls.popleft()()
        while self._timers and self._timers[0][0] <= time.monotonic():
            heapq.heappop(self._timers)[2]()
        while self.pty.has_input():
            chunk = self.pty.read()
            if not chunk:
                break
            self._feed(chunk)
        self._release_urcs()
        self.pty.flush()

    def serve(self) -> None:
        """Run the loop until ``stop()`` (from another thread or a signal handler)."""
        self._running = True
        while self._running:
            self.step()

    def request_stop(self) -> None:
        """Ask the loop to end; safe from signal handlers and other threads."""
        self._running = False
        self._wake()

    def start(self) -> Modem:
        """Serve in a background thread (for tests that run the modem in-process)."""
        self._running = True
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
        """Release the pty, the selector and the wake-up pipe (idempotent)."""
        if self.sel is None:
            return
        self.reset_state()
        if self.control:
            self.control.close()
        self.sel.close()
        self.sel = None   # type: ignore[assignment]
        self.pty.close()
        self._waker.close()
