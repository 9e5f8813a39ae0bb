"""The fault matrix (issue 10): one row per fault, each recovered from automatically, with
the time it took.

Every row runs the application loop a phone-like device runs (a Supervisor keeping the
link up, a Poller polling the HTTP server every 250 ms with backoff on errors: the
SUPERVISED_POLLS loop of test_http_polling, as FAULT_POLLS in device_code.py). After its
3rd poll the device waits one more poll interval (0.25 s) and the host injects the fault
then, so that the fault never races a poll already in flight. ``recovery_s`` is the time
from the fault to the end of the first successful poll after it: the wait (the fault goes
in as it begins, milliseconds after the device said so) plus what the device timed from
the end of its wait. The loop must then reach 8 successful polls in all, and the fault must
have bitten (an armed modem fault used up, a link loss seen, a poll failed ... per row).

Each row's bound is what the firmware's own timeouts make possible, with room for a
loaded CI machine:

- at once (URC or result code): the poll that meets it fails or reconnects, the next one
  succeeds: polls every 250 ms, backoff 250 ms doubling to 1 s -> 5 s (10 s when the
  link must be brought up again: supervisor backoff 250 ms .. 2 s, NETOPEN);
- a reply that never completes (lost ``OK``, a cut-short read): the AT command timeout
  (AT+CIPSEND 10 s, other commands 5 s), then a resync and a new connection -> +10 s;
- an outage of S seconds (registration loss, blackholed path): S + read timeout 3 s +
  up to 2 s for the FIN of the abandoned connection -> S + 12 s.

The figures go to the JUnit report (``fault``, ``recovery_s``, ``bound_s``,
``failed_polls``, ``link_losses``, ``connections``), which ``synack hil`` prints, and
as a table to ``fault-matrix.md`` in the HIL log directory (``--hil-logdir``).

Rows of faults inside the modem need the virtual modem (skip over ``--modem wifi`` and
on a real board); peer reset and path blackhole run on every network. The blackhole
needs root and nft (skip without; fail with CI=true).
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from device_code import FAULT_POLLS

from synack_host.transport.repl import DeviceError

POLLS = 8                 # successful polls in all: 3 before the fault, 5 after
FAULT_AFTER_POLL = 3
PAUSE_S = 0.25            # after poll 3 the device waits one poll interval more, and
                          # the fault goes in then


@dataclass
class Ctx:
    """What a row's injection may use; ``modem`` is None on rows that need none,
    ``fixtures`` holds the extra fixtures the row asked for."""
    modem: object
    http_server: object
    fixtures: dict
    note: str = ""


@dataclass
class Result:
    ok: int
    failed: int
    connections: int
    losses: int
    reconnects: int
    recovery_s: float | None
    pending: dict


@dataclass(frozen=True)
class Row:
    fault: str                              # the row's id
    what: str                               # what the host does, for the report
    inject: Callable[[Ctx], None]
    bound_s: float
    modem: bool = True                      # needs the virtual modem
    needs: tuple[str, ...] = ()             # more fixtures (requested before the run)
    bit: Callable[[Result, Ctx], str | None] = lambda r, ctx: None   # why it did not


def _open_link(modem) -> int:
    links = [int(n) for n, state in modem.status()["links"].items() if state == "open"]
    assert links, f"no open link: {modem.status()}"
    return links[0]


def _cme_on_open(ctx: Ctx) -> None:
    ctx.modem.fault(f"cme-error {ctx.modem.wording.open} 3 2")
    ctx.modem.close_link(_open_link(ctx.modem))    # the next poll must open a link


def reset_connections(server) -> int:
    """The server resets its open connections: SO_LINGER 0, then the handler thread is
    woken (SHUT_RD: no FIN) and closes the socket, which sends an RST."""
    with server._lock:                             # ScriptedServer's own bookkeeping
        conns = list(server._conns)
    reset = 0
    for conn in conns:
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.shutdown(socket.SHUT_RD)
            reset += 1
        except OSError:                            # closed already
            pass
    return reset


def _peer_rst(ctx: Ctx) -> None:
    n = reset_connections(ctx.http_server)
    ctx.note = f"{n} connection(s) reset"


BLACKHOLE_S = 3.0


def _blackhole(ctx: Ctx) -> None:
    hole = ctx.fixtures["blackhole"](ctx.http_server.port)
    threading.Timer(BLACKHOLE_S, hole.stop).start()


def _armed(name: str):
    def bit(r: Result, ctx: Ctx) -> str | None:
        return f"the {name} fault was never used: {r.pending}" if name in r.pending else None
    return bit


def _lost_link(r: Result, ctx: Ctx) -> str | None:
    return None if r.losses >= 1 and r.reconnects >= 1 else "the supervisor saw no link loss"


def _failed_poll(r: Result, ctx: Ctx) -> str | None:
    return None if r.failed >= 1 else "no poll failed: did the fault happen?"


def _new_connection(r: Result, ctx: Ctx) -> str | None:
    return None if r.connections >= 2 else "the device never opened a new connection"


def _all(*checks):
    def bit(r: Result, ctx: Ctx) -> str | None:
        return next((why for why in (c(r, ctx) for c in checks) if why), None)
    return bit


ROWS = [
    Row("reboot", "modem reboots (links lost silently, RDY)",
        lambda ctx: ctx.modem.reboot(), 10.0, bit=_lost_link),
    Row("cme-error-on-open", "link closed by the network; the next 2 opens: +CME ERROR: 3",
        _cme_on_open, 10.0, bit=_all(_armed("cme-error"), _failed_poll)),
    Row("lose-ok", "the next final OK is lost (a send's)",
        lambda ctx: ctx.modem.fault("lose-ok 1"), 20.0, bit=_armed("lose-ok")),
    Row("registration-loss", "registration lost for 2 s (bearer lost, searching)",
        lambda ctx: ctx.modem.drop_registration(2.0), 14.0, bit=_lost_link),
    Row("ipclose-mid-send", "link closed while a send's payload comes in: ERROR, close URC",
        lambda ctx: ctx.modem.fault("ipclose-during-send"), 5.0,
        bit=_all(_armed("ipclose-during-send"), _new_connection)),
    Row("send-fail", "the next send reported failed, the link closed",
        lambda ctx: ctx.modem.fault("send-fail"), 5.0,
        bit=_all(_armed("send-fail"), _new_connection)),
    Row("lost-data-urc", "the next 3 data URCs are lost",
        lambda ctx: ctx.modem.lose_data_urcs(3), 5.0, bit=_armed("lose-urc")),
    Row("garbage-line", "a line of noise: \\xff\\x00+GARBAGE",
        lambda ctx: ctx.modem.inject_garbage(b"\xff\x00+GARBAGE\r\n"), 5.0),
    Row("truncated-read", "the next read's payload cut to half, then silence",
        lambda ctx: ctx.modem.fault("truncate-read"), 15.0, bit=_armed("truncate-read")),
    Row("slow-modem", "next 3 commands answered 1.5 s late (within the 5 s timeout)",
        lambda ctx: ctx.modem.delay_replies(1.5, 3), 10.0, bit=_armed("delay")),
    Row("peer-rst", "the server resets the connection (SO_LINGER 0)",
        _peer_rst, 5.0, modem=False, bit=_new_connection),
    Row("path-blackhole", f"the server's port drops every packet for {BLACKHOLE_S:g} s",
        _blackhole, BLACKHOLE_S + 12.0, modem=False, needs=("blackhole",), bit=_failed_poll),
    Row("malformed-urc", "two malformed URCs in the dialect's words",
        lambda ctx: ctx.modem.fault("malformed-urc"), 5.0),
]

# -- the table --------------------------------------------------------------------------
HEADER = ("| fault | injected | recovery (s) | bound (s) | failed polls | link losses "
          "| connections | result |\n|---|---|---|---|---|---|---|---|\n")


@pytest.fixture(scope="module")
def matrix(hil):
    """Rows as they finish; written to ``fault-matrix.md`` in the HIL log directory."""
    done: dict[str, dict] = {}
    yield done
    if not done:
        return
    lines = [f"# Fault matrix ({hil.modem}, {'virtual rig' if hil.virtual else hil.board})\n\n",
             HEADER]
    for row in ROWS:
        r = done.get(row.fault)
        if r is not None:
            lines.append("| {fault} | {what} | {recovery_s} | {bound_s:g} | {failed} | "
                         "{losses} | {connections} | {result} |\n".format(**r))
    path = Path(hil.logdir) / "fault-matrix.md"
    path.write_text("".join(lines))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:160]


# -- running one row --------------------------------------------------------------------
def _stop_device(board) -> None:
    """Interrupt the device loop (Ctrl-C) if it still runs: the next row needs the REPL."""
    board.link.write(b"\x03")
    try:
        board.finish(timeout=10)
    except Exception:     # the KeyboardInterrupt it raises, or a board that stays stuck
        pass


def run_row(board, url: str, row: Row, ctx: Ctx) -> Result:
    limit_s = row.bound_s + 20
    board.start(FAULT_POLLS % {"url": url, "n": POLLS, "every_ms": 250,
                               "limit_ms": int(limit_s * 1000),
                               "pause_after": FAULT_AFTER_POLL,
                               "pause_ms": int(PAUSE_S * 1000)})
    try:
        board.expect(r"(?m)^pause", timeout=30)
        # the device has just begun its PAUSE_S wait (printing takes milliseconds)
        t_fault = time.monotonic()
        row.inject(ctx)
        took = time.monotonic() - t_fault
        out = board.finish(timeout=limit_s + 30)
    except Exception as e:
        if not isinstance(e, DeviceError):
            _stop_device(board)      # still running (a wedged driver): free the REPL
        raise
    assert took < PAUSE_S, f"injecting the fault took {took:.2f} s, longer than the " \
        "device's wait: the fault raced the polls, recovery cannot be measured"
    result = [line for line in out.splitlines() if line.startswith("result ")]
    assert result, f"the device loop did not finish: {out[-800:]}"
    ok, failed, opened, losses, reconnects, recovery_ms = \
        (int(x) for x in result[-1].split()[1:])
    pending = ctx.modem.status().get("pending", {}) if ctx.modem is not None else {}
    # from the fault: the wait left when it went in, then the device's own timing
    recovery_s = round(PAUSE_S + recovery_ms / 1000, 2) if recovery_ms >= 0 else None
    return Result(ok, failed, opened, losses, reconnects, recovery_s, pending)


@pytest.mark.parametrize("row", ROWS, ids=[r.fault for r in ROWS])
def test_fault_matrix(board, http_server, hil, request, matrix, row, record_property):
    record_property("fault", row.what)
    record_property("bound_s", row.bound_s)
    entry = matrix[row.fault] = {
        "fault": row.fault, "what": _cell(row.what), "bound_s": row.bound_s,
        "recovery_s": "-", "failed": "-", "losses": "-", "connections": "-",
        "result": "not run"}
    modem = None
    try:
        modem = request.getfixturevalue("modem") if row.modem else None   # skips on Wi-Fi
        ctx = Ctx(modem, http_server, {name: request.getfixturevalue(name)
                                       for name in row.needs})
        r = run_row(board, http_server.url(host=hil.server_host), row, ctx)
        record_property("recovery_s", r.recovery_s if r.recovery_s is not None else -1)
        record_property("failed_polls", r.failed)
        record_property("link_losses", r.losses)
        record_property("connections", r.connections)
        entry.update(recovery_s="-" if r.recovery_s is None else f"{r.recovery_s:.2f}",
                     failed=r.failed, losses=r.losses, connections=r.connections)
        assert r.recovery_s is not None and r.ok == POLLS, \
            f"no recovery from {row.fault}: {r.ok} of {POLLS} polls succeeded"
        assert r.recovery_s <= row.bound_s, \
            f"recovery from {row.fault} took {r.recovery_s} s, bound {row.bound_s:g} s"
        why = row.bit(r, ctx)
        assert why is None, f"{row.fault}: {why}"
        entry["result"] = "recovered" + (f" ({ctx.note})" if ctx.note else "")
    except pytest.skip.Exception as e:
        entry["result"] = _cell(f"skipped: {e.msg}")
        raise
    except BaseException as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        entry["result"] = _cell("FAILED: " + re.sub(r"\s+", " ", first))
        if modem is not None:   # links left open by a broken row must not break the next
            with contextlib.suppress(Exception):
                modem.reboot()
        raise
