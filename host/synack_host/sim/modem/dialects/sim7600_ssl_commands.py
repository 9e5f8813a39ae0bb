"""The AT commands of the virtual SIM7600's SSL service (sim7600_ssl.py has the
sessions behind them and the protocol summary)."""

from __future__ import annotations

import errno
import socket

from ..commands import ArgError, Command, int_arg
from .sim7600_ssl import (CONTEXTS, MAX_CERT, MAX_CERTS, MAX_RECV, MAX_SEND,
                          RX_CAP, SESSIONS, START_DELAY_S, TX_CAP, Session, SSLDialect,
                          SSLService)


def _service(modem: SSLDialect) -> SSLService:
    return modem.ssl


def _session_arg(args: list[str]) -> int:
    return int_arg(args, 0, 0, SESSIONS - 1)


# -- certificates ---------------------------------------------------------------------
def _cert_name(name: str) -> str:
    if (not name or len(name) > 64 or "/" in name or "\\" in name
            or not name.lower().endswith((".pem", ".der"))):
        raise ArgError("certificate name: <name>.pem or <name>.der")
    return name


def _ccertdown(modem: SSLDialect, args: list[str]) -> None:
    svc = _service(modem)
    try:
        name = _cert_name(args[0] if args else "")
        size = int_arg(args, 1, 1, MAX_CERT)
    except ArgError:
        return modem.reply("ERROR")
    if len(args) != 2 or (name not in svc.certs and len(svc.certs) >= MAX_CERTS):
        return modem.reply("ERROR")

    def done(data: bytes) -> None:
        svc.certs[name] = data
        modem.ok()
    modem.expect_payload(size, done)


def _ccertlist(modem: SSLDialect, args: list[str]) -> None:
    modem.reply(*(f'+CCERTLIST: "{name}"' for name in sorted(_service(modem).certs)))
    modem.ok()


def _ccertdele(modem: SSLDialect, args: list[str]) -> None:
    if len(args) != 1 or _service(modem).certs.pop(args[0], None) is None:
        return modem.reply("ERROR")
    modem.ok()


# -- configuration --------------------------------------------------------------------
CSSLCFG_RANGES = {"sslversion": (0, 4), "authmode": (0, 1), "enablesni": (0, 1),
                  "ignorelocaltime": (0, 1), "negotiatetime": (10, 300)}


def _csslcfg_set(modem: SSLDialect, args: list[str]) -> None:
    svc = _service(modem)
    if len(args) == 1:          # AT+CSSLCFG=<ctx>: the context's settings
        c = svc.contexts[int_arg(args, 0, 0, CONTEXTS - 1)]
        modem.reply(f'+CSSLCFG: {args[0]},{c.sslversion},{c.authmode},{c.ignorelocaltime},'
                    f'{c.negotiatetime},"{c.cacert}","",""')
        return modem.ok()
    if len(args) != 3:
        raise ArgError("expected \"<key>\",<ctx>,<value>")
    key = args[0].lower()
    cfg = svc.contexts[int_arg(args, 1, 0, CONTEXTS - 1)]
    if key == "cacert":
        _cert_name(args[2])
        cfg.cacert = args[2]
    elif key in CSSLCFG_RANGES:
        lo, hi = CSSLCFG_RANGES[key]
        if key == "authmode" and args[2] in ("2", "3"):
            return modem.reply("ERROR")   # client certificates are not emulated
        value = int_arg(args, 2, lo, hi)
        setattr(cfg, "sni" if key == "enablesni" else key, value)
    else:
        return modem.reply("ERROR")       # clientcert, clientkey ...: not emulated
    modem.ok()


def _cchset_set(modem: SSLDialect, args: list[str]) -> None:
    svc = _service(modem)
    svc.report_send = int_arg(args, 0, 0, 1)
    svc.recv_mode = int_arg(args, 1, 0, 1) if len(args) > 1 else 0
    modem.ok()


def _cchset_read(modem: SSLDialect, args: list[str]) -> None:
    svc = _service(modem)
    modem.reply(f"+CCHSET: {svc.report_send},{svc.recv_mode}")
    modem.ok()


def _cchmode_set(modem: SSLDialect, args: list[str]) -> None:
    if int_arg(args, 0, 0, 1) != 0:
        return modem.reply("ERROR")       # transparent mode is not emulated
    modem.ok()


def _cchsslcfg_set(modem: SSLDialect, args: list[str]) -> None:
    n = _session_arg(args)
    _service(modem).session_ctx[n] = int_arg(args, 1, 0, CONTEXTS - 1)
    modem.ok()


# -- the service -----------------------------------------------------------------------
def _cchstart(modem: SSLDialect, args: list[str]) -> None:
    svc = _service(modem)
    if svc.started:
        return modem.reply("ERROR")
    modem.ok()
    up = modem.bearer_possible()
    svc.started = up
    modem.later(START_DELAY_S, lambda: modem.urc(f"+CCHSTART: {0 if up else 9}"))


def _cchstop(modem: SSLDialect, args: list[str]) -> None:
    svc = _service(modem)
    if not svc.started:
        return modem.reply("ERROR")
    modem.ok()
    for sess in list(svc.sessions.values()):
        svc._release(sess)
    svc.sessions.clear()
    svc.started = False
    modem.later(START_DELAY_S, lambda: modem.urc("+CCHSTOP: 0"))


def _cchopen_set(modem: SSLDialect, args: list[str]) -> None:
    svc = _service(modem)
    n = _session_arg(args)
    port = int_arg(args, 2, 1, 65535)
    kind = int_arg(args, 3, 1, 2) if len(args) > 3 else 2
    if len(args) not in (3, 4, 5) or not args[1]:
        raise ArgError("expected <session>,\"<host>\",<port>[,<client_type>[,<bind_port>]]")
    if not svc.started or n in svc.sessions or kind != 2:
        return modem.reply("ERROR")       # plain TCP (type 1) is AT+CIPOPEN's job here
    modem.ok()
    cfg = svc.contexts[svc.session_ctx[n]]
    ctx = svc._context(cfg)
    if isinstance(ctx, int):
        return modem.urc(f"+CCHOPEN: {n},{ctx}")
    ip = modem.resolve(args[1])
    if ip is None:
        return modem.urc(f"+CCHOPEN: {n},13")
    if not modem.allowed(ip):
        return modem.urc(f"+CCHOPEN: {n},14")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    if sock.connect_ex((ip, port)) not in (0, errno.EINPROGRESS):
        sock.close()
        return modem.urc(f"+CCHOPEN: {n},14")
    sess = svc.sessions[n] = Session(n, sock, args[1])
    sess.ctx = ctx
    sess.callback = lambda mask, sess=sess: svc._on_socket(sess, mask)
    svc._rewatch(sess)
    modem.later(min(modem.connect_timeout, cfg.negotiatetime),
                lambda: svc._open_timeout(sess))


def _cchsend_set(modem: SSLDialect, args: list[str]) -> None:
    svc = _service(modem)
    try:
        n = _session_arg(args)
        size = int_arg(args, 1, 1, MAX_SEND)
    except ArgError:
        return modem.reply("ERROR")
    sess = svc.sessions.get(n)
    if len(args) != 2 or sess is None or sess.state != "open" or len(sess.tx) > TX_CAP:
        return modem.reply("ERROR")

    def done(data: bytes) -> None:
        if svc.sessions.get(n) is not sess or sess.state != "open":
            return modem.reply("ERROR")   # the session ended while the payload came in
        modem.ok()
        sess.tx += data
        sess.unconfirmed.append(sess.tx_sent + len(sess.tx))
        svc._flush(sess)
        svc._rewatch(sess)
    modem.expect_payload(size, done)


def _cchrecv_set(modem: SSLDialect, args: list[str]) -> None:
    svc = _service(modem)
    n = _session_arg(args)
    limit = int_arg(args, 1, 1, MAX_RECV) if len(args) > 1 else RX_CAP
    sess = svc.sessions.get(n)
    if sess is None or svc.recv_mode != 1:
        return modem.reply(f"+CCHRECV: {n},11", "ERROR")   # state error
    modem.ok()
    out = b""
    while sess.rx and limit > 0:
        chunk = bytes(sess.rx[:min(limit, MAX_RECV)])
        del sess.rx[:len(chunk)]
        limit -= len(chunk)
        header = f"\r\n+CCHRECV: DATA,{n},{len(chunk)}\r\n".encode()
        if modem.armed.take("reads_to_truncate"):
            # truncate-read: the header announces every byte, half of them come, then
            # nothing (no end line); the rest is lost, as on a UART that dropped it
            modem.send(out + header + chunk[:len(chunk) // 2])
            return
        if svc.garble_reads:
            svc.garble_reads -= 1
            header = f"\r\n+CCHRECV: DATA,{n},x{len(chunk)}\r\n".encode()
        out += header + chunk
    modem.send(out + f"\r\n+CCHRECV: {n},0\r\n".encode())
    if not sess.rx:
        sess.urc_armed = True
        if sess.state == "open":
            svc._receive(sess)    # what the SSL layer buffered while the cache was full
            svc._rewatch(sess)


def _cchrecv_read(modem: SSLDialect, args: list[str]) -> None:
    svc = _service(modem)
    lens = ",".join(str(len(svc.sessions[n].rx)) if n in svc.sessions else "0"
                    for n in range(SESSIONS))
    modem.reply(f"+CCHRECV: LEN,{lens}")
    modem.ok()


def _cchclose_set(modem: SSLDialect, args: list[str]) -> None:
    svc = _service(modem)
    n = _session_arg(args)
    sess = svc.sessions.get(n)
    if sess is None or sess.state == "closing":
        return modem.reply("ERROR")
    modem.ok()
    if sess.state == "open":
        return svc._begin_close(sess)
    svc._release(sess)        # connecting, handshaking, or closed by the peer
    del svc.sessions[n]
    modem.urc(f"+CCHCLOSE: {n},0")


SSL_COMMANDS = {
    "+CCERTDOWN": Command(set=_ccertdown),
    "+CCERTLIST": Command(run=_ccertlist),
    "+CCERTDELE": Command(set=_ccertdele),
    "+CSSLCFG": Command(set=_csslcfg_set),
    "+CCHSET": Command(set=_cchset_set, read=_cchset_read),
    "+CCHMODE": Command(set=_cchmode_set),
    "+CCHSTART": Command(run=_cchstart),
    "+CCHSTOP": Command(run=_cchstop),
    "+CCHSSLCFG": Command(set=_cchsslcfg_set),
    "+CCHOPEN": Command(set=_cchopen_set),
    "+CCHSEND": Command(set=_cchsend_set),
    "+CCHRECV": Command(set=_cchrecv_set, read=_cchrecv_read),
    "+CCHCLOSE": Command(set=_cchclose_set),
}
