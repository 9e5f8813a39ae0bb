"""The 3GPP 27.007 side every dialect shares: the SIM and its PIN, network registration
(+CREG/+CGREG/+CEREG with their URC modes), signal (+CSQ), operator (+COPS?), PDP
contexts (+CGDCONT), the clock (+CCLK), identity (ATI, +CGMM, +CGMR, +CGSN in the
dialect's words: ``Identity``), the bearer's up/down state, name resolution, and the
faults of the radio: coverage lost (``drop_registration``) and the bearer dropping
(``network_lost``).

Names resolve from IPv4 literals, ``localhost`` and the ``hosts`` map, never from the
system resolver: a test must not depend on the machine's DNS. Connections go to
127.0.0.0/8 only, unless ``allow`` adds networks (test hosts in network namespaces).
"""

from __future__ import annotations

import calendar
import ipaddress
import re
import time
from dataclasses import dataclass

from .commands import ArgError, Command, int_arg
from .frontend import FRONTEND_COMMANDS, Modem

IMEI = "860000000000001"
ICCID = "89882000000000000017"       # a test number, not any operator's
OPERATOR = "synack virtual"
REG_STAT = {"home": 1, "roaming": 5, "searching": 2, "denied": 3, "none": 0}
REGISTERED = (REG_STAT["home"], REG_STAT["roaming"])
SIM_STATES = ("ready", "absent", "pin")
PIN = "1234"
LOCAL_IP = "10.64.0.2"               # the address the network gives the bearer
REGISTRATION_COMMANDS = ("+CREG", "+CGREG", "+CEREG")
BEARER_STATES = ("closed", "opening", "open")


@dataclass(frozen=True)
class Identity:
    """How a dialect introduces itself. ``ati`` lines may use ``{model}`` and ``{imei}``;
    ``revision`` is the whole ``AT+CGMR`` line (some models prefix it, some do not)."""
    model: str
    revision: str
    ati: tuple[str, ...]


def cclk_text(unix_seconds: float, zone_quarters: int) -> str:
    """27.007 ``yy/MM/dd,hh:mm:ss±zz``: local time at ``zone_quarters`` quarter hours
    from UTC."""
    t = time.gmtime(int(unix_seconds) + zone_quarters * 900)
    sign = "-" if zone_quarters < 0 else "+"
    return (f"{t.tm_year % 100:02d}/{t.tm_mon:02d}/{t.tm_mday:02d},"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}{sign}{abs(zone_quarters):02d}")


CCLK_FORMAT = re.compile(r"(\d\d)/(\d\d)/(\d\d),(\d\d):(\d\d):(\d\d)([+-])(\d\d)$")


class CellularModem(Modem):
    """The front end plus the network state. Dialects set ``identity`` and hook
    ``bearer_lost`` (what they say when the bearer drops)."""

    identity = Identity(model="synack virtual modem", revision="synack-virtual",
                        ati=("Model: {model}", "IMEI: {imei}"))

    def __init__(self, sim: str = "ready", registration: str = "home", rssi: int = 20,
                 pdp_fail: bool = False, hosts: dict[str, str] | None = None,
                 allow: tuple[str, ...] = (), clock_zone: int = 0, **options):
        if sim not in SIM_STATES:
            raise ValueError(f"sim must be one of {', '.join(SIM_STATES)}")
        if registration not in REG_STAT:
            raise ValueError(f"registration must be one of {', '.join(REG_STAT)}")
        if not (0 <= rssi <= 31 or rssi == 99):
            raise ValueError("rssi must be 0..31 or 99")
        if not -96 <= clock_zone <= 96:
            raise ValueError("clock zone: -96..96 quarter hours")
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
        self.pdp = {1: ("IP", "")}
        self.reg_lost_until: float | None = None   # drop-registration fault: until when
        # AT+CCLK: the host's clock (UTC) plus an offset, reported in a time zone (quarter
        # hours); AT+CCLK= sets both. Kept across reboots, as network time would be.
        self.clock_zone = clock_zone
        self.clock_offset_s = 0.0
        super().__init__(**options)

    # -- power, status, faults -------------------------------------------------------------
    def reset_state(self) -> None:
        super().reset_state()
        self.sim = self.sim_config
        self.bearer = "closed"       # one of BEARER_STATES
        self.reg_mode = dict.fromkeys(REGISTRATION_COMMANDS, 0)

    def cpin_urcs(self) -> list[str]:
        """What a booting modem says of its SIM (``+CPIN: READY`` ...)."""
        return {"ready": ["+CPIN: READY"], "pin": ["+CPIN: SIM PIN"]}.get(self.sim, [])

    def status(self) -> dict:
        return {**super().status(), "registration": self.registration_stat(),
                "bearer": self.bearer}

    def network_lost(self) -> None:
        """The bearer drops; what goes with it and what the host hears is the dialect's
        (``bearer_lost``). Nothing happens while the bearer is closed."""
        if self.bearer == "closed":
            return
        self.bearer = "closed"
        self.bearer_lost()

    def bearer_lost(self) -> None:
        """Hook: the bearer has just dropped (links, sessions, the URC)."""

    def drop_registration(self, seconds: float | None) -> None:
        """Out of coverage: searching, the bearer and its links lost silently; back after
        ``seconds`` (None: at restore_registration)."""
        self.reg_lost_until = float("inf") if seconds is None else time.monotonic() + seconds
        self.network_lost()
        self._registration_urcs()
        if seconds is not None:
            self.later(seconds, self._registration_back)

    def restore_registration(self) -> None:
        self.reg_lost_until = None
        self._registration_urcs()

    def heal(self) -> None:
        super().heal()
        if self.reg_lost_until is not None:
            self.restore_registration()

    def _registration_back(self) -> None:
        if self.reg_lost_until is not None and time.monotonic() >= self.reg_lost_until:
            self.restore_registration()

    def _registration_urcs(self) -> None:
        stat = self.registration_stat()
        self.urc(*(f"{name}: {stat}" for name, n in self.reg_mode.items() if n))

    # -- what the dialects ask -----------------------------------------------------------
    def registration_stat(self) -> int:
        """27.007 ``<stat>``: 0 without a ready SIM, 2 while coverage is lost."""
        if self.sim != "ready":
            return 0
        lost = self.reg_lost_until is not None and time.monotonic() < self.reg_lost_until
        return REG_STAT["searching"] if lost else self.reg

    def bearer_possible(self) -> bool:
        """Whether activating the bearer (AT+NETOPEN ...) would succeed now."""
        return self.registration_stat() in REGISTERED and not self.pdp_fail

    def resolve(self, name: str) -> str | None:
        """``name`` as an IPv4 address, or None (see the module's docstring)."""
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError:
            return self.hosts.get(name.lower())

    def allowed(self, ip: str) -> bool:
        """Whether links may connect to ``ip`` (127.0.0.0/8 and ``allow``)."""
        return any(ipaddress.ip_address(ip) in net for net in self.allow)

    def reply_iccid(self, prefix: str) -> None:
        """The SIM's ICCID after ``prefix`` (each dialect has its own command for it)."""
        if self.sim == "absent":
            return self.error(10)
        if self.sim != "ready":
            return self.error(11)          # SIM PIN required
        self.reply(prefix + ICCID)
        self.ok()


# -- commands ---------------------------------------------------------------------------
def _ati(modem: CellularModem, args: list[str]) -> None:
    ident = modem.identity
    modem.reply(*(line.format(model=ident.model, imei=IMEI) for line in ident.ati))
    modem.ok()


def _cgmm(modem: CellularModem, args: list[str]) -> None:
    modem.reply(modem.identity.model)
    modem.ok()


def _cgmr(modem: CellularModem, args: list[str]) -> None:
    modem.reply(modem.identity.revision)
    modem.ok()


def _cgsn(modem: CellularModem, args: list[str]) -> None:
    modem.reply(IMEI)
    modem.ok()


def _cops_read(modem: CellularModem, args: list[str]) -> None:
    """27.007 ``+COPS: <mode>[,<format>,<oper>,<AcT>]``: automatic mode; the operator
    (long alphanumeric, LTE = AcT 7) only while registered."""
    if modem.registration_stat() in REGISTERED:
        modem.reply(f'+COPS: 0,0,"{OPERATOR}",7')
    else:
        modem.reply("+COPS: 0")
    modem.ok()


def _cpin_read(modem: CellularModem, args: list[str]) -> None:
    if modem.sim == "absent":
        return modem.error(10)
    modem.reply("+CPIN: " + ("READY" if modem.sim == "ready" else "SIM PIN"))
    modem.ok()


def _cpin_set(modem: CellularModem, args: list[str]) -> None:
    if modem.sim == "absent":
        return modem.error(10)
    if modem.sim == "ready":
        return modem.error(3)
    if args[:1] != [PIN]:
        return modem.error(16)
    modem.sim = "ready"
    modem.ok()
    modem.urc("+CPIN: READY")


def accept_ok(modem: CellularModem, args: list[str]) -> None:
    """OK, whatever the arguments: a setting the virtual modem takes but does not model."""
    modem.ok()


def _csq(modem: CellularModem, args: list[str]) -> None:
    modem.reply(f"+CSQ: {modem.rssi if modem.sim == 'ready' else 99},99")
    modem.ok()


def _registration(name: str) -> Command:
    """+CREG / +CGREG / +CEREG: ``<n>`` is stored and reported; with ``<n>`` >= 1 a change
    of state (only by the drop-registration fault) is reported as ``+CREG: <stat>``."""
    def set_mode(modem: CellularModem, args: list[str]) -> None:
        modem.reg_mode[name] = int_arg(args, 0, 0, 2)
        modem.ok()

    def read(modem: CellularModem, args: list[str]) -> None:
        modem.reply(f"{name}: {modem.reg_mode[name]},{modem.registration_stat()}")
        modem.ok()
    return Command(set=set_mode, read=read)


def _cgdcont_set(modem: CellularModem, args: list[str]) -> None:
    cid = int_arg(args, 0, 1, 15)
    if len(args) < 3 or args[1].upper() not in ("IP", "IPV6", "IPV4V6"):
        raise ArgError("expected <cid>,<type>,<apn>")
    modem.pdp[cid] = (args[1].upper(), args[2])
    modem.ok()


def _cgdcont_read(modem: CellularModem, args: list[str]) -> None:
    modem.reply(*(f'+CGDCONT: {cid},"{kind}","{apn}","0.0.0.0",0,0'
                  for cid, (kind, apn) in sorted(modem.pdp.items())))
    modem.ok()


def _cclk_read(modem: CellularModem, args: list[str]) -> None:
    modem.reply(f'+CCLK: "{cclk_text(time.time() + modem.clock_offset_s, modem.clock_zone)}"')
    modem.ok()


def _cclk_set(modem: CellularModem, args: list[str]) -> None:
    """``AT+CCLK="yy/MM/dd,hh:mm:ss±zz"`` sets the clock (kept as an offset from the
    host's) and its zone; anything else is CME error 50."""
    m = CCLK_FORMAT.match(args[0]) if len(args) == 1 else None
    if m is None:
        raise ArgError("expected \"yy/MM/dd,hh:mm:ss±zz\"")
    yy, mo, d, h, mi, s, sign, zz = m.groups()
    try:
        local = calendar.timegm(time.strptime(f"20{yy}-{mo}-{d} {h}:{mi}:{s}",
                                              "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        raise ArgError("no such date") from None
    zone = int(zz) * (-1 if sign == "-" else 1)
    if abs(zone) > 96:
        raise ArgError("time zone beyond 24 h")
    modem.clock_zone = zone
    modem.clock_offset_s = local - zone * 900 - time.time()
    modem.ok()


# The front end's commands plus 27.007's, answered alike by every dialect.
NETWORK_COMMANDS = {
    **FRONTEND_COMMANDS,
    "I": Command(run=_ati),
    "+CGMM": Command(run=_cgmm),
    "+CGMR": Command(run=_cgmr),
    "+CGSN": Command(run=_cgsn),
    "+COPS": Command(read=_cops_read),
    "+CPIN": Command(read=_cpin_read, set=_cpin_set, test=accept_ok),
    "+CSQ": Command(run=_csq),
    **{name: _registration(name) for name in REGISTRATION_COMMANDS},
    "+CGDCONT": Command(set=_cgdcont_set, read=_cgdcont_read),
    "+CCLK": Command(read=_cclk_read, set=_cclk_set),
}
