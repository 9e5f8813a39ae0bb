"""``synack ls|cat|cp|rm``: the board's flash filesystem from the host.

Board paths in ``cp`` start with ``:`` (as in mpremote): ``synack cp app.py :/main.py``
uploads, ``synack cp :/log.txt .`` downloads. Uploads land under a temporary name that is
renamed over the target when complete, so a link that breaks mid-copy never leaves a
half-written file under the real name: as raw bytes to code running on the board
(upload.py: flow-controlled, length and sha256 checked; zlib-compressed when the board can
inflate and that is smaller), else through deploy's base64 writer. Downloads are base64
lines, binary-safe. The board-side code is transport/fs.py.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from . import deploy
from .board_commands import _port_args, progress_bar, session, write_output
from .command import CommandError, State, describe_os_error, read_input
from .transport import DeviceError
from .transport import fs as board_fs


@contextlib.contextmanager
def board_path_errors(path: str) -> Iterator[None]:
    """An OSError on the board about ``path`` (no such file, is a directory ...) as one
    line, ``:PATH: no such file or directory on the board``, instead of the device's
    traceback; other device exceptions pass through."""
    try:
        yield
    except DeviceError as e:
        error = board_fs.board_oserror(e, path)
        if error is None:
            raise
        raise CommandError(f":{path}: {describe_os_error(error)} on the board") from None


def _path_args(p):
    _port_args(p)
    p.add_argument("path", nargs="?", default="/", help="path on the board (default /)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_ls(state: State, args) -> None:
    with session(state, args) as repl, board_path_errors(args.path):
        try:
            entries = board_fs.list_dir(repl, args.path)
        except ValueError as e:
            raise CommandError(str(e)) from None
    if args.json:
        print(json.dumps([{"name": n, "dir": d, "size": sz} for n, d, sz in entries]),
              file=state.out)
        return
    for name, is_dir, size in entries:
        print(f"{'' if is_dir else size:>9} {name}{'/' if is_dir else ''}", file=state.out)


# what the raw-byte upload needs (upload.py), and whether the board can inflate
_CAPS = """
import sys
_z = _b = 0
try:
    import deflate
    _z = 1
except ImportError:
    pass
try:
    import micropython, select, hashlib
    _b = int(hasattr(micropython, 'kbd_intr') and hasattr(sys.stdin, 'buffer')
             and hasattr(select, 'poll') and hasattr(hashlib, 'sha256'))
except ImportError:
    pass
print(repr((_z, _b)))
"""

# after upload.RECV has written <target>.tmp (or .tmp.z, inflated here): the rename
_LAND = """
def _land(tmp, dst, z):
    if z:
        import deflate
        s = open(tmp + '.z', 'rb')
        d = deflate.DeflateIO(s, deflate.ZLIB)
        f = open(tmp, 'wb')
        m = memoryview(bytearray(512))
        while True:
            n = d.readinto(m)
            if not n:
                break
            f.write(m[:n])
        f.close()
        s.close()
        os.remove(tmp + '.z')
    try:
        os.rename(tmp, dst)
    except OSError:
        os.remove(dst)
        os.rename(tmp, dst)
"""


def write_board_file(repl, item: deploy.Item, progress=None) -> None:
    """Write ``item.data`` to ``item.target`` via ``<target>.tmp``, renamed when complete.
    Raw bytes (upload.py) on a board that takes them - 3/4 of base64's wire bytes and no
    round trip per chunk - compressed when the board can inflate and that is smaller;
    else deploy's base64 writer. DeployError names a full flash."""
    import zlib

    from . import upload

    can_inflate, binary = repl.eval_code(_CAPS)
    if not (binary and hasattr(repl, "link")):
        deploy.send_item(repl, item, progress, compress=bool(can_inflate))
        return
    tmp = item.target + ".tmp"
    packed = zlib.compress(item.data, 9) if can_inflate else item.data
    zipped = len(packed) < len(item.data)
    payload = packed if zipped else item.data
    parents = deploy._parents(item.target)
    landing = tmp + ".z" if zipped else tmp
    code = (upload.RECV + _LAND
            + f"for _d in {parents!r}:\n    try:\n        os.mkdir(_d)\n"
              "    except OSError:\n        pass\n"
            + upload.recv_call(landing, payload)
            + f"_land({tmp!r}, {item.target!r}, {int(zipped)})\n")
    done = [0, 0]

    def step(n: int) -> None:   # file bytes, scaled from payload bytes
        done[0] += n
        now = done[0] * len(item.data) // max(len(payload), 1)
        if progress:
            progress(now - done[1])
        done[1] = now

    what = f"{item.target} ({len(item.data)} bytes)"
    try:
        upload.stream(repl, code, payload, step)
    except DeviceError as e:
        deploy._discard(repl, [tmp, tmp + ".z"])
        raise deploy.failure(e, what) from None
    except upload.UploadError as e:
        raise deploy.DeployError(f"writing {what}: {e}; the previous version is kept") \
            from None


def _cat_args(p):
    _port_args(p)
    p.add_argument("path", help="file on the board")


def cmd_cat(state: State, args) -> None:
    with session(state, args) as repl, board_path_errors(args.path):
        data = board_fs.read_file(repl, args.path)
    write_output(state, data)


def cmd_rm(state: State, args) -> None:
    with session(state, args) as repl, board_path_errors(args.path):
        board_fs.remove(repl, args.path)


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
        info = board_fs.stat(repl, target)
        if target.endswith("/") or (info is not None and info[0]):
            target = target.rstrip("/") + "/" + local.name
        step = progress_bar(len(data), state.err)
        try:
            write_board_file(repl, deploy.Item(str(local), target, data), step)
        except deploy.DeployError as e:
            raise CommandError(str(e)) from None
        finally:
            state.err.write("\n")
    print(f"{local} -> :{target} ({len(data)} bytes)", file=state.out)


def _download(state: State, args, source: str, local: Path) -> None:
    if local.is_dir():
        local = local / os.path.basename(source.rstrip("/"))
    with session(state, args) as repl:
        info = board_fs.stat(repl, source)
        if info is None:
            raise CommandError(f":{source}: no such file on the board")
        if info[0]:
            raise CommandError(f":{source} is a directory (cp copies single files)")
        data = board_fs.read_file(repl, source)
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
