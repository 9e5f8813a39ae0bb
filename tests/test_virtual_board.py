"""The virtual MicroPython board, driven by unmodified mpremote and by a plain serial
client byte for byte: banner, friendly REPL, raw REPL, raw-paste flow control, soft and
hard resets, interrupting a busy main.py, UART pacing and machine.UART(1)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from serialclient import SerialClient
from synack_host.sim.launch_board import start_board

pytest.importorskip("mpremote")

BANNER_END = b'Type "help()" for more information.\r\n>>> '
RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"


class Port(SerialClient):
    """A serial client that knows the REPL's prompts."""

    def ready(self) -> None:
        """Wait for the friendly prompt. What the board printed at power-on, before the
        port was opened, is gone (pyserial flushes input at open, as with real boards)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            self.write(b"\r")
            try:
                self.until(b">>> ", 0.3)
                break
            except AssertionError:
                continue
        self.quiet(0.05)

    def raw(self) -> None:
        self.write(b"\r\x03\r\x01")
        self.until(RAW_PROMPT)


@pytest.fixture
def board(flash):
    """``board(*extra_cli_args)`` starts a board on ``flash``; stopped at teardown."""
    running = []

    def make(*args):
        b = start_board("--fs", str(flash), *args)
        running.append(b)
        return b

    yield make
    for b in running:
        b.stop()


def mpremote(port: str, *args: str, timeout: float = 20.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mpremote", "connect", port, *args],
                          capture_output=True, text=True, timeout=timeout)


# -- mpremote as the client ---------------------------------------------------------
def test_mpremote_exec_and_eval(board):
    b = board()
    r = mpremote(b.port, "exec", "print(1+1)")
    assert (r.returncode, r.stdout.strip()) == (0, "2"), r.stderr
    r = mpremote(b.port, "eval", "2**10", "+", "exec", "import gc; print(gc.mem_free() > 0)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1024", "True"]


def test_mpremote_fs_cp_both_ways_byte_exact(board, flash, tmp_path):
    b = board()
    data = os.urandom(20 * 1024)
    local = tmp_path / "blob.bin"
    local.write_bytes(data)
    r = mpremote(b.port, "fs", "cp", str(local), ":blob.bin")
    assert r.returncode == 0, r.stderr
    assert (flash / "blob.bin").read_bytes() == data
    back = tmp_path / "back.bin"
    r = mpremote(b.port, "fs", "cp", ":blob.bin", str(back), "+", "fs", "ls", "/")
    assert r.returncode == 0, r.stderr
    assert back.read_bytes() == data
    assert "20480 blob.bin" in r.stdout
    r = mpremote(b.port, "fs", "mkdir", ":d", "+", "fs", "cp", str(local), ":d/x.bin",
                 "+", "fs", "sha256sum", ":d/x.bin")
    assert r.returncode == 0, r.stderr
    import hashlib
    assert hashlib.sha256(data).hexdigest() in r.stdout
    r = mpremote(b.port, "fs", "rm", "-r", ":d", "+", "fs", "cat", ":missing")
    assert r.returncode != 0 and "No such file" in r.stderr
    assert not (flash / "d").exists()


def test_mpremote_run_local_file(board, tmp_path):
    b = board()
    script = tmp_path / "job.py"
    script.write_text("total = 0\nfor i in range(5):\n    total += i\nprint('total', total)\n")
    r = mpremote(b.port, "run", str(script))
    assert (r.returncode, r.stdout.strip()) == (0, "total 10"), r.stderr


def test_mpremote_device_exception_fails(board, tmp_path):
    b = board()
    r = mpremote(b.port, "exec", "x = 1\nprint(undefined_name)")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert 'File "<stdin>", line 2, in <module>' in out
    assert "NameError: name 'undefined_name' isn't defined" in out


def test_mpremote_breaks_into_busy_main_py(board, flash):
    (flash / "main.py").write_text("n = 0\nwhile True:\n    n += 1\n")
    b = board()
    time.sleep(0.3)   # main.py is spinning
    r = mpremote(b.port, "exec", "print('in')")
    assert (r.returncode, r.stdout.strip()) == (0, "in"), r.stderr


# -- the protocol byte by byte -------------------------------------------------------
def test_banner_and_friendly_repl(board):
    p = Port(board().port)
    p.ready()
    p.write(b"\x02")    # Ctrl-B: the banner again
    assert p.until(BANNER_END) == b"\r\nMicroPython v1.27.0 on 2026-01-01; synack virtual " \
        b"board (cpython engine) with ESP32\r\n" + BANNER_END
    p.write(b"1+1\r")
    assert p.until(b">>> ") == b"1+1\r\n2\r\n>>> "
    p.write(b"for i in range(2):\r  print(i)\r\r")
    assert p.until(b"1\r\n>>> ") == (b"for i in range(2):\r\n...   print(i)\r\n... \r\n"
                                      b"0\r\n1\r\n>>> ")
    p.write(b"x\r")
    assert p.until(b">>> ") == (b"x\r\nTraceback (most recent call last):\r\n"
                                b'  File "<stdin>", line 1, in <module>\r\n'
                                b"NameError: name 'x' isn't defined\r\n>>> ")
    p.write(b"\x05a = 5\rprint(a * 2)\r\x04")
    assert p.until(b"10\r\n>>> ").startswith(
        b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== a = 5\r\n=== ")
    p.write(b"\x02")
    assert p.until(BANNER_END).startswith(b"\r\nMicroPython")


def test_raw_repl_exec_stdout_and_exception(board):
    p = Port(board().port)
    p.ready()
    p.raw()
    p.write(b"print('hi')\nprint(2)\x04")
    assert p.until(b"\x04>") == b"OKhi\r\n2\r\n\x04\x04>"
    p.write(b"1/0\x04")
    out = p.until(b"\x04>")
    assert out.startswith(b"OK\x04Traceback (most recent call last):\r\n")
    assert out.endswith(b"ZeroDivisionError: divide by zero\r\n\x04>")
    p.write(b"open('/nope')\x04")
    assert p.until(b"\x04>").endswith(b"OSError: [Errno 2] ENOENT\r\n\x04>")
    p.write(b"\x02")
    assert p.until(BANNER_END).startswith(b"\r\nMicroPython")


def test_raw_paste_flow_control(board):
    p = Port(board().port)
    p.ready()
    p.raw()
    p.write(b"\x05A\x01")
    assert p.until(b"R\x01") == b"R\x01"
    assert p.until(b"\x80\x00", 1) == b"\x80\x00"      # window: 128 bytes
    code = (b"s = 0\n" + b"s += 1\n" * 60)[:256]         # two whole windows of code
    code = code[:code.rindex(b"\n") + 1].ljust(256, b"#")
    p.write(code[:127])
    assert p.quiet() == b""                            # no grant before a window is used
    p.write(code[127:128])
    assert p.until(b"\x01", 2) == b"\x01"
    p.write(code[128:])
    assert p.until(b"\x01", 2) == b"\x01"
    p.write(b"\nprint(s)\x04")
    n = code.count(b"s += 1")
    assert p.until(b"\x04>") == b"\x04%d\r\n\x04\x04>" % n


def test_soft_reset_in_raw_repl_does_not_run_main(board, flash):
    (flash / "boot.py").write_text("print('boot ran')\n")
    (flash / "main.py").write_text("print('main ran')\n")
    p = Port(board().port)
    p.ready()
    p.write(b"import machine; machine.reset()\r")    # power cycle: boot.py, main.py
    assert b"\r\nboot ran\r\nmain ran\r\nMicroPython" in p.until(BANNER_END)
    p.write(b"keep = 1\r")
    p.until(b">>> ")
    p.raw()
    p.write(b"\x04")
    assert p.until(RAW_PROMPT) == (b"OK\r\nMPY: soft reboot\r\nboot ran\r\n" + RAW_PROMPT)
    p.write(b"print('keep' in globals())\x04")
    assert p.until(b"\x04>") == b"OKFalse\r\n\x04\x04>"   # a fresh interpreter
    p.write(b"\x02")
    p.until(BANNER_END)
    p.write(b"\x04")       # friendly Ctrl-D: a soft reset that does run main.py
    assert b"MPY: soft reboot\r\nboot ran\r\nmain ran\r\nMicroPython" in p.until(BANNER_END)


def test_ctrl_c_interrupts_busy_main_py(board, flash):
    (flash / "main.py").write_text("print('spinning')\nn = 0\nwhile True:\n    n += 1\n")
    p = Port(board().port)
    time.sleep(0.3)   # main.py is spinning (its output went out before the port opened)
    for _ in range(3):         # what careful hosts do: several Ctrl-C a few ms apart
        p.write(b"\r\x03")
        time.sleep(0.005)
    out = p.until(BANNER_END)
    assert b"Traceback (most recent call last):\r\n  File \"main.py\", line " in out
    assert b"KeyboardInterrupt: \r\n" in out
    p.write(b"n > 0\r")
    assert p.until(b"True\r\n>>> ")      # main.py's globals live on in the REPL


def test_board_survives_sys_exit_and_a_dying_interpreter(board):
    p = Port(board().port)
    p.ready()
    p.raw()
    p.write(b"x = 1\nimport sys\nsys.exit()\x04")    # MicroPython: a soft reset
    assert p.until(RAW_PROMPT) == b"OK\x04\x04MPY: soft reboot\r\n" + RAW_PROMPT
    p.write(b"import os\nprint('bye')\nos._exit(3)\x04")
    assert p.until(b"\x04>") == (b"OKbye\r\n\x04SystemError: engine process exited with "
                                  b"status 3\r\n\x04>")
    p.write(b"print('x' in globals())\x04")
    assert p.until(b"\x04>") == b"OKFalse\r\n\x04\x04>"
    p.write(b"import time\ntime.sleep(30)\x04")
    p.until(b"OK")
    time.sleep(0.1)
    p.write(b"\x03")
    assert p.until(b"\x04>").endswith(b"KeyboardInterrupt: \r\n\x04>")


def test_baud_pacing(board):
    p = Port(board("--baud", "115200").port)
    p.ready()
    p.raw()
    start = time.monotonic()
    p.write(b"print('x' * 5000)\x04")
    p.until(b"\x04\x04>", 10)
    elapsed = time.monotonic() - start
    assert elapsed >= 0.8 * 5000 / 11520, elapsed     # 8N1 at 115200: 11 520 bytes/s
    assert elapsed < 3.0


def test_machine_uart1_reaches_a_virtual_modem(board):
    from synack_host.sim.launch import start_modem

    with start_modem("--dialect", "sim7600") as modem:
        p = Port(board("--uart1", modem.port).port)
        p.ready()
        p.raw()
        p.write(b"import machine, time\nu = machine.UART(1, 115200, timeout=50)\n"
                b"time.sleep(0.5)\nu.read()\nu.write(b'AT\\r')\nt = time.ticks_ms()\n"
                b"got = b''\n"
                b"while b'OK' not in got and time.ticks_diff(time.ticks_ms(), t) < 3000:\n"
                b"    got += u.read() or b''\nprint(got)\x04")
        out = p.until(b"\x04>")
        assert b"OK" in out and b"Traceback" not in out, out


def test_missing_unix_port_is_a_clear_error():
    r = subprocess.run([sys.executable, "-m", "synack_host.cli", "sim", "board",
                        "--engine", "unix", "--micropython", "/no/such/micropython"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1
    assert "synack: --micropython /no/such/micropython: not an executable file" in r.stderr


def test_a_missing_flash_directory_is_made(tmp_path):
    """``synack sim board --fs DIR`` as the README writes it, on a fresh machine."""
    fs = tmp_path / "new" / "flash"
    with start_board("--fs", str(fs)) as running:
        res = mpremote(running.port, "exec", "open('/x.txt', 'w').write('1')")
        assert res.returncode == 0, res.stderr
    assert (fs / "x.txt").read_text() == "1"
