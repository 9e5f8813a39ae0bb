"""``synack diag`` on the virtual rig: a board running a supervised modem application,
wired to a virtual SIM7600. The report's fields follow the modem's state (rssi, SIM,
registration, a modem that stops answering), the black box records what happened and
survives a reset, and the application runs again afterwards."""

from __future__ import annotations

import time

from diagrig import diag_json, make_flash, rig, synack, wait_bearer
from synack_host.transport import RawRepl, open_link


def _events(report, kind):
    return [e for e in report["blackbox"]["events"] if e["kind"] == kind]


def test_report_fields_match_the_virtual_modem(tmp_path):
    with rig(make_flash(tmp_path / "flash"), "--rssi", "17") as r:
        wait_bearer(r)
        t0 = time.monotonic()
        rep = diag_json(r.board.port)
        took = time.monotonic() - t0
        c = rep["cellular"]
        assert c["modem"] == "answering"
        assert c["signal_dbm"] == -113 + 2 * 17
        assert c["sim"] == "READY"
        assert c["registration"]["state"] == "registered (home)"
        assert c["registration"]["eps_stat"] == 1
        assert c["model"] == "SIMCOM_SIM7600G-H" and c["imei"] == "860000000000001"
        assert c["bearer"] == "open" and c["ip"] == "10.64.0.2" and c["apn"] == "internet"
        assert c["revision"] == "synack-virtual" and c["iccid"] == "89882000000000000017"
        assert (c["operator"], c["access"]) == ("synack virtual", "LTE")
        assert not c.get("errors"), c.get("errors")
        assert rep["supervisor"]["state"] == "ONLINE"
        assert rep["device"]["reset_cause"].startswith("power-on")
        assert rep["device"]["mem_free"] > 0
        assert [e["kind"] for e in rep["blackbox"]["events"]][:2] == ["boot", "link_up"]
        assert took < 10
        # the board went back into its application: it brings the link up again
        rep2 = diag_json(r.board.port)
        assert rep2["blackbox"]["boots"] == rep["blackbox"]["boots"] + 1
        # the readable form names the layers and the verdict
        res = synack("diag", "-p", r.board.port)
        assert res.returncode == 0, res.stderr
        assert "-79 dBm" in res.stdout and "verdict" in res.stdout
        assert "\x1b[" not in res.stdout       # piped: no colour


def test_sim_absent_is_reported_and_the_report_completes(tmp_path):
    with rig(make_flash(tmp_path / "flash"), "--sim", "absent") as r:
        time.sleep(1.5)    # the app tries (and fails) a few times
        rep = diag_json(r.board.port)
        c = rep["cellular"]
        assert c["sim"] == "absent"
        assert "no SIM" in c["errors"]["sim"]
        assert c["signal_dbm"] is None            # AT+CSQ: 99,99 without a SIM
        assert rep["supervisor"]["state"] != "ONLINE"
        assert rep["supervisor"]["failures"].get("NoSIM", 0) >= 1
        assert any("NoSIM" in e["detail"] for e in _events(rep, "connect_err"))
        res = synack("diag", "-p", r.board.port)
        assert "SIM problem: absent" in res.stdout


def test_a_modem_that_does_not_answer_is_reported(tmp_path):
    with rig(make_flash(tmp_path / "flash")) as r:
        wait_bearer(r)
        r.modem.pause()
        try:
            t0 = time.monotonic()
            rep = diag_json(r.board.port, "--at-timeout", "500")
            assert time.monotonic() - t0 < 15
        finally:
            r.modem.resume()
        c = rep["cellular"]
        assert c["modem"].startswith("not answering")
        assert c["sim"] is None and c["signal_dbm"] is None
        assert rep["device"]["mem_free"] > 0             # the rest is still there


def test_dropped_registration_shows_in_report_and_black_box(tmp_path):
    with rig(make_flash(tmp_path / "flash")) as r:
        wait_bearer(r)
        res = synack("sim", "fault", r.modem.control_path, "drop-registration", "60")
        assert res.returncode == 0, res.stderr
        wait_bearer(r, "closed")
        time.sleep(1.0)    # the app sees the loss and fails to come back
        rep = diag_json(r.board.port)
        reg = rep["cellular"]["registration"]
        assert reg["state"] == "searching" and reg["eps_stat"] == 2
        assert rep["cellular"]["bearer"] == "closed"
        regs = _events(rep, "registration")
        assert any("searching" in e["detail"] for e in regs), rep["blackbox"]
        assert _events(rep, "link_down"), rep["blackbox"]
        res = synack("diag", "-p", r.board.port)
        assert "not registered on the network: searching" in res.stdout


def test_black_box_survives_a_board_reset(tmp_path):
    flash = make_flash(tmp_path / "flash")
    with rig(flash) as r:
        wait_bearer(r)
        r.modem.network_lost()        # link_down (written at once) and link_up again
        time.sleep(1.0)
        before = diag_json(r.board.port, "--stay")
        assert _events(before, "link_down")
        link = open_link(r.board.port)
        try:
            repl = RawRepl(link)
            repl.enter()
            repl.start("import machine; machine.reset()")
        finally:
            link.close()
        time.sleep(2.0)
        after = diag_json(r.board.port)
    assert after["blackbox"]["boots"] > before["blackbox"]["boots"]
    seqs = [e["seq"] for e in after["blackbox"]["events"]]
    assert seqs == sorted(seqs)
    kept = {(e["seq"], e["kind"]) for e in after["blackbox"]["events"]}
    assert {(e["seq"], e["kind"]) for e in _events(before, "link_down")} <= kept
    assert (flash / "blackbox" / "ring").read_bytes().startswith(b"SYBB1 ")
