"""synack: a phone-like network stack for MicroPython boards."""
