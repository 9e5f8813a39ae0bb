"""A tiny MQTT 3.1.1 client written only against MicroPython's socket API, making the
socket calls micropython-lib's umqtt.simple and umqtt.robust make, the way they make
them (the real modules are not on PyPI in an installable form):

- ``write(header, n)``: a preallocated header buffer, only its first n bytes sent;
- ``write(str)``: strings (client id, topic) written as str, not bytes;
- ``read(1)[0]`` byte-at-a-time for the packet type and the remaining length, then
  ``read(n)``; ``setblocking(False)`` + ``read(1)`` giving None for "nothing there";
- ``ssl``: an object with ``wrap_socket(sock, server_hostname=...)`` (the port's
  ``ssl.SSLContext`` or ``synack.tls.Context``), used right after the TCP connect;
- ``RobustClient``: catches OSError around each operation, opens a new socket and
  connects again (with a growing delay) without closing the old one, as robust does.

It imports ``socket`` by that name, as an application on a board does; the drop-in
tests run it with synack.socket installed as ``socket`` (CPython and the unix port)."""

import socket
import time


def _be16(n):
    return bytes([n >> 8 & 0xFF, n & 0xFF])


class MQTTClient:
    def __init__(self, client_id, server, port=0, keepalive=60, ssl=None):
        self.client_id = client_id
        self.server = server
        self.port = port or (8883 if ssl else 1883)
        self.ssl = ssl                          # an SSLContext-like: wrap_socket(sock, ...)
        self.keepalive = keepalive
        self.sock = None
        self.pid = 0

    def _send_str(self, s):
        self.sock.write(_be16(len(s)))
        self.sock.write(s)                      # a str, as umqtt writes it

    def _header(self, kind, size):
        """Fixed header in a preallocated buffer: write(buf, n) sends its used part."""
        head = bytearray(5)
        head[0] = kind
        i = 1
        while size > 0x7F:
            head[i] = (size & 0x7F) | 0x80
            size >>= 7
            i += 1
        head[i] = size
        self.sock.write(head, i + 1)

    def _recv_len(self):
        n, shift = 0, 0
        while True:
            b = self.sock.read(1)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    def connect(self):
        self.sock = socket.socket()
        self.sock.connect(socket.getaddrinfo(self.server, self.port)[0][-1])
        if self.ssl:                            # as umqtt.simple: TLS after the TCP connect
            self.sock = self.ssl.wrap_socket(self.sock, server_hostname=self.server)
        var = bytearray(b"\x00\x04MQTT\x04\x02\x00\x00")
        var[8] = self.keepalive >> 8
        var[9] = self.keepalive & 0xFF
        self._header(0x10, len(var) + 2 + len(self.client_id))
        self.sock.write(var)
        self._send_str(self.client_id)
        resp = self.sock.read(4)
        if len(resp) != 4 or resp[0] != 0x20 or resp[3] != 0:
            raise OSError("CONNACK refused: %r" % (resp,))

    def subscribe(self, topic):
        self.pid += 1
        self._header(0x82, 2 + 2 + len(topic) + 1)
        self.sock.write(_be16(self.pid))
        self._send_str(topic)
        self.sock.write(b"\x00")
        while True:
            op = self.wait_msg()
            if op == 0x90:
                resp = self.sock.read(4)
                if resp[1:3] != _be16(self.pid) or resp[3] == 0x80:
                    raise OSError("SUBACK refused: %r" % (resp,))
                return

    def publish(self, topic, msg):
        self._header(0x30, 2 + len(topic) + len(msg))
        self._send_str(topic)
        self.sock.write(msg)

    def wait_msg(self):
        """One packet: (topic, message) of a PUBLISH, the type byte of others, None if
        a non-blocking read found nothing."""
        res = self.sock.read(1)
        self.sock.setblocking(True)
        if res is None:
            return None
        if res == b"":
            raise OSError(-1, "connection closed by the broker")
        op = res[0]
        if op == 0xD0:                          # PINGRESP
            self.sock.read(1)
            return None
        if op & 0xF0 != 0x30:
            return op
        size = self._recv_len()
        tl = self.sock.read(2)
        tl = tl[0] << 8 | tl[1]
        topic = self.sock.read(tl)
        msg = self.sock.read(size - tl - 2)
        self.last = (topic.decode(), msg)
        return self.last

    def check_msg(self):
        """(topic, message) if one has arrived, else None — without blocking."""
        self.sock.setblocking(False)
        got = self.wait_msg()
        return got if isinstance(got, tuple) else None

    def ping(self):
        self.sock.write(b"\xc0\0")

    def disconnect(self):
        self.sock.write(b"\xe0\0")
        self.sock.close()


class RobustClient(MQTTClient):
    """Reconnects on any OSError, as umqtt.robust: ``errors`` lists what it caught."""

    DELAY_MS = 100

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.errors = []
        self.reconnects = 0

    def reconnect(self):
        i = 0
        while True:
            try:
                MQTTClient.connect(self)
                self.reconnects += 1
                return
            except OSError as e:
                self.errors.append(e)
                i += 1
                time.sleep_ms(min(i, 20) * self.DELAY_MS)

    def publish(self, topic, msg):
        while True:
            try:
                return MQTTClient.publish(self, topic, msg)
            except OSError as e:
                self.errors.append(e)
            self.reconnect()

    def wait_msg(self):
        while True:
            try:
                return MQTTClient.wait_msg(self)
            except OSError as e:
                self.errors.append(e)
            self.reconnect()
