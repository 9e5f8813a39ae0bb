"""``synack diag`` (report, selftest), ``synack at`` and ``synack monitor``: field
diagnostics over the board's serial port (docs/diagnostics.md).

``diag`` breaks into the running application (Ctrl-C into the raw REPL; its objects stay
in memory), runs ``synack.diag`` on the board, then soft-resets the board back into
main.py unless ``--stay``. Output: readable tables (colour on a terminal, plain when
piped) or ``--json``. Secrets the board knows are scrubbed there; secrets given to the
host ($SYNACK_WIFI_KEY, $SYNACK_APN_PASSWORD, $SYNACK_TOKEN) are masked here too.
"""

from __future__ import annotations

import argparse
import json
import time

from . import at_console, monitor, secrets
from .board_commands import device_errors
from .command import CommandError, State, float_range, int_range
from .diag_session import Style, board_args, board_session, run_json


def host_port(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"want HOST:PORT with a port 1..65535, got {text!r}")
    return text


def url_arg(text: str) -> str:
    if not text.startswith(("http://", "https://")) or len(text) < 9:
        raise argparse.ArgumentTypeError(f"URL must start with http:// or https://, "
                                         f"got {text!r}")
    return text


# -- rendering ---------------------------------------------------------------------------
def quality(dbm) -> str:
    if dbm is None:
        return "unknown"
    return ("excellent" if dbm >= -73 else "good" if dbm >= -83 else "fair" if dbm >= -93
            else "marginal")


def verdict(r: dict) -> tuple[str, bool]:
    """The first layer that is not working, from the bottom up, or that all is up."""
    if r.get("link") == "wifi":
        w = r.get("wifi") or {}
        if not w.get("connected"):
            return "Wi-Fi not connected (status %s)" % w.get("status"), False
    else:
        c = r.get("cellular") or {}
        if c.get("modem") != "answering":
            return "the modem does not answer (power, wiring, baud rate)", False
        if c.get("sim") != "READY":
            return f"SIM problem: {c.get('sim') or (c.get('errors') or {}).get('sim')}", False
        state = (c.get("registration") or {}).get("state") or ""
        if not state.startswith("registered"):
            return f"not registered on the network: {state or 'unknown'}", False
        if c.get("bearer") != "open":
            return "registered, but the data bearer (PDP context) is closed", False
    sup = r.get("supervisor")
    if isinstance(sup, dict) and sup.get("state") not in (None, "ONLINE"):
        return f"link up, supervisor {sup['state']} (last error: {sup.get('last_error')})", False
    return "link up", True


def _kv(pairs) -> str:
    return "  ".join(f"{k} {v}" if k else str(v) for k, v in pairs if v not in (None, ""))


def render(r: dict, out, style: Style) -> None:
    rows: list[tuple[str, str]] = []
    d = r.get("device") or {}
    impl = "MicroPython" if d.get("implementation") == "micropython" else d.get("implementation")
    rows.append(("device", _kv([(impl, d.get("micropython")),
                                ("firmware", d.get("firmware")),
                                ("uptime", f"{d['uptime_ms'] / 1000:.1f} s"
                                 if isinstance(d.get("uptime_ms"), int) else None),
                                ("reset", d.get("reset_cause")),
                                ("free heap", d.get("mem_free")),
                                ("clock", "set" if d.get("clock_set") else "NOT set")])))
    rows.append(("link", str(r.get("link"))))
    if "wifi" in r:
        w = r["wifi"]
        rows.append(("wifi", _kv([("ssid", w.get("ssid")), ("connected", w.get("connected")),
                                  ("rssi", f"{w['rssi_dbm']} dBm" if w.get("rssi_dbm")
                                   is not None else None), ("ip", w.get("ip"))])))
        errors = w.get("errors") or {}
    else:
        c = r.get("cellular") or {}
        errors = c.get("errors") or {}
        reg = c.get("registration") or {}
        rows.append(("modem", _kv([("", c.get("modem")), ("model", c.get("model")),
                                   ("rev", c.get("revision")), ("IMEI", c.get("imei"))])))
        rows.append(("sim", _kv([("state", c.get("sim")), ("ICCID", c.get("iccid"))])))
        rows.append(("network", _kv([("operator", c.get("operator")),
                                     ("access", c.get("access")),
                                     ("registration", reg.get("state")),
                                     ("(cs/gprs/eps)", "/".join(str(reg.get(k, "-")) for k in
                                                                ("cs_stat", "gprs_stat",
                                                                 "eps_stat")))])))
        dbm = c.get("signal_dbm")
        rows.append(("signal", f"{dbm} dBm ({quality(dbm)})" if dbm is not None
                     else "unknown"))
        rows.append(("bearer", _kv([("", c.get("bearer")), ("ip", c.get("ip")),
                                    ("apn", c.get("apn"))])))
    sup = r.get("supervisor")
    if isinstance(sup, dict) and "state" in sup:
        rows.append(("supervisor", _kv([("", sup["state"]), ("connects", sup["connects"]),
                                        ("losses", sup["losses"]),
                                        ("reinits", sup["reinits"]),
                                        ("failures", sup.get("failures") or None),
                                        ("last error", sup.get("last_error"))])))
    for s in r.get("sockets") or []:
        where = f"link {s['link']}" if "link" in s else s.get("peer")
        rows.append(("socket", f"{where} {s['state']}  " + "; ".join(s.get("events", []))))
    box = r.get("outbox")
    if isinstance(box, dict) and "depth" in box:
        rows.append(("outbox", f"{box['depth']} queued, {box['quarantined']} quarantined"))
    for field, text in errors.items():
        rows.append(("error", f"{field}: {text}"))
    for text in r.get("errors") or []:
        rows.append(("error", text))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        colour = "red" if k == "error" else "bold"
        out.write(f"{style(k.ljust(width), colour)}  {v}\n")
    bb = r.get("blackbox")
    if isinstance(bb, dict) and bb.get("events"):
        out.write(style(f"black box ({bb['boots']} boots, {bb['writes']} flash writes "
                        "this boot)", "bold") + "\n")
        for e in bb["events"][-20:]:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e["time"])) if e.get(
                "time") else f"boot {e['boot']} +{e['ms'] / 1000:.1f}s"
            out.write(f"  #{e['seq']:<4} {when:<20} {e['kind']:<13} {e['detail']}\n")
    text, good = verdict(r)
    out.write(style(f"{'verdict'.ljust(width)}  {text}", "green" if good else "red") + "\n")
    out.write(style(f"(report took {r.get('took_ms')} ms on the board)", "dim") + "\n")


def render_selftest(r: dict, out, style: Style) -> list[str]:
    """Print each self-test; returns the failures as text."""
    failures = []
    tests = [("bearer", r["bearer"])] if "bearer" in r else []
    tests += [(name, r[name]) for name in ("tcp", "http") if name in r]
    for name, t in tests:
        steps = "  ".join(f"{k} {v} ms" for k, v in (t.get("steps") or {}).items())
        if "ms" in t:
            steps = f"{t['ms']} ms"
        extra = _kv([("status", t.get("status")), ("bytes", t.get("bytes")),
                     ("address", t.get("address"))])
        if t.get("ok"):
            out.write(f"{style(name.ljust(7), 'bold')} {style('ok', 'green')}  {steps}  "
                      f"{extra}\n")
        else:
            why = f"failed at {t.get('failed')}: {t.get('error')}"
            failures.append(f"{name} {why}")
            out.write(f"{style(name.ljust(7), 'bold')} {style(why, 'red')}  {steps}\n")
    return failures


# -- synack diag ---------------------------------------------------------------------------
def _diag_args(p):
    p.add_argument("what", nargs="?", choices=("report", "selftest"), default="report",
                   help="report (default) or selftest")
    board_args(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--watch", type=float_range(0, 3600, "watch interval"), metavar="N",
                   help="repeat the report every N seconds until Ctrl-C")
    p.add_argument("--link", choices=("auto", "wifi", "cellular"), default="auto",
                   help="which link to report on (default: what the application uses)")
    p.add_argument("--at-timeout", type=int_range(100, 60000, "AT timeout"), default=2000,
                   metavar="MS", help="limit of each modem query (default 2000 ms)")
    p.add_argument("--url", type=url_arg, help="selftest: GET this http(s):// URL")
    p.add_argument("--tcp", type=host_port, metavar="HOST:PORT",
                   help="selftest: DNS lookup and TCP connect to HOST:PORT")
    p.add_argument("--ca", metavar="BOARD_PATH",
                   help="selftest: CA file on the board to verify https:// (default: "
                   "unverified, reported as such)")
    p.add_argument("--step-timeout", type=float_range(0, 120, "step timeout"), default=10.0,
                   metavar="S", help="selftest: seconds each network step (connect, each "
                   "read) may take before it is reported as failed (default 10)")


def cmd_diag(state: State, args) -> None:
    if args.what == "selftest":
        return _selftest(state, args)
    if args.url or args.tcp or args.ca:
        raise CommandError("--url, --tcp and --ca belong to 'synack diag selftest'")
    code = (f"_synack_diag.show(link={args.link!r}, timeout_ms={args.at_timeout}, "
            f"uart_id={args.uart}, baud={args.modem_baud})")
    style = Style(state.out)
    try:
        _report_loop(state, args, code, style)
    except KeyboardInterrupt:
        if not args.watch:
            raise
        # Ctrl-C is how a watch ends: the board is back in its application (the session
        # restored it on the way out), so this is a normal exit, not an interruption


def _report_loop(state: State, args, code: str, style) -> None:
    with board_session(args) as repl:
        while True:
            with device_errors():
                report = run_json(repl, code, timeout=60 + args.at_timeout * 0.03)
            report = secrets.scrub(report)
            if args.json:
                print(json.dumps(report), file=state.out)
            else:
                if args.watch and style.on:
                    state.out.write("\x1b[H\x1b[2J")
                render(report, state.out, style)
            state.out.flush()
            if not args.watch:
                return
            time.sleep(args.watch)


def _selftest(state: State, args) -> None:
    if not (args.url or args.tcp):
        raise CommandError("selftest needs --url URL and/or --tcp HOST:PORT")
    if args.watch:
        raise CommandError("--watch belongs to the report, not to selftest")
    code = ("from synack import selftest as _synack_selftest\n"
            f"_synack_selftest.show_selftest(url={args.url!r}, tcp={args.tcp!r}, "
            f"link={args.link!r}, ca={args.ca!r}, "
            f"timeout_ms={int(args.step_timeout * 1000)})")
    with board_session(args) as repl:
        with device_errors():
            result = secrets.scrub(run_json(repl, code, timeout=180))
    if args.json:
        print(json.dumps(result), file=state.out)
        failures = [t for t in ("bearer", "tcp", "http") if t in result and
                    not result[t].get("ok")]
    else:
        failures = render_selftest(result, state.out, Style(state.out))
    if failures:
        raise CommandError(f"self-test failed: {failures[0]}")


DIAG_COMMANDS = {
    "diag": (cmd_diag, _diag_args, "field diagnostics: report (SIM, signal, registration, "
             "bearer, supervisor, black box) or selftest (DNS, TCP, HTTP timings)"),
    "at": (at_console.cmd_at, at_console.add_arguments, "AT console to the modem through "
           "the board (interactive, commands as arguments, or --script)"),
    "monitor": (monitor.cmd_monitor, monitor.add_arguments, "follow the board's output "
                "with timestamps and decoded firmware events"),
}
