"""TLS facts from a captured TCP connection: records, handshakes, what went in the clear.

A test that polls over https wants the wire to prove "one TLS handshake for 100 polls"
and "a refused certificate cost no request byte". The TCP facts (``tcpflow.Flow``) do not
look into payloads; this module does, with no TLS library: it puts each side's byte
stream back together from the segments (by sequence number, a retransmission counted
once) and splits it into TLS records (RFC 8446 5.1: type, version, length, fragment),
then reads the handshake messages that travel in the clear (type, 3-byte length): the
ClientHello (type 1) and ServerHello (type 2) of every full handshake are plaintext in
TLS 1.2 and 1.3 alike. Encrypted records are only counted and measured.

    cap.stop()
    facts = [tls_facts(f) for f in cap.connections(port)]
    assert count_client_hellos(cap.connections(port)) == 1
    print(facts[0].summary())
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from .tcpflow import MOD, SYN, Flow

CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT = 20, 21, 22, 23, 24
CONTENT_TYPES = {CHANGE_CIPHER_SPEC: "change_cipher_spec", ALERT: "alert",
                 HANDSHAKE: "handshake", APPLICATION_DATA: "application_data",
                 HEARTBEAT: "heartbeat"}
CLIENT_HELLO, SERVER_HELLO, FINISHED = 1, 2, 20
_SUPPORTED_VERSIONS = 0x002B          # the TLS 1.3 ServerHello's version extension
VERSIONS = {0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
MAX_RECORD = 16384 + 2048             # largest legal TLSCiphertext fragment


@dataclass
class Stream:
    """One side's bytes in order, with the capture time at which each chunk began.
    ``gap`` is set where a byte never showed up (capture loss): nothing after it is
    read."""

    data: bytearray = field(default_factory=bytearray)
    starts: list[int] = field(default_factory=list)     # offsets of the chunks
    times: list[float] = field(default_factory=list)    # and when each arrived
    gap: bool = False

    def time_at(self, offset: int) -> float:
        return self.times[bisect.bisect_right(self.starts, offset) - 1]


@dataclass(frozen=True)
class Record:
    side: str              # "client" or "server"
    time: float            # when the segment holding its first byte was captured
    index: int             # its position among the side's records
    type: int              # content type (CONTENT_TYPES)
    version: int           # record-layer version (0x0303 also in TLS 1.3)
    length: int            # fragment length; on the wire the record is 5 bytes more
    messages: tuple[int, ...] = ()   # plaintext handshake messages that start in it

    @property
    def wire_bytes(self) -> int:
        return 5 + self.length


def side_stream(flow: Flow, side: str) -> Stream:
    """Reassemble ``side``'s payload bytes of ``flow`` (in order; each byte once)."""
    out = Stream()
    base: int | None = None
    for seg in flow.segments:
        if flow.side(seg) != side:
            continue
        if base is None:
            base = (seg.seq + (1 if seg.flags & SYN else 0)) % MOD
        if not seg.length:
            continue
        start = (seg.seq + (1 if seg.flags & SYN else 0) - base) % MOD
        have = len(out.data)
        if start > have or len(seg.payload) < seg.length:
            out.gap = True                   # a missing segment, or a cut snapshot
            break
        new = seg.payload[have - start:]
        if new:
            out.starts.append(have)
            out.times.append(seg.time)
            out.data += new
    return out


def _records(stream: Stream, side: str) -> tuple[list[Record], bool]:
    """Split a stream into records; False if it is not TLS (a bad header) or ends
    inside a record (the capture stopped first, or the connection died mid-record)."""
    records: list[Record] = []
    data, off = stream.data, 0
    while off + 5 <= len(data):
        ctype, version, length = data[off], int.from_bytes(data[off + 1:off + 3], "big"), \
            int.from_bytes(data[off + 3:off + 5], "big")
        if ctype not in CONTENT_TYPES or version >> 8 != 3 or length > MAX_RECORD:
            return records, False
        if off + 5 + length > len(data):
            return records, False
        records.append(Record(side, stream.time_at(off), len(records), ctype, version, length))
        off += 5 + length
    return records, off == len(data) and not stream.gap


def _handshake_messages(data: bytes, records: list[Record]) -> tuple[list[Record], bytes]:
    """Name the plaintext handshake messages starting in each record. A side's
    handshake records are plaintext until it sends change_cipher_spec (TLS 1.2; in 1.3
    its encrypted handshake travels as application_data). Returns the records with
    ``messages`` set, and the ServerHello's body if one was seen."""
    buf = bytearray()
    out: list[Record] = []
    server_hello = b""
    off = 0
    clear = True
    for rec in records:
        fragment = data[off + 5:off + 5 + rec.length]
        off += 5 + rec.length
        if rec.type == CHANGE_CIPHER_SPEC:
            clear = False
        if rec.type != HANDSHAKE or not clear:
            out.append(rec)
            continue
        types: list[int] = []
        starting = len(buf)       # messages completed from here on started in this record
        buf += fragment
        while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[1:4], "big"):
            n = int.from_bytes(buf[1:4], "big")
            if starting <= 0:
                types.append(buf[0])
            if buf[0] == SERVER_HELLO and not server_hello:
                server_hello = bytes(buf[4:4 + n])
            del buf[:4 + n]
            starting -= 4 + n
        if 0 < len(buf) and starting <= 0:
            types.append(buf[0])  # a message that continues in the next record
        out.append(Record(rec.side, rec.time, rec.index, rec.type, rec.version, rec.length,
                          tuple(types)))
    return out, server_hello


def negotiated_version(server_hello: bytes) -> int | None:
    """The version a ServerHello body chose: its supported_versions extension (TLS 1.3)
    or else its legacy_version field. None if the body is cut short."""
    try:
        legacy = int.from_bytes(server_hello[0:2], "big")
        off = 2 + 32
        off += 1 + server_hello[off]                 # session id
        off += 2 + 1                                 # cipher suite, compression
        if off + 2 > len(server_hello):
            return legacy if off == len(server_hello) else None
        end = off + 2 + int.from_bytes(server_hello[off:off + 2], "big")
        off += 2
        while off + 4 <= end:
            etype = int.from_bytes(server_hello[off:off + 2], "big")
            elen = int.from_bytes(server_hello[off + 2:off + 4], "big")
            if etype == _SUPPORTED_VERSIONS and elen == 2:
                return int.from_bytes(server_hello[off + 4:off + 6], "big")
            off += 4 + elen
        return legacy
    except IndexError:
        return None


class TlsFlow:
    """The TLS view of one TCP connection (see the module docstring)."""

    def __init__(self, flow: Flow):
        self.flow = flow
        self.records: list[Record] = []
        self.complete: dict[str, bool] = {}   # side -> its stream parsed to the end
        server_hello = b""
        for side in ("client", "server"):
            stream = side_stream(flow, side)
            recs, self.complete[side] = _records(stream, side)
            recs, hello = _handshake_messages(bytes(stream.data), recs)
            server_hello = server_hello or (hello if side == "server" else b"")
            self.records += recs
        self.records.sort(key=lambda r: (r.time, r.side != "client", r.index))
        self.version = negotiated_version(server_hello) if server_hello else None

    # -- facts ---------------------------------------------------------------------------
    def of(self, side: str, ctype: int | None = None) -> list[Record]:
        return [r for r in self.records if r.side == side and (ctype is None or r.type == ctype)]

    @property
    def client_hellos(self) -> int:
        """ClientHello messages (handshake type 1) the client sent in the clear: one per
        full handshake (two after a TLS 1.3 HelloRetryRequest)."""
        return sum(r.messages.count(CLIENT_HELLO) for r in self.of("client", HANDSHAKE))

    @property
    def version_name(self) -> str:
        return VERSIONS.get(self.version or 0, "unknown" if self.version is None
                            else f"0x{self.version:04x}")

    @cached_property            # asked once per record by _after_handshake
    def handshake_end(self) -> Record | None:
        """The record that ends the first handshake as seen on the wire: in TLS 1.2 the
        server's Finished (its first handshake record after its change_cipher_spec),
        in 1.3 the client's Finished (its first encrypted record) once the server sent an
        encrypted record after it (a session ticket, a response): a client's encrypted
        alert looks the same on the wire, but gets no answer. None if it never completed
        (refused, cut short) or the version is unknown."""
        if self.version == 0x0304:
            fin = next(iter(self.of("client", APPLICATION_DATA)), None)
            answered = fin is not None and any(r.time > fin.time for r in
                                               self.of("server", APPLICATION_DATA))
            return fin if answered else None
        if self.version is None:
            return None
        ccs = next(iter(self.of("server", CHANGE_CIPHER_SPEC)), None)
        if ccs is None:
            return None
        return next((r for r in self.of("server", HANDSHAKE) if r.index > ccs.index), None)

    @property
    def handshake_time(self) -> float | None:
        """Seconds from the ClientHello to ``handshake_end``."""
        end = self.handshake_end
        hello = next((r for r in self.of("client", HANDSHAKE) if CLIENT_HELLO in r.messages),
                     None)
        return end.time - hello.time if end is not None and hello is not None else None

    def _after_handshake(self, r: Record) -> bool:
        end = self.handshake_end
        if end is None:
            return False
        if r.side == end.side:
            return r.index > end.index
        return r.time > end.time

    @property
    def handshake_bytes(self) -> int:
        """Record bytes (both ways) up to the end of the handshake, or all of them if it
        never completed."""
        return sum(r.wire_bytes for r in self.records if not self._after_handshake(r))

    def app_data_bytes(self, side: str) -> int:
        """application_data record bytes ``side`` sent after the handshake."""
        return sum(r.wire_bytes for r in self.of(side, APPLICATION_DATA)
                   if self._after_handshake(r))

    @property
    def client_application_data(self) -> int | None:
        """application_data records from the client: in TLS 1.2 these can only be
        requests, so 0 proves not one request byte left the device. In 1.3 the client's
        Finished and its alerts are application_data records too, so the wire cannot
        tell: None."""
        if self.version == 0x0304:
            return None
        return len(self.of("client", APPLICATION_DATA))

    def alerts(self, side: str) -> list[Record]:
        return self.of(side, ALERT)

    def summary(self) -> str:
        count = {s: len(self.of(s)) for s in ("client", "server")}
        hs = self.handshake_time
        parts = [self.version_name, f"{self.client_hellos} ClientHello",
                 f"handshake {hs * 1000:.1f} ms, {self.handshake_bytes} B" if hs is not None
                 else "handshake not completed",
                 f"records c->s {count['client']}, s->c {count['server']}",
                 f"alerts c {len(self.alerts('client'))}, s {len(self.alerts('server'))}"]
        if not all(self.complete.values()):
            parts.append("streams not fully parsed (not TLS, cut short or capture loss)")
        return f"TLS {self.flow.client} -> {self.flow.server}: " + "; ".join(parts)


def tls_facts(flow: Flow) -> TlsFlow:
    return TlsFlow(flow)


def count_client_hellos(flows: Iterable[Flow]) -> int:
    """ClientHellos over all ``flows``: the number of full TLS handshakes begun."""
    return sum(TlsFlow(f).client_hellos for f in flows)
