"""Wi-Fi station link: connect with a timeout and retries, RSSI, reconnect on loss.

    from synack.link.wifi import WifiLink
    wifi = WifiLink("my-ssid", "secret")
    wifi.up()                  # raises WifiError (with the driver's status) on failure
    print(wifi.rssi(), wifi.address())
    wifi.ensure()              # call periodically: reconnects when the AP was lost

It has the link interface synack.supervisor expects (up, down, is_up), so a supervisor
can own it; ``reconnects`` counts bring-ups after a loss. A wrong password or a missing
access point ends the attempts at once: retrying cannot fix either.
"""

import time

from micropython import const

# network.STAT_* of the ESP32 port (esp_wifi reason codes for failures)
STAT_IDLE = const(1000)
STAT_CONNECTING = const(1001)
STAT_GOT_IP = const(1010)
STAT_NO_AP_FOUND = const(201)
STAT_WRONG_PASSWORD = const(202)
STAT_ASSOC_FAIL = const(203)
STAT_HANDSHAKE_TIMEOUT = const(204)

_STATUS_TEXT = {
    STAT_IDLE: "idle",
    STAT_CONNECTING: "still connecting",
    STAT_GOT_IP: "connected",
    STAT_NO_AP_FOUND: "no access point with this SSID",
    STAT_WRONG_PASSWORD: "wrong password",
    STAT_ASSOC_FAIL: "association failed",
    STAT_HANDSHAKE_TIMEOUT: "WPA handshake timed out",
}
_FATAL = (STAT_NO_AP_FOUND, STAT_WRONG_PASSWORD)
_POLL_MS = const(100)


class WifiError(OSError):
    """Bring-up failed; ``status`` is the driver's code."""

    def __init__(self, status, message):
        super().__init__(status, message)
        self.status = status


def status_text(status):
    return _STATUS_TEXT.get(status, "status %r" % (status,))


class WifiLink:
    def __init__(self, ssid, key=None, wlan=None, timeout_ms=15000, retries=3,
                 retry_delay_ms=1000):
        if not ssid:
            raise ValueError("Wi-Fi SSID is empty")
        if wlan is None:
            import network  # only on a board (or the virtual board's shim)
            wlan = network.WLAN(network.STA_IF)
        self.wlan = wlan
        self.ssid = ssid
        self.key = key
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.retry_delay_ms = retry_delay_ms
        self.connects = 0       # successful bring-ups
        self.reconnects = 0     # bring-ups after the link had been up and was lost
        self.last_status = None
        self._was_up = False

    def is_up(self):
        return bool(self.wlan.isconnected())

    def _attempt(self):
        self.wlan.connect(self.ssid, self.key)
        deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
        while True:
            if self.wlan.isconnected():
                return True
            status = self.last_status = self.wlan.status()
            if status in _FATAL:
                raise WifiError(status, "Wi-Fi %r: %s" % (self.ssid, status_text(status)))
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                return False
            time.sleep_ms(_POLL_MS)

    def up(self):
        """Connect (retrying up to ``retries`` times); raises WifiError on failure."""
        if self.is_up():
            return
        self.wlan.active(True)
        for attempt in range(self.retries):
            if attempt:
                time.sleep_ms(self.retry_delay_ms * attempt)
            if self._attempt():
                self.connects += 1
                if self._was_up:
                    self.reconnects += 1
                self._was_up = True
                return
            self.wlan.disconnect()    # abandon the stuck attempt before the next one
        raise WifiError(self.last_status or STAT_IDLE,
                        "Wi-Fi %r: not connected after %d attempts of %d ms (%s)"
                        % (self.ssid, self.retries, self.timeout_ms,
                           status_text(self.last_status)))

    def ensure(self):
        """Reconnect if the link was lost; returns True when it is up."""
        if not self.is_up():
            self.up()
        return True

    def down(self):
        self.wlan.disconnect()

    def rssi(self):
        """Signal strength in dBm, or None when not connected."""
        if not self.is_up():
            return None
        return self.wlan.status("rssi")

    def address(self):
        return self.wlan.ifconfig()[0] if self.is_up() else None
