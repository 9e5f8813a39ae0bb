"""Sans-I/O AT response parser: bytes in, events out.

Feed it whatever the UART delivered (any fragmentation) with ``feed()``, then call
``next_event()`` until it returns ``None`` (needs more data). Events are tuples whose
first item is the kind:

- ``(LINE, line)``     an information response line (``+CSQ: 20,99``, ``SIMCOM_SIM7600``)
- ``(FINAL, line)``    a final result code: ``OK``, ``ERROR``, ``+CME ERROR: 10`` ...
- ``(URC, line)``      an unsolicited result code, recognised by the dialect's prefix table
- ``(PROMPT, None)``   the data prompt (``>`` on SIMCom/Quectel, ``@`` on u-blox)
- ``(PAYLOAD, data)``  the raw bytes announced by a length-framed line such as
                       ``+CIPRXGET: 2,<link>,<n>,<rest>``; exactly n bytes, any values.
                       Or the bytes inside the line itself, between quotes (u-blox's
                       ``+USORD: <s>,<n>,"<n raw bytes>"``, the ``inline`` table): the
                       line up to its opening quote comes first as ``(LINE,
                       b"+USORD: <s>,<n>")``, then exactly n bytes (0 too: an empty
                       PAYLOAD), checked against the ``"`` CR LF that must follow them
- ``(NOISE, data)``    bytes that cannot be a line (control bytes, over-long line); the
                       parser drops them and resynchronises at the next line end. An
                       over-long line gives one NOISE event holding its first
                       ``max_line`` bytes, whatever the fragmentation, and the rest of
                       it, up to the next CR or LF, is discarded (counted in
                       ``discarded``) -- its tail is never read as a line of its own

The parser never touches a UART. The engine above it tells it which response prefix
the command in flight expects (``response_prefix``): a line with that prefix is a reply
even when the same prefix is also a URC (``+CIPCLOSE:`` answers ``AT+CIPCLOSE?`` but is
also sent unsolicited after ``AT+CIPCLOSE=n``).

Memory is bounded: one preallocated buffer of ``max_line + 1 + max_payload`` bytes.
``feed()`` takes as much as fits and returns the count; drain events, then feed the rest.

A payload whose framing fails (its trailer is not there, an in-line length that is not a
number or exceeds ``max_payload``) becomes NOISE and counts in ``framing``: bytes were
lost or gained on the UART, so the driver re-pairs commands and replies. After a failed
in-line payload the rest of its line is discarded too (it is the payload's tail), and
the parser goes on at the next line.
"""

from micropython import const

LINE = const(1)
FINAL = const(2)
URC = const(3)
PROMPT = const(4)
PAYLOAD = const(5)
NOISE = const(6)

KIND_NAMES = ("", "LINE", "FINAL", "URC", "PROMPT", "PAYLOAD", "NOISE")

_CR = const(13)
_LF = const(10)
_SPACE = const(32)

# What follows an in-line payload: its closing quote and the end of its line.
INLINE_END = b'"\r\n'

# 3GPP TS 27.007 / V.250 final result codes (verbose form).
FINAL_EXACT = (b"OK", b"ERROR", b"NO CARRIER", b"BUSY", b"NO ANSWER", b"NO DIALTONE")
FINAL_PREFIXES = (b"+CME ERROR:", b"+CMS ERROR:", b"CONNECT")


def _is_text(line):
    # Response lines are printable ASCII; anything else is line noise (a modem
    # rebooting, a baud-rate mismatch, bytes of a payload we lost track of).
    for b in line:
        if b < 32 and b != 9:
            return False
        if b > 126:
            return False
    return True


class Parser:
    """Incremental AT response parser. See the module docstring for the events."""

    def __init__(self, urcs=(), framed=(), prompt=b">", extra_finals=(),
                 max_line=256, max_payload=1536, trailer=b"", inline=()):
        # urcs: tuple of line prefixes that are unsolicited result codes.
        # framed: tuple of (prefix, field) pairs; a line starting with prefix announces
        #   a payload whose length is the field-th comma-separated value after it.
        # inline: tuple of (prefix, field) pairs for payloads inside their line: once a
        #   line starting with prefix reaches a quote right after its field-th value
        #   and its comma (+USORD: 0,5,"), that value is the count of raw bytes after
        #   the quote, and INLINE_END must follow them. Any other line with the prefix
        #   (+USORD: 0,"", +USORD: 0,12) is an ordinary line.
        # trailer: the bytes the modem always sends right after a payload (b"\r\n" on
        #   SIMCom and Quectel). Given, a payload is delivered only once they follow it;
        #   a payload they do not follow has lost (or gained) bytes on the UART - an
        #   overrun - and becomes NOISE (counted in ``framing``), never a PAYLOAD of the
        #   right length with wrong bytes.
        self.trailer = trailer
        self.framing = 0
        self.urcs = urcs
        self.framed = framed
        self.inline = inline
        self.prompt = prompt[0]
        self.extra_finals = extra_finals
        self.max_line = max_line
        self.max_payload = max_payload
        self.response_prefix = None
        # One byte more than a line + a payload: an incomplete line of max_line + 1 bytes
        # proves the line over-long whatever the fragmentation (see next_event).
        self._buf = bytearray(max_line + 1 + max_payload)
        self._mv = memoryview(self._buf)
        self._start = 0   # first unconsumed byte
        self._end = 0     # one past the last fed byte
        self._want = 0    # payload bytes still to deliver as one PAYLOAD event
        self._pending = False  # a PAYLOAD (of _want bytes, maybe 0) is due
        self._inlined = False  # ... and it sits inside its line (INLINE_END follows)
        # _skip_lf: the previous line ended in CR; drop one LF that follows
        self._skip_lf = False  # pragma: no mutate -- any value: no payload pending, LFs skipped
        self._discard = False  # inside an over-long (or unframed) line: drop to its CR/LF
        self.discarded = 0     # bytes dropped that way (diagnostics)

    # -- input -------------------------------------------------------------------
    def feed(self, data):
        """Append bytes; returns how many were taken (less than len(data) when full)."""
        free = len(self._buf) - self._end
        if free < len(data) and self._start:
            self._compact()
            free = len(self._buf) - self._end
        n = min(free, len(data))
        if n:
            self._buf[self._end:self._end + n] = data[:n] if n < len(data) else data
            self._end += n
        return n

    def buffered(self):
        """Bytes received but not yet turned into events."""
        return self._end - self._start

    def in_payload(self):
        """True while a length-framed payload is still incomplete."""
        return self._pending

    def reset(self):
        """Forget partial input (after a timeout or a modem reboot)."""
        self._start = self._end = 0  # pragma: no mutate -- 0 or 1: feed() compacts
        self._want = 0
        self._pending = False
        self._skip_lf = False  # pragma: no mutate -- any value: no payload pending, LFs skipped
        self._discard = False
        self.response_prefix = None

    def _compact(self):
        n = self._end - self._start
        if n:
            self._buf[0:n] = self._mv[self._start:self._end]
        self._start = 0
        self._end = n

    # -- output ------------------------------------------------------------------
    def next_event(self):
        """Return the next event tuple, or None when more input is needed."""
        buf = self._buf
        i = self._start
        end = self._end
        if self._skip_lf and i < end:
            if buf[i] == _LF:
                i += 1
            self._skip_lf = False
        if self._pending:
            inlined = self._inlined
            tail = INLINE_END if inlined else self.trailer
            t = len(tail)
            if end - i < self._want + t:
                self._start = i
                return None
            j = i + self._want
            self._want = 0
            self._pending = False
            if t and buf[j:j + t] != tail:
                self.framing += 1
                self._start = j
                self._discard = inlined  # the rest of its line: the payload's tail
                return (NOISE, bytes(self._mv[i:j]))
            # an in-line payload's closing quote and line end are consumed with it
            self._start = j + t if inlined else j
            return (PAYLOAD, bytes(self._mv[i:j]))
        if self._discard:
            # The tail of an over-long line (or of an in-line payload that failed its
            # framing): drop it up to the line end, whatever fragmentation it arrives
            # in (else it would be read as a line of its own).
            j = i
            while j < end and buf[j] != _CR and buf[j] != _LF:
                j += 1
            self.discarded += j - i
            if j >= end:
                self._start = self._end = 0  # pragma: no mutate -- 0 or 1: feed() compacts
                return None
            self._discard = False
            i = j
        # Line mode: skip the CR/LF (and stray spaces) that separate lines.
        while i < end and buf[i] in b"\r\n ":
            i += 1
        self._start = i
        if i >= end:
            self._start = self._end = 0  # pragma: no mutate -- 0 or 1: feed() compacts
            return None
        if buf[i] == self.prompt:
            # "> " is not line-terminated: it is recognised at the start of a line.
            i += 1
            if i < end and buf[i] == _SPACE:
                i += 1
            self._start = i
            return (PROMPT, None)
        cr = buf.find(b"\r", i, end)
        lf = buf.find(b"\n", i, end)
        if cr < 0 or (0 <= lf < cr):
            cr = lf
        if self.inline:
            ev = self._inline_header(i, end if cr < 0 else cr)
            if ev is not None:
                return ev
        if cr < 0:
            if end - i > self.max_line:
                # Over-long for certain: report its first max_line bytes (as a complete
                # over-long line is reported) and discard the rest up to its line end.
                j = i + self.max_line
                self.discarded += end - j
                self._discard = True
                self._start = self._end = 0  # pragma: no mutate -- 0 or 1: feed() compacts
                return (NOISE, bytes(self._mv[i:j]))
            return None
        line = bytes(self._mv[i:cr])
        i = cr + 1
        if buf[cr] == _CR:
            if i < end:
                if buf[i] == _LF:
                    i += 1
            else:
                self._skip_lf = True
        self._start = i
        return self._classify(line)

    def _inline_header(self, i, stop):
        """The event of an in-line payload's header at buf[i:stop] (no line end in it),
        or None for any other line (or one whose quote has not arrived yet)."""
        buf = self._buf
        for prefix, field in self.inline:
            k = i + len(prefix)
            if k > stop or buf[i:k] != prefix:
                continue
            q = buf.find(b'"', k, stop)
            if q < 0 or q - i > self.max_line:
                return None  # not yet, or over-long: read as a line
            parts = bytes(self._mv[k:q]).split(b",")
            if len(parts) != field + 2 or parts[-1].strip():
                return None  # the quote is not right after the length: a line
            header = bytes(self._mv[i:q])
            n = uint(parts[field])
            self._start = q + 1
            if n < 0 or n > self.max_payload or not _is_text(header):
                # its length is unknown (or too much to hold): the payload cannot be
                # framed; it is dropped up to its line end
                self.framing += 1
                self._discard = True
                return (NOISE, header)
            self._want = n
            self._pending = True
            self._inlined = True
            return (LINE, header[:header.rfind(b",")])
        return None

    def _classify(self, line):
        if len(line) > self.max_line:
            self.discarded += len(line) - self.max_line
            return (NOISE, line[:self.max_line])
        if not _is_text(line):
            return (NOISE, line)
        if line in FINAL_EXACT or line in self.extra_finals:
            return (FINAL, line)
        for p in FINAL_PREFIXES:
            if line.startswith(p):
                return (FINAL, line)
        for prefix, field in self.framed:
            if line.startswith(prefix):
                n = _field_int(line, len(prefix), field)
                if n < 0 or n > self.max_payload:
                    return (NOISE, line)
                self._want = n
                self._pending = n > 0  # no bytes announced: no PAYLOAD event
                self._inlined = False
                return (LINE, line)
        rp = self.response_prefix
        if rp is not None and line.startswith(rp):
            return (LINE, line)
        for p in self.urcs:
            if line.startswith(p):
                return (URC, line)
        return (LINE, line)


def _field_int(line, start, index):
    """The index-th comma-separated integer after line[start:], or -1 if malformed."""
    parts = line[start:].split(b",")
    if index >= len(parts):
        return -1
    return uint(parts[index])


def uint(value):
    """``b" 42"`` -> 42: ASCII digits only (at most 9, spaces around allowed), else -1.
    Stricter than int(), which also takes signs, underscores and non-ASCII digits."""
    value = value.strip()
    if not value or len(value) > 9:
        return -1
    n = 0
    for c in value:
        if c < 48 or c > 57:
            return -1
        n = n * 10 + c - 48
    return n


def fields(line, prefix_len):
    """Split the parameters after a ``+XXX: `` prefix into a list of bytes values,
    honouring double quotes (a comma inside quotes does not split; quotes are removed)."""
    out = []
    cur = bytearray()
    quoted = False
    for i in range(prefix_len, len(line)):
        c = line[i]
        if c == 34:  # '"'
            quoted = not quoted
        elif c == 44 and not quoted:  # ','
            out.append(bytes(cur).strip())
            cur = bytearray()
        else:
            cur.append(c)
    out.append(bytes(cur).strip())
    return out
