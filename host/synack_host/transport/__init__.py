"""Host side of the serial link: open a port by pyserial URL and speak MicroPython's raw
REPL over it."""

from .link import TransportError, open_link
from .repl import BoardNotResponding, DeviceError, RawRepl

__all__ = ["BoardNotResponding", "DeviceError", "RawRepl", "TransportError", "open_link"]
