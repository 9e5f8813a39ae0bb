"""Virtual SIMCom SIM7600: the TCP/IP commands of the SIM7600 AT manual in non-transparent
mode with manual receive (``AT+CIPRXGET=1``) on links 0-9, and the SSL service
(sim7600_ssl.py). The network (27.007) and the link stack behind the links are the
dialect-independent ones (network.py, links.py); this module only words them.

What a peer sees: ``AT+CIPCLOSE`` is a graceful close (our FIN after the pending data,
then up to 2 s for the peer's FIN); a peer's close or reset gives ``+IPCLOSE: <n>,1``
and the modem closes its side; ``AT+NETCLOSE`` closes every link. Network loss
(``network_lost``, SIGUSR1 in the CLI) and ``AT+CRESET`` drop links *silently*: the
sockets are left open and unread until the modem stops, so the peer hears nothing, as it
would when a real modem loses its radio link or reboots.
"""

from __future__ import annotations

from ..commands import ArgError, Command, int_arg
from ..faults import Wording
from ..links import Keepalive, Link, LinkState
from ..network import LOCAL_IP, NETWORK_COMMANDS, Identity, accept_ok
from .simcom import SIMComLinks
from .sim7600_ssl import SSLDialect
from .sim7600_ssl_commands import SSL_COMMANDS

LINKS = 10
MAX_SEND = 1500
MAX_READ = 1500
NETOPEN_DELAY_S = 0.05
NETCLOSE_DELAY_S = 0.02


class SIM7600(SIMComLinks, SSLDialect):
    """``SIM7600(sim="ready", registration="home", ...).start()`` serves on ``.port``."""

    link_ids = range(LINKS)
    max_send, max_read = MAX_SEND, MAX_READ
    no_data = ("+IP ERROR: No data", "ERROR")
    close_refused = ("+CIPCLOSE: {link},4", "ERROR")
    connected_words = "+CIPOPEN: {link},0"
    connect_failed_words, connect_errors = "+CIPOPEN: {link},{err}", (1, 10)
    data_words = "+CIPRXGET: 1,{link}"
    identity = Identity(model="SIMCOM_SIM7600G-H", revision="+CGMR: synack-virtual",
                        ati=("Manufacturer: SIMCOM INCORPORATED", "Model: {model}",
                             "Revision: synack-virtual", "IMEI: {imei}"))
    wording = Wording(open="AT+CIPOPEN", send="AT+CIPSEND", send_failed="+CIPSEND: <link>,<n>,-1",
                      read="AT+CIPRXGET", read_forms="AT+CIPRXGET=2/3",
                      data_urc="+CIPRXGET: 1", closed_urc_name="+IPCLOSE",
                      closed_urc="+IPCLOSE: {link},{reason}",
                      # what a modem with a firmware bug or a noisy UART might say: a URC
                      # with its last field missing, a link number that is a letter
                      malformed_urcs=("+IPCLOSE: 0,", "+CIPRXGET: 1,O"))

    def __init__(self, **options):
        self.ctcpka = (0, 120, 10, 1)   # AT+CTCPKA: enable, idle min, count, interval min
        super().__init__(**options)

    # -- power and network hooks -------------------------------------------------------
    def boot_urcs(self) -> list[str]:
        return ["RDY", *self.cpin_urcs(), "SMS DONE", "PB DONE"]

    def bearer_lost(self) -> None:
        """One +CIPEVENT; every link gone without a word to its peer."""
        super().bearer_lost()
        self.urc("+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY")

    # -- link events, in SIMCom's words ----------------------------------------------------
    def link_closed(self, link: Link) -> None:
        self.urc(f"+CIPCLOSE: {link.n},0")

    def link_sent(self, link: Link, size: int, ok: bool) -> None:
        self.urc(f"+CIPSEND: {link.n},{size},{size if ok else -1}")

    # -- commands ----------------------------------------------------------------------
    def _ciccid(self, args: list[str]) -> None:
        """SIMCom's ``AT+CICCID``: the SIM's ICCID (none without a ready SIM)."""
        self.reply_iccid("+ICCID: ")

    def _cipmode_set(self, args: list[str]) -> None:
        if args != ["0"]:
            return self.reply("ERROR")   # transparent mode is not emulated
        self.ok()

    def _cipmode_read(self, args: list[str]) -> None:
        self.reply("+CIPMODE: 0")
        self.ok()

    # bearer and DNS
    def _netopen(self, args: list[str]) -> None:
        if self.bearer != "closed":
            return self.reply("+IP ERROR: Network is already opened", "ERROR")
        self.ok()
        self.open_bearer_later(NETOPEN_DELAY_S,
                               lambda up: self.urc(f"+NETOPEN: {0 if up else 1}"))

    def _netopen_read(self, args: list[str]) -> None:
        self.reply(f"+NETOPEN: {int(self.bearer == 'open')}")
        self.ok()

    def _netclose(self, args: list[str]) -> None:
        result = 0 if self.bearer != "closed" else 2
        self.ok()
        self.links.drop_all(abandon=False)
        self.bearer = "closed"
        self.later(NETCLOSE_DELAY_S, lambda: self.urc(f"+NETCLOSE: {result}"))

    def _ipaddr(self, args: list[str]) -> None:
        if self.bearer != "open":
            return self.reply("+IP ERROR: Network not opened", "ERROR")
        self.reply(f"+IPADDR: {LOCAL_IP}")
        self.ok()

    def _cdnsgip(self, args: list[str]) -> None:
        ip = self.resolve(args[0]) if len(args) == 1 and args[0] else None
        if ip is None:
            return self.reply("+CDNSGIP: 0,10", "ERROR")
        self.reply(f'+CDNSGIP: 1,"{args[0]}","{ip}"')
        self.ok()

    # links
    def _cipopen_set(self, args: list[str]) -> None:
        opened = self.open_link(args, refuse=False, busy="+CIPOPEN: {link},4")
        if opened is None:
            return
        n, port = opened
        if self.bearer != "open":
            return self.urc(f"+CIPOPEN: {n},2")
        ip = self.resolve(args[2])
        if ip is None:
            return self.urc(f"+CIPOPEN: {n},11")
        if not self.allowed(ip):
            return self.urc(f"+CIPOPEN: {n},1")
        self.links.open(n, ip, port, self._keepalive())

    def _keepalive(self) -> Keepalive | None:
        """AT+CTCPKA mapped onto the host's TCP keepalive for links opened after it."""
        enable, idle, count, interval = self.ctcpka
        return self.host_keepalive(enable, idle, interval, count)

    def _ctcpka_set(self, args: list[str]) -> None:
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

    def _ctcpka_read(self, args: list[str]) -> None:
        self.reply("+CTCPKA: %d,%d,%d,%d" % self.ctcpka)
        self.ok()

    def _cipopen_read(self, args: list[str]) -> None:
        for n in range(LINKS):
            link = self.links.get(n)
            if link and link.state is LinkState.OPEN:
                ip, port = link.remote
                self.reply(f'+CIPOPEN: {n},"TCP","{ip}",{port},-1')
            else:
                self.reply(f"+CIPOPEN: {n}")
        self.ok()

    def _cipclose_read(self, args: list[str]) -> None:
        states = ",".join("1" if (link := self.links.get(n)) and link.state is LinkState.OPEN
                          else "0" for n in range(LINKS))
        self.reply(f"+CIPCLOSE: {states}")
        self.ok()

    def _creset(self, args: list[str]) -> None:
        self.ok()
        self.power_on()

    commands = {
        **NETWORK_COMMANDS,
        "+CICCID": Command(run=_ciccid),
        "+CIPMODE": Command(set=_cipmode_set, read=_cipmode_read),
        "+CIPCCFG": Command(set=accept_ok),
        "+CTCPKA": Command(set=_ctcpka_set, read=_ctcpka_read),
        "+CIPTIMEOUT": Command(set=accept_ok),
        "+CIPRXGET": Command(set=SIMComLinks.ciprxget_set, read=SIMComLinks.ciprxget_read),
        "+NETOPEN": Command(run=_netopen, read=_netopen_read),
        "+NETCLOSE": Command(run=_netclose),
        "+IPADDR": Command(run=_ipaddr),
        "+CDNSGIP": Command(set=_cdnsgip),
        "+CIPOPEN": Command(set=_cipopen_set, read=_cipopen_read),
        "+CIPSEND": Command(set=SIMComLinks.cipsend),
        "+CIPCLOSE": Command(set=SIMComLinks.cipclose_set, read=_cipclose_read),
        "+CRESET": Command(run=_creset),
        **SSL_COMMANDS,
    }
