"""The head of an HTTP/1.x response (status line and header fields) and the parsing of
its small tokens: the status line, a Content-Length, a chunk size. No I/O and no state:
``synack.http.response.Reader`` calls these while it frames the message.
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


def parse_status(line):
    """b"HTTP/1.1 200 OK" -> Head, or None if malformed. HTTP/1.x with x > 1 is read
    as 1.1 (RFC 9110 2.5); the reason phrase may be empty or missing."""
    if len(line) < 12 or not line.startswith(b"HTTP/1.") or line[8] != 32:
        return None
    minor = line[7]
    if not 48 <= minor <= 57:
        return None
    code = line[9:12]
    if not code.isdigit() or (len(line) > 12 and line[12] != 32):
        return None
    status = int(code)
    if status < 100:
        return None
    return Head(10 if minor == 48 else 11, status, line[13:])


def decimal(text):
    """A Content-Length value as an int, or -1 if it is not plain decimal digits."""
    if not text or len(text) > 15 or not text.isdigit():
        return -1
    return int(text)


def hex_size(text):
    """A chunk size as an int, or -1 if it is not 1 to 8 hex digits."""
    if not text or len(text) > _MAX_CHUNK_DIGITS:
        return -1
    for c in text:
        if not (48 <= c <= 57 or 65 <= c <= 70 or 97 <= c <= 102):
            return -1
    return int(text, 16)
