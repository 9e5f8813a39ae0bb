"""Heartbeat core (sans-I/O): timers, acks, misses, push delivery, framing, the table."""

import portable
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


# -- Driver, over a scripted socket and a clock that only moves when the driver waits --
class ScriptedSock:
    """``arrivals``: (at_ms, bytes or an OSError) in time order. recv_into() waits up to
    the timeout set (the clock moves), then returns what arrived or times out."""

    def __init__(self, clock, arrivals=()):
        self.clock = clock
        self.arrivals = list(arrivals)
        self.timeouts = []
        self.written = []
        self.write_error = None

    def settimeout(self, t):
        self.timeouts.append(t)
        self.timeout = t

    def write(self, data):
        if self.write_error is not None:
            raise self.write_error
        self.written.append((self.clock.now, bytes(data)))
        return len(data)

    def recv_into(self, buf):
        wait = int(self.timeout * 1000)
        if self.arrivals and self.arrivals[0][0] <= self.clock.now + wait:
            at, data = self.arrivals.pop(0)
            self.clock.now = max(self.clock.now, at)
            if isinstance(data, OSError):
                raise data
            n = min(len(buf), len(data))
            buf[:n] = data[:n]
            if n < len(data):
                self.arrivals.insert(0, (at, data[n:]))
            return n
        self.clock.now += wait
        raise OSError(hbm.errno.ETIMEDOUT if wait else hbm.errno.EAGAIN)


def with_clock(fn):
    return portable.with_clock(hbm, fn)


def test_driver_sends_heartbeats_when_idle_and_delivers_pushes():
    def check(clock):
        sock = ScriptedSock(clock, [(350, b"HBACK 1\n"), (500, b"news\nHB 7\n")])
        hb = hbm.Heartbeat(idle_ms=300, timeout_ms=200, misses=2, now=0)
        pushed = []
        drv = hbm.Driver(sock, hb, pushed.append, poll_ms=100)
        eq(drv.run(duration_ms=1000), "deadline")
        eq(clock.now, 1000)
        eq(sock.written, [(300, b"HB 1\n"), (500, b"HBACK 7\n"), (800, b"HB 2\n")])
        eq((pushed, hb.rtt_ms, hb.state_name), ([b"news"], 50, "AWAITING"))
        # waits: at most poll_ms, never past the next timer or the end of the run
        eq([round(t * 1000, 1) for t in sock.timeouts], [100.5] * 11)
    with_clock(check)


def test_driver_waits_only_until_the_next_timer_or_the_end():
    def check(clock):
        sock = ScriptedSock(clock)
        hb = hbm.Heartbeat(idle_ms=130, timeout_ms=1000, misses=1, now=0)
        drv = hbm.Driver(sock, hb, None, poll_ms=100)
        eq(drv.run(duration_ms=250), "deadline")
        eq([round(t * 1000, 1) for t in sock.timeouts], [100.5, 30.5, 100.5, 20.5])
        eq(sock.written, [(130, b"HB 1\n")])
        clock.now = 10000
        sock.timeouts = []
        hb2 = hbm.Heartbeat(idle_ms=1000, timeout_ms=1000, misses=1, now=0)
        drv = hbm.Driver(sock, hb2, None, poll_ms=100)     # start() re-arms from now
        eq(hb2.wake_at(), 11000)
        eq(drv.step(end=10000), "deadline")
        eq(drv.step(end=10001), 1)                         # never less than 1 ms
        eq(sock.timeouts, [])
    with_clock(check)


def test_driver_declares_the_link_dead_after_the_misses():
    def check(clock):
        sock = ScriptedSock(clock)
        hb = hbm.Heartbeat(idle_ms=300, timeout_ms=200, misses=2, now=0)
        drv = hbm.Driver(sock, hb, None, poll_ms=1000)
        eq(drv.run(), "dead")
        eq((clock.now, sock.written), (700, [(300, b"HB 1\n"), (500, b"HB 2\n")]))
        eq(hb.reason, "no answer to 2 heartbeat(s) in a row (200 ms each, last seq 2)")
        eq(drv.run(), "dead")
        eq(drv.step(), "dead")
    with_clock(check)


def test_driver_tells_its_event_sink_each_miss_and_the_death_once():
    def check(clock):
        sock = ScriptedSock(clock)
        told = []
        hb = hbm.Heartbeat(idle_ms=300, timeout_ms=200, misses=3, now=0)
        drv = hbm.Driver(sock, hb, None, poll_ms=1000,
                         events=lambda kind, detail: told.append((clock.now, kind, detail)))
        eq(drv.run(), "dead")
        eq(drv.run(), "dead")                  # the death is told once
        eq(told, [(500, "hb_miss", "1 of 3 in a row, seq 1"),
                  (700, "hb_miss", "2 of 3 in a row, seq 2"),
                  (900, "hb_miss", "3 of 3 in a row, seq 3"),
                  (900, "hb_dead", hb.reason)])

        def broken(kind, detail):
            raise ValueError("a sink that fails")
        hb2 = hbm.Heartbeat(idle_ms=300, timeout_ms=200, misses=1, now=clock.now)
        eq(hbm.Driver(sock, hb2, None, poll_ms=1000, events=broken).run(), "dead")
    with_clock(check)


def test_driver_tells_a_death_by_the_connection_too():
    def check(clock):
        told = []
        sock = ScriptedSock(clock, [(40, b"")])
        hb = hbm.Heartbeat(idle_ms=10000, timeout_ms=200, misses=2, now=0)
        drv = hbm.Driver(sock, hb, None, poll_ms=100,
                         events=lambda kind, detail: told.append((kind, detail)))
        eq(drv.run(duration_ms=1000), "dead")
        eq(told, [("hb_dead", "connection closed by the peer")])
    with_clock(check)


def test_driver_stops_when_asked():
    def check(clock):
        sock = ScriptedSock(clock)
        hb = hbm.Heartbeat(idle_ms=10000, timeout_ms=200, misses=2, now=0)
        drv = hbm.Driver(sock, hb, None, poll_ms=100)
        eq(drv.run(stop=lambda: clock.now >= 250), "stopped")
        eq(clock.now, 300)
        drv.stop()
        eq(drv.step(), "stopped")
        eq(drv.run(duration_ms=200), "deadline")   # run() clears an earlier stop()
        eq(drv.step(stop=lambda: False), 100)
    with_clock(check)


def test_driver_sees_the_connection_end():
    reset = OSError(hbm.errno.ECONNRESET, "reset")
    for arrival, reason in (
            (b"", "connection closed by the peer"),
            (reset, "connection failed: %s" % reset),    # the platform's text of the error
            (b"HBACK x\n", "malformed heartbeat line b'HBACK x': want HBACK <number>")):
        def check(clock, arrival=arrival, reason=reason):
            sock = ScriptedSock(clock, [(40, arrival)])
            hb = hbm.Heartbeat(idle_ms=10000, timeout_ms=200, misses=2, now=0)
            drv = hbm.Driver(sock, hb, None, poll_ms=100)
            eq(drv.run(duration_ms=1000), "dead")
            eq((clock.now, hb.reason), (40, reason))
        with_clock(check)


def test_driver_send_keeps_the_connection_busy_and_a_failed_send_kills_it():
    def check(clock):
        sock = ScriptedSock(clock)
        hb = hbm.Heartbeat(idle_ms=300, timeout_ms=200, misses=2, now=0)
        drv = hbm.Driver(sock, hb, None, poll_ms=100)
        clock.now = 200
        drv.send(b"data\n")
        eq((sock.written, hb.wake_at()), ([(200, b"data\n")], 500))
        sock.write_error = err = OSError(hbm.errno.ECONNRESET, "broken")
        e = raises(OSError, drv.send, b"more\n")
        eq(e.args[0], hbm.errno.ECONNRESET)
        eq((hb.state_name, hb.reason), ("DEAD", "send failed: %s" % err))
    with_clock(check)


def test_driver_heartbeat_that_cannot_be_sent_kills_the_link():
    def check(clock):
        sock = ScriptedSock(clock)
        sock.write_error = err = OSError(hbm.errno.ECONNRESET, "broken")
        hb = hbm.Heartbeat(idle_ms=300, timeout_ms=200, misses=3, now=0)
        drv = hbm.Driver(sock, hb, None, poll_ms=100)
        eq(drv.run(), "dead")
        eq((clock.now, hb.reason), (300, "heartbeat send failed: %s" % err))
    with_clock(check)


def test_driver_read_ready_takes_what_has_arrived_without_waiting():
    def check(clock):
        sock = ScriptedSock(clock, [(0, b"a\nb\n"), (5, b"c\n")])
        hb = hbm.Heartbeat(idle_ms=300, timeout_ms=200, misses=2, now=0)
        got = []
        drv = hbm.Driver(sock, hb, got.append, poll_ms=100, rx_size=3)
        drv.read_ready()
        drv.read_ready()
        drv.read_ready()                         # nothing yet: EAGAIN, not an error
        eq((got, sock.timeouts, clock.now, hb.state_name),
           ([b"a", b"b"], [0, 0, 0], 0, "ACTIVE"))
    with_clock(check)


def test_defaults_limits_and_error_texts():
    hb = hbm.Heartbeat(now=0)
    eq((hb.idle_ms, hb.timeout_ms, hb.misses, hb.reason), (30000, 10000, 3, None))
    eq(hbm.Heartbeat(1, 1, 1, now=0).wake_at(), 1)      # the smallest settings allowed
    for args in ((0, 1, 1), (1, 0, 1), (1, 1, 0)):
        eq(str(raises(ValueError, hbm.Heartbeat, *args)),
           "heartbeat needs idle_ms > 0, timeout_ms > 0, misses >= 1")
    hb = make()
    hb.closed(0, "gone")
    e = raises(hbm.HeartbeatStateError, hb.receive_line, 1, b"late")
    eq((str(e), e.state, e.event), ("heartbeat event TRAFFIC is illegal in state DEAD",
                                    hbm.DEAD, hbm.TRAFFIC))
    e = raises(hbm.HeartbeatProtocolError, make(max_line=8).receive_data, 0, b"123456789")
    eq(str(e), "line longer than 8 bytes from the peer")
    e = raises(hbm.HeartbeatProtocolError, make().receive_line, 0, b"HB 1 2")
    eq(str(e), "malformed heartbeat line b'HB 1 2': want HB <number>")


def test_without_now_the_idle_timer_starts_at_the_current_tick():
    def check(clock):
        clock.now = 500
        eq(hbm.Heartbeat(idle_ms=100).wake_at(), 600)
    with_clock(check)


def test_sequence_numbers_up_to_10_digits():
    codec = hbm.LineCodec()
    eq(codec.classify(b"HBACK 1234567890"), (hbm.ACK_LINE, 1234567890))
    raises(hbm.HeartbeatProtocolError, codec.classify, b"HBACK 12345678901")
    eq(codec.classify(b"HB 7"), (hbm.PING_LINE, 7))


def test_only_answers_to_outstanding_heartbeats_are_acks():
    hb = make(misses=3)
    eq(hb.receive_line(10, b"HBACK 0"), [])            # nothing sent yet: a stray answer
    eq((hb.state_name, hb.acks, hb.late_acks), ("ACTIVE", 0, 1))
    hb.timer(1010)                                       # HB 1
    hb.receive_line(1020, b"HBACK 1")
    hb.timer(2020)                                       # HB 2
    hb.receive_line(2030, b"HBACK 1")                    # a duplicate of the old answer
    hb.receive_line(2040, b"HBACK 3")                    # one for a heartbeat not sent
    eq((hb.state_name, hb.acks, hb.late_acks), ("AWAITING", 1, 3))
    # the server's own probe with the number of our outstanding heartbeat is no answer
    eq(hb.receive_line(2050, b"HB 2"), [(hbm.SEND, b"HBACK 2\n")])
    eq(hb.state_name, "AWAITING")
    hb.receive_line(2060, b"HBACK 2")
    eq((hb.state_name, hb.acks, hb.rtt_ms), ("ACTIVE", 2, 40))


def test_counters_add_up():
    hb = make(idle=100, timeout=50, misses=2)
    for t in (100, 150):
        hb.timer(t)                                      # HB 1, miss 1 -> HB 2
    hb.receive_line(160, b"HBACK 2")
    hb.receive_line(170, b"one")
    hb.receive_line(180, b"two")
    for t in (280, 330, 380):
        hb.timer(t)                                      # HB 3, miss -> HB 4, miss: dead
    eq((hb.pings_sent, hb.acks, hb.total_misses, hb.pushes, hb.state_name),
       (4, 1, 3, 2, "DEAD"))


def test_driver_defaults_and_an_error_without_errno():
    def check(clock):
        sizes = []

        class Sock(ScriptedSock):
            def recv_into(self, buf):
                sizes.append(len(buf))
                return ScriptedSock.recv_into(self, buf)

        sock = Sock(clock, [(10, OSError())])
        hb = hbm.Heartbeat(idle_ms=10000, timeout_ms=200, misses=2, now=0)
        drv = hbm.Driver(sock, hb, None)
        eq(drv.step(), 100)                          # poll_ms
        eq(drv.run(), "dead")
        eq((sizes, hb.reason), ([128], "connection failed: "))
    with_clock(check)
