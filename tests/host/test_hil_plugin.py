"""The synack_hil pytest plugin, tested with pytester: its options, its fixtures against
the virtual rig, device logs kept for failed tests only, and a deliberately broken
device (keep-alive disabled) failing the HIL test with what the wire showed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from synack_host.hil import run

HIL_TESTS = Path(__file__).resolve().parents[2] / "hil_tests"
ROOT = HIL_TESTS.parent


def test_options_are_registered(pytester):
    result = pytester.runpytest_subprocess("--help")
    text = result.stdout.str()
    for option in ("--board", "--engine", "--modem", "--baud", "--hil-logdir",
                   "--server-host"):
        assert option in text


def test_fixtures_on_the_virtual_rig_and_logs_kept_on_failure(pytester, tmp_path):
    pytester.makepyfile(test_rig="""
        def test_passes(board, echo_server, modem):
            out = board.exec("import sys; print(sys.platform)")
            assert out.strip()
            assert modem.proc.poll() is None
            assert echo_server.port > 0

        def test_fails_on_purpose(board):
            board.exec("print('marker-in-device-log')")
            assert False, "deliberate"
    """)
    logdir = tmp_path / "logs"
    result = pytester.runpytest_subprocess("--hil-logdir", str(logdir), "-p",
                                           "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    kept = sorted(p.name for p in logdir.iterdir())
    assert "test_fails_on_purpose.log" in kept and "test_passes.log" not in kept
    assert "marker-in-device-log" in (logdir / "test_fails_on_purpose.log").read_text()
    assert "device log" in result.stdout.str()


def test_real_board_option_with_a_bad_port_errors_clearly(pytester):
    pytester.makepyfile(test_real="""
        def test_x(board):
            pass
    """)
    result = pytester.runpytest_subprocess("--board", "/dev/no-such-board")
    result.assert_outcomes(errors=1)
    assert "cannot open /dev/no-such-board" in result.stdout.str()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("tcpdump"),
                    reason="the wire-level check needs root and tcpdump")
def test_broken_device_fails_with_what_the_wire_showed(pytester):
    # the polling test, on a build whose HTTP client never keeps connections alive
    pytester.makepyfile(test_broken=(HIL_TESTS / "test_http_polling.py").read_text()
                        .replace("KEEP_ALIVE = True", "KEEP_ALIVE = False"))
    result = pytester.runpytest_subprocess("-k", "keep_alive_polls_share")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "expected 1 connection(s) to port" in text and "the wire shows 20" in text


def test_synack_hil_command_reports_and_writes_junit(tmp_path):
    junit = tmp_path / "report.xml"
    res = subprocess.run([sys.executable, "-m", "synack_host.cli", "hil", "-k",
                          "refused or active_close", "--junit", str(junit), "--logdir",
                          str(tmp_path / "logs")], capture_output=True, text=True,
                         timeout=300, cwd=ROOT, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "PASSED  test_connect::test_connect_refused_is_a_clear_error" in res.stdout
    outcomes = {o.name: o for o in run.read_junit(junit)}
    active = outcomes["test_connect::test_dns_connect_echo_and_active_close"]
    if os.geteuid() == 0 and shutil.which("tcpdump"):
        assert active.result == "passed" and "handshake_ms" in active.figures


def test_synack_hil_failures_exit_non_zero(tmp_path):
    (tmp_path / "test_x.py").write_text("def test_bad(board):\n    assert board.eval('1+1') == 3\n")
    res = subprocess.run([sys.executable, "-m", "synack_host.cli", "hil", "--tests",
                          str(tmp_path), "--junit", str(tmp_path / "r.xml"), "--logdir",
                          str(tmp_path / "logs")], capture_output=True, text=True,
                         timeout=300, check=False)
    assert res.returncode == 1
    assert "FAILED  test_x::test_bad" in res.stdout
    assert "synack: 1 of 1 HIL tests failed" in res.stderr
    missing = subprocess.run([sys.executable, "-m", "synack_host.cli", "hil", "--tests",
                              "/no/such/dir"], capture_output=True, text=True, timeout=60,
                             check=False)
    assert missing.returncode == 1 and "no HIL tests at /no/such/dir" in missing.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_network_fixture_builds_and_tears_down(pytester):
    pytester.makepyfile(test_net="""
        def test_ping(network):
            assert network.ping() is not None
    """)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    from synack_host.hil.netns import list_namespaces
    assert not [n for n in list_namespaces() if n.startswith("synack-")]   # torn down
