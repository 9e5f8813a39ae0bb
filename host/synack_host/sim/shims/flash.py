"""The virtual board's flash as a jail: every device path maps into the flash directory.

A board's filesystem has nothing above its root: littlefs (and MicroPython's VFS) stop
``..`` at ``/``, so ``/../x`` is ``/x``. The flash of the virtual board is a host
directory, and without care a device path such as ``../../etc/hostname`` or a symlink in
that directory would lead out of it. ``device_path`` is the one place that decides: it
normalises a device path against the current directory (``.`` and ``..`` resolved, ``..``
stopped at the root) and refuses, as a path that does not exist (``ENOENT``), one whose
symlinks lead outside the flash. Every engine uses it: the cpython engine's ``os`` and
``open`` shims, and the micropython (WASI) and unix engines through a VFS in the VM that
asks the engine process (engine_wasm, engine_unix).
"""

from __future__ import annotations

import errno
import os


def normalise(cwd: str, path: str) -> str:
    """The absolute device path ``path`` names from the device directory ``cwd``:
    ``/a/b``, ``/`` for the root; ``..`` at the root stays at the root."""
    parts: list[str] = []
    for part in (path if path.startswith("/") else cwd + "/" + path).split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


def _inside(root: str, host: str) -> bool:
    return host == root or host.startswith(root.rstrip(os.sep) + os.sep)


def device_path(root: str, cwd: str, path: str, follow: bool = True) -> str:
    """The absolute device path ``path`` leads to (see ``normalise``) with its symlinks
    resolved, checked to stay in the flash directory ``root`` (a real path). With
    ``follow=False`` a symlink as the last component is not followed (remove and rename
    act on the link itself). Raises OSError(ENOENT) for a path that leads outside.

    The answer has no symlinks left, so that a VM which cannot follow them (WASI refuses
    absolute ones) still reaches what they point to inside the flash."""
    dev = normalise(cwd, path)
    host = os.path.join(root, dev[1:]) if dev != "/" else root
    if follow or dev == "/":
        real = os.path.realpath(host)
    else:
        real = os.path.join(os.path.realpath(os.path.dirname(host)), os.path.basename(host))
    if not _inside(root, real):
        raise OSError(errno.ENOENT, "ENOENT")
    rel = os.path.relpath(real, root)
    return "/" if rel == "." else "/" + rel.replace(os.sep, "/")


def host_path(root: str, cwd: str, path: str, follow: bool = True) -> str:
    """The host path of a device path (``device_path`` joined to ``root``)."""
    dev = device_path(root, cwd, path, follow)
    return os.path.join(root, dev[1:]) if dev != "/" else root
