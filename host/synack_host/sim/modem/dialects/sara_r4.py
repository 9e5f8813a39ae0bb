"""Virtual u-blox SARA-R410M-02B: the "Internet protocol transport layer" commands of the
SARA-R4 AT commands manual (UBX-17003787) on sockets 0-6 the modem numbers itself, over
the default context 1. The network (27.007) and the link stack behind the sockets are
the dialect-independent ones (network.py, links.py); this module only words them.

- Bearer: ``AT+CGATT=1`` (attach; CME error 30 without registration), ``AT+CGACT=1,1``
  (CME error 148 when the network refuses), ``AT+CGACT?``, ``AT+CGACT=0,1`` (closes every
  socket). As on LTE, the modem attaches and activates context 1 by itself at boot.
  ``AT+CGEREP=1``: ``+CGEV: NW PDN DEACT 1`` when the network drops the bearer
  (SIGUSR1, the network-lost fault); the sockets go silently.
- ``AT+USOCR=6``: ``+USOCR: <s>``, the lowest free number (CME error 3 when none is);
  UDP (17) is not emulated.
- ``AT+USOSO=<s>,<level>,<opt>,<val>``: 6,1 (no delay) and 65535,8 (SO_KEEPALIVE: the
  stack's 7200 s idle, 75 s interval, 9 probes, in ``keepalive_minute`` units) are
  taken; 6,2 (keepidle) is refused with CME error 4, as the R4's manual says.
- ``AT+USOCO=<s>,"host",port,1``: OK, then ``+UUSOCO: <s>,<err>``: 0 connected, 111
  refused (or not allowed), 110 timeout, 100 bearer down, 160 the name does not
  resolve. One such connect at a time (CME error 3 while one is pending); the blocking
  form (no ``,1``) is not emulated (ERROR).
- ``AT+USOWR=<s>,<n>`` (1-1024): ``@``, n bytes, ``+USOWR: <s>,<n>``, OK; the base and
  HEX forms ``AT+USOWR=<s>,<n>,"data"`` too. CME error 3 on a socket that is not open.
- ``+UUSORD: <s>,<n>`` when data reaches an empty buffer, and after a partial read.
  ``AT+USORD=<s>,<max>`` (0-1024): ``+USORD: <s>,<n>,"<data>"``: raw bytes after the
  opening quote, or 2n hex digits in HEX mode (``AT+UDCONF=1,1``); ``+USORD: <s>,""``
  when empty (the R4 omits <n>); ``AT+USORD=<s>,0``: ``+USORD: <s>,<unread>``.
- ``+UUSOCL: <s>`` when the peer or the network ends a socket, only once its data is
  read; the socket stays (``AT+USOCTL=<s>,1``: 0 after the peer's FIN, 110 after a
  send or keepalive timeout, 104 after a local abort) until ``AT+USOCL``.
  ``AT+USOCL=<s>,1``: OK, then ``+UUSOCL: <s>`` when our close completed (our FIN, then
  up to 2 s for the peer's); ``AT+USOCL=<s>`` answers OK only then. CME error 3 for a
  socket that does not exist.
- ``AT+USOCTL=<s>,<id>``: 0 type, 1 its last error, 10 TCP state (RFC 793 numbering);
  ``AT+USOER``; ``AT+UDNSRN=0,"host"``: ``+UDNSRN: "<ip>"``.
- ``AT+CFUN=15`` / ``16`` reboot; the R4 says nothing at boot (no URC).
"""

from __future__ import annotations

from ..commands import ArgError, Command, int_arg
from ..faults import Wording
from ..links import Keepalive, Link, LinkState
from ..network import NETWORK_COMMANDS, REGISTERED, Identity
from .base import Dialect

SOCKETS = 7
CONTEXT = 1
MAX_SEND = 1024
MAX_READ = 1024
# the stack's own TCP keepalive (SO_KEEPALIVE on): idle, interval, probes
KEEPALIVE = (7200, 75, 9)
# <socket_error> of +UUSOCO / +USOER / AT+USOCTL=<s>,1 (BSD errno numbers)
ENETDOWN, ECONNRESET, ETIMEDOUT, ECONNREFUSED, EHOSTNOTFOUND = 100, 104, 110, 111, 160
# the socket error a link ended for (links.CLOSED_LOCALLY, _BY_PEER, _BY_TIMEOUT)
END_ERROR = {0: ECONNRESET, 1: 0, 2: ETIMEDOUT}
# AT+USOCTL=<s>,10: RFC 793 state of a socket
TCP_STATE = {LinkState.CREATED: 0, LinkState.CONNECTING: 2, LinkState.OPEN: 4,
             LinkState.PEER_CLOSED: 7, LinkState.CLOSING: 5}


class SARAR4(Dialect):
    """``SARAR4(sim="ready", registration="home", ...).start()`` serves on ``.port``."""

    link_ids = range(SOCKETS)
    payload_prompt = b"\r\n@"
    identity = Identity(model="SARA-R410M-02B", revision="L0.0.00.00.05.06 [synack virtual]",
                        ati=("Manufacturer: u-blox", "Model: {model}",
                             "Revision: L0.0.00.00.05.06 [synack virtual]", "IMEI: {imei}"))
    wording = Wording(open="AT+USOCO",
                      send="AT+USOWR", send_failed="+USOWR: <socket>,<n>, then +UUSOCL",
                      read="AT+USORD", read_forms="AT+USORD=<socket>,<max>",
                      data_urc="+UUSORD", closed_urc_name="+UUSOCL",
                      closed_urc="+UUSOCL: {link}",
                      # a firmware bug or a noisy UART: a socket number that is a letter,
                      # a data URC with its length missing
                      malformed_urcs=("+UUSOCL: O", "+UUSORD: 0,"))
    connected_words = "+UUSOCO: {link},0"
    data_words = "+UUSORD: {link},{size}"

    def __init__(self, **options):
        self.hex_mode = False
        self.cgerep = 0
        self.attached = False
        self.last_error = 0
        self.socket_error: dict[int, int] = {}
        self.keepalive_on: set[int] = set()
        self.close_pending: set[int] = set()  # peer-closed sockets whose +UUSOCL waits
        self.sync_close: set[int] = set()     # AT+USOCL without ,1: OK when done
        super().__init__(**options)

    # -- power and network hooks -------------------------------------------------------
    def reset_state(self) -> None:
        super().reset_state()
        self.hex_mode = False
        self.cgerep = 0
        self.attached = False
        self.socket_error = {}
        self.keepalive_on = set()
        self.close_pending = set()
        self.sync_close = set()

    def boot_urcs(self) -> list[str]:
        """Nothing to say; on LTE the modem attaches and opens context 1 by itself."""
        if self.bearer_possible():
            self.attached = True
            self.bearer = "open"
        return []

    def bearer_lost(self) -> None:
        super().bearer_lost()
        self.keepalive_on.clear()
        self.close_pending.clear()
        if self.cgerep:
            self.urc(f"+CGEV: NW PDN DEACT {CONTEXT}")

    # -- link events, in u-blox's words --------------------------------------------------
    def link_connect_failed(self, link: Link, timed_out: bool) -> None:
        self._connect_failed(link.n, ETIMEDOUT if timed_out else ECONNREFUSED)

    def _connect_failed(self, n: int, err: int) -> None:
        self.last_error = err
        self.urc(f"+UUSOCO: {n},{err}")

    def link_peer_closed(self, link: Link, reason: int) -> None:
        """+UUSOCL only once the data is read (AT manual); the socket stays until
        AT+USOCL, its error telling why it ended."""
        self.keepalive_on.discard(link.n)
        self.socket_error[link.n] = END_ERROR.get(reason, ECONNRESET)
        if link.rx:
            self.close_pending.add(link.n)
        else:
            self._uusocl(link)

    def _uusocl(self, link: Link) -> None:
        self.close_pending.discard(link.n)
        self.urc(f"+UUSOCL: {link.n}")

    def link_closed(self, link: Link) -> None:
        if link.n in self.sync_close:
            self.sync_close.discard(link.n)
            return self.ok()
        self.urc(f"+UUSOCL: {link.n}")

    def link_sent(self, link: Link, size: int, ok: bool) -> None:
        """The R4 confirms a write in its reply (+USOWR) only: nothing comes later."""

    # -- commands ------------------------------------------------------------------------
    def _socket(self, args: list[str], *states: LinkState) -> Link | None:
        """The socket args[0] names when it is in one of ``states`` (any if none given);
        else CME error 3 is answered and None returned."""
        link = self.links.get(int_arg(args, 0, 0, SOCKETS - 1))
        if link is None or (states and link.state not in states):
            self.error(3)
            return None
        return link

    def _ccid(self, args: list[str]) -> None:
        self.reply_iccid("+CCID: ")

    def _cfun_set(self, args: list[str]) -> None:
        mode = int_arg(args, 0, 0, 16)
        if mode in (15, 16):           # silent reset; reset with SIM reset
            self.ok()
            return self.power_on()
        if mode not in (0, 1, 4):
            raise ArgError("expected 0, 1, 4, 15 or 16")
        if mode != 1:
            self.network_lost()
            self.attached = False
        self.ok()

    def _cgatt_set(self, args: list[str]) -> None:
        state = int_arg(args, 0, 0, 1)
        if state and self.registration_stat() not in REGISTERED:
            return self.error(30)      # no network service
        if not state:
            self.network_lost()
        self.attached = bool(state)
        self.ok()

    def _cgatt_read(self, args: list[str]) -> None:
        self.reply(f"+CGATT: {int(self.attached)}")
        self.ok()

    def _cgact_set(self, args: list[str]) -> None:
        state = int_arg(args, 0, 0, 1)
        if len(args) > 1 and int_arg(args, 1, 1, 15) != CONTEXT:
            return self.error(3)       # only context 1 is emulated
        if not state:
            if self.bearer == "open":
                self.links.drop_all(abandon=False)
                self.bearer = "closed"
            return self.ok()
        if self.bearer != "open":
            if not self.bearer_possible():
                return self.error(30 if self.registration_stat() not in REGISTERED else 148)
            self.attached = True
            self.bearer = "open"
        self.ok()

    def _cgact_read(self, args: list[str]) -> None:
        self.reply(f"+CGACT: {CONTEXT},{int(self.bearer == 'open')}")
        self.ok()

    def _cgerep_set(self, args: list[str]) -> None:
        self.cgerep = int_arg(args, 0, 0, 2)
        self.ok()

    def _cgerep_read(self, args: list[str]) -> None:
        self.reply(f"+CGEREP: {self.cgerep},0")
        self.ok()

    def _udconf_set(self, args: list[str]) -> None:
        """+UDCONF=1,<hex>: HEX mode of +USOWR/+USORD; +UDCONF=1 reads it; other
        settings are taken and not modelled."""
        if args[:1] != ["1"]:
            return self.ok()
        if len(args) == 1:
            self.reply(f"+UDCONF: 1,{int(self.hex_mode)}")
            return self.ok()
        self.hex_mode = bool(int_arg(args, 1, 0, 1))
        self.ok()

    def _udnsrn(self, args: list[str]) -> None:
        if int_arg(args, 0, 0, 1) != 0 or len(args) != 2:
            raise ArgError('expected 0,"host"')
        ip = self.resolve(args[1]) if args[1] else None
        if ip is None:
            return self.error(100)
        self.reply(f'+UDNSRN: "{ip}"')
        self.ok()

    # sockets
    def _usocr(self, args: list[str]) -> None:
        protocol = int_arg(args, 0, 6, 17)
        if protocol != 6:
            return self.reply("ERROR")   # UDP is not emulated
        link = self.links.create()
        if link is None:
            return self.error(3)
        self.keepalive_on.discard(link.n)
        self.socket_error[link.n] = 0
        self.reply(f"+USOCR: {link.n}")
        self.ok()

    def _usoso(self, args: list[str]) -> None:
        link = self._socket(args)
        if link is None:
            return
        level, option = int_arg(args, 1, 0, 65535), int_arg(args, 2, 0, 65535)
        if (level, option) == (65535, 8):
            if int_arg(args, 3, 0, 1):
                self.keepalive_on.add(link.n)
            else:
                self.keepalive_on.discard(link.n)
        elif (level, option) == (6, 2):
            return self.error(4)         # SARA-R4: keepidle not supported
        self.ok()

    def _keepalive(self, n: int) -> Keepalive | None:
        idle, interval, count = KEEPALIVE
        return self.host_keepalive(n in self.keepalive_on, idle / 60, interval / 60, count)

    def _usoco(self, args: list[str]) -> None:
        link = self._socket(args, LinkState.CREATED)
        if link is None:
            return
        port = int_arg(args, 2, 1, 65535)
        if len(args) != 4 or int_arg(args, 3, 0, 1) != 1:
            return self.reply("ERROR")   # the blocking connect is not emulated
        if any(other.state is LinkState.CONNECTING for other in self.links.links.values()):
            return self.error(3)         # one asynchronous connect at a time
        self.ok()
        if self.bearer != "open":
            self.links.close(link)
            return self._connect_failed(link.n, ENETDOWN)
        ip = self.resolve(args[1])
        if ip is None or not self.allowed(ip):
            self.links.close(link)
            return self._connect_failed(link.n, EHOSTNOTFOUND if ip is None else ECONNREFUSED)
        self.links.connect(link, ip, port, self._keepalive(link.n))

    def _usowr(self, args: list[str]) -> None:
        link = self._socket(args, LinkState.OPEN)
        if link is None:
            return
        size = int_arg(args, 1, 1, MAX_SEND)
        if len(args) == 3:               # base syntax: the data in the command
            text = args[2]
            try:
                data = bytes.fromhex(text) if self.hex_mode else text.encode("latin-1")
            except ValueError:
                raise ArgError("not hex digits") from None
            if len(data) != size:
                raise ArgError("<length> does not match the data")
            return self._usowr_data(link, data)
        if len(args) != 2:
            raise ArgError("expected <socket>,<length>[,<data>]")
        self.expect_send_payload(link, size, lambda data: self._usowr_data(link, data))

    def _usowr_data(self, link: Link, data: bytes) -> None:
        if not self.links.is_open(link):
            return self.error(3)         # the socket closed while the payload came in
        self.reply(f"+USOWR: {link.n},{len(data)}")
        self.ok()
        self.transmit(link, data)

    def _usord(self, args: list[str]) -> None:
        link = self._socket(args, LinkState.OPEN, LinkState.PEER_CLOSED)
        if link is None:
            return
        limit = int_arg(args, 1, 0, MAX_READ)
        if limit == 0:
            self.reply(f"+USORD: {link.n},{len(link.rx)}")
            return self.ok()
        if not link.rx:
            self.reply(f'+USORD: {link.n},""')
            return self.ok()
        chunk = self.links.read(link, limit)
        body = chunk.hex().upper().encode() if self.hex_mode else chunk
        self.read_reply(f'\r\n+USORD: {link.n},{len(chunk)},"'.encode(), body, b'"\r\n')
        if link.rx:
            self.urc(f"+UUSORD: {link.n},{len(link.rx)}")   # after a partial read
        elif link.n in self.close_pending:
            self._uusocl(link)

    def _usocl(self, args: list[str]) -> None:
        link = self._socket(args, LinkState.CREATED, LinkState.CONNECTING, LinkState.OPEN,
                            LinkState.PEER_CLOSED)
        if link is None:
            return
        if len(args) < 2 or int_arg(args, 1, 0, 1) == 0:
            self.sync_close.add(link.n)   # OK once closed (link_closed)
        else:
            self.ok()                     # OK now, +UUSOCL once closed (link_closed)
        self.keepalive_on.discard(link.n)
        self.close_pending.discard(link.n)
        was = link.state
        self.links.close(link)   # an open socket: graceful, link_closed when it completed
        if was in (LinkState.CREATED, LinkState.PEER_CLOSED):   # closed now, no event
            self.link_closed(link)

    def _usoctl(self, args: list[str]) -> None:
        link = self._socket(args)
        if link is None:
            return
        param = int_arg(args, 1, 0, 11)
        value = {0: 6, 1: self.socket_error.get(link.n, 0),
                 10: TCP_STATE.get(link.state)}.get(param)
        if value is None:
            return self.error(4)
        self.reply(f"+USOCTL: {link.n},{param},{value}")
        self.ok()

    def _usoer(self, args: list[str]) -> None:
        self.reply(f"+USOER: {self.last_error}")
        self.ok()

    commands = {
        **NETWORK_COMMANDS,
        "+CCID": Command(run=_ccid),
        "+CFUN": Command(set=_cfun_set, read=Dialect.cfun_read),
        "+CGATT": Command(set=_cgatt_set, read=_cgatt_read),
        "+CGACT": Command(set=_cgact_set, read=_cgact_read),
        "+CGEREP": Command(set=_cgerep_set, read=_cgerep_read),
        "+UDCONF": Command(set=_udconf_set),
        "+UDNSRN": Command(set=_udnsrn),
        "+USOCR": Command(set=_usocr),
        "+USOSO": Command(set=_usoso),
        "+USOCO": Command(set=_usoco),
        "+USOWR": Command(set=_usowr),
        "+USORD": Command(set=_usord),
        "+USOCL": Command(set=_usocl),
        "+USOCTL": Command(set=_usoctl),
        "+USOER": Command(run=_usoer),
    }
