"""Outbox logic over the in-memory store: order, bounds, ack-only removal, ids that
survive a reboot (also with every record acked and every file's data lost), lease
markers, corrupt records quarantined, crash leftovers, the older ``next`` counter."""

from portable import eq, raises

from synack import outbox as ob

PORTABLE = True


class CountingStore(ob.MemoryStore):
    def __init__(self):
        super().__init__()
        self.writes = {}

    def write(self, name, data):
        self.writes[name] = self.writes.get(name, 0) + 1
        super().write(name, data)


def markers(store):
    return sorted(n for n in store.names() if len(n) == 9 and n[0] == "n")


def test_fifo_ids_and_ack_only_removal():
    box = ob.Outbox(ob.MemoryStore())
    ids = [box.put(b"m%d" % i) for i in range(5)]
    eq(ids, [1, 2, 3, 4, 5])
    eq(box.peek(), (1, b"m0"))
    eq(box.peek(), (1, b"m0"))          # peeking removes nothing
    box.ack(1)
    eq(box.peek(), (2, b"m1"))
    eq(len(box), 4)
    raises(ob.OutboxError, box.ack, 1)
    eq(box.put("text"), 6)
    eq(box.read(6), b"text")


def test_flush_stops_on_nack_and_keeps_the_message_on_error():
    box = ob.Outbox(ob.MemoryStore())
    for i in range(6):
        box.put(b"%d" % i)
    seen = []

    def deliver(mid, payload):
        seen.append(mid)
        return mid < 3

    eq(box.flush(deliver), 2)
    eq(box.ids(), [3, 4, 5, 6])

    def broken(mid, payload):
        raise OSError(104, "reset")

    raises(OSError, box.flush, broken)
    eq(box.ids(), [3, 4, 5, 6])
    eq(box.flush(lambda m, p: True, limit=2), 2)
    eq(box.flush(lambda m, p: True), 2)
    eq((len(box), box.bytes_used, box.delivered), (0, 0, 6))


def test_bounds_raise_and_never_drop():
    box = ob.Outbox(ob.MemoryStore(), max_messages=3, max_bytes=10000)
    for _ in range(3):
        box.put(b"x")
    e = raises(ob.OutboxFull, box.put, b"y")
    eq("max_messages 3" in str(e) and "not queued" in str(e), True)
    eq(box.ids(), [1, 2, 3])
    box.ack(1)
    eq(box.put(b"y"), 4)

    box = ob.Outbox(ob.MemoryStore(), max_messages=100, max_bytes=100)
    box.put(b"a" * 40)
    e = raises(ob.OutboxFull, box.put, b"b" * 40)
    eq("max_bytes 100" in str(e), True)
    eq(len(box), 1)
    raises(ob.OutboxFull, box.put, b"c" * 200)   # larger than the whole outbox
    box.put(b"small")
    eq(box.bytes_used <= 100, True)


def test_max_bytes_admits_a_record_that_fills_it_exactly_and_not_one_byte_more():
    size = len(ob.encode_record(1, b"p" * 50))  # the first id is 1
    box = ob.Outbox(ob.MemoryStore(), max_messages=100, max_bytes=size)
    eq(box.put(b"p" * 50), 1)
    eq(box.bytes_used, size)
    raises(ob.OutboxFull, box.put, b"")
    box = ob.Outbox(ob.MemoryStore(), max_messages=100, max_bytes=size - 1)
    raises(ob.OutboxFull, box.put, b"p" * 50)
    eq((len(box), box.bytes_used), (0, 0))
    eq(box.put(b"p" * 49), 1)
    eq(box.bytes_used, size - 1)


def test_reboot_keeps_pending_and_ids_keep_increasing():
    store = ob.MemoryStore()
    box = ob.Outbox(store, lease=4)
    for i in range(10):
        box.put(b"%d" % i)
    box.flush(lambda m, p: m <= 7)
    box2 = ob.Outbox(store, lease=4)          # "reboot": same store, new object
    eq(box2.ids(), [8, 9, 10])
    eq(box2.peek(), (8, b"7"))
    eq(box2.flush(lambda m, p: True), 3)
    box3 = ob.Outbox(store, lease=4)          # empty queue: the id still moves on
    eq(len(box3), 0)
    mid = box3.put(b"after")
    eq(mid > 10, True)
    eq(ob.Outbox(store, lease=4).put(b"again") > mid, True)


def test_id_counter_is_leased_not_written_per_message():
    store = CountingStore()
    box = ob.Outbox(store, lease=32)
    for _ in range(100):
        box.put(b"x")
    # at open, then at ids 33, 65, 97; each marker names the last id of its block
    eq(sorted(n for n in store.writes if n[0] == "n"),
       ["n00000020", "n00000040", "n00000060", "n00000080"])
    eq(markers(store), ["n00000080"])         # the old ones are removed
    eq(store.files["n00000080"], b"")         # the name is the value


def test_ids_never_repeat_when_all_acked_and_file_data_lost():
    """The power-cut case of the old counter file: every record acked and removed, then
    the data of every file lost (written, renamed, never flushed). Names survive."""
    store = ob.MemoryStore()
    box = ob.Outbox(store, lease=4)
    for i in range(6):
        box.put(b"%d" % i)
    eq(box.flush(lambda m, p: True), 6)
    for name in store.names():
        store.files[name] = b""
    box2 = ob.Outbox(store, lease=4)
    eq(len(box2), 0)
    eq(box2.put(b"after") > 6, True)
    # a cut between writing the new marker and removing the old one: both, larger rules
    store.files["n00000003"] = b""
    eq(ob.Outbox(store, lease=4).put(b"again") > 7, True)


def test_corrupt_record_is_quarantined_with_a_clear_error():
    store = ob.MemoryStore()
    box = ob.Outbox(store)
    for i in range(4):
        box.put(b"payload %d" % i)
    store.files["m00000002"] = store.files["m00000002"][:-3]         # truncated
    store.files["m00000003"] = store.files["m00000003"].replace(b"payload", b"PAYLOAD")
    got = []

    def deliver(mid, payload):
        got.append(mid)
        return True

    e = raises(ob.CorruptRecord, box.flush, deliver)
    eq((e.id, e.quarantine), (2, "bad-m00000002"))
    eq("header says 9 payload bytes, 6 stored" in str(e), True)
    e = raises(ob.CorruptRecord, box.flush, deliver)
    eq("CRC mismatch" in str(e), True)
    eq(box.flush(deliver), 1)
    eq(got, [1, 4])
    eq(sorted(n for n in store.files if n.startswith("bad-")), ["bad-m00000002",
                                                               "bad-m00000003"])
    box2 = ob.Outbox(store)
    eq(sorted(box2.quarantined), ["bad-m00000002", "bad-m00000003"])
    eq(box2.put(b"new") > 4, True)


def test_decode_errors_name_the_problem():
    good = ob.encode_record(7, b"hello")
    eq(ob.decode_record(7, good), b"hello")
    for data, text in ((b"", "no header"), (b"x" * 100, "no header"),
                       (b"SYOB1 7 5\nhello", "bad header"), (b"SYOB9 7 5 0\nhello", "bad header"),
                       (b"SYOB1 x 5 0\nhello", "bad header"), (good + b"!", "6 stored")):
        e = raises(ValueError, ob.decode_record, 7, data)
        eq(text in str(e), True, str(e))
    eq("id 7" in str(raises(ValueError, ob.decode_record, 8, good)), True)


def test_crash_leftovers_are_cleaned():
    store = ob.MemoryStore()
    box = ob.Outbox(store, lease=10)
    box.put(b"one")
    # A crash while writing the next record or marker: only a .tmp (put never returned).
    store.files["m00000002.tmp"] = b"SYOB1 2 3 0"
    store.files["n00000013.tmp"] = b""
    box2 = ob.Outbox(store, lease=10)
    eq(box2.cleaned, 2)
    eq(sorted(n for n in store.files if n.endswith(".tmp")), [])
    eq(box2.ids(), [1])
    eq(box2.put(b"two"), 11)                  # the first block (1..10) is skipped
    eq(markers(store), ["n00000014"])


def test_counter_file_of_older_versions_is_read_once_and_replaced():
    store = ob.MemoryStore()
    store.files["next"] = b"500\n"
    box = ob.Outbox(store, lease=10)
    eq(box.put(b"x"), 500)
    eq(sorted(store.files), ["m000001f4", "n000001fd"])
    # the FAT crash of an older version: "next" removed, only a complete next.tmp
    store = ob.MemoryStore()
    store.files["next.tmp"] = b"77\n"
    box = ob.Outbox(store)
    eq((box.cleaned, box.put(b"y")), (0, 77))
    eq("next.tmp" in store.files, False)
    # an empty (power-cut) "next" with a record: the record's id rules
    store = ob.MemoryStore()
    store.files["next"] = b""
    store.files["m00000009"] = ob.encode_record(9, b"old")
    box = ob.Outbox(store)
    eq((box.ids(), box.put(b"z")), ([9], 10))


def test_empty_payload_and_memory_store_errors():
    store = ob.MemoryStore()
    box = ob.Outbox(store)
    mid = box.put(b"")
    eq(box.peek(), (mid, b""))
    raises(OSError, store.read, "nope")
    raises(OSError, store.remove, "nope")
    raises(ValueError, ob.Outbox, store, 0)


def test_record_names_carry_the_id_in_8_hex_digits():
    eq([ob._id_of(n) for n in ("m00000001", "m1000000a", "mffffffff")],
       [1, 0x1000000a, 0xFFFFFFFF])
    eq([ob._id_of(n) for n in ("m0000001", "x00000001", "mzzzzzzzz", "m000000001", "next")],
       [-1] * 5)
    eq((ob._id_of("n0000002a", "n"), ob._id_of("m0000002a", "n")), (42, -1))
    store = ob.MemoryStore()
    store.files["m1000000a"] = ob.encode_record(0x1000000a, b"high")
    store.files["m00000000"] = ob.encode_record(0, b"zero")   # any id is a record
    store.files["mzzzzzzzz"] = b"not a record"
    store.files["readme"] = b"nor this"
    box = ob.Outbox(store)
    eq(box.ids(), [0, 0x1000000a])
    eq((box.read(0), box.read(0x1000000a)), (b"zero", b"high"))
    eq(box.put(b"next"), 0x1000000b)
    eq(sorted(store.files)[-2:], ["n1000002a", "readme"])


def test_a_stale_lease_marker_of_id_0_is_removed_too():
    store = ob.MemoryStore()
    store.files["n00000000"] = b""
    ob.Outbox(store, lease=4)
    eq(sorted(store.files), ["n00000004"])


def test_the_last_id_is_handed_out_then_ids_are_exhausted():
    store = ob.MemoryStore()
    store.files["nfffffffe"] = b""
    box = ob.Outbox(store)
    eq(box.put(b"last"), 0xFFFFFFFF)
    e = raises(ob.OutboxError, box.put, b"one more")
    eq((str(e), box.ids()), ("outbox ids exhausted", [0xFFFFFFFF]))


def test_decode_finds_the_header_in_the_first_64_bytes_only():
    long_header = b"SYOB1 7 5 " + b"0" * 60 + b"\nhello"
    eq(str(raises(ValueError, ob.decode_record, 7, long_header)),
       "no header line in the first 64 bytes (76 bytes stored)")
    good = ob.encode_record(7, b"hello")
    eq(str(raises(ValueError, ob.decode_record, 7, b"\n" + good)), "bad header b''")
    eq(ob.decode_record(7, ob.encode_record(7, b"a\nb\n")), b"a\nb\n")  # newlines in payload
    eq(str(raises(ValueError, ob.decode_record, 7, b"SYOB1  7 5 0\nhello")),
       "bad header b'SYOB1  7 5 0'")                 # one space between fields, exactly
    eq(str(raises(ValueError, ob.decode_record, 7, b"SYOB1 7 5 zz\nhello")),
       "bad header b'SYOB1 7 5 zz'")
    eq(str(raises(ValueError, ob.decode_record, 8, good)), "header says id 7")
    eq(str(raises(ValueError, ob.decode_record, 7, good[:-1])),
       "header says 5 payload bytes, 4 stored")
    eq(str(raises(ValueError, ob.decode_record, 7, good[:-1] + b"O")), "CRC mismatch")


class NoRenameStore(ob.MemoryStore):
    def rename(self, old, new):
        raise OSError(30, "read-only")


def test_corrupt_record_that_cannot_be_moved_is_still_dropped():
    store = NoRenameStore()
    box = ob.Outbox(store)
    box.put(b"fine")
    store.files["m00000001"] = b"garbage"
    e = raises(ob.CorruptRecord, box.read, 1)
    eq((e.id, e.name, e.quarantine, e.reason),
       (1, "m00000001", "(nowhere: rename failed)",
        "no header line in the first 64 bytes (7 bytes stored)"))
    eq(str(e), "outbox record m00000001 (id 1) is corrupt: no header line in the first 64 "
               "bytes (7 bytes stored); moved to (nowhere: rename failed)")
    eq((box.ids(), box.bytes_used, box.quarantined), ([], 0, ["(nowhere: rename failed)"]))


def test_outbox_settings_defaults_and_errors():
    box = ob.Outbox(ob.MemoryStore())
    eq((box.max_messages, box.max_bytes, box.lease), (100, 16384, 32))
    box = ob.Outbox(ob.MemoryStore(), 1, 1, 1)          # the smallest bounds allowed
    eq((box.max_messages, box.max_bytes, box.lease), (1, 1, 1))
    for args in ((0, 1, 1), (1, 0, 1), (1, 1, 0)):
        e = raises(ValueError, ob.Outbox, ob.MemoryStore(), *args)
        eq(str(e), "outbox needs max_messages, max_bytes and lease >= 1", repr(args))


def test_full_and_not_pending_errors_say_why():
    box = ob.Outbox(ob.MemoryStore(), max_messages=1, max_bytes=40)
    box.put(b"1")
    eq(str(raises(ob.OutboxFull, box.put, b"2")),
       "outbox full: 1 messages queued (max_messages 1); message not queued")
    box = ob.Outbox(ob.MemoryStore(), max_messages=5, max_bytes=40)
    box.put(b"1")
    eq(str(raises(ob.OutboxFull, box.put, b"22")),
       "outbox full: 20 + 21 bytes would exceed max_bytes 40; message not queued")
    eq(str(raises(ob.OutboxError, box.ack, 9)), "message 9 is not pending")


def test_memory_store_errors_and_rename():
    store = ob.MemoryStore()
    e = raises(OSError, store.read, "nope")
    eq(e.args, (ob.errno.ENOENT, "nope"))
    store.write("a", b"data")
    store.rename("a", "b")
    eq(store.files, {"b": b"data"})
