"""HTTP polling over https, as a phone does it: one TCP connection and one TLS handshake
for 100 polls (proven on the wire and by the server's counters), and certificates the
device must refuse -- for another host name, from an unknown CA -- each with its own
error and not one request byte sent.

The device verifies the server: the test CA (made by openssl at the start of the
session, ``hil_pki``) is written to the board's flash as CA_PATH and given to the
Client; the server certificate names ``--server-host``. Runs over the modem and over
Wi-Fi (``--modem``), on the virtual rig and on a real board alike: the host only talks
to the board through the fixtures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from device_code import HTTPS_POLLS, HTTPS_REFUSED, SSL_PROBE

from synack_host.deploy import Item, send_item
from synack_host.hil.tlsflow import APPLICATION_DATA, count_client_hellos, side_stream, tls_facts

CA_PATH = "/synack_hil_ca.der"      # the test CA on the board's flash (DER: no PEM parsing)
POLLS = 100


@dataclass(frozen=True)
class TlsMode:
    """How the device does TLS: the Client's TLS arguments (``%(ca)s``: the CA file on
    flash) and what it needs, checked on the board before a test runs."""

    client_args: str
    needs_ssl: bool = True          # the board's own ssl module (mbedTLS)
    needs_modem: bool = False       # a modem link (TLS offloaded to the modem)
    # certificate served -> (the device's error class, its reason)
    refusals: dict[str, tuple[str, str]] | None = None
    # connections the Client counts for a refused handshake: software TLS connects first
    # (1); the modem's AT+CCHOPEN is connect and handshake in one, failing as one (0)
    refused_connections: int = 1


# One entry per way of doing TLS; every test below runs for each. "software": synack.tls,
# the port's ssl over any synack socket (Wi-Fi or modem): a distinct error per cause, on
# purpose (the device must tell a wrong host name from an unknown CA). "modem": the
# modem's own TLS (AT+CCH*, the modem holds the session; ``modem`` is the bring-up's
# SIM7600): SIMCom reports every failed handshake as one code (+CCHOPEN: <s>,15).
TLS_MODES = {
    "software": TlsMode("cadata=open(%(ca)r, 'rb').read()",
                        refusals={"wrong-host": ("HostnameMismatch", "hostname"),
                                  "unknown-ca": ("UnknownCA", "unknown-ca")}),
    "modem": TlsMode("backend=modem, tls='modem', cadata=open(%(ca)r, 'rb').read()",
                     needs_ssl=False, needs_modem=True, refused_connections=0,
                     refusals={"wrong-host": ("SSLError", "handshake"),
                               "unknown-ca": ("SSLError", "handshake")}),
}


def board_ssl(board) -> tuple[bool, str]:
    """Whether the board has an ssl module, and its stack or why not (probed, so the
    same answer holds for any engine or real board)."""
    out = board.exec(SSL_PROBE).strip()
    kind, _, what = out.partition(" ")
    return kind == "ssl", what


def put_ca(board, hil_pki) -> None:
    """Write the test CA to the board's flash (as deploy writes files: via a temporary
    name, then renamed)."""
    der = hil_pki.path("ca", "der").read_bytes()
    send_item(board, Item("hil test CA (ca.der)", CA_PATH, der))


@pytest.fixture(params=list(TLS_MODES))
def tls_mode(request, board, hil, hil_pki, record_property) -> TlsMode:
    """The TLS mode under test, skipped where it does not apply, with the CA on flash."""
    mode = TLS_MODES[request.param]
    if mode.needs_modem and hil.modem == "wifi":
        pytest.skip(f"TLS mode {request.param!r} needs a modem link, not Wi-Fi")
    if mode.needs_modem and board.exec("print(hasattr(modem, 'tls_offload'))").strip() != "True":
        pytest.skip(f"TLS mode {request.param!r}: synack has no TLS offload for the "
                    f"{hil.modem} (only the SIM7600's AT+CCH*): use software TLS")
    if mode.needs_ssl:
        has, what = board_ssl(board)
        if not has:
            pytest.skip(f"TLS mode {request.param!r} needs the board's ssl module, which this "
                        f"board cannot import ({what}): software TLS cannot run here")
        record_property("tls_stack", what)
    put_ca(board, hil_pki)
    return mode


def _device_code(template: str, mode: TlsMode, url: str, **kw) -> str:
    return template % {"tls_args": mode.client_args % {"ca": CA_PATH}, "url": url,
                       "now": int(time.time()), **kw}


def _lines(out: str) -> dict[str, list[str]]:
    return {k: v.split() for k, _, v in (ln.partition(" ") for ln in out.strip().splitlines())}


def test_https_polls_share_one_connection_and_one_handshake(board, https_server, hil, capture,
                                                            tls_mode, record_property):
    cap = capture(https_server.port)
    out = _lines(board.exec(_device_code(HTTPS_POLLS, tls_mode,
                                         https_server.url(host=hil.server_host), n=POLLS),
                            timeout=180))
    flows = cap.stop()
    codes = tuple(int(x) for x in out["codes"])
    opened, handshakes = (int(x) for x in out["clients"])
    first_us, rest_us = (int(x) for x in out["times_us"])
    tls = tls_facts(flows[0]) if flows else None
    wire_hs = tls.handshake_time if tls else None
    app_bytes = tls.app_data_bytes("client") + tls.app_data_bytes("server") if tls else 0
    record_property("first_poll_ms", round(first_us / 1000, 1))       # connect + handshake
    record_property("poll_ms", round(rest_us / 1000 / (POLLS - 1), 2))  # kept alive
    record_property("wire_tls_handshake_ms", round(wire_hs * 1000, 1) if wire_hs else -1)
    record_property("tls_handshake_bytes", tls.handshake_bytes if tls else -1)
    record_property("tls_bytes_per_poll", round(app_bytes / POLLS, 1))
    record_property("tls_version", tls.version_name if tls else "none")
    if https_server.handshake_times:
        record_property("server_handshake_ms", round(https_server.handshake_times[0] * 1000, 1))
    # what the wire says comes first: one TCP connection, one ClientHello
    cap.assert_connections(1, port=https_server.port)
    assert tls is not None and count_client_hellos(flows) == 1, \
        f"expected one TLS handshake on the wire\n{tls.summary() if tls else cap.summary()}"
    assert tls.complete == {"client": True, "server": True}, \
        f"{tls.summary()}\n{cap.summary()}"
    assert wire_hs is not None, f"the handshake never completed on the wire: {tls.summary()}"
    assert len(tls.of("client", APPLICATION_DATA)) >= POLLS, tls.summary()
    client_bytes = bytes(side_stream(flows[0], "client").data)
    assert b"If-None-Match" not in client_bytes and b"GET /" not in client_bytes, \
        "request bytes went over the wire in the clear"
    # the device and the server agree
    assert codes == (1, POLLS - 1, 0), f"200s, 304s, others: {codes}"
    assert (opened, handshakes) == (1, 1), f"device: {opened} connections, {handshakes} handshakes"
    assert (https_server.connections, https_server.handshakes) == (1, 1)
    assert https_server.tls_errors == []
    assert len(https_server.requests) == POLLS
    assert all(r.connection == 0 for r in https_server.requests)


@pytest.mark.parametrize("cert", ["wrong-host", "unknown-ca"])
def test_https_refusal_sends_no_request(board, https_server, hil, capture, tls_mode, cert,
                                        record_property):
    server = https_server.factory(cert=cert)
    cap = capture(server.port)
    out = _lines(board.exec(_device_code(HTTPS_REFUSED, tls_mode,
                                         server.url("/secret", host=hil.server_host)),
                            timeout=120))
    server.wait_for(lambda: bool(server.tls_errors) or server.handshakes > 0, timeout=5)
    flows = cap.stop()
    assert "refused" in out, f"the device accepted a {cert} certificate: {out}"
    cls, reason, errno, ms = out["refused"]
    record_property("refusal_ms", int(ms))
    record_property("server_saw", server.tls_errors[0] if server.tls_errors else "no error")
    expected = tls_mode.refusals[cert] if tls_mode.refusals else None
    assert (cls, reason) == expected, f"{cert}: expected {expected}, got {out}"
    assert errno == "EACCES"                      # not trusted
    assert [int(x) for x in out["clients"]] == [tls_mode.refused_connections, 0]  # no handshake
    # the server: a handshake that failed, not one plaintext byte
    assert (server.connections, server.handshakes, len(server.tls_errors)) == (1, 0, 1), \
        (server.connections, server.handshakes, server.tls_errors)
    assert server.received_bytes == 0 and server.requests == []
    # the wire: one connection, one ClientHello, no request
    cap.assert_connections(1, port=server.port)
    tls = tls_facts(flows[0])
    record_property("tls_version", tls.version_name)
    assert tls.client_hellos == 1 and tls.handshake_end is None, tls.summary()
    assert b"/secret" not in bytes(side_stream(flows[0], "client").data)
    if tls.client_application_data is not None:   # TLS 1.2: only a request could be one
        assert tls.client_application_data == 0, tls.summary()
        assert len(tls.alerts("client")) == 1, f"the device did not say why: {tls.summary()}"
