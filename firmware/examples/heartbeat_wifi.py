# Keep a long-lived connection open through NATs with heartbeats, over Wi-Fi, and print
# what the server pushes between them. The server speaks the one-line protocol of
# docs/heartbeat-outbox-supervisor.md (HB <n> -> HBACK <n>).
from synack import heartbeat
from synack import socket
from synack.link.wifi import WifiLink

SSID, KEY = "my-ssid", "secret"
SERVER = ("push.example.com", 7000)

wifi = WifiLink(SSID, KEY)
wifi.up()
print("Wi-Fi up, RSSI", wifi.rssi(), "dBm")

while True:
    wifi.ensure()
    s = socket.socket()
    s.settimeout(10)
    s.connect(socket.getaddrinfo(SERVER[0], SERVER[1])[0][-1])
    hb = heartbeat.Heartbeat(idle_ms=45000, timeout_ms=10000, misses=3)
    result = heartbeat.Driver(s, hb, lambda line: print("push:", line)).run()
    print("connection ended:", result, hb.reason)
    s.close()
