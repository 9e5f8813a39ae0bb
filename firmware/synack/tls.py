"""Software TLS over any synack socket (native or modem): ``wrap()``.

    from synack import socket, tls
    s = socket.socket(backend=modem)
    s.connect(("example.com", 443))
    t = tls.wrap(s, "example.com", cadata=open("ca.der", "rb").read())
    t.write(b"GET / HTTP/1.1\\r\\nHost: example.com\\r\\n\\r\\n")
    print(t.readline())

On MicroPython the port's own ``ssl`` (mbedTLS) does the work: ``ssl.SSLContext
(PROTOCOL_TLS_CLIENT)``, ``CERT_REQUIRED``, ``load_verify_locations(cadata=...)`` (DER or
PEM bytes), ``wrap_socket(..., server_hostname=...)``. On CPython the same calls go to
CPython's ``ssl`` through an ``SSLObject`` and two ``MemoryBIO``s whose bytes this module
pumps over the synack socket, so the same firmware code and tests run on both.

Verification is on unless ``verify=False``: the certificate chain must end at a CA
given as ``cadata`` (DER or PEM bytes) or ``cafile`` (a file on flash, read into
memory); the name in ``server_hostname`` must match. Refusals are ``VerifyError``s, one
class per cause, raised before a single application byte is sent:

    TLSError(OSError)            errno EIO: the handshake failed otherwise (an alert, a
                                 protocol error, no CA given to verify with)
      VerifyError                errno EACCES: the peer is not trusted
        UnknownCA                the chain does not end at a given CA
        HostnameMismatch         the certificate is for another name
        CertificateExpired       expired (``reason`` "expired") or not yet valid
                                 ("not-yet-valid"): a wrong clock shows up here
        ClockNotSet              the device clock reads before 2024: set it first
                                 (``synack.clock``); checked before the handshake

Each has ``reason`` (a short word, as above: "handshake", "unknown-ca", "hostname",
"expired", "not-yet-valid", "clock-not-set"). Socket failures during the handshake
(timeout, reset) stay plain ``OSError``s with the socket's errno. Keys are never put in
a message or a log.

The stream returned has what a client needs: ``write(buf[, off[, n]])``, ``send``,
``sendall``, ``recv_into`` (what is available: at least one byte, 0 at the end, EAGAIN
non-blocking), ``readinto``/``read``/``readline`` (stream semantics as synack.socket),
``settimeout``/``setblocking`` (the socket's), ``state``/``tcp`` (the socket's TCP
state and log) and ``close()`` (close_notify, then the TCP close). ``wire_in`` and
``wire_out`` count the bytes that crossed the socket (records, not plaintext).
"""

import errno
import sys

from micropython import const

from . import clock, stream

try:
    from typing import TYPE_CHECKING  # absent on MicroPython: only type checkers see it
except ImportError:
    TYPE_CHECKING = False
if TYPE_CHECKING: from typing import Any  # noqa: F401 (used in type comments)

_EIO = const(5)
_EACCES = const(13)
_EAGAIN = const(11)
_MP_STREAM_POLL = const(3)
_MP_STREAM_CLOSE = const(4)
_RAW = const(2048)  # CPython: bytes moved from the socket to the BIO per read

_MICROPYTHON = sys.implementation.name == "micropython"
_Stream = object  # type: Any
if _MICROPYTHON:
    import io
    _Stream = io.IOBase

HOW_TO_SET_CLOCK = ("set it from the network first: synack.clock.sync_modem(modem) "
                    "(AT+CCLK?) or synack.clock.sync_http('http://...', client) (a Date header), "
                    "or machine.RTC().datetime(...)")


class TLSError(OSError):
    """A TLS failure: ``errno`` EIO (EACCES for a ``VerifyError``), ``reason`` a word."""

    reason = "handshake"

    def __init__(self, msg, reason=None, code=_EIO):
        super().__init__(code, msg)
        if reason is not None:
            self.reason = reason


class VerifyError(TLSError):
    """The server's certificate is not trusted (errno EACCES)."""

    def __init__(self, msg, reason=None):
        super().__init__(msg, reason, _EACCES)


class UnknownCA(VerifyError):
    """The certificate chain does not end at a CA this device trusts."""

    reason = "unknown-ca"


class HostnameMismatch(VerifyError):
    """The certificate names another host than ``server_hostname``."""

    reason = "hostname"


class CertificateExpired(VerifyError):
    """The certificate has expired (``reason`` "expired") or is not valid yet
    ("not-yet-valid"), by the device clock."""

    reason = "expired"


class ClockNotSet(VerifyError):
    """The device clock is before 2024: certificate dates cannot be checked."""

    reason = "clock-not-set"


def check_clock():
    """Raise ClockNotSet unless the device clock is plausible (2024 or later)."""
    if not clock.is_set():
        raise ClockNotSet("the device clock reads %s, so certificate dates cannot be "
                          "checked: %s" % (clock.date_text(clock.now()), HOW_TO_SET_CLOCK))


def _read_file(path):
    with open(path, "rb") as f:
        return f.read()


def _is_pem(data):
    return bytes(data[:64]).lstrip().startswith(b"-----BEGIN")


def pem_to_der(data, label=b"CERTIFICATE"):
    """The DER bytes of each ``-----BEGIN <label>-----`` block in PEM ``data``; with
    ``label`` b"PRIVATE KEY" also the ``EC``/``RSA PRIVATE KEY`` forms. The port's mbedTLS
    calls take DER: ``load_verify_locations`` one certificate per call, and
    ``load_cert_chain`` refuses PEM outright ("invalid key"/"invalid cert")."""
    import binascii
    out = []
    data = bytes(data)
    i = data.find(b"-----BEGIN ")
    while i >= 0:
        head_end = data.find(b"-----", i + 11)
        if head_end < 0:
            raise ValueError("PEM block without the end of its BEGIN line")
        kind = data[i + 11:head_end]
        end = b"-----END " + kind + b"-----"
        j = data.find(end, head_end)
        if j < 0:
            raise ValueError("PEM %s without its END line" % kind.decode())
        if kind == label or kind.endswith(b" " + label):
            try:
                out.append(binascii.a2b_base64(b"".join(data[head_end + 5:j].split())))
            except ValueError:
                raise ValueError("PEM %s is not valid base64" % kind.decode())
        i = data.find(b"-----BEGIN ", j + len(end))
    if not out:
        raise ValueError("no %s in the PEM data" % label.decode().lower())
    return out


class Context:
    """A client TLS configuration, made once and used for many connections (the CA is
    parsed once). Arguments as ``wrap()``."""

    def __init__(self, cadata=None, cafile=None, cert=None, key=None, verify=True):
        import ssl  # lazy: a device without TLS never loads it
        self.verify = verify
        if cafile is not None and cadata is None:
            cadata = _read_file(cafile)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if not verify:
            if not _MICROPYTHON:
                ctx.check_hostname = False  # type: ignore[attr-defined]
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx.verify_mode = ssl.CERT_REQUIRED
            if cadata is not None:
                if not _is_pem(cadata):
                    ctx.load_verify_locations(cadata=cadata)
                elif _MICROPYTHON:  # each certificate as DER (the calls add up)
                    for der in pem_to_der(cadata):
                        ctx.load_verify_locations(cadata=der)
                else:  # CPython: PEM as str, DER as bytes
                    ctx.load_verify_locations(cadata=bytes(cadata).decode())  # type: ignore[arg-type]
            elif _MICROPYTHON:
                raise TLSError("no CA to verify the server with: give cadata= or cafile= "
                               "(or verify=False, which trusts anyone)")
            else:
                ctx.load_default_certs()  # type: ignore[attr-defined]
        if cert is not None or key is not None:
            if _MICROPYTHON:  # bytes or files on flash, PEM or DER; mbedTLS here takes DER
                if isinstance(cert, str):
                    cert = _read_file(cert)
                if isinstance(key, str):
                    key = _read_file(key)
                if cert is not None and _is_pem(cert):
                    cert = pem_to_der(cert)[0]  # the leaf: a DER call takes one certificate
                if key is not None and _is_pem(key):
                    key = pem_to_der(key, b"PRIVATE KEY")[0]
                ctx.load_cert_chain(cert, key)
            elif isinstance(cert, str) and (key is None or isinstance(key, str)):
                ctx.load_cert_chain(cert, key)  # CPython loads files only
            else:
                raise ValueError("on CPython give cert= and key= as file paths")
        self.ctx = ctx

    def wrap_socket(self, sock, server_hostname=None):
        """``ssl.SSLContext.wrap_socket`` as MicroPython clients call it (umqtt.simple
        does ``self.ssl.wrap_socket(self.sock, server_hostname=self.server)``), so a
        Context can be handed to them as their ``ssl``. Verification needs the name."""
        if server_hostname is None and self.verify:
            try:
                sock.close()
            except OSError:
                pass  # being thrown away: its close cannot fail the caller
            raise TLSError("server_hostname is needed to verify the server", "hostname")
        return wrap(sock, server_hostname, context=self)


def wrap(sock, server_hostname, cadata=None, cafile=None, cert=None, key=None, verify=True,
         context=None):
    """Do a TLS client handshake over the connected synack socket ``sock`` and return
    the TLS stream (``TLSSocket``). ``server_hostname``: the name the certificate must
    carry (and SNI). ``cadata``: the CA(s) as DER or PEM bytes; ``cafile``: a file
    holding them; ``cert``/``key``: a client certificate (bytes, or file paths);
    ``verify``: False trusts any server (tests only). ``context``: a ``Context`` made
    once for many connections (the other TLS arguments are then ignored).

    The handshake waits within the socket's timeout for each read. On failure the
    socket is closed and a TLSError (or the socket's OSError) raised."""
    try:
        if context is None:
            context = Context(cadata, cafile, cert, key, verify)
        if context.verify:
            check_clock()
        t = TLSSocket(sock, context, server_hostname)
    except BaseException:
        try:
            sock.close()
        except OSError:
            pass  # the connection is being thrown away: its close cannot fail the caller
        raise
    return t


# -- errors of either implementation as our classes ----------------------------------------
def _from_text(text):
    """The VerifyError for mbedTLS's verification text (x509_crt_verify_strings; it
    lists every cause found: the CA is reported first, as OpenSSL would)."""
    msg = "certificate refused: " + " ".join(text.split())
    if "signed by the trusted CA" in text:
        return UnknownCA(msg)
    if "has expired" in text:
        return CertificateExpired(msg, "expired")
    if "starts in the future" in text:
        return CertificateExpired(msg, "not-yet-valid")
    if "does not match with the expected CN" in text:
        return HostnameMismatch(msg)
    return VerifyError(msg, "verify")


# OpenSSL X509_V_ERR_* codes
_X509_NOT_YET_VALID = (9,)
_X509_EXPIRED = (10,)
_X509_UNTRUSTED = (2, 7, 18, 19, 20, 21, 27, 28)
_X509_HOST = (62, 64)


def _from_cpython(e):
    code = getattr(e, "verify_code", None)
    if code is None:  # not a verification failure: an alert, a protocol error
        return TLSError("TLS handshake failed: %s" % (getattr(e, "reason", None) or e,))
    msg = "certificate refused: %s" % getattr(e, "verify_message", e)
    if code in _X509_HOST:
        return HostnameMismatch(msg)
    if code in _X509_EXPIRED:
        return CertificateExpired(msg, "expired")
    if code in _X509_NOT_YET_VALID:
        return CertificateExpired(msg, "not-yet-valid")
    if code in _X509_UNTRUSTED:
        return UnknownCA(msg)
    return VerifyError(msg, "verify")


class _Pipe(_Stream):
    """MicroPython: the stream the port's ssl reads records from and writes them to.
    It sits on the synack socket to let a read return what is available: in ``hold``
    mode a read that would wait answers None (EAGAIN, mbedTLS keeps its partial record)
    and the TLS socket waits itself, for one byte it then hands over first (``stash``).
    """

    def __init__(self, sock):
        self.sock = sock
        self.hold = False
        self.stash = -1
        self.eof = False
        self.one = bytearray(1)
        self.wire_in = 0
        self.wire_out = 0

    def readinto(self, buf, nbytes=None):
        mv = memoryview(buf)
        if nbytes is not None:
            mv = mv[:nbytes]
        if not len(mv):
            return 0
        if self.stash >= 0:
            mv[0] = self.stash
            self.stash = -1
            return 1
        if self.eof:
            return 0
        if self.hold:
            try:
                n = self.sock.recv_into(mv)
            except OSError as e:
                if e.args[0] == _EAGAIN:
                    return None
                raise
        else:
            n = self.sock.recv_into(mv)
        if not n:
            self.eof = True
        self.wire_in += n
        return n

    def wait(self):
        """Block (within the socket's timeout) until a byte arrives; False at the end."""
        n = self.sock.recv_into(self.one)
        if not n:
            self.eof = True
            return False
        self.wire_in += 1
        self.stash = self.one[0]
        return True

    def write(self, buf, off=None, n=None):
        mv = memoryview(buf)
        if n is not None:
            mv = mv[off or 0:(off or 0) + n]
        elif off is not None:
            mv = mv[:off]
        sent = self.sock.write(mv)
        self.wire_out += sent or 0
        return sent

    def ioctl(self, request, arg):
        if request == _MP_STREAM_CLOSE:
            self.sock.close()
            return 0
        if request == _MP_STREAM_POLL:
            return self.sock.ioctl(request, arg)
        return -22  # EINVAL


class TLSSocket:
    """A TLS client connection over a synack socket (made by ``wrap()``)."""

    def __init__(self, sock, context, server_hostname):
        self.sock = sock
        self.server_hostname = server_hostname
        self._timeout = None  # type: Any  # seconds, as settimeout took it
        self._closed = False
        self._eof = False
        self._pipe = None  # type: Any
        self._in = None  # type: Any
        self._out = None  # type: Any
        self._raw = None  # type: Any
        self._cpy_wire_in = 0
        self._cpy_wire_out = 0
        if _MICROPYTHON:
            self._pipe = _Pipe(sock)
            try:
                self._ssl = context.ctx.wrap_socket(self._pipe,
                                                    server_hostname=server_hostname)
            except ValueError as e:  # mbedTLS's verification result, as text
                raise _from_text(str(e.args[0]) if e.args else "")
            except OSError as e:
                if isinstance(e.args[0], int) and e.args[0] < 0:  # an mbedTLS error code
                    raise TLSError("TLS handshake failed: mbedTLS error -0x%04x %s"
                                   % (-e.args[0], " ".join(str(a) for a in e.args[1:])))
                raise
        else:
            import ssl
            self._in = ssl.MemoryBIO()  # type: ignore[attr-defined]
            self._out = ssl.MemoryBIO()  # type: ignore[attr-defined]
            self._raw = bytearray(_RAW)
            self._ssl = context.ctx.wrap_bio(  # type: ignore[attr-defined]
                self._in, self._out, server_hostname=server_hostname)
            self._cpython_handshake(ssl)

    # -- CPython: the SSLObject and its two BIOs ---------------------------------------
    def _cpython_handshake(self, ssl):
        while True:
            try:
                self._ssl.do_handshake()
                break
            except ssl.SSLWantReadError:  # type: ignore[attr-defined]
                self._flush()
                self._fetch()
            except ssl.SSLError as e:  # type: ignore[attr-defined]
                try:
                    self._flush()  # our alert tells the server why
                except OSError:
                    pass
                raise _from_cpython(e)
        self._flush()

    def _flush(self):
        data = self._out.read()
        if data:
            self.sock.sendall(data)
            self._cpy_wire_out += len(data)

    def _fetch(self):
        n = self.sock.recv_into(self._raw)
        if n:
            self._in.write(memoryview(self._raw)[:n])
            self._cpy_wire_in += n
        else:
            self._in.write_eof()
        return n

    def _cpython_recv_into(self, mv):
        import ssl
        while True:
            try:
                return self._ssl.read(len(mv), mv)
            except ssl.SSLWantReadError:  # type: ignore[attr-defined]
                self._flush()
                self._fetch()  # EAGAIN (non-blocking) and timeouts go to the caller
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):  # type: ignore[attr-defined]
                return 0
            except ssl.SSLError as e:  # type: ignore[attr-defined]
                raise TLSError("TLS read failed: %s" % (getattr(e, "reason", None) or e,))

    # -- MicroPython: the port's ssl socket over the pipe --------------------------------
    def _mp_recv_into(self, mv):
        pipe = self._pipe
        while True:
            pipe.hold = True
            self.sock.settimeout(0)  # what is there now; waiting is pipe.wait()'s
            try:
                n = self._ssl.readinto(mv)
            except OSError:
                if pipe.eof:
                    return 0
                raise
            finally:
                pipe.hold = False
                self.sock.settimeout(self._timeout)
            if n is not None:
                return n
            if self._timeout == 0:
                raise OSError(_EAGAIN, "no TLS data available")
            if not pipe.wait():
                return 0

    # -- the stream ------------------------------------------------------------------------
    @property
    def state(self):
        return self.sock.state

    @property
    def tcp(self):
        return self.sock.tcp

    @property
    def wire_in(self):
        return self._pipe.wire_in if self._pipe is not None else self._cpy_wire_in

    @property
    def wire_out(self):
        return self._pipe.wire_out if self._pipe is not None else self._cpy_wire_out

    def settimeout(self, seconds):
        self._timeout = seconds
        self.sock.settimeout(seconds)

    def setblocking(self, flag):
        self.settimeout(None if flag else 0)

    def _check(self):
        if self._closed:
            raise OSError(errno.EBADF, "TLS socket is closed")

    def recv_into(self, buf, nbytes=0):
        """Read what is available: at least one byte (0 at the end of the stream);
        OSError EAGAIN when non-blocking with nothing there."""
        self._check()
        mv = memoryview(buf)
        if nbytes:
            mv = mv[:nbytes]
        if not len(mv) or self._eof:
            return 0
        n = self._mp_recv_into(mv) if _MICROPYTHON else self._cpython_recv_into(mv)
        if not n:
            self._eof = True
        return n

    def recv(self, bufsize):
        buf = bytearray(bufsize)
        n = self.recv_into(buf)
        return bytes(buf) if n == bufsize else bytes(buf[:n])

    def readinto(self, buf, nbytes=None):
        """Fill ``buf`` (or ``nbytes`` of it) unless the stream ends first;
        non-blocking: what is available, None if nothing."""
        return stream.readinto(self.recv_into, buf, nbytes, self._nonblocking)

    def _nonblocking(self):
        return self._timeout == 0

    def read(self, size=-1):
        return stream.read(self.readinto, size)

    def readline(self, limit=-1):
        return stream.readline(self.readinto, limit)

    def write(self, buf, off=None, n=None):
        """Send all of ``buf`` (``write(buf, n)``/``write(buf, off, n)``: a part; str
        is encoded); returns the count of plaintext bytes."""
        self._check()
        mv = stream.view(buf, off, n)
        if _MICROPYTHON:
            return self._ssl.write(mv)
        import ssl
        try:
            self._ssl.write(mv)
        except ssl.SSLError as e:  # type: ignore[attr-defined]
            raise TLSError("TLS write failed: %s" % (getattr(e, "reason", None) or e,))
        self._flush()
        return len(mv)

    def send(self, data):
        return self.write(data)

    def sendall(self, data):
        self.write(data)

    def close(self):
        """Send close_notify (best effort) and close the TCP connection."""
        if self._closed:
            return
        self._closed = True
        try:
            if _MICROPYTHON:
                self._ssl.close()  # close_notify, then closes the pipe: the socket
            else:
                try:
                    self._ssl.unwrap()  # queues close_notify
                except OSError:
                    pass  # ssl.SSLError included: the session is over either way
                self._flush()
        except OSError:
            pass  # the peer may be gone: closing must not fail the caller
        finally:
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
