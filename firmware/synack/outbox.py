"""Store-and-forward outbox: messages queued while the device is offline, persisted in
its filesystem, delivered at least once when it is online, removed only after the
server acknowledged them.

    box = Outbox(FileStore("/outbox"), max_messages=100, max_bytes=16384)
    mid = box.put(b'{"t": 21.5}')          # OutboxFull if it would exceed a bound
    box.flush(deliver)                      # deliver(id, payload) -> True once acked

Each message is one record file named after its id (``m`` + 8 hex digits): a header
line ``SYOB1 <id> <length> <crc32 hex>`` and the payload. Records are written to a
``.tmp`` name and renamed into place, so a crash mid-write leaves either no record or a
complete one, never half of one; leftover ``.tmp`` files are removed when the outbox is
opened (their put() never returned an id). A record that fails its checks is renamed to
``bad-<name>`` (quarantined, kept for inspection) and reported as ``CorruptRecord``.

Ids are monotonic across reboots and power cuts, also when every record was acked and
removed: the highest id that may have been handed out is kept in the *name* of an empty
lease marker file (``n`` + 8 hex digits), leased in blocks of ``lease`` ids so the flash
is not rewritten for every message (a reboot skips the rest of the block; ids stay
unique and increasing). A new marker is in place before the old one is removed, and a
name is never half-written, so after any power cut the next id is max(every record and
marker id seen) + 1. (Outboxes written by older versions kept the next id in the file
``next``: it is read once and replaced by a marker.) Records are flushed to the medium
(fsync / os.sync where the port has them) before they are renamed into place, so a
put() that returned survives a power cut. The server deduplicates by id: a crash after
the server's ack but before the record's removal resends that message.

Storage is an object with ``names() size(name) read(name) write(name, data)
remove(name) rename(old, new)``: ``FileStore`` (os/open, works on MicroPython's VFS)
or ``MemoryStore`` (tests, RAM-only queues).
"""

import binascii
import errno
import os

from micropython import const

_MAGIC = b"SYOB1"
_NEXT = "next"          # the id counter of older versions: read once, then removed
_MARK = "n"             # lease marker: "n%08x" names the highest id that may be handed out
_RECORD = "m"
_TMP = ".tmp"
_BAD = "bad-"
_MAX_HEADER = const(64)
_MAX_ID = const(0xFFFFFFFF)


class OutboxError(Exception):
    pass


class OutboxFull(OutboxError):
    """put() would exceed max_messages or max_bytes; the message was NOT queued."""


class CorruptRecord(OutboxError):
    """A stored record failed its checks; it was moved to ``quarantine``."""

    def __init__(self, msg_id, name, quarantine, reason):
        super().__init__("outbox record %s (id %d) is corrupt: %s; moved to %s"
                         % (name, msg_id, reason, quarantine))
        self.id = msg_id
        self.name = name
        self.quarantine = quarantine
        self.reason = reason


def _name(msg_id, prefix=_RECORD):
    return "%s%08x" % (prefix, msg_id)


def _id_of(name, prefix=_RECORD):
    """The id in a record name (a lease marker's with ``prefix`` "n"), or -1 if ``name``
    is not one."""
    if len(name) != 9 or name[0] != prefix:
        return -1
    try:
        return int(name[1:], 16)
    except ValueError:
        return -1


def encode_record(msg_id, payload):
    return b"%s %d %d %08x\n" % (_MAGIC, msg_id, len(payload),
                                 binascii.crc32(payload) & 0xFFFFFFFF) + payload


def decode_record(msg_id, data):
    """The payload of a record; raises ValueError naming what is wrong."""
    nl = data.find(b"\n", 0, _MAX_HEADER)
    if nl < 0:
        raise ValueError("no header line in the first %d bytes (%d bytes stored)"
                         % (_MAX_HEADER, len(data)))
    parts = data[:nl].split(b" ")
    if len(parts) != 4 or parts[0] != _MAGIC:
        raise ValueError("bad header %r" % bytes(data[:nl]))
    try:
        rid, length, crc = int(parts[1]), int(parts[2]), int(parts[3], 16)
    except ValueError:
        raise ValueError("bad header %r" % bytes(data[:nl]))
    if rid != msg_id:
        raise ValueError("header says id %d" % rid)
    payload = data[nl + 1:]
    if len(payload) != length:
        raise ValueError("header says %d payload bytes, %d stored" % (length, len(payload)))
    if binascii.crc32(payload) & 0xFFFFFFFF != crc:
        raise ValueError("CRC mismatch")
    return payload


class MemoryStore:
    """Records in a dict: for logic tests and queues that need not survive reboot."""

    def __init__(self):
        self.files = {}  # type: dict[str, bytes]

    def names(self):
        return list(self.files)

    def size(self, name):
        return len(self.files[name])

    def read(self, name):
        try:
            return self.files[name]
        except KeyError:
            raise OSError(errno.ENOENT, name)

    def write(self, name, data):
        self.files[name] = bytes(data)

    def remove(self, name):
        self.read(name)
        del self.files[name]

    def rename(self, old, new):
        self.files[new] = self.read(old)
        del self.files[old]


class FileStore:
    """Records as files in ``directory`` (created if missing) on the device's VFS."""

    def __init__(self, directory):
        self.dir = directory.rstrip("/") or "/"
        path = "/" if self.dir.startswith("/") else ""
        for part in self.dir.split("/"):
            if not part:
                continue
            path = path + part if not path or path.endswith("/") else path + "/" + part
            try:
                os.mkdir(path)
            except OSError as e:
                if e.args[0] != errno.EEXIST:
                    raise

    def _path(self, name):
        return self.dir + "/" + name

    def names(self):
        return os.listdir(self.dir)

    def size(self, name):
        return os.stat(self._path(name))[6]

    def read(self, name):
        with open(self._path(name), "rb") as f:
            return f.read()

    def write(self, name, data):
        path = self._path(name)
        tmp = path + _TMP
        with open(tmp, "wb") as f:
            f.write(data)
            _sync_file(f)       # the data is on the medium before the name points to it
        try:
            os.rename(tmp, path)
        except OSError as e:
            # A filesystem that will not rename onto an existing file (plain FatFs):
            # remove, then rename. In between only the complete .tmp exists.
            if not self._exists(path):
                raise e
            os.remove(path)
            os.rename(tmp, path)
        _sync_dir(self.dir)

    def _exists(self, path):
        try:
            os.stat(path)
            return True
        except OSError:
            return False

    def remove(self, name):
        os.remove(self._path(name))

    def rename(self, old, new):
        os.rename(self._path(old), self._path(new))


def _sync_file(f):
    """Push what was written to ``f`` to the medium. On MicroPython's VFS flush() commits
    the file (LittleFS, FatFs) and os.sync(), where the port has it, flushes the block
    device; CPython needs os.fsync (MicroPython has none)."""
    f.flush()
    fsync = getattr(os, "fsync", None)
    if fsync is not None:
        fsync(f.fileno())
        return
    sync = getattr(os, "sync", None)
    if sync is not None:
        sync()


def _sync_dir(path):
    """Make a rename in directory ``path`` durable where that takes an fsync of the
    directory (CPython on POSIX); MicroPython's VFS commits renames itself."""
    fsync = getattr(os, "fsync", None)
    opener = getattr(os, "open", None)
    if fsync is None or opener is None:
        return
    try:
        fd = opener(path, 0)    # O_RDONLY
    except OSError:
        return
    try:
        fsync(fd)
    except OSError:
        pass                    # a filesystem that cannot fsync a directory
    finally:
        os.close(fd)


class Outbox:
    def __init__(self, store, max_messages=100, max_bytes=16384, lease=32):
        if max_messages < 1 or max_bytes < 1 or lease < 1:
            raise ValueError("outbox needs max_messages, max_bytes and lease >= 1")
        self.store = store
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.lease = lease
        self.quarantined = []    # names of records moved aside, this run and earlier
        self.cleaned = 0         # leftover .tmp files removed when opened
        self.delivered = 0
        self._ids = []           # type: list[int]  # pending, oldest first
        self._sizes = []         # type: list[int]  # record bytes, parallel to _ids
        self._marks = []         # type: list[str]  # lease marker names on the store
        self._legacy = []        # type: list[str]  # "next" / "next.tmp" of older versions
        self.bytes_used = 0
        top = 0                  # the highest id seen in any name: never handed out again
        for name in store.names():
            if name == _NEXT or name == _NEXT + _TMP:
                self._legacy.append(name)
                continue
            if name.endswith(_TMP):
                store.remove(name)
                self.cleaned += 1
                continue
            if name.startswith(_BAD):
                self.quarantined.append(name)
                top = max(top, _id_of(name[len(_BAD):]))
                continue
            mid = _id_of(name)
            if mid >= 0:
                self._ids.append(mid)
                top = max(top, mid)
                continue
            mark = _id_of(name, _MARK)
            if mark >= 0:
                self._marks.append(name)
                top = max(top, mark)
        self._ids.sort()
        for mid in self._ids:
            size = store.size(_name(mid))
            self._sizes.append(size)
            self.bytes_used += size
        self._next = max(top + 1, self._load_legacy())
        self._leased = self._next  # pragma: no mutate -- _lease_more() sets it at once
        self._lease_more()

    def _load_legacy(self):
        """The next id kept in ``next`` (or a complete ``next.tmp``) by older versions."""
        best = 0  # pragma: no mutate -- 0 or 1: the first id is >= 1 anyway
        for name in self._legacy:
            try:
                best = max(best, int(self.store.read(name).strip()))
            except (OSError, ValueError):
                pass  # missing, empty or half-written: the other one (or the names) rule
        return best

    def _lease_more(self):
        """Reserve ids up to ``_next + lease - 1``: the new marker is written before the
        old ones are removed, so a power cut in between leaves both (the larger rules)."""
        self._leased = self._next + self.lease
        name = _name(min(self._leased - 1, _MAX_ID), _MARK)
        self.store.write(name, b"")   # the name is the value: nothing to half-write
        for old in self._marks + self._legacy:
            if old != name:
                try:
                    self.store.remove(old)
                except OSError:
                    pass  # already gone
        self._marks = [name]
        self._legacy = []

    def __len__(self):
        return len(self._ids)

    def ids(self):
        """Pending message ids, oldest first."""
        return list(self._ids)

    def put(self, payload):
        """Queue ``payload`` (bytes or str); returns its id. Raises OutboxFull - the
        message is not queued - when a bound would be exceeded."""
        payload = payload.encode() if isinstance(payload, str) else bytes(payload)
        if len(self._ids) >= self.max_messages:
            raise OutboxFull("outbox full: %d messages queued (max_messages %d); message "
                             "not queued" % (len(self._ids), self.max_messages))
        mid = self._next
        if mid > _MAX_ID:
            raise OutboxError("outbox ids exhausted")
        record = encode_record(mid, payload)
        if self.bytes_used + len(record) > self.max_bytes:
            raise OutboxFull("outbox full: %d + %d bytes would exceed max_bytes %d; message "
                             "not queued" % (self.bytes_used, len(record), self.max_bytes))
        if mid >= self._leased:
            self._lease_more()
        self.store.write(_name(mid), record)
        self._next = mid + 1
        self._ids.append(mid)
        self._sizes.append(len(record))
        self.bytes_used += len(record)
        return mid

    def read(self, msg_id):
        """The payload of pending message ``msg_id``. A record that fails its checks is
        quarantined and CorruptRecord raised."""
        name = _name(msg_id)
        try:
            return decode_record(msg_id, self.store.read(name))
        except (OSError, ValueError) as e:
            bad = _BAD + name
            try:
                self.store.rename(name, bad)
            except OSError:
                bad = "(nowhere: rename failed)"
            self._drop(msg_id)
            self.quarantined.append(bad)
            raise CorruptRecord(msg_id, name, bad, str(e))

    def peek(self):
        """(id, payload) of the oldest pending message, or None."""
        if not self._ids:
            return None
        mid = self._ids[0]
        return mid, self.read(mid)

    def _drop(self, msg_id):
        i = self._ids.index(msg_id)
        self.bytes_used -= self._sizes[i]
        self._ids.pop(i)
        self._sizes.pop(i)

    def ack(self, msg_id):
        """The server acknowledged ``msg_id``: remove it for good."""
        if msg_id not in self._ids:
            raise OutboxError("message %d is not pending" % msg_id)
        self.store.remove(_name(msg_id))
        self._drop(msg_id)
        self.delivered += 1

    def flush(self, deliver, limit=None):
        """Deliver pending messages oldest first with ``deliver(id, payload)``, which
        returns True once the server acknowledged. Stops at the first False (returns)
        or exception (propagates; the message stays queued). Returns how many were
        delivered. A corrupt record raises CorruptRecord after it was quarantined; the
        next flush continues with the message after it."""
        n = 0
        while self._ids and (limit is None or n < limit):
            mid = self._ids[0]
            payload = self.read(mid)
            if not deliver(mid, payload):
                break
            self.ack(mid)
            n += 1
        return n
