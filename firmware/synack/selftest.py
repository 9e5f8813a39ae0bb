"""Self-tests for field diagnostics (``synack diag selftest``): DNS, TCP connect and an
HTTP(S) GET, each step timed; a failure names its step (input, bearer, dns, connect, tls,
first_byte, response) and the error, never a traceback. Results are scrubbed of secrets
as the report is (``synack.diag``)."""

import json
import time

from micropython import const

from .diag import _config, _err, _link_type, _scrub, modem

_BODY_CAP = const(65536)      # bytes of an HTTP body read by the self-test


def _split_url(url):
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise ValueError("URL must start with http:// or https://: %r" % url)
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    if not host:
        raise ValueError("URL has no host: %r" % url)
    return scheme, host, int(port) if port else (443 if scheme == "https" else 80), "/" + path


def _backend(kind, register_ms):
    """(backend, bearer step result or None) for the self-tests: a cellular modem is
    brought up first when nobody did (its failing step named: sim, registration ...)."""
    if kind == "wifi":
        return None, None
    m = modem()
    if m.net_open:
        return m, None
    from .modems import base
    t = time.ticks_ms()
    try:
        m.start(register_timeout_ms=register_ms)
    except base.BringUpError as e:
        step = {"NoSIM": "sim", "SIMLocked": "sim", "NotRegistered": "registration",
                "RegistrationDenied": "registration", "PDPError": "bearer",
                "ModemNotResponding": "modem"}.get(type(e).__name__, "bearer")
        return m, {"ok": False, "failed": step, "error": _err(e),
                   "ms": time.ticks_diff(time.ticks_ms(), t)}
    return m, {"ok": True, "ms": time.ticks_diff(time.ticks_ms(), t)}


class _Steps:
    def __init__(self):
        self.t0 = self.t = time.ticks_ms()
        self.out = {"ok": False, "steps": {}}

    def done(self, name):
        now = time.ticks_ms()
        self.out["steps"][name] = time.ticks_diff(now, self.t)
        self.t = now

    def fail(self, name, e):
        self.out["failed"] = name
        self.out["error"] = _err(e)
        return self.finish()

    def finish(self):
        self.out["steps"]["total"] = time.ticks_diff(time.ticks_ms(), self.t0)
        return self.out


def _resolve(backend, host, port, st):
    from . import socket
    try:
        if backend is None:
            addr = socket.current_backend().getaddrinfo(host, port)[0][-1]
        else:
            addr = backend.getaddrinfo(host, port)[0][-1]
    except Exception as e:  # any backend's failure becomes the step's error
        st.fail("dns", e)
        return None
    st.done("dns")
    st.out["address"] = "%s:%d" % (addr[0], addr[1])
    return addr


def _connect(backend, addr, timeout_ms, st):
    from . import socket
    s = socket.socket(backend=backend)
    s.settimeout(timeout_ms / 1000)
    try:
        s.connect(addr)
    except Exception as e:  # refused, timed out, unreachable: the step's error
        s.close()
        st.fail("connect", e)
        return None
    st.done("connect")
    return s


def _tcp_test(backend, target, timeout_ms):
    st = _Steps()
    host, _, port = target.rpartition(":")
    try:
        port = int(port)
    except ValueError:
        return st.fail("input", ValueError("want HOST:PORT, got %r" % target))
    addr = _resolve(backend, host, port, st)
    if addr is None:
        return st.out
    s = _connect(backend, addr, timeout_ms, st)
    if s is None:
        return st.out
    s.close()
    st.out["ok"] = True
    return st.finish()


def _http_test(backend, url, timeout_ms, ca):
    st = _Steps()
    try:
        scheme, host, port, path = _split_url(url)
    except ValueError as e:
        return st.fail("input", e)
    addr = _resolve(backend, host, port, st)
    if addr is None:
        return st.out
    s = _connect(backend, addr, timeout_ms, st)
    if s is None:
        return st.out
    stream = s
    try:
        if scheme == "https":
            from . import tls
            cadata = None
            if ca:
                with open(ca, "rb") as f:
                    cadata = f.read()
            try:
                stream = tls.wrap(s, host, cadata=cadata, verify=cadata is not None)
            except Exception as e:  # clock not set, unknown CA, alert: the step's error
                return st.fail("tls", e)
            st.out["verified"] = cadata is not None
            st.done("tls")
        try:
            stream.write(b"GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: synack-diag\r\n"
                         b"Connection: close\r\n\r\n" % (path.encode(), host.encode()))
            head = stream.read(1)
            if not head:
                raise OSError(0, "connection closed before any response byte")
        except Exception as e:  # the server took the connection but did not answer
            return st.fail("first_byte", e)
        st.done("first_byte")
        total = len(head)
        buf = bytearray(512)
        try:
            while total < _BODY_CAP:
                n = stream.readinto(buf)
                if not n:
                    break
                if len(head) < 64:
                    head += bytes(buf[:min(n, 64)])
                total += n
        except Exception as e:  # cut off mid-body: reported, the timings stand
            st.out["body_error"] = _err(e)
        st.done("body")
        st.out["bytes"] = total
        line = head.split(b"\r\n")[0].split(b" ")
        st.out["status"] = int(line[1]) if len(line) > 1 and line[1].isdigit() else None
        st.out["ok"] = st.out["status"] is not None
        if not st.out["ok"]:
            st.out["failed"] = "response"
            st.out["error"] = "not an HTTP response: %r" % head[:40]
    finally:
        try:
            stream.close()
        except OSError:
            pass
    return st.finish()


def selftest(url=None, tcp=None, link="auto", timeout_ms=10000, ca=None,
             register_ms=10000):
    """DNS + TCP connect to ``tcp`` ("host:port") and/or DNS + connect (+ TLS) + GET
    of ``url``; each result has ``ok``, ``steps`` (ms per step, ``total``) and on
    failure ``failed`` (the step) and ``error``."""
    kind = _link_type(_config(), link)
    r = {"link": kind}  # type: dict
    try:
        backend, bearer = _backend(kind, register_ms)
    except Exception as e:  # e.g. no UART: the bearer step failed
        backend, bearer = None, {"ok": False, "failed": "modem", "error": _err(e)}
    if bearer is not None:
        r["bearer"] = bearer
        if not bearer["ok"]:
            return _scrub(r)
    if tcp:
        r["tcp"] = _tcp_test(backend, tcp, timeout_ms)
    if url:
        r["http"] = _http_test(backend, url, timeout_ms, ca)
    return _scrub(r)


def show_selftest(**kw):
    print(json.dumps(selftest(**kw)))
