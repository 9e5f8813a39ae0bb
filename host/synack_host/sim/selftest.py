"""``synack sim selftest``: the firmware, on this machine, over a virtual SIM7600.

Starts the virtual modem on a pty (optionally paced like a 115200-baud UART) and a TCP
echo server on 127.0.0.1, then runs the firmware's modem driver and socket layer exactly
as a board would: bring-up, DNS through the modem, connect, a binary round trip, an active
close; and a second connection that the server closes first. Prints each step, the data
rate and the TCP state sequence of both connections; exits non-zero on any failure.
"""

from __future__ import annotations

import os
import sys
import time

from ..packaging import FIRMWARE_DIR
from . import shims


class SelftestError(Exception):
    pass


def _firmware():
    """Import the firmware package from the repository (it is device code, not part of
    the installed host package)."""
    shims.install()
    fw = str(FIRMWARE_DIR)
    if fw not in sys.path:
        sys.path.insert(0, fw)
    from synack import socket as synsocket
    from synack.modems import sim7600
    return synsocket, sim7600


def run(baud: int | None, size: int, out=print) -> None:
    import serial

    from ..hil.servers import EchoServer, ScriptedServer
    from .launch import start_modem

    synsocket, sim7600 = _firmware()
    args = ["--dialect", "sim7600"] + (["--baud", str(baud)] if baud else [])

    def bye(conn):
        conn.sendall(b"bye\n")
        conn.close()

    with start_modem(*args) as proc, EchoServer() as echo, ScriptedServer(bye) as closer:
        out(f"virtual SIM7600 on {proc.port}" + (f" at {baud} baud" if baud else ""))
        uart = serial.Serial(proc.port, baud or 115200, timeout=0)
        try:
            modem = sim7600.SIM7600(uart, apn="internet")
            t0 = time.monotonic()
            modem.start(register_timeout_ms=5000)
            out(f"bring-up ok in {time.monotonic() - t0:.2f} s, signal {modem.rssi_dbm} dBm")
            ip, port = modem.getaddrinfo("localhost", echo.port)[0][-1]
            out(f"DNS via AT+CDNSGIP: localhost -> {ip}")

            s = synsocket.socket(backend=modem)
            s.settimeout(30)
            s.connect((ip, port))
            data = os.urandom(size)
            t0 = time.monotonic()
            s.sendall(data)
            back = s.read(size)
            dt = time.monotonic() - t0
            if back != data:
                raise SelftestError("echo came back different from what was sent")
            out(f"{size} random bytes echoed byte-exact in {dt:.2f} s "
                f"({2 * size / dt:.0f} B/s both ways)")
            s.close()
            out("active close:  " + " -> ".join(s.tcp.states()))

            p = synsocket.socket(backend=modem)
            p.settimeout(30)
            p.connect(("127.0.0.1", closer.port))
            line = p.readline()
            if line != b"bye\n" or p.read() != b"":
                raise SelftestError("server's goodbye did not arrive as sent")
            p.close()
            out("passive close: " + " -> ".join(p.tcp.states()))
            eng = modem.at.engine
            out(f"AT traffic: {modem.at.tx_bytes} bytes to modem, {modem.at.rx_bytes} from it; "
                f"{eng.urcs} URCs, {eng.unexpected} unexpected lines, {eng.noise} noise bytes")
        finally:
            uart.close()
