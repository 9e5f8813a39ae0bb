"""pytest plugin for hardware-in-the-loop tests (registered as ``synack_hil``).

The same tests run on the virtual rig (default: a virtual board wired to a virtual
SIM7600, started by the plugin) and on a real board (``--board /dev/ttyUSB0`` or any
pyserial URL). Fixtures are thin wrappers over classes usable without pytest:

- ``hil``: the options (HilConfig).
- ``board``: the Device (firmware deployed once per session, soft reset and network
  brought up before each test); its log file is kept under ``--hil-logdir`` when the
  test fails.
- ``modem``: the virtual modem process with its fault-injection API (reboot,
  drop_registration, close_link, lose_data_urcs, delay_replies, inject_garbage,
  network_lost, pause/resume; see synack_host.sim.modem.faults); on a farm rig (``--place``)
  the same faults through the rig's exported control socket; skips on a real board
  without one or over Wi-Fi.
- ``echo_server``, ``http_server``, ``presence_server``: reference servers reachable by
  the device at ``hil.server_host``.
- ``hil_pki``: a test CA and server certificates for ``hil.server_host`` (openssl);
  ``https_server``: the HTTP server over TLS presenting one of them.
- ``capture``: a tcpdump capture of the servers' ports (needs root and tcpdump).
- ``blackhole``: ``blackhole(port)`` makes a server port silent (needs root and nft).
- ``network``: device/router/server network namespaces with impairments (needs root).
- ``netdevice``: the virtual device as its own host, in ``network``'s device namespace.

Secret options (``SECRET_OPTIONS``: ``--wifi-key``) are registered with
synack_host.secrets when pytest starts: device logs, failure reports, captured output,
log records, the JUnit XML and the terminal show ``***`` in their place.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .. import secrets
from . import lease
from .device import NETWORKS, Device
# fixtures of the servers and the wire, found by pytest as attributes of this plugin
from .net_fixtures import (blackhole, capture, echo_server, hil_pki,  # noqa: F401
                           http_server, https_server, network, presence_server,
                           require_tools)

ENGINES = ("cpython", "micropython", "unix")
# options whose values are secrets: masked (***) in everything the run logs or reports
SECRET_OPTIONS = ("--wifi-key",)
# the rig's modem counts an AT+CTCPKA minute as this many seconds, so keepalive tests
# finish in seconds; a real modem's minute is 60 s
VIRTUAL_KEEPALIVE_MINUTE_S = 1.0


@dataclass
class HilConfig:
    board: str
    engine: str
    modem: str
    baud: int | None
    logdir: Path
    server_host: str
    apn: str = "internet"
    wifi_ssid: str = "synack-virtual"
    wifi_key: str = field(default="", repr=False)
    place: str | None = None               # a labgrid place (--place): a farm's board
    modem_control: str | None = None       # its rig's modem fault socket, if it has one
    rig_minute_s: float | None = None      # that rig modem's AT+CTCPKA minute

    @property
    def virtual(self) -> bool:
        return self.board == "virtual"

    @property
    def keepalive_minute_s(self) -> float:
        if self.rig_minute_s:
            return self.rig_minute_s
        return VIRTUAL_KEEPALIVE_MINUTE_S if self.virtual else 60.0

    @property
    def bind_host(self) -> str:
        return "127.0.0.1" if self.server_host.startswith("127.") else "0.0.0.0"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("synack-hil", "synack hardware-in-the-loop tests")
    g.addoption("--board", default="virtual",
                help="'virtual' (default: start a virtual rig) or the serial port / pyserial "
                "URL of a real board")
    g.addoption("--engine", default="unix", choices=ENGINES,
                help="what runs the virtual board's code (default unix: the real "
                "MicroPython unix port; micropython: its WebAssembly VM; cpython)")
    g.addoption("--modem", default="sim7600", choices=NETWORKS,
                help="how the device reaches the network: a modem dialect or 'wifi'")
    g.addoption("--baud", type=int, default=None,
                help="serial speed (real board: its REPL baud, default 115200; virtual "
                "rig: pace both UARTs, default unpaced)")
    g.addoption("--hil-logdir", default=None,
                help="where per-test device logs of failed tests are kept")
    g.addoption("--server-host", default="127.0.0.1",
                help="the address the device uses to reach this host's servers")
    g.addoption("--apn", default=os.environ.get("SYNACK_APN", "internet"),
                help="the modem's APN (default $SYNACK_APN or 'internet')")
    g.addoption("--wifi-ssid", default=os.environ.get("SYNACK_WIFI_SSID", "synack-virtual"),
                help="Wi-Fi network of a real board (default $SYNACK_WIFI_SSID)")
    g.addoption("--place", default=None,
                help="a labgrid place (synack farm up): acquired for the run, its board's "
                "rfc2217:// port used, released at the end")
    g.addoption("--coordinator", default=None,
                help="the labgrid coordinator HOST:PORT (default $LG_COORDINATOR)")
    g.addoption("--wifi-key", default=os.environ.get("SYNACK_WIFI_KEY", ""),
                help="its password (default $SYNACK_WIFI_KEY; an environment variable "
                "keeps it out of shell history)")


@pytest.fixture(scope="session")
def hil(request: pytest.FixtureRequest) -> HilConfig:
    opt = request.config.getoption
    logdir = Path(opt("--hil-logdir") or tempfile.mkdtemp(prefix="synack-hil-"))
    logdir.mkdir(parents=True, exist_ok=True)
    config = HilConfig(opt("--board"), opt("--engine"), opt("--modem"), opt("--baud"), logdir,
                       opt("--server-host"), opt("--apn"), opt("--wifi-ssid"),
                       opt("--wifi-key"))
    held = lease.of(request.config)
    if held is not None:
        config.place, config.modem_control = held.name, held.board.control
        config.rig_minute_s = held.board.keepalive_minute_s
    return config


@pytest.fixture(scope="session")
def rig(hil: HilConfig):
    if not hil.virtual:
        yield None
        return
    from ..sim.rig import start_rig

    running = start_rig(engine=hil.engine, baud=hil.baud,
                        dialect=hil.modem if hil.modem != "wifi" else "sim7600",
                        modem_args=("--keepalive-minute", str(VIRTUAL_KEEPALIVE_MINUTE_S)))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def _device(hil: HilConfig, rig, request: pytest.FixtureRequest):
    port = rig.board.port if rig is not None else hil.board
    dev = Device(port, baud=hil.baud or 115200, network=hil.modem,
                 log_path=hil.logdir / "session.log", apn=hil.apn, ssid=hil.wifi_ssid,
                 key=hil.wifi_key)
    held = lease.of(request.config)
    if held is not None:        # the place vanished: a test blocked on the board fails now
        held.on_lost(dev.link.close)
    dev.deploy()
    yield dev
    dev.close()


# -- secrets: registered at start, masked in every report, log record and the JUnit XML
class _MaskSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if secrets.registered():
            message = record.getMessage()
            if secrets.contains(message):
                record.msg, record.args = secrets.mask(message), ()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = secrets.mask(record.exc_text)
        return True


def pytest_configure(config: pytest.Config) -> None:
    secrets.register(*(config.getoption(o, None) for o in SECRET_OPTIONS))
    lease.start(config)       # --place: acquire it, --board becomes its rfc2217:// URL


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    logging_plugin = session.config.pluginmanager.get_plugin("logging-plugin")
    for name in ("caplog_handler", "report_handler", "log_file_handler", "log_cli_handler"):
        handler = getattr(logging_plugin, name, None)
        if isinstance(handler, logging.Handler):
            handler.addFilter(_MaskSecrets())


def _mask_report(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not secrets.registered():
        return
    longrepr = report.longrepr
    if longrepr is not None:
        report.longrepr = secrets.scrub(longrepr)  # type: ignore[assignment]
        if not isinstance(longrepr, (str, tuple)) and secrets.contains(str(longrepr)):
            report.longrepr = secrets.mask(str(longrepr))  # not a dataclass: as text
    report.sections[:] = [(secrets.mask(t), secrets.mask(c)) for t, c in report.sections]
    props = getattr(report, "user_properties", None)
    if props:
        props[:] = [(n, secrets.scrub(v)) for n, v in props]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_make_collect_report(collector: pytest.Collector):
    report = yield
    _mask_report(report)
    return report


def pytest_runtest_setup(item: pytest.Item) -> None:
    lease.check_before(item)


def pytest_unconfigure(config: pytest.Config) -> None:
    lease.finish(config)
    _mask_junit(config)


def _mask_junit(config: pytest.Config) -> None:
    """The JUnit XML once more, after pytest wrote it (also record_xml_attribute and
    record_testsuite_property values, which bypass the reports)."""
    xml = getattr(config.option, "xmlpath", None)
    if not xml or not secrets.registered() or not os.path.isfile(xml):
        return
    with open(xml, encoding="utf-8") as f:
        text = f.read()
    masked = secrets.mask_xml(text)
    if masked != text:
        with open(xml, "w", encoding="utf-8") as f:
            f.write(masked)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    _mask_report(report)
    lease.name_vanished(item, report)
    setattr(item, f"hil_report_{report.when}", report)
    log = getattr(item, "hil_log", None)
    if report.failed and log is not None:
        report.sections.append(("device log", f"kept in {log}"))
    return report


def _test_log(hil: HilConfig, node: pytest.Item) -> Path:
    """A fresh device log for the test ``node``, named in its failure report."""
    log = hil.logdir / (node.name.replace("/", "_") + ".log")
    log.unlink(missing_ok=True)
    node.hil_log = log      # type: ignore[attr-defined]
    return log


def _drop_log_unless_failed(log: Path, node: pytest.Item) -> None:
    failed = any(getattr(getattr(node, f"hil_report_{w}", None), "failed", False)
                 for w in ("setup", "call"))
    if not failed:
        log.unlink(missing_ok=True)


@pytest.fixture
def board(_device: Device, hil: HilConfig, request: pytest.FixtureRequest):
    log = _device.log_path = _test_log(hil, request.node)
    _device.soft_reset()
    _device.bring_up()
    yield _device
    _device.log_path = hil.logdir / "session.log"
    _drop_log_unless_failed(log, request.node)


@pytest.fixture
def modem(hil: HilConfig, rig):
    if hil.modem != "wifi" and rig is None and hil.modem_control:
        from .places import RemoteModem

        remote = RemoteModem(hil.modem_control)     # a farm rig's, through its socket
        yield remote
        remote.heal()
        return
    if rig is None or hil.modem == "wifi":
        pytest.skip("the modem fixture needs the virtual rig with a modem")
    yield rig.modem
    if rig.modem.proc.poll() is None:
        rig.modem.resume()
        rig.modem.heal()        # the next test starts with a healthy modem


@pytest.fixture(scope="session")
def _netdevice_flash(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One flash directory for every netdevice of the session: deploy sends only changes."""
    return tmp_path_factory.mktemp("netdevice-flash")


@pytest.fixture
def netdevice(hil: HilConfig, _netdevice_flash: Path, request: pytest.FixtureRequest):
    """The virtual device as a separate host: a rig started in the ``network`` fixture's
    device namespace (synack_host.hil.netrig.start_device), deployed and brought up over
    ``--modem``; its servers belong in the server namespace (``network.call("server",
    ...)``, reached at ``netdevice.server_host``). Skips on a real board."""
    if not hil.virtual:
        pytest.skip("a real board cannot be moved into a network namespace")
    net = request.getfixturevalue("network")
    from .netrig import start_device

    log = _test_log(hil, request.node)
    dev = start_device(net, network=hil.modem, engine=hil.engine, baud=hil.baud,
                       keepalive_minute_s=hil.keepalive_minute_s, fs=_netdevice_flash,
                       log_path=log, apn=hil.apn, ssid=hil.wifi_ssid, key=hil.wifi_key)
    yield dev
    dev.close()
    _drop_log_unless_failed(log, request.node)
