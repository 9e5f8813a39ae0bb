# MicroPython source shared by the VM bootstraps of engine_wasm and engine_unix: the
# flash jail, stdin, machine/network stand-ins. Runs in the VM, not on the host.
class _Jail:
    # The flash as a jail: a VFS over the VM's own that asks the engine process
    # (_jail, shims/flash.py) where each path leads; outside the flash is ENOENT.
    def __init__(self, fs):
        self._fs, self._cwd = fs, '/'
    def _p(self, p, follow=True):
        d = _jail(self._cwd, p, follow)
        if d is None:
            raise OSError(errno.ENOENT)
        return d[1:] or '.'
    def mount(self, readonly, mkfs):
        pass
    def umount(self):
        pass
    def ilistdir(self, p):
        r = self._p(p)
        pre = '' if r == '.' else r + '/'
        for e in self._fs.ilistdir(r):
            if e[1] not in (0x4000, 0x8000):   # a symlink: what it leads to, if inside
                d = _jail('/', '/' + pre + e[0], True)
                if d is None:
                    continue
                try:
                    e = (e[0], self._fs.stat(d[1:] or '.')[0] & 0xF000) + tuple(e[2:])
                except OSError:   # a dangling symlink
                    continue
            yield e
    open = lambda self, p, mode: self._fs.open(self._p(p), mode)
    stat = lambda self, p: self._fs.stat(self._p(p))
    statvfs = lambda self, p: self._fs.statvfs(self._p(p))
    mkdir = lambda self, p: self._fs.mkdir(self._p(p, False))
    rmdir = lambda self, p: self._fs.rmdir(self._p(p, False))
    remove = lambda self, p: self._fs.remove(self._p(p, False))
    rename = lambda self, a, b: self._fs.rename(self._p(a, False), self._p(b, False))
    getcwd = lambda self: self._cwd
    def chdir(self, p):
        d = _jail(self._cwd, p, True)
        if d is None:
            raise OSError(errno.ENOENT)
        if not self._fs.stat(d[1:] or '.')[0] & 0x4000:
            raise OSError(errno.ENOTDIR)
        self._cwd = d
class _StdinBytes:
    # sys.stdin.buffer: the bytes the board holds for running code (sim/stdin.py),
    # asked for as the code reads; readinto blocks until buf is full, as on a board
    def readinto(self, buf):
        m = memoryview(buf)
        got = 0
        while got < len(m):
            d = _stdin_read(len(m) - got)
            m[got:got + len(d)] = d
            got += len(d)
        return got
    def read(self, n=1):
        b = bytearray(n)
        self.readinto(b)
        return bytes(b)
    def readline(self):
        out = b''
        while not out.endswith(b'\n'):
            out += self.read(1)
        return out
class _Stdin:
    def __init__(self):
        self.buffer = _StdinBytes()
    read = lambda self, n=1: self.buffer.read(n).decode()
    readline = lambda self: self.buffer.readline().decode()
_stdin = _Stdin()
def _is_stdin(o):
    return o is _stdin or o is _stdin.buffer
class _Poll:
    # select.poll that takes sys.stdin too (MicroPython's stdin is pollable)
    def __init__(self):
        self._p, self._n, self._in = _select.poll(), 0, 0
    def register(self, o, m=5):
        if _is_stdin(o):
            self._in = m
        else:
            self._p.register(o, m)
            self._n += 1
    def modify(self, o, m):
        if _is_stdin(o):
            self._in = m
        else:
            self._p.modify(o, m)
    def unregister(self, o):
        if _is_stdin(o):
            self._in = 0
        else:
            self._p.unregister(o)
            self._n -= 1
    def poll(self, t=-1):
        t = -1 if t is None else int(t)
        if not self._in & 1:
            return self._p.poll(t)
        if not self._n:
            return [(_stdin, 1)] if _stdin_wait(t) else []
        end = _time.ticks_add(_time.ticks_ms(), t)
        while True:
            r = self._p.poll(0) + ([(_stdin, 1)] if _stdin_wait(0) else [])
            if r or (t >= 0 and _time.ticks_diff(end, _time.ticks_ms()) <= 0):
                return r
            _time.sleep_ms(5)
    ipoll = poll
def _mount_jail(fs):
    import vfs
    vfs.umount('/')
    vfs.mount(_Jail(fs), '/')
    _os.chdir('/')
class _Mod:
    def __init__(self, name, base=None, **kw):
        self.__name__ = name
        for k in dir(base) if base else ():
            if not k.startswith('__'):
                setattr(self, k, getattr(base, k))
        for k in kw:
            setattr(self, k, kw[k])
def _ilistdir(p=''):
    pre = '' if p in ('', '.') else p.rstrip('/') + '/'
    for e in _os.ilistdir(p):
        yield (e[0], e[1], 0, _os.stat(pre + e[0])[6] if e[1] == 0x8000 else 0)
def _uname():
    return __import__('collections').namedtuple('uname_result', ('sysname', 'nodename',
        'release', 'version', 'machine'))('esp32', 'esp32', '1.27.0', 'v1.27.0', 'synack')
class Pin:
    IN, OUT, OPEN_DRAIN, PULL_UP, PULL_DOWN, IRQ_FALLING, IRQ_RISING = 1, 3, 7, 2, 1, 2, 1
    def __init__(self, id, mode=-1, pull=-1, value=None, **kw):
        self.id, self._v = id, value or 0
    def value(self, v=None):
        if v is None:
            return self._v
        self._v = 1 if v else 0
    __call__ = value
    on = lambda self: self.value(1)
    off = lambda self: self.value(0)
    irq = lambda self, *a, **kw: None
class RTC:
    def datetime(self, t=None):
        t = _time.localtime()
        return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
class WLAN:
    def __init__(self, interface=0):
        self._a = False
    def active(self, a=None):
        if a is None:
            return self._a
        self._a = bool(a)
    connect = lambda self, *a, **kw: self.active(True)
    disconnect = lambda self: None
    isconnected = lambda self: True
    status = lambda self, *a: 1010
    ifconfig = lambda self, *a: ('127.0.0.1', '255.0.0.0', '127.0.0.1', '127.0.0.1')
    config = lambda self, *a, **kw: 'synack-virtual' if a else None
