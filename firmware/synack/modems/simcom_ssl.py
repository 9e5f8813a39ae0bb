"""What the SSL service of SIMCom modems (SIM7600, SIM7500, A76xx) shares: the
certificate store on the modem's flash (``AT+CCERTDOWN``/``AT+CCERTLIST``/
``AT+CCERTDELE``), the <err> codes of the ``AT+CCH*`` commands and ``SSLError``.

Every function takes the modem's AT channel and raises OSError only (ValueError for
arguments that are wrong before anything is sent). Certificates are public data; a
client key would go the same way but is never put in a message.
"""

import errno

from micropython import const

from ..at import quote
from ..at.errors import CommandError, CommandTimeout
from ..at.parser import fields

MAX_CERT = const(10240)   # AT+CCERTDOWN takes at most 10 KiB (manual)
_CMD_MS = const(5000)
_CERT_MS = const(20000)
HANDSHAKE = const(15)
NO_CERT = const(19)

# <err> of +CCHOPEN, +CCHSEND, +CCHCLOSE ... (SIMCom's SSL AT command manual)
ERRORS = ("success", "alerting state", "unknown error", "busy", "peer closed",
          "operation timeout", "transfer failed", "memory error", "invalid parameter",
          "network error", "open session error", "state error", "create socket error",
          "DNS lookup failed", "connect socket error", "SSL handshake failed",
          "close socket error", "no network", "send data timeout", "certificate not set")
# the errno a native socket gives for the failures that are not the SSL layer's own
ERRNO = {4: errno.ECONNRESET, 5: errno.ETIMEDOUT, 9: errno.EHOSTUNREACH,
         13: errno.EHOSTUNREACH, 14: errno.ECONNREFUSED, 17: errno.EHOSTUNREACH,
         18: errno.ETIMEDOUT}


class SSLError(OSError):
    """The modem's SSL layer refused the connection (errno EACCES): ``ssl_err`` is its
    <err> (15 handshake failed: certificate not trusted, wrong name or dates, or no
    common protocol; 19 no CA certificate set), ``reason`` "handshake" or "no-ca"."""

    def __init__(self, msg, ssl_err):
        super().__init__(errno.EACCES, msg)
        self.ssl_err = ssl_err
        self.reason = "handshake" if ssl_err == HANDSHAKE else "no-ca"


def error_text(err):
    return ERRORS[err] if 0 <= err < len(ERRORS) else "error %d" % err


def command(at, cmd, prefix=None, timeout_ms=_CMD_MS, what="SSL setup"):
    """``at.command`` with its failures as OSError (EIO: refused; ETIMEDOUT)."""
    try:
        return at.command(cmd, prefix, timeout_ms=timeout_ms)
    except CommandError as e:
        raise OSError(errno.EIO, "%s: %s" % (what, e))
    except CommandTimeout as e:
        raise OSError(errno.ETIMEDOUT, "%s: %s" % (what, e))


def check_name(name):
    """A certificate file name: printable, no path, ``*.pem`` or ``*.der``."""
    quote.param(name, "certificate name", 64)
    if "/" in name or not (name.endswith(".pem") or name.endswith(".der")):
        raise ValueError("certificate name %r: a file name ending in .pem or .der" % (name,))


def check_cert(data):
    if not 0 < len(data) <= MAX_CERT:
        raise ValueError("certificate of %d bytes: AT+CCERTDOWN takes 1..%d"
                         % (len(data), MAX_CERT))


def download_cert(at, name, data):
    """Store certificate ``data`` (PEM or DER, 1..10240 bytes) as ``name`` with
    ``AT+CCERTDOWN`` (``>`` prompt, then the bytes). ValueError for a bad name or size
    (nothing is sent); OSError if the modem refuses or does not answer."""
    check_name(name)
    check_cert(data)
    try:
        at.command(('AT+CCERTDOWN="%s",%d' % (name, len(data))).encode(),
                   payload=bytes(data), timeout_ms=_CERT_MS)
    except CommandError as e:
        raise OSError(errno.EIO, "modem refused certificate %s: %s" % (name, e))
    except CommandTimeout as e:
        raise OSError(errno.ETIMEDOUT, "certificate %s: %s" % (name, e))


def list_certs(at):
    """The names of the certificates stored on the modem (``AT+CCERTLIST``)."""
    lines = command(at, b"AT+CCERTLIST", b"+CCERTLIST:").lines
    return [v[0].decode() for v in (fields(ln, 11) for ln in lines) if v and v[0]]


def delete_cert(at, name):
    check_name(name)
    command(at, ('AT+CCERTDELE="%s"' % name).encode())
