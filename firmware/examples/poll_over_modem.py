# Poll an HTTP endpoint over a SIM7600 on UART1, the way a phone app refreshes: one
# keep-alive connection, ETag so an unchanged resource costs a 304, backoff on errors.
# Copy to the board after `synack deploy`; set APN and URL first.
import machine

from synack import socket
from synack.http.client import Client
from synack.modems.sim7600 import SIM7600
from synack.poll import Poller

APN = "internet"
URL = "http://example.com/state"

modem = SIM7600(machine.UART(1, 115200, tx=17, rx=16), apn=APN)
modem.start()
socket.use(modem)


def changed(resp):
    print("new state:", resp.read())


poller = Poller(URL, changed, client=Client(backend=modem), interval_ms=30000,
                jitter_ms=3000)
poller.run()
