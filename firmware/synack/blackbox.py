"""A black box: the last events of the device (link up/down and why, registration
changes, connects and their errors, heartbeat misses, resets and their cause), kept in a
small ring in RAM and persisted on flash so that a field engineer who arrives after the
fact reads what happened (``synack diag`` shows it).

    from synack import blackbox
    bb = blackbox.Blackbox("/blackbox")      # loads the ring, logs "boot" + reset cause
    bb.add("hb_miss", "3 misses, peer silent")
    sup = Supervisor(link, events=bb.supervisor_event)   # link up/down, failures
    bb.watch_modem(modem)                    # registration changes (+CREG/+CEREG URCs)
    bb.flush()                               # e.g. from the main loop; add() does it too

Bounded: at most ``size`` entries (the oldest are dropped), each detail cut to
``_DETAIL`` characters, so the file stays under ~3 KB.

Bounded flash writes: ``add()`` only marks the ring dirty; it is written when at least
``min_interval_ms`` (default 10 s) passed since the last write, or by ``flush(True)``,
or at once for the events in ``URGENT`` (boot, link down, a dead heartbeat). A power cut
loses at most the events of the last interval. ``writes`` counts the flash writes.

Power-cut safe: the whole ring is written to ``ring.tmp``, flushed to the medium and
renamed over ``ring`` (synack.outbox.FileStore), and carries a CRC; a file that fails it
is ignored (``corrupt``) and the ``.tmp`` a cut left behind is tried instead. Secrets
never enter it: ``hide(value)`` registers a value (a Wi-Fi key, an APN password, a
token) that ``scrub()`` replaces by ``***`` in every detail.
"""

import binascii
import json
import time

from micropython import const

from .outbox import FileStore

_MAGIC = "SYBB1"
_FILE = "ring"
_DETAIL = const(72)          # characters kept of an event's detail
_SIZE = const(32)            # entries kept
_MIN_INTERVAL_MS = const(10000)
_MAX_FILE = const(8192)      # a larger file is not ours (or damaged): ignored
URGENT = ("boot", "link_down", "reset", "hb_dead")

RESET_CAUSES = {1: "power-on", 2: "hard reset", 3: "watchdog", 4: "deep-sleep wake",
                5: "soft reset"}   # machine.*_RESET on ESP32

_secrets = []  # type: list[str]


def hide(*values):
    """Register secret values: ``scrub()`` masks them from now on (empty ones ignored)."""
    for v in values:
        if isinstance(v, bytes):
            v = v.decode()
        if v and isinstance(v, str) and v not in _secrets:
            _secrets.append(v)


def scrub(text):
    """``text`` with every registered secret replaced by ``***``."""
    for s in _secrets:
        if s in text:
            text = text.replace(s, "***")
    return text


def reset_cause():
    """(number, name) of machine.reset_cause(), or (None, "unknown") without one."""
    try:
        import machine
        rc = getattr(machine, "reset_cause", None)
        if rc is None:
            return None, "unknown"
        n = rc()
    except (ImportError, OSError):
        return None, "unknown"
    return n, RESET_CAUSES.get(n, "cause %r" % (n,))


def wall_time():
    """Unix seconds when the clock is set (2024 or later), else None."""
    from . import clock
    return clock.now() if clock.is_set() else None


class Blackbox:
    """The ring; ``directory`` None keeps it in RAM only (tests, no flash)."""

    def __init__(self, directory="/blackbox", size=_SIZE, min_interval_ms=_MIN_INTERVAL_MS,
                 boot=True, echo=False):
        if size < 1:
            raise ValueError("blackbox size must be at least 1")
        self.size = size
        self.min_interval_ms = min_interval_ms
        self.echo = echo          # also print each event as a "synack-event:" line
        self.entries = []         # type: list[list]  # [seq, boot, ms, unix|None, kind, detail]
        self.writes = 0
        self.corrupt = 0          # stored files that failed their checks
        self.dirty = False
        self.boots = 0
        self._seq = 0
        self._last_write = time.ticks_ms()
        self._written = False     # _last_write counts once a write happened
        self.store = None   # type: FileStore | None
        if directory is not None:
            self.store = FileStore(directory)
            self._load()
        if boot:
            self.boots += 1
            n, name = reset_cause()
            self.add("boot", "reset cause %s (%s)" % (name, n))

    # -- recording ---------------------------------------------------------------
    def add(self, kind, detail=None):
        """Record an event (``kind`` a short word, ``detail`` text or an exception);
        a flash failure is not raised (the ring stays dirty and is written later)."""
        if detail is None:
            detail = ""
        elif not isinstance(detail, str):
            detail = _text(detail)
        detail = scrub(detail)[:_DETAIL]
        self._seq += 1
        entry = [self._seq, self.boots, time.ticks_ms(), wall_time(), str(kind)[:16], detail]
        self.entries.append(entry)
        if len(self.entries) > self.size:
            self.entries.pop(0)
        self.dirty = True
        if self.echo:
            print("synack-event: " + json.dumps(entry))
        self.flush(kind in URGENT)

    def supervisor_event(self, event, detail):
        """The sink ``Supervisor(events=...)`` calls: (event name, cause or None)."""
        kind = {"UP_OK": "link_up", "LOST": "link_down", "UP_FAILED": "connect_err",
                "REINIT_DONE": "reinit", "REINIT_FAILED": "reinit_err"}.get(event)
        if kind is not None:
            self.add(kind, detail or "")

    def watch_modem(self, modem, enable_urcs=True):
        """Record registration changes of a synack modem (its +CREG/+CGREG/+CEREG
        URCs); ``enable_urcs`` asks the modem to send them (AT+CREG=1, AT+CEREG=1)."""
        from .at.errors import ModemError
        on = modem.at.engine.on_urc
        for prefix in (b"+CREG:", b"+CGREG:", b"+CEREG:"):
            on(prefix, self._on_registration, True)
        if enable_urcs:
            from .modems.base import sync
            try:
                sync(modem.at, attempts=4)    # a modem still booting drops commands
                for cmd in (b"AT+CREG=1", b"AT+CEREG=1"):
                    modem.at.command(cmd, timeout_ms=2000)
            except ModemError as e:
                self.add("modem_err", _text(e))

    def _on_registration(self, line):
        from .modems.base import REG_NAMES, parse_ints
        colon = line.find(b":")
        values = parse_ints(line, colon + 1) if colon > 0 else None
        # URC form: +CREG: <stat>[,<lac>,<ci>]; a query's +CREG: <n>,<stat> is no URC
        stat = values[0] if values else -1
        name = REG_NAMES[stat] if 0 <= stat < len(REG_NAMES) else "stat %d" % stat
        self.add("registration", "%s %s" % (line[:colon].decode(), name))

    # -- persistence ---------------------------------------------------------------
    def flush(self, force=False):
        """Write the ring if it changed and ``min_interval_ms`` passed (or ``force``);
        returns True if it wrote."""
        if not self.dirty or self.store is None:
            return False
        now = time.ticks_ms()
        if (not force and self._written
                and time.ticks_diff(now, self._last_write) < self.min_interval_ms):
            return False
        body = "\n".join([json.dumps(e) for e in self.entries]).encode()
        head = "%s %08x %d %d\n" % (_MAGIC, binascii.crc32(body) & 0xFFFFFFFF, self.boots,
                                    self._seq)
        try:
            self.store.write(_FILE, head.encode() + body)
        except OSError:
            return False   # flash full or failing: keep it in RAM, try again later
        self.dirty = False
        self._last_write = now
        self._written = True
        self.writes += 1
        return True

    def _load(self):
        store = self.store
        if store is None:
            return
        for name in (_FILE, _FILE + ".tmp"):
            try:
                data = store.read(name)
            except OSError:
                continue
            parsed = _decode(data)
            if parsed is None:
                self.corrupt += 1
                continue
            self.boots, self._seq, self.entries = parsed
            del self.entries[:-self.size]
            return

    def events(self):
        """The entries as dicts, oldest first (what the diag report shows)."""
        return [{"seq": e[0], "boot": e[1], "ms": e[2], "time": e[3], "kind": e[4],
                 "detail": e[5]} for e in self.entries]


def _decode(data):
    """(boots, seq, entries) of a stored ring, or None when it fails a check."""
    if len(data) > _MAX_FILE:
        return None
    nl = data.find(b"\n")
    if nl < 0:
        nl = len(data)
    parts = data[:nl].split(b" ")
    if len(parts) != 4 or parts[0] != _MAGIC.encode():
        return None
    body = data[nl + 1:]
    try:
        crc, boots, seq = int(parts[1], 16), int(parts[2]), int(parts[3])
        if binascii.crc32(body) & 0xFFFFFFFF != crc:
            return None
        entries = [json.loads(ln) for ln in body.split(b"\n") if ln]
    except ValueError:
        return None
    for e in entries:
        if not isinstance(e, list) or len(e) != 6:
            return None
    return boots, seq, entries


def load(directory="/blackbox"):
    """The stored ring without adding a boot event (for a report when the application
    did not open one); None when there is none."""
    try:
        import os
        os.stat(directory)
    except OSError:
        return None
    return Blackbox(directory, boot=False)


def _text(e):
    """An exception (or any value) as one short line: ``OSError ETIMEDOUT: ...``."""
    if isinstance(e, BaseException):
        name = type(e).__name__
        msg = str(e)
        return name + ": " + msg if msg else name
    return str(e)
