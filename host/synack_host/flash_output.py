"""esptool's console output, routed per thread (several boards flash at once in
threads): kept for ``--verbose`` and for error messages, its progress bar turned into
``report(phase, done, total, offset)`` calls."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Report = Callable[[str, int, int, "int | None"], None]   # phase, done, total, offset


@dataclass
class Sink:
    """One board's share of esptool's output."""
    echo: Callable[[str], None] | None = None     # --verbose: each line as it comes
    report: Report | None = None
    phase: str = "connecting"
    lines: list[str] = field(default_factory=list)
    offset: int | None = None                     # "Writing at 0x..." last seen
    done: int = 0
    total: int = 0

    def line(self, text: str) -> None:
        text = text.replace("\\[", "[")
        self.lines.append(text)
        del self.lines[:-200]
        if self.echo and text.strip():
            self.echo(text)

    def progress(self, done: int, total: int, prefix: str) -> None:
        m = re.search(r"at (0x[0-9a-fA-F]+)", prefix)
        if m:
            self.offset = int(m.group(1), 16)
        self.done, self.total = done, total
        if self.report:
            self.report(self.phase, done, total, self.offset)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        if self.report:
            self.report(phase, 0, 0, None)

    def tail(self, n: int = 3) -> str:
        return " / ".join(t.strip() for t in self.lines[-n:] if t.strip())


_local = threading.local()
_install_lock = threading.Lock()
_users = 0                      # threads inside esptool_output
_previous: Any = None           # the logger that was there before


def _make_dispatcher():
    from esp_pylib.logger import EspLogBase

    class Dispatch(EspLogBase):
        """esptool's logger, routed to the calling thread's Sink."""

        def _sink(self) -> Sink | None:
            return getattr(_local, "sink", None)

        def _text(self, *args, **kwargs) -> None:
            sink = self._sink()
            if sink is not None:
                sink.line(" ".join(str(a) for a in args))

        print = err = warn = note = hint = debug = _text

        def set_verbosity(self, mode) -> None:
            pass

        def progress_bar(self, cur_iter, total_iters, prefix="", suffix="",
                         bar_length=30) -> None:
            sink = self._sink()
            if sink is not None:
                sink.progress(cur_iter, total_iters, prefix)

    return Dispatch()


@contextlib.contextmanager
def esptool_output(sink: Sink) -> Iterator[Sink]:
    """Route esptool's console output in this thread to ``sink``."""
    from esp_pylib.logger import EspLog

    import esptool.logger  # noqa: F401  (installs esptool's own logger first)

    global _users, _previous
    with _install_lock:
        if _users == 0:
            _previous = EspLog.instance
            EspLog.set_logger(_make_dispatcher())
        _users += 1
    previous, _local.sink = getattr(_local, "sink", None), sink
    try:
        yield sink
    finally:
        _local.sink = previous
        with _install_lock:
            _users -= 1
            if _users == 0 and _previous is not None:
                EspLog.set_logger(_previous)
            elif _users == 0:
                EspLog._reset()
