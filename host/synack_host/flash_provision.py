"""After ``synack flash``: provision each board and keep a record of it.

* ``BoardConfig`` - ``--config FILE`` (one config for every board) or
  ``--config-template FILE`` (JSON text where ``{mac}`` and ``{device_id}`` become the
  board's own MAC, as esptool read it from the eFuses, and the MAC's 12 hex digits),
  checked against ``config.CONFIG_SCHEMA`` before any board is touched and again for
  each board; its secrets (Wi-Fi key, SIM PIN) are registered with ``secrets`` so that
  no message or record shows them.
* ``provision(port, ...)`` - after the banner: the firmware package (``deploy.plan`` +
  ``bundle.send_changed``, the code ``synack deploy`` runs) and the config, over the
  raw REPL.
* ``RecordFile`` - one JSON line per board, appended with a single ``write`` and
  ``fsync`` (several boards finish at once; a crash leaves whole lines).
* ``run_all(ports, job)`` - one thread per board; a failure stays with its board.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import secrets
from .flash import FlashError

Record = dict[str, Any]       # one board's record: a JSON object

SAMPLE_MAC = "02:00:00:00:00:00"
SECRET_FIELDS = (("wifi", "key"), ("pin",))


def device_id(mac: str) -> str:
    """The board's id as configs use it: its base MAC as 12 lower-case hex digits."""
    return mac.replace(":", "").lower()


class BoardConfig:
    """The config each board gets (or None for none)."""

    def __init__(self, path: Path, template: bool):
        from .command import describe_os_error, read_regular_file
        from .config import CONFIG_MAX_BYTES

        self.path = path
        self.template = template
        try:
            raw = read_regular_file(path, CONFIG_MAX_BYTES)
        except OSError as e:
            raise FlashError(f"config {path}: {describe_os_error(e)}") from None
        try:
            self.text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FlashError(f"config {path}: not UTF-8 text") from None
        if not template and ("{mac}" in self.text or "{device_id}" in self.text):
            raise FlashError(f"config {path} holds {{mac}}/{{device_id}}: give it as "
                             "--config-template to have them filled in per board")
        self.for_board(SAMPLE_MAC)          # refused now, before any board is flashed

    def for_board(self, mac: str) -> Record:
        from .config import parse_config

        text = self.text
        if self.template:
            text = text.replace("{mac}", mac).replace("{device_id}", device_id(mac))
        try:
            data = parse_config(text)
        except ValueError as e:
            raise FlashError(f"config {self.path}: {secrets.mask(str(e))}") from None
        register_secrets(data)
        return data


def register_secrets(config: Record) -> None:
    for path in SECRET_FIELDS:
        value: Any = config
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str):
            secrets.register(value)


def package_hash(items) -> str:
    """One sha256 for the firmware package as deployed: every target path and the
    sha256 of its content."""
    h = hashlib.sha256()
    for item in sorted(items, key=lambda i: i.target):
        h.update(f"{item.target}\0{item.sha256}\n".encode())
    return h.hexdigest()


def provision(port: str, deploy_package: bool, dest: str, config: Record | None,
              progress: Callable[[int, int], None] | None = None) -> Record:
    """Deploy the firmware package and/or write the config on a booted board; returns
    what went there (for the record)."""
    from . import deploy
    from .bundle import send_changed
    from .config import write_config
    from .transport import DeviceError, RawRepl, TransportError, open_link

    out: Record = {}
    try:
        link = open_link(port, 115200)
        try:
            repl = RawRepl(link)
            repl.enter()
            if deploy_package:
                plan = deploy.plan(repl, dest)
                out.update(package_sha256=package_hash(plan.items), files=len(plan.items),
                           files_sent=len(plan.changed), bytes_sent=plan.bytes_to_send)
                total = plan.bytes_to_send
                done = [0]

                def step(n: int) -> None:
                    done[0] += n
                    if progress:
                        progress(done[0], total)
                send_changed(repl, plan, step)
            if config is not None:
                out["config_bytes"] = write_config(repl, config)
            repl.exit()
        finally:
            link.close()
    except (TransportError, DeviceError, deploy.DeployError) as e:
        raise FlashError(f"{port}: flashed and booted, but provisioning failed: "
                         f"{secrets.mask(str(e))}") from None
    return out


class RecordFile:
    """``--record FILE``: JSON lines, appended whole."""

    def __init__(self, path: Path):
        from .command import describe_os_error

        self.path = path
        self._lock = threading.Lock()
        try:     # refused before any board is flashed
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                import stat

                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise OSError(0, "not a regular file")
            finally:
                os.close(fd)
        except OSError as e:
            raise FlashError(f"cannot write --record {path}: {describe_os_error(e)}") from None

    def append(self, record: Record) -> None:
        line = (json.dumps(secrets.scrub(dict(record)), sort_keys=True) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         0o644)
            try:
                n = os.write(fd, line)        # O_APPEND: one write lands whole
                if n != len(line):
                    raise OSError(0, f"short write ({n} of {len(line)} bytes)")
                os.fsync(fd)
            finally:
                os.close(fd)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def run_all(ports: list[str], job: Callable[[str], Record]) -> list[Record]:
    """``job(port)`` for every port at once, one thread each; results in port order.
    ``job`` returns its record and must not raise (it records its own failure)."""
    results: dict[str, Record] = {}

    def run(port: str) -> None:
        try:
            results[port] = job(port)
        except BaseException as e:          # a bug in one board's job: still a row
            results[port] = {"port": port, "result": "failed",
                             "error": f"internal error: {type(e).__name__}: {e}"}

    if len(ports) == 1:
        run(ports[0])
    else:
        threads = [threading.Thread(target=run, args=(p,), name=f"flash {p}", daemon=True)
                   for p in ports]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return [results[p] for p in ports]
