"""Run MicroPython device code on CPython.

Device code is written for MicroPython: it imports ``micropython.const`` and calls
``time.ticks_ms()``/``time.sleep_ms()``. ``install()`` makes both work on CPython: it puts
a small ``micropython`` module on ``sys.path`` and adds the ``ticks_*``/``sleep_*``
functions to CPython's ``time`` module, with MicroPython's wrap-around semantics so that
code which mishandles tick overflow fails here too.
"""

import os
import sys
import time

MODULES = os.path.join(os.path.dirname(__file__), "modules")

# MicroPython's ticks wrap at 2**30 (MICROPY_PY_TIME_TICKS_PERIOD).
TICKS_PERIOD = 1 << 30
_TICKS_MAX = TICKS_PERIOD - 1
_TICKS_HALF = TICKS_PERIOD // 2


def ticks_ms() -> int:
    return int(time.monotonic() * 1000) & _TICKS_MAX


def ticks_us() -> int:
    return int(time.monotonic() * 1_000_000) & _TICKS_MAX


def ticks_add(ticks: int, delta: int) -> int:
    return (ticks + delta) & _TICKS_MAX


def ticks_diff(end: int, start: int) -> int:
    return ((end - start + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF


def sleep_ms(ms: float) -> None:
    time.sleep(max(0, ms) / 1000)


def sleep_us(us: float) -> None:
    time.sleep(max(0, us) / 1_000_000)


def install() -> None:
    """Make ``import micropython`` and ``time.ticks_ms`` work in this interpreter."""
    if MODULES not in sys.path:
        sys.path.append(MODULES)
    for fn in (ticks_ms, ticks_us, ticks_add, ticks_diff, sleep_ms, sleep_us):
        if not hasattr(time, fn.__name__):
            setattr(time, fn.__name__, fn)
