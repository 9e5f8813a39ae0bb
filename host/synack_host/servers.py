"""Reference TCP servers on 127.0.0.1 for tests, benchmarks and the selftest.

Each server listens on an ephemeral port, serves every connection in its own thread,
and stops within a bounded time: ``stop()`` closes the listener and every connection and
joins the threads with a timeout. Servers record what a test wants to assert about the
TCP lifecycle from the server's side: how many connections were accepted, and for the
echo server which side closed first.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

JOIN_TIMEOUT_S = 2.0
CONN_TIMEOUT_S = 30.0     # a handler blocked on a silent client gives up after this


class ScriptedServer:
    """Runs ``handler(conn)`` for every accepted connection, each in its own thread.

    ``handler`` may send, receive and close as it likes (e.g. "send bytes, then close
    first"); the connection is closed after it returns. ``connections`` counts accepted
    connections.
    """

    def __init__(self, handler: Callable[[socket.socket], None], host: str = "127.0.0.1"):
        self.handler = handler
        self.connections = 0
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._listen((host, 0))

    def _listen(self, address: tuple[str, int]) -> None:
        self.listener = socket.create_server(address)   # SO_REUSEADDR: restart() reuses it
        self.listener.settimeout(0.2)
        self.address: tuple[str, int] = self.listener.getsockname()[:2]
        self.port = self.address[1]
        self.stopping = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True,
                                          name=f"{type(self).__name__}:{self.port}")
        self._acceptor.start()

    def restart(self, down_s: float = 0.0) -> None:
        """A server restart: every connection closed, the port refusing connections for
        ``down_s`` seconds, then listening again on the same port (records are kept)."""
        self.stop()
        with self._lock:
            self._conns.clear()
        time.sleep(down_s)
        self._listen(self.address)

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(CONN_TIMEOUT_S)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._changed:
                self.connections += 1
                self._conns.append(conn)
                self._threads.append(t)
                self._changed.notify_all()
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except OSError:
            pass
        finally:
            conn.close()
            with self._changed:
                self._changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait (bounded) until ``predicate()`` holds; it is re-checked whenever a
        connection is accepted or finishes. Returns the last value."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.1))
        return True

    def stop(self) -> None:
        """Close the listener and every connection; join threads (bounded)."""
        self.stopping = True
        self.listener.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._acceptor.join(JOIN_TIMEOUT_S)
        for t in list(self._threads):
            t.join(JOIN_TIMEOUT_S)
        for c in conns:
            c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class EchoServer(ScriptedServer):
    """Echoes every byte back.

    For each finished connection ``closed_by_client`` gets True if the client closed
    first (its FIN reached us while we were still serving), False if the connection
    ended otherwise (reset, or the server was stopped). ``received`` counts bytes.
    """

    def __init__(self, host: str = "127.0.0.1"):
        self.closed_by_client: list[bool] = []
        self.received = 0
        super().__init__(self._echo, host)

    def _echo(self, conn: socket.socket) -> None:
        peer_fin = False
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    peer_fin = not self.stopping   # our own shutdown() also reads as b""
                    return
                with self._lock:
                    self.received += len(data)
                conn.sendall(data)
        finally:
            with self._lock:
                self.closed_by_client.append(peer_fin)
