"""Heartbeat core (sans-I/O): timers, acks, misses, push delivery, framing, the table."""

from portable import eq, feed_variants, raises

from synack import heartbeat as hbm

PORTABLE = True


def make(idle=1000, timeout=200, misses=3, **kw):
    return hbm.Heartbeat(idle_ms=idle, timeout_ms=timeout, misses=misses, now=0, **kw)


def sends(actions):
    return [v for k, v in actions if k == hbm.SEND]


def test_idle_connection_gets_a_heartbeat_and_the_ack_rearms_the_timer():
    hb = make()
    eq(hb.wake_at(), 1000)
    eq(hb.timer(999), [])
    eq(hb.timer(1000), [(hbm.SEND, b"HB 1\n")])
    eq(hb.state_name, "AWAITING")
    eq(hb.wake_at(), 1200)
    eq(hb.receive_line(1050, b"HBACK 1\n"), [])
    eq(hb.state_name, "ACTIVE")
    eq(hb.rtt_ms, 50)
    eq(hb.wake_at(), 2050)
    eq(hb.timer(2050), [(hbm.SEND, b"HB 2\n")])
    eq((hb.pings_sent, hb.acks, hb.total_misses), (2, 1, 0))


def test_traffic_either_way_resets_the_idle_timer():
    hb = make()
    eq(hb.receive_line(600, b"news"), [(hbm.DELIVER, b"news")])
    eq(hb.timer(1000), [])
    eq(hb.wake_at(), 1600)
    hb.sent(1500)
    eq(hb.wake_at(), 2500)
    eq(sends(hb.timer(2500)), [b"HB 1\n"])


def test_k_misses_declare_the_link_dead_at_idle_plus_k_timeouts():
    hb = make(idle=1000, timeout=200, misses=3)
    out = []
    t = 0
    while hb.state != hbm.DEAD and t < 5000:
        for a in hb.timer(t):
            out.append((t, a))
        t += 10
    eq([(t, a[1]) for t, a in out], [(1000, b"HB 1\n"), (1200, b"HB 2\n"), (1400, b"HB 3\n"),
                                     (1600, out[-1][1][1])])
    eq(out[-1][1][0], hbm.LINK_DEAD)
    eq("3 heartbeat(s)" in hb.reason, True)
    eq(hb.wake_at(), None)
    eq(hb.timer(9999), [])


def test_a_late_ack_of_an_earlier_heartbeat_still_counts():
    hb = make()
    hb.timer(1000)
    hb.timer(1200)          # miss 1, HB 2 out
    eq(hb.missed, 1)
    hb.receive_line(1250, b"HBACK 1")
    eq(hb.state_name, "ACTIVE")
    eq(hb.missed, 0)
    eq(hb.rtt_ms, None)     # only the newest heartbeat's answer gives an RTT
    hb.receive_line(1260, b"HBACK 2")   # duplicate answer: traffic, counted
    eq((hb.acks, hb.late_acks, hb.state_name), (1, 1, "ACTIVE"))


def test_push_between_heartbeats_is_delivered_and_does_not_answer_the_heartbeat():
    hb = make()
    hb.timer(1000)
    eq(hb.receive_line(1100, b"PUSH 7\r\n"), [(hbm.DELIVER, b"PUSH 7")])
    eq(hb.state_name, "AWAITING")
    hb.timer(1200)
    eq(hb.missed, 1)
    eq(hb.pushes, 1)


def test_server_heartbeat_is_answered():
    hb = make()
    eq(hb.receive_line(10, b"HB 41"), [(hbm.SEND, b"HBACK 41\n")])
    eq(hb.pushes, 0)


def test_malformed_heartbeat_lines_raise_clearly():
    hb = make()
    e = raises(hbm.HeartbeatProtocolError, hb.receive_line, 0, b"HBACK x1")
    eq("HBACK x1" in str(e), True)
    raises(hbm.HeartbeatProtocolError, hb.receive_line, 0, b"HBACK")
    eq(hb.receive_line(0, b"HBACKUP done"), [(hbm.DELIVER, b"HBACKUP done")])


def test_framing_whole_bytewise_and_split():
    data = b"a\nHBACK 1\r\nHB 3\nlast\n"
    want = None
    for chunks in feed_variants(data):
        hb = make()
        hb.timer(1000)
        got = []
        for c in chunks:
            got.extend(hb.receive_data(1010, c))
        if want is None:
            want = got
        eq(got, want)
        eq(hb.state_name, "ACTIVE")
    eq(want, [(hbm.DELIVER, b"a"), (hbm.SEND, b"HBACK 3\n"), (hbm.DELIVER, b"last")])


def test_overlong_line_raises_and_the_buffer_is_bounded():
    hb = make(max_line=8)
    e = raises(hbm.HeartbeatProtocolError, hb.receive_data, 0, b"123456789")
    eq("8 bytes" in str(e), True)
    eq(hb.receive_data(0, b"ok\n"), [(hbm.DELIVER, b"ok")])


def test_closed_connection_is_dead_and_later_input_is_illegal():
    hb = make()
    eq(hb.closed(5, "connection closed by the peer"),
       [(hbm.LINK_DEAD, "connection closed by the peer")])
    eq(hb.closed(6, "again"), [])
    e = raises(hbm.HeartbeatStateError, hb.receive_line, 7, b"late")
    eq("TRAFFIC" in str(e) and "DEAD" in str(e), True)


def test_table_is_complete_and_named():
    for (state, event), new in hbm.TRANSITIONS.items():
        eq(0 <= state < len(hbm.STATE_NAMES) and 0 <= new < len(hbm.STATE_NAMES), True)
        eq(0 <= event < len(hbm.EVENT_NAMES), True)
    eq(hbm.TRANSITIONS.get((hbm.ACTIVE, hbm.ACK)), None)   # no ack without a heartbeat
    raises(ValueError, hbm.Heartbeat, 0, 1, 1)


class JsonishCodec:
    """A different wire format: {"ping":n} / {"pong":n}."""

    def ping(self, seq):
        return b'{"ping":%d}\n' % seq

    def ack(self, seq):
        return b'{"pong":%d}\n' % seq

    def classify(self, line):
        if line.startswith(b'{"pong":'):
            return hbm.ACK_LINE, int(line[8:-1])
        if line.startswith(b'{"ping":'):
            return hbm.PING_LINE, int(line[8:-1])
        return hbm.DATA_LINE, 0


def test_pluggable_codec():
    hb = make(codec=JsonishCodec())
    eq(hb.timer(1000), [(hbm.SEND, b'{"ping":1}\n')])
    hb.receive_line(1001, b'{"pong":1}')
    eq(hb.state_name, "ACTIVE")
    eq(hb.receive_line(1002, b'{"ping":9}'), [(hbm.SEND, b'{"pong":9}\n')])


def test_ticks_wraparound():
    start = (1 << 30) - 300       # 300 ms before MicroPython's ticks wrap
    hb = hbm.Heartbeat(idle_ms=1000, timeout_ms=200, misses=1, now=start)
    eq(hb.timer(start + 999 - (1 << 30)), [])
    eq(sends(hb.timer(start + 1000 - (1 << 30))), [b"HB 1\n"])
