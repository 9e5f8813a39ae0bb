"""The virtual modem: a process on a pty that speaks AT commands like a real cellular
modem, with real TCP sockets behind its links (``synack sim modem``).

Layers, each its own module:

* commands.py -- AT command syntax: ``Command`` table entries, ``parse_args``, ``int_arg``;
* frontend.py -- the V.250 front end (``Modem``): echo, lines, payload prompts, result
  codes, CME modes, URC queueing, the front-end faults, on a paced pty and loop;
* network.py  -- 27.007, shared by every dialect (``CellularModem``): SIM, registration,
  signal, operator, PDP contexts, clock, identity, bearer state, coverage faults;
* links.py    -- the socket-backed link stack (``LinkStack``) and its state table;
* faults.py   -- the fault engine (what ``synack sim fault`` can do, on every dialect);
* dialects/   -- one module per AT dialect and the ``DIALECTS`` table.
"""

from __future__ import annotations

from ..control import Fault, FaultClient, FaultError
from .commands import ArgError, Command, int_arg, parse_args, split_command
from .dialects import DIALECTS, dialect_class
from .dialects.base import Dialect
from .dialects.sim7600 import SIM7600
from .faults import Wording
from .frontend import Modem
from .links import LinkStack, LinkState
from .network import CellularModem, Identity, cclk_text

__all__ = ["DIALECTS", "ArgError", "CellularModem", "Command", "Dialect", "Fault",
           "FaultClient", "FaultError", "Identity", "LinkStack", "LinkState", "Modem",
           "SIM7600", "Wording", "cclk_text", "dialect_class", "int_arg", "parse_args",
           "split_command"]
