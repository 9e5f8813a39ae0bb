"""Field diagnostics: one report of everything that decides whether the device is online
(this module), self-tests that name the failing step (``selftest``), and an AT
pass-through for ``synack at`` (``atbridge``).

The host (``synack diag``) breaks into the running application and calls these in the
raw REPL; the application's objects are still in memory then. An application makes them
visible with one call (all optional):

    from synack import diag
    diag.register(modem=modem, supervisor=sup, outbox=box, blackbox=bb, wifi=wifi)

Without it the report opens what it needs itself: ``/synack_config.json`` for the link
type, the modem on ``machine.UART(uart_id)`` (the config's ``dialect``, else what
``modems.detect`` finds), the black box on flash.

- ``report()`` -> a JSON-serialisable dict (device, link, Wi-Fi or cellular, supervisor,
  sockets, outbox, black box, errors). Every modem query is bounded by ``timeout_ms``; a
  failing one is recorded in the section's ``errors`` and the report goes on; a modem
  that does not answer ``AT`` is reported as such and not queried further.
- ``synack.selftest.selftest(url=None, tcp=None)`` -> DNS, TCP connect, HTTP(S) GET with
  timings of each step (dns, connect, tls, first_byte, total); a failure names its step
  and the error, never a traceback.
- ``synack.atbridge.at(cmd)`` / ``at_poll(ms)``: write one command to the modem's UART and
  print what comes back, raw, until its final result (``synack at``).

Secrets (the Wi-Fi key, the PIN, passwords and tokens of the config) are never put in a
report: they are not read into it, and every string is scrubbed of them at the end.
"""

import gc
import json
import sys
import time

from micropython import const

from . import blackbox as _bb

CONFIG = "/synack_config.json"
_AT_MS = const(2000)          # per modem query
_MAX_TIMEOUTS = const(2)      # modem queries that may time out before the rest are skipped
_MAX_ERRORS = const(8)
_SECRET_WORDS = ("key", "pass", "pin", "token", "secret", "psk")

_reg = {}        # what the application registered
_errors = []     # recent errors the application noted (note())
_own = {}        # what the report opened itself (a modem on the UART), reused


def register(modem=None, wifi=None, supervisor=None, outbox=None, blackbox=None,
             sockets=None, secrets=None):
    """Make the application's objects visible to the report (any subset)."""
    for name, value in (("modem", modem), ("wifi", wifi), ("supervisor", supervisor),
                        ("outbox", outbox), ("blackbox", blackbox), ("sockets", sockets)):
        if value is not None:
            _reg[name] = value
    if wifi is not None:
        _bb.hide(getattr(wifi, "key", None))
    if secrets:
        _bb.hide(*secrets)


def note(error):
    """Remember an error for the report (the last few are kept)."""
    _errors.append(_bb.scrub(_bb._text(error))[:120])
    del _errors[:-_MAX_ERRORS]


def _err(e):
    """An exception as one line: ``ECONNREFUSED: connect ...`` for an OSError."""
    if isinstance(e, OSError) and e.args and isinstance(e.args[0], int):
        import errno
        name = errno.errorcode.get(e.args[0], "errno %d" % e.args[0])
        return name + (": " + str(e.args[1]) if len(e.args) > 1 else "")
    return _bb._text(e)


def _config():
    """The board's config, secrets registered for scrubbing; {} if none."""
    try:
        with open(CONFIG) as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(cfg, dict):
        return {}
    _hide_secrets(cfg)
    return cfg


def _hide_secrets(obj):
    for k, v in obj.items():
        if isinstance(v, dict):
            _hide_secrets(v)
        elif isinstance(v, str) and any(w in k.lower() for w in _SECRET_WORDS):
            _bb.hide(v)


def _scrub(obj):
    if isinstance(obj, str):
        return _bb.scrub(obj)
    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_scrub(v) for v in obj]
    return obj


def _section(fn, *args):
    try:
        return fn(*args)
    except Exception as e:  # a diagnostic section must not stop the report
        return {"error": _err(e)}


# -- device ------------------------------------------------------------------------
def _device():
    from . import clock
    impl = sys.implementation
    d = {"micropython": ".".join(str(v) for v in impl.version[:3]),
         "implementation": impl.name, "platform": sys.platform,
         "firmware": getattr(sys.modules.get("synack"), "__version__", None),
         "uptime_ms": time.ticks_ms()}
    n, name = _bb.reset_cause()
    d["reset_cause"] = name if n is None else "%s (%d)" % (name, n)
    gc.collect()
    d["mem_free"] = gc.mem_free()
    d["clock_set"] = clock.is_set()
    d["clock_source"] = clock.source
    return d


# -- link: Wi-Fi ---------------------------------------------------------------------
def _wifi(cfg):
    link = _reg.get("wifi")
    wlan = getattr(link, "wlan", None)
    if wlan is None:
        import network
        wlan = network.WLAN(network.STA_IF)
    w = {"ssid": getattr(link, "ssid", None) or (cfg.get("wifi") or {}).get("ssid"),
         "errors": {}}
    for field, fn in (("connected", lambda: bool(wlan.isconnected())),
                      ("status", lambda: wlan.status()),
                      ("rssi_dbm", lambda: _rssi(wlan)),
                      ("ip", lambda: wlan.ifconfig()[0])):
        try:
            w[field] = fn()
        except Exception as e:  # each query on its own: a port lacks some of them
            w[field] = None
            w["errors"][field] = _err(e)
    if link is not None:
        w["connects"] = link.connects
        w["reconnects"] = link.reconnects
    return w


def _rssi(wlan):
    v = wlan.status("rssi")
    if not isinstance(v, int) or not -127 <= v <= 0:
        raise ValueError("driver answered %r, not dBm" % (v,))
    return v


# -- link: cellular ------------------------------------------------------------------
def modem(uart_id=1, baud=115200):
    """The application's modem, or one opened here on ``UART(uart_id)`` (kept)."""
    m = _reg.get("modem") or _own.get("modem")
    if m is None:
        from . import modems
        from .link import modem_uart
        cfg = _config()
        uart = modem_uart(uart_id, baud)
        dialect = cfg.get("dialect") or modems.detect(uart)  # the config's, or ask it
        m = _own["modem"] = modems.driver(dialect)(uart, apn=cfg.get("apn", ""))
    return m


class _Queries:
    """Bounded AT queries; failures go to ``errors``; after _MAX_TIMEOUTS timeouts the
    modem is taken as gone and the remaining queries are skipped."""

    def __init__(self, at, timeout_ms):
        self.at = at
        self.timeout_ms = timeout_ms
        self.errors = {}
        self.timeouts = 0
        self.last_code = None   # the CME code of the last CommandError

    def lines(self, field, cmd, prefix=None):
        from .at.errors import CommandError, CommandTimeout
        if self.timeouts >= _MAX_TIMEOUTS:
            self.errors[field] = "skipped: the modem stopped answering"
            return None
        try:
            return self.at.command(cmd, prefix, timeout_ms=self.timeout_ms).lines
        except CommandTimeout as e:
            self.timeouts += 1
            self.errors[field] = str(e)
        except CommandError as e:
            self.errors[field] = str(e)
            self.last_code = e.code
        return None


def _cellular(timeout_ms, uart_id, baud):
    from .at.parser import fields
    from .modems import base
    m = modem(uart_id, baud)
    at = m.at
    c = {"model": None, "revision": None, "imei": None, "sim": None, "iccid": None,
         "operator": None, "registration": None, "signal_dbm": None, "bearer": None,
         "ip": None, "apn": None}  # type: dict
    try:
        base.sync(at, attempts=2, timeout_ms=timeout_ms)
    except base.ModemNotResponding as e:
        c["modem"] = "not answering: " + str(e)
        c["errors"] = {"modem": str(e)}
        return c
    c["modem"] = "answering"
    q = _Queries(at, timeout_ms)
    q.lines("cmee", b"AT+CMEE=1")      # numeric CME codes: "SIM not inserted" is 10
    info = q.lines("model", b"ATI") or []
    for ln in info:
        k, _, v = ln.decode().partition(":")
        k = k.strip().lower()
        if k in ("model", "revision", "imei", "manufacturer"):
            c[k] = v.strip()
    if not c["model"]:     # an ATI without "Model:" lines (Quectel, u-blox, SIM800)
        model = q.lines("model", b"AT+CGMM")
        if model:
            c["model"] = model[0].decode().strip()
    rev = q.lines("revision", b"AT+CGMR", b"+CGMR:")
    if rev:
        c["revision"] = rev[0][6:].decode().strip()
    elif c["revision"]:
        q.errors.pop("revision", None)
    imei = q.lines("imei", b"AT+CGSN")
    if imei and imei[0].strip().isdigit():
        c["imei"] = imei[0].strip().decode()
    elif c["imei"]:
        q.errors.pop("imei", None)
    q.last_code = None
    cpin = q.lines("sim", b"AT+CPIN?", b"+CPIN:")
    if cpin:
        c["sim"] = fields(cpin[0], 6)[0].decode()
    elif q.last_code == 10:
        c["sim"] = "absent"
        q.errors["sim"] = "no SIM card (+CME ERROR: 10)"
    if c["sim"] == "READY":
        cmd, prefix = m.ICCID
        iccid = q.lines("iccid", cmd, prefix)
        if iccid:
            c["iccid"] = iccid[0][len(prefix or b""):].decode().strip()
    cops = q.lines("operator", b"AT+COPS?", b"+COPS:")
    if cops:
        v = fields(cops[0], 6)
        c["operator"] = v[2].decode() if len(v) > 2 else "none"
        if len(v) > 3:
            c["access"] = _ACT.get(v[3].decode(), v[3].decode())
    c["registration"] = _registration(q)
    if q.timeouts < _MAX_TIMEOUTS:
        try:
            c["signal_dbm"] = base.signal_dbm(at)
        except Exception as e:  # MalformedReply or an AT error: recorded, go on
            q.errors["signal_dbm"] = _err(e)
    ctx = q.lines("apn", b"AT+CGDCONT?", b"+CGDCONT:")
    for ln in ctx or ():
        v = fields(ln, 10)
        if v[0] == b"1" and len(v) > 2:
            c["apn"] = v[2].decode()
    if m.BEARER_QUERY is not None:   # the modem's own answer (a SIM7600's AT+NETOPEN?)
        cmd, prefix, up = m.BEARER_QUERY
        net = q.lines("bearer", cmd, prefix)
        if net:
            c["bearer"] = "open" if fields(net[0], len(prefix))[0] == up else "closed"
    else:                            # the driver's view, URCs read
        at.poll(0)
        c["bearer"] = "open" if m.net_open else "closed"
    if c["bearer"] == "open" and m.IP_QUERY is not None:
        cmd, prefix = m.IP_QUERY
        ip = q.lines("ip", cmd, prefix)
        if ip:
            c["ip"] = ip[0][len(prefix):].decode().strip()
    eng = at.engine
    c["driver"] = {"net_open": bool(m.net_open), "reboots": m.reboots,
                   "bearer_reopens": m.bearer_reopens, "noise": eng.noise,
                   "unexpected": eng.unexpected, "malformed": eng.malformed,
                   "last_malformed": None if eng.last_malformed is None
                   else eng.last_malformed.decode("utf-8", "replace")}
    c["errors"] = q.errors
    return c


_ACT = {"0": "GSM", "2": "UTRAN", "3": "GSM/EGPRS", "4": "HSDPA", "5": "HSUPA",
        "6": "HSPA", "7": "LTE", "8": "EC-GSM-IoT", "9": "LTE-M", "10": "NB-IoT"}


def _registration(q):
    from .at.parser import uint
    from .modems import base
    out = {}
    for name, cmd, prefix in (("cs", b"AT+CREG?", b"+CREG:"), ("gprs", b"AT+CGREG?", b"+CGREG:"),
                              ("eps", b"AT+CEREG?", b"+CEREG:")):
        lines = q.lines("registration_" + name, cmd, prefix)
        if lines:
            parts = lines[0][len(prefix):].split(b",")
            stat = uint(parts[1]) if len(parts) > 1 else -1
            out[name] = base.REG_NAMES[stat] if 0 <= stat < len(base.REG_NAMES) else "?"
            out[name + "_stat"] = stat
    stats = [out[k] for k in out if k.endswith("_stat")]
    for good in (base.REG_HOME, base.REG_ROAMING, base.REG_DENIED, base.REG_SEARCHING):
        if good in stats:
            out["state"] = base.REG_NAMES[good]
            break
    else:
        out["state"] = base.REG_NAMES[0] if stats else None
    return out


# -- supervisor, sockets, outbox, black box ---------------------------------------------
def _supervisor():
    s = _reg.get("supervisor")
    if s is None:
        return None
    err = s.last_error
    return {"state": s.state_name, "attempts": s.attempts, "connects": s.connects,
            "reconnects": s.reconnects, "losses": s.losses, "reinits": s.reinits,
            "in_row": s.in_row, "last_delay_ms": s.last_delay_ms,
            "last_error": None if err is None else _bb._text(err),
            "failures": dict(s.failures), "history": s.format_history()[-8:]}


def _sockets():
    out = []
    m = _reg.get("modem") or _own.get("modem")
    for n, link in enumerate(getattr(m, "links", ()) or ()):
        if link is not None:
            out.append({"link": n, "state": link.tcp.state_name,
                        "events": link.tcp.format_history()[-4:],
                        "peer_closed": link.peer_closed, "rx_pending": link.rx_pending})
    for s in _reg.get("sockets") or ():
        tcp = getattr(s, "tcp", None)
        if tcp is not None:
            out.append({"peer": "%s:%s" % tuple(s._peer) if getattr(s, "_peer", None)
                        else None, "state": tcp.state_name,
                        "events": tcp.format_history()[-4:]})
    return out


def _outbox():
    box = _reg.get("outbox")
    if box is None:
        return None
    return {"depth": len(box), "quarantined": len(box.quarantined)}


def _blackbox():
    bb = _reg.get("blackbox") or _bb.load()
    if bb is None:
        return None
    return {"events": bb.events(), "writes": bb.writes, "boots": bb.boots,
            "corrupt": bb.corrupt}


def _link_type(cfg, link):
    if link in ("wifi", "cellular"):
        return link
    if "modem" in _reg:
        return "cellular"
    if "wifi" in _reg or "wifi" in cfg:
        return "wifi"
    return "cellular"


def report(link="auto", timeout_ms=_AT_MS, uart_id=1, baud=115200):
    """Everything in one dict (see the module's doc). ``link``: auto, wifi, cellular."""
    t0 = time.ticks_ms()
    cfg = _config()
    kind = _link_type(cfg, link)
    r = {"device": _section(_device), "link": kind}
    if kind == "wifi":
        r["wifi"] = _section(_wifi, cfg)
    else:
        r["cellular"] = _section(_cellular, timeout_ms, uart_id, baud)
    r["supervisor"] = _section(_supervisor)
    r["sockets"] = _section(_sockets)
    r["outbox"] = _section(_outbox)
    r["blackbox"] = _section(_blackbox)
    r["errors"] = list(_errors)
    r["took_ms"] = time.ticks_diff(time.ticks_ms(), t0)
    return _scrub(r)


def show(**kw):
    """print(json of report(**kw)): what ``synack diag`` runs."""
    print(json.dumps(report(**kw)))
