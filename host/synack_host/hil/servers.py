"""Reference TCP servers on 127.0.0.1 for tests, benchmarks and the selftest.

Each server listens on an ephemeral port, serves every connection in its own thread,
and stops within a bounded time (``stop()`` closes the listener and every connection and
joins the threads with a timeout).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


class ScriptedServer:
    """Runs ``handler(conn)`` for every accepted connection (in its own thread)."""

    def __init__(self, handler: Callable[[socket.socket], None], host: str = "127.0.0.1"):
        self.handler = handler
        self.listener = socket.create_server((host, 0))
        self.listener.settimeout(0.2)
        self.address = self.listener.getsockname()[:2]
        self.port = self.address[1]
        self.connections = 0
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._running = True
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while self._running:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(30)
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        self._running = False
        self.listener.close()
        with self._lock:
            for c in self._conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
        self._acceptor.join(2)
        for t in self._threads:
            t.join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class EchoServer(ScriptedServer):
    """Echoes every byte back; records whether each client closed first (its FIN seen
    while the server still had the connection open) in ``closed_by_client``."""

    def __init__(self, host: str = "127.0.0.1"):
        self.closed_by_client: list[bool] = []
        super().__init__(self._echo, host)

    def _echo(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                self.closed_by_client.append(False)
                return
            if not data:
                self.closed_by_client.append(True)
                return
            conn.sendall(data)
