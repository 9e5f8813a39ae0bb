"""The control socket of a virtual device: faults and requests injected while it runs,
from a test or from a shell (the virtual modem's faults, the ROM loader's controls).

A device started with ``--control PATH`` listens on a Unix socket there. Each request is
one line, ``<name> [args...]``; the answer is one line, ``ok[ <detail>]`` or
``error: <message>``. The device's own loop runs the request, between two of its steps,
so a fault never lands inside a line it is sending or receiving::

    $ synack sim fault /tmp/modem.ctl drop-registration 5
    ok registration lost for 5 s

The device says what it accepts in its ``fault_table`` (name -> ``Fault``);
``FaultClient(path).send("reboot")`` is the Python side.
"""

from __future__ import annotations

import os
import selectors
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

MAX_REQUEST = 4096
CLIENT_TIMEOUT_S = 5.0


class ControlOwner(Protocol):
    """What the control socket needs of its device."""

    fault_table: dict[str, Fault]

    def watch(self, fileobj, events: int, callback: Callable[[int], None] | None) -> None:
        ...


class FaultError(ValueError):
    """A fault request the device cannot carry out (unknown, bad arguments, no such link)."""


@dataclass(frozen=True)
class Fault:
    """One injectable fault: ``run(device, args)`` returns the detail of the ``ok`` line."""
    run: Callable[[Any, list[str]], str]
    usage: str
    help: str


def number(args: list[str], i: int, what: str, default: float | None = None,
           lo: float = 0.0, hi: float = 86400.0) -> float:
    """``args[i]`` as a number in lo..hi (``default`` when absent), else FaultError."""
    if i >= len(args):
        if default is None:
            raise FaultError(f"{what} is missing")
        return default
    try:
        value = float(args[i])
    except ValueError:
        raise FaultError(f"{what} must be a number, got {args[i]!r}") from None
    if not lo <= value <= hi:
        raise FaultError(f"{what} must be within {lo:g}..{hi:g}, got {args[i]}")
    return value


def unescape(text: str) -> bytes:
    """``noise\\x00\\xff\\r\\n`` -> the bytes it spells (Python string escapes)."""
    try:
        return text.encode("latin-1").decode("unicode_escape").encode("latin-1")
    except (UnicodeError, ValueError) as e:
        raise FaultError(f"bad escape in {text!r}: {e}") from None


def run_request(owner: ControlOwner, line: str) -> str:
    """One request line -> one answer line (without the newline)."""
    words = line.split()
    if not words:
        return "error: empty request; try 'help'"
    name, args = words[0].lower(), words[1:]
    table = owner.fault_table
    if name == "help":
        return "ok " + "; ".join(f.usage for f in table.values())
    fault = table.get(name)
    if fault is None:
        return f"error: unknown fault {name!r}; known: {', '.join(sorted(table))}"
    try:
        detail = fault.run(owner, args)
    except FaultError as e:
        return f"error: {name}: {e} (usage: {fault.usage})"
    return f"ok {detail}".rstrip()


def _remove_stale_socket(path: str) -> None:
    """Make room for the control socket at ``path``: only a socket file nobody listens
    on (left by a killed modem) is removed. Anything else is an OSError that names it:
    a live socket (another modem uses it), a regular file, a directory, a symlink."""
    import stat

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        what = ("a symlink" if stat.S_ISLNK(st.st_mode) else
                "a directory" if stat.S_ISDIR(st.st_mode) else
                "a regular file" if stat.S_ISREG(st.st_mode) else "not a socket")
        raise FileExistsError(f"--control {path}: exists and is {what}"
                              f"{'' if what == 'not a socket' else ', not a socket'}; "
                              "give a new path (only a stale socket is replaced)")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)       # a socket file left by a killed modem: stale
            return
        except OSError:
            pass                  # cannot tell (e.g. a full backlog): leave it alone
    raise FileExistsError(f"--control {path}: already in use (a socket that answers: "
                          "another modem?)")


class ControlServer:
    """The Unix socket a device listens on for faults; served by the device's loop."""

    def __init__(self, owner: ControlOwner, path: str):
        self.owner = owner
        self.path = path
        _remove_stale_socket(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(4)
        self.listener.setblocking(False)
        self.clients: dict[socket.socket, bytearray] = {}
        owner.watch(self.listener, selectors.EVENT_READ, self._accept)

    def _accept(self, mask: int) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self.clients[conn] = bytearray()
        self.owner.watch(conn, selectors.EVENT_READ, lambda m, c=conn: self._read(c))

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(MAX_REQUEST)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        buf = self.clients[conn]
        buf += data
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            answer = run_request(self.owner, line.decode("utf-8", "replace"))
            try:
                conn.setblocking(True)     # one short line: blocking send is bounded
                conn.settimeout(1.0)
                conn.sendall(answer.encode() + b"\n")
                conn.setblocking(False)
            except OSError:
                data = b""
        if not data or len(buf) > MAX_REQUEST:
            self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        self.owner.watch(conn, 0, None)
        self.clients.pop(conn, None)
        conn.close()

    def close(self) -> None:
        for conn in list(self.clients):
            self._drop(conn)
        self.owner.watch(self.listener, 0, None)
        self.listener.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class FaultClient:
    """Talks to a modem's control socket: ``FaultClient(path).send("delay 2 3")``
    returns the ``ok`` detail or raises FaultError with the modem's message."""

    def __init__(self, path: str, timeout: float = CLIENT_TIMEOUT_S):
        self.path = path
        self.timeout = timeout

    def send(self, request: str) -> str:
        if "\n" in request:
            raise FaultError("a fault request is one line")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout)
                s.connect(self.path)
                s.sendall(request.encode() + b"\n")
                answer = b""
                while not answer.endswith(b"\n"):
                    chunk = s.recv(MAX_REQUEST)
                    if not chunk:
                        break
                    answer += chunk
        except OSError as e:
            raise FaultError(f"cannot reach the modem's control socket {self.path}: "
                             f"{e.strerror or e}") from None
        text = answer.decode("utf-8", "replace").strip()
        if text.startswith("ok"):
            return text[2:].strip()
        if text.startswith("error: "):
            raise FaultError(text[len("error: "):])
        raise FaultError(f"no answer from the modem at {self.path}"
                         + (f" (got {text!r})" if text else ""))
