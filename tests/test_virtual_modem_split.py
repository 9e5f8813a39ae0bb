"""The virtual modem as a package (host/synack_host/sim/modem/): the DIALECTS table is
the one place dialect choices come from, the link stack's states are a table that refuses
what it does not list, the link stack works without any dialect (host-chosen and
modem-allocated link numbers, real sockets on 127.0.0.1), and a new dialect gets every
fault in its own words."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from itertools import product

import pytest

from synack_host import cli
from synack_host.servers import EchoServer
from synack_host.sim.launch import run_modem_in_thread
from synack_host.sim.loop import PacedLoop
from synack_host.sim.modem import DIALECTS, SIM7600, Dialect, Wording
from synack_host.sim.modem.links import (TRANSITIONS, Link, LinkEvent, LinkStack, LinkState,
                                         LinkStateError, next_state)
from synack_host.sim.pty import PtyLink
from synack_host.sim.rig import start_rig


def synack(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synack_host.cli", *args],
                          capture_output=True, text=True, timeout=30)


# -- the DIALECTS table drives every choice of dialect --------------------------------
class FakeDialect:
    """Stands in for a dialect module: records how ``synack sim modem`` made it."""
    made: list[dict] = []
    fault_table: dict = {}

    def __init__(self, **options):
        FakeDialect.made.append(options)
        self.port = "/dev/fake-modem-pty"

    def run_until_signalled(self) -> None:
        pass


def test_sim_modem_makes_the_dialect_the_table_names(monkeypatch, capsys):
    monkeypatch.setitem(DIALECTS, "fake", FakeDialect)
    FakeDialect.made.clear()
    assert cli.main(["sim", "modem", "--dialect", "fake", "--rssi", "7"]) == 0
    assert capsys.readouterr().out == "/dev/fake-modem-pty\n"
    assert FakeDialect.made[0]["rssi"] == 7 and FakeDialect.made[0]["sim"] == "ready"


@pytest.mark.parametrize("command", [["sim", "modem"], ["sim", "rig"]])
def test_an_unknown_dialect_is_one_line_naming_the_known_ones(command):
    done = synack(*command, "--dialect", "bg9000")
    assert done.returncode == 2
    assert done.stderr.startswith(f"synack: {' '.join(command)}: argument --dialect: "
                                  "invalid choice: 'bg9000'"), done.stderr
    assert all(name in done.stderr for name in DIALECTS)
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


def test_the_python_entry_points_refuse_an_unknown_dialect_by_name():
    known = re.escape(f"unknown modem dialect 'bg9000'; known: {', '.join(sorted(DIALECTS))}")
    with pytest.raises(ValueError, match=known):
        with run_modem_in_thread(dialect="bg9000"):
            pass
    with pytest.raises(ValueError, match=known):
        start_rig(dialect="bg9000")         # before any process starts


def test_hil_networks_are_the_dialects_and_wifi():
    from synack_host.hil.device import NETWORKS

    assert NETWORKS == (*DIALECTS, "wifi")
    assert all(issubclass(cls, Dialect) for cls in DIALECTS.values())


# -- the link state table ---------------------------------------------------------------
def test_every_state_and_event_pair_is_in_the_table_or_refused():
    for state, event in product(LinkState, LinkEvent):
        if (state, event) in TRANSITIONS:
            assert next_state(state, event) is TRANSITIONS[(state, event)]
        else:
            with pytest.raises(LinkStateError, match=f"{state.name}.*{event.name}"):
                next_state(state, event)


def test_the_table_has_no_dead_ends():
    assert not any(state is LinkState.GONE for state, _ in TRANSITIONS)   # GONE is final
    for state in LinkState:
        if state is not LinkState.GONE:       # network loss can always take a link
            assert TRANSITIONS[(state, LinkEvent.DROP)] is LinkState.GONE
    reached, todo = {LinkState.CREATED}, [LinkState.CREATED]
    while todo:
        here = todo.pop()
        for (state, _), nxt in TRANSITIONS.items():
            if state is here and nxt not in reached:
                reached.add(nxt)
                todo.append(nxt)
    assert reached == set(LinkState)


def test_a_link_refuses_a_change_the_table_does_not_list():
    link = Link(0)
    with pytest.raises(LinkStateError):
        link.take(LinkEvent.CONNECTED)        # never asked to connect
    assert link.state is LinkState.CREATED and not link.can(LinkEvent.PEER_CLOSE)


# -- the link stack on its own ----------------------------------------------------------
class Owner:
    """A link stack's owner without a dialect: the shared loop, and a list of events."""

    def __init__(self):
        self.pty = PtyLink()
        self.loop = PacedLoop(self.pty, 0.05, take_input=lambda chunk: None)
        self.watch, self.later = self.loop.watch, self.loop.later
        self.events: list[tuple] = []

    def link_connected(self, link):
        self.events.append(("connected", link.n))

    def link_connect_failed(self, link, timed_out):
        self.events.append(("connect-failed", link.n, timed_out))

    def link_data(self, link):
        self.events.append(("data", link.n))

    def link_peer_closed(self, link, reason):
        self.events.append(("peer-closed", link.n, reason))

    def link_closed(self, link):
        self.events.append(("closed", link.n))

    def link_sent(self, link, size, ok):
        self.events.append(("sent", link.n, size, ok))

    def until(self, event: tuple, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while event not in self.events:
            assert time.monotonic() < deadline, f"no {event} in {self.events}"
            self.loop.step(0.05)

    def close(self):
        self.loop.close()
        self.pty.close()


@pytest.fixture
def owner():
    o = Owner()
    yield o
    o.close()


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_link_numbers_chosen_by_the_host_or_by_the_modem(owner):
    stack = LinkStack(owner, range(3))
    assert stack.create(2).n == 2             # the host's number (AT+CIPOPEN=2,...)
    assert stack.create().n == 0              # the modem's: the lowest free one (AT+USOCR)
    assert stack.create().n == 1
    assert stack.create() is None             # all taken
    assert stack.create(1) is None and stack.create(3) is None   # taken, out of range
    assert stack.status() == {0: "created", 1: "created", 2: "created"}
    stack.close(stack.get(1))                 # a number given out, never connected
    assert stack.status() == {0: "created", 2: "created"} and owner.events == []


def test_a_link_through_its_life_on_real_sockets(owner):
    stack = LinkStack(owner, range(2), connect_timeout=5)
    with EchoServer() as echo:
        link = stack.create()
        stack.connect(link, "127.0.0.1", echo.port)
        owner.until(("connected", 0))
        stack.send(link, b"hello")
        owner.until(("data", 0))              # the echo, in an empty buffer
        assert ("sent", 0, 5, True) in owner.events
        assert stack.read(link, 100) == b"hello" and link.data_urc_armed
        stack.close(link)
        owner.until(("closed", 0))            # our FIN, then the echo server's
        assert stack.status() == {}
        assert echo.wait_for(lambda: echo.closed_by_client == [True])

        failed = stack.open(None, "127.0.0.1", refused_port())
        owner.until(("connect-failed", failed.n, False))
        assert stack.status() == {}

        peer = stack.open(1, "127.0.0.1", echo.port)
        owner.until(("connected", 1))
        stack.end(peer, 1)                    # the network ends it (close-link)
        assert owner.events[-1] == ("peer-closed", 1, 1)
        assert stack.status() == {1: "closed"}    # its data stays until the host closes
        with pytest.raises(LinkStateError):
            stack.end(peer, 1)
        stack.drop_all(abandon=True)
        assert stack.status() == {}
        stack.close_abandoned()


# -- a new dialect gets every fault -----------------------------------------------------
def test_a_new_dialect_gets_every_fault_in_its_own_words():
    class Tiny(Dialect):
        wording = Wording(send="AT+QISEND", closed_urc='+QIURC: "closed",{link}',
                          closed_urc_name="+QIURC: \"closed\"")

    ssl_only = set(SIM7600.fault_table) - set(Tiny.fault_table)
    assert ssl_only == {"garble-cchrecv"}      # every other fault, on any dialect
    assert "AT+QISEND's link" in Tiny.fault_table["ipclose-during-send"].help
    assert Tiny.wording.closed(3, 1) == '+QIURC: "closed",3'
    assert Dialect.fault_table.keys() == Tiny.fault_table.keys()
