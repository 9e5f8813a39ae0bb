"""Virtual SIMCom SIM7600: answers the AT commands of the SIM7600 TCP/IP manual with the
manual's formats, backed by real TCP sockets on this machine.

Non-transparent mode, manual receive (AT+CIPRXGET=1), links 0-9. Connections go to
127.0.0.0/8 only unless ``allow`` widens that (test hosts in network namespaces); names
resolve from ``localhost`` and the ``hosts`` map, never the system resolver.
"""

from __future__ import annotations

import errno
import ipaddress
import selectors
import socket

from .vmodem import VirtualModem

LINKS = 10
RX_CAP = 64 * 1024
MAX_IO = 1500
REG_STAT = {"home": 1, "roaming": 5, "searching": 2, "denied": 3, "none": 0}
CLOSE_WAIT_FOR_FIN_S = 2.0


class Link:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.state = "connecting"   # connecting | open | closed
        self.rx = bytearray()
        self.tx = bytearray()
        self.urc_armed = True       # report +CIPRXGET: 1 on the next arrival


class SIM7600(VirtualModem):
    def __init__(self, sim: str = "ready", registration: str = "home", rssi: int = 20,
                 pdp_fail: bool = False, hosts: dict[str, str] | None = None,
                 allow: tuple[str, ...] = ("127.0.0.0/8",), drop_data_urcs: bool = False,
                 connect_timeout: float = 20.0, **kw):
        super().__init__(**kw)
        self.sim = sim
        self.reg = REG_STAT[registration]
        self.rssi = rssi
        self.pdp_fail = pdp_fail
        self.hosts = {"localhost": "127.0.0.1", **(hosts or {})}
        self.allow = [ipaddress.ip_network(a) for a in allow]
        self.drop_data_urcs = drop_data_urcs
        self.connect_timeout = connect_timeout
        self.power_on()

    # -- power -------------------------------------------------------------------
    def power_on(self) -> None:
        self.links: dict[int, Link] = {}
        self.net_open = False
        self.echo = True
        self.cmee = 0
        self.apn = ""
        self.booted = False  # a booting modem ignores its UART, as real ones do

        def boot():
            self.booted = True
            self.urc("RDY")
            if self.sim == "ready":
                self.urc("+CPIN: READY")
            self.urc("SMS DONE", "PB DONE")
        self.later(0.1, boot)

    def network_lost(self) -> None:
        """What a dropped bearer looks like (SIGUSR1 in the CLI)."""
        self.urc("+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY")
        for n in list(self.links):
            self._drop(n)
        self.net_open = False

    def _drop(self, n: int) -> None:
        link = self.links.pop(n, None)
        if link and link.state != "closed":
            self._unwatch(link)
            link.sock.close()

    def _unwatch(self, link: Link) -> None:
        try:
            self.sel.unregister(link.sock)
        except (KeyError, ValueError):
            pass

    # -- helpers -----------------------------------------------------------------
    def _registered(self) -> bool:
        return self.sim == "ready" and self.reg in (1, 5)

    def _resolve(self, host: str) -> str | None:
        try:
            ipaddress.IPv4Address(host)
            return host
        except ValueError:
            return self.hosts.get(host.lower())

    def _link_arg(self, text: str) -> int | None:
        return int(text) if text.isdigit() and int(text) < LINKS else None

    # -- basic commands ------------------------------------------------------------
    def h_info(self, kind, args):
        self.reply("Manufacturer: SIMCOM INCORPORATED", "Model: SIMCOM_SIM7600G-H",
                   "Revision: synack-virtual", "IMEI: 860000000000001")
        self.ok()

    def h_cgmm(self, kind, args):
        self.reply("SIMCOM_SIM7600G-H")
        self.ok()

    def h_cmee(self, kind, args):
        if kind == "?":
            self.reply(f"+CMEE: {self.cmee}")
        elif kind == "=" and args[0] in ("0", "1", "2"):
            self.cmee = int(args[0])
        elif kind != "=?":
            return self.error(50)
        self.ok()

    def h_cpin(self, kind, args):
        if self.sim == "absent":
            return self.error(10)
        if kind == "?":
            self.reply("+CPIN: " + ("READY" if self.sim == "ready" else "SIM PIN"))
        elif kind == "=":
            if self.sim == "pin" and args and args[0] == "1234":
                self.sim = "ready"
            elif self.sim == "pin":
                return self.error(16)
        self.ok()

    def h_csq(self, kind, args):
        self.reply(f"+CSQ: {self.rssi if self.sim == 'ready' else 99},99")
        self.ok()

    def h_reg(self, name):
        def handler(self, kind, args):
            if kind == "?":
                self.reply(f"{name}: 0,{self.reg if self.sim == 'ready' else 0}")
            self.ok()
        return handler

    def h_cgdcont(self, kind, args):
        if kind == "=" and len(args) >= 3:
            self.apn = args[2]
        elif kind == "?":
            self.reply(f'+CGDCONT: 1,"IP","{self.apn}","0.0.0.0",0,0')
        self.ok()

    def h_accept(self, kind, args):
        self.ok()

    def h_cipmode(self, kind, args):
        if kind == "=" and args != ["0"]:
            return self.reply("ERROR")  # transparent mode is not emulated
        self.ok()

    def h_ciprxget_mode(self, kind, args):
        if kind == "?":
            self.reply("+CIPRXGET: 1")
            return self.ok()
        mode = args[0] if args else ""
        if mode == "1":
            return self.ok()
        if mode in ("2", "3"):
            return self._read(int(mode), args)
        if mode == "4":
            n = self._link_arg(args[1]) if len(args) > 1 else None
            if n is None:
                return self.error(50)
            link = self.links.get(n)
            self.reply(f"+CIPRXGET: 4,{n},{len(link.rx) if link else 0}")
            return self.ok()
        self.reply("ERROR")  # mode 0 (push) is not emulated

    # -- bearer --------------------------------------------------------------------
    def h_netopen(self, kind, args):
        if kind == "?":
            self.reply(f"+NETOPEN: {int(self.net_open)}")
            return self.ok()
        if self.net_open:
            return self.reply("+IP ERROR: Network is already opened", "ERROR")
        self.ok()

        def done():
            ok = self._registered() and not self.pdp_fail
            self.net_open = ok
            self.urc(f"+NETOPEN: {0 if ok else 1}")
        self.later(0.05, done)

    def h_netclose(self, kind, args):
        self.ok()
        was_open = self.net_open
        for n in list(self.links):
            self._drop(n)
        self.net_open = False
        self.later(0.02, lambda: self.urc(f"+NETCLOSE: {0 if was_open else 2}"))

    def h_ipaddr(self, kind, args):
        if not self.net_open:
            return self.reply("+IP ERROR: Network not opened", "ERROR")
        self.reply("+IPADDR: 10.64.0.2")
        self.ok()

    def h_cdnsgip(self, kind, args):
        ip = self._resolve(args[0]) if kind == "=" and args else None
        if ip is None:
            return self.reply("+CDNSGIP: 0,10", "ERROR")
        self.reply(f'+CDNSGIP: 1,"{args[0]}","{ip}"')
        self.ok()

    # -- sockets -------------------------------------------------------------------
    def h_cipopen(self, kind, args):
        if kind == "?":
            for n in range(LINKS):
                link = self.links.get(n)
                self.reply(f"+CIPOPEN: {n}" + (',"TCP"' if link and link.state == "open" else ""))
            return self.ok()
        if kind != "=" or len(args) < 4 or not args[3].isdigit():
            return self.error(50)
        n, proto, host, port = self._link_arg(args[0]), args[1].upper(), args[2], int(args[3])
        if n is None or not 0 < port < 65536 or proto != "TCP":
            return self.error(50)
        self.ok()
        if n in self.links and self.links[n].state != "closed":
            return self.urc(f"+CIPOPEN: {n},4")
        self.links.pop(n, None)
        if not self.net_open:
            return self.urc(f"+CIPOPEN: {n},2")
        ip = self._resolve(host)
        if ip is None:
            return self.urc(f"+CIPOPEN: {n},11")
        if not any(ipaddress.ip_address(ip) in net for net in self.allow):
            return self.urc(f"+CIPOPEN: {n},1")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        link = self.links[n] = Link(sock)
        err = sock.connect_ex((ip, port))
        if err not in (0, errno.EINPROGRESS):
            self.links.pop(n)
            sock.close()
            return self.urc(f"+CIPOPEN: {n},1")
        self.sel.register(sock, selectors.EVENT_WRITE, lambda: self._connected(n, link))

        def give_up():
            if self.links.get(n) is link and link.state == "connecting":
                self._drop(n)
                self.urc(f"+CIPOPEN: {n},10")
        self.later(self.connect_timeout, give_up)

    def _connected(self, n: int, link: Link) -> None:
        err = link.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self._unwatch(link)
        if err:
            link.sock.close()
            self.links.pop(n, None)
            return self.urc(f"+CIPOPEN: {n},1")
        link.state = "open"
        self.sel.register(link.sock, selectors.EVENT_READ, lambda: self._readable(n, link))
        self.urc(f"+CIPOPEN: {n},0")

    def _readable(self, n: int, link: Link) -> None:
        try:
            data = link.sock.recv(RX_CAP - len(link.rx))
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._peer_closed(n, link)
            return
        was_empty = not link.rx
        link.rx += data
        if was_empty and link.urc_armed and not self.drop_data_urcs:
            link.urc_armed = False
            self.urc(f"+CIPRXGET: 1,{n}")
        if len(link.rx) >= RX_CAP:  # back-pressure: stop reading until the host reads
            self._unwatch(link)

    def _peer_closed(self, n: int, link: Link) -> None:
        self._unwatch(link)
        link.sock.close()
        link.state = "closed"   # buffered data stays readable until AT+CIPCLOSE
        self.urc(f"+IPCLOSE: {n},1")

    def h_cipsend(self, kind, args):
        n = self._link_arg(args[0]) if kind == "=" and len(args) == 2 else None
        link = self.links.get(n) if n is not None else None
        size = int(args[1]) if n is not None and args[1].isdigit() else 0
        if link is None or link.state != "open" or not 0 < size <= MAX_IO:
            return self.reply("ERROR")
        self.send(b"\r\n> ")
        self.expect_data(size, lambda data: self._send_data(n, link, data))

    def _send_data(self, n: int, link: Link, data: bytes) -> None:
        self.ok()
        try:
            link.sock.setblocking(True)
            link.sock.settimeout(5)
            link.sock.sendall(data)
            link.sock.setblocking(False)
        except OSError:
            self.urc(f"+CIPSEND: {n},{len(data)},-1")
            self._peer_closed(n, link)
            return
        self.urc(f"+CIPSEND: {n},{len(data)},{len(data)}")

    def _read(self, mode: int, args: list[str]) -> None:
        n = self._link_arg(args[1]) if len(args) == 3 else None
        limit = MAX_IO if mode == 2 else MAX_IO // 2
        size = int(args[2]) if n is not None and args[2].isdigit() else 0
        if n is None or not 0 < size <= limit:
            return self.error(50)
        link = self.links.get(n)
        if link is None or not link.rx:
            return self.reply("+IP ERROR: No data", "ERROR")
        chunk = bytes(link.rx[:size])
        del link.rx[:size]
        if not link.rx:
            link.urc_armed = True
        if link.state == "open":
            self._watch_again(n, link)
        body = chunk if mode == 2 else chunk.hex().upper().encode()
        self.send(f"\r\n+CIPRXGET: {mode},{n},{len(chunk)},{len(link.rx)}\r\n".encode()
                  + body + b"\r\nOK\r\n")

    def _watch_again(self, n: int, link: Link) -> None:
        try:
            self.sel.register(link.sock, selectors.EVENT_READ, lambda: self._readable(n, link))
        except KeyError:
            pass  # still registered

    def h_cipclose(self, kind, args):
        if kind == "?":
            states = ",".join("1" if self.links.get(i) and self.links[i].state == "open"
                              else "0" for i in range(LINKS))
            self.reply(f"+CIPCLOSE: {states}")
            return self.ok()
        n = self._link_arg(args[0]) if kind == "=" and args else None
        if n is None:
            return self.error(50)
        link = self.links.get(n)
        if link is None or link.state != "open":
            self.links.pop(n, None)
            return self.reply(f"+CIPCLOSE: {n},4", "ERROR")
        self.ok()
        self._unwatch(link)
        link.state = "closing"
        try:
            link.sock.shutdown(socket.SHUT_WR)  # our FIN; then wait for the peer's
        except OSError:
            pass
        self.sel.register(link.sock, selectors.EVENT_READ, lambda: self._closing(n, link))
        self.later(CLOSE_WAIT_FOR_FIN_S, lambda: self._close_done(n, link))

    def _closing(self, n: int, link: Link) -> None:
        try:
            if link.sock.recv(65536):
                return  # data after our close is discarded, as the manual says
        except BlockingIOError:
            return
        except OSError:
            pass
        self._close_done(n, link)

    def _close_done(self, n: int, link: Link) -> None:
        if self.links.get(n) is not link:
            return
        self._unwatch(link)
        link.sock.close()
        del self.links[n]
        self.urc(f"+CIPCLOSE: {n},0")

    def h_creset(self, kind, args):
        self.ok()
        for n in list(self.links):
            self._drop(n)
        self.later(0.05, self.power_on)

    handlers = {
        "I": h_info, "+CGMM": h_cgmm, "+CMEE": h_cmee, "+CPIN": h_cpin, "+CSQ": h_csq,
        "+CREG": h_reg(None, "+CREG"), "+CGREG": h_reg(None, "+CGREG"),
        "+CEREG": h_reg(None, "+CEREG"), "+CGDCONT": h_cgdcont, "+CIPMODE": h_cipmode,
        "+CIPCCFG": h_accept, "+CIPTIMEOUT": h_accept, "+CIPRXGET": h_ciprxget_mode,
        "+NETOPEN": h_netopen, "+NETCLOSE": h_netclose, "+IPADDR": h_ipaddr,
        "+CDNSGIP": h_cdnsgip, "+CIPOPEN": h_cipopen, "+CIPSEND": h_cipsend,
        "+CIPCLOSE": h_cipclose, "+CRESET": h_creset,
    }

