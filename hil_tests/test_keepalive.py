"""Keepalive: a peer that silently stops answering (its port blackholed: no FIN, no RST)
is declared dead within idle + interval x count (+ 1 s), with probes on the wire."""

import time

DETECT = """
import errno, time
s = socket.socket()
mech = s.keepalive(%(idle)d, %(interval)d, %(count)d)
s.settimeout(60)
s.connect(socket.getaddrinfo(%(host)r, %(port)d)[0][-1])
s.write(b'hi')
print('echo', s.read(2))
print('armed', mech)
t = time.ticks_ms()
try:
    s.read(1)
    print('dead? no')
except OSError as e:
    print('dead', e.args[0] == errno.ETIMEDOUT, s.state, time.ticks_diff(time.ticks_ms(), t))
s.close()
"""


def test_dead_peer_detected_within_the_bound(board, echo_server, blackhole, capture, hil,
                                             record_property):
    if hil.modem == "wifi":     # the native stack takes seconds
        idle, interval, count, unit = 1, 1, 2, 1.0
    else:                       # AT+CTCPKA counts minutes; the rig's minute is shorter
        idle, interval, count, unit = 60, 60, 2, hil.keepalive_minute_s / 60
    bound_s = (idle + interval * count) * unit
    cap = capture(echo_server.port)
    board.start(DETECT % {"idle": idle, "interval": interval, "count": count,
                          "host": hil.server_host, "port": echo_server.port})
    board.expect(r"armed (\w+)")
    hole = blackhole(echo_server.port)
    t0 = time.monotonic()
    out = board.finish(timeout=bound_s + 30)
    took = time.monotonic() - t0
    hole.stop()
    flows = cap.stop()
    record_property("detection_s", round(took, 2))
    record_property("bound_s", bound_s)
    assert "armed " + ("tcp" if hil.modem == "wifi" else "modem") in out
    dead = out.split("dead ", 1)[1].split()
    assert dead[:2] == ["True", "CLOSED"], out
    assert took <= bound_s + 1.0 + 1.0, f"detected after {took:.1f} s, bound {bound_s:.1f} s"
    # the probes went out (and were not answered: the peer is blackholed)
    flows[0].assert_keepalive(min_probes=count, side="client", acked=False)
