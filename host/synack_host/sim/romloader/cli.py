"""``synack sim board --download``: the options and the handler (kept here so that
sim_commands.py only routes to it)."""

from __future__ import annotations

import argparse
import os
import tempfile

from ...command import CommandError, State, describe_os_error

DEFAULT_MAC = "24:0a:c4:00:5a:c4"


def add_download_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("download mode (the virtual ROM loader; see "
                             "docs/virtual-board.md)")
    g.add_argument("--download", action="store_true",
                   help="start in the ROM's serial download mode, as a board does when "
                   "BOOT (GPIO0) is held while it is reset; esptool flashes it")
    g.add_argument("--chip", choices=["esp32", "esp32s3"], default="esp32",
                   help="chip to emulate (default: esp32)")
    g.add_argument("--flash", metavar="FILE", help="the SPI flash, byte for byte (created "
                   "erased if missing; default: a temporary file)")
    g.add_argument("--mac", default=DEFAULT_MAC, help=f"base MAC in the eFuses "
                   f"(default {DEFAULT_MAC})")
    g.add_argument("--control", metavar="PATH", help="Unix socket for the buttons and the "
                   "command log: 'synack sim fault PATH reset|download|status|log'")
    g.add_argument("--no-pacing", action="store_true", help="move bytes as fast as the "
                   "pty does (default: at the loader's baud rate, 115200 after reset, "
                   "then what esptool's --baud sets)")


def run_download(state: State, args: argparse.Namespace) -> None:
    from ..board import Board
    from ..engines import make_engine
    from ..pty import PtyLink
    from .chips import CHIPS, parse_mac
    from .driver import DownloadBoard
    from .flash import Flash, FlashError, parse_size

    try:
        mac = parse_mac(args.mac)
        size = parse_size(str(args.flash_size or "4MB"))
    except (ValueError, FlashError) as e:
        raise CommandError(str(e)) from None
    chip = CHIPS[args.chip]
    trace = None
    if args.verbose:
        def trace(text: str) -> None:
            print(text, file=state.err, flush=True)
    with tempfile.TemporaryDirectory(prefix="synack-download-") as tmp:
        root = args.fs or os.path.join(tmp, "fs")
        os.makedirs(root, exist_ok=True)
        try:
            flash = Flash(args.flash or os.path.join(tmp, "flash.bin"), size)
        except FlashError as e:
            raise CommandError(str(e)) from None
        except OSError as e:
            raise CommandError(f"--flash {args.flash}: {describe_os_error(e)}") from None
        mcu = chip.name.replace("-", "")    # MicroPython's MICROPY_HW_MCU_NAME: ESP32S3

        def make_board(version: str, pty: PtyLink) -> Board:
            engine = make_engine(args.engine, root, args.uart1, args.micropython)
            return Board(engine, version=version, mcu=mcu, pty=pty, trace=trace)

        try:
            board = DownloadBoard(chip, flash, mac, make_board, pace=not args.no_pacing,
                                  board_baud=args.baud, link_path=args.link,
                                  control_path=args.control, trace=trace)
        except OSError as e:
            flash.close()
            raise CommandError(f"cannot set up the board: {describe_os_error(e)}") from None
        print(board.port, file=state.out, flush=True)   # first line: what launchers wait for
        board.run_until_signalled()
