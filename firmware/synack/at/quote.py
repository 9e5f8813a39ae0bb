"""What may go inside an AT command: host names and quoted string parameters.

A value written into a command line unchecked can end the quoted string and start a
second command (``x";+CFUN=0;"`` in ``AT+CDNSGIP="..."`` switches the radio off), or
end the command line early (CR). Every dialect builds its commands from values that
passed through here:

- ``host(name)``: a host name (letters, digits, ``-`` and ``.``; at most 253 characters,
  labels of 1-63 characters) or an IPv4 literal; returns it as bytes, or raises
  OSError(EINVAL) -- it is called on the socket path (getaddrinfo, connect).
- ``param(value, what)``: a quoted parameter from the configuration (APN, PIN):
  printable ASCII without ``"``; returns it as bytes, or raises ValueError.
"""

import errno

from micropython import const

_MAX_HOST = const(253)
_MAX_LABEL = const(63)
_MAX_PARAM = const(100)  # an APN is at most 100 octets (3GPP TS 23.003 9.1)


def _ascii(value):
    """``value`` (str or bytes) as bytes, or None when it is not ASCII."""
    if isinstance(value, str):
        for ch in value:
            if ord(ch) > 126:  # pragma: no mutate -- 127 (DEL): refused by every caller too
                return None
        return value.encode()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return None


def is_ipv4(value):
    """True for a dotted-quad IPv4 literal such as ``"10.0.0.1"`` (str or bytes);
    ASCII digits only (``str.isdigit`` also takes other scripts' digits)."""
    b = _ascii(value)
    if b is None:
        return False
    parts = b.split(b".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not 1 <= len(p) <= 3:
            return False
        for c in p:
            if c < 48 or c > 57:
                return False
        if int(p) > 255:
            return False
    return True


def is_host(value):
    """True for a host name the modem may be asked to resolve or connect to."""
    b = _ascii(value)
    if b is None or not 1 <= len(b) <= _MAX_HOST:
        return False
    if is_ipv4(b):  # pragma: no mutate -- a shortcut: an IPv4 literal passes the labels too
        return True
    if b[-1] == 46:  # a trailing dot (fully qualified) is allowed once
        b = b[:-1]
    for label in b.split(b"."):
        if not 1 <= len(label) <= _MAX_LABEL:
            return False
        if label[0] == 45 or label[-1] == 45:  # no leading or trailing "-"
            return False
        for c in label:
            if not (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c == 45
                    or c == 95):  # "_" appears in real DNS names (SRV, some CDNs)
                return False
    return True


def is_param(value, max_len=_MAX_PARAM):
    """True for a value that may stand between double quotes in a command."""
    b = _ascii(value)
    if b is None or len(b) > max_len:
        return False
    for c in b:
        if c < 32 or c > 126 or c == 34:
            return False
    return True


def host(name):
    """``name`` as bytes for a command line, or OSError(EINVAL)."""
    b = _ascii(name)
    if b is None or not is_host(b):
        raise OSError(errno.EINVAL, "invalid host name %r" % (name,))
    return b


def param(value, what, max_len=_MAX_PARAM):
    """``value`` as bytes for a quoted parameter, or ValueError naming ``what``."""
    b = _ascii(value)
    if b is None or not is_param(b, max_len):
        raise ValueError("invalid %s %r: printable ASCII without '\"', at most %d "
                         "characters" % (what, value, max_len))
    return b
