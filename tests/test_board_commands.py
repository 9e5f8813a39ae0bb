"""synack's own raw-REPL client and the board commands against the virtual board (a
separate process on a pty): exec/eval/run, device tracebacks mapped, break-in while
main.py spins, soft reset, deploy with skip-unchanged, and clear errors for bad ports."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from synack_host.sim.launch_board import start_board
from synack_host.transport import DeviceError, RawRepl, TransportError, open_link
from synack_host.transport.repl import BoardNotResponding


def synack(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "synack_host.cli", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def board(flash):
    with start_board("--fs", str(flash)) as running:
        yield running


def test_exec_eval_and_device_exception(board):
    link = open_link(board.port)
    repl = RawRepl(link)
    repl.enter()
    assert repl.exec("print('hi', 6 * 7)") == b"hi 42\r\n"
    assert repl.eval("[1, 'a', {'k': None}]") == [1, "a", {"k": None}]
    with pytest.raises(DeviceError) as exc:
        repl.exec("x = 1\nundefined_name")
    assert exc.value.exc_type == "NameError"
    assert "undefined_name" in exc.value.message
    assert "Traceback" in exc.value.traceback
    big = "s = 0\n" + "s += 1\n" * 2000 + "print(s)"  # many raw-paste windows
    assert repl.exec(big) == b"2000\r\n"
    repl.exec("persist = 5")
    repl.soft_reset()
    with pytest.raises(DeviceError):
        repl.exec("persist")  # a soft reset gives a fresh interpreter
    link.close()


def test_break_in_while_main_py_spins(flash):
    (flash / "main.py").write_text("while True:\n    pass\n")
    with start_board("--fs", str(flash)) as running:
        time.sleep(0.3)
        t0 = time.monotonic()
        res = synack("exec", "-p", running.port, "print('in')")
        assert res.returncode == 0, res.stderr
        assert res.stdout.splitlines() == ["in"]
        assert time.monotonic() - t0 < 10


def test_cli_exec_eval_run_and_errors(board, tmp_path):
    assert synack("eval", "-p", board.port, "2**10").stdout.strip() == "1024"
    assert synack("eval", "--json", "-p", board.port, "{'a': [1]}").stdout.strip() == \
        '{"a": [1]}'
    script = tmp_path / "s.py"
    script.write_text("for i in range(3):\n    print(i)\n")
    assert synack("run", "-p", board.port, str(script)).stdout.split() == ["0", "1", "2"]
    res = synack("exec", "-p", board.port, "1/0")
    assert res.returncode == 1
    assert "synack: " in res.stderr and "ZeroDivisionError" in res.stderr


@pytest.mark.parametrize("args, message", [
    (["exec", "-p", "/dev/does-not-exist", "1"], "cannot open /dev/does-not-exist"),
    (["exec", "print(1)"], "no port"),
    (["run", "-p", "loop://", "/no/such/file.py"], "cannot read /no/such/file.py"),
])
def test_bad_ports_and_files_are_clear_errors(args, message, monkeypatch):
    monkeypatch.delenv("SYNACK_PORT", raising=False)
    res = synack(*args)
    assert res.returncode == 1
    assert message in res.stderr, res.stderr


def test_board_that_never_answers():
    # loop:// echoes what we send but never shows a raw REPL prompt
    repl = RawRepl(open_link("loop://"))
    t0 = time.monotonic()
    with pytest.raises(BoardNotResponding) as exc:
        repl.enter(timeout=1.0)
    assert time.monotonic() - t0 < 3
    assert "could not enter the raw REPL" in str(exc.value)


def test_port_vanishing_mid_transfer(board):
    link = open_link(board.port)
    repl = RawRepl(link)
    repl.enter()
    board.stop()
    with pytest.raises(TransportError):
        repl.exec("print(1)", timeout=3)
    link.close()


def test_deploy_command_then_noop_redeploy(board, flash, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"apn": "internet"}')
    dry = synack("deploy", "-p", board.port, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "changed" in dry.stdout and not (flash / "lib").exists()
    first = synack("deploy", "-p", board.port, "--config", str(cfg))
    assert first.returncode == 0, first.stderr
    assert "bytes to send" in first.stdout and "] " in first.stderr  # progress bar
    assert (flash / "lib" / "synack" / "socket.py").exists()
    assert (flash / "synack_config.json").read_text() == '{"apn":"internet"}'
    t0 = time.monotonic()
    again = synack("deploy", "-p", board.port)
    assert again.returncode == 0, again.stderr
    assert "0 changed, 0 bytes to send" in again.stdout
    assert time.monotonic() - t0 < 5
    imported = synack("exec", "-p", board.port,
                      "import sys\nsys.path.insert(0, '/lib')\nimport synack.tcp as t\n"
                      "print(t.STATE_NAMES[2])")
    assert imported.stdout.strip() == "ESTABLISHED"
    assert os.path.getsize(flash / "lib" / "synack" / "at" / "parser.py") > 0


def test_ls_cat_rm_reset(board, flash):
    payload = os.urandom(5000)
    (flash / "blob.bin").write_bytes(payload)
    (flash / "sub").mkdir()
    listing = synack("ls", "-p", board.port, "/")
    assert listing.returncode == 0, listing.stderr
    assert "5000 blob.bin" in listing.stdout and "sub/" in listing.stdout
    import json
    entries = json.loads(synack("ls", "--json", "-p", board.port, "/").stdout)
    assert {"name": "blob.bin", "dir": False, "size": 5000} in entries
    cat = subprocess.run([sys.executable, "-m", "synack_host.cli", "cat", "-p", board.port,
                          "/blob.bin"], capture_output=True, timeout=30, check=False)
    assert cat.returncode == 0 and cat.stdout == payload
    missing = synack("cat", "-p", board.port, "/nope.txt")
    assert missing.returncode == 1
    assert missing.stderr == "synack: :/nope.txt: no such file or directory on the board\n"
    assert synack("rm", "-p", board.port, "/blob.bin").returncode == 0
    assert not (flash / "blob.bin").exists()
    assert synack("reset", "-p", board.port).returncode == 0
