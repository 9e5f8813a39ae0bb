"""The device clock, set from the network as a phone does, for TLS certificate dates.

A board boots with its clock at the port's epoch (2000-01-01 on ESP32), and a
certificate checked against that date is "not yet valid". So before the first TLS
handshake the clock is set from the network:

    from synack import clock
    clock.sync_modem(modem)                      # the modem's network time (AT+CCLK?)
    clock.sync_http("http://example.com/", Client())  # or a plain request's Date header
    clock.is_set()                               # True once it reads 2024 or later

``synack.tls.wrap`` refuses to start a handshake while ``is_set()`` is False
(``synack.tls.ClockNotSet``), rather than failing later with a confusing "expired" or
"not yet valid".

Time here is seconds since 1970-01-01 UTC (``now()``), on every port whatever its own
epoch. ``set_time(t)`` sets the board's RTC (``machine.RTC().datetime``) where there is
one, which is the clock mbedTLS checks certificates with; on CPython and on ports
without an RTC (the unix port) it keeps an offset that ``now()`` adds (the system
clock, which OpenSSL and the unix port's mbedTLS use, is left alone).

The parsers are pure functions: ``parse_http_date`` (RFC 9110 IMF-fixdate, strictly)
and ``parse_cclk`` (3GPP TS 27.007 ``+CCLK: "yy/MM/dd,hh:mm:ss±zz"``, the time zone in
quarter hours).
"""

import time

from micropython import const

# 2024-01-01T00:00:00Z: a clock before this has not been set (firmware is newer).
VALID_AFTER = const(1704067200)
_EPOCH_2000 = const(946684800)  # 2000-01-01 in Unix time: the epoch of some ports

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
           "Dec")

_offset = 0      # seconds added to the port's clock (no RTC to set)
source = None    # type: str | None  # where the clock was last set from ("http", "modem" ...)
_epoch = -1      # Unix time of the port's epoch, found on first use


def _port_epoch():
    global _epoch
    if _epoch < 0:
        _epoch = 0 if time.gmtime(0)[0] == 1970 else _EPOCH_2000
    return _epoch


def now():
    """Seconds since 1970-01-01 UTC, as the device believes (its clock plus the
    offset kept by ``set_time`` on a port without an RTC)."""
    return int(time.time()) + _port_epoch() + _offset


def is_set():
    """Whether the clock reads a plausible date (2024-01-01 or later)."""
    return now() >= VALID_AFTER


def set_time(unix_seconds, origin="manual"):
    """Set the device clock to ``unix_seconds`` (UTC). On MicroPython with
    ``machine.RTC`` the RTC is set (mbedTLS then checks certificate dates against it);
    elsewhere the difference is kept as an offset used by ``now()``."""
    global _offset, source
    rtc = None
    try:
        import machine  # lazy: optional on the unix port and absent on CPython
        rtc = getattr(machine, "RTC", None)
    except ImportError:
        pass
    if rtc is not None:
        y, mo, d, h, mi, s, wd = fields(unix_seconds)
        rtc().datetime((y, mo, d, wd, h, mi, s, 0))
        _offset = 0
    else:
        _offset = unix_seconds - int(time.time()) - _port_epoch()
    source = origin


def fields(unix_seconds):
    """(year, month, day, hour, minute, second, weekday 0=Monday) in UTC, on any
    port (time.gmtime counts from the port's epoch and may not go before it)."""
    days, s = divmod(int(unix_seconds), 86400)
    z = days + 719468  # H. Hinnant's civil_from_days
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (m <= 2)
    return y, m, d, s // 3600, s // 60 % 60, s % 60, (days + 3) % 7


def date_text(unix_seconds):
    """``YYYY-MM-DD hh:mm:ss UTC``, for messages."""
    return "%04d-%02d-%02d %02d:%02d:%02d UTC" % fields(unix_seconds)[:6]


# -- pure parsers -------------------------------------------------------------------------
def days_from_civil(y, m, d):
    """Days from 1970-01-01 to the proleptic Gregorian date y-m-d (H. Hinnant)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _month_days(y, m):
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _num(s, lo, hi):
    """ASCII digits ``s`` (str) as an int in lo..hi, else ValueError."""
    if not s:
        raise ValueError("no digits")
    for c in s:
        if not "0" <= c <= "9":
            raise ValueError("not a digit: %r" % s)
    v = int(s)
    if not lo <= v <= hi:
        raise ValueError("%d out of %d..%d" % (v, lo, hi))
    return v


def _unix(y, mo, d, h, mi, s):
    if d > _month_days(y, mo):
        raise ValueError("no day %d in %04d-%02d" % (d, y, mo))
    return ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60 + s


def parse_http_date(value):
    """An HTTP ``Date`` in IMF-fixdate form (``Sun, 06 Nov 1994 08:49:37 GMT``; RFC 9110
    5.6.7), bytes or str, as Unix seconds. Anything else (the obsolete RFC 850 and
    asctime forms, a wrong day name, a 30th of February) raises ValueError."""
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode()
        except UnicodeError:
            raise ValueError("Date is not ASCII")
    value = value.strip(" \t")
    if (len(value) != 29 or value[3:5] != ", " or value[7] != " " or value[11] != " "
            or value[16] != " " or value[19] != ":" or value[22] != ":"
            or value[25:] != " GMT"):
        raise ValueError("not an IMF-fixdate: %r" % value[:40])
    if value[8:11] not in _MONTHS:
        raise ValueError("bad month in %r" % value)
    y = _num(value[12:16], 1970, 9999)
    mo = _MONTHS.index(value[8:11]) + 1
    d = _num(value[5:7], 1, 31)
    t = _unix(y, mo, d, _num(value[17:19], 0, 23), _num(value[20:22], 0, 59),
              _num(value[23:25], 0, 60))
    if value[:3] != _DAYS[(days_from_civil(y, mo, d) + 3) % 7]:  # 1970-01-01: Thursday
        raise ValueError("day name does not match the date in %r" % value)
    return t


def parse_cclk(line):
    """A ``+CCLK: "yy/MM/dd,hh:mm:ss±zz"`` line (or just the quoted part), local time
    with its zone in quarter hours, as Unix seconds (UTC). Two-digit years are 2000-2069
    (70-99: 1970-1999, what a modem without network time reports). ValueError if
    malformed."""
    if isinstance(line, (bytes, bytearray)):
        try:
            line = bytes(line).decode()
        except UnicodeError:
            raise ValueError("+CCLK is not ASCII")
    q = line.find('"')
    if q < 0 or not line.endswith('"'):
        raise ValueError("not a +CCLK reply: %r" % line[:40])
    v = line[q + 1:-1]
    if (len(v) != 20 or v[2] != "/" or v[5] != "/" or v[8] != "," or v[11] != ":"
            or v[14] != ":" or v[17] not in "+-"):
        raise ValueError("not a +CCLK time: %r" % v)
    yy = _num(v[0:2], 0, 99)
    zone = _num(v[18:20], 0, 96) * 900  # quarter hours, at most +-24 h
    t = _unix(yy + (1900 if yy >= 70 else 2000), _num(v[3:5], 1, 12), _num(v[6:8], 1, 31),
              _num(v[9:11], 0, 23), _num(v[12:14], 0, 59), _num(v[15:17], 0, 59))
    return t - zone if v[17] == "+" else t + zone


# -- from the network ------------------------------------------------------------------------
def _accept(t, what):
    if t < VALID_AFTER:
        raise ValueError("%s gives %s, before 2024: not a network time" % (what, date_text(t)))
    set_time(t, what)
    return t


def sync_modem(modem):
    """Set the clock from the modem's network time (``AT+CCLK?``, which the network set
    by NITZ at registration). ``modem``: a started synack modem (anything with an AT
    ``Channel`` as ``.at``). Returns the time set; ValueError if the modem has no
    network time yet (it reports its boot default), a ModemError if it does not
    answer."""
    lines = modem.at.command(b"AT+CCLK?", b"+CCLK:").lines
    if not lines:
        raise ValueError("AT+CCLK? gave no +CCLK line")
    return _accept(parse_cclk(lines[0]), "modem")


def sync_http(url, client):
    """Set the clock from the ``Date`` header of a plain ``HEAD`` request to ``url``
    (an ``http://`` URL: TLS would need the clock already) made with ``client`` (a
    synack.http.client.Client: the caller's, so this module does not depend on the HTTP
    stack, which depends on it). Returns the time set; ValueError without a valid Date."""
    resp = client.head(url)
    date = resp.head.header(b"date")
    resp.close()
    if date is None:
        raise ValueError("no Date header from %s" % url)
    return _accept(parse_http_date(date), "http")
