"""HTTP/1.x request writer and URL helpers (sans-I/O: returns bytes, sends nothing).

``encode_head()`` builds the request line and header block; a body is sent after it as
is (``Content-Length``) or, for a body of unknown length, framed with ``chunk_header()``
and ended with ``LAST_CHUNK`` (chunked transfer coding, HTTP/1.1 only).

Everything that goes on the wire is checked first: a method or header name that is not
an RFC 9110 token, or a value with CR, LF or NUL in it (header injection), raises
``LocalProtocolError`` rather than producing a request the server would misread.
"""

from .errors import LocalProtocolError
from .head import digits, text

HTTP10 = b"HTTP/1.0"
HTTP11 = b"HTTP/1.1"
LAST_CHUNK = b"0\r\n\r\n"
CRLF = b"\r\n"

# RFC 9110 9.2.2: a retry after a failure cannot change the outcome of these.
IDEMPOTENT = (b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE")

# tchar (RFC 9110 5.6.2) besides letters and digits.
_TCHAR_PUNCT = b"!#$%&'*+-.^_`|~"


def to_bytes(value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int):
        return b"%d" % value
    return bytes(value)


def is_token(name):
    if not name:
        return False
    for c in name:
        if not (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in _TCHAR_PUNCT):
            return False
    return True


def _check_value(name, value):
    for c in value:
        if c == 13 or c == 10 or c == 0:
            raise LocalProtocolError("header %s: value contains CR, LF or NUL: %r"
                                     % (name.decode(), value))


def _check_target(target):
    if not target:
        raise LocalProtocolError("empty request target")
    for c in target:
        if c <= 32 or c == 127:
            raise LocalProtocolError("request target contains a space or control byte: %r"
                                     % target)


def encode_head(method, target, headers, version=HTTP11):
    """Request line plus header block plus the empty line, as bytes.

    ``headers`` is a sequence of (name, value) pairs (str, bytes or int values);
    the caller decides Host, Connection, Content-Length and the rest."""
    method = to_bytes(method)
    target = to_bytes(target)
    if not is_token(method):
        raise LocalProtocolError("method is not a token: %r" % method)
    if version != HTTP10 and version != HTTP11:
        raise LocalProtocolError("unsupported version %r" % version)
    _check_target(target)
    out = bytearray(method)
    out += b" "
    out += target
    out += b" "
    out += version
    out += CRLF
    for name, value in headers:
        name = to_bytes(name)
        value = to_bytes(value)
        if not is_token(name):
            raise LocalProtocolError("header name is not a token: %r" % name)
        _check_value(name, value)
        out += name
        out += b": "
        out += value
        out += CRLF
    out += CRLF
    return bytes(out)


def is_buffer(body):
    """A body sent whole with Content-Length (anything else is iterated, chunked).
    Not hasattr(body, "__len__"): MicroPython's built-in types do not expose it."""
    return isinstance(body, (bytes, bytearray, memoryview))


def header_pairs(headers):
    """A dict, a sequence of (name, value) pairs or None, as a new list of pairs."""
    if headers is None:
        return []
    return list(headers.items() if isinstance(headers, dict) else headers)


def build_head(method, host, port, target, body, headers, version=HTTP11, keep_alive=True,
               tls=False):
    """The request head a client sends: ``headers`` (pairs) plus Host, the body's
    framing and the connection's persistence. Returns (bytes, close_after), where
    close_after is True when this request asks for the connection to end after it.

    ``body``: None, bytes-like (Content-Length), or an iterable of bytes-like pieces
    (chunked, which HTTP/1.0 does not have). HTTP/1.0 keeps a connection only if asked
    with ``Connection: keep-alive``; HTTP/1.1 keeps it unless told ``Connection: close``."""
    out = []
    close_after = not keep_alive
    has_host = False  # pragma: no mutate -- None: only its truth is read
    for name, value in headers:
        lname = to_bytes(name).lower()
        if lname == b"host":
            has_host = True
        elif lname == b"connection" and b"close" in to_bytes(value).lower():
            close_after = True
        out.append((name, value))
    if not has_host:
        out.insert(0, (b"Host", host_header(host, port, tls)))
    if body is None:
        if method == b"POST" or method == b"PUT":
            out.append((b"Content-Length", b"0"))  # RFC 9110 8.6: a body of zero
    elif is_buffer(body):
        out.append((b"Content-Length", len(body)))
    elif version == HTTP10:
        raise LocalProtocolError("a body of unknown length needs HTTP/1.1 (chunked)")
    else:
        out.append((b"Transfer-Encoding", b"chunked"))
    if not keep_alive:
        if version == HTTP11:
            out.append((b"Connection", b"close"))
    elif version == HTTP10:
        out.append((b"Connection", b"keep-alive"))
    return encode_head(method, target, out, version), close_after


def chunk_header(size):
    """The size line that precedes ``size`` bytes of chunk data; the data must be
    followed by CRLF. Size 0 is the last chunk: send LAST_CHUNK instead."""
    return b"%x\r\n" % size


def split_url(url):
    """``http[s]://host[:port]/path?query`` -> (tls, host, port, target): ``tls`` is
    True for https (default port 443), False for http (80)."""
    if isinstance(url, bytes):
        url = text(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise LocalProtocolError("not an absolute URL: %r" % url)
    scheme = scheme.lower()
    if scheme != "http" and scheme != "https":
        raise LocalProtocolError("unsupported URL scheme %r (only http and https)" % scheme)
    tls = scheme == "https"
    slash = rest.find("/")
    if slash < 0:
        hostport, target = rest, "/"
    else:
        hostport, target = rest[:slash], rest[slash:]
    q = hostport.find("?")  # http://host?x=1 has an empty path
    if q >= 0:
        hostport, target = hostport[:q], "/" + hostport[q:]
    hash_at = target.find("#")
    if hash_at >= 0:  # pragma: no mutate -- 0 never: target starts with "/"; fragment not sent
        target = target[:hash_at]
    if "@" in hostport:
        raise LocalProtocolError("credentials in the URL are not supported: %r" % url)
    host, colon, port_text = hostport.rpartition(":")
    if not colon:
        host, port = hostport, (443 if tls else 80)
    else:
        port = digits(port_text, 10, 5)  # int() would take "+80", " 80", "8_0", "\u0668\u0660"
        if not 0 < port < 65536:
            raise LocalProtocolError("bad port in URL %r" % url)
    if not host:
        raise LocalProtocolError("no host in URL %r" % url)
    _check_host(host, url)
    return tls, host, port, target


def parse_url(url):
    """``http[s]://host[:port]/path?query`` -> (host, port, target); ``split_url`` also
    tells whether it is https."""
    _, host, port, target = split_url(url)
    return host, port, target


def _check_host(host, url):
    """A host name the resolver can take: printable ASCII (an IDN in its xn-- form),
    dot-separated labels of 1 to 63 characters (one trailing dot allowed), 253 in all.
    CPython's resolver raises UnicodeError, not OSError, for an empty or long label."""
    for c in host:
        if c <= " " or c > "~":
            raise LocalProtocolError("bad host in URL %r" % url)
    if host.endswith("."):
        host = host[:-1]
    if len(host) > 253:
        raise LocalProtocolError("bad host in URL %r" % url)
    for label in host.split("."):
        if not label or len(label) > 63:
            raise LocalProtocolError("bad host in URL %r" % url)


def host_header(host, port, tls=False):
    """The Host header: the port only if not the scheme's default (80, https: 443)."""
    return host if port == (443 if tls else 80) else "%s:%d" % (host, port)


def join_url(host, port, target, location, tls=False):
    """Resolve a Location header against the request it answered (RFC 3986, the cases
    servers send: absolute URL, absolute path, scheme-relative and relative path);
    ``tls``: the request was https."""
    if isinstance(location, bytes):
        location = text(location)
    if "://" in location:
        return location
    scheme = "https:" if tls else "http:"
    if location.startswith("//"):
        return scheme + location
    base = scheme + "//" + host_header(host, port, tls)
    if location.startswith("/"):
        return base + location
    path = target.split("?", 1)[0]  # pragma: no mutate -- any maxsplit: [0] is the same
    if location.startswith("?"):
        return base + path + location
    return base + path[:path.rfind("/") + 1] + location
