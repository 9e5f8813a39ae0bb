"""The firmware's SIM7600 driver on a virtual modem process: what tests that run
firmware over the modem share (the process, the serial port to it, the driver)."""

from __future__ import annotations

import serial

from synack import socket as synsocket
from synack.modems import sim7600
from synack_host.sim.launch import start_modem


class Rig:
    """``Rig(*modem_args, start=True, poll_ms=500)``: a started (brought-up) SIM7600
    driver on a new virtual modem; ``close()`` (or ``with``) stops both."""

    def __init__(self, *modem_args, start=True, poll_ms=500):
        self.proc = start_modem("--dialect", "sim7600", *modem_args)
        self.uart = serial.Serial(self.proc.port, 115200, timeout=0)
        try:
            self.modem = sim7600.SIM7600(self.uart, apn="internet", poll_ms=poll_ms)
            if start:
                self.modem.start(register_timeout_ms=3000)
        except BaseException:
            self.close()
            raise

    def socket(self, timeout=10):
        s = synsocket.socket(backend=self.modem)
        s.settimeout(timeout)
        return s

    def close(self):
        self.uart.close()
        self.proc.stop()

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
