"""The Wi-Fi link's logic against a scripted WLAN driver (the radio itself needs a board):
retries, fatal statuses, timeouts, reconnect counting, RSSI."""

from portable import eq, raises

from synack.link import wifi

PORTABLE = True


class ScriptedWLAN:
    """Plays back a list of statuses per connect() call; GOT_IP means connected."""

    def __init__(self, attempts, rssi=-61):
        self.attempts = list(attempts)
        self.script = []
        self.connected = False
        self.connect_calls = 0
        self.disconnects = 0
        self.active_flag = False
        self.rssi_dbm = rssi

    def active(self, flag=None):
        if flag is not None:
            self.active_flag = flag
        return self.active_flag

    def connect(self, ssid, key=None):
        self.connect_calls += 1
        self.script = list(self.attempts.pop(0)) if self.attempts else [wifi.STAT_IDLE]

    def status(self, param=None):
        if param == "rssi":
            return self.rssi_dbm
        s = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        self.connected = s == wifi.STAT_GOT_IP
        return s

    def isconnected(self):
        return self.connected

    def disconnect(self):
        self.connected = False
        self.disconnects += 1

    def ifconfig(self):
        return ("192.0.2.10", "255.255.255.0", "192.0.2.1", "192.0.2.1")


C, OK = wifi.STAT_CONNECTING, wifi.STAT_GOT_IP


def link(attempts, **kw):
    w = ScriptedWLAN(attempts)
    kw.setdefault("timeout_ms", 300)
    kw.setdefault("retry_delay_ms", 1)
    return w, wifi.WifiLink("lab", "pw", wlan=w, **kw)


def test_connects_after_some_polls():
    w, wl = link([[C, C, OK]])
    wl.up()
    eq((wl.is_up(), wl.connects, w.connect_calls, w.active_flag), (True, 1, 1, True))
    eq(wl.rssi(), -61)
    eq(wl.address(), "192.0.2.10")


def test_retries_a_timed_out_attempt():
    w, wl = link([[C], [C, OK]], retries=3)
    wl.up()
    eq((w.connect_calls, w.disconnects, wl.is_up()), (2, 1, True))


def test_gives_up_after_the_retries_with_the_last_status():
    w, wl = link([[C], [C], [C]], retries=3)
    e = raises(wifi.WifiError, wl.up)
    eq(e.status, wifi.STAT_CONNECTING)
    eq("not connected after 3 attempts" in str(e) and "still connecting" in str(e), True)
    eq(w.connect_calls, 3)


def test_wrong_password_is_not_retried():
    w, wl = link([[C, wifi.STAT_WRONG_PASSWORD]], retries=5)
    e = raises(wifi.WifiError, wl.up)
    eq((e.status, w.connect_calls), (wifi.STAT_WRONG_PASSWORD, 1))
    eq("wrong password" in str(e), True)


def test_reconnect_after_loss_is_counted():
    w, wl = link([[OK], [C, OK]])
    wl.up()
    w.connected = False                  # the access point went away
    eq((wl.is_up(), wl.rssi()), (False, None))
    wl.ensure()
    eq((wl.is_up(), wl.connects, wl.reconnects), (True, 2, 1))
    wl.ensure()                           # already up: nothing happens
    eq(w.connect_calls, 2)


def test_empty_ssid_is_a_clear_error():
    e = raises(ValueError, wifi.WifiLink, "", wlan=ScriptedWLAN([]))
    eq("SSID" in str(e), True)
