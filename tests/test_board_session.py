"""``synack connect`` chains, ``cp`` both ways, the interactive ``repl`` (driven through a
real pty by pexpect) and a board whose flash is full — against the virtual board process."""

from __future__ import annotations

import json
import os
import sys

import pexpect
import pytest

from synack_host.sim.launch_board import start_board
from test_board_commands import synack


@pytest.fixture
def board(flash):
    with start_board("--fs", str(flash)) as running:
        yield running


def test_connect_chains_commands_in_one_session(board, flash, tmp_path):
    local = tmp_path / "app.py"
    local.write_text("X = 41\n")
    res = synack("connect", board.port, "cp", str(local), ":/app.py", "+",
                 "exec", "import app; print(app.X + 1)", "+", "eval", "len('abc')", "+",
                 "ls", "/")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "42" in lines and "3" in lines
    assert any(line.endswith(" app.py") for line in lines)
    assert (flash / "app.py").read_text() == "X = 41\n"


def test_connect_chain_errors_are_clear(board):
    res = synack("connect", board.port, "exec", "1", "+")
    assert res.returncode == 1 and "empty command in the chain" in res.stderr
    res = synack("connect", board.port, "sim", "modem")
    assert res.returncode == 1 and "cannot be chained" in res.stderr
    res = synack("connect", board.port, "exec", "raise ValueError('nope')", "+",
                 "exec", "print('not reached')")
    assert res.returncode == 1 and "ValueError: nope" in res.stderr
    assert "not reached" not in res.stdout
    res = synack("connect", "/dev/no-such-port", "ls")
    assert res.returncode == 1 and "cannot open /dev/no-such-port" in res.stderr


def test_cp_binary_both_ways_byte_exact(board, flash, tmp_path):
    payload = os.urandom(20 * 1024)
    src = tmp_path / "blob.bin"
    src.write_bytes(payload)
    up = synack("cp", "-p", board.port, str(src), ":/data/")   # makes the directory
    assert up.returncode == 0, up.stderr
    assert (flash / "data" / "blob.bin").read_bytes() == payload
    assert "] " in up.stderr                               # progress bar
    back = tmp_path / "back"
    back.mkdir()
    down = synack("cp", "-p", board.port, ":/data/blob.bin", str(back))
    assert down.returncode == 0, down.stderr
    assert (back / "blob.bin").read_bytes() == payload


@pytest.mark.parametrize("args, message", [
    (["a.txt", "b.txt"], "exactly one of SRC and DST"),
    ([":/a", ":/b"], "exactly one of SRC and DST"),
    (["/no/such/local", ":/x"], "cannot read /no/such/local"),
    ([":/missing.bin", "."], ":/missing.bin: no such file on the board"),
    ([":/", "."], "is a directory"),
])
def test_cp_bad_input(board, args, message):
    res = synack("cp", "-p", board.port, *args)
    assert res.returncode == 1 and message in res.stderr, res.stderr


def test_interactive_repl_through_a_pty(board):
    child = pexpect.spawn(sys.executable, ["-m", "synack_host.cli", "repl", "-p", board.port],
                          timeout=15)
    try:
        child.expect("Ctrl-] to leave")
        child.expect(">>> ")
        child.send("6 * 7\r")
        child.expect("42")
        child.send("\x03")                       # Ctrl-C reaches the board unchanged
        child.expect("KeyboardInterrupt|>>> ")
        child.send("\x1d")                       # Ctrl-] leaves
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    # the board is still usable afterwards
    assert synack("eval", "-p", board.port, "1 + 1").stdout.strip() == "2"


def test_chain_goes_from_raw_repl_to_interactive_and_back(board):
    child = pexpect.spawn(sys.executable, ["-m", "synack_host.cli", "connect", board.port,
                                           "exec", "print('before')", "+", "repl", "+",
                                           "eval", "'after'"], timeout=15)
    try:
        child.expect("before")
        child.expect(">>> ")
        child.send("'inside'\r")
        child.expect("'inside'")
        child.send("\x1d")
        child.expect("'after'")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_full_flash_fails_clearly_and_keeps_the_old_file(flash, tmp_path):
    (flash / "keep.txt").write_text("old version")
    with start_board("--fs", str(flash), "--flash-size", "16384") as board:
        big = tmp_path / "keep.txt"
        big.write_bytes(os.urandom(40 * 1024))    # random: deflate cannot shrink it
        res = synack("cp", "-p", board.port, str(big), ":/keep.txt")
        assert res.returncode == 1
        assert "out of flash space" in res.stderr and "previous version is kept" in res.stderr
        assert (flash / "keep.txt").read_text() == "old version"
        assert sorted(p.name for p in flash.iterdir()) == ["keep.txt"]   # no temp left over
        dep = synack("deploy", "-p", board.port)
        assert dep.returncode == 1 and "out of flash space" in dep.stderr


def test_deploy_json_report(board):
    res = synack("deploy", "--json", "--dry-run", "-p", board.port)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["dry_run"] is True and report["files"] == len(report["changed"]) > 5
    assert report["bytes_to_send"] == sum(c["bytes"] for c in report["changed"])
