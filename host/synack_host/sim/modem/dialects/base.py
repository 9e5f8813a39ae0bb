"""What every dialect shares: the network (network.py), the link stack (links.py), and
the link faults, applied here on the way between the two so that a dialect module only
formats its commands and URCs.

A dialect subclasses ``Dialect``, sets ``link_ids``, ``identity``, ``wording`` (how the
faults word its commands and URCs) and ``commands``, and words the link events: the URCs
of ``link_connected``, ``link_connect_failed`` and ``data_arrived_urc`` by templates
(``connected_words``, ``connect_failed_words`` with its ``connect_errors``,
``data_words``) or by overriding them; ``link_closed`` and ``link_sent`` by overriding
(``link_peer_closed`` has a default: the ``wording``'s close URC).
Its command handlers use ``expect_send_payload``, ``transmit`` and ``read_reply``, which
carry out the ipclose-during-send, send-fail and truncate-read faults; lose-urc is
carried out before ``data_arrived_urc``. Its fault table is made from its ``wording``
plus its ``extra_faults`` when the class is defined.

What several dialects do alike, worded by the caller: ``open_bearer_later`` (a bearer
that comes up after a moment), ``host_keepalive`` (a keepalive setting as the host
socket's), and the handlers ``cfun_set`` (``AT+CFUN=1,1`` reboots) and ``cfun_read``.
"""

from __future__ import annotations

from collections.abc import Callable

from ...control import Fault, FaultError
from ..commands import int_arg
from ..faults import Armed, Wording, fault_table
from ..links import Keepalive, Link, LinkStack, LinkState
from ..network import CellularModem


class Dialect(CellularModem):
    """A virtual modem of one AT dialect: ``Dialect(sim="ready", ...).start()``."""

    link_ids = range(10)
    wording = Wording()
    # the link events' URCs: "{link}" the link's number, "{err}" connect_errors[timed
    # out] (refused or not allowed, timed out), "{size}" the bytes the link holds
    connected_words = ""
    connect_failed_words = ""
    connect_errors = (0, 0)
    data_words = ""
    extra_faults: dict[str, Fault] = {}
    # link_sent once the peer acknowledged a send (SIM800 SEND OK), not once the kernel
    # took it (links.LinkStack's confirm_acked)
    confirm_acked = False
    fault_table = fault_table(Wording())

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        # every fault, in this dialect's words: a new dialect gets them all
        cls.fault_table = {**fault_table(cls.wording), **cls.extra_faults}

    def __init__(self, drop_data_urcs: bool = False, connect_timeout: float = 20.0,
                 keepalive_minute: float = 60.0, **options):
        if connect_timeout <= 0:
            raise ValueError("connect timeout must be positive")
        if keepalive_minute <= 0:
            raise ValueError("keepalive minute must be positive")
        self.connect_timeout = connect_timeout
        self.keepalive_minute = keepalive_minute   # tests shorten the keepalive unit
        self.links = LinkStack(self, self.link_ids, connect_timeout, self.confirm_acked)
        super().__init__(**options)
        # data-arrival URCs to swallow: every one (--drop-data-urcs) or a few (lose-urc)
        self.armed = Armed(drop_data_urcs=drop_data_urcs)

    # -- power, network, status ----------------------------------------------------------
    def reset_state(self) -> None:
        super().reset_state()
        self.links.drop_all(abandon=True)

    def bearer_lost(self) -> None:
        """Every link gone without a word to its peer."""
        super().bearer_lost()
        self.links.drop_all(abandon=True)

    def status(self) -> dict:
        return {**super().status(), "links": self.links.status()}

    def close(self) -> None:
        super().close()
        self.links.close_abandoned()

    def keepalive_seconds(self, minutes: float, per_minute: int = 1) -> int:
        """A dialect's keepalive minutes (``per_minute`` 60: seconds) as host seconds (at
        least 1)."""
        return max(1, round(minutes * (self.keepalive_minute / per_minute)))

    def host_keepalive(self, on: int | bool, idle: float, interval: float, count: int,
                       per_minute: int = 1) -> Keepalive | None:
        """A dialect's keepalive setting (``idle`` and ``interval`` in minutes, or in
        seconds with ``per_minute`` 60) as the host socket's, for links opened after
        it; None when it is off."""
        if not on:
            return None
        return Keepalive(idle_s=self.keepalive_seconds(idle, per_minute),
                         interval_s=self.keepalive_seconds(interval, per_minute), count=count)

    def open_bearer_later(self, delay_s: float, answer: Callable[[bool], None]) -> None:
        """The bearer opening now and up (or not: ``bearer_possible``) ``delay_s`` later,
        when ``answer(up)`` words it; nothing if it was closed meanwhile."""
        self.bearer = "opening"

        def done() -> None:
            if self.bearer != "opening":
                return
            up = self.bearer_possible()
            self.bearer = "open" if up else "closed"
            answer(up)
        self.later(delay_s, done)

    # -- the link faults -----------------------------------------------------------------
    def close_link(self, n: int, reason: int) -> None:
        """The network ends link ``n``: its peer gets our FIN, the host the close URC."""
        link = self.links.get(n)
        if link is None or link.state is not LinkState.OPEN:
            raise FaultError(f"link {n} is not open (links: {self.status()['links']})")
        self.links.end(link, reason)

    def expect_send_payload(self, link: Link, size: int, done: Callable[[bytes], None]) -> None:
        """The prompt, then ``size`` payload bytes for ``done``. ipclose-during-send: the
        network ends the link while the payload comes in (its URC waits for the end of
        the payload like every URC)."""
        self.expect_payload(size, done)
        if self.armed.send_interruptions:
            self.links.end(link, self.armed.send_interruptions.pop(0))

    def transmit(self, link: Link, data: bytes, confirm: bool = True) -> None:
        """Send ``data`` on an open link; ``link_sent`` tells its outcome unless not
        ``confirm`` (a send the dialect answered already). send-fail: accepted, never
        sent, and the link ends as after a sending timeout; the peer hears nothing, as
        when the radio path stops carrying the data."""
        if self.armed.take("sends_to_fail"):
            return self.links.send_lost(link, len(data), confirm)
        self.links.send(link, data, confirm)

    def read_reply(self, head: bytes, body: bytes, tail: bytes = b"") -> None:
        """A read command's answer: ``head``, the data, ``tail``, OK. truncate-read: the
        head announces every byte, half of them come, then nothing (no tail, no OK); the
        rest is lost, as on a UART that dropped it."""
        if self.armed.take("reads_to_truncate"):
            return self.send(head + body[:len(body) // 2])
        self.send(head + body + tail)
        self.ok()

    # -- commands several dialects answer alike ------------------------------------------
    def cfun_set(self, args: list[str]) -> None:
        """``AT+CFUN=<fun>[,<rst>]``: OK; ``1,1`` reboots, other levels are taken."""
        fun = int_arg(args, 0, 0, 4)
        reset = int_arg(args, 1, 0, 1) if len(args) > 1 else 0
        self.ok()
        if fun == 1 and reset:
            self.power_on()

    def cfun_read(self, args: list[str]) -> None:
        self.reply("+CFUN: 1")
        self.ok()

    # -- link events (links.LinkOwner) ---------------------------------------------------
    def link_data(self, link: Link) -> None:
        if self.armed.take("urcs_to_lose"):
            return
        self.data_arrived_urc(link)

    def link_peer_closed(self, link: Link, reason: int) -> None:
        self.urc(self.wording.closed(link.n, reason))

    def data_arrived_urc(self, link: Link) -> None:
        self.urc(self.data_words.format(link=link.n, size=len(link.rx)))

    def link_connected(self, link: Link) -> None:
        self.urc(self.connected_words.format(link=link.n))

    def link_connect_failed(self, link: Link, timed_out: bool) -> None:
        err = self.connect_errors[timed_out]
        self.urc(self.connect_failed_words.format(link=link.n, err=err))

    def link_closed(self, link: Link) -> None:
        raise NotImplementedError

    def link_sent(self, link: Link, size: int, ok: bool) -> None:
        raise NotImplementedError
