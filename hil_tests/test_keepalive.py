"""Keepalive: a peer that silently stops answering (its port blackholed: no FIN, no RST)
is declared dead within idle + interval x count + 2 s (the bound the report shows as
``bound_s``; ``keepalive_s`` is the stack's own figure), with probes on the wire."""

import time

import pytest
from synack_host.sim.modem import DIALECTS

from device_code import HEARTBEAT

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
    if mech != 'probe':     # 'probe': nothing would notice; the heartbeat's job
        got = s.read(1)
        if got == b'':      # a close URC that does not say why: the end of the stream
            print('dead eof', s.state, time.ticks_diff(time.ticks_ms(), t))
        else:
            print('dead? no')
except OSError as e:
    print('dead', e.args[0] == errno.ETIMEDOUT, s.state, time.ticks_diff(time.ticks_ms(), t))
s.close()
"""


SLACK_S = 2.0


def test_dead_peer_detected_within_the_bound(board, echo_server, blackhole, capture, hil,
                                             record_property):
    if hil.modem == "wifi":     # the native stack takes seconds
        idle, interval, count, unit = 1, 1, 2, 1.0
    else:   # in range for every dialect's command (SIM7600 whole minutes, BG96 count
            # >= 3, SIM800 seconds >= 30); the rig's minute is shorter
        idle, interval, count, unit = 60, 60, 3, hil.keepalive_minute_s / 60
    keepalive_s = (idle + interval * count) * unit    # what the stack promises
    # + 1 s: the device reads with a 1 s timeout, so it notices up to 1 s late;
    # + 1 s: the host sees the device's line through the REPL and the UART
    bound_s = keepalive_s + SLACK_S
    cap = capture(echo_server.port)
    board.start(DETECT % {"idle": idle, "interval": interval, "count": count,
                          "host": hil.server_host, "port": echo_server.port})
    mechanism = board.expect(r"armed (\w+)").group(1).decode()
    if mechanism == "probe":
        board.finish(timeout=bound_s + 30)
        pytest.skip(f"{hil.modem} keeps no keepalive itself (mechanism 'probe'): the "
                    "application runs a heartbeat, tested by the heartbeat tests")
    hole = blackhole(echo_server.port)
    t0 = time.monotonic()
    out = board.finish(timeout=bound_s + 30)
    took = time.monotonic() - t0
    hole.stop()
    flows = cap.stop()
    record_property("detection_s", round(took, 2))
    record_property("bound_s", bound_s)               # the bound enforced below
    record_property("keepalive_s", keepalive_s)
    assert "armed " + ("tcp" if hil.modem == "wifi" else "modem") in out
    dead = out.split("dead ", 1)[1].split()
    if "{reason}" in DIALECTS.get(hil.modem, DIALECTS["sim7600"]).wording.closed_urc:
        assert dead[:2] == ["True", "CLOSED"], out     # the modem said: timed out
    else:   # its close URC carries no reason (BG96, SIM800): the stream just ends
        assert dead[:2] in (["True", "CLOSED"], ["eof", "CLOSE_WAIT"]), out
    assert took <= bound_s, f"detected after {took:.2f} s, bound {bound_s:.1f} s " \
        f"(keepalive {keepalive_s:.1f} s + {SLACK_S:g} s)"
    # the probes went out (and were not answered: the peer is blackholed)
    flows[0].assert_keepalive(min_probes=count, side="client", acked=False)


def test_heartbeat_keeps_a_connection_through_an_idle_killing_nat(board, hil,
                                                                 record_property):
    from synack_host.hil.middlebox import IdleKillingProxy, heartbeat_server
    from synack_host.hil.servers import ScriptedServer

    nat_idle_s = 2.0
    with ScriptedServer(heartbeat_server(), hil.bind_host) as peer, \
            IdleKillingProxy(peer.address, nat_idle_s, hil.bind_host) as nat:
        args = {"host": hil.server_host, "port": nat.port, "run_ms": 5000}
        alive = board.exec(HEARTBEAT % dict(args, idle_ms=500), timeout=60).split()
        assert alive[:2] == ["result", "deadline"] and alive[3] == "ACTIVE", alive
        assert nat.kills == 0 and int(alive[2]) >= 5
        # the same path without heartbeats: the NAT forgets the connection
        t0 = time.monotonic()
        dead = board.exec(HEARTBEAT % dict(args, idle_ms=60000), timeout=60).split()
        took = time.monotonic() - t0
    record_property("acks_in_5s", int(alive[2]))
    record_property("killed_after_s", round(took, 2))
    assert dead[:2] == ["result", "dead"] and nat.kills == 1, dead
