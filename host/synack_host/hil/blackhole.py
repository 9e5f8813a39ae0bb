"""A silent blackhole for one local TCP port: both directions dropped on arrival, no RST,
no ICMP — what a peer that lost power or a NAT that forgot the mapping looks like.

It is an nftables table of its own, hooked on *input* so packets leave their sender
normally (the sender's stack sees no local error) and vanish before the receiver; the
table is deleted on exit, even after a failure. Needs root and the ``nft`` tool.

    with PortBlackhole(server.port):
        ...   # the connection to server.port is now silent
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess

_counter = itertools.count()


class BlackholeError(RuntimeError):
    pass


def blackhole_unavailable() -> str | None:
    """Why a blackhole cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (nftables rules)"
    if shutil.which("nft") is None:
        return "needs the nft tool (Debian package nftables)"
    return None


def _nft(*args: str) -> None:
    res = subprocess.run(["nft", *args], capture_output=True, text=True, timeout=10,
                         check=False)
    if res.returncode != 0:
        raise BlackholeError(f"nft {' '.join(args)} failed: {res.stderr.strip()}")


class PortBlackhole:
    def __init__(self, port: int):
        why = blackhole_unavailable()
        if why:
            raise BlackholeError(f"cannot blackhole port {port}: {why}")
        self.port = port
        self.table = f"synack_blackhole_{os.getpid()}_{next(_counter)}"
        self.active = False

    def start(self) -> PortBlackhole:
        _nft("add", "table", "inet", self.table)
        try:
            _nft("add", "chain", "inet", self.table, "input",
                 "{ type filter hook input priority -10 ; }")
            _nft("add", "rule", "inet", self.table, "input", "tcp", "dport", str(self.port),
                 "drop")
            _nft("add", "rule", "inet", self.table, "input", "tcp", "sport", str(self.port),
                 "drop")
        except BlackholeError:
            self.stop()
            raise
        self.active = True
        return self

    def stop(self) -> None:
        subprocess.run(["nft", "delete", "table", "inet", self.table], capture_output=True,
                       timeout=10, check=False)
        self.active = False

    def __enter__(self) -> PortBlackhole:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
