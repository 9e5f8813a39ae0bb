"""Black box ring and diag helpers, on CPython and on a real MicroPython VM: the ring
bounded and rate-limited, stored and reloaded (a damaged copy refused), secrets
scrubbed; the AT console's final-result detection; URL splitting of the self-test."""

from portable import eq, raises

from synack import atbridge, blackbox, selftest
from synack import outbox as ob

PORTABLE = True


def _box(store, **kw):
    bb = blackbox.Blackbox(None, boot=False, **kw)
    bb.store = store
    return bb


def test_ring_store_and_reload():
    store = ob.MemoryStore()
    bb = _box(store, size=3, min_interval_ms=100000)
    for i in range(5):
        bb.add("connect_err", "try %d" % i)
    eq([e[5] for e in bb.entries], ["try 2", "try 3", "try 4"])
    eq(bb.writes, 1)                       # the first write; the rest waits (batched)
    bb.add("link_down", "link lost")       # urgent
    eq(bb.writes, 2)
    again = _box(store)
    again._load()
    eq([e["kind"] for e in again.events()], ["connect_err", "connect_err", "link_down"])
    eq(again._seq, 6)
    data = store.read("ring")
    store.write("ring", data[:-1] + b"!")  # damaged: refused
    third = _box(store)
    third._load()
    eq(third.corrupt, 1)
    eq(third.entries, [])


def test_scrub_and_event_text():
    blackbox.hide("p4ss")
    try:
        bb = _box(None)
        bb.add("connect_err", OSError(113, "bad p4ss"))
        eq("p4ss" in bb.entries[0][5], False)
        eq(bb.entries[0][5].startswith("OSError"), True)
    finally:
        blackbox._secrets.clear()


def test_final_result_detection():
    eq(atbridge._final(b"AT+CSQ\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n"), "OK")
    eq(atbridge._final(b"\r\n+CME ERROR: 10\r\n"), "+CME ERROR: 10")
    eq(atbridge._final(b"\r\nERROR\r\n"), "ERROR")
    eq(atbridge._final(b"\r\n> "), ">")
    eq(atbridge._final(b"\r\n+CSQ: 20,99\r\n"), None)
    eq(atbridge._final(b"\r\nOK"), None)       # not yet a whole line


def test_split_url():
    eq(selftest._split_url("http://h:8080/a/b"), ("http", "h", 8080, "/a/b"))
    eq(selftest._split_url("https://h"), ("https", "h", 443, "/"))
    raises(ValueError, selftest._split_url, "ftp://h/")
    raises(ValueError, selftest._split_url, "http:///x")
