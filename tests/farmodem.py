"""A scripted modem for in-process driver tests: the far end of the UART answers each
command line as a dialect's manual says, with no pty and no timing, so a driver case runs
in milliseconds. ``Far(replies, defaults)``: see its doc; ``Clock``: a ``time`` for the
firmware modules that moves when code sleeps. Used by every dialect's driver tests, which
take from here what they all need once, parametrised by what differs: ``clock_fixture``
(the modules a clock patches), ``helpers(Far, Driver)`` (the dialect's scripted far end
and its driver class), and the socket-level ``sock_on``, ``events``, ``oserror``, ``urc``
and ``read``."""

import pytest

from synack import connect as synconnect
from synack import socket as synsocket
from synack import tcp
from synack.at import driver as at_driver
from synack.at import engine as at_engine
from synack.at import steps as at_steps
from synack.modems import base, cellular, links

OK = b"\r\nOK\r\n"
POLLIN, POLLOUT, POLLERR, POLLHUP = 1, 4, 8, 16
ACTIVE_CLOSE = ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2",
                "TIME_WAIT", "CLOSED"]
PASSIVE_CLOSE = ["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]
# the firmware modules that read ``time``, whatever the dialect
CLOCKED = (links, base, cellular, at_engine, at_driver, at_steps, synsocket, synconnect, tcp)
# what every dialect's bring-up asks first (27.007), and the answers of a modem that is
# ready, registered, at -73 dBm: a dialect adds its bearer's commands
START = [b"AT", b"ATE0", b"AT+CMEE=1", b"AT+CPIN?", b"AT+CSQ", b"AT+CEREG?"]
READY = {
    b"AT": OK, b"ATE0": OK, b"AT+CMEE=1": OK,
    b"AT+CPIN?": b"\r\n+CPIN: READY\r\n" + OK,
    b"AT+CSQ": b"\r\n+CSQ: 20,99\r\n" + OK,
    b"AT+CEREG?": b"\r\n+CEREG: 0,1\r\n" + OK,
    b"AT+CREG?": b"\r\n+CREG: 0,1\r\n" + OK,
}


def arg(line, i):
    """The ``i``-th number after the "=" of a command line: ``arg(b"AT+X=3,7", 1)`` is 7."""
    return int(line.split(b"=", 1)[1].split(b",")[i])


class Prompted:
    """A reply that asks for a payload: ``prompt`` now, ``size`` raw bytes from the host,
    then ``answer(payload)``."""

    def __init__(self, prompt, size, answer):
        self.prompt, self.size, self.answer = prompt, size, answer


def prompted(prompt, answer):
    """A reply builder for a send command ``AT+X=<link>,<size>``: ``prompt``, ``size``
    bytes from the host, then ``answer(link, size)``."""
    def reply(line):
        link, size = arg(line, 0), arg(line, 1)
        return Prompted(prompt, size, lambda payload: answer(link, size))
    return reply


class Far:
    """The modem's end of the UART, scripted: ``replies`` maps a command line (bytes,
    without CR; a key ending in "=" or "," matches as a prefix, the longest wins) to the
    bytes it answers, a function of the line, or a Prompted payload exchange. Commands
    without a reply get ERROR; a reply of None is silence. ``later(data)`` queues bytes
    the modem sends once the host has read everything before them (a URC that comes
    after the reply, not with it). A dialect's subclass sets ``DEFAULTS``, the replies
    its bring-up needs, answered unless a case says otherwise."""

    DEFAULTS: dict = {}

    def __init__(self, replies=None, defaults=None):
        self.replies = dict(self.DEFAULTS if defaults is None else defaults)
        self.replies.update(replies or {})
        self.rx = bytearray()
        self.tx = bytearray()
        self.commands = []
        self.payloads = []
        self.queue = []
        self._need = 0
        self._payload = b""
        self._answer = None

    def later(self, data):
        self.queue.append(data)

    def inject(self, data):
        self.rx += data

    def _reply(self, line):
        best = line if line in self.replies else None
        for key in self.replies:
            if (key[-1:] in (b"=", b",") and line.startswith(key)
                    and (best is None or len(key) > len(best))):
                best = key
        reply = self.replies[best] if best is not None else b"\r\nERROR\r\n"
        return reply(line) if callable(reply) else reply

    def write(self, data):
        self.tx += bytes(data)
        while self.tx:
            if self._need:
                take = bytes(self.tx[:self._need])
                del self.tx[:self._need]
                self._payload += take
                self._need -= len(take)
                if not self._need:
                    self.payloads.append(self._payload)
                    self.rx += self._answer(self._payload)
                continue
            i = self.tx.find(b"\r")
            if i < 0:
                break
            line = bytes(self.tx[:i])
            del self.tx[:i + 1]
            self.commands.append(line)
            reply = self._reply(line)
            if isinstance(reply, Prompted):
                self._need, self._payload, self._answer = reply.size, b"", reply.answer
                reply = reply.prompt
            if reply is not None:
                self.rx += reply
        return len(data)

    def any(self):
        if not self.rx and self.queue:
            self.rx += self.queue.pop(0)
        return len(self.rx)

    def readinto(self, buf):
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        del self.rx[:n]
        return n


class Clock:
    """``time`` for the firmware modules: moves when code sleeps, and ``step`` ms at
    every reading (a slow clock makes long limits pass in a few rounds)."""

    def __init__(self, step=0):
        self.now = 1000
        self.step = step

    def ticks_ms(self):
        self.now += self.step
        return self.now

    def ticks_add(self, t, delta):
        return t + delta

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        self.now += ms


def on_one_clock(monkeypatch, step=0, modules=CLOCKED):
    """Every firmware module in ``modules`` on one new Clock(step): the clock."""
    clock = Clock(step=step)
    for module in modules:
        if hasattr(module, "time"):
            monkeypatch.setattr(module, "time", clock)
    return clock


def clock_fixture(*extra):
    """A ``fast_clock`` fixture for a driver test module: every firmware module (CLOCKED
    and the dialect's own ``extra`` ones that read ``time``) on one clock that advances
    250 ms per reading."""
    @pytest.fixture
    def fast_clock(monkeypatch):
        return on_one_clock(monkeypatch, 250, CLOCKED + extra)
    return fast_clock


def helpers(far_class, driver):
    """``modem_on, started, connected = helpers(Far, Driver)`` for a dialect:
    ``modem_on(far, **kw)`` its driver (APN "internet", 5 ms polls unless ``kw`` says
    otherwise) on ``far``; ``started(replies, **kw)`` a new far end and a driver on it
    brought up, the commands so far forgotten: ``(far, modem)``; ``connected(replies,
    **kw)`` that and a socket connected to 10.0.0.1:80: ``(far, modem, sock)``."""
    def modem_on(far, **kw):
        kw.setdefault("poll_ms", 5)
        return driver(far, apn="internet", **kw)

    def started(replies=None, **kw):
        far = far_class(replies)
        modem = modem_on(far, **kw)
        modem.start(register_timeout_ms=100)
        far.commands.clear()
        return far, modem

    def connected(replies=None, **kw):
        far, modem = started(replies, **kw)
        s = sock_on(modem)
        s.connect(("10.0.0.1", 80))
        return far, modem, s

    return modem_on, started, connected


def sock_on(modem, timeout=1):
    s = synsocket.socket(backend=modem)
    s.settimeout(timeout)
    return s


def events(s):
    """The names of the events on a socket's TCP log, in order."""
    return [tcp.EVENT_NAMES[e] for (_, e, _, _) in s.tcp.history()]


def oserror(fn, *args):
    with pytest.raises(OSError) as exc:
        fn(*args)
    return exc.value


def urc(far, modem, *lines):
    """The modem says ``lines`` (each framed by CR LF); the driver handles them now."""
    far.inject(b"".join(b"\r\n" + line + b"\r\n" for line in lines))
    modem.at.poll(0)


def read(modem, s, size, timeout_ms=1000):
    """The backend's read of ``size`` bytes at most (the socket's own small reads go
    through its 512-byte buffer): the bytes read."""
    buf = bytearray(size)
    return bytes(buf[:modem.recv_into(s, memoryview(buf), timeout_ms)])
