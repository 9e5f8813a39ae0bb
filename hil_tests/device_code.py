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
