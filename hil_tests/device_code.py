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

# -- https (test_https_polling) ----------------------------------------------------------
# What the board's ssl is ("ssl <stack>"), or why it has none ("no-ssl <error>").
SSL_PROBE = """
try:
    import ssl
    print('ssl', getattr(ssl, 'MBEDTLS_VERSION', None) or getattr(ssl, 'OPENSSL_VERSION', '?'))
except ImportError as e:
    print('no-ssl', e)
"""

# Set before any https code: certificate dates need a clock; a board that boots at its
# port's epoch takes the host's time (the tests are not about clock sync: synack.clock).
HTTPS_CLOCK = """
from synack import clock
if not clock.is_set():
    clock.set_time(%(now)d, 'host')
"""

# n polls of url with If-None-Match over one Client (TLS arguments: %(tls_args)s);
# prints "codes <200s> <304s> <others>", "clients <connections> <handshakes>" and
# "times_us <first poll> <sum of the others>" (the first pays connect + handshake).
HTTPS_POLLS = HTTPS_CLOCK + """
import time
from synack.http.client import Client
c = Client(connect_timeout_ms=15000, read_timeout_ms=15000, %(tls_args)s)
etag = None
ok = nm = other = first = rest = 0
for i in range(%(n)d):
    t = time.ticks_us()
    r = c.get(%(url)r, headers={'If-None-Match': etag} if etag else None)
    r.read()
    us = time.ticks_diff(time.ticks_us(), t)
    etag = r.header('ETag') or etag
    if r.status == 200:
        ok += 1
    elif r.status == 304:
        nm += 1
    else:
        other += 1
    if i == 0:
        first = us
    else:
        rest += us
print('codes', ok, nm, other)
print('clients', c.connections, c.handshakes)
print('times_us', first, rest)
c.close()
"""

# One https GET the device must refuse: prints "refused <class> <reason> <ERRNO> <ms>"
# (or "accepted <status>") and "clients <connections> <handshakes>". Any OSError is
# printed: the test checks that it is the refusal (its class and reason) it expects.
HTTPS_REFUSED = HTTPS_CLOCK + """
import time
from synack.http.client import Client
c = Client(connect_timeout_ms=15000, read_timeout_ms=15000, %(tls_args)s)
t = time.ticks_ms()
try:
    r = c.get(%(url)r)
    print('accepted', r.status)
except OSError as e:   # the errno by name: ports number them differently (WASI: EACCES 2)
    import errno
    print('refused', type(e).__name__, getattr(e, 'reason', '-'),
          errno.errorcode.get(e.errno, e.errno), time.ticks_diff(time.ticks_ms(), t))
print('clients', c.connections, c.handshakes)
c.close()
"""
