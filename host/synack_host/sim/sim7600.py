"""Virtual SIMCom SIM7600: the TCP/IP commands of the SIM7600 AT manual in non-transparent
mode with manual receive (``AT+CIPRXGET=1``), backed by real TCP sockets on this machine.

Links 0-9. Connections go to 127.0.0.0/8 only, unless ``allow`` adds networks (test hosts
in network namespaces); names resolve from IPv4 literals, ``localhost`` and the ``hosts``
map, never from the system resolver - a test must not depend on the machine's DNS.

What a peer sees: ``AT+CIPCLOSE`` is a graceful close (our FIN after the pending data,
then up to 2 s for the peer's FIN); a peer's close or reset gives ``+IPCLOSE: <n>,1``
and the modem closes its side; ``AT+NETCLOSE`` closes every link. Network loss
(``network_lost``, SIGUSR1 in the CLI) and ``AT+CRESET`` drop links *silently*: the
sockets are left open and unread until the modem stops, so the peer hears nothing, as it
would when a real modem loses its radio link or reboots.
"""

from __future__ import annotations

import collections
import errno
import ipaddress
import selectors
import socket
import time
from dataclasses import dataclass

from .faults import FAULTS, Fault, FaultError, number, unescape
from .modem import BASE_COMMANDS, ArgError, Command, Modem, int_arg
from .sim7600_ssl import SSL_COMMANDS, SSL_FAULTS, SSLService

LINKS = 10
RX_CAP = 64 * 1024            # bytes held per link; then the socket is not read (no loss)
MAX_SEND = 1500
MAX_READ = 1500
MAX_READ_HEX = 750
IMEI = "860000000000001"
ICCID = "89882000000000000017"       # a test number, not any operator's
OPERATOR = "synack virtual"
REG_STAT = {"home": 1, "roaming": 5, "searching": 2, "denied": 3, "none": 0}
SIM_STATES = ("ready", "absent", "pin")
PIN = "1234"
CLOSE_WAIT_S = 2.0            # AT+CIPCLOSE waits this long for the peer's FIN
NETOPEN_DELAY_S = 0.05
NETCLOSE_DELAY_S = 0.02
LOCAL_IP = "10.64.0.2"
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


@dataclass
class CmeFault:
    """The cme-error fault: the next ``count`` commands starting with ``prefix``."""
    prefix: str
    code: int
    count: int


class Link:
    """One of the ten links: its TCP socket and the bytes the modem holds for it.

    state: connecting -> open -> closing (AT+CIPCLOSE) -> removed, or open -> closed (the
    peer closed; received data stays readable until AT+CIPCLOSE or a new AT+CIPOPEN).
    """

    def __init__(self, n: int, sock: socket.socket, remote: tuple[str, int]):
        self.n = n
        self.sock: socket.socket | None = sock
        self.remote = remote
        self.state = "connecting"
        self.rx = bytearray()
        self.tx = bytearray()
        self.tx_sent = 0          # bytes handed to the kernel so far
        self.tx_accepted = 0      # bytes accepted by AT+CIPSEND so far
        self.unconfirmed: collections.deque[tuple[int, int]] = collections.deque()
        self.fin_sent = False
        self.data_urc_armed = True   # +CIPRXGET: 1 is due on the next arrival
        self.callback = None


def _registration(name: str) -> Command:
    """+CREG / +CGREG / +CEREG: ``<n>`` is stored and reported; with ``<n>`` >= 1 a change
    of state (only by the drop-registration fault) is reported as ``+CREG: <stat>``."""
    def set_mode(modem: SIM7600, args: list[str]) -> None:
        modem.reg_mode[name] = int_arg(args, 0, 0, 2)
        modem.ok()

    def read(modem: SIM7600, args: list[str]) -> None:
        modem.reply(f"{name}: {modem.reg_mode[name]},{modem._stat()}")
        modem.ok()
    return Command(set=set_mode, read=read)


class SIM7600(Modem):
    """``SIM7600(sim="ready", registration="home", ...).start()`` serves on ``.port``."""

    def __init__(self, sim: str = "ready", registration: str = "home", rssi: int = 20,
                 pdp_fail: bool = False, hosts: dict[str, str] | None = None,
                 allow: tuple[str, ...] = (), drop_data_urcs: bool = False,
                 connect_timeout: float = 20.0, keepalive_minute: float = 60.0,
                 **options):
        if sim not in SIM_STATES:
            raise ValueError(f"sim must be one of {', '.join(SIM_STATES)}")
        if registration not in REG_STAT:
            raise ValueError(f"registration must be one of {', '.join(REG_STAT)}")
        if not (0 <= rssi <= 31 or rssi == 99):
            raise ValueError("rssi must be 0..31 or 99")
        if connect_timeout <= 0:
            raise ValueError("connect timeout must be positive")
        self.hosts = {"localhost": "127.0.0.1"}
        for name, ip in (hosts or {}).items():
            try:
                self.hosts[name.lower()] = str(ipaddress.IPv4Address(ip))
            except ValueError:
                raise ValueError(f"host {name}: {ip!r} is not an IPv4 address") from None
        try:
            self.allow = [ipaddress.ip_network(a, strict=False)
                          for a in ("127.0.0.0/8", *allow)]
        except ValueError as e:
            raise ValueError(f"allow: {e}") from None
        self.sim_config = sim
        self.reg = REG_STAT[registration]
        self.rssi = rssi
        self.pdp_fail = pdp_fail
        # data-arrival URCs still to swallow: every one (--drop-data-urcs) or a few
        # (the lose-urc fault)
        self.drop_data_urcs = drop_data_urcs
        self.urcs_to_lose = float("inf") if drop_data_urcs else 0
        self.reg_lost_until: float | None = None   # drop-registration fault: until when
        self.connect_timeout = connect_timeout
        if keepalive_minute <= 0:
            raise ValueError("keepalive minute must be positive")
        self.keepalive_minute = keepalive_minute
        self.ctcpka = (0, 120, 10, 1)   # AT+CTCPKA: enable, idle min, count, interval min
        self.pdp = {1: ("IP", "")}
        self.links: dict[int, Link] = {}
        self._abandoned: list[socket.socket] = []
        # faults armed through the control socket (see the fault table at the end)
        self.cme_faults: list[CmeFault] = []
        self.oks_to_lose = 0
        self.sends_to_fail = 0
        self.reads_to_truncate = 0
        self.send_interruptions: list[int] = []   # +IPCLOSE reasons, one per AT+CIPSEND
        self.ssl = SSLService(self)   # AT+CCH*, AT+CSSLCFG, AT+CCERT* (sim7600_ssl.py)
        super().__init__(**options)

    # -- power and network hooks -------------------------------------------------------
    def reset_state(self) -> None:
        self.reset_links(abandon=True)
        self.ssl.reset(abandon=True)
        self.sim = self.sim_config
        self.net = "closed"       # closed | opening | open
        self.reg_mode = {"+CREG": 0, "+CGREG": 0, "+CEREG": 0}

    def boot_urcs(self) -> list[str]:
        cpin = {"ready": ["+CPIN: READY"], "pin": ["+CPIN: SIM PIN"]}.get(self.sim, [])
        return ["RDY", *cpin, "SMS DONE", "PB DONE"]

    def network_lost(self) -> None:
        """The bearer drops: one +CIPEVENT, every link gone without a word to its peer."""
        if self.net == "closed":
            return
        self.reset_links(abandon=True)
        self.ssl.network_lost()
        self.net = "closed"
        self.urc("+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY")

    def status(self) -> dict:
        return {**super().status(), "registration": self._stat(), "bearer": self.net,
                "links": {n: link.state for n, link in sorted(self.links.items())},
                "ssl_sessions": self.ssl.status(),
                "pending": self.pending_faults()}

    def pending_faults(self) -> dict[str, int]:
        """Armed faults not yet carried out, by fault name (what ``status`` reports)."""
        pending = {
            "cme-error": sum(f.count for f in self.cme_faults),
            "lose-ok": self.oks_to_lose,
            "send-fail": self.sends_to_fail,
            "truncate-read": self.reads_to_truncate,
            "ipclose-during-send": len(self.send_interruptions),
            "lose-urc": 0 if self.drop_data_urcs else int(self.urcs_to_lose),
            "delay": self._delay_count,
            "garble-cchrecv": self.ssl.garble_reads,
        }
        return {name: n for name, n in pending.items() if n}

    # -- injected faults (faults.py) ---------------------------------------------------
    def drop_registration(self, seconds: float | None) -> None:
        """Out of coverage: searching, the bearer and its links lost silently; back after
        ``seconds`` (None: at restore_registration)."""
        self.reg_lost_until = float("inf") if seconds is None else time.monotonic() + seconds
        self.network_lost()
        self._registration_urcs()
        if seconds is not None:
            self.later(seconds, self._registration_back)

    def heal(self) -> None:
        super().heal()
        self.urcs_to_lose = float("inf") if self.drop_data_urcs else 0
        self.cme_faults.clear()
        self.oks_to_lose = self.sends_to_fail = self.reads_to_truncate = 0
        self.send_interruptions.clear()
        self.ssl.garble_reads = 0
        if self.reg_lost_until is not None:
            self.restore_registration()

    def restore_registration(self) -> None:
        self.reg_lost_until = None
        self._registration_urcs()

    def _registration_back(self) -> None:
        if self.reg_lost_until is not None and time.monotonic() >= self.reg_lost_until:
            self.restore_registration()

    def _registration_urcs(self) -> None:
        self.urc(*(f"{name}: {self._stat()}" for name, n in self.reg_mode.items() if n))

    def close_link(self, n: int, reason: int) -> None:
        """The network ends link ``n``: its peer gets our FIN, the host ``+IPCLOSE``."""
        link = self.links.get(n)
        if link is None or link.state != "open":
            raise FaultError(f"link {n} is not open (links: {self.status()['links']})")
        self._peer_closed(link, reason)

    def reset_links(self, abandon: bool) -> None:
        for link in self.links.values():
            self._release(link, abandon)
        self.links = {}

    def close(self) -> None:
        super().close()
        self.ssl.close()
        for sock in self._abandoned:
            sock.close()
        self._abandoned.clear()

    def fail_commands(self, prefix: str, code: int, count: int) -> None:
        """The next ``count`` commands starting with ``prefix`` are not executed but
        answered with CME error ``code`` (as AT+CMEE says: ERROR, the number or text)."""
        self.cme_faults.append(CmeFault(prefix.upper(), code, count))

    def _execute(self, text: str) -> None:
        upper = text.upper()
        for fault in self.cme_faults:
            if upper.startswith(fault.prefix):
                fault.count -= 1
                if not fault.count:
                    self.cme_faults.remove(fault)
                return self.error(fault.code)
        super()._execute(text)

    def ok(self) -> None:
        """The final OK, unless the lose-ok fault swallows it (information lines, a
        payload and URCs still come)."""
        if self.oks_to_lose:
            self.oks_to_lose -= 1
            if self.trace:
                self.trace("<- (OK lost: lose-ok fault)")
            return
        super().ok()

    # -- helpers -----------------------------------------------------------------------
    def _stat(self) -> int:
        if self.sim != "ready":
            return 0
        lost = self.reg_lost_until is not None and time.monotonic() < self.reg_lost_until
        return REG_STAT["searching"] if lost else self.reg

    def _resolve(self, name: str) -> str | None:
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError:
            return self.hosts.get(name.lower())

    def _release(self, link: Link, abandon: bool = False) -> None:
        """Stop watching the link's socket and close it (or leave it open, unread)."""
        if link.sock is None:
            return
        self.watch(link.sock, 0, link.callback)
        if abandon:
            self._abandoned.append(link.sock)
        else:
            link.sock.close()
        link.sock = None

    def _rewatch(self, link: Link) -> None:
        if link.sock is None:
            return
        events = 0
        if link.state == "connecting":
            events = WRITE
        elif link.state in ("open", "closing"):
            want_rx = link.state == "closing" or len(link.rx) < RX_CAP
            events = (READ if want_rx else 0) | (WRITE if link.tx else 0)
        self.watch(link.sock, events, link.callback)

    def _fail_unconfirmed(self, link: Link) -> None:
        while link.unconfirmed:
            size = link.unconfirmed.popleft()[1]
            self.urc(f"+CIPSEND: {link.n},{size},-1")
        link.tx.clear()

    # -- socket events -----------------------------------------------------------------
    def _on_socket(self, link: Link, mask: int) -> None:
        if self.links.get(link.n) is not link or link.sock is None:
            return
        if link.state == "connecting":
            return self._connected(link)
        if mask & WRITE:
            self._flush_tx(link)
        if mask & READ and link.sock is not None:
            self._receive(link)
        self._rewatch(link)

    def _connected(self, link: Link) -> None:
        assert link.sock is not None
        if link.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self._release(link)
            del self.links[link.n]
            return self.urc(f"+CIPOPEN: {link.n},1")
        link.state = "open"
        self._rewatch(link)
        self.urc(f"+CIPOPEN: {link.n},0")

    def _connect_timeout(self, link: Link) -> None:
        if self.links.get(link.n) is link and link.state == "connecting":
            self._release(link)
            del self.links[link.n]
            self.urc(f"+CIPOPEN: {link.n},10")

    def _receive(self, link: Link) -> None:
        assert link.sock is not None
        room = 65536 if link.state == "closing" else RX_CAP - len(link.rx)
        if room <= 0:
            return
        try:
            data = link.sock.recv(room)
        except (BlockingIOError, InterruptedError):
            return
        except TimeoutError:      # keepalive probes (AT+CTCPKA) went unanswered
            return self._peer_closed(link, reason=2)
        except OSError:           # ECONNRESET: the same end of the link as a FIN
            data = b""
        if link.state == "closing":
            if not data:          # the peer's FIN: the four-way close is complete
                self._finish_close(link)
            return                # data after our close is discarded
        if not data:
            return self._peer_closed(link)
        was_empty = not link.rx
        link.rx += data
        if was_empty and link.data_urc_armed:
            link.data_urc_armed = False
            if self.urcs_to_lose:
                self.urcs_to_lose -= 1
            else:
                self.urc(f"+CIPRXGET: 1,{link.n}")

    def _peer_closed(self, link: Link, reason: int = 1, abandon: bool = False) -> None:
        """+IPCLOSE reasons (SIMCom): 0 closed by local, 1 closed by the remote (FIN or
        RST), 2 closed for sending timeout. ``abandon``: the peer hears nothing."""
        self._fail_unconfirmed(link)
        self._release(link, abandon)
        link.state = "closed"
        self.urc(f"+IPCLOSE: {link.n},{reason}")

    def _flush_tx(self, link: Link) -> None:
        """Hand queued data to the kernel; confirm each AT+CIPSEND once all of it went."""
        while link.tx and link.sock is not None:
            try:
                sent = link.sock.send(link.tx)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                if link.state == "closing":
                    return self._finish_close(link)
                return self._peer_closed(link)
            del link.tx[:sent]
            link.tx_sent += sent
        while link.unconfirmed and link.unconfirmed[0][0] <= link.tx_sent:
            size = link.unconfirmed.popleft()[1]
            self.urc(f"+CIPSEND: {link.n},{size},{size}")
        if link.state == "closing" and not link.tx and not link.fin_sent and link.sock:
            link.fin_sent = True
            try:
                link.sock.shutdown(socket.SHUT_WR)   # our FIN, after all pending data
            except OSError:
                self._finish_close(link)

    def _finish_close(self, link: Link) -> None:
        if self.links.get(link.n) is not link:
            return
        self._fail_unconfirmed(link)
        self._release(link)
        del self.links[link.n]
        self.urc(f"+CIPCLOSE: {link.n},0")

    # -- basic commands ----------------------------------------------------------------
    def _ati(self, args):
        self.reply("Manufacturer: SIMCOM INCORPORATED", "Model: SIMCOM_SIM7600G-H",
                   "Revision: synack-virtual", "IMEI: " + IMEI)
        self.ok()

    def _cgmm(self, args):
        self.reply("SIMCOM_SIM7600G-H")
        self.ok()

    def _cgmr(self, args):
        self.reply("+CGMR: synack-virtual")
        self.ok()

    def _cgsn(self, args):
        self.reply(IMEI)
        self.ok()

    def _ciccid(self, args):
        """SIMCom's ``AT+CICCID``: the SIM's ICCID (none without a ready SIM)."""
        if self.sim == "absent":
            return self.error(10)
        if self.sim != "ready":
            return self.error(11)          # SIM PIN required
        self.reply("+ICCID: " + ICCID)
        self.ok()

    def _cops_read(self, args):
        """27.007 ``+COPS: <mode>[,<format>,<oper>,<AcT>]``: automatic mode; the operator
        (long alphanumeric, LTE = AcT 7) only while registered."""
        if self._stat() in (REG_STAT["home"], REG_STAT["roaming"]):
            self.reply(f'+COPS: 0,0,"{OPERATOR}",7')
        else:
            self.reply("+COPS: 0")
        self.ok()

    def _cpin_read(self, args):
        if self.sim == "absent":
            return self.error(10)
        self.reply("+CPIN: " + ("READY" if self.sim == "ready" else "SIM PIN"))
        self.ok()

    def _cpin_set(self, args):
        if self.sim == "absent":
            return self.error(10)
        if self.sim == "ready":
            return self.error(3)
        if args[:1] != [PIN]:
            return self.error(16)
        self.sim = "ready"
        self.ok()
        self.urc("+CPIN: READY")

    def _csq(self, args):
        self.reply(f"+CSQ: {self.rssi if self.sim == 'ready' else 99},99")
        self.ok()

    def _cgdcont_set(self, args):
        cid = int_arg(args, 0, 1, 15)
        if len(args) < 3 or args[1].upper() not in ("IP", "IPV6", "IPV4V6"):
            raise ArgError("expected <cid>,<type>,<apn>")
        self.pdp[cid] = (args[1].upper(), args[2])
        self.ok()

    def _cgdcont_read(self, args):
        self.reply(*(f'+CGDCONT: {cid},"{kind}","{apn}","0.0.0.0",0,0'
                     for cid, (kind, apn) in sorted(self.pdp.items())))
        self.ok()

    def _accept(self, args):
        self.ok()

    def _cipmode_set(self, args):
        if args != ["0"]:
            return self.reply("ERROR")   # transparent mode is not emulated
        self.ok()

    def _cipmode_read(self, args):
        self.reply("+CIPMODE: 0")
        self.ok()

    # -- bearer and DNS ----------------------------------------------------------------
    def _netopen(self, args):
        if self.net != "closed":
            return self.reply("+IP ERROR: Network is already opened", "ERROR")
        self.ok()
        self.net = "opening"
        self.later(NETOPEN_DELAY_S, self._netopen_done)

    def _netopen_done(self):
        if self.net != "opening":
            return
        up = self._stat() in (1, 5) and not self.pdp_fail
        self.net = "open" if up else "closed"
        self.urc(f"+NETOPEN: {0 if up else 1}")

    def _netopen_read(self, args):
        self.reply(f"+NETOPEN: {int(self.net == 'open')}")
        self.ok()

    def _netclose(self, args):
        result = 0 if self.net != "closed" else 2
        self.ok()
        self.reset_links(abandon=False)
        self.net = "closed"
        self.later(NETCLOSE_DELAY_S, lambda: self.urc(f"+NETCLOSE: {result}"))

    def _ipaddr(self, args):
        if self.net != "open":
            return self.reply("+IP ERROR: Network not opened", "ERROR")
        self.reply(f"+IPADDR: {LOCAL_IP}")
        self.ok()

    def _cdnsgip(self, args):
        ip = self._resolve(args[0]) if len(args) == 1 and args[0] else None
        if ip is None:
            return self.reply("+CDNSGIP: 0,10", "ERROR")
        self.reply(f'+CDNSGIP: 1,"{args[0]}","{ip}"')
        self.ok()

    # -- links -------------------------------------------------------------------------
    def _cipopen_set(self, args):
        n = int_arg(args, 0, 0, LINKS - 1)
        port = int_arg(args, 3, 1, 65535)
        if len(args) != 4 or args[1].upper() not in ("TCP", "UDP"):
            raise ArgError("expected <link>,\"TCP\",<host>,<port>")
        if args[1].upper() == "UDP":
            return self.reply("ERROR")   # UDP is not emulated
        self.ok()
        old = self.links.get(n)
        if old is not None and old.state != "closed":
            return self.urc(f"+CIPOPEN: {n},4")
        self.links.pop(n, None)          # a reopened link forgets the old data
        if self.net != "open":
            return self.urc(f"+CIPOPEN: {n},2")
        ip = self._resolve(args[2])
        if ip is None:
            return self.urc(f"+CIPOPEN: {n},11")
        if not any(ipaddress.ip_address(ip) in net for net in self.allow):
            return self.urc(f"+CIPOPEN: {n},1")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        self._apply_keepalive(sock)
        err = sock.connect_ex((ip, port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            return self.urc(f"+CIPOPEN: {n},1")
        link = self.links[n] = Link(n, sock, (ip, port))
        link.callback = lambda mask, link=link: self._on_socket(link, mask)
        self._rewatch(link)
        self.later(self.connect_timeout, lambda: self._connect_timeout(link))

    def _apply_keepalive(self, sock: socket.socket) -> None:
        """AT+CTCPKA mapped onto the host's TCP keepalive for links opened after it."""
        enable, idle, count, interval = self.ctcpka
        if enable:
            unit = self.keepalive_minute
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, round(idle * unit)))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL,
                            max(1, round(interval * unit)))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)

    def _ctcpka_set(self, args):
        enable = int_arg(args, 0, 0, 1)
        if len(args) == 1:
            self.ctcpka = (enable, *self.ctcpka[1:])
            return self.ok()
        if len(args) not in (3, 4):
            raise ArgError("expected <keepalive>,<keepidle>,<keepcount>[,<keepinterval>]")
        idle = int_arg(args, 1, 1, 120)
        count = int_arg(args, 2, 1, 10)
        interval = int_arg(args, 3, 1, 75) if len(args) == 4 else 1
        self.ctcpka = (enable, idle, count, interval)
        self.ok()

    def _ctcpka_read(self, args):
        self.reply("+CTCPKA: %d,%d,%d,%d" % self.ctcpka)
        self.ok()

    def _cipopen_read(self, args):
        for n in range(LINKS):
            link = self.links.get(n)
            if link and link.state == "open":
                ip, port = link.remote
                self.reply(f'+CIPOPEN: {n},"TCP","{ip}",{port},-1')
            else:
                self.reply(f"+CIPOPEN: {n}")
        self.ok()

    def _cipsend(self, args):
        # Bad parameters and links that are not open give a plain ERROR in every CMEE
        # mode: that is what the SIM7600 answers here.
        try:
            n = int_arg(args, 0, 0, LINKS - 1)
            size = int_arg(args, 1, 1, MAX_SEND)
        except ArgError:
            return self.reply("ERROR")
        link = self.links.get(n)
        if len(args) != 2 or link is None or link.state != "open":
            return self.reply("ERROR")
        self.send(b"\r\n> ")
        self.expect_data(size, lambda data: self._cipsend_data(link, data))
        if self.send_interruptions:
            # ipclose-during-send: the network ends the link while the payload comes
            # in; +IPCLOSE waits for the end of the payload like every URC
            self._peer_closed(link, self.send_interruptions.pop(0))

    def _cipsend_data(self, link: Link, data: bytes) -> None:
        if self.links.get(link.n) is not link or link.state != "open":
            return self.reply("ERROR")   # the link closed while the payload came in
        if self.sends_to_fail:
            # send-fail: accepted, never sent; cnfSendLength -1 = the connection is
            # disconnected, then +IPCLOSE reason 2 (closed for sending timeout); the
            # peer hears nothing, as when the radio path stops carrying the data
            self.sends_to_fail -= 1
            self.ok()
            link.tx_accepted += len(data)
            link.unconfirmed.append((link.tx_accepted, len(data)))
            return self._peer_closed(link, reason=2, abandon=True)
        self.ok()
        link.tx += data
        link.tx_accepted += len(data)
        link.unconfirmed.append((link.tx_accepted, len(data)))
        self._flush_tx(link)
        self._rewatch(link)

    def _ciprxget_set(self, args):
        mode = int_arg(args, 0, 0, 4)
        if mode == 1:
            return self.ok()
        if mode == 0:
            return self.reply("ERROR")   # automatic (push) receive is not emulated
        n = int_arg(args, 1, 0, LINKS - 1)
        link = self.links.get(n)
        if mode == 4:
            self.reply(f"+CIPRXGET: 4,{n},{len(link.rx) if link else 0}")
            return self.ok()
        limit = int_arg(args, 2, 1, MAX_READ if mode == 2 else MAX_READ_HEX)
        if link is None or not link.rx:
            return self.reply("+IP ERROR: No data", "ERROR")
        chunk = bytes(link.rx[:limit])
        del link.rx[:limit]
        if not link.rx:
            link.data_urc_armed = True
        self._rewatch(link)      # resumes reading a socket paused at RX_CAP
        body = chunk if mode == 2 else chunk.hex().upper().encode()
        header = f"\r\n+CIPRXGET: {mode},{n},{len(chunk)},{len(link.rx)}\r\n"
        if self.reads_to_truncate:
            # truncate-read: the header announces every byte, half of them come, then
            # nothing (no CR LF, no OK); the rest is lost, as on a UART that dropped it
            self.reads_to_truncate -= 1
            return self.send(header.encode() + body[:len(body) // 2])
        self.send(header.encode() + body)
        self.ok()

    def _ciprxget_read(self, args):
        self.reply("+CIPRXGET: 1")
        self.ok()

    def _cipclose_set(self, args):
        n = int_arg(args, 0, 0, LINKS - 1)
        link = self.links.get(n)
        if link is None or link.state in ("closed", "closing"):
            if link is not None and link.state == "closed":
                del self.links[n]        # its unread data goes with it
            return self.reply(f"+CIPCLOSE: {n},4", "ERROR")
        self.ok()
        if link.state == "connecting":
            self._release(link)
            del self.links[n]
            return self.urc(f"+CIPCLOSE: {n},0")
        link.state = "closing"
        link.rx.clear()
        self._flush_tx(link)
        self._rewatch(link)
        self.later(CLOSE_WAIT_S, lambda: self._finish_close(link))

    def _cipclose_read(self, args):
        states = ",".join("1" if n in self.links and self.links[n].state == "open" else "0"
                          for n in range(LINKS))
        self.reply(f"+CIPCLOSE: {states}")
        self.ok()

    def _creset(self, args):
        self.ok()
        self.power_on()

    commands = {
        **BASE_COMMANDS,
        "I": Command(run=_ati),
        "+CGMM": Command(run=_cgmm),
        "+CGMR": Command(run=_cgmr),
        "+CGSN": Command(run=_cgsn),
        "+CICCID": Command(run=_ciccid),
        "+COPS": Command(read=_cops_read),
        "+CPIN": Command(read=_cpin_read, set=_cpin_set, test=_accept),
        "+CSQ": Command(run=_csq),
        "+CREG": _registration("+CREG"),
        "+CGREG": _registration("+CGREG"),
        "+CEREG": _registration("+CEREG"),
        "+CGDCONT": Command(set=_cgdcont_set, read=_cgdcont_read),
        "+CIPMODE": Command(set=_cipmode_set, read=_cipmode_read),
        "+CIPCCFG": Command(set=_accept),
        "+CTCPKA": Command(set=_ctcpka_set, read=_ctcpka_read),
        "+CIPTIMEOUT": Command(set=_accept),
        "+CIPRXGET": Command(set=_ciprxget_set, read=_ciprxget_read),
        "+NETOPEN": Command(run=_netopen, read=_netopen_read),
        "+NETCLOSE": Command(run=_netclose),
        "+IPADDR": Command(run=_ipaddr),
        "+CDNSGIP": Command(set=_cdnsgip),
        "+CIPOPEN": Command(set=_cipopen_set, read=_cipopen_read),
        "+CIPSEND": Command(set=_cipsend),
        "+CIPCLOSE": Command(set=_cipclose_set, read=_cipclose_read),
        "+CRESET": Command(run=_creset),
        **SSL_COMMANDS,
    }


def _drop_registration(modem: SIM7600, args: list[str]) -> str:
    seconds = number(args, 0, "seconds", lo=0.0) if args else None
    modem.drop_registration(seconds)
    return "registration lost" + (f" for {seconds:g} s" if seconds is not None else "")


def _restore_registration(modem: SIM7600, args: list[str]) -> str:
    modem.restore_registration()
    return "registered"


def _close_link(modem: SIM7600, args: list[str]) -> str:
    n = int(number(args, 0, "link", lo=0, hi=LINKS - 1))
    reason = int(number(args, 1, "reason", default=1, lo=0, hi=2))
    modem.close_link(n, reason)
    return f"link {n} closed (+IPCLOSE: {n},{reason})"


def _lose_urc(modem: SIM7600, args: list[str]) -> str:
    count = int(number(args, 0, "count", default=1, lo=1, hi=1000))
    modem.urcs_to_lose = count
    return f"the next {count} data URC(s) will be lost"


def _count(args: list[str], i: int) -> int:
    return int(number(args, i, "count", default=1, lo=1, hi=1000))


def _cme_error(modem: SIM7600, args: list[str]) -> str:
    if not args or not args[0].upper().startswith("AT"):
        raise FaultError("the command PREFIX (e.g. AT+CIPOPEN) is missing")
    code = number(args, 1, "CME error code", lo=0, hi=65535)
    if code != int(code):
        raise FaultError(f"CME error code must be a whole number, got {args[1]!r}")
    count = _count(args, 2)
    modem.fail_commands(args[0], int(code), count)
    return (f"the next {count} command(s) starting with {args[0].upper()} answered "
            f"with CME error {int(code)}")


def _lose_ok(modem: SIM7600, args: list[str]) -> str:
    count = _count(args, 0)
    modem.oks_to_lose = count
    return f"the next {count} final OK(s) will be lost"


def _send_fail(modem: SIM7600, args: list[str]) -> str:
    count = _count(args, 0)
    modem.sends_to_fail = count
    return f"the next {count} AT+CIPSEND(s) will fail: +CIPSEND: <link>,<n>,-1"


def _truncate_read(modem: SIM7600, args: list[str]) -> str:
    count = _count(args, 0)
    modem.reads_to_truncate = count
    return f"the next {count} AT+CIPRXGET read(s) will be cut short"


def _ipclose_during_send(modem: SIM7600, args: list[str]) -> str:
    reason = int(number(args, 0, "reason", default=1, lo=0, hi=2))
    modem.send_interruptions.append(reason)
    return (f"the next AT+CIPSEND loses its link while the payload comes in "
            f"(+IPCLOSE: <link>,{reason})")


# What a modem with a firmware bug or a noisy UART might say: a URC with its last
# field missing, a link number that is a letter.
MALFORMED_URCS = ("+IPCLOSE: 0,", "+CIPRXGET: 1,O")


def _malformed_urc(modem: SIM7600, args: list[str]) -> str:
    lines = [unescape(" ".join(args)).decode("latin-1")] if args else list(MALFORMED_URCS)
    if any(c in line for line in lines for c in "\r\n"):
        raise FaultError("a URC is one line: no CR or LF in TEXT (use 'garbage' for that)")
    modem.urc(*lines)
    return "queued: " + ", ".join(repr(line) for line in lines)


SIM7600.fault_table = {
    **FAULTS,
    "drop-registration": Fault(_drop_registration, "drop-registration [SECONDS]",
                               "out of coverage: searching, bearer and links lost"),
    "restore-registration": Fault(_restore_registration, "restore-registration",
                                  "registered again"),
    "close-link": Fault(_close_link, "close-link LINK [REASON]",
                        "the network closes a link: FIN to the peer, +IPCLOSE to the host"),
    "lose-urc": Fault(_lose_urc, "lose-urc [COUNT]",
                      "the next COUNT +CIPRXGET: 1 URCs are never sent"),
    "cme-error": Fault(_cme_error, "cme-error PREFIX CODE [COUNT]",
                       "the next COUNT commands starting with PREFIX answer +CME ERROR: CODE"),
    "lose-ok": Fault(_lose_ok, "lose-ok [COUNT]",
                     "the next COUNT final OKs are never sent"),
    "send-fail": Fault(_send_fail, "send-fail [COUNT]",
                       "the next COUNT sends: +CIPSEND: <link>,<n>,-1, +IPCLOSE: <link>,2"),
    "truncate-read": Fault(_truncate_read, "truncate-read [COUNT]",
                           "the next COUNT AT+CIPRXGET=2/3 payloads are cut short"),
    "ipclose-during-send": Fault(_ipclose_during_send, "ipclose-during-send [REASON]",
                                 "the next AT+CIPSEND's link closes during its payload"),
    "malformed-urc": Fault(_malformed_urc, "malformed-urc [TEXT]",
                           "a malformed URC line (default: '+IPCLOSE: 0,', '+CIPRXGET: 1,O')"),
    **SSL_FAULTS,
}
