"""The head of an HTTP/1.x response (status line and header fields) and the parsing of
its small tokens: the status line, a Content-Length, a chunk size. No I/O and no state:
``synack.http.response.Reader`` calls these while it frames the message.

Server bytes never reach ``int()`` or ``bytes.decode()`` unchecked: numbers are read by
``digits()`` (ASCII digits only; ``int()`` also takes signs, spaces, underscores and
non-ASCII digits, and not the same ones on every port), and text by ``text()``, which
cannot fail. Whatever the server sends, the only errors are the HTTPError family.
"""

from micropython import const

_MAX_CHUNK_DIGITS = const(8)  # 0xffffffff: more hex digits is an attack, not a body


class Head:
    """Status line and headers. ``headers`` is a list of (name, value) bytes pairs with
    names lowercased, in the order received; ``length`` is the Content-Length (None if
    the body is chunked or runs to the end of the connection)."""

    __slots__ = ("version", "status", "reason", "headers", "length", "chunked",
                 "keep_alive")

    def __init__(self, version, status, reason):
        self.version = version  # 10 or 11
        self.status = status
        self.reason = reason
        self.headers = []  # type: list
        self.length = None  # type: int | None
        self.chunked = False
        self.keep_alive = False

    def header(self, name, default=None):
        """The first value of header ``name`` (case-insensitive), as bytes."""
        name = _lower(name)
        for n, v in self.headers:
            if n == name:
                return v
        return default

    def tokens(self, name):
        """The comma-separated, lowercased tokens of every ``name`` header."""
        name = _lower(name)
        out = []
        for n, v in self.headers:
            if n == name:
                for t in v.split(b","):
                    t = t.strip().lower()
                    if t:
                        out.append(t)
        return out


def _lower(name):
    return (name.encode() if isinstance(name, str) else name).lower()


def digits(text, base=10, most=15):
    """The value of ``text`` (bytes or str) if it is 1 to ``most`` ASCII digits in
    ``base`` (10, or 16 with a-f/A-F), else -1. No sign, space or underscore, and no
    other script's digits ("\u00b2".isdigit() is True, int("\u00b2") a ValueError)."""
    if not text or len(text) > most:
        return -1
    n = 0
    for c in text:
        if isinstance(c, str):
            c = ord(c)
        if 48 <= c <= 57:
            c -= 48
        elif base == 16 and 97 <= (c | 32) <= 102:
            c = (c | 32) - 87
        else:
            return -1
        n = n * base + c
    return n


def text(value):
    """Bytes from the server (a header value, the reason phrase) as str: UTF-8 if they
    are valid UTF-8 (ASCII always is), else one character per byte (ISO-8859-1, the
    historical charset of HTTP fields, RFC 9110 5.5). Never raises. MicroPython has
    neither a latin-1 codec nor decode(errors=...): chr() of each byte is latin-1."""
    try:
        return value.decode()
    except UnicodeError:
        return "".join([chr(c) for c in value])


def parse_status(line):
    """b"HTTP/1.1 200 OK" -> Head, or None if malformed. HTTP/1.x with x > 1 is read
    as 1.1 (RFC 9110 2.5); the reason phrase may be empty or missing."""
    if len(line) < 12 or not line.startswith(b"HTTP/1.") or line[8] != 32:
        return None
    minor = line[7]
    if not 48 <= minor <= 57:
        return None
    if len(line) > 12 and line[12] != 32:
        return None
    status = digits(line[9:12], 10, 3)  # pragma: no mutate -- any limit >= 3: 3 bytes
    if status < 100:
        return None  # not three digits (-1), or not a status code
    return Head(10 if minor == 48 else 11, status, line[13:])


def decimal(value):
    """A Content-Length value as an int, or -1 if it is not 1 to 15 decimal digits."""
    return digits(value, 10, 15)  # pragma: no mutate -- 15 is digits() default too


def hex_size(value):
    """A chunk size as an int, or -1 if it is not 1 to 8 hex digits."""
    return digits(value, 16, _MAX_CHUNK_DIGITS)
