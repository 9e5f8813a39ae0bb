"""TCP connection facts from a pcap file: handshake, data, close, RST, keepalive.

:func:`read_pcap` turns a capture (Ethernet, Linux cooked v1/v2, BSD loopback or raw IP
link types; IPv4 and IPv6) into :class:`Segment` objects; :func:`flows` groups them into
:class:`Flow` objects, one per TCP connection, in the order of their first SYN. Each flow
works out what happened on the wire and has ``assert_*`` helpers whose failure message
says what was seen instead (the facts and the segment trace). Assertions live in
:mod:`synack_host.hil.flowcheck`, mixed into :class:`Flow`; the records both read
(:class:`Segment`, :class:`Endpoint`, :class:`Fin`, :class:`Probe`) in
:mod:`synack_host.hil.segments`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from pathlib import Path

import dpkt

from .flowcheck import FlowChecks
from .segments import ACK, FIN, MOD, RST, SYN, Endpoint, Fin, Probe, Segment

KEEPALIVE_MIN_IDLE_S = 0.25     # a probe follows an idle gap at least this long


def _link_parser(linktype: int):  # noqa: ANN202 - returns a dpkt packet class or None
    if linktype == dpkt.pcap.DLT_EN10MB:
        return dpkt.ethernet.Ethernet
    if linktype == dpkt.pcap.DLT_LINUX_SLL:
        return dpkt.sll.SLL
    if linktype == 276:                               # DLT_LINUX_SLL2 (tcpdump -i any)
        return dpkt.sll2.SLL2
    if linktype in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
        return dpkt.loopback.Loopback
    if linktype in (dpkt.pcap.DLT_RAW, 12, 14, 101, 228, 229):
        return None                                   # raw IP
    raise ValueError(f"unsupported pcap link type {linktype}")


def _ip_layer(link, buf: bytes):  # noqa: ANN001, ANN202
    if link is None:
        version = buf[0] >> 4 if buf else 0
        return dpkt.ip.IP(buf) if version == 4 else dpkt.ip6.IP6(buf) if version == 6 else None
    pkt = link(buf)
    ip = pkt.data
    if link is dpkt.loopback.Loopback and isinstance(ip, bytes):
        return _ip_layer(None, ip)
    return ip


def _records(reader) -> Iterator[tuple[float, bytes]]:  # noqa: ANN001
    """The reader's records; a record cut short (tcpdump killed mid-write) ends them."""
    it = iter(reader)
    while True:
        try:
            ts, buf = next(it)
        except StopIteration:
            return
        except (dpkt.NeedData, dpkt.UnpackError, ValueError):
            return
        yield ts, buf


def read_pcap(path: str | Path) -> list[Segment]:
    """All TCP segments of a pcap (or pcapng) file, in capture order."""
    segments: list[Segment] = []
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if not head:
            return segments
        reader = dpkt.pcapng.Reader(f) if head == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        link = _link_parser(reader.datalink())
        for ts, buf in _records(reader):
            try:
                ip = _ip_layer(link, buf)
            except (dpkt.UnpackError, IndexError, ValueError):
                continue
            if isinstance(ip, dpkt.ip.IP):
                family = socket.AF_INET
            elif isinstance(ip, dpkt.ip6.IP6):
                family = socket.AF_INET6
            else:
                continue
            tcp = ip.data
            if not isinstance(tcp, dpkt.tcp.TCP):
                continue
            if family == socket.AF_INET:    # from the IP header: exact even when truncated
                length = max(0, ip.len - ip.hl * 4 - tcp.off * 4)
            else:
                length = len(tcp.data)
            src = Endpoint(socket.inet_ntop(family, ip.src), tcp.sport)
            dst = Endpoint(socket.inet_ntop(family, ip.dst), tcp.dport)
            segments.append(Segment(float(ts), src, dst, tcp.flags, tcp.seq, tcp.ack, length,
                                    tcp.win, bytes(tcp.data[:length])))
    return segments


class Flow(FlowChecks):
    """One TCP connection: the facts, worked out from its segments."""

    def __init__(self, client: Endpoint, server: Endpoint, partial: bool = False):
        self.client, self.server = client, server
        self.partial = partial            # capture began after the SYN
        self.segments: list[Segment] = []
        self.syn_seq: int | None = None   # ISN of the SYN that opened it (grouping)

    def side(self, seg: Segment) -> str:
        return "client" if seg.src == self.client else "server"

    def add(self, seg: Segment) -> None:
        self.segments.append(seg)

    # -- facts ---------------------------------------------------------------------------

    def _analyse(self) -> None:
        segs = self.segments
        self.start = segs[0].time if segs else 0.0
        self.end = segs[-1].time if segs else 0.0
        self.syn = next((s for s in segs if s.flags & (SYN | ACK) == SYN), None)
        self.syn_count = sum(1 for s in segs if s.flags & (SYN | ACK) == SYN)
        self.client_isn = self.syn.seq if self.syn else None
        self.synack = next((s for s in segs if s.has(SYN | ACK)
                            and self.side(s) == "server"), None)
        self.server_isn = self.synack.seq if self.synack else None
        self.synack_ack_ok = bool(self.synack and self.client_isn is not None
                                  and self.synack.ack == (self.client_isn + 1) % MOD)
        self.handshake_ack = None
        if self.synack is not None and self.client_isn is not None:
            want_ack = (self.synack.seq + 1) % MOD
            self.handshake_ack = next(
                (s for s in segs if s.time >= self.synack.time and self.side(s) == "client"
                 and s.flags & (SYN | RST | ACK) == ACK and s.ack == want_ack
                 and s.seq == (self.client_isn + 1) % MOD), None)
        self.handshake_complete = bool(self.syn and self.synack_ack_ok and self.handshake_ack)
        self.handshake_time = (self.handshake_ack.time - self.syn.time
                               if self.handshake_complete and self.syn and self.handshake_ack
                               else None)
        self.rsts = [(s.time, self.side(s)) for s in segs if s.flags & RST]
        self._walk()
        self._close_facts()

    def _walk(self) -> None:
        """One pass for data bytes, retransmissions, FINs and keepalive probes."""
        base: dict[str, int] = {}
        nxt: dict[str, int] = {}          # relative snd_nxt per side
        lo: dict[str, int] = {}
        hi: dict[str, int] = {}
        self.retransmissions = {"client": 0, "server": 0}
        self.fins: dict[str, Fin] = {}
        self.keepalives: dict[str, list[Probe]] = {"client": [], "server": []}
        pending: dict[str, Probe] = {}
        prev_time: float | None = None
        for seg in self.segments:
            me = self.side(seg)
            peer = "server" if me == "client" else "client"
            if seg.flags & ACK:
                self._note_ack(peer, seg, base, nxt, pending)
            b = base.setdefault(me, seg.seq)
            rel = (seg.seq - b) % MOD
            end = rel + seg.length + (1 if seg.flags & SYN else 0) + (1 if seg.flags & FIN else 0)
            idle = seg.time - prev_time if prev_time is not None else 0.0
            prev_time = seg.time
            if (me in nxt and seg.flags & (SYN | FIN | RST) == 0 and seg.flags & ACK
                    and seg.length <= 1 and rel == nxt[me] - 1
                    and idle >= KEEPALIVE_MIN_IDLE_S):
                probe = Probe(seg.time, me, seg.length, idle)
                self.keepalives[me].append(probe)
                pending[me] = probe
                continue
            if seg.length:
                data_start = rel + (1 if seg.flags & SYN else 0)
                if me in hi and data_start + seg.length <= hi[me]:
                    self.retransmissions[me] += 1
                lo[me] = min(lo.get(me, data_start), data_start)
                hi[me] = max(hi.get(me, 0), data_start + seg.length)
            if seg.flags & FIN and me not in self.fins:
                self.fins[me] = Fin((seg.seq + seg.length) % MOD, seg.time)
            nxt[me] = max(nxt.get(me, 0), end)
        self.data_bytes = {s: hi.get(s, 0) - lo.get(s, 0) for s in ("client", "server")}

    def _note_ack(self, acked_side: str, seg: Segment, base: dict[str, int],
                  nxt: dict[str, int], pending: dict[str, Probe]) -> None:
        fin = self.fins.get(acked_side)
        if fin is not None and not fin.acked:
            if seg.ack == (fin.seq + 1) % MOD:
                fin.acked, fin.ack_time = True, seg.time
            elif len(fin.acks_seen) < 8:
                fin.acks_seen.append(seg.ack)
        probe = pending.pop(acked_side, None)
        if probe is not None and acked_side in base:
            if (seg.ack - base[acked_side]) % MOD == nxt.get(acked_side):
                probe.acked, probe.ack_time = True, seg.time

    def _close_facts(self) -> None:
        fins = self.fins
        self.first_fin = min(fins, key=lambda s: fins[s].time) if fins else None
        self.four_way_close = len(fins) == 2 and all(f.acked for f in fins.values())
        self.time_wait: str | None = None
        if not self.four_way_close or self.first_fin is None:
            return
        first = self.first_fin
        second = "server" if first == "client" else "client"
        first_fin, second_fin = fins[first], fins[second]
        rst_after = [t for t, _ in self.rsts if t >= first_fin.time]
        if rst_after and rst_after[0] < max(first_fin.ack_time or 0, second_fin.ack_time or 0):
            return                       # reset before the close completed
        # simultaneous close: the second FIN left before its sender had acked the first
        simultaneous = first_fin.ack_time is None or first_fin.ack_time > second_fin.time
        self.time_wait = "both" if simultaneous else first

    # -- convenience -----------------------------------------------------------------------

    @property
    def rst(self) -> bool:
        return bool(self.rsts)

    @property
    def rst_by(self) -> str | None:
        """Which side sent the first RST, or None."""
        return self.rsts[0][1] if self.rsts else None

    @property
    def client_bytes(self) -> int:
        return self.data_bytes["client"]

    @property
    def server_bytes(self) -> int:
        return self.data_bytes["server"]

    def probe_intervals(self, side: str = "client") -> list[float]:
        """Seconds between successive keepalive probes of ``side``."""
        times = [p.time for p in self.keepalives[side]]
        return [b - a for a, b in zip(times, times[1:], strict=False)]

    @property
    def label(self) -> str:
        return f"connection {self.client} -> {self.server}"

    def summary(self) -> str:
        hs = (f"handshake {self.handshake_time * 1000:.2f} ms" if self.handshake_time
              is not None else "handshake INCOMPLETE" if not self.partial else "handshake not seen")
        close = ("4-way close complete" if self.four_way_close
                 else f"first FIN {self.first_fin}" if self.first_fin else "no FIN")
        parts = [hs, f"data c->s {self.client_bytes} B, s->c {self.server_bytes} B", close]
        if self.four_way_close:
            parts.append(f"first FIN {self.first_fin}, TIME_WAIT {self.time_wait}")
        parts.append(f"RST by {self.rst_by}" if self.rst else "no RST")
        probes = {s: len(p) for s, p in self.keepalives.items() if p}
        if probes:
            parts.append("keepalive probes " + ", ".join(f"{s} {n}" for s, n in probes.items()))
        retrans = sum(self.retransmissions.values()) + max(0, self.syn_count - 1)
        if retrans:
            parts.append(f"{retrans} retransmission(s)")
        return f"{self.client} -> {self.server}: " + "; ".join(parts)

    def __repr__(self) -> str:
        return f"<Flow {self.summary()}>"


def flows(segments: Iterable[Segment], server_ports: Iterable[int] = ()) -> list[Flow]:
    """Group segments into connections, in order of their first segment (the SYN).

    A SYN with a new ISN on a 4-tuple starts a new connection. Segments of a connection
    whose SYN was not captured make a ``partial`` flow; its server is the side whose port
    is in ``server_ports`` (else the lower port, or the sender of a SYN+ACK).
    """
    ports = set(server_ports)
    current: dict[frozenset[Endpoint], Flow] = {}
    result: list[Flow] = []
    for seg in segments:
        key = frozenset((seg.src, seg.dst))
        flow = current.get(key)
        is_syn = seg.flags & (SYN | ACK) == SYN
        if is_syn and (flow is None or flow.partial or (
                flow.syn_seq is not None and flow.syn_seq != seg.seq)):
            flow = Flow(seg.src, seg.dst)
            flow.syn_seq = seg.seq
        elif flow is None:
            if seg.has(SYN | ACK):
                client, server = seg.dst, seg.src
            elif seg.dst.port in ports or (seg.src.port not in ports
                                           and seg.dst.port < seg.src.port):
                client, server = seg.src, seg.dst
            else:
                client, server = seg.dst, seg.src
            flow = Flow(client, server, partial=True)
        else:
            flow.add(seg)
            continue
        current[key] = flow
        result.append(flow)
        flow.add(seg)
    for flow in result:
        flow._analyse()
    return result


def iter_flows(path: str | Path, server_ports: Iterable[int] = ()) -> Iterator[Flow]:
    yield from flows(read_pcap(path), server_ports)
