"""Separate hosts for the device and the server, with a link and a router to impair.

:class:`Network` builds four network namespaces joined by veth pairs::

    device            wire (userspace link)         router                server
    eth0 192.0.2.2 -- wd  ~~delay/loss/blackhole~~ wr -- eth0 192.0.2.1
                                                          eth1 198.51.100.1 -- eth0 198.51.100.2

The *device* and *server* namespaces are the two hosts under test; the *wire* is a
userspace Ethernet link (:class:`~synack_host.hil.wire.Wire`) that adds latency, loss or a
silent blackhole; the *router* forwards IP and can act as an idle-killing NAT/firewall
(``nftables`` + conntrack with a short established timeout). Addresses come from the
documentation ranges (RFC 5737); every instance has its own namespaces
(``synack-<pid>-<n>-<role>``), so instances and test processes never collide.

Everything is torn down by :meth:`Network.close` -- called by the context manager even when
the block raises, and at interpreter exit for any instance still open; namespaces left by a
killed process are removed by :func:`cleanup_stale`. Operations that need root or a missing
tool raise :class:`NetworkError` naming the command and its stderr.
"""

from __future__ import annotations

import atexit
import itertools
import json
import math
import os
import socket
import struct
import subprocess
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .netns import (NetworkError, call_in, cleanup_stale, delete_namespace, inside,
                    list_namespaces, require, run, sysctl, unavailable)
from .wire import Wire

if TYPE_CHECKING: from .capture import Capture

__all__ = ["Network", "NetworkError", "Impairment", "cleanup_stale", "list_namespaces",
           "unavailable"]

T = TypeVar("T")
ROLES = ("device", "wire", "router", "server")
DIRECTIONS = {"up": ("a2b",), "down": ("b2a",), "both": ("a2b", "b2a")}
_counter = itertools.count(1)
_live: weakref.WeakSet[Network] = weakref.WeakSet()


class Impairment(AbstractContextManager["Impairment"]):
    """An active impairment; :meth:`remove` undoes it (also on leaving a ``with`` block)."""

    def __init__(self, description: str, undo: Callable[[], None]):
        self.description = description
        self._undo: Callable[[], None] | None = undo

    @property
    def active(self) -> bool:
        return self._undo is not None

    def remove(self) -> None:
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<Impairment {self.description} {'active' if self.active else 'removed'}>"


class Network(AbstractContextManager["Network"]):
    """Device and server as separate hosts, with an impairable link and a router."""

    DEVICE_IP = "192.0.2.2"
    ROUTER_DEVICE_IP = "192.0.2.1"
    ROUTER_SERVER_IP = "198.51.100.1"
    SERVER_IP = "198.51.100.2"
    SPARE_NET = "203.0.113.0/24"    # not used by the topology: free for tests' own hosts

    def __init__(self, seed: int | None = 0):
        self.tag = f"{os.getpid()}-{next(_counter)}"
        self.names = {role: f"synack-{self.tag}-{role[:3]}" for role in ROLES}
        self.seed = seed
        self.wire: Wire | None = None
        self._impairments: list[Impairment] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._started = False

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Network:
        require("ip")
        if self._started:
            return self
        self._started = True
        _live.add(self)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        n = self.names
        for role in ROLES:
            run(["ip", "netns", "add", n[role]])
            for key in ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"):
                if os.path.exists("/proc/sys/" + key.replace(".", "/")):
                    sysctl(n[role], key, 1)    # no router solicitations/MLD on the wire
            self._ip(role, "link", "set", "lo", "up")
        self._veth("device", "eth0", "wire", "wd")
        self._veth("wire", "wr", "router", "eth0")
        self._veth("router", "eth1", "server", "eth0")
        for role, ifname in (("wire", "wd"), ("wire", "wr")):
            self._ip(role, "link", "set", ifname, "up")
        for role, ifname, addr in (("device", "eth0", self.DEVICE_IP),
                                   ("router", "eth0", self.ROUTER_DEVICE_IP),
                                   ("router", "eth1", self.ROUTER_SERVER_IP),
                                   ("server", "eth0", self.SERVER_IP)):
            self._ip(role, "addr", "add", f"{addr}/24", "dev", ifname)
            self._ip(role, "link", "set", ifname, "up")
        self._ip("device", "route", "add", "default", "via", self.ROUTER_DEVICE_IP)
        self._ip("server", "route", "add", "default", "via", self.ROUTER_SERVER_IP)
        sysctl(n["router"], "net.ipv4.ip_forward", 1)
        self.wire = Wire(n["wire"], "wd", "wr", seed=self.seed).start()

    def _ip(self, role: str, *args: str) -> None:
        run(["ip", "-n", self.names[role], *args])

    def _veth(self, role_a: str, if_a: str, role_b: str, if_b: str) -> None:
        run(["ip", "link", "add", if_a, "netns", self.names[role_a], "type", "veth",
             "peer", "name", if_b, "netns", self.names[role_b]])

    def close(self) -> None:
        """Remove impairments, stop processes and the wire, delete the namespaces.

        Idempotent; keeps going past individual failures and raises the first at the end.
        """
        errors: list[BaseException] = []
        for imp in reversed(self._impairments):
            try:
                imp.remove()
            except Exception as e:  # noqa: BLE001 - the namespaces go anyway
                errors.append(e)
        self._impairments.clear()
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(2.0)
        self._procs.clear()
        if self.wire is not None:
            self.wire.stop()
            self.wire = None
        for name in self.names.values():
            try:
                delete_namespace(name)
            except NetworkError as e:
                errors.append(e)
        _live.discard(self)
        if errors:
            raise errors[0]

    def __enter__(self) -> Network:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running things in a host ------------------------------------------------------------

    def ns(self, role: str) -> str:
        """The namespace name of ``device``, ``wire``, ``router`` or ``server``."""
        if role not in self.names:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        return self.names[role]

    def inside(self, role: str) -> AbstractContextManager[None]:
        """``with net.inside("device"): s = socket.socket()`` -- the calling thread (and
        sockets and threads created in the block) live in that host."""
        return inside(self.ns(role))

    def call(self, role: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` run in a helper thread inside host ``role``; e.g.
        ``net.call("server", EchoServer, host="0.0.0.0")``."""
        return call_in(self.ns(role), fn, *args, **kwargs)

    def connect(self, role: str, address: tuple[str, int], timeout: float = 5.0
                ) -> socket.socket:
        """A TCP connection from host ``role`` (the socket stays in that namespace)."""
        return call_in(self.ns(role), socket.create_connection, address, timeout,
                       timeout=timeout + 5.0)

    def run(self, role: str, argv: Sequence[str], *, check: bool = True,
            timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.ns(role), *argv], check=check, timeout=timeout)

    def popen(self, role: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process in host ``role``; it is terminated by :meth:`close`."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(role), *argv], **kwargs)
        self._procs.append(proc)
        return proc

    def capture(self, role: str, directory: str | Path, interface: str = "eth0",
                **kwargs: Any) -> Capture:
        """A (not yet started) :class:`~synack_host.hil.capture.Capture` in host ``role``."""
        from .capture import Capture
        return Capture(directory, interface=interface, netns=self.ns(role), **kwargs)

    def ping(self, role: str = "device", dst: str | None = None, timeout: float = 1.0
             ) -> float | None:
        """One ICMP echo from host ``role``; the round-trip time in seconds, or None."""
        if dst is None:
            dst = self.DEVICE_IP if role == "server" else self.SERVER_IP
        return call_in(self.ns(role), _ping, dst, timeout, timeout=timeout + 5.0)

    # -- impairments -----------------------------------------------------------------------

    def _wire(self) -> Wire:
        if self.wire is None:
            raise NetworkError("network not started (use `with Network() as net:`)")
        return self.wire

    def _add(self, description: str, undo: Callable[[], None]) -> Impairment:
        imp = Impairment(description, undo)
        self._impairments.append(imp)
        return imp

    def _wire_dirs(self, direction: str) -> tuple[str, ...]:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be up, down or both, not {direction!r}")
        return DIRECTIONS[direction]

    def impair(self, delay_ms: float = 0.0, jitter_ms: float = 0.0, loss_pct: float = 0.0,
               direction: str = "both") -> Impairment:
        """Add one-way delay (± jitter) and random loss of IP packets on the link.

        ``direction``: ``up`` (device to server), ``down`` or ``both`` (so ``both`` with
        ``delay_ms=50`` adds 100 ms of round-trip time). The latest setting of a direction
        wins; removing the impairment restores a clean link in its directions.
        """
        wire = self._wire()
        dirs = self._wire_dirs(direction)
        for d in dirs:
            wire.set(d, delay_s=delay_ms / 1000, jitter_s=jitter_ms / 1000,
                     loss=loss_pct / 100)
        return self._add(f"delay {delay_ms} ms ±{jitter_ms} loss {loss_pct}% {direction}",
                         lambda: _reset(wire, dirs))

    def blackhole(self, direction: str = "both") -> Impairment:
        """Silently drop every frame on the link (no RST, no ICMP): the peer vanishes."""
        wire = self._wire()
        dirs = self._wire_dirs(direction)
        for d in dirs:
            wire.set(d, blackhole=True)
        return self._add(f"blackhole {direction}", lambda: _reset(wire, dirs))

    def idle_kill(self, timeout_s: float, nat: bool = True) -> Impairment:
        """Make the router a NAT/firewall that forgets TCP connections idle > ``timeout_s``.

        Conntrack's established timeout is set to ``timeout_s`` (whole seconds, rounded up)
        and mid-stream packets of a forgotten connection are dropped silently, in both
        directions -- what a carrier NAT or home router does. With ``nat`` the router also
        masquerades the device behind 198.51.100.1. Enable it *before* opening the
        connections it should watch. Needs ``nft`` (Debian package nftables).
        """
        require("nft")
        secs = max(1, math.ceil(timeout_s))
        router = self.ns("router")
        rules = ("table inet synack_idle {\n"
                 " chain forward {\n"
                 "  type filter hook forward priority filter; policy accept;\n"
                 "  ct state invalid counter drop\n }\n"
                 " chain input {\n"
                 "  type filter hook input priority filter; policy accept;\n"
                 "  ct state invalid counter drop\n }\n}\n")
        if nat:
            rules += ("table ip synack_nat {\n"
                      " chain postrouting {\n"
                      "  type nat hook postrouting priority srcnat;\n"
                      '  oifname "eth1" masquerade\n }\n}\n')
        run(["ip", "netns", "exec", router, "nft", "-f", "-"], input=rules)
        base = "net.netfilter.nf_conntrack_tcp_"
        settings = {"loose": 0, "be_liberal": 1, "timeout_established": secs}
        old = {k: self._read_sysctl(router, base + k) for k in settings}
        for k, v in settings.items():
            sysctl(router, base + k, v)

        def undo() -> None:
            run(["ip", "netns", "exec", router, "nft", "delete", "table", "inet",
                 "synack_idle"], check=False)
            if nat:
                run(["ip", "netns", "exec", router, "nft", "delete", "table", "ip",
                     "synack_nat"], check=False)
            for k, v in old.items():
                sysctl(router, base + k, v)

        return self._add(f"idle-kill after {secs} s{' (NAT)' if nat else ''}", undo)

    def idle_kill_drops(self) -> int:
        """How many packets the idle-killing firewall has dropped so far."""
        out = run(["ip", "netns", "exec", self.ns("router"), "nft", "-j", "list", "table",
                   "inet", "synack_idle"]).stdout
        total = 0
        for item in json.loads(out).get("nftables", []):
            for expr in item.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    total += int(expr["counter"]["packets"])
        return total

    def _read_sysctl(self, ns: str, key: str) -> str:
        path = "/proc/sys/" + key.replace(".", "/")

        def read() -> str:
            with open(path) as f:
                return f.read().strip()

        try:
            return call_in(ns, read)
        except OSError as e:
            raise NetworkError(f"cannot read {key} in namespace {ns}: {e}") from e

    def clear(self) -> None:
        """Remove every impairment still active."""
        while self._impairments:
            self._impairments.pop().remove()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names.values())


def _reset(wire: Wire, dirs: tuple[str, ...]) -> None:
    for d in dirs:
        wire.set(d)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def _ping(dst: str, timeout: float) -> float | None:
    ident = os.getpid() & 0xFFFF
    seq = next(_counter) & 0xFFFF
    payload = b"synack-ping"
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        start = time.monotonic()
        deadline = start + timeout
        s.sendto(packet, (dst, 0))
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                data, addr = s.recvfrom(2048)
            except TimeoutError:
                return None
            ihl = (data[0] & 0x0F) * 4
            typ, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if typ == 0 and rid == ident and rseq == seq and addr[0] == dst:
                return time.monotonic() - start
    return None


@atexit.register
def _close_all() -> None:
    for net in list(_live):
        try:
            net.close()
        except Exception:  # noqa: BLE001,S110 - best effort at exit
            pass
