"""The virtual device as a separate host: the virtual rig inside a Network's device namespace.

:func:`start_device` starts the virtual modem and the virtual board with
``ip netns exec <device namespace>`` in front of them, so that every TCP connection the
device makes -- the virtual modem's host sockets behind ``AT+CIPOPEN`` (``sim7600``), or
the board's native sockets (``wifi``) -- leaves from 192.0.2.2 and crosses the wire and the
router of :class:`~synack_host.hil.network.Network` to reach the server host 198.51.100.2.
The ptys between host, board and modem work across namespaces (only the network changes).
Usable without pytest::

    with Network() as net, start_device(net, network="wifi") as dev:
        server = net.call("server", EchoServer, net.SERVER_IP)   # lives in the server host
        dev.exec(f"s = socket.socket(); s.connect(({net.SERVER_IP!r}, {server.port}))")

The returned :class:`NetDevice` is a :class:`~synack_host.hil.device.Device` -- deployed
and brought up -- whose :meth:`NetDevice.close` also stops the rig; if anything fails on the
way up, what was started is stopped before the error propagates. Servers for the device
must run in the server host: create them in ``net.call("server", ...)`` or under
``net.inside("server")`` (a socket stays in the namespace it was created in, and threads
started there start there too).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .device import NETWORKS, Device

if TYPE_CHECKING:
    from ..sim.rig import Rig
    from .network import Network

__all__ = ["NetDevice", "start_device"]


class NetDevice(Device):
    """A Device on a virtual rig running in ``net``'s device namespace.

    ``rig`` (its ``modem`` for fault injection), ``net`` and ``server_host`` (the address of
    the server host) are there for tests; :meth:`close` leaves the REPL, then stops the
    board and the modem (the Network itself belongs to the caller).
    """

    def __init__(self, port: str, rig: Rig, net: Network, **kwargs: Any):
        self.rig = rig
        self.net = net
        super().__init__(port, **kwargs)

    @property
    def server_host(self) -> str:
        return self.net.SERVER_IP

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.rig.stop()

    def __enter__(self) -> NetDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_device(net: Network, *, network: str = "sim7600", engine: str = "cpython",
                 baud: int | None = None, keepalive_minute_s: float = 1.0,
                 fs: str | Path | None = None, log_path: Path | None = None,
                 allow: tuple[str, ...] = (), bring_up: bool = True,
                 **device_options: Any) -> NetDevice:
    """Start a virtual rig in ``net``'s device namespace and return its Device, deployed
    and (unless ``bring_up`` is false) with its network up.

    ``network`` is a modem dialect (AT commands to a virtual modem of that dialect) or
    ``wifi`` (the board's native sockets); ``engine`` and ``baud`` as for ``synack sim rig``;
    ``keepalive_minute_s`` is how long the modem's ``AT+CTCPKA`` minute lasts. ``fs`` is
    the board's flash directory: reuse one between devices and deploy sends only what
    changed. The modem may connect to the server network and ``Network.SPARE_NET``, plus
    ``allow`` (CIDRs). ``device_options`` go to :class:`Device` (``apn``, ``ssid``,
    ``key``).
    """
    from ..sim.rig import start_rig

    if network not in NETWORKS:
        raise ValueError(f"network must be one of {', '.join(NETWORKS)}, not {network!r}")
    server_net = net.SERVER_IP.rsplit(".", 1)[0] + ".0/24"
    modem_args = ["--keepalive-minute", str(keepalive_minute_s)]
    for cidr in (server_net, net.SPARE_NET, *allow):
        modem_args += ["--allow", cidr]
    rig = start_rig(engine=engine, baud=baud, fs=str(fs) if fs is not None else None,
                    dialect=network if network != "wifi" else "sim7600",
                    modem_args=tuple(modem_args),
                    prefix=("ip", "netns", "exec", net.ns("device")))
    dev: NetDevice | None = None
    try:
        why = rig.dead()
        if why:
            raise RuntimeError(why)
        dev = NetDevice(rig.board.port, rig, net, baud=baud or 115200, network=network,
                        log_path=log_path, **device_options)
        dev.deploy()
        if bring_up:
            dev.bring_up()
    except BaseException:
        if dev is not None:
            try:
                dev.close()          # stops the rig too
            except Exception:  # noqa: BLE001,S110 - the original error matters more
                pass
        rig.stop()                   # idempotent
        raise
    return dev
