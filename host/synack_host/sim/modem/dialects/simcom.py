"""The TCP link commands SIMCom's modems share (the SIM7600 and the SIM800 manuals word
them alike): ``AT+CIPOPEN``/``AT+CIPSTART``'s arguments and link check, ``AT+CIPSEND``,
``AT+CIPRXGET`` in manual receive mode and ``AT+CIPCLOSE``. What differs is set by the
dialect's class attributes:

- ``max_send``, ``max_read``: the largest send and (binary) read; a HEX read is half.
- ``ok_first``: the SIM7600 answers OK at once and words the outcome in a URC later
  (``+CIPSEND: ...``, ``+CIPCLOSE: <n>,0``); the SIM800's outcome (``<n>, SEND OK``,
  ``<n>, CLOSE OK``) is the command's final result, with no OK before.
- ``no_data``: what a read of a link with nothing held answers (None: a zero-length
  read), ``read_needs_link``: a read of a link that is not there or not ready is ERROR.
- ``close_refused``: AT+CIPCLOSE's answer for a link not open (``{link}`` its number).
"""

from __future__ import annotations

from ..commands import ArgError, int_arg
from ..links import Link, LinkState
from .base import Dialect


class SIMComLinks(Dialect):
    """A Dialect with SIMCom's link commands; see the module doc for its settings."""

    max_send = 1500
    max_read = 1500
    ok_first = True
    no_data: tuple[str, ...] | None = None
    read_needs_link = False
    close_refused: tuple[str, ...] = ("ERROR",)

    def _link_number(self, args: list[str], i: int = 0) -> int:
        return int_arg(args, i, 0, len(self.link_ids) - 1)

    def open_link(self, args: list[str], refuse: bool, busy: str) -> tuple[int, int] | None:
        """``<n>,"TCP",<host>,<port>``: ERROR for UDP or when ``refuse``; else OK, and
        (n, port) when link n is free (one the peer closed is forgotten with its data),
        ``busy`` (``{link}`` its number) as a URC when it is not."""
        n = self._link_number(args)
        port = int_arg(args, 3, 1, 65535)
        if len(args) != 4 or args[1].upper() not in ("TCP", "UDP"):
            raise ArgError("expected <n>,\"TCP\",<host>,<port>")
        if args[1].upper() == "UDP" or refuse:
            self.reply("ERROR")          # UDP is not emulated
            return None
        self.ok()
        old = self.links.get(n)
        if old is not None and old.state is not LinkState.PEER_CLOSED:
            self.urc(busy.format(link=n))
            return None
        if old is not None:
            self.links.close(old)        # a reopened link forgets the old data
        return n, port

    def cipsend(self, args: list[str]) -> None:
        # Bad parameters and links that are not open give a plain ERROR in every CMEE
        # mode: that is what the modems answer here.
        try:
            n = self._link_number(args)
            size = int_arg(args, 1, 1, self.max_send)
        except ArgError:
            return self.reply("ERROR")
        link = self.links.get(n)
        if len(args) != 2 or link is None or link.state is not LinkState.OPEN:
            return self.reply("ERROR")
        self.expect_send_payload(link, size, lambda data: self._cipsend_data(link, data))

    def _cipsend_data(self, link: Link, data: bytes) -> None:
        if not self.links.is_open(link):
            return self.reply("ERROR")   # the link closed while the payload came in
        if self.ok_first:
            self.ok()
        self.transmit(link, data)        # its outcome once it went (link_sent)

    def ciprxget_set(self, args: list[str]) -> None:
        mode = int_arg(args, 0, 0, 4)
        if mode == 1:
            return self.ok()
        if mode == 0:
            return self.reply("ERROR")   # automatic (push) receive is not emulated
        n = self._link_number(args, 1)
        link = self.links.get(n)
        if self.read_needs_link and (
                link is None or link.state in (LinkState.CONNECTING, LinkState.CLOSING)):
            return self.reply("ERROR")
        if mode == 4:
            self.reply(f"+CIPRXGET: 4,{n},{len(link.rx) if link else 0}")
            return self.ok()
        limit = int_arg(args, 2, 1, self.max_read if mode == 2 else self.max_read // 2)
        if self.no_data is not None and (link is None or not link.rx):
            return self.reply(*self.no_data)
        assert link is not None
        chunk = self.links.read(link, limit)
        body = chunk if mode == 2 else chunk.hex().upper().encode()
        head = f"\r\n+CIPRXGET: {mode},{n},{len(chunk)},{len(link.rx)}\r\n"
        self.read_reply(head.encode(), body)   # the OK's CR LF ends the payload

    def ciprxget_read(self, args: list[str]) -> None:
        self.reply("+CIPRXGET: 1")
        self.ok()

    def cipclose_set(self, args: list[str]) -> None:
        n = self._link_number(args)
        link = self.links.get(n)
        if link is None or link.state in (LinkState.PEER_CLOSED, LinkState.CLOSING):
            if link is not None and link.state is LinkState.PEER_CLOSED:
                self.links.close(link)   # its unread data goes with it
            return self.reply(*(line.format(link=n) for line in self.close_refused))
        if self.ok_first:
            self.ok()
        self.links.close(link)           # its outcome when done (link_closed)
