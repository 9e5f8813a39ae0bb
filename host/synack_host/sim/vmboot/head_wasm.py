# MicroPython source: the start of the WebAssembly VM's bootstrap (engine_wasm);
# then common.py and loop.py. Runs in the VM, not on the host: names come from the other parts.
import sys, io, json, binascii, errno, micropython, host, gc as _gc
import os as _os, time as _time, machine as _machine, select as _select
_gc.disable()
def _h(name, *a):
    r = host.call(name, json.dumps(a))
    if r[0] == 'v':
        return json.loads(r[1:])
    if r[0] == 'k':
        raise KeyboardInterrupt
    if r[0] == 'o':
        raise OSError(getattr(errno, r[1:], errno.EIO))
    raise ValueError(r[1:])
_jail = lambda cwd, p, follow: _h('jail', cwd, p, follow)
def _collect():
    if _gc.mem_alloc() > 16 * 1024 * 1024:
        _gc.collect()
_b64 = lambda b: binascii.b2a_base64(b.encode() if isinstance(b, str) else b).decode()
_unb64 = lambda s: None if s is None else binascii.a2b_base64(s)
_stdin_read = lambda n: _unb64(_h('stdin', n))
_stdin_wait = lambda t: _h('stdin_wait', t)
_kbd_intr = lambda c: _h('kbd_intr', c)
class UART:
    def __init__(self, id, baudrate=115200, **kw):
        _h('uart_open', id, kw.get('rxbuf'), baudrate)
        self.init(baudrate, **kw)
    def init(self, baudrate=115200, timeout=0, rxbuf=None, **kw):
        self._t = timeout
        _h('uart_open', 1, rxbuf, baudrate)
    deinit = flush = lambda self: None
    any = lambda self: _h('uart_any')
    read = lambda self, n=-1: _unb64(_h('uart_read', n, self._t))
    readline = lambda self: _unb64(_h('uart_read', -2, self._t))
    write = lambda self, b: _h('uart_write', _b64(b))
    def readinto(self, buf, n=-1):
        d = self.read(len(buf) if n < 0 else n)
        if d:
            buf[:len(d)] = d
            return len(d)
class _Socket:
    def __init__(self, af=2, type=1, proto=0):
        self._id, self._t = _h('sock_new', type), None
    close = lambda self: _h('sock_close', self._id)
    shutdown = lambda self, how=2: _h('sock_shutdown', self._id, how)
    def settimeout(self, t):
        self._t = t
    def setblocking(self, f):
        self._t = None if f else 0
    def connect(self, a):
        _h('sock_connect', self._id, a[0], a[1], self._t)
    send = lambda self, b: _h('sock_send', self._id, _b64(b), self._t)
    recv = lambda self, n: _unb64(_h('sock_recv', self._id, n, self._t))
    read = lambda self, n=4096: self.recv(n)
    setsockopt = lambda self, *a: None
    makefile = __enter__ = lambda self, *a, **kw: self
    __exit__ = lambda self, *a: self.close()
    def sendall(self, b):
        m = memoryview(b.encode() if isinstance(b, str) else b)
        while m:
            m = m[self.send(m):]
    write = sendall
    def readline(self):
        out = b''
        while not out.endswith(b'\n'):
            c = self.recv(1)
            if not c:
                break
            out += c
        return out
def _setup_engine():
    _mount_jail([m for m in __import__('vfs').mount() if m[1] == '/'][0][0])
    _h('init', id(KeyboardInterrupt), id(()), id(globals()))
    micropython.schedule(lambda a: None, 0)
    _h('init2')
    for _ in range(2):
        pass
    try:
        _h('selftest')
        for _ in range(100000):
            pass
        _h('selftest_done', False)
    except KeyboardInterrupt:
        _h('selftest_done', True)
    noop = lambda *a: None
    return {'statvfs': lambda p='/': (4096, 4096, 512, 400, 400, 0, 0, 0, 0, 255)}, {
        'time': _Mod('time', _time, sleep=lambda s: _h('sleep', s),
            sleep_ms=lambda ms: _h('sleep', ms / 1000),
            sleep_us=lambda us: _time.sleep_us(us) if us < 1000 else _h('sleep', us / 1e6)),
        'socket': _Mod('socket', None, socket=_Socket, AF_INET=2, AF_INET6=10, SOCK_STREAM=1,
            SOCK_DGRAM=2, SOL_SOCKET=1, SO_REUSEADDR=2, IPPROTO_TCP=6, getaddrinfo=lambda h,
            p, *a: [tuple(e[:4]) + (tuple(e[4]),) for e in _h('gai', h, p)]),
        'gc': _Mod('gc', _gc, collect=noop, enable=noop, disable=noop)}
