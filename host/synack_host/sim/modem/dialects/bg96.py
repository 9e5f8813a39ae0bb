"""Virtual Quectel BG96: the TCP/IP commands of Quectel's "BG96 TCP/IP AT Commands
Manual" in buffer access mode on connectIDs 0-11 over context 1. The network (27.007)
and the link stack behind the connections are the dialect-independent ones (network.py,
links.py); this module only words them.

- Context: ``AT+QICSGP=1,1,"apn","user","pwd"``; ``AT+QIACT=1`` (OK once active, ERROR
  when the network refuses or it is active already), ``AT+QIACT?``, ``AT+QIDEACT=1``
  (closes every connection).
- ``AT+QIOPEN=1,<id>,"TCP","host",port[,0[,0]]``: OK, then ``+QIOPEN: <id>,<err>``:
  0 connected, 563 the connectID is still held (``AT+QICLOSE`` it first), 561 context
  not active, 565 the name does not resolve, 566 refused or not allowed, 569 timeout.
- ``AT+QISEND=<id>,<n>`` (1-1460): ``> ``, n bytes, then ``SEND OK``, ``SEND FAIL``
  (more than ``TX_CAP`` bytes waiting to leave), or ``ERROR`` (not open);
  ``AT+QISEND=<id>,0``: ``+QISEND: <sent>,<acked>,<unacked>``.
- ``+QIURC: "recv",<id>`` when data reaches an empty buffer; ``AT+QIRD=<id>,<max>``
  (1-1500): ``+QIRD: <n>``, n bytes, OK (``+QIRD: 0`` when empty); ``AT+QIRD=<id>,0``:
  ``+QIRD: <received>,<read>,<unread>``.
- ``+QIURC: "closed",<id>`` when the peer or the network ends a connection: what was
  received stays readable until ``AT+QICLOSE=<id>`` (OK once our close completed: our
  FIN, then up to 2 s for the peer's).
- ``AT+QIDNSGIP=1,"host"``: OK, then ``+QIURC: "dnsgip",0,<count>,<ttl>`` and one
  ``+QIURC: "dnsgip","<ip>"`` per address, or ``+QIURC: "dnsgip",565``.
- ``AT+QICFG="tcp/keepalive",<enable>[,<idle min 1-120>,<interval s 25-100>,<count
  3-10>]`` sets the host sockets' TCP keepalive of connections opened after it.
- Network loss (SIGUSR1, the network-lost fault): ``+QIURC: "pdpdeact",1``, every
  connection dropped silently. ``AT+CFUN=1,1`` reboots (``RDY`` ... ``APP RDY``).
"""

from __future__ import annotations

from ..commands import ArgError, Command, int_arg
from ..faults import Wording
from ..links import Keepalive, Link, LinkState
from ..network import LOCAL_IP, NETWORK_COMMANDS, Identity, accept_ok
from .base import Dialect

LINKS = 12
CONTEXT = 1
MAX_SEND = 1460
MAX_READ = 1500
TX_CAP = 16 * 1024        # bytes waiting to leave a connection; beyond: SEND FAIL
QIACT_DELAY_S = 0.05
DNS_DELAY_S = 0.02
DNS_TTL = 600
# +QISTATE <socket_state>: 1 opening, 2 connected, 4 closing
SOCKET_STATE = {LinkState.CONNECTING: 1, LinkState.OPEN: 2, LinkState.PEER_CLOSED: 4,
                LinkState.CLOSING: 4}


class BG96(Dialect):
    """``BG96(sim="ready", registration="home", ...).start()`` serves on ``.port``."""

    link_ids = range(LINKS)
    identity = Identity(model="BG96", revision="BG96MAR02A07M1G-synack",
                        ati=("Quectel", "{model}", "Revision: BG96MAR02A07M1G-synack"))
    wording = Wording(open="AT+QIOPEN",
                      send="AT+QISEND", send_failed='SEND FAIL, +QIURC: "closed",<link>',
                      read="AT+QIRD", read_forms="AT+QIRD=<id>,<max>",
                      data_urc='+QIURC: "recv"', closed_urc_name='+QIURC: "closed"',
                      closed_urc='+QIURC: "closed",{link}',
                      # a firmware bug or a noisy UART: a URC with its last field
                      # missing, a connectID that is a letter, an open without its <err>
                      malformed_urcs=('+QIURC: "closed",', '+QIURC: "recv",O',
                                      "+QIOPEN: 0", '+QIURC: "pdpdeact"'))
    connected_words = "+QIOPEN: {link},0"
    connect_failed_words, connect_errors = "+QIOPEN: {link},{err}", (566, 569)
    data_words = '+QIURC: "recv",{link}'

    def __init__(self, **options):
        self.qicsgp = (1, "", "", "")       # context type, APN, user, password
        self.tcp_keepalive = (0, 2, 75, 9)  # enable, idle min, interval s, count
        self.closing: set[int] = set()      # connectIDs whose AT+QICLOSE awaits its OK
        self.rx_read: dict[int, int] = {}   # bytes read so far, per connection
        super().__init__(**options)

    # -- power and network hooks -------------------------------------------------------
    def reset_state(self) -> None:
        super().reset_state()
        self.closing.clear()
        self.rx_read.clear()
        self.tcp_keepalive = (0, 2, 75, 9)

    def boot_urcs(self) -> list[str]:
        return ["RDY", "+CFUN: 1", *self.cpin_urcs(), "+QUSIM: 1", "+QIND: SMS DONE",
                "APP RDY"]

    def bearer_lost(self) -> None:
        """Every connection gone without a word to its peer; the context deactivated."""
        super().bearer_lost()
        self.closing.clear()
        self.urc(f'+QIURC: "pdpdeact",{CONTEXT}')

    # -- link events, in Quectel's words ---------------------------------------------------
    def link_closed(self, link: Link) -> None:
        """The host's close completed: the AT+QICLOSE waiting for it gets its OK."""
        if link.n in self.closing:
            self.closing.discard(link.n)
            self.ok()

    def link_sent(self, link: Link, size: int, ok: bool) -> None:
        """SEND OK answered the send already: nothing more is said."""

    # -- commands ----------------------------------------------------------------------
    def _qccid(self, args: list[str]) -> None:
        self.reply_iccid("+QCCID: ")

    # context
    def _context(self, args: list[str]) -> None:
        if int_arg(args, 0, 1, 16) != CONTEXT:
            raise ArgError("only context 1 is emulated")

    def _qicsgp_set(self, args: list[str]) -> None:
        self._context(args)
        if len(args) == 1:
            kind, apn, user, pwd = self.qicsgp
            self.reply(f'+QICSGP: {kind},"{apn}","{user}","{pwd}",0')
            return self.ok()
        kind = int_arg(args, 1, 1, 2)
        apn, user, pwd = (args[2:5] + ["", "", ""])[:3]
        self.qicsgp = (kind, apn, user, pwd)
        self.pdp[CONTEXT] = ("IP", apn)
        self.ok()

    def _qiact_set(self, args: list[str]) -> None:
        self._context(args)
        if self.bearer != "closed":
            return self.reply("ERROR")   # active (or activating) already
        self.open_bearer_later(QIACT_DELAY_S, lambda up: self.ok() if up else self.reply("ERROR"))

    def _qiact_read(self, args: list[str]) -> None:
        if self.bearer == "open":
            self.reply(f'+QIACT: {CONTEXT},1,1,"{LOCAL_IP}"')
        self.ok()

    def _qideact_set(self, args: list[str]) -> None:
        self._context(args)
        self.links.drop_all(abandon=False)
        self.closing.clear()
        self.bearer = "closed"
        self.ok()

    # DNS
    def _qidnsgip_set(self, args: list[str]) -> None:
        self._context(args)
        if len(args) != 2 or not args[1]:
            raise ArgError('expected <contextID>,"<hostname>"')
        self.ok()
        self.later(DNS_DELAY_S, lambda: self._dns_answer(args[1]))

    def _dns_answer(self, name: str) -> None:
        ip = self.resolve(name) if self.bearer == "open" else None
        if ip is None:
            return self.urc('+QIURC: "dnsgip",' + ("565" if self.bearer == "open" else "561"))
        self.urc(f'+QIURC: "dnsgip",0,1,{DNS_TTL}', f'+QIURC: "dnsgip","{ip}"')

    # settings
    def _qicfg_set(self, args: list[str]) -> None:
        if not args or args[0].lower() != "tcp/keepalive":
            return self.ok()             # other settings are taken, not modelled
        if len(args) == 1:
            self.reply('+QICFG: "tcp/keepalive",%d,%d,%d,%d' % self.tcp_keepalive)
            return self.ok()
        enable = int_arg(args, 1, 0, 1)
        if len(args) == 2:
            self.tcp_keepalive = (enable, *self.tcp_keepalive[1:])
            return self.ok()
        if len(args) != 5:
            raise ArgError("expected <enable>,<keepidle>,<keepinterval>,<keepcount>")
        self.tcp_keepalive = (enable, int_arg(args, 2, 1, 120), int_arg(args, 3, 25, 100),
                              int_arg(args, 4, 3, 10))
        self.ok()

    def _keepalive(self) -> Keepalive | None:
        """tcp/keepalive mapped onto the host socket of a connection opened after it."""
        enable, idle, interval, count = self.tcp_keepalive
        return self.host_keepalive(enable, idle, interval / 60, count)

    # connections
    def _qiopen_set(self, args: list[str]) -> None:
        self._context(args)
        n = int_arg(args, 1, 0, LINKS - 1)
        if len(args) < 5 or args[2].upper() not in ("TCP", "UDP"):
            raise ArgError('expected 1,<connectID>,"TCP",<host>,<port>[,0[,0]]')
        port = int_arg(args, 4, 1, 65535)
        if len(args) > 5:
            int_arg(args, 5, 0, 65535)   # local port: the host's own choice here
        access = int_arg(args, 6, 0, 2) if len(args) > 6 else 0
        if args[2].upper() == "UDP" or access != 0:
            return self.reply("ERROR")   # UDP, direct push and transparent: not emulated
        self.ok()
        if self.links.get(n) is not None:
            return self.urc(f"+QIOPEN: {n},563")
        if self.bearer != "open":
            return self.urc(f"+QIOPEN: {n},561")
        ip = self.resolve(args[3])
        if ip is None:
            return self.urc(f"+QIOPEN: {n},565")
        if not self.allowed(ip):
            return self.urc(f"+QIOPEN: {n},566")
        self.rx_read[n] = 0
        self.links.open(n, ip, port, self._keepalive())

    def _qisend_set(self, args: list[str]) -> None:
        # Bad parameters and connections that are not open: a plain ERROR (the manual)
        try:
            n = int_arg(args, 0, 0, LINKS - 1)
            size = int_arg(args, 1, 0, MAX_SEND)
        except ArgError:
            return self.reply("ERROR")
        link = self.links.get(n)
        if len(args) != 2 or link is None or link.state is not LinkState.OPEN:
            return self.reply("ERROR")
        if size == 0:
            self.reply(f"+QISEND: {link.tx_accepted},{link.tx_sent},"
                       f"{link.tx_accepted - link.tx_sent}")
            return self.ok()
        self.expect_send_payload(link, size, lambda data: self._qisend_data(link, data))

    def _qisend_data(self, link: Link, data: bytes) -> None:
        if not self.links.is_open(link):
            return self.reply("ERROR")   # the connection ended while the payload came in
        if len(link.tx) + len(data) > TX_CAP:
            return self.reply("SEND FAIL")
        # the send-fail fault: the modem says SEND FAIL and the connection ends
        self.reply("SEND FAIL" if self.armed.sends_to_fail else "SEND OK")
        self.transmit(link, data)

    def _qird_set(self, args: list[str]) -> None:
        n = int_arg(args, 0, 0, LINKS - 1)
        limit = int_arg(args, 1, 0, MAX_READ) if len(args) > 1 else MAX_READ
        link = self.links.get(n)
        if link is None or link.state not in (LinkState.OPEN, LinkState.PEER_CLOSED):
            return self.reply("ERROR")
        done = self.rx_read.get(n, 0)
        if limit == 0:
            self.reply(f"+QIRD: {done + len(link.rx)},{done},{len(link.rx)}")
            return self.ok()
        if not link.rx:
            self.reply("+QIRD: 0")
            return self.ok()
        chunk = self.links.read(link, limit)
        self.rx_read[n] = done + len(chunk)
        self.read_reply(f"\r\n+QIRD: {len(chunk)}\r\n".encode(), chunk, b"\r\n")

    def _qiclose_set(self, args: list[str]) -> None:
        n = int_arg(args, 0, 0, LINKS - 1)
        if len(args) > 1:
            int_arg(args, 1, 0, 65535)   # the close timeout: links.py's own applies
        link = self.links.get(n)
        if link is None:
            return self.ok()
        self.closing.add(n)
        if link.state is not LinkState.CLOSING:
            self.links.close(link)       # OK at link_closed, or now if it is gone
        if self.links.get(n) is not link and n in self.closing:
            self.link_closed(link)

    def _qistate_line(self, link: Link) -> str:
        ip, port = link.remote
        local = link.sock.getsockname()[1] if link.sock else 0
        return (f'+QISTATE: {link.n},"TCP","{ip}",{port},{local},'
                f'{SOCKET_STATE.get(link.state, 0)},{CONTEXT},0,0,"uart1"')

    def _qistate_run(self, args: list[str]) -> None:
        self.reply(*(self._qistate_line(link) for _, link in sorted(self.links.links.items())))
        self.ok()

    def _qistate_set(self, args: list[str]) -> None:
        kind = int_arg(args, 0, 0, 1)
        if kind == 0:
            self._context(args[1:])
            return self._qistate_run(args)
        link = self.links.get(int_arg(args, 1, 0, LINKS - 1))
        if link is not None:
            self.reply(self._qistate_line(link))
        self.ok()

    def _qigeterror(self, args: list[str]) -> None:
        self.reply("+QIGETERROR: 0,operation success")
        self.ok()

    commands = {
        **NETWORK_COMMANDS,
        "+QCCID": Command(run=_qccid),
        "+CFUN": Command(set=Dialect.cfun_set, read=Dialect.cfun_read),
        "+QICSGP": Command(set=_qicsgp_set),
        "+QIACT": Command(set=_qiact_set, read=_qiact_read),
        "+QIDEACT": Command(set=_qideact_set),
        "+QIDNSGIP": Command(set=_qidnsgip_set),
        "+QICFG": Command(set=_qicfg_set),
        "+QIOPEN": Command(set=_qiopen_set),
        "+QISEND": Command(set=_qisend_set),
        "+QIRD": Command(set=_qird_set),
        "+QICLOSE": Command(set=_qiclose_set),
        "+QISTATE": Command(set=_qistate_set, run=_qistate_run),
        "+QIGETERROR": Command(run=_qigeterror),
        "+QISDE": Command(set=accept_ok),
    }
