"""``synack flash IMAGE``: write a MicroPython image with esptool, see the board boot,
optionally provision it (``--deploy``, ``--config``/``--config-template``) and record it
(``--record``); ``--ports`` flashes many boards at once.

Everything that can be checked without a board is checked before any port is opened
(the image, the offset, the config, the record file); what needs the board (its chip,
its flash size) is checked in the ROM loader before a byte is written. Failures are
FlashError inside (flash.py, flash_provision.py) and one CommandError here.
"""

from __future__ import annotations

import argparse
import glob
import os
import threading
import time
from pathlib import Path

from . import __version__, secrets
from .command import CommandError, State, baud_rate
from .flash import CHIPS, MAX_IMAGE, FlashError, FlashOptions, flash_board, inspect_image
from .flash_provision import (BoardConfig, Record, RecordFile, device_id, now_iso, provision,
                              run_all)

BEFORE = {"default": "default-reset", "no-reset": "no-reset"}
AFTER = ("hard-reset", "soft-reset", "watchdog-reset", "no-reset")
SECTOR = 0x1000


def flash_offset(text: str) -> int:
    """An argparse type: a flash offset, decimal or 0x..., sector (4 KiB) aligned."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"offset must be a number like 0x1000, got "
                                         f"{text!r}") from None
    if not 0 <= value < MAX_IMAGE or value % SECTOR:
        raise argparse.ArgumentTypeError(f"offset must be a multiple of 0x1000 below "
                                         f"0x{MAX_IMAGE:x}, got {text}")
    return value


def boot_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.5 <= value <= 600:
        raise argparse.ArgumentTypeError(f"boot timeout must be 0.5..600 seconds, got {text!r}")
    return value


def _flash_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="the firmware image (.bin) to write, e.g. MicroPython's "
                   "ESP32_GENERIC-*.bin")
    where = p.add_mutually_exclusive_group()
    where.add_argument("-p", "--port", default=os.environ.get("SYNACK_PORT"),
                       help="serial port of the board in download mode (default: "
                       "$SYNACK_PORT)")
    where.add_argument("--ports", nargs="+", metavar="PORT", help="flash several boards at "
                       "once; each PORT may be a glob such as '/dev/ttyUSB*'")
    p.add_argument("--chip", choices=["auto", *CHIPS], default="auto",
                   help="refuse a board that is not this chip (default: auto, taken from "
                   "the image and checked against the board)")
    p.add_argument("--offset", type=flash_offset, metavar="N",
                   help="flash offset (default: where the chip's ROM boots from: 0x1000 on "
                   "ESP32/ESP32-S2, 0x0 on S3/C3/C6)")
    p.add_argument("--erase", action="store_true", help="erase the whole flash first (also "
                   "the filesystem)")
    p.add_argument("--baud", type=baud_rate, default=460800,
                   help="baud rate for the write, after connecting at 115200 (default "
                   "460800; 921600 works with most USB bridges)")
    p.add_argument("--no-stub", action="store_true", help="let the chip's ROM loader "
                   "write instead of esptool's flasher stub (slower; for a board the stub "
                   "fails on)")
    p.add_argument("--no-verify", action="store_true", help="skip the verify pass after the "
                   "write (esptool still checks the MD5 of what it wrote)")
    p.add_argument("--before", choices=list(BEFORE), default="default",
                   help="default: reset into download mode through DTR/RTS; no-reset: the "
                   "board is already in download mode (BOOT held at reset)")
    p.add_argument("--after", choices=AFTER, default="hard-reset",
                   help="how to start the new firmware: hard-reset (RTS, default), "
                   "soft-reset (the ROM's run-user-code; the virtual board), watchdog-reset "
                   "(ESP32-S3 and later), no-reset (stay in the loader, no banner check)")
    p.add_argument("--boot-timeout", type=boot_seconds, default=15.0, metavar="SECONDS",
                   help="seconds to wait for MicroPython's banner after the reset "
                   "(default 15)")
    g = p.add_argument_group("provisioning (after the board boots)")
    g.add_argument("--deploy", action="store_true",
                   help="copy the synack firmware package to the board (as synack deploy)")
    g.add_argument("--dest", default="/lib", help="directory for --deploy (default /lib)")
    cfg = g.add_mutually_exclusive_group()
    cfg.add_argument("--config", type=Path, metavar="FILE", help="write this JSON config to "
                     "/synack_config.json on every board")
    cfg.add_argument("--config-template", type=Path, metavar="FILE", help="a JSON config "
                     "where {mac} and {device_id} become each board's MAC and its 12 hex "
                     "digits")
    g.add_argument("--record", type=Path, metavar="FILE", help="append one JSON line per "
                   "board: port, chip, MAC, image sha256, MicroPython version, package "
                   "hash, result, timings")
    p.add_argument("--json", action="store_true", help="print the records as JSON lines "
                   "instead of the summary")
    p.add_argument("-v", "--verbose", action="store_true", help="show esptool's output")


def _ports(args) -> list[str]:
    if args.ports:
        out: list[str] = []
        for pattern in args.ports:
            matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            if not matches:
                raise CommandError(f"--ports {pattern}: matches no port")
            out += [m for m in matches if m not in out]
        return out
    if not args.port:
        raise CommandError("no port: give -p PORT, --ports PORT ... or set SYNACK_PORT")
    return [args.port]


def cmd_flash(state: State, args) -> None:
    wants_boot = args.deploy or args.config or args.config_template
    if wants_boot and args.after == "no-reset":
        raise CommandError("--deploy/--config need the board to boot: not with --after "
                           "no-reset")
    if args.erase and args.no_stub:
        raise CommandError("--erase needs the flasher stub (the ROM cannot erase the whole "
                           "chip): leave out --no-stub")
    ports = _ports(args)
    try:     # everything that needs no board, before any port is opened
        source = args.config or args.config_template
        config = BoardConfig(source, template=bool(args.config_template)) if source else None
        image = inspect_image(args.image)
        if args.chip != "auto" and args.chip != image.chip:
            raise FlashError(f"{args.image} is an {image.chip_name} image, --chip says "
                             f"{args.chip}")
        offset = image.default_offset if args.offset is None else args.offset
        if offset + len(image.data) > MAX_IMAGE:
            raise FlashError(f"{args.image} ({len(image.data)} bytes) at 0x{offset:x} "
                             f"ends beyond 16 MiB, the largest flash there is")
        record = RecordFile(args.record) if args.record else None
    except FlashError as e:
        raise CommandError(str(e)) from None
    opts = FlashOptions(offset=args.offset, chip=args.chip, erase=args.erase,
                        baud=args.baud, verify=not args.no_verify,
                        before=BEFORE[args.before], after=args.after,
                        boot_timeout=args.boot_timeout, stub=not args.no_stub)
    rows = Rows(state.err, ports)

    def job(port: str) -> Record:
        rec: Record = {"time": now_iso(), "port": port, "image": str(args.image),
                     "image_sha256": image.sha256, "image_version": image.version,
                     "bytes": len(image.data),
                     "offset": offset, "synack": __version__}
        t0 = time.monotonic()
        try:
            echo = (lambda text: rows.say(port, text)) if args.verbose else None
            done = flash_board(port, image, opts, rows.reporter(port), echo)
            rec.update(chip=done.chip, mac=done.mac, device_id=device_id(done.mac),
                       flash_size=done.flash_size, micropython=done.version,
                       banner=done.banner, verified=opts.verify, timings=done.timings)
            if args.deploy or config is not None:
                rows.update(port, "provisioning", 0, 0, None)
                t = time.monotonic()
                board_config = config.for_board(done.mac) if config is not None else None
                rec.update(provision(port, args.deploy, args.dest, board_config,
                                     lambda d, n: rows.update(port, "deploying", d, n, None)))
                done.timings["provisioning"] = round(time.monotonic() - t, 3)
            rec["result"] = "ok"
        except FlashError as e:
            if e.result is not None:
                rec.update(chip=e.result.chip, mac=e.result.mac,
                           device_id=device_id(e.result.mac), timings=e.result.timings)
            rec.update(result="failed", error=secrets.mask(str(e)))
        rec["seconds"] = round(time.monotonic() - t0, 3)
        rows.finish(port, rec)
        if record is not None:
            try:
                record.append(rec)
            except OSError as e:
                rec.update(result="failed", error=f"cannot append to --record "
                           f"{args.record}: {e.strerror or e}")
        return rec

    results = run_all(ports, job)
    rows.close()
    _summary(state, args, results)
    failed = [r for r in results if r["result"] != "ok"]
    if failed and len(results) == 1:
        raise CommandError(failed[0]["error"])
    if failed:
        first = failed[0]["error"]
        raise CommandError(f"{len(failed)} of {len(results)} boards failed; first: {first}")


def _summary(state: State, args, results: list[Record]) -> None:
    import json

    out = state.out
    if args.json:
        for r in results:
            print(json.dumps(secrets.scrub(dict(r)), sort_keys=True), file=out)
        return
    if len(results) == 1:
        r = results[0]
        if r["result"] == "ok":
            boots = (f"; boots MicroPython {r['micropython']}" if r.get("micropython")
                     else "; left in the loader")
            extra = ""
            if "package_sha256" in r:
                extra += f"; firmware package {r['package_sha256'][:12]} " \
                         f"({r['files_sent']} of {r['files']} files sent)"
            if "config_bytes" in r:
                extra += f"; config {r['config_bytes']} bytes"
            print(f"flashed {args.image} to {r['port']} ({r['chip']}, MAC {r['mac']}) at "
                  f"0x{r['offset']:x}: {r['bytes']} bytes in {r['seconds']:.1f} s"
                  f"{', verified' if r.get('verified') else ''}{boots}{extra}", file=out)
        return
    head = ("PORT", "CHIP", "MAC", "RESULT", "MICROPYTHON", "SECONDS")
    table = [head] + [(r["port"], r.get("chip", "-") or "-", r.get("mac", "-") or "-",
                       r["result"], (r.get("micropython") or "-").split(" on ")[0],
                       f"{r.get('seconds', 0):.1f}") for r in results]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)
    for r in results:
        if r["result"] != "ok":
            error = r["error"]
            print(error if error.startswith(r["port"]) else f"{r['port']}: {error}", file=out)


class Rows:
    """One status line per board on stderr: redrawn in place on a terminal, a plain
    line per phase when piped."""

    def __init__(self, err, ports: list[str]):
        self.err = err
        self.ports = ports
        self.live = bool(getattr(err, "isatty", lambda: False)())
        self.text = {p: "waiting" for p in ports}
        self.phase = dict.fromkeys(ports, "")
        self.lock = threading.Lock()
        self.drawn = 0
        self.last = 0.0
        self.width = max(len(p) for p in ports)

    def reporter(self, port: str):
        return lambda phase, done, total, off: self.update(port, phase, done, total, off)

    def update(self, port: str, phase: str, done: int, total: int, offset) -> None:
        if total:
            width = 24
            n = width * done // total
            where = f" at 0x{offset:08x}" if offset is not None else ""
            text = f"{phase} [{'#' * n}{'.' * (width - n)}] {100 * done // total:3d}%{where}"
        else:
            text = phase
        with self.lock:
            self.text[port] = text
            if not self.live:
                if phase != self.phase[port]:
                    self.phase[port] = phase
                    self._line(f"{port.ljust(self.width)}  {phase}")
                return
            now = time.monotonic()
            if now - self.last >= 0.1 or not total or done >= total:
                self.last = now
                self._redraw()

    def say(self, port: str, text: str) -> None:
        """--verbose: esptool's own lines, prefixed with the port."""
        with self.lock:
            self._clear()
            self._line(f"{port}: {secrets.mask(text)}")
            if self.live:
                self._redraw()

    def finish(self, port: str, rec: Record) -> None:
        if rec["result"] == "ok":
            text = f"ok  {rec.get('micropython') or 'not booted (--after no-reset)'}"
        else:
            text = "FAILED"
        with self.lock:
            self.text[port] = text
            if self.live:
                self._redraw()
            else:
                self._line(f"{port.ljust(self.width)}  {text}")

    def close(self) -> None:
        with self.lock:
            if self.live and self.drawn:
                self.err.flush()
            self.drawn = 0

    def _clear(self) -> None:
        if self.live and self.drawn:
            self.err.write(f"\x1b[{self.drawn}A\r\x1b[J")
            self.drawn = 0

    def _redraw(self) -> None:
        up = f"\x1b[{self.drawn}A" if self.drawn else ""
        body = "".join(f"\r\x1b[K{p.ljust(self.width)}  {self.text[p]}\n" for p in self.ports)
        self.err.write(up + body)
        self.err.flush()
        self.drawn = len(self.ports)

    def _line(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()


FLASH_COMMANDS = {
    "flash": (cmd_flash, _flash_args, "write a firmware image with esptool, wait for "
              "MicroPython's banner; optionally deploy, configure and record each board"),
}
