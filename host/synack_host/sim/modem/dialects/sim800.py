"""Virtual SIMCom SIM800 (2G): the TCP/IP commands of the "SIM800 Series AT Command
Manual" (V1.09) in multi-connection mode (``AT+CIPMUX=1``) with manual receive
(``AT+CIPRXGET=1``) on links 0-5. The network (27.007) and the link stack are the
shared ones (network.py, links.py); this module words them.

The TCP/IP application's state: IP INITIAL -> ``AT+CSTT`` -> IP START -> ``AT+CIICR``
-> IP GPRSACT -> ``AT+CIFSR`` (the address, no OK) -> IP STATUS, where ``AT+CIPSTART``
and ``AT+CDNSGIP`` work; ``AT+CIPSHUT`` (``SHUT OK``) goes back to IP INITIAL from any
state, network loss goes to PDP DEACT (``+PDP: DEACT``, every link dropped silently).
``AT+CIPMUX=1`` works in IP INITIAL only, as on the modem.

Link words: ``<n>, CONNECT OK`` / ``<n>, CONNECT FAIL`` / ``<n>, ALREADY CONNECT`` after
AT+CIPSTART's OK; AT+CIPSEND's ``> `` prompt, then as its final result:

- normal mode (``AT+CIPQSEND=0``, after a power-on): ``<n>, SEND OK`` once the peer
  acknowledged every byte of it (the kernel's send queue tells: links.py
  ``confirm_acked``), ``<n>, SEND FAIL`` if the link ends first;
- quick send (``AT+CIPQSEND=1``): ``DATA ACCEPT:<n>,<length>`` as soon as the payload
  was handed on to the link's socket, whatever the peer does; the send-fail fault is a
  ``<n>, SEND FAIL`` instead (the manual lists it in both modes), then ``<n>, CLOSED``.
  ``AT+CIPACK=<n>`` tells what the peer has not acknowledged yet: ``+CIPACK: <txlen>,
  <acklen>,<nacklen>``.

``<n>, CLOSED`` when the peer or the network ends a link; AT+CIPCLOSE closes gracefully
(our FIN, then the peer's) and answers ``<n>, CLOSE OK`` when done, ERROR for a link
that is not open (one the peer closed is forgotten with its data).
``AT+CIPRXGET=2,<n>,<len>`` reads ``+CIPRXGET: 2,<n>,<read>,<rest>`` + bytes + OK, an
open link with nothing held giving a zero-length read. Not emulated: single-connection
and transparent modes, push receive (``AT+CIPRXGET=0``), UDP, servers, SSL.
"""

from __future__ import annotations

from ..commands import ArgError, Command, int_arg
from ..faults import Wording
from ..links import Keepalive, Link, LinkState
from ..network import LOCAL_IP, NETWORK_COMMANDS, REGISTERED, Identity, accept_ok
from .base import Dialect
from .simcom import SIMComLinks

LINKS = 6
MAX_SEND = 1460
MAX_READ = 1460
DNS_DELAY_S = 0.02
INITIAL, START, GPRSACT, STATUS, DEACT = ("IP INITIAL", "IP START", "IP GPRSACT",
                                          "IP STATUS", "PDP DEACT")
CLIENT_STATES = {LinkState.CONNECTING: "CONNECTING", LinkState.OPEN: "CONNECTED",
                 LinkState.PEER_CLOSED: "CLOSED", LinkState.CLOSING: "CLOSING"}


class SIM800(SIMComLinks):
    """``SIM800(sim="ready", registration="home", ...).start()`` serves on ``.port``."""

    link_ids = range(LINKS)
    max_send, max_read = MAX_SEND, MAX_READ
    ok_first = False          # "<n>, SEND OK" / "<n>, CLOSE OK" are the final results
    confirm_acked = True      # SEND OK once the peer acknowledged the data
    read_needs_link = True    # an open link with nothing held reads zero bytes
    connected_words = "{link}, CONNECT OK"
    connect_failed_words = "{link}, CONNECT FAIL"
    data_words = "+CIPRXGET: 1,{link}"
    identity = Identity(model="SIMCOM_SIM800L", revision="Revision:1418B04SIM800L24",
                        ati=("SIM800 R14.18",))
    wording = Wording(open="AT+CIPSTART", send="AT+CIPSEND", send_failed="<link>, SEND FAIL",
                      read="AT+CIPRXGET", read_forms="AT+CIPRXGET=2/3",
                      data_urc="+CIPRXGET: 1", closed_urc_name="<link>, CLOSED",
                      closed_urc="{link}, CLOSED",
                      # a line cut after the link number, a link number that is a
                      # letter, a link that does not exist
                      malformed_urcs=("0,", "+CIPRXGET: 1,O", "7, CLOSED"))

    def __init__(self, **options):
        self.ciptka = (0, 7200, 75, 9)   # AT+CIPTKA: mode, idle s, interval s, count
        super().__init__(**options)

    # -- power and network hooks -------------------------------------------------------
    def reset_state(self) -> None:
        super().reset_state()
        self.ip_state = INITIAL
        self.mux = 0
        self.apn = ""
        self.quick_send = False          # AT+CIPQSEND: 0 after a power-on

    def boot_urcs(self) -> list[str]:
        # RDY comes at a fixed baud rate (AT+IPR=<rate>); autobauding modems say nothing
        return ["RDY", "+CFUN: 1", *self.cpin_urcs(), "Call Ready", "SMS Ready"]

    def bearer_lost(self) -> None:
        """+PDP: DEACT; every link gone without a word to its peer."""
        super().bearer_lost()
        self.ip_state = DEACT
        self.urc("+PDP: DEACT")

    # -- link events, in SIMCom's words ----------------------------------------------------
    def link_closed(self, link: Link) -> None:
        self.reply(f"{link.n}, CLOSE OK")   # the final result of AT+CIPCLOSE

    def link_sent(self, link: Link, size: int, ok: bool) -> None:
        self.reply(f"{link.n}, SEND {'OK' if ok else 'FAIL'}")   # AT+CIPSEND's result

    # -- commands: identity, power ------------------------------------------------------
    def _ccid(self, args: list[str]) -> None:
        self.reply_iccid("")

    def _cgatt_read(self, args: list[str]) -> None:
        self.reply(f"+CGATT: {int(self.registration_stat() in REGISTERED)}")
        self.ok()

    # -- commands: the TCP/IP application's state ----------------------------------------
    def _cipmux_set(self, args: list[str]) -> None:
        mux = int_arg(args, 0, 0, 1)
        if mux != 1 or self.ip_state != INITIAL:
            return self.reply("ERROR")   # single-connection mode is not emulated
        self.mux = 1
        self.ok()

    def _cipmux_read(self, args: list[str]) -> None:
        self.reply(f"+CIPMUX: {self.mux}")
        self.ok()

    def _cstt_set(self, args: list[str]) -> None:
        if self.ip_state != INITIAL or not 1 <= len(args) <= 3:
            return self.reply("ERROR")
        self.apn = args[0]
        self.ip_state = START
        self.ok()

    def _cstt_read(self, args: list[str]) -> None:
        self.reply(f'+CSTT: "{self.apn}","",""')
        self.ok()

    def _ciicr(self, args: list[str]) -> None:
        if self.ip_state != START or not self.bearer_possible():
            return self.reply("ERROR")
        self.ip_state = GPRSACT
        self.bearer = "open"
        self.ok()

    def _cifsr(self, args: list[str]) -> None:
        if self.ip_state not in (GPRSACT, STATUS):
            return self.reply("ERROR")
        self.ip_state = STATUS
        self.reply(LOCAL_IP)             # the address only: no OK follows

    def _cipshut(self, args: list[str]) -> None:
        self.links.drop_all(abandon=False)
        self.bearer = "closed"
        self.ip_state = INITIAL
        self.reply("SHUT OK")

    def _cipstatus(self, args: list[str]) -> None:
        """``OK``, then ``STATE: <state>`` and one ``C:`` line per link (multi-IP)."""
        busy = self.ip_state == STATUS and self.links.links
        self.ok()
        self.reply("STATE: " + ("IP PROCESSING" if busy else self.ip_state))
        if self.mux:
            self.reply(*(self._client_line("C: ", n) for n in range(LINKS)))

    def _cipstatus_set(self, args: list[str]) -> None:
        self.reply(self._client_line("+CIPSTATUS: ", int_arg(args, 0, 0, LINKS - 1)))
        self.ok()

    def _client_line(self, prefix: str, n: int) -> str:
        link = self.links.get(n)
        if link is None:
            return f'{prefix}{n},,"","","","INITIAL"'
        ip, port = link.remote
        return f'{prefix}{n},0,"TCP","{ip}","{port}","{CLIENT_STATES.get(link.state, "")}"'

    def _cdnsgip(self, args: list[str]) -> None:
        if self.ip_state != STATUS:
            return self.reply("ERROR")
        if len(args) != 1 or not args[0]:
            raise ArgError("expected \"<domain name>\"")
        name = args[0]
        ip = self.resolve(name)
        self.ok()
        answer = f'+CDNSGIP: 1,"{name}","{ip}"' if ip else "+CDNSGIP: 0,8"
        self.later(DNS_DELAY_S, lambda: self.urc(answer))

    # -- commands: links ------------------------------------------------------------------
    def _cipstart(self, args: list[str]) -> None:
        opened = self.open_link(args, refuse=self.ip_state != STATUS or not self.mux,
                                busy="{link}, ALREADY CONNECT")   # no bearer: ERROR
        if opened is None:
            return
        n, port = opened
        ip = self.resolve(args[2])
        if ip is None or not self.allowed(ip):
            return self.urc(f"{n}, CONNECT FAIL")
        self.links.open(n, ip, port, self._keepalive())

    def _keepalive(self) -> Keepalive | None:
        """AT+CIPTKA (seconds) as the host's TCP keepalive for links opened after it."""
        mode, idle, interval, count = self.ciptka
        return self.host_keepalive(mode, idle, interval, count, per_minute=60)

    def _ciptka_set(self, args: list[str]) -> None:
        mode = int_arg(args, 0, 0, 1)
        _, idle, interval, count = self.ciptka
        if len(args) > 1:
            idle = int_arg(args, 1, 30, 7200)
        if len(args) > 2:
            interval = int_arg(args, 2, 30, 600)
        if len(args) > 3:
            count = int_arg(args, 3, 1, 9)
        if len(args) > 4:
            raise ArgError("expected <mode>[,<keepIdle>[,<keepInterval>[,<keepCount>]]]")
        self.ciptka = (mode, idle, interval, count)
        self.ok()

    def _ciptka_read(self, args: list[str]) -> None:
        self.reply("+CIPTKA: %d,%d,%d,%d" % self.ciptka)
        self.ok()

    def _cipqsend_set(self, args: list[str]) -> None:
        if len(args) != 1:
            raise ArgError("expected <n>")
        self.quick_send = bool(int_arg(args, 0, 0, 1))
        self.ok()

    def _cipqsend_read(self, args: list[str]) -> None:
        self.reply(f"+CIPQSEND: {int(self.quick_send)}")
        self.ok()

    def _cipqsend_test(self, args: list[str]) -> None:
        self.reply("+CIPQSEND: (0,1)")
        self.ok()

    def _cipsend_data(self, link: Link, data: bytes) -> None:
        if not self.quick_send or not self.links.is_open(link):
            return super()._cipsend_data(link, data)   # "<n>, SEND OK" or ERROR
        failing = bool(self.armed.sends_to_fail)
        if failing:                      # not taken: the link ends (transmit's fault)
            self.reply(f"{link.n}, SEND FAIL")
        self.transmit(link, data, confirm=False)   # no SEND OK follows in quick mode
        if not failing:
            self.reply(f"DATA ACCEPT:{link.n},{len(data)}")

    def _cipack_set(self, args: list[str]) -> None:
        """``+CIPACK: <txlen>,<acklen>,<nacklen>``: bytes the link took from the host,
        those the peer acknowledged, the rest; ERROR for a link that is not open."""
        link = self.links.get(self._link_number(args))
        if len(args) != 1 or link is None or link.state is not LinkState.OPEN:
            return self.reply("ERROR")
        acked = self.links.acked(link)
        self.reply(f"+CIPACK: {link.tx_accepted},{acked},{link.tx_accepted - acked}")
        self.ok()

    def _cipsend_read(self, args: list[str]) -> None:
        self.reply(*(f"+CIPSEND: {n},{MAX_SEND}" for n in range(LINKS)))
        self.ok()

    def _cipclose_set(self, args: list[str]) -> None:
        if len(args) > 1:
            int_arg(args, 1, 0, 1)       # slow or quick close: both graceful here
        self.cipclose_set(args)          # "<n>, CLOSE OK" when done (link_closed)

    commands = {
        **{name: cmd for name, cmd in NETWORK_COMMANDS.items() if name != "+CEREG"},
        "+CCID": Command(run=_ccid),
        "+CFUN": Command(set=Dialect.cfun_set, read=Dialect.cfun_read),
        "+CGATT": Command(set=accept_ok, read=_cgatt_read),
        "+CIPMUX": Command(set=_cipmux_set, read=_cipmux_read),
        "+CSTT": Command(set=_cstt_set, read=_cstt_read),
        "+CIICR": Command(run=_ciicr),
        "+CIFSR": Command(run=_cifsr),
        "+CIPSHUT": Command(run=_cipshut),
        "+CIPSTATUS": Command(run=_cipstatus, set=_cipstatus_set),
        "+CDNSGIP": Command(set=_cdnsgip),
        "+CIPSTART": Command(set=_cipstart),
        "+CIPTKA": Command(set=_ciptka_set, read=_ciptka_read),
        "+CIPQSEND": Command(set=_cipqsend_set, read=_cipqsend_read, test=_cipqsend_test),
        "+CIPSEND": Command(set=SIMComLinks.cipsend, read=_cipsend_read),
        "+CIPACK": Command(set=_cipack_set),
        "+CIPRXGET": Command(set=SIMComLinks.ciprxget_set, read=SIMComLinks.ciprxget_read),
        "+CIPCLOSE": Command(set=_cipclose_set),
    }
