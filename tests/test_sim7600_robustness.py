"""The SIM7600 driver against a scripted modem that answers badly (issue 10): garbled
URCs, corrupted +CIPRXGET framing, malformed replies to bring-up queries, and host
names, APNs and PINs that would inject a second AT command."""

import asyncio
import errno
import time

import pytest

from synack import socket as synsocket
from synack.at import quote
from synack.at.aio import AsyncChannel
from synack.at.errors import CommandTimeout
from synack.at.parser import Parser
from synack.modems import base, sim7600


class ScriptedUart:
    """A UART whose far end is a script: ``replies`` maps a command (bytes; a key
    ending in "=" or "," is a prefix) to the bytes to answer (or a function of the
    command line); unknown commands get ERROR. ``inject(data)`` queues unsolicited bytes."""

    def __init__(self, replies=None):
        self.replies = {b"AT": b"\r\nOK\r\n"}
        self.replies.update(replies or {})
        self.rx = bytearray()
        self.tx = bytearray()
        self.commands = []

    def inject(self, data):
        self.rx += data

    def write(self, data):
        self.tx += bytes(data)
        while b"\r" in self.tx:
            i = self.tx.find(b"\r")
            line = bytes(self.tx[:i])
            self.tx = self.tx[i + 1:]
            self.commands.append(line)
            best = line if line in self.replies else None
            for prefix in self.replies:  # keys ending in "=" or "," match as prefixes
                if (prefix[-1:] in (b"=", b",") and line.startswith(prefix)
                        and (best is None or len(prefix) > len(best))):
                    best = prefix
            reply = self.replies[best] if best is not None else b"\r\nERROR\r\n"
            self.rx += reply(line) if callable(reply) else reply
        return len(data)

    def any(self):
        return len(self.rx)

    def readinto(self, buf):
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        del self.rx[:n]
        return n


OPEN = {b"AT+CIPOPEN=0,": b"\r\nOK\r\n\r\n+CIPOPEN: 0,0\r\n",
        b"AT+CIPCLOSE=0": b"\r\nOK\r\n\r\n+CIPCLOSE: 0,0\r\n"}


def modem_with(replies=None, **kw):
    uart = ScriptedUart(replies)
    return uart, sim7600.SIM7600(uart, apn="internet", poll_ms=5, **kw)


def connected(replies=None):
    uart, modem = modem_with({**OPEN, **(replies or {})})
    s = synsocket.socket(backend=modem)
    s.settimeout(1)
    s.connect(("10.0.0.1", 80))
    assert s.state == "ESTABLISHED"
    return uart, modem, s


GARBLED_URCS = [b"+IPCLOSE: 0,", b"+IPCLOSE: ,1", b"+CIPRXGET: 1,O", b"+CIPRXGET: 1,",
                b"+CIPOPEN: x", b"+CIPOPEN: 0,1_0", b"+CIPCLOSE: 0,", b"+CIPSEND: 0,a,b",
                b"+NETOPEN: ", b"+NETOPEN: -", b"+IPCLOSE: 99999999999999999999,1"]


@pytest.mark.parametrize("urc", GARBLED_URCS)
def test_garbled_urc_does_not_wedge_the_driver(urc):
    # Issue 10 defect 1: one garbled URC used to raise ValueError out of the command
    # and leave every later command failing with "AT command in flight".
    uart, modem, s = connected({b"AT+CSQ": b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"})
    uart.replies[b"AT+CSQ"] = b"\r\n+CSQ: 20,99\r\n\r\n" + urc + b"\r\n\r\nOK\r\n"
    assert modem.at.command(b"AT+CSQ", b"+CSQ:").lines == [b"+CSQ: 20,99"]  # mid-reply
    uart.inject(b"\r\n" + urc + b"\r\n")  # and while idle
    modem.at.poll(0)
    assert not modem.at.engine.busy
    assert base.signal_dbm(modem.at) == -73
    assert s.state == "ESTABLISHED"
    # the dialect's handlers tolerate it themselves; the engine guard is the backstop
    assert modem.at.engine.malformed == 0


def test_engine_contains_a_handler_that_raises():
    uart, modem = modem_with({b"AT+CSQ": b"\r\n+CSQ: 5,99\r\n\r\nOK\r\n"})

    def broken(line):
        raise ValueError("bad URC")

    modem.at.engine.on_urc(b"+XYZ:", broken)
    modem.at.engine.parser.urcs += (b"+XYZ:",)
    uart.replies[b"AT+CSQ"] = b"\r\n+XYZ: 1\r\n\r\n+CSQ: 5,99\r\n\r\nOK\r\n"
    assert base.signal_dbm(modem.at) == -103
    assert modem.at.engine.malformed == 1
    assert modem.at.engine.last_malformed == b"+XYZ: 1"
    assert modem.at.command(b"AT").lines == []


def test_urc_handlers_record_good_urcs():
    uart, modem, s = connected()
    uart.inject(b"\r\n+CIPRXGET: 1,0\r\n")
    modem.at.poll(0)
    assert modem.links[0].rx_pending
    uart.inject(b"\r\n+IPCLOSE: 0,1\r\n")
    modem.at.poll(0)
    assert s.state == "CLOSE_WAIT"


def rxget(header, payload=b""):
    return lambda line: b"\r\n" + header + b"\r\n" + payload + b"\r\nOK\r\n"


def asked(line):
    return int(line.rsplit(b",", 1)[1])


BAD_HEADERS = {
    "other link": lambda line: b"\r\n+CIPRXGET: 2,3,2,0\r\nhi\r\nOK\r\n",
    "count not an int": rxget(b"+CIPRXGET: 2,0,x,0", b"hi"),
    "negative rest": rxget(b"+CIPRXGET: 2,0,2,-1", b"hi"),
    "truncated": rxget(b"+CIPRXGET: 2,0"),
    "truncated after count": rxget(b"+CIPRXGET: 2,0,2", b"hi"),
    "more than asked": lambda line: (b"\r\n+CIPRXGET: 2,0,%d,0\r\n" % (asked(line) + 2)
                                     + b"x" * (asked(line) + 2) + b"\r\nOK\r\n"),
    "no header at all": lambda line: b"\r\nOK\r\n",
    "header mangled into noise": rxget(b"+CIPRXGET: 2,0,2,0\x00", b"hi"),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_bad_rxget_framing_is_eio_then_the_socket_reads_again(case):
    # Issue 10 defect 2: a corrupted header raised IndexError/ValueError out of recv.
    uart, modem, s = connected({b"AT+CIPRXGET=2,0,": BAD_HEADERS[case]})
    uart.inject(b"\r\n+CIPRXGET: 1,0\r\n")
    with pytest.raises(OSError) as exc:
        s.recv(10)
    assert exc.value.errno == errno.EIO
    assert "framing" in str(exc.value)
    assert modem.at.needs_resync and not modem.at.engine.busy
    assert modem.links[0].rx_pending  # the next read asks the modem again
    assert s.state == "ESTABLISHED"
    uart.replies[b"AT+CIPRXGET=2,0,"] = rxget(b"+CIPRXGET: 2,0,5,0", b"hello")
    n = len(uart.commands)
    assert s.recv(10) == b"hello"
    assert b"AT" in uart.commands[n:]  # resynced before the read
    s.close()


def test_good_rxget_still_reads_exact_bytes():
    data = bytes(range(256))
    uart, modem, s = connected({b"AT+CIPRXGET=2,0,": rxget(b"+CIPRXGET: 2,0,256,0", data)})
    assert s.recv(256) == data


def test_data_the_modem_still_holds_is_read_without_waiting_for_a_urc():
    # "+CIPRXGET: 2,<link>,<read>,<rest>": rest > 0 means the modem holds more bytes of
    # this link, and no new "+CIPRXGET: 1" URC will announce them. The driver must
    # remember it and ask again at once, not sleep a poll interval (3 s here).
    reads = [rxget(b"+CIPRXGET: 2,0,3,2", b"hel"), rxget(b"+CIPRXGET: 2,0,0,2"),
             rxget(b"+CIPRXGET: 2,0,2,0", b"lo")]
    uart = ScriptedUart({**OPEN, b"AT+CIPRXGET=2,0,": lambda line: reads.pop(0)(line)})
    modem = sim7600.SIM7600(uart, apn="internet", poll_ms=3000)
    s = synsocket.socket(backend=modem)
    s.settimeout(10)
    s.connect(("10.0.0.1", 80))
    assert s.recv(3) == b"hel"
    assert modem.links[0].rx_pending
    started = time.monotonic()
    assert s.recv(10) == b"lo"
    assert time.monotonic() - started < 1.5
    assert not modem.links[0].rx_pending  # rest 0: wait for the next URC


@pytest.mark.parametrize("reply", [b"+CSQ: x,99", b"+CSQ:", b"+CSQ: 32,99", b"+CSQ: -1,99",
                                   b"+CSQ: 1_0,99", None])
def test_malformed_csq_is_a_bring_up_error(reply):
    uart, modem = modem_with({b"AT+CSQ": (b"\r\n" + reply + b"\r\n" if reply else b"")
                              + b"\r\nOK\r\n"})
    with pytest.raises(base.MalformedReply) as exc:
        base.signal_dbm(modem.at)
    assert isinstance(exc.value, base.BringUpError)
    assert "AT+CSQ" in str(exc.value)


def test_csq_values():
    for reply, dbm in ((b"+CSQ: 0,99", -113), (b"+CSQ: 31,0", -51), (b"+CSQ: 99,99", None),
                       (b"+CSQ: 100,99", -116), (b"+CSQ: 191,99", -25)):
        uart, modem = modem_with({b"AT+CSQ": b"\r\n" + reply + b"\r\n\r\nOK\r\n"})
        assert base.signal_dbm(modem.at) == dbm


@pytest.mark.parametrize("ereg, creg", [
    (b"+CEREG: 0", b"+CREG: 0,x"),
    (b"+CEREG: 0,", b"+CREG: ,"),
    (b"+CEREG: 0,77", None),
    (None, None),
])
def test_malformed_registration_is_unknown_then_not_registered(ereg, creg):
    def answer(line):
        return (b"\r\n" + line + b"\r\n" if line else b"") + b"\r\nOK\r\n"

    uart, modem = modem_with({b"AT+CEREG?": answer(ereg), b"AT+CREG?": answer(creg)})
    assert base.registration(modem.at) == base.REG_UNKNOWN
    with pytest.raises(base.NotRegistered) as exc:
        base.wait_registered(modem.at, timeout_ms=30, poll_ms=10)
    assert "stat 4" in str(exc.value)


def test_registration_still_reads_good_replies():
    uart, modem = modem_with({b"AT+CEREG?": b"\r\n+CEREG: 0,x\r\n\r\nOK\r\n",
                              b"AT+CREG?": b"\r\n+CREG: 0,5\r\n\r\nOK\r\n"})
    assert base.registration(modem.at) == base.REG_ROAMING


@pytest.mark.parametrize("reply", [b'+CDNSGIP: 1,"example.com"', b"+CDNSGIP: 1",
                                   b'+CDNSGIP: 1,"example.com","not an ip"', b"+CDNSGIP:",
                                   b'+CDNSGIP: 0,"example.com","1.2.3.4"', None])
def test_malformed_dns_reply_is_ehostunreach(reply):
    uart, modem = modem_with({b"AT+CDNSGIP=": (b"\r\n" + reply + b"\r\n" if reply else b"")
                              + b"\r\nOK\r\n"})
    with pytest.raises(OSError) as exc:
        modem.getaddrinfo("example.com", 80)
    assert exc.value.errno == errno.EHOSTUNREACH


def test_dns_reply_parsed():
    uart, modem = modem_with({b"AT+CDNSGIP=": b'\r\n+CDNSGIP: 1,"example.com","93.184.216.34"'
                                              b'\r\n\r\nOK\r\n'})
    assert modem.getaddrinfo("example.com", 80)[0][-1] == ("93.184.216.34", 80)
    assert uart.commands[-1] == b'AT+CDNSGIP="example.com"'
    assert modem.getaddrinfo("10.1.2.3", 8)[0][-1] == ("10.1.2.3", 8)


INJECTIONS = ['x";+CFUN=0;"', 'a.b"', "host;AT+CFUN=0", "evil\r\nAT+CFUN=0", "evil\rx",
              "ex ample.com", "", "a" * 64 + ".com", "a." * 127 + "com", "-a.com", "a-.com",
              "a..com", "exämple.com", "\u0661.2.3.4", "exa\x00mple.com", "exa\tmple.com"]


@pytest.mark.parametrize("host", INJECTIONS)
def test_injected_host_is_einval_and_never_written(host):
    # Issue 10 defect 5: the host name went into AT+CDNSGIP="..." / AT+CIPOPEN unescaped.
    uart, modem = modem_with(OPEN)
    sent = len(uart.commands)
    with pytest.raises(OSError) as exc:
        modem.getaddrinfo(host, 80)
    assert exc.value.errno == errno.EINVAL
    s = synsocket.socket(backend=modem)
    s.settimeout(1)
    with pytest.raises(OSError) as exc:
        s.connect((host, 80))
    assert exc.value.errno == errno.EINVAL
    assert s.state == "CLOSED"
    assert uart.commands[sent:] == []
    assert modem.links == [None] * sim7600.LINKS


def test_connect_by_name_and_bad_port():
    uart, modem = modem_with({b"AT+CIPOPEN=0,": b"\r\nOK\r\n\r\n+CIPOPEN: 0,0\r\n"})
    s = synsocket.socket(backend=modem)
    s.connect(("my-host.example.com", 443))
    assert uart.commands[-1] == b'AT+CIPOPEN=0,"TCP","my-host.example.com",443'
    s2 = synsocket.socket(backend=modem)
    with pytest.raises(OSError) as exc:
        s2.connect(("example.com", 70000))
    assert exc.value.errno == errno.EINVAL


@pytest.mark.parametrize("apn, pin", [('internet";+CFUN=0;"', None), ("a\rb", None),
                                      ("inter\u00e9net", None), ("x" * 101, None),
                                      ("internet", '1234";+CFUN=0'), ("internet", "12\n34")])
def test_injected_apn_or_pin_rejected_at_construction(apn, pin):
    with pytest.raises(ValueError):
        sim7600.SIM7600(ScriptedUart(), apn=apn, pin=pin)


def test_pin_validated_before_it_reaches_the_modem():
    uart = ScriptedUart({b"AT+CPIN?": b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"})
    chan = sim7600.SIM7600(uart).at
    with pytest.raises(ValueError):
        base.check_sim(chan, pin='1";+CFUN=0')
    assert not any(c.startswith(b"AT+CPIN=") for c in uart.commands)


def test_quote_validators():
    assert quote.host("example.com") == b"example.com"
    assert quote.host(b"a-b.c_d.example.") == b"a-b.c_d.example."
    assert quote.is_ipv4("255.255.255.255") and not quote.is_ipv4("256.1.1.1")
    assert not quote.is_ipv4("1.2.3") and not quote.is_ipv4("01234.1.1.1")
    assert quote.param("web.apn-1", "APN") == b"web.apn-1"
    assert quote.param("", "APN") == b""
    assert not quote.is_param('a"b') and not quote.is_param("a\x7fb")


def test_async_command_cancelled_leaves_the_engine_idle():
    uart = ScriptedUart({b"AT+SLOW": b""})  # never answers
    chan = AsyncChannel(uart, Parser())

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(chan.command(b"AT+SLOW", timeout_ms=10000), 0.05)
        assert not chan.engine.busy and chan.needs_resync
        return await chan.command(b"AT")

    assert asyncio.run(main()).lines == []


def test_command_timeout_then_next_command_works():
    uart, modem = modem_with({b"AT+SLOW": b""})
    with pytest.raises(CommandTimeout):
        modem.at.command(b"AT+SLOW", timeout_ms=20)
    assert modem.at.command(b"AT").lines == []


# -- an AT failure in the middle of a send or a read is an OSError of the socket --------
# (fault matrix rows lose-ok, ipclose-mid-send, truncated-read: a CommandTimeout or
# CommandError escaping recv/send killed the application's polling loop)
def test_send_answered_with_error_is_a_reset():
    uart, modem, s = connected({b"AT+CIPSEND=0,": b"\r\nERROR\r\n"})
    e = pytest.raises(OSError, s.send, b"GET / HTTP/1.1\r\n\r\n").value
    assert e.errno == errno.ECONNRESET and "AT+CIPSEND=0,18 -> ERROR" in str(e)
    assert not modem.at.engine.busy


def test_send_without_its_ok_times_out_and_the_channel_resyncs():
    uart, modem, s = connected({b"AT+CIPSEND=0,": b"\r\n>"})   # prompt, then silence
    sim7600_send_ms = sim7600._SEND_MS   # 10 s in the driver: shorter here
    try:
        sim7600._SEND_MS = 200
        e = pytest.raises(OSError, s.send, b"x").value
    finally:
        sim7600._SEND_MS = sim7600_send_ms
    assert e.errno == errno.ETIMEDOUT and "AT+CIPSEND" in str(e)
    assert modem.at.needs_resync and not modem.at.engine.busy
    # the script sees the unanswered payload "x" glued to the resync's AT
    uart.replies[b"xAT"] = b"\r\nOK\r\n"
    assert modem.at.command(b"AT").lines == []      # resync, then a working channel
    assert uart.commands[-2:] == [b"xAT", b"AT"]


def test_read_cut_short_times_out_and_the_next_read_asks_again():
    cut = b"\r\n+CIPRXGET: 2,0,10,0\r\nhello"          # 10 announced, 5 sent, then nothing
    uart, modem, s = connected({b"AT+CIPRXGET=2,0,": cut})
    uart.inject(b"\r\n+CIPRXGET: 1,0\r\n")
    modem.at.poll(0)
    cmd_ms = sim7600._CMD_MS             # 5 s in the driver: shorter here
    try:
        sim7600._CMD_MS = 200
        e = pytest.raises(OSError, s.recv, 64).value
    finally:
        sim7600._CMD_MS = cmd_ms
    assert e.errno == errno.ETIMEDOUT and "payload cut short" in str(e)
    assert modem.links[0].rx_pending and not modem.at.engine.busy
    uart.replies[b"AT+CIPRXGET=2,0,"] = b"\r\n+CIPRXGET: 2,0,5,0\r\nhello\r\n\r\nOK\r\n"
    assert s.recv(64) == b"hello"
