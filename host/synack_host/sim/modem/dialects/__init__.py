"""The virtual modem's AT dialects, by the name ``synack sim modem --dialect`` takes.

``DIALECTS`` is the one table every choice of dialect comes from (the CLI's ``--dialect``
and ``--modem`` options, ``run_modem_in_thread``, the rig). A dialect is one module here
(a ``base.Dialect`` subclass) plus one line below.
"""

from __future__ import annotations

from .base import Dialect
from .bg96 import BG96
from .sara_r4 import SARAR4
from .sim7600 import SIM7600
from .sim800 import SIM800

DIALECTS: dict[str, type[Dialect]] = {
    "bg96": BG96,
    "sara-r4": SARAR4,
    "sim7600": SIM7600,
    "sim800": SIM800,
}


def dialect_class(name: str) -> type[Dialect]:
    """The class of dialect ``name``; ValueError naming the known ones otherwise."""
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown modem dialect {name!r}; known: "
                         f"{', '.join(sorted(DIALECTS))}") from None
