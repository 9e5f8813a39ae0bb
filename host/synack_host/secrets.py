"""Secrets kept out of everything the host side logs, reports or prints.

A value given as a secret - the Wi-Fi key (``--wifi-key`` / ``$SYNACK_WIFI_KEY``), an
APN password, a token - is registered once for the run with :func:`register`. Every log
or report write then goes through :func:`mask`, which replaces each registered value,
also as ``repr()`` of a str or of bytes escapes it, with ``***``::

    from synack_host import secrets
    secrets.register(key)
    log.write(secrets.mask(text))

The HIL device logs (``synack_host.hil.device.Device.log``), the code and errors the
device echoes, and pytest's reports of a HIL run (failure text, captured output, log
records, JUnit XML, terminal) all pass through it (``synack_host.hil.plugin``).
Secrets are also never inlined into code sent to a board when that code is logged: the
code names a variable the value was assigned to separately (``Device.set_secret``).
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

MASK = "***"

_values: set[str] = set()
_forms: list[str] = []           # every form of every value, longest first
_bforms: list[bytes] = []

T = TypeVar("T", str, bytes)


def _spellings(value: str) -> set[str]:
    """``value`` and the forms repr() gives it inside str and bytes literals (a key with
    a quote, a backslash or non-ASCII characters is escaped there)."""
    forms = {value, repr(value)[1:-1], repr(value.encode())[2:-1],
             value.encode("unicode_escape").decode("ascii")}
    return {f for f in forms if f}


def register(*values: str | bytes | None) -> None:
    """Mask these values from now on; empty values and None are ignored."""
    changed = False
    for v in values:
        if isinstance(v, bytes):
            v = v.decode(errors="replace")
        if v and v not in _values:
            _values.add(v)
            changed = True
    if changed:
        forms = set()
        for v in _values:
            forms |= _spellings(v)
        _forms[:] = sorted(forms, key=len, reverse=True)
        _bforms[:] = [f.encode() for f in _forms]


def forget_all() -> None:
    """Unregister every secret (tests)."""
    _values.clear()
    _forms.clear()
    _bforms.clear()


def registered() -> bool:
    return bool(_values)


def mask(text: T) -> T:
    """``text`` (str or bytes) with every registered secret replaced by ``***``."""
    if not _forms:
        return text
    if isinstance(text, bytes):
        for bf in _bforms:
            if bf in text:
                text = text.replace(bf, MASK.encode())
        return text
    for f in _forms:
        if f in text:
            text = text.replace(f, MASK)
    return text


def mask_xml(text: str) -> str:
    """``text`` of an XML document: also the values as XML escapes them."""
    from xml.sax.saxutils import escape

    text = mask(text)
    for f in _forms:
        for esc in (escape(f), escape(f, {'"': "&quot;"}), escape(f, {"'": "&apos;"})):
            if esc != f and esc in text:
                text = text.replace(esc, MASK)
    return text


def contains(text: str | bytes) -> bool:
    """Whether ``text`` holds any registered secret."""
    return mask(text) != text


def scrub(value: object) -> object:
    """``value`` with secrets masked in every string it holds: str, bytes, lists, tuples,
    dicts and dataclass instances (their fields are masked in place, so pytest's
    traceback representations keep their type and layout). Other objects are returned
    as they are."""
    return _scrub(value, set())


def _scrub(value: object, seen: set[int]) -> object:
    if isinstance(value, (str, bytes)):
        return mask(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if id(value) in seen:
        return value
    seen.add(id(value))
    if isinstance(value, list):
        value[:] = [_scrub(v, seen) for v in value]
        return value
    if isinstance(value, tuple):
        items = [_scrub(v, seen) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, dict):
        for k in list(value):
            value[k] = _scrub(value[k], seen)
        return value
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return value
    for f in dataclasses.fields(value):
        v = getattr(value, f.name, None)
        new = _scrub(v, seen)
        if new is not v:
            try:
                object.__setattr__(value, f.name, new)
            except (AttributeError, TypeError):
                pass    # read-only: left as it is
    return value


def scrub_exception(exc: BaseException) -> BaseException:
    """Mask secrets in an exception's args and string attributes, in place (its type and
    traceback stay), and in the exceptions it was raised from."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen and _forms:
        seen.add(id(e))
        if any(contains(a) for a in e.args if isinstance(a, (str, bytes))):
            e.args = tuple(mask(a) if isinstance(a, (str, bytes)) else a for a in e.args)
        for name, v in list(getattr(e, "__dict__", {}).items()):
            if isinstance(v, (str, bytes)) and contains(v):
                setattr(e, name, mask(v))
        e = e.__cause__ or e.__context__
    return exc
