"""Assertions on one TCP connection, failing with what was seen on the wire.

Mixed into :class:`synack_host.hil.tcpflow.Flow`. Every failure message has three parts:
what was expected, what the capture shows instead, and the connection's segment trace
(relative times and sequence numbers, tcpdump-style flags).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .segments import MOD, Endpoint, Fin, Probe, Segment

TRACE_LINES = 40


class FlowChecks:
    """``assert_*`` helpers and the trace; the facts come from the subclass."""

    if TYPE_CHECKING:
        client: Endpoint
        server: Endpoint
        partial: bool
        segments: list[Segment]
        start: float
        syn: Segment | None
        syn_count: int
        client_isn: int | None
        synack: Segment | None
        synack_ack_ok: bool
        handshake_ack: Segment | None
        handshake_complete: bool
        handshake_time: float | None
        rsts: list[tuple[float, str]]
        fins: dict[str, Fin]
        first_fin: str | None
        four_way_close: bool
        time_wait: str | None
        keepalives: dict[str, list[Probe]]
        data_bytes: dict[str, int]
        retransmissions: dict[str, int]
        label: str

        def side(self, seg: Segment) -> str: ...
        def summary(self) -> str: ...
        def probe_intervals(self, side: str = "client") -> list[float]: ...

    # -- the trace -------------------------------------------------------------------------

    def describe(self, limit: int = TRACE_LINES) -> str:
        """The segment trace: ``+t side > peer FLAGS seq=.. ack=.. len=..`` (relative)."""
        base: dict[str, int] = {}
        for seg in self.segments:
            base.setdefault(self.side(seg), seg.seq)
        probes = {(p.time, p.side) for ps in self.keepalives.values() for p in ps}
        lines = []
        segs = self.segments
        shown = segs if len(segs) <= limit else segs[:limit // 2] + segs[-(limit // 2):]
        for i, seg in enumerate(shown):
            if len(segs) > limit and i == limit // 2:
                lines.append(f"    ... {len(segs) - limit} segments not shown ...")
            me = self.side(seg)
            peer = "server" if me == "client" else "client"
            rseq = (seg.seq - base[me]) % MOD
            rack = (seg.ack - base[peer]) % MOD if seg.flags & 0x10 and peer in base else 0
            note = "  (keepalive probe)" if (seg.time, me) in probes else ""
            lines.append(f"    {seg.time - self.start:+10.6f} {me:>6} > {peer:<6} "
                         f"[{seg.flag_text:<3}] seq={rseq} ack={rack} len={seg.length}"
                         f" win={seg.window}{note}")
        return "\n".join(lines) if lines else "    (no segments)"

    def _fail(self, expected: str, seen: str) -> None:
        raise AssertionError(f"{self.label}: expected {expected}, but on the wire {seen}.\n"
                             f"  facts: {self.summary()}\n  trace:\n{self.describe()}")

    # -- handshake ---------------------------------------------------------------------------

    def assert_handshake(self, max_time: float | None = None) -> None:
        """SYN, SYN+ACK with ack = client ISN + 1, ACK of the server ISN + 1."""
        want = "the three-way handshake SYN, SYN+ACK (ack=ISN+1), ACK"
        if self.syn is None:
            self._fail(want, "no SYN was captured (the capture began after it?)")
        if self.synack is None:
            by = [s for t, s in self.rsts]
            if "server" in by:
                self._fail(want, "the server answered the SYN with RST (connection refused)")
            self._fail(want, f"the SYN was sent {self.syn_count} time(s) and never answered")
        assert self.synack is not None and self.client_isn is not None
        if not self.synack_ack_ok:
            self._fail(want, f"the SYN+ACK acknowledged {self.synack.ack} instead of "
                             f"ISN+1 = {(self.client_isn + 1) % MOD}")
        if self.handshake_ack is None:
            self._fail(want, "the client never sent the final ACK of the server's ISN+1"
                             + (f" (RST by {self.rsts[0][1]})" if self.rsts else ""))
        if max_time is not None and self.handshake_time is not None \
                and self.handshake_time > max_time:
            self._fail(f"a handshake within {max_time * 1000:.1f} ms",
                       f"it took {self.handshake_time * 1000:.1f} ms")

    # -- close -------------------------------------------------------------------------------

    def assert_four_way_close(self, first_fin: str | None = None) -> None:
        """Both sides sent a FIN and each FIN was acked with fin_seq + 1; optionally
        ``first_fin`` (``"client"``/``"server"``) sent the first one."""
        want = "a four-way close (FIN, ACK of fin_seq+1, each way)"
        if first_fin is not None:
            _check_side(first_fin)
            want += f" begun by the {first_fin}"
        if not self.fins:
            rst = f" (RST by {self.rsts[0][1]})" if self.rsts else ""
            self._fail(want, f"neither side sent a FIN{rst}")
        if first_fin is not None and self.first_fin != first_fin:
            self._fail(want, f"the {self.first_fin} sent the first FIN")
        for side in ("client", "server"):
            fin = self.fins.get(side)
            peer = "server" if side == "client" else "client"
            if fin is None:
                rst = [s for _, s in self.rsts]
                self._fail(want, f"the {side} never sent a FIN"
                           + (f" (RST by {', '.join(rst)})" if rst else ""))
            assert fin is not None
            if not fin.acked:
                acks = ", ".join(str(a) for a in fin.acks_seen) or "none"
                self._fail(want, f"the {peer} never acked the {side}'s FIN with "
                                 f"{(fin.seq + 1) % MOD} (acks seen after it: {acks})")

    def assert_time_wait(self, side: str) -> None:
        """``side`` closed actively: sent the first FIN and then acked the peer's FIN."""
        _check_side(side)
        if self.time_wait != side:
            seen = (f"TIME_WAIT fell to {self.time_wait}" if self.time_wait
                    else "the close never completed" if not self.four_way_close
                    else "a reset interrupted the close")
            self._fail(f"the {side} to enter TIME_WAIT", seen)

    # -- reset -------------------------------------------------------------------------------

    def assert_rst(self, by: str | None = None) -> None:
        if by is not None:
            _check_side(by)
        senders = [s for _, s in self.rsts]
        if not senders or (by is not None and by not in senders):
            seen = f"RSTs came from {', '.join(senders)}" if senders else "no RST was sent"
            self._fail(f"an RST{' from the ' + by if by else ''}", seen)

    def assert_no_rst(self) -> None:
        if self.rsts:
            self._fail("no RST", f"the {self.rsts[0][1]} sent an RST at "
                                 f"+{self.rsts[0][0] - self.start:.3f} s")

    # -- keepalive ---------------------------------------------------------------------------

    def assert_keepalive(self, min_probes: int = 1, side: str = "client",
                         interval: tuple[float, float] | None = None,
                         acked: bool = True) -> None:
        """At least ``min_probes`` keepalive probes from ``side``; every spacing within
        ``interval`` (seconds, inclusive); each probe acked by the peer if ``acked``."""
        _check_side(side)
        probes = self.keepalives[side]
        want = f"at least {min_probes} keepalive probe(s) from the {side}"
        if len(probes) < min_probes:
            self._fail(want, f"{len(probes)} probe(s) were seen")
        spacing = self.probe_intervals(side)
        if interval is not None:
            lo, hi = interval
            bad = [f"{d:.3f}" for d in spacing if not lo <= d <= hi]
            if bad:
                self._fail(f"probes {lo}-{hi} s apart", "they were spaced "
                           + ", ".join(f"{d:.3f}" for d in spacing) + " s")
        if acked:
            unacked = [p for p in probes if not p.acked]
            if unacked:
                self._fail("every probe acked by the peer",
                           f"{len(unacked)} of {len(probes)} probe(s) got no ACK")

    def assert_no_keepalive(self, side: str = "client") -> None:
        _check_side(side)
        if self.keepalives[side]:
            self._fail(f"no keepalive probe from the {side}",
                       f"{len(self.keepalives[side])} probe(s) were seen")

    # -- data --------------------------------------------------------------------------------

    def assert_data(self, client: int | None = None, server: int | None = None) -> None:
        """Bytes of payload sent by the client and by the server (retransmissions and
        keepalive bytes not counted twice)."""
        for side, want in (("client", client), ("server", server)):
            if want is not None and self.data_bytes[side] != want:
                self._fail(f"{want} data bytes from the {side}",
                           f"the {side} sent {self.data_bytes[side]}")


def _check_side(side: str) -> None:
    if side not in ("client", "server"):
        raise ValueError(f"side must be 'client' or 'server', not {side!r}")
