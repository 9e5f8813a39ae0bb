"""Device-side code shared by several HIL test modules (run with ``board.exec``).

Not a test module: the tests import it (pytest puts hil_tests/ on sys.path).
"""

# A heartbeat client on one connection: "HB n" after idle_ms without traffic, an answer
# expected within 1.5 s, dead after 3 misses in a row; prints
# "result <deadline|dead> <acks> <state> <ms the run took>".
HEARTBEAT = """
import time
from synack import heartbeat as hbm
s = socket.socket()
s.settimeout(5)
s.connect(socket.getaddrinfo(%(host)r, %(port)d)[0][-1])
hb = hbm.Heartbeat(idle_ms=%(idle_ms)d, timeout_ms=1500, misses=3)
drv = hbm.Driver(s, hb, lambda line: None, poll_ms=50)
t = time.ticks_ms()
result = drv.run(duration_ms=%(run_ms)d)
print('result', result, hb.acks, hb.state_name, time.ticks_diff(time.ticks_ms(), t))
s.close()
"""

# The fault matrix's application loop: the Supervisor + Poller loop of test_http_polling
# (SUPERVISED_POLLS), which after poll `pause_after` prints "pause" and sleeps pause_ms
# -- the host injects its fault then, so that it cannot race a poll in flight -- and
# times from the end of the pause to the end of the first successful poll after it;
# prints "result <ok> <failed> <connections> <losses> <reconnects> <recovery ms | -1>".
FAULT_POLLS = """
import time
from synack.http.client import Client
from synack.poll import Poller, OUTCOME_NAMES, FAILED
from synack.supervisor import Supervisor
sup = Supervisor(link, base_ms=250, cap_ms=2000, jitter_pct=0, check_ms=100, seed=1)
sup.start()
p = Poller(%(url)r, client=Client(connect_timeout_ms=3000, read_timeout_ms=3000),
           interval_ms=%(every_ms)d, backoff_ms=250, backoff_cap_ms=1000)
t0 = time.ticks_ms()
resumed = None
recovery = -1
while p.ok + p.not_modified < %(n)d and time.ticks_diff(time.ticks_ms(), t0) < %(limit_ms)d:
    if resumed is None and p.polls == %(pause_after)d:
        print('pause')
        time.sleep_ms(%(pause_ms)d)
        resumed = time.ticks_ms()
    sup.step()
    if not sup.online:
        time.sleep_ms(50)
        continue
    outcome, delay = p.poll()
    print('poll', p.polls, OUTCOME_NAMES[outcome], p.last_error if outcome == FAILED else '')
    if resumed is not None and recovery < 0 and outcome != FAILED:
        recovery = time.ticks_diff(time.ticks_ms(), resumed)
    time.sleep_ms(delay)
print('result', p.ok + p.not_modified, p.errors, p.connections, sup.losses, sup.reconnects,
      recovery)
p.close()
"""
