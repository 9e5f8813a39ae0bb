"""``synack ls|cat|cp|rm``: the board's flash filesystem from the host.

Board paths in ``cp`` start with ``:`` (as in mpremote): ``synack cp app.py :/main.py``
uploads, ``synack cp :/log.txt .`` downloads. Uploads go through deploy's writer (temporary
name, then rename; deflate-compressed when the board can inflate), so a link that breaks
mid-copy never leaves a half-written file under the real name. Downloads are base64 lines,
binary-safe.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from . import deploy
from .board_commands import _port_args, progress_bar, session, write_output
from .command import CommandError, State, describe_os_error, read_input
from .transport import DeviceError


@contextlib.contextmanager
def board_path_errors(path: str) -> Iterator[None]:
    """An OSError on the board about ``path`` (no such file, is a directory ...) as one
    line, ``:PATH: no such file or directory on the board``, instead of the device's
    traceback; other device exceptions pass through."""
    try:
        yield
    except DeviceError as e:
        if e.exc_type != "OSError":
            raise
        m = re.search(r"\[Errno (\d+)\]|^(\d+)$|\b(E[A-Z]+)\b", e.message)
        if not m:
            raise
        if m.group(3):
            code = getattr(errno, m.group(3), None)
        else:
            code = int(m.group(1) or m.group(2))
        if code is None:
            raise
        why = describe_os_error(OSError(code, os.strerror(code)))
        raise CommandError(f":{path}: {why} on the board") from None


def _path_args(p):
    _port_args(p)
    p.add_argument("path", nargs="?", default="/", help="path on the board (default /)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


_LS = """
import os
_out = []
for _e in os.ilistdir(%r):
    _out.append((_e[0], _e[1] == 0x4000, _e[3] if len(_e) > 3 else -1))
print(repr(sorted(_out)))
"""


def cmd_ls(state: State, args) -> None:
    with session(state, args) as repl, board_path_errors(args.path):
        entries = repl.eval_code(_LS % args.path)
    if not isinstance(entries, list):
        raise CommandError(f"unexpected answer from the board to ls: {str(entries)[:200]!r}")
    if args.json:
        print(json.dumps([{"name": n, "dir": d, "size": sz} for n, d, sz in entries]),
              file=state.out)
        return
    for name, is_dir, size in entries:
        print(f"{'' if is_dir else size:>9} {name}{'/' if is_dir else ''}", file=state.out)


_CAT = """
import binascii
with open(%r, 'rb') as _f:
    while True:
        _b = _f.read(384)
        if not _b:
            break
        print(binascii.b2a_base64(_b).decode().strip())
"""

# (is a directory, size) of a board path, or None when it does not exist
_STAT = """
import os
try:
    _s = os.stat(%r)
    print(repr((_s[0] & 0x4000 != 0, _s[6])))
except OSError:
    print(None)
"""


def read_board_file(repl, path: str) -> bytes:
    return b"".join(base64.b64decode(line) for line in repl.exec(_CAT % path).split())


def _cat_args(p):
    _port_args(p)
    p.add_argument("path", help="file on the board")


def cmd_cat(state: State, args) -> None:
    with session(state, args) as repl, board_path_errors(args.path):
        data = read_board_file(repl, args.path)
    write_output(state, data)


def cmd_rm(state: State, args) -> None:
    with session(state, args) as repl, board_path_errors(args.path):
        repl.exec(f"import os\nos.remove({args.path!r})")


def _cp_args(p):
    _port_args(p)
    p.add_argument("src", help="source: a local file, or :PATH on the board")
    p.add_argument("dst", help="destination: :PATH on the board, or a local path")


def _board_path(text: str) -> str | None:
    return text[1:] or "/" if text.startswith(":") else None


def cmd_cp(state: State, args) -> None:
    src, dst = _board_path(args.src), _board_path(args.dst)
    if (src is None) == (dst is None):
        raise CommandError("cp copies between host and board: exactly one of SRC and DST "
                           "must be a board path starting with ':' (e.g. cp app.py :/main.py)")
    if dst is not None:
        _upload(state, args, Path(args.src), dst)
    else:
        _download(state, args, src or "/", Path(args.dst))


def _upload(state: State, args, local: Path, target: str) -> None:
    data = read_input(local)
    with session(state, args) as repl:
        info = repl.eval_code(_STAT % target)
        if target.endswith("/") or (info is not None and info[0]):
            target = target.rstrip("/") + "/" + local.name
        _, can_inflate = deploy.probe(repl)
        step = progress_bar(len(data), state.err)
        try:
            deploy.send_item(repl, deploy.Item(str(local), target, data), step,
                             compress=can_inflate)
        except deploy.DeployError as e:
            raise CommandError(str(e)) from None
        finally:
            state.err.write("\n")
    print(f"{local} -> :{target} ({len(data)} bytes)", file=state.out)


def _download(state: State, args, source: str, local: Path) -> None:
    if local.is_dir():
        local = local / os.path.basename(source.rstrip("/"))
    with session(state, args) as repl:
        info = repl.eval_code(_STAT % source)
        if info is None:
            raise CommandError(f":{source}: no such file on the board")
        if info[0]:
            raise CommandError(f":{source} is a directory (cp copies single files)")
        data = read_board_file(repl, source)
    # write beside the destination, then rename: an interrupted copy leaves the old file
    tmp = local.with_name(local.name + ".synack-tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, local)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CommandError(f"cannot write {local}: {describe_os_error(e)}") from None
    print(f":{source} -> {local} ({len(data)} bytes)", file=state.out)


FS_COMMANDS = {
    "ls": (cmd_ls, _path_args, "list a directory on the board"),
    "cat": (cmd_cat, _cat_args, "print a file from the board (binary-safe)"),
    "cp": (cmd_cp, _cp_args, "copy a file between host and board (board paths start "
           "with ':')"),
    "rm": (cmd_rm, _cat_args, "remove a file on the board"),
}
