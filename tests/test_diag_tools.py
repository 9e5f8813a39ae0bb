"""``synack diag selftest``, ``synack at`` (arguments, interactive with pexpect, script)
and ``synack monitor`` on the virtual rig; secrets never show in what they print."""

from __future__ import annotations

import http.server
import json
import os
import socket
import ssl
import sys
import threading
import time

import pexpect
import pytest

from diagrig import WIFI_APP, diag_json, make_flash, rig, synack, wait_bearer


@pytest.fixture
def http_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"hello from the diag test\n" * 40
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    flash = make_flash(tmp_path_factory.mktemp("cell") / "flash")
    with rig(flash, "--host", "diag.example=127.0.0.1") as r:
        wait_bearer(r)
        yield r


def test_selftest_timings_against_local_servers(cell, http_server, echo):
    res = synack("diag", "selftest", "-p", cell.board.port, "--json",
                 "--tcp", f"127.0.0.1:{echo.port}",
                 "--url", f"http://diag.example:{http_server}/status")
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)
    tcp, web = r["tcp"], r["http"]
    assert tcp["ok"] and set(tcp["steps"]) == {"dns", "connect", "total"}
    assert web["ok"] and web["status"] == 200 and web["bytes"] > 1000
    assert web["address"] == f"127.0.0.1:{http_server}"        # resolved by the modem
    steps = web["steps"]
    assert list(steps) == ["dns", "connect", "first_byte", "body", "total"]
    assert all(0 <= v < 10000 for v in steps.values())
    assert steps["total"] >= steps["connect"] + steps["first_byte"]
    assert echo.wait_for(lambda: echo.connections >= 1, 5)


def test_selftest_names_the_failing_step(cell):
    port = _closed_port()
    res = synack("diag", "selftest", "-p", cell.board.port, "--tcp", f"127.0.0.1:{port}")
    assert res.returncode == 1
    assert "tcp     failed at connect: ECONNREFUSED" in res.stdout
    assert res.stderr.strip().startswith("synack: self-test failed: tcp failed at connect")
    res = synack("diag", "selftest", "-p", cell.board.port, "--json",
                 "--url", "http://no-such-host.invalid/")
    assert res.returncode == 1
    web = json.loads(res.stdout)["http"]
    assert web["failed"] == "dns" and "EHOSTUNREACH" in web["error"]
    for out in (res.stdout, res.stderr):
        assert "Traceback" not in out


def test_selftest_over_https_verifies_with_a_ca_on_the_board(cell, http_server, tmp_path):
    """``--url https://... --ca /file``: the tls step is timed and the server verified
    with the CA on the board's flash; a CA that did not sign the server fails at tls."""
    from synack_host.hil.pki import Pki, unavailable

    if unavailable():
        pytest.skip(f"test certificates: {unavailable()}")
    pki = Pki(tmp_path / "pki")
    pki.ca("ca")
    pki.ca("other")
    pki.leaf("server", names=["diag.example"])
    ctx = pki.server_context("server")
    front = socket.create_server(("127.0.0.1", 0))
    port = front.getsockname()[1]

    def serve() -> None:        # TLS in front of the plain test server, one request each
        while True:
            try:
                raw, _ = front.accept()
            except OSError:
                return
            try:
                conn = ctx.wrap_socket(raw, server_side=True)
                request = conn.recv(4096)
                with socket.create_connection(("127.0.0.1", http_server)) as back:
                    back.sendall(request)
                    while data := back.recv(65536):
                        conn.sendall(data)
                conn.close()
            except (OSError, ssl.SSLError):
                raw.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        for name in ("ca", "other"):
            res = synack("cp", "-p", cell.board.port, str(pki.path(name, "der")),
                         f":/{name}.der")
            assert res.returncode == 0, res.stderr
        url = f"https://diag.example:{port}/status"
        res = synack("diag", "selftest", "-p", cell.board.port, "--json", "--url", url,
                     "--ca", "/ca.der")
        assert res.returncode == 0, res.stdout + res.stderr
        web = json.loads(res.stdout)["http"]
        assert web["ok"] and web["verified"] is True and web["status"] == 200, web
        assert list(web["steps"]) == ["dns", "connect", "tls", "first_byte", "body", "total"]
        res = synack("diag", "selftest", "-p", cell.board.port, "--json", "--url", url,
                     "--ca", "/other.der")
        assert res.returncode == 1
        web = json.loads(res.stdout)["http"]
        assert web["failed"] == "tls" and "EACCES" in web["error"], web
    finally:
        front.close()


def test_selftest_names_a_blackholed_path(cell, echo):
    """The server's port silently drops everything (nftables, no RST): the connect step
    fails with ETIMEDOUT within the step timeout, and nothing else is blamed."""
    from synack_host.hil.blackhole import PortBlackhole, blackhole_unavailable

    why = blackhole_unavailable()
    if why:
        pytest.skip(f"a blackholed path {why}")
    with PortBlackhole(echo.port):
        t0 = time.monotonic()
        res = synack("diag", "selftest", "-p", cell.board.port, "--json", "--step-timeout",
                     "2", "--tcp", f"127.0.0.1:{echo.port}")
        took = time.monotonic() - t0
    assert res.returncode == 1, res.stderr
    tcp = json.loads(res.stdout)["tcp"]
    assert (tcp["failed"], tcp["error"].split(":")[0]) == ("connect", "ETIMEDOUT"), tcp
    assert "dns" in tcp["steps"] and 1500 <= tcp["steps"]["total"] < 6000, tcp
    assert took < 20 and "Traceback" not in res.stdout + res.stderr


def test_watch_repeats_the_report_until_ctrl_c(cell, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = pexpect.spawn(sys.executable, ["-m", "synack_host.cli", "diag", "-p",
                                           cell.board.port, "--json", "--watch", "0.5"],
                          env=env, encoding="utf-8", timeout=30)
    try:
        stamps = []
        for _ in range(3):
            child.expect(r'"uptime_ms": (\d+)')
            stamps.append(int(child.match.group(1)))
        child.sendintr()
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    assert stamps == sorted(stamps) and stamps[-1] - stamps[0] >= 900, stamps
    assert "Traceback" not in (child.before or "")
    # the board went back to its application
    assert diag_json(cell.board.port)["supervisor"]["state"] == "ONLINE"


def test_at_commands_as_arguments_then_exec_works(cell):
    res = synack("at", "-p", cell.board.port, "AT+CSQ", "AT+CPIN?")
    assert res.returncode == 0, res.stderr
    assert "+CSQ: 20,99" in res.stdout and "+CPIN: READY" in res.stdout
    assert res.stdout.count("OK") == 2
    res = synack("at", "-p", cell.board.port, "AT+BOGUS")
    assert res.returncode == 1 and res.stderr.strip() == "synack: AT+BOGUS: ERROR"
    res = synack("exec", "-p", cell.board.port, "print(6 * 7)")
    assert res.returncode == 0 and res.stdout.strip() == "42"
    # and the application's own AT channel recovered (resync) and stays online
    assert diag_json(cell.board.port)["supervisor"]["state"] == "ONLINE"


def test_at_console_interactive(cell, tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), PYTHONUNBUFFERED="1")
    child = pexpect.spawn(sys.executable, ["-m", "synack_host.cli", "at", "-p",
                                           cell.board.port], env=env, encoding="utf-8",
                          timeout=30)
    try:
        child.expect_exact("AT> ")
        child.sendline("AT+CSQ")
        child.expect(r"\+CSQ: 20,99")
        child.expect_exact("OK")
        child.expect_exact("AT> ")
        child.sendline("AT+CGMM")
        child.expect_exact("SIMCOM_SIM7600G-H")
        child.expect_exact("AT> ")
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert "AT+CSQ" in (tmp_path / ".synack_at_history").read_text()
    res = synack("exec", "-p", cell.board.port, "print('back')")
    assert res.stdout.strip() == "back"


def test_at_script(cell, tmp_path):
    script = tmp_path / "check.at"
    script.write_text("# signal and SIM\ntimeout 10\nsend AT+CSQ\nexpect \\+CSQ: \\d+,99\n"
                      "expect OK\nsend AT+CPIN?\nexpect READY\n")
    res = synack("at", "-p", cell.board.port, "--script", str(script))
    assert res.returncode == 0, res.stderr
    assert "< +CSQ: 20,99" in res.stdout
    script.write_text("timeout 2\nsend AT+CSQ\nexpect NEVER-SAID\n")
    res = synack("at", "-p", cell.board.port, "--script", str(script))
    assert res.returncode == 1
    assert "line 3: 'NEVER-SAID' not seen within 2 s" in res.stderr


def test_monitor_decodes_firmware_events(cell, tmp_path):
    saved = tmp_path / "mon.log"
    proc = pexpect.spawn(sys.executable, ["-m", "synack_host.cli", "monitor", "-p",
                                          cell.board.port, "--save", str(saved),
                                          "--duration", "8"],
                         env=dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1"),
                         encoding="utf-8", timeout=20)
    try:
        proc.expect_exact("monitoring")
        time.sleep(0.5)
        cell.modem.network_lost()
        proc.expect(r"\d\d:\d\d:\d\d\.\d{3} EVENT #\d+ boot \d+ \+[\d.]+s link_down: link lost")
        proc.expect(r"EVENT #\d+ boot \d+ \+[\d.]+s link_up")
        proc.sendintr()                       # Ctrl-C leaves cleanly
        proc.expect(r"monitor: \d+ lines, \d+ events")
        proc.expect(pexpect.EOF)
    finally:
        proc.close()
    assert proc.exitstatus == 0
    assert "link_down: link lost" in saved.read_text()


KEY = "Wifi-Secret-9f3k"
PASSWORD = "apn-Pa55-word"


def test_secrets_appear_nowhere(tmp_path):
    config = {"wifi": {"ssid": "field-lab", "key": KEY}, "apn": "internet",
              "apn_password": PASSWORD}
    flash = make_flash(tmp_path / "flash", WIFI_APP, config)
    env = dict(os.environ, SYNACK_WIFI_KEY=KEY)
    with rig(flash) as r:
        time.sleep(1.0)
        seen = []
        res = synack("diag", "-p", r.board.port, "--json", env=env)
        assert res.returncode == 0, res.stderr
        rep = json.loads(res.stdout)
        assert rep["link"] == "wifi" and rep["wifi"]["ssid"] == "field-lab"
        assert rep["wifi"]["ip"] == "127.0.0.1"
        assert any("***" in e["detail"] for e in rep["blackbox"]["events"])
        seen += [res.stdout, res.stderr]
        res = synack("diag", "-p", r.board.port, env=env)
        seen += [res.stdout, res.stderr]
        # the AT console echoes what is typed: the board scrubs the config's password
        res = synack("at", "-p", r.board.port, f'AT+CGAUTH=1,1,"user","{PASSWORD}"',
                     env=env)
        assert "AT+CGAUTH=1,1,\"user\",\"***\"" in res.stdout     # the modem's echo
        seen += [res.stdout, res.stderr]
        log = tmp_path / "mon.log"
        res = synack("monitor", "-p", r.board.port, "--duration", "1.5", "--save", str(log),
                     env=env)
        assert "tick" in res.stdout and "debug: joined with key ***" in res.stdout
        seen += [res.stdout, res.stderr, log.read_text()]
        seen.append(r.board.stderr() + r.modem.stderr())
    for text in seen:
        assert KEY not in text and PASSWORD not in text
