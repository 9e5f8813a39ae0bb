"""Firmware on CPython drives the virtual SIM7600 over its pty to real TCP servers on
127.0.0.1: what is the SIM7600's own (its error wording, its asyncio channel, echo).
What every dialect does alike (bulk data, two sockets, closes, loss, faults) is in
tests/conformance/."""

import asyncio
import errno
import time

import pytest

from synack import socket as synsocket
from synack.at.aio import AsyncChannel
from synack.at.errors import CommandTimeout
from synack.at.parser import Parser
from synack.modems import base, sim7600
from modemrig import refused, rig_fixtures, roundtrip, start_error, unresolved

rig_factory, rig = rig_fixtures()


def test_connect_to_closed_port_is_refused(rig, echo):
    assert "+CIPOPEN: 0,1" in str(refused(rig, echo))


def test_dns_through_the_modem(rig, echo):
    addr = synsocket.getaddrinfo("localhost", echo.port)[0][-1]
    assert addr == ("127.0.0.1", echo.port)
    synsocket.use(rig.modem)
    try:
        assert synsocket.getaddrinfo("localhost", 1)[0][-1] == ("127.0.0.1", 1)
        assert "+CDNSGIP: 0,10" in str(unresolved(synsocket.getaddrinfo))
    finally:
        synsocket.use(None)


def test_cme_error_on_open_then_next_open_works(rig_factory, echo):
    rig = rig_factory("--fault", "AT+CIPOPEN|+CME ERROR: 3")
    s = rig.socket()
    with pytest.raises(OSError) as exc:
        s.connect(("127.0.0.1", echo.port))
    assert exc.value.errno == errno.EIO
    assert "+CME ERROR: 3 (operation not allowed)" in str(exc.value)
    assert s.state == "CLOSED"
    s2 = rig.socket()
    s2.connect(("127.0.0.1", echo.port))
    assert roundtrip(s2, b"still fine") == b"still fine"
    s2.close()


def test_modem_that_stops_answering_times_out_then_recovers(rig):
    rig.proc.pause()
    try:
        t0 = time.monotonic()
        with pytest.raises(CommandTimeout) as exc:
            rig.modem.at.command(b"AT+CSQ", b"+CSQ:", timeout_ms=300)
        assert 0.25 < time.monotonic() - t0 < 2
        assert "AT+CSQ: no answer within 300 ms" in str(exc.value)
    finally:
        rig.proc.resume()
    # The late reply to the old AT+CSQ must not be taken for the next command's.
    assert rig.modem.at.command(b"ATI", timeout_ms=2000).lines[0].startswith(b"Manufacturer")
    assert base.signal_dbm(rig.modem.at) == -73


@pytest.mark.parametrize("args, error, text", [
    (("--sim", "absent"), base.NoSIM, "+CME ERROR: 10"),
    (("--sim", "pin"), base.SIMLocked, "SIM PIN"),
    (("--registration", "denied"), base.RegistrationDenied, "denied"),
    (("--registration", "searching"), base.NotRegistered, "stat 2"),
    (("--pdp-fail",), base.PDPError, "+NETOPEN: 1"),
])
def test_bring_up_failures_are_named(rig_factory, args, error, text):
    assert text in start_error(rig_factory, args, error)


def test_asyncio_driver_serialises_concurrent_commands(rig):
    chan = AsyncChannel(rig.uart, Parser(urcs=sim7600.URCS, framed=sim7600.FRAMED))

    async def main():
        return await asyncio.gather(*(chan.command(b"AT+CSQ", b"+CSQ:") for _ in range(5)),
                                    chan.command(b"AT+CGMM"))

    replies = asyncio.run(main())
    assert [r.lines for r in replies[:5]] == [[b"+CSQ: 20,99"]] * 5
    assert replies[5].lines == [b"SIMCOM_SIM7600G-H"]


def test_commands_work_with_echo_on_and_off(rig_factory):
    rig = rig_factory(start=False)
    at = rig.modem.at
    base.sync(at)  # the modem powers up with echo on
    assert at.command(b"AT+CSQ", b"+CSQ:").lines == [b"+CSQ: 20,99"]
    assert at.command(b"AT+CGMM").lines == [b"SIMCOM_SIM7600G-H"]
    at.command(b"ATE0")
    assert at.command(b"AT+CSQ", b"+CSQ:").lines == [b"+CSQ: 20,99"]
    assert at.command(b"AT+CGMM").lines == [b"SIMCOM_SIM7600G-H"]
