"""The HIL plugin's fixtures for reference servers and the wire (synack_hil imports them
into its namespace): ``echo_server``, ``http_server``, ``presence_server``, ``hil_pki``,
``https_server``, ``capture``, ``blackhole``, ``network``. See plugin.py for what each
gives a test."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .http_server import HttpServer
from .servers import EchoServer

if TYPE_CHECKING:
    from .plugin import HilConfig


@pytest.fixture
def echo_server(hil: HilConfig):
    with EchoServer(hil.bind_host) as server:
        yield server


@pytest.fixture
def http_server(hil: HilConfig):
    """``http_server`` is an HTTP/1.1 server; ``http_server.factory(version="1.0", ...)``
    starts more (stopped at teardown)."""
    started: list[HttpServer] = []

    def factory(**kw) -> HttpServer:
        server = HttpServer(hil.bind_host, **kw)
        started.append(server)
        return server

    main = factory()
    main.factory = factory    # type: ignore[attr-defined]
    yield main
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def hil_pki(hil: HilConfig, tmp_path_factory: pytest.TempPathFactory):
    """A throw-away PKI made once per session by openssl (synack_host.hil.pki.hil_pki):
    CA ``ca`` (the one the device trusts), and server certificates for
    ``hil.server_host`` ("server"), for another name ("wrong-host") and signed by an
    unknown CA ("unknown-ca")."""
    from .pki import hil_pki as make, unavailable

    require_tools(unavailable(), "https tests")
    return make(tmp_path_factory.mktemp("hil-pki"), hil.server_host)


@pytest.fixture
def https_server(hil: HilConfig, hil_pki):
    """An HttpServer over TLS presenting the "server" certificate (for
    ``hil.server_host``, signed by ``hil_pki``'s CA); ``https_server.factory(cert=
    "wrong-host" | "unknown-ca", ...)`` starts more (stopped at teardown)."""
    started: list[HttpServer] = []

    def factory(cert: str = "server", **kw) -> HttpServer:
        server = HttpServer(hil.bind_host, tls=hil_pki.server_context(cert, "server"), **kw)
        started.append(server)
        return server

    main = factory()
    main.factory = factory    # type: ignore[attr-defined]
    yield main
    for s in started:
        s.stop()


@pytest.fixture
def presence_server(hil: HilConfig):
    with HttpServer(hil.bind_host, presence_timeout=2.0) as server:
        yield server


def require_tools(why: str | None, what: str) -> None:
    """Skip a test whose tools are missing here, with the reason; in CI they must be
    there, so fail instead."""
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} must run in CI: {why}")
        pytest.skip(f"{what}: {why}")


@pytest.fixture
def capture(tmp_path: Path):
    """``capture(*ports)`` starts tcpdump on the loopback for those ports; stop() parses."""
    from .capture import Capture, unavailable

    require_tools(unavailable(), "wire-level checks")
    running: list[Capture] = []

    def start(*ports: int) -> Capture:
        cap = Capture(tmp_path, ports=list(ports), name=f"capture{len(running)}").start()
        running.append(cap)
        return cap

    yield start
    for cap in running:
        if cap.running:
            cap.stop()


@pytest.fixture
def blackhole():
    from .blackhole import PortBlackhole, blackhole_unavailable

    require_tools(blackhole_unavailable(), "blackhole")
    holes: list[PortBlackhole] = []

    def make(port: int) -> PortBlackhole:
        hole = PortBlackhole(port).start()
        holes.append(hole)
        return hole

    yield make
    for hole in holes:
        hole.stop()


@pytest.fixture
def network():
    """Separate device, router and server hosts in network namespaces (see
    synack_host.hil.network.Network): latency, loss, blackhole, an idle-killing NAT."""
    from .netns import unavailable

    require_tools(unavailable(), "network namespaces")
    from .network import Network

    with Network() as net:
        yield net
