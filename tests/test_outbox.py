"""Outbox on a real directory, delivered by HTTP/1.1 POST over synack.socket to a real
local HTTP server that deduplicates on the message id: 200 messages queued offline,
delivered exactly once as the server sees them, across a reboot mid-delivery."""

from __future__ import annotations

import errno
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from synack import outbox as ob
from synack import socket as synsocket


class DedupServer(ThreadingHTTPServer):
    """POST /messages with ``X-Message-Id``: every request is logged in ``wire``; the
    first body per id is kept in ``messages``; every request is acked with 200."""

    daemon_threads = True

    def __init__(self, port: int = 0):
        self.wire: list[int] = []
        self.messages: dict[int, bytes] = {}
        self.connections = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", port), DedupHandler)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def get_request(self):
        conn, addr = super().get_request()
        self.connections += 1
        return conn, addr

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(2)


class DedupHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive: one connection for the whole flush
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall

    def do_POST(self) -> None:
        srv: DedupServer = self.server  # type: ignore[assignment]
        body = self.rfile.read(int(self.headers["Content-Length"]))
        mid = int(self.headers["X-Message-Id"])
        with srv.lock:
            srv.wire.append(mid)
            srv.messages.setdefault(mid, body)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


class HttpDeliverer:
    """deliver(id, payload) -> True when the server answered 200: a minimal HTTP/1.1
    POST over one persistent synack.socket, reconnecting after any failure."""

    def __init__(self, port: int):
        self.port = port
        self.sock: synsocket.socket | None = None
        self.posts = 0

    def _connect(self) -> synsocket.socket:
        s = synsocket.socket()
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", self.port))
        except OSError:
            s.close()
            raise
        return s

    def __call__(self, mid: int, payload: bytes) -> bool:
        if self.sock is None:
            self.sock = self._connect()
        s = self.sock
        try:
            s.write(b"POST /messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/octet-stream\r\n"
                    b"X-Message-Id: %d\r\nContent-Length: %d\r\n\r\n" % (mid, len(payload))
                    + payload)
            self.posts += 1
            status = s.readline()
            if not status:
                raise OSError(errno.ECONNRESET, "server closed the connection")
            length = 0
            while True:
                line = s.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            s.read(length)
            return status.split(b" ")[1] == b"200"
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class PowerLoss(Exception):
    """The device lost power: nothing after this point ran."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def payload(i: int) -> bytes:
    return b'{"seq": %d, "temp": %d.%d}' % (i, 20 + i % 7, i % 10)


def test_200_messages_queued_offline_delivered_exactly_once_across_a_reboot(tmp_path):
    directory = str(tmp_path / "outbox")
    port = free_port()
    box = ob.Outbox(ob.FileStore(directory), max_messages=256, max_bytes=64 * 1024)
    ids = [box.put(payload(i)) for i in range(200)]
    assert ids == list(range(1, 201))

    # Offline: nothing listens on the port; delivery fails, nothing is lost.
    offline = HttpDeliverer(port)
    with pytest.raises(OSError) as exc:
        box.flush(offline)
    assert exc.value.errno == errno.ECONNREFUSED
    assert len(box) == 200

    server = DedupServer(port)                    # the link is back
    try:
        deliverer = HttpDeliverer(port)
        acked = []

        def deliver_then_lose_power(mid, data):
            ok = deliverer(mid, data)
            if len(acked) == 73:   # the 74th: the server acked it, the device never saw it
                raise PowerLoss
            acked.append(mid)
            return ok

        with pytest.raises(PowerLoss):
            box.flush(deliver_then_lose_power)
        assert len(acked) == 73 and len(box) == 127
        deliverer.close()
        del box

        # Reboot: a fresh Outbox over the same directory.
        box = ob.Outbox(ob.FileStore(directory), max_messages=256, max_bytes=64 * 1024)
        assert box.ids() == list(range(74, 201))
        deliverer = HttpDeliverer(port)
        assert box.flush(deliverer) == 127
        deliverer.close()
        assert len(box) == 0 and box.bytes_used == 0
        assert sorted(os.listdir(directory)) == ["next"]
        assert box.put(b"later") > 200            # ids survive the reboot
    finally:
        server.stop()

    assert sorted(server.messages) == ids
    assert all(server.messages[i] == payload(i - 1) for i in ids)
    dupes = sorted({m for m in server.wire if server.wire.count(m) > 1})
    assert dupes == [74]                           # only the in-flight one, deduped by id
    assert len(server.wire) == 201
    assert server.wire == sorted(server.wire)      # in order
    assert server.connections == 2                 # keep-alive: one per boot


def test_full_outbox_refuses_clearly_and_keeps_everything(tmp_path):
    directory = str(tmp_path / "ob")
    box = ob.Outbox(ob.FileStore(directory), max_messages=10, max_bytes=4096)
    for i in range(10):
        box.put(payload(i))
    with pytest.raises(ob.OutboxFull, match="10 messages queued"):
        box.put(b"one too many")
    assert len([n for n in os.listdir(directory) if n.startswith("m")]) == 10
    box2 = ob.Outbox(ob.FileStore(directory), max_messages=5, max_bytes=4096)
    assert len(box2) == 10                         # a smaller bound never drops
    with pytest.raises(ob.OutboxFull):
        box2.put(b"x")


def test_corrupt_file_is_quarantined_on_disk(tmp_path):
    directory = tmp_path / "ob"
    box = ob.Outbox(ob.FileStore(str(directory)))
    for i in range(3):
        box.put(payload(i))
    (directory / "m00000002").write_bytes(b"SYOB1 2 999 00000000\ngarbage")
    got = []
    with pytest.raises(ob.CorruptRecord, match="moved to bad-m00000002"):
        box.flush(lambda mid, data: got.append(mid) or True)
    assert box.flush(lambda mid, data: got.append(mid) or True) == 1
    assert got == [1, 3]
    assert (directory / "bad-m00000002").read_bytes().endswith(b"garbage")
    assert ob.Outbox(ob.FileStore(str(directory))).quarantined == ["bad-m00000002"]


def test_crash_mid_write_leaves_no_half_record(tmp_path, monkeypatch):
    directory = tmp_path / "ob"
    store = ob.FileStore(str(directory))
    box = ob.Outbox(store)
    box.put(b"first")

    def crash(src, dst):
        raise PowerLoss

    monkeypatch.setattr(os, "rename", crash)       # power lost after the .tmp write
    with pytest.raises(PowerLoss):
        box.put(b"second")
    monkeypatch.undo()
    assert (directory / "m00000002.tmp").exists()
    box2 = ob.Outbox(ob.FileStore(str(directory)))
    assert box2.cleaned == 1 and box2.ids() == [1]
    assert not (directory / "m00000002.tmp").exists()
    assert box2.peek() == (1, b"first")
    assert box2.put(b"second") >= 2


def test_filesystem_that_cannot_rename_onto_a_file(tmp_path, monkeypatch):
    """Plain FatFs refuses rename onto an existing file: the id counter is still replaced
    (remove, then rename) and ids keep increasing across reopenings."""
    real_rename = os.rename

    def fat_rename(src, dst):
        if os.path.exists(dst):
            raise OSError(errno.EEXIST, "file exists")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", fat_rename)
    directory = str(tmp_path / "ob")
    seen = []
    for _boot in range(3):
        box = ob.Outbox(ob.FileStore(directory), lease=4)
        seen += [box.put(b"x") for _ in range(6)]
    assert seen == sorted(set(seen))
    assert (tmp_path / "ob" / "next").exists()
    assert not (tmp_path / "ob" / "next.tmp").exists()
