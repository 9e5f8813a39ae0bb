"""The virtual modem's faults: what ``synack sim fault PATH ...`` (the control socket,
sim/control.py) can do to a running modem, on every dialect.

=======================  ===============================================================
``reboot``               power-cycle: every link lost silently, boot URCs (``RDY`` ...)
``network-lost``         the bearer drops (SIM7600: ``+CIPEVENT: NETWORK CLOSED ...``)
``delay S [N]``          the next N commands (default 1) are answered S seconds late
``garbage TEXT``         TEXT (``\\xNN`` escapes allowed) sent at the next line boundary
``drop-registration``    ``[S]``: not registered (searching), bearer and links lost; back
                         after S seconds, or at ``restore-registration``
``close-link N [R]``     link N closed by the network: FIN to the peer, the dialect's
                         close URC (SIM7600 ``+IPCLOSE: N,R``)
``lose-urc [N]``         the next N data-arrival URCs are never sent
``cme-error P C [N]``    the next N commands starting with P answer CME error C
``lose-ok [N]``          the next N final ``OK`` are never sent
``send-fail [N]``        the next N sends are accepted but never sent; the link ends
                         (SIM7600: ``+CIPSEND: <link>,<n>,-1``, ``+IPCLOSE: <link>,2``)
``truncate-read [N]``    the next N socket-read replies are cut short, no final line
``ipclose-during-send``  ``[R]``: the next send's link closes while its payload comes in
``malformed-urc``        ``[TEXT]``: a malformed URC (default: the dialect's, SIM7600
                         ``+IPCLOSE: 0,`` and ``+CIPRXGET: 1,O``)
``heal``                 every fault still pending is forgotten, registration restored
``status``               JSON: registration, bearer, links, armed faults (``pending``)
=======================  ===============================================================

A dialect words what these faults say through its ``Wording`` (the defaults are neutral,
so a new dialect gets every fault); it may add faults of its own (SIM7600: SSL).
``RunningModem`` (launch.py) wraps the requests in methods.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol

from ..control import Fault, FaultError, number, unescape


@dataclass
class CmeFault:
    """The cme-error fault: the next ``count`` commands starting with ``prefix``."""
    prefix: str
    code: int
    count: int


@dataclass
class Armed:
    """Faults armed through the control socket and not carried out yet. The layer that
    carries one out takes it from here (``take``), so ``pending`` and ``clear`` see all."""
    drop_data_urcs: bool = False     # --drop-data-urcs: every data URC is lost, for ever
    urcs_to_lose: float = 0
    oks_to_lose: int = 0
    sends_to_fail: int = 0
    reads_to_truncate: int = 0
    send_interruptions: list[int] = field(default_factory=list)   # close reasons
    cme: list[CmeFault] = field(default_factory=list)
    delay_s: float = 0.0
    delay_count: int = 0

    def __post_init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget every armed fault (``heal``); --drop-data-urcs stays."""
        self.urcs_to_lose = float("inf") if self.drop_data_urcs else 0
        self.oks_to_lose = self.sends_to_fail = self.reads_to_truncate = 0
        self.send_interruptions.clear()
        self.cme.clear()
        self.delay_count = 0

    def take(self, name: str) -> bool:
        """Carry out one of the counted faults (``urcs_to_lose`` ...): True if armed."""
        left = getattr(self, name)
        if left:
            setattr(self, name, left - 1)
        return bool(left)

    def cme_for(self, command: str) -> int | None:
        """The CME error code armed for ``command`` (upper case), taking it; else None."""
        for fault in self.cme:
            if command.startswith(fault.prefix):
                fault.count -= 1
                if not fault.count:
                    self.cme.remove(fault)
                return fault.code
        return None

    def pending(self) -> dict[str, int]:
        """Armed faults by fault name, those with something left (``status``)."""
        pending = {
            "cme-error": sum(f.count for f in self.cme),
            "lose-ok": self.oks_to_lose,
            "send-fail": self.sends_to_fail,
            "truncate-read": self.reads_to_truncate,
            "ipclose-during-send": len(self.send_interruptions),
            "lose-urc": 0 if self.drop_data_urcs else int(self.urcs_to_lose),
            "delay": self.delay_count,
        }
        return {name: n for name, n in pending.items() if n}


@dataclass(frozen=True)
class Wording:
    """A dialect's words in the faults' help and answers, and the URCs they send."""
    open: str = "open"                        # the command that opens a link, "AT+CIPOPEN"
    send: str = "send"                        # e.g. "AT+CIPSEND"
    send_failed: str = "reported as failed"   # what the host hears of a lost send
    read: str = "socket"                      # e.g. "AT+CIPRXGET"
    read_forms: str = "socket-read"           # the forms truncate-read cuts, "AT+CIPRXGET=2/3"
    data_urc: str = "data-arrival"            # what lose-urc loses, e.g. "+CIPRXGET: 1"
    closed_urc_name: str = "a close URC"      # e.g. "+IPCLOSE"
    closed_urc: str = "link {link} closed ({reason})"   # the URC of a link the network ends
    malformed_urcs: tuple[str, ...] = ("+CME ERROR:", "+CSQ: 1O,99")

    def closed(self, link: int | str, reason: int) -> str:
        return self.closed_urc.format(link=link, reason=reason)


class FaultTarget(Protocol):
    """What the faults do to a modem (dialects/base.py's ``Dialect`` is one)."""
    armed: Armed
    wording: Wording
    link_ids: range

    def power_on(self) -> None: ...
    def network_lost(self) -> None: ...
    def inject(self, data: bytes) -> None: ...
    def urc(self, *lines: str) -> None: ...
    def heal(self) -> None: ...
    def status(self) -> dict: ...
    def drop_registration(self, seconds: float | None) -> None: ...
    def restore_registration(self) -> None: ...
    def close_link(self, n: int, reason: int) -> None: ...


def _count(args: list[str], i: int) -> int:
    return int(number(args, i, "count", default=1, lo=1, hi=1000))


def _reboot(modem: FaultTarget, args: list[str]) -> str:
    modem.power_on()
    return "rebooting"


def _network_lost(modem: FaultTarget, args: list[str]) -> str:
    modem.network_lost()
    return "network lost"


def _delay(modem: FaultTarget, args: list[str]) -> str:
    seconds = number(args, 0, "delay in seconds", lo=0.0, hi=600.0)
    count = int(number(args, 1, "command count", default=1, lo=1, hi=1000))
    modem.armed.delay_s, modem.armed.delay_count = seconds, count
    return f"the next {count} command(s) answered {seconds:g} s late"


def _garbage(modem: FaultTarget, args: list[str]) -> str:
    if not args:
        raise FaultError("garbage needs the TEXT to send")
    data = unescape(" ".join(args))
    modem.inject(data)
    return f"{len(data)} byte(s) queued"


def _heal(modem: FaultTarget, args: list[str]) -> str:
    modem.heal()
    return "no fault pending"


def _status(modem: FaultTarget, args: list[str]) -> str:
    return json.dumps(modem.status(), sort_keys=True)


def _drop_registration(modem: FaultTarget, args: list[str]) -> str:
    seconds = number(args, 0, "seconds", lo=0.0) if args else None
    modem.drop_registration(seconds)
    return "registration lost" + (f" for {seconds:g} s" if seconds is not None else "")


def _restore_registration(modem: FaultTarget, args: list[str]) -> str:
    modem.restore_registration()
    return "registered"


def _close_link(modem: FaultTarget, args: list[str]) -> str:
    ids = modem.link_ids
    n = int(number(args, 0, "link", lo=ids.start, hi=ids.stop - 1))
    reason = int(number(args, 1, "reason", default=1, lo=0, hi=2))
    modem.close_link(n, reason)
    return f"link {n} closed ({modem.wording.closed(n, reason)})"


def _lose_urc(modem: FaultTarget, args: list[str]) -> str:
    count = int(number(args, 0, "count", default=1, lo=1, hi=1000))
    modem.armed.urcs_to_lose = count
    return f"the next {count} data URC(s) will be lost"


def _cme_error(modem: FaultTarget, args: list[str]) -> str:
    if not args or not args[0].upper().startswith("AT"):
        raise FaultError("the command PREFIX (e.g. AT+CIPOPEN) is missing")
    code = number(args, 1, "CME error code", lo=0, hi=65535)
    if code != int(code):
        raise FaultError(f"CME error code must be a whole number, got {args[1]!r}")
    count = _count(args, 2)
    modem.armed.cme.append(CmeFault(args[0].upper(), int(code), count))
    return (f"the next {count} command(s) starting with {args[0].upper()} answered "
            f"with CME error {int(code)}")


def _lose_ok(modem: FaultTarget, args: list[str]) -> str:
    count = _count(args, 0)
    modem.armed.oks_to_lose = count
    return f"the next {count} final OK(s) will be lost"


def _send_fail(modem: FaultTarget, args: list[str]) -> str:
    count = _count(args, 0)
    modem.armed.sends_to_fail = count
    return f"the next {count} {modem.wording.send}(s) will fail: {modem.wording.send_failed}"


def _truncate_read(modem: FaultTarget, args: list[str]) -> str:
    count = _count(args, 0)
    modem.armed.reads_to_truncate = count
    return f"the next {count} {modem.wording.read} read(s) will be cut short"


def _ipclose_during_send(modem: FaultTarget, args: list[str]) -> str:
    reason = int(number(args, 0, "reason", default=1, lo=0, hi=2))
    modem.armed.send_interruptions.append(reason)
    return (f"the next {modem.wording.send} loses its link while the payload comes in "
            f"({modem.wording.closed('<link>', reason)})")


def _malformed_urc(modem: FaultTarget, args: list[str]) -> str:
    lines = ([unescape(" ".join(args)).decode("latin-1")] if args
             else list(modem.wording.malformed_urcs))
    if any(c in line for line in lines for c in "\r\n"):
        raise FaultError("a URC is one line: no CR or LF in TEXT (use 'garbage' for that)")
    modem.urc(*lines)
    return "queued: " + ", ".join(repr(line) for line in lines)


def fault_table(w: Wording) -> dict[str, Fault]:
    """Every modem fault, its help in the dialect's words ``w`` (the order of ``help``)."""
    return {
        "reboot": Fault(_reboot, "reboot", "power-cycle the modem: links lost, boot URCs"),
        "network-lost": Fault(_network_lost, "network-lost", "the bearer drops"),
        "delay": Fault(_delay, "delay SECONDS [COUNT]",
                       "answer the next COUNT commands SECONDS late"),
        "garbage": Fault(_garbage, "garbage TEXT",
                         "send TEXT (\\xNN escapes) at the next line boundary"),
        "heal": Fault(_heal, "heal", "forget every pending fault"),
        "status": Fault(_status, "status", "registration, bearer and links as JSON"),
        "drop-registration": Fault(_drop_registration, "drop-registration [SECONDS]",
                                   "out of coverage: searching, bearer and links lost"),
        "restore-registration": Fault(_restore_registration, "restore-registration",
                                      "registered again"),
        "close-link": Fault(_close_link, "close-link LINK [REASON]",
                            f"the network closes a link: FIN to the peer, "
                            f"{w.closed_urc_name} to the host"),
        "lose-urc": Fault(_lose_urc, "lose-urc [COUNT]",
                          f"the next COUNT {w.data_urc} URCs are never sent"),
        "cme-error": Fault(_cme_error, "cme-error PREFIX CODE [COUNT]",
                           "the next COUNT commands starting with PREFIX answer "
                           "+CME ERROR: CODE"),
        "lose-ok": Fault(_lose_ok, "lose-ok [COUNT]", "the next COUNT final OKs are never sent"),
        "send-fail": Fault(_send_fail, "send-fail [COUNT]",
                           f"the next COUNT sends: {w.send_failed}, {w.closed('<link>', 2)}"),
        "truncate-read": Fault(_truncate_read, "truncate-read [COUNT]",
                               f"the next COUNT {w.read_forms} payloads are cut short"),
        "ipclose-during-send": Fault(_ipclose_during_send, "ipclose-during-send [REASON]",
                                     f"the next {w.send}'s link closes during its payload"),
        "malformed-urc": Fault(_malformed_urc, "malformed-urc [TEXT]",
                               "a malformed URC line (default: "
                               + ", ".join(repr(line) for line in w.malformed_urcs) + ")"),
    }
