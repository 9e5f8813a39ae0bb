"""The contract between synack.socket and what carries its bytes (a *backend*): the
platform's own TCP/IP stack (native.py) or a cellular modem's (modems/).

A synack socket calls exactly these methods; a backend subclasses ``Backend``. The
socket owns its fields; a backend reads the public ones only:

- ``sock.tcp``: the socket's TCP lifecycle (tcp.Connection). The backend fires its
  events (CONNECT, CONNECTED, PEER_FIN, RESET ...) as it learns them.
- ``sock.handle``: what ``connect_start`` returned (a link number, a platform socket);
  None before a connect and after a failed one.
- ``sock.peer``: ``(host, port)`` of the connect.
- ``sock.keepalive_settings``: the keepalive.Keepalive asked for, or None, and
  ``sock.keepalive_mechanism``: what ``keepalive_mechanism()`` chose for it.

Errors: every method raises OSError with the errno a native socket would give
(ECONNREFUSED, ECONNRESET, ENOTCONN, ETIMEDOUT, EHOSTUNREACH, EAGAIN ...); a modem's
own failures that escape a backend are mapped by the socket as a backstop.
"""

import errno

try:
    from typing import TYPE_CHECKING  # absent on MicroPython: only type checkers see it
except ImportError:
    TYPE_CHECKING = False
if TYPE_CHECKING: from typing import Any  # noqa: F401 (used in type comments)

# poll flags (select.POLLIN ...; MicroPython's MP_STREAM_POLL_*)
POLLIN = 1
POLLOUT = 4
POLLERR = 8
POLLHUP = 16

_SOL_SOCKET = 1  # synack.socket's SOL_SOCKET and SO_REUSEADDR: accepted, meaningless
_SO_REUSEADDR = 4


class Backend:
    """Override what a backend can do; the defaults say what it cannot."""

    name = "backend"
    # the longest a connect may take when the socket has no timeout of its own; None:
    # as long as the transport itself allows
    connect_limit_ms = None  # type: int | None

    def getaddrinfo(self, host, port):
        # type: (Any, int) -> list
        """``[(family, type, proto, canonname, (ip, port))]`` for ``host``."""
        raise OSError(errno.EOPNOTSUPP, "%s cannot resolve names" % self.name)

    # -- connect: prepared, started, then polled until the outcome is known ------------
    def connect_prepare(self, sock, limit_ms):
        # type: (Any, int | None) -> Any
        """For a non-blocking connect: what must happen before ``connect_start`` that may
        take long (a modem reopens its bearer), as an object whose ``advance()`` does
        what can be done now and returns True once done (raising its failure), and whose
        ``cancel()`` gives it up (an at/steps.Stepper); None: nothing to prepare. A
        blocking connect does the same inside ``connect_start``."""
        return None

    def connect_start(self, sock, host, port, limit_ms):
        # type: (Any, Any, int, int | None) -> tuple
        """Start connecting ``sock`` to ``(host, port)`` within ``limit_ms`` (None: no
        limit of the caller's). Returns ``(handle, established)``: the handle the socket
        keeps (``sock.handle``) and whether the connection is up already. Raises the
        failure (the socket then has no handle)."""
        raise OSError(errno.EOPNOTSUPP, "%s cannot connect" % self.name)

    def connect_poll(self, sock, wait_ms):
        # type: (Any, int | None) -> bool
        """Wait up to ``wait_ms`` (0: look only; None: as long as the transport allows)
        for the outcome: True once established, False while pending; raises the failure
        (the backend has released the handle then)."""
        raise OSError(errno.EOPNOTSUPP, "%s cannot connect" % self.name)

    def connect_abort(self, sock, limit_ms):
        # type: (Any, int) -> OSError
        """No outcome within ``limit_ms``: give the attempt up, release the handle and
        return (not raise) the OSError for the caller, ETIMEDOUT."""
        return OSError(errno.ETIMEDOUT, "connect: not established within %d ms" % limit_ms)

    # -- data ------------------------------------------------------------------------
    def send(self, sock, data, timeout_ms):
        # type: (Any, Any, int | None) -> int
        """Send a prefix of ``data`` (a memoryview); returns how many bytes were taken.
        ``timeout_ms``: 0 non-blocking (EAGAIN), None blocking."""
        raise OSError(errno.EOPNOTSUPP, "%s cannot send" % self.name)

    def recv_into(self, sock, buf, timeout_ms):
        # type: (Any, Any, int | None) -> int
        """Read into ``buf`` (a memoryview): at least one byte, 0 at the end of the
        stream; EAGAIN when non-blocking with nothing there, ETIMEDOUT after
        ``timeout_ms``."""
        raise OSError(errno.EOPNOTSUPP, "%s cannot receive" % self.name)

    def poll_flags(self, sock, flags):
        # type: (Any, int) -> int
        """Which of ``flags`` (POLLIN, POLLOUT) hold now, plus POLLERR/POLLHUP, without
        blocking. The default cannot tell: it says ready, and the call then blocks."""
        return flags & (POLLIN | POLLOUT)

    def close(self, sock, timeout_ms=None):
        # type: (Any, int | None) -> None
        """Close the connection (FIN, as the transport allows) and release the handle;
        never raises for a peer that is gone already."""

    # -- options -----------------------------------------------------------------------
    def keepalive_mechanism(self, ka):
        # type: (Any) -> str
        """How this backend keeps ``ka`` (a keepalive.Keepalive): keepalive.TCP (the
        stack's own probes), keepalive.MODEM (the modem's) or keepalive.PROBE (it cannot:
        the application runs a heartbeat)."""
        return "probe"  # keepalive.PROBE, without loading that module

    def setsockopt(self, sock, level, option, value):
        if level == _SOL_SOCKET and option == _SO_REUSEADDR:
            return  # a client socket: nothing to reuse
        raise OSError(errno.EOPNOTSUPP, "option %d/%d not supported by %s"
                      % (level, option, self.name))
