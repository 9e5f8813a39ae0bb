"""The reference TCP servers of the HIL suite: they live in ``synack_host.servers`` (the
selftest and the benchmarks use them too, and sim/ must not import hil/); this module
keeps the name the tests and plugins import them by."""

from __future__ import annotations

from ..servers import CONN_TIMEOUT_S, JOIN_TIMEOUT_S, EchoServer, ScriptedServer

__all__ = ["CONN_TIMEOUT_S", "JOIN_TIMEOUT_S", "EchoServer", "ScriptedServer"]
