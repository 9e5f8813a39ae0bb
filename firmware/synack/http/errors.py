"""Exceptions of the HTTP layer.

Socket-level failures (refused, reset, timed out) stay ``OSError`` with the errno a
native socket gives, so code that already handles socket errors keeps working. What is
wrong with the HTTP conversation itself is an ``HTTPError``: it carries a readable
message, the status code when a response got that far (``status``, else None), and the
URL of the request when the client knows it (``url``).
"""


class HTTPError(Exception):
    """Base class of everything the HTTP layer raises that is not a socket error."""

    def __init__(self, msg, status=None, url=None):
        super().__init__(msg)
        self.msg = msg
        self.status = status
        self.url = url

    def __str__(self):
        text = self.msg
        if self.status is not None:
            text = "HTTP %d: %s" % (self.status, text)
        if self.url:
            text = "%s (%s)" % (text, self.url)
        return text


class ProtocolError(HTTPError):
    """The server's bytes are not valid HTTP/1.x (the *remote* side broke the rules):
    a malformed status line or header, a bad chunk size, a body cut short."""


class LimitError(ProtocolError):
    """The response is valid HTTP but larger than this client agreed to handle:
    ``limit`` names which limit (``"header bytes"``, ``"header line"``,
    ``"header count"``, ``"body size"``) and ``value`` its configured size."""

    def __init__(self, limit, value, msg, status=None):
        super().__init__(msg, status)
        self.limit = limit
        self.value = value


class ConnectionClosed(ProtocolError):
    """The server closed the connection before sending a single byte of the response.
    On a pooled keep-alive connection this means it had timed out the idle connection
    (a "stale" connection); the client retries an idempotent request once."""


class LocalProtocolError(HTTPError):
    """The request we were asked to send is not valid HTTP (the *local* side): a header
    value with CR/LF in it, a method that is not a token, an unsupported URL."""


class TooManyRedirects(HTTPError):
    """More redirects than the client's ``max_redirects``; ``status`` is the last one."""


class StatusError(HTTPError):
    """Raised by ``Response.raise_for_status()`` for a 4xx or 5xx status."""
