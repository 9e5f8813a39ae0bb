"""A tiny MQTT 3.1.1 client written only against MicroPython's documented socket API —
``getaddrinfo``, ``socket``, ``connect``, ``write``, ``read``, ``setblocking``, ``close``,
the calls micropython-lib's umqtt.simple makes — and importing ``socket`` by that name,
as an application on a board would. The drop-in test runs it with synack.socket
installed as ``socket``."""

import socket


def _length(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s):
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


class MQTTClient:
    def __init__(self, client_id, server, port=1883, keepalive=60):
        self.client_id = client_id
        self.addr = socket.getaddrinfo(server, port)[0][-1]
        self.keepalive = keepalive
        self.sock = None
        self.pid = 0

    def _packet(self, kind, body):
        self.sock.write(bytes([kind]) + _length(len(body)) + body)

    def _read_packet(self):
        head = self.sock.read(1)
        if head is None:           # non-blocking, nothing there
            return None, None
        if not head:
            raise OSError("connection closed by the broker")
        n, shift = 0, 0
        while True:
            b = self.sock.read(1)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return head[0], self.sock.read(n) if n else b""

    def connect(self):
        self.sock = socket.socket()
        self.sock.connect(self.addr)
        body = _str("MQTT") + bytes([4, 0x02]) + self.keepalive.to_bytes(2, "big")
        self._packet(0x10, body + _str(self.client_id))
        kind, data = self._read_packet()
        if kind != 0x20 or data[1] != 0:
            raise OSError("CONNACK refused: %r" % (data,))

    def subscribe(self, topic):
        self.pid += 1
        self._packet(0x82, self.pid.to_bytes(2, "big") + _str(topic) + b"\x00")
        kind, data = self._read_packet()
        if kind != 0x90 or data[:2] != self.pid.to_bytes(2, "big") or data[2] == 0x80:
            raise OSError("SUBACK refused: %r" % (data,))

    def publish(self, topic, msg):
        self._packet(0x30, _str(topic) + msg)

    def check_msg(self):
        """(topic, message) if one has arrived, else None — without blocking."""
        self.sock.setblocking(False)
        try:
            kind, data = self._read_packet()
        finally:
            self.sock.setblocking(True)
        if kind is None or kind & 0xF0 != 0x30:
            return None
        n = int.from_bytes(data[:2], "big")
        return data[2:2 + n].decode(), data[2 + n:]

    def disconnect(self):
        self._packet(0xE0, b"")
        self.sock.close()
