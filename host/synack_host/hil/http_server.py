"""A reference HTTP server for HIL tests: HTTP/1.0 and 1.1, keep-alive, chunked bodies,
ETag / If-None-Match (304), long-poll, and a presence endpoint — recording every TCP
connection and every request so tests can assert what the device did.

Routes (all GET unless noted):

- ``/data``: the current resource (``set_resource()``), with its ETag; a matching
  If-None-Match gets 304 and no body.
- ``/chunked?n=N``: N bytes of body in chunked transfer coding (HTTP/1.1 only).
- ``/longpoll``: held until the resource's ETag differs from the request's
  If-None-Match (or ``?etag=E``) or T seconds passed (then 304); T from
  ``Prefer: wait=T`` (RFC 7240) or ``?wait=T``, default 5, at most 60.
- ``/presence/<device>`` (GET or POST): a heartbeat; the device is online until it misses
  ``presence_timeout`` seconds, then offline (``presence()`` tells which).
- ``POST /messages``: stores the body under the ``X-Message-Id`` header (deduplicated)
  and acknowledges with 200.

``version`` "1.0" makes the server answer as HTTP/1.0 and close after every response
(unless the client asked ``Connection: keep-alive``); ``close_after`` closes a keep-alive
connection after that many responses, as servers with a per-connection limit do.

``tls`` (an ``ssl.SSLContext`` for the server side, e.g. ``Pki.server_context()``) makes
it an HTTPS server: each accepted connection does a TLS handshake first. ``handshakes``
counts those completed, ``tls_errors`` keeps why the others failed (a client that
refused the certificate says so with an alert), ``handshake_times`` their durations
(accept to done, seconds). ``received_bytes`` counts the plaintext request bytes read
(after decryption): 0 after a refused handshake.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from .servers import ScriptedServer

MAX_HEAD = 16384


@dataclass
class Request:
    connection: int          # index of the TCP connection it came on (0-based)
    method: str
    path: str
    version: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    at: float = field(default_factory=time.monotonic)


class HttpServer(ScriptedServer):
    def __init__(self, host: str = "127.0.0.1", version: str = "1.1",
                 close_after: int = 0, presence_timeout: float = 3.0,
                 tls: ssl.SSLContext | None = None):
        self.version = version
        self.tls = tls
        self.handshakes = 0
        self.handshake_times: list[float] = []
        self.tls_errors: list[str] = []
        self.received_bytes = 0
        self.close_after = close_after
        self.presence_timeout = presence_timeout
        self.requests: list[Request] = []
        self.messages: dict[str, bytes] = {}
        self.duplicates = 0
        self._heartbeats: dict[str, float] = {}
        self._resource = b"hello"
        self._resource_changed = threading.Condition()
        self._indices = 0
        super().__init__(self._handle_connection, host=host)

    # -- what tests control and read ------------------------------------------------
    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self._resource).hexdigest()[:16] + '"'

    def set_resource(self, body: bytes) -> None:
        with self._resource_changed:
            self._resource = body
            self._resource_changed.notify_all()

    def presence(self, device: str) -> str:
        seen = self._heartbeats.get(device)
        if seen is None:
            return "unknown"
        return "online" if time.monotonic() - seen <= self.presence_timeout else "offline"

    def url(self, path: str = "/data", host: str | None = None) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{host or self.address[0]}:{self.port}{path}"

    # -- serving ----------------------------------------------------------------------
    def stop(self) -> None:
        self.stopping = True
        with self._resource_changed:        # release held long-polls
            self._resource_changed.notify_all()
        super().stop()

    def _handle_connection(self, conn: socket.socket) -> None:
        with self._lock:
            index, self._indices = self._indices, self._indices + 1
        if self.tls is not None:
            tls_conn = self._tls_handshake(conn, self.tls)
            if tls_conn is None:
                return
            try:
                self._serve_http(tls_conn, index)
            finally:
                tls_conn.close()        # the raw socket was detached by the wrap
            return
        self._serve_http(conn, index)

    def _tls_handshake(self, conn: socket.socket, ctx: ssl.SSLContext) -> ssl.SSLSocket | None:
        """The server side of a TLS handshake on ``conn``, counted; None (and the
        reason kept in ``tls_errors``) if it failed. The wrapped socket joins the list
        stop() shuts down (the raw one is detached), so stopping ends TLS connections too."""
        t0 = time.monotonic()
        try:
            tls_conn = ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with self._changed:
                self.tls_errors.append(f"{type(e).__name__}: {e}")
                self._changed.notify_all()
            return None
        with self._changed:
            self.handshakes += 1
            self.handshake_times.append(time.monotonic() - t0)
            self._conns.append(tls_conn)
            self._changed.notify_all()
        return tls_conn

    def _serve_http(self, conn: socket.socket, index: int) -> None:
        reader = conn.makefile("rb")
        served = 0
        while not self.stopping:
            req = self._read_request(reader, index)
            if req is None:
                return
            self.requests.append(req)
            keep = self._respond(conn, req)
            served += 1
            if not keep or (self.close_after and served >= self.close_after):
                return

    def _read_request(self, reader, index: int) -> Request | None:
        try:
            line = reader.readline(MAX_HEAD)
            self.received_bytes += len(line)
            if not line:
                return None
            method, target, version = line.decode("latin-1").split()
            headers: dict[str, str] = {}
            while True:
                raw = reader.readline(MAX_HEAD)
                self.received_bytes += len(raw)
                h = raw.decode("latin-1").strip()
                if not h:
                    break
                name, _, value = h.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = reader.read(int(headers.get("content-length", "0") or 0))
            self.received_bytes += len(body)
        except (OSError, ValueError):
            return None
        return Request(index, method, target, version, headers, body)

    def _respond(self, conn: socket.socket, req: Request) -> bool:
        url = urlsplit(req.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        wants_close = req.headers.get("connection", "").lower() == "close"
        if self.version == "1.0" or req.version == "HTTP/1.0":
            keep = req.headers.get("connection", "").lower() == "keep-alive"
        else:
            keep = not wants_close
        status, headers, body, chunked = self._route(req, url.path, query)
        req.status = status
        version = "HTTP/1.0" if self.version == "1.0" else "HTTP/1.1"
        if chunked and version == "HTTP/1.0":
            chunked, keep = False, False    # 1.0 has no chunked coding: close-delimited
        head = [f"{version} {status} {_REASONS.get(status, 'OK')}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if chunked:
            head.append("Transfer-Encoding: chunked")
        elif keep or status not in (204, 304):
            head.append(f"Content-Length: {len(body)}")
        head.append("Connection: " + ("keep-alive" if keep else "close"))
        payload = ("\r\n".join(head) + "\r\n\r\n").encode()
        if req.method != "HEAD" and status not in (204, 304):
            if chunked:
                for i in range(0, len(body), 1000):
                    part = body[i:i + 1000]
                    payload += b"%x\r\n%s\r\n" % (len(part), part)
                payload += b"0\r\n\r\n"
            else:
                payload += body
        try:
            conn.sendall(payload)
        except OSError:
            return False
        return keep

    def _route(self, req: Request, path: str, query: dict[str, str]):
        if path == "/data":
            if req.headers.get("if-none-match") == self.etag:
                return 304, {"ETag": self.etag}, b"", False
            return 200, {"ETag": self.etag}, self._resource, False
        if path == "/chunked":
            n = int(query.get("n", "100"))
            return 200, {}, bytes(i % 251 for i in range(n)), True
        if path == "/longpoll":
            seen = req.headers.get("if-none-match") or query.get("etag")
            wait = min(_prefer_wait(req.headers.get("prefer")) or
                       float(query.get("wait", "5")), 60.0)
            with self._resource_changed:
                self._resource_changed.wait_for(lambda: self.etag != seen or
                                                self.stopping, timeout=wait)
            if self.etag == seen:
                return 304, {"ETag": self.etag}, b"", False
            return 200, {"ETag": self.etag}, self._resource, False
        if path.startswith("/presence/"):
            self._heartbeats[path[len("/presence/"):]] = time.monotonic()
            return 204, {}, b"", False
        if path == "/messages" and req.method == "POST":
            mid = req.headers.get("x-message-id")
            if not mid:
                return 400, {}, b"X-Message-Id header required", False
            if mid in self.messages:
                self.duplicates += 1
            self.messages[mid] = req.body
            return 200, {}, b"ack " + mid.encode(), False
        return 404, {}, b"not found", False


def _prefer_wait(prefer: str | None) -> float:
    """``Prefer: wait=10`` -> 10.0 (0.0 when absent or unreadable)."""
    for pref in (prefer or "").split(","):
        name, _, value = pref.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0
    return 0.0


_REASONS = {200: "OK", 204: "No Content", 304: "Not Modified", 400: "Bad Request",
            404: "Not Found"}
