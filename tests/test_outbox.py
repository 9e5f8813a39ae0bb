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
        assert os.listdir(directory) == ["n00000100"]   # only the lease marker: ids
                                                        # up to 256 may have been used
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
    assert [p.name for p in (tmp_path / "ob").iterdir() if p.name[0] == "n"] == ["n00000018"]
    assert not [p for p in (tmp_path / "ob").iterdir() if p.name.endswith(".tmp")]


# -- power cuts ------------------------------------------------------------------------
class Inode:
    def __init__(self) -> None:
        self.data = bytearray()     # what the running program sees
        self.synced = b""           # what is on the medium


class CutDisk:
    """A filesystem in RAM whose power can be cut at any step: each byte written and
    each create, truncate, rename, remove, mkdir, fsync or sync is one step, and
    ``cut_at=n`` raises PowerLoss instead of the n-th. Names (directory entries) reach
    the medium at once and in order, like a journaled filesystem's metadata; file data
    only when it is synced - with ``durable_flush`` by f.flush() (MicroPython's VFS),
    otherwise only by os.fsync / os.sync (CPython over a page cache: flush() just hands
    the bytes to the OS). ``fat`` refuses renames onto an existing file.

    After a cut, ``image(keep_unsynced)`` is what a reboot finds: unsynced data either
    lost (the file is as last synced, empty after a truncation) or kept up to the cut."""

    def __init__(self, files: dict[str, bytes] | None = None, dirs=(), cut_at: int | None = None,
                 durable_flush: bool = False, fat: bool = False, fsync: bool = True):
        self.entries: dict[str, Inode] = {}
        for path, data in (files or {}).items():
            ino = self.entries[path] = Inode()
            ino.data[:] = data
            ino.synced = bytes(data)
        self.dirs = set(dirs)
        self.cut_at = cut_at
        self.steps = 0
        self.durable_flush = durable_flush
        self.fat = fat
        self.fds: dict[int, Inode] = {}
        os_ns: dict = {"mkdir": self.mkdir, "listdir": self.listdir, "stat": self.stat,
                       "rename": self.rename, "remove": self.remove, "sync": self.sync}
        if fsync:
            os_ns["fsync"] = self.fsync
        self.os = type("os", (), {k: staticmethod(v) for k, v in os_ns.items()})

    def step(self) -> None:
        if self.steps == self.cut_at:
            raise PowerLoss
        self.steps += 1

    def image(self, keep_unsynced: bool) -> dict[str, bytes]:
        return {p: bytes(i.data) if keep_unsynced else i.synced
                for p, i in self.entries.items()}

    @staticmethod
    def _missing(path: str) -> OSError:
        return OSError(errno.ENOENT, path)

    def mkdir(self, path: str) -> None:
        if path in self.dirs:
            raise OSError(errno.EEXIST, path)
        self.step()
        self.dirs.add(path)

    def listdir(self, path: str) -> list[str]:
        if path not in self.dirs:
            raise self._missing(path)
        prefix = path.rstrip("/") + "/"
        return [p[len(prefix):] for p in self.entries if p.startswith(prefix)]

    def stat(self, path: str) -> tuple:
        if path in self.dirs:
            return (0o040000, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        if path not in self.entries:
            raise self._missing(path)
        return (0o100000, 0, 0, 0, 0, 0, len(self.entries[path].data), 0, 0, 0)

    def rename(self, old: str, new: str) -> None:
        if old not in self.entries:
            raise self._missing(old)
        if self.fat and new in self.entries:
            raise OSError(errno.EEXIST, new)
        self.step()
        self.entries[new] = self.entries.pop(old)

    def remove(self, path: str) -> None:
        if path not in self.entries:
            raise self._missing(path)
        self.step()
        del self.entries[path]

    def fsync(self, fd: int) -> None:
        self.step()
        ino = self.fds[fd]
        ino.synced = bytes(ino.data)

    def sync(self) -> None:
        self.step()
        for ino in self.entries.values():
            ino.synced = bytes(ino.data)

    def open(self, path: str, mode: str = "r"):
        if "w" in mode:
            self.step()
            ino = self.entries.get(path)
            if ino is None:
                ino = self.entries[path] = Inode()
            ino.data.clear()
            ino.synced = b""        # the truncation reached the medium, the data may not
        elif path not in self.entries:
            raise self._missing(path)
        return CutFile(self, self.entries[path])


class CutFile:
    def __init__(self, disk: CutDisk, ino: Inode):
        self.disk, self.ino = disk, ino

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def write(self, data: bytes) -> int:
        for b in bytes(data):
            self.disk.step()
            self.ino.data.append(b)
        return len(data)

    def read(self) -> bytes:
        return bytes(self.ino.data)

    def flush(self) -> None:
        if self.disk.durable_flush:
            self.disk.step()
            self.ino.synced = bytes(self.ino.data)

    def fileno(self) -> int:
        fd = 3 + len(self.disk.fds)
        self.disk.fds[fd] = self.ino
        return fd


def on_disk(monkeypatch, disk: CutDisk) -> None:
    monkeypatch.setattr(ob, "os", disk.os)
    monkeypatch.setattr(ob, "open", disk.open, raising=False)


def cut_workload(issued: dict[int, bytes], acked: set[int]) -> None:
    """Three boots of a small outbox (lease 2): puts, acks until the queue is empty, a
    reboot with every record acked (the lease marker is replaced), more puts and acks.
    ``issued`` and ``acked`` record what put() and ack() returned."""
    n = 0

    def put(box: ob.Outbox) -> None:
        nonlocal n
        data = b"msg %d" % n
        n += 1
        issued[box.put(data)] = data

    def ack_all(box: ob.Outbox) -> None:
        for mid in box.ids():
            box.ack(mid)
            acked.add(mid)

    box = ob.Outbox(ob.FileStore("/ob"), lease=2)
    for _ in range(3):
        put(box)
    ack_all(box)
    put(box)
    ack_all(box)
    box = ob.Outbox(ob.FileStore("/ob"), lease=2)     # reboot: nothing pending
    put(box)
    box = ob.Outbox(ob.FileStore("/ob"), lease=2)     # reboot: one pending
    put(box)
    ack_all(box)


@pytest.mark.parametrize("durable_flush, fat, fsync", [
    (False, False, True),       # CPython on Linux: only fsync reaches the medium
    (False, True, True),        # ... on a filesystem that cannot rename onto a file
    (False, False, False),      # a port with os.sync() only
    (True, True, False),        # MicroPython on FatFs: flush() commits the file
    (True, False, False),       # MicroPython on LittleFS
])
def test_power_cut_at_every_step_loses_no_queued_record_and_reuses_no_id(
        monkeypatch, durable_flush, fat, fsync):
    """Cut the power before every byte written and every filesystem operation of
    cut_workload - including the marker rewrite after every record was acked - then
    reboot on what reached the medium (unsynced data lost, or kept): every message
    whose put() returned and that was not acked is there, intact, and every new id is
    larger than any id ever handed out."""
    cuts = 0
    lost: list[str] = []
    reused: list[str] = []
    while True:
        disk = CutDisk(cut_at=cuts, durable_flush=durable_flush, fat=fat, fsync=fsync)
        on_disk(monkeypatch, disk)
        issued: dict[int, bytes] = {}
        acked: set[int] = set()
        try:
            cut_workload(issued, acked)
        except PowerLoss:
            pass
        else:
            break               # the workload ran to its end: every step was cut once
        for keep in (False, True):
            where = f"cut before step {cuts}, unsynced data {'kept' if keep else 'lost'}"
            on_disk(monkeypatch, CutDisk(disk.image(keep), disk.dirs, fat=fat, fsync=fsync))
            box = ob.Outbox(ob.FileStore("/ob"), lease=2)
            for mid in sorted(set(issued) - acked):
                try:
                    intact = mid in box.ids() and box.read(mid) == issued[mid]
                except ob.CorruptRecord:
                    intact = False
                if not intact:
                    lost.append(f"{where}: queued message {mid}")
            new = box.put(b"after the cut")
            again = ob.Outbox(ob.FileStore("/ob"), lease=2).put(b"and after a reboot")
            if new <= max(issued, default=0) or again <= new:
                reused.append(f"{where}: ids {sorted(issued)} then {new}, {again}")
        cuts += 1
    assert cuts > 150           # every byte and operation of the workload was a cut point
    assert not lost and not reused, (
        f"of {2 * cuts} reboots after a cut, {len(lost)} lost a queued message and "
        f"{len(reused)} handed out an id again; first: {(lost + reused)[:3]}")


class SyncSpy:
    """Stands in for the os module inside synack.outbox: records every fsync / sync and
    the flags each directory was opened with. ``without`` hides attributes."""

    def __init__(self, without=()):
        self.without = without
        self.calls = []

    def __getattr__(self, name):
        if name in self.without:
            raise AttributeError(name)
        if name == "fsync":
            return lambda fd: self.calls.append(("fsync", os.fstat(fd).st_mode & 0o170000))
        if name == "sync":
            return lambda: self.calls.append(("sync",))
        if name == "open":
            def opener(path, flags):
                self.calls.append(("open", path, flags))
                return os.open(path, flags)
            return opener
        return getattr(os, name)


def test_a_write_is_flushed_to_the_medium_before_and_after_the_rename(tmp_path, monkeypatch):
    directory = str(tmp_path / "ob")
    store = ob.FileStore(directory)
    spy = SyncSpy()
    monkeypatch.setattr(ob, "os", spy)
    store.write("m00000001", b"rec")
    # the file's data (fsync of a regular file), then the directory holding the new name
    assert spy.calls == [("fsync", 0o100000), ("open", directory, os.O_RDONLY),
                         ("fsync", 0o040000)]
    spy = SyncSpy(without=("fsync",))              # MicroPython: os.sync() if it has one
    monkeypatch.setattr(ob, "os", spy)
    store.write("m00000002", b"rec")
    assert spy.calls == [("sync",)]
    spy = SyncSpy(without=("fsync", "sync"))       # neither: flush() only
    monkeypatch.setattr(ob, "os", spy)
    store.write("m00000003", b"rec")
    spy = SyncSpy(without=("open",))               # no os.open: no directory sync
    monkeypatch.setattr(ob, "os", spy)
    store.write("m00000004", b"rec")
    assert spy.calls == [("fsync", 0o100000)]
    monkeypatch.undo()
    assert sorted(os.listdir(directory)) == ["m0000000%d" % i for i in (1, 2, 3, 4)]


def test_file_store_replaces_a_file_where_rename_will_not_overwrite(tmp_path, monkeypatch):
    real_rename = os.rename

    def fat_rename(src, dst):
        if os.path.exists(dst):
            raise OSError(errno.EEXIST, "file exists")
        real_rename(src, dst)

    store = ob.FileStore(str(tmp_path / "obX") + "/")
    assert store.dir == str(tmp_path / "obX")
    monkeypatch.setattr(os, "rename", fat_rename)
    store.write("a", b"old")
    store.write("a", b"new")
    assert store.read("a") == b"new" and store.names() == ["a"]

    def broken_rename(src, dst):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "rename", broken_rename)   # a failure that is not "exists"
    with pytest.raises(OSError) as e:
        store.write("b", b"data")
    assert e.value.errno == errno.EIO
    assert ob.FileStore("/").dir == "/"


def test_file_store_creates_each_missing_directory_of_its_path(monkeypatch):
    made = []
    monkeypatch.setattr(os, "mkdir", made.append)
    assert ob.FileStore("data/outbox/").dir == "data/outbox"
    assert ob.FileStore("/flash//q").dir == "/flash//q"
    assert made == ["data", "data/outbox", "/flash", "/flash/q"]
