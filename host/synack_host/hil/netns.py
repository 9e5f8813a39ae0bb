"""Linux network namespace plumbing for the HIL network: commands, setns, sysctls, cleanup.

Small, dependency-free helpers used by :mod:`synack_host.hil.network`:

- :func:`run` runs a command and raises :class:`NetworkError` (with the command, exit code
  and stderr) when it fails;
- :func:`inside` enters a named namespace *for the calling thread only* (``setns(2)`` on
  ``/var/run/netns/NAME``) and returns to the original one on exit, so that sockets created
  in the block live in that namespace; :func:`call_in` does the same in a helper thread;
- :func:`sysctl` writes ``/proc/sys`` inside a namespace (no ``sysctl`` binary needed);
- :func:`cleanup_stale` deletes ``synack-*`` namespaces left behind by dead processes.

Namespaces made here are named ``synack-<pid>-<n>-<role>``; the pid tells
:func:`cleanup_stale` whether their owner is still alive.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

PREFIX = "synack-"
NETNS_DIR = "/var/run/netns"
CLONE_NEWNET = 0x40000000
TOOL_PACKAGES = {"ip": "iproute2", "tc": "iproute2", "nft": "nftables", "tcpdump": "tcpdump"}


class NetworkError(RuntimeError):
    """A namespace/link/firewall operation failed; says which command and why."""

    def __init__(self, message: str, cmd: Sequence[str] | None = None,
                 returncode: int | None = None, stderr: str = ""):
        self.cmd = list(cmd) if cmd else None
        self.returncode = returncode
        self.stderr = stderr
        if cmd:
            message = f"{message}: `{' '.join(cmd)}` exited {returncode}: {stderr.strip()}"
        super().__init__(message)


def missing_tool(tool: str) -> str | None:
    """None if ``tool`` is on PATH, else a sentence naming the Debian package to install."""
    if shutil.which(tool):
        return None
    pkg = TOOL_PACKAGES.get(tool, tool)
    return f"`{tool}` not found on PATH (install the Debian package {pkg})"


def unavailable(*tools: str) -> str | None:
    """Why namespaces cannot be used here (not root, a tool missing), or None."""
    if os.geteuid() != 0:
        return f"network namespaces need root (running as euid {os.geteuid()})"
    for tool in ("ip", *tools):
        reason = missing_tool(tool)
        if reason:
            return reason
    return None


def require(*tools: str) -> None:
    """Raise :class:`NetworkError` unless root and every tool is installed."""
    reason = unavailable(*tools)
    if reason:
        raise NetworkError(reason)


def run(cmd: Sequence[str], *, input: str | None = None, check: bool = True,
        timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; on failure raise :class:`NetworkError` carrying its stderr."""
    try:
        proc = subprocess.run(list(cmd), input=input, capture_output=True, text=True,
                              timeout=timeout)
    except FileNotFoundError as e:
        raise NetworkError(missing_tool(cmd[0]) or str(e)) from e
    except subprocess.TimeoutExpired as e:
        raise NetworkError(f"timed out after {timeout} s", cmd, None,
                           str(e.stderr or "")) from e
    if check and proc.returncode != 0:
        raise NetworkError("command failed", cmd, proc.returncode, proc.stderr)
    return proc


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):                     # Python >= 3.12
        os.setns(fd, CLONE_NEWNET)
        return
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def ns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


@contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the block with the calling thread in network namespace ``name``.

    Only this thread moves (threads started inside the block start in ``name`` too); a
    socket created in the block stays in ``name`` after the block ends.
    """
    try:
        target = os.open(ns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise NetworkError(f"network namespace {name!r} does not exist") from e
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def call_in(name: str, fn: Callable[..., T], *args: object, timeout: float = 30.0,
            **kwargs: object) -> T:
    """Call ``fn(*args, **kwargs)`` in a helper thread inside namespace ``name``.

    The calling thread never changes namespace. Exceptions propagate to the caller.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            with inside(name):
                result.append(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            error.append(e)

    t = threading.Thread(target=body, name=f"netns:{name}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise NetworkError(f"call in namespace {name!r} did not finish in {timeout} s")
    if error:
        raise error[0]
    return result[0]


def sysctl(name: str, key: str, value: str | int) -> None:
    """Write ``/proc/sys/<key>`` (dots or slashes) inside namespace ``name``."""
    path = "/proc/sys/" + key.replace(".", "/")

    def write() -> None:
        with open(path, "w") as f:
            f.write(str(value))

    try:
        call_in(name, write)
    except OSError as e:
        raise NetworkError(f"cannot set {key}={value} in namespace {name}: {e}") from e


def list_namespaces(prefix: str = PREFIX) -> list[str]:
    """Names of existing network namespaces starting with ``prefix``."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def delete_namespace(name: str) -> None:
    """Delete a namespace (its veth ends go with it); a missing one is not an error."""
    if not os.path.exists(ns_path(name)):
        return
    run(["ip", "netns", "delete", name])


def _owner_alive(name: str) -> bool:
    parts = name[len(PREFIX):].split("-")
    if not parts or not parts[0].isdigit():
        return False
    try:
        os.kill(int(parts[0]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale(everything: bool = False) -> list[str]:
    """Delete ``synack-*`` namespaces whose owning process is gone (all of them if
    ``everything``). Returns the names deleted."""
    removed = []
    for name in list_namespaces():
        if everything or not _owner_alive(name):
            delete_namespace(name)
            removed.append(name)
    return removed
