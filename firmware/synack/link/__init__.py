"""Links a device reaches the network over (a link has up(), down(), is_up()), and the
UART a modem link runs on.

``modem_uart()`` opens that UART with a receive buffer sized for the firmware's largest
burst: the reply to a framed read (``AT+CIPRXGET=2,<link>,1500`` on a SIM7600) is at most
~1540 bytes back to back -- 134 ms at 115200 baud, 11.5 bytes a millisecond. MicroPython's
default ``rxbuf`` of 256 bytes fills in 22 ms, less than a garbage collection or a flash
write can take on an ESP32, and what arrives while it is full is lost (an overrun: the
read then fails with a timeout or a framing error, never with wrong data). 2048 bytes
hold the whole reply plus room for URCs. See docs/firmware.md.

    from synack.link import modem_uart
    modem = SIM7600(modem_uart(1, 115200, tx=17, rx=16), apn="internet")
"""

from micropython import const

RXBUF = const(2048)   # bytes: a 1500-byte framed read reply + URCs, with margin


def modem_uart(uart_id=1, baudrate=115200, rxbuf=RXBUF, **pins):
    """``machine.UART(uart_id, baudrate, rxbuf=rxbuf, timeout=0, **pins)``: reads return
    at once with what has arrived (the AT driver waits itself, within each command's
    timeout); ``pins`` are the board's ``tx=``/``rx=`` (and ``rts=``/``cts=``)."""
    from machine import UART

    return UART(uart_id, baudrate, rxbuf=rxbuf, timeout=0, **pins)
