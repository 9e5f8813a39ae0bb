"""The device under test, from the host: a board on a serial port running the synack
firmware, driven through its raw REPL. Used by the pytest plugin's ``board`` fixture and
usable on its own::

    dev = Device("/dev/ttyUSB0", network="sim7600")
    dev.deploy()
    dev.bring_up()                       # modem or Wi-Fi up, synack.socket backend chosen,
                                         # `link` defined on the device for a Supervisor
    print(dev.exec("print(1 + 1)"))
    dev.start("run_poller()"); dev.expect(r"poll 10 "); dev.finish(timeout=60)

Everything sent and received is appended to ``log_path`` (when given), so a failed test
leaves the device's side of the story next to the host's. Secrets (the Wi-Fi key) never
appear there, nor in the errors raised: they are sent by ``set_secret`` - assigned to a
variable on the device, logged as ``***`` - and the bring-up code names the variable; and
every log write and error message is masked (synack_host.secrets).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from .. import deploy as deployer
from .. import secrets
from ..sim.modem import DIALECTS
from ..transport import RawRepl, TransportError, open_link

# a virtual modem's dialect (the one table, sim/modem/dialects) or the board's Wi-Fi
NETWORKS = (*DIALECTS, "wifi")
# bytes of a started program's output held for expect() and finish(): far more than a
# test prints (a board printing nonstop at 115200 baud fills it in 90 s); beyond it the
# oldest bytes go to the log file only
WATCH_LIMIT = 1 << 20

_PREAMBLE = """
import sys
if '/lib' not in sys.path:
    sys.path.insert(0, '/lib')
from synack import socket
"""

# any modem dialect: the firmware's own table (synack.modems.DRIVERS) picks the driver
MODEM_BRING_UP = _PREAMBLE + """
from synack import modems
from synack.link import modem_uart
from synack.link.modem import ModemLink
modem = modems.driver(%(dialect)r)(modem_uart(1, 115200), apn=%(apn)r, poll_ms=200)   # rxbuf 2048
modem.start(register_timeout_ms=30000)
socket.use(modem)
link = ModemLink(modem, register_timeout_ms=30000)   # what a Supervisor keeps up
print('network up: %(dialect)s')
"""

BRING_UP = {
    "wifi": _PREAMBLE + """
from synack.link.wifi import WifiLink
link = WifiLink(%(ssid)r, _synack_wifi_key or None, timeout_ms=20000)   # what a Supervisor keeps up
del _synack_wifi_key
link.up()
socket.use(None)
print('network up: wifi', link.address())
""",
}


class DeviceTimeout(AssertionError):
    """expect() did not see its pattern; the message carries what the device printed."""


class Device:
    def __init__(self, port: str, baud: int = 115200, network: str = "sim7600",
                 log_path: Path | None = None, apn: str = "internet", ssid: str = "synack-virtual",
                 key: str = ""):
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {', '.join(NETWORKS)}")
        self.port = port
        self.network = network
        self.settings = {"apn": apn, "ssid": ssid}
        # sent with set_secret before the bring-up code, which names the variable
        self.secrets = {"_synack_wifi_key": key} if network == "wifi" else {}
        secrets.register(key)
        self.log_path = log_path
        self.link = open_link(port, baud)
        self.repl = RawRepl(self.link)
        self.repl.enter()
        self.watched = b""     # output of code started with start(), read by expect()
        self._pos = 0          # where the next expect() searches from
        self.dropped = 0       # bytes of that output beyond WATCH_LIMIT (in the log)

    # -- logging ---------------------------------------------------------------------
    def log(self, kind: str, text: str | bytes) -> None:
        if self.log_path is None:
            return
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        with open(self.log_path, "a") as f:
            f.write(secrets.mask(f"[{time.strftime('%H:%M:%S')}] {kind}:\n{text.rstrip()}\n"))

    def _failed(self, e: Exception) -> None:
        secrets.scrub_exception(e)
        self.log(f"failed ({type(e).__name__})", f"{e}\nunread: {self.repl.buf!r}")

    # -- running code ----------------------------------------------------------------
    def exec(self, code: str, timeout: float = 30.0) -> str:
        self.log("exec", code)
        try:
            out = self.repl.exec(code, timeout)
        except Exception as e:
            self._failed(e)
            raise
        self.log("output", out)
        return out.decode(errors="replace")

    def eval(self, expr: str, timeout: float = 30.0):
        self.log("eval", expr)
        try:
            value = self.repl.eval(expr, timeout)
        except Exception as e:
            self._failed(e)
            raise
        self.log("value", repr(value))
        return value

    def set_secret(self, name: str, value: str, timeout: float = 30.0) -> None:
        """Assign ``value`` to the global ``name`` on the device without it reaching any
        log: the log says ``name = ***``; the value is registered for masking."""
        secrets.register(value)
        self.log("exec", f"{name} = {secrets.MASK}")
        try:
            self.repl.exec(f"{name} = {value!r}", timeout)
        except Exception as e:
            self._failed(e)
            raise

    def start(self, code: str) -> None:
        """Run ``code`` without waiting; watch it with expect(), collect with finish()."""
        self.log("start", code)
        self.repl.start(code)
        # output that arrived with the end of the paste handshake is already read
        pending, self.repl.buf = self.repl.buf, b""
        self.watched, self._pos, self.dropped = b"", 0, 0
        self._keep(pending)

    def _keep(self, data: bytes) -> None:
        """Add the running code's output to ``watched``, which holds at most WATCH_LIMIT
        bytes (a board printing for ever must not exhaust the host): older bytes go to
        the log file and are counted in ``dropped``."""
        self.watched += data
        over = len(self.watched) - WATCH_LIMIT
        if over > 0:
            # up to the end of that line: the log then holds whole lines, not halves
            # split across two entries (how the output was chunked decides the cut)
            end = self.watched.find(b"\n", over - 1)
            if 0 <= end < len(self.watched) - 1:
                over = end + 1
            self.log(f"output (the first {over} bytes beyond the watch limit)",
                     self.watched[:over])
            self.watched = self.watched[over:]
            self._pos = max(0, self._pos - over)
            self.dropped += over

    def expect(self, pattern: str, timeout: float = 30.0) -> re.Match[bytes]:
        """Wait until the running code prints something matching ``pattern`` after the
        previous expect()'s match (as pexpect does: successive calls move forward)."""
        rx = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.watched, self._pos)
            if m:
                self._pos = m.end()
                return m
            ended = b"\x04" in self.watched
            if ended or time.monotonic() > deadline:
                self.log("expect failed", self.watched)
                why = "the code ended" if ended else f"not within {timeout:g} s"
                where = f"; whole output in {self.log_path}" if self.log_path else ""
                raise DeviceTimeout(secrets.mask(
                    f"device did not print /{pattern}/ ({why}); the last of "
                    f"{len(self.watched) + self.dropped} bytes it printed: "
                    f"{self.watched[-600:]!r}{where}"))
            self._keep(self.link.read_available(0.01))

    def finish(self, timeout: float = 60.0) -> str:
        """Wait for the started code to end; its output (at most WATCH_LIMIT bytes: the
        last ones; the rest is in the log)."""
        # what expect() read may hold the end of the output and more (the traceback,
        # the prompt): it goes through the raw REPL's parsing again, into a bounded
        # ``watched``
        pending, self.watched, self._pos = self.watched, b"", 0
        try:
            self.repl.finish(timeout, pending=pending, sink=self._keep)
        except Exception as e:
            self._failed(e)
            raise
        out, self.watched = self.watched, b""
        self.log("output", out)
        return out.decode(errors="replace")

    # -- setup -----------------------------------------------------------------------
    def deploy(self) -> deployer.Plan:
        from ..bundle import send_changed

        plan = deployer.plan(self.repl)
        send_changed(self.repl, plan)
        self.log("deploy", f"{len(plan.changed)} of {len(plan.items)} files sent")
        return plan

    def soft_reset(self) -> None:
        self.repl.soft_reset()
        self.log("soft reset", "")

    def bring_up(self, timeout: float = 60.0) -> str:
        for name, value in self.secrets.items():
            self.set_secret(name, value, timeout)
        script = BRING_UP.get(self.network, MODEM_BRING_UP)
        return self.exec(script % {**self.settings, "dialect": self.network}, timeout)

    def close(self) -> None:
        try:
            self.repl.exit()
        except TransportError:
            pass
        self.link.close()
