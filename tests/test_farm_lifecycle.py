"""What goes wrong around a farm: a place that vanishes while a HIL run uses it, a farm
whose supervisor was killed, an RFC 2217 server that goes away under a board session.
Each test brings up what it needs (one board) on 127.0.0.1 and stops all of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from synack_host import farm
from test_farm import _tools, ok, synack

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def one_board(tmp_path):
    _tools()
    state_dir = tmp_path / "state"
    ok(synack("farm", "up", "--boards", "1", "--engine", "cpython", "--background",
              "--state-dir", str(state_dir)))
    state = json.loads((state_dir / farm.STATE_FILE).read_text())
    yield state, state_dir
    if state_dir.exists():                       # the test may have stopped it already
        synack("farm", "down", "--state-dir", str(state_dir), timeout=60)


def _gone(state: dict) -> list[str]:
    return [name for name, (pid, marker) in state["processes"].items()
            if farm.alive(int(pid), marker)]


def test_a_place_that_vanishes_fails_the_running_test_and_the_run_ends(one_board, tmp_path):
    state, state_dir = one_board
    env = {**os.environ, "LG_COORDINATOR": state["coordinator"], "PYTHONUNBUFFERED": "1"}
    # the heartbeat test keeps the board busy for ~8 s: time enough to pull the farm
    hil = subprocess.Popen([sys.executable, "-m", "synack_host.cli", "hil", "--place",
                            "synack-1", "-k", "heartbeat_keeps or test_connect",
                            "--junit", str(tmp_path / "r.xml"), "--logdir",
                            str(tmp_path / "logs")], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(hil.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("PASSED" in line for line in lines):     # deployed, tests running
            assert hil.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        started = time.monotonic()
        ok(synack("farm", "down", "--state-dir", str(state_dir), timeout=60))
        code = hil.wait(60)
        took = time.monotonic() - started
    finally:
        if hil.poll() is None:
            hil.kill()
            hil.wait(10)
    reader.join(5)
    out = "".join(lines)
    assert code == 1, out
    assert "vanished: " in out, out
    assert took < 30, f"the run took {took:.1f} s to notice"
    assert not _gone(state)


def test_farm_down_cleans_up_after_a_killed_supervisor(one_board):
    state, state_dir = one_board
    os.kill(state["pid"], signal.SIGKILL)
    time.sleep(0.3)
    out = ok(synack("farm", "down", "--state-dir", str(state_dir), timeout=60))
    assert "cleaned up after a farm whose supervisor had already exited" in out
    assert not _gone(state)
    assert not state_dir.exists()
    control_dir = os.path.dirname(state["places"][0]["control"])
    assert not os.path.exists(control_dir)


def test_farm_up_twice_in_one_state_dir_is_refused(one_board):
    state, state_dir = one_board
    res = synack("farm", "up", "--state-dir", str(state_dir), timeout=60)
    assert res.returncode == 1
    assert "a farm is already running" in res.stderr and res.stderr.count("\n") == 1


def test_an_rfc2217_server_that_goes_away_ends_the_session_at_once(tmp_path):
    """A board session blocked on a board over ser2net (an exec that runs for 30 s) fails
    with a TransportError as soon as ser2net dies, not at the exec's timeout."""
    _tools()
    from synack_host.sim.launch_board import start_board
    from synack_host.transport import RawRepl, TransportError, open_link

    port = farm.free_port()
    with start_board("--engine", "cpython") as board:
        config = tmp_path / "ser2net.yaml"
        config.write_text(farm.ser2net_yaml([(board.port, port)], 115200))
        server = subprocess.Popen([farm.ser2net_binary(), "-n", "-d", "-c", str(config)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    link = open_link(f"rfc2217://127.0.0.1:{port}?ign_set_control")
                    break
                except TransportError:
                    assert time.monotonic() < deadline, "ser2net did not come up"
                    time.sleep(0.1)
            repl = RawRepl(link)
            repl.enter()
            assert repl.exec("print(6 * 7)", 10).strip() == b"42"
            threading.Timer(1.0, server.terminate).start()
            started = time.monotonic()
            with pytest.raises(TransportError):
                repl.exec("import time\ntime.sleep(30)", 60)
            assert time.monotonic() - started < 10
            link.close()
        finally:
            server.terminate()
            server.wait(10)
