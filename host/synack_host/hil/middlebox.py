"""Middleboxes and a heartbeat peer for tests of long-lived connections.

``IdleKillingProxy`` is a userspace NAT/firewall as a device sees it: it forwards TCP and
closes both sides of a connection that carried nothing for ``idle_s`` seconds.
``heartbeat_server()`` makes a ScriptedServer handler that speaks synack's one-line
heartbeat protocol (``HB n`` -> ``HBACK n``), echoes ``ECHO`` lines and pushes lines on a
schedule.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time


class IdleKillingProxy:
    """A userspace middlebox (a NAT or firewall as a device sees it): forwards TCP to
    ``upstream`` and closes both sides of any connection that carried no byte in either
    direction for ``idle_s``. ``kills`` counts connections it killed that way."""

    def __init__(self, upstream: tuple[str, int], idle_s: float, host: str = "127.0.0.1"):
        self.upstream = upstream
        self.idle_s = idle_s
        self.kills = 0
        self.connections = 0
        self.stopping = False
        self.listener = socket.create_server((host, 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            up = socket.create_connection(self.upstream, timeout=2)
            self.connections += 1
            t = threading.Thread(target=self._pump, args=(client, up), daemon=True)
            self._threads.append(t)
            t.start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        last = time.monotonic()
        with selectors.DefaultSelector() as sel:
            for s in (a, b):
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
            try:
                while not self.stopping:
                    if time.monotonic() - last > self.idle_s:
                        self.kills += 1
                        return
                    for key, _ in sel.select(0.02):
                        src = key.fileobj
                        data = src.recv(65536)
                        if not data:
                            return
                        peer[src].setblocking(True)
                        peer[src].sendall(data)
                        peer[src].setblocking(False)
                        last = time.monotonic()
            except OSError:
                return
            finally:
                a.close()
                b.close()

    def stop(self) -> None:
        self.stopping = True
        self.listener.close()
        self._acceptor.join(2)
        for t in self._threads:
            t.join(2)

    def __enter__(self) -> IdleKillingProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def heartbeat_server(answer: bool = True, pushes: tuple = (), log: list | None = None):
    """A handler for ScriptedServer: answers ``HB n`` with ``HBACK n`` (unless
    ``answer`` is False), echoes ``ECHO ...`` lines, and sends each (delay_s, line) of
    ``pushes`` at that time after accepting. ``log`` gets (t, direction, line)."""

    def handler(conn: socket.socket) -> None:
        t0 = time.monotonic()
        todo = list(pushes)
        buf = b""
        conn.settimeout(0.02)
        while True:
            now = time.monotonic() - t0
            while todo and todo[0][0] <= now:
                line = todo.pop(0)[1]
                conn.sendall(line + b"\n")
                if log is not None:
                    log.append((now, "push", line))
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if log is not None:
                    log.append((time.monotonic() - t0, "in", line))
                if line.startswith(b"HB ") and answer:
                    conn.sendall(b"HBACK " + line[3:] + b"\n")
                elif line.startswith(b"ECHO "):
                    conn.sendall(line + b"\n")

    return handler
