"""Supervisor state machine on a fake link and a fake clock: backoff growth and cap,
jitter bounds, re-initialisation after repeated failures, loss and recovery, sessions."""

import portable
from portable import eq, raises

from synack import supervisor as sv

PORTABLE = True


class LinkDown(Exception):
    pass


class FakeLink:
    """up() fails ``fail`` times, then succeeds; ``alive`` can be cut by the test."""

    def __init__(self, fail=0, reinit_fails=0):
        self.fail = fail
        self.reinit_fails = reinit_fails
        self.alive = False
        self.calls = []

    def up(self):
        self.calls.append("up")
        if self.fail > 0:
            self.fail -= 1
            raise LinkDown("no carrier")
        self.alive = True

    def down(self):
        self.calls.append("down")
        self.alive = False

    def is_up(self):
        return self.alive

    def reinit(self):
        self.calls.append("reinit")
        if self.reinit_fails > 0:
            self.reinit_fails -= 1
            raise OSError(5, "reset failed")


def drive(sup, until, now=0, limit=200):
    """Step with a fake clock, jumping to each returned wake time; returns
    [(now, state name)] after each step."""
    seen = []
    for _ in range(limit):
        wake = sup.step(now)
        seen.append((now, sup.state_name))
        if until(sup) or wake is None:
            break
        now = wake
    return seen


def test_backoff_doubles_up_to_the_cap_without_jitter():
    link = FakeLink(fail=6)
    sup = sv.Supervisor(link, base_ms=100, cap_ms=1000, jitter_pct=0, reinit_after=99,
                        check_ms=50)
    sup.start()
    seen = drive(sup, lambda s: s.online)
    tries = [t for t, st in seen if st == "BACKOFF"]
    eq([tries[i + 1] - tries[i] for i in range(len(tries) - 1)], [100, 200, 400, 800, 1000])
    eq(sup.state_name, "ONLINE")
    eq((sup.attempts, sup.connects, sup.reconnects), (7, 1, 0))
    eq(sup.failures, {"LinkDown": 6})
    eq(str(sup.last_error), "no carrier")


def test_jitter_stays_within_bounds_and_is_seeded():
    a = sv.Supervisor(FakeLink(), base_ms=1000, cap_ms=8000, jitter_pct=25, seed=7)
    b = sv.Supervisor(FakeLink(), base_ms=1000, cap_ms=8000, jitter_pct=25, seed=7)
    c = sv.Supervisor(FakeLink(), base_ms=1000, cap_ms=8000, jitter_pct=25, seed=8)
    da = [a.backoff_ms(n) for n in range(1, 40)]
    eq(da, [b.backoff_ms(n) for n in range(1, 40)])
    eq(da == [c.backoff_ms(n) for n in range(1, 40)], False)
    for n in range(1, 40):
        d = da[n - 1]
        full = min(8000, 1000 * 2 ** (n - 1))
        eq(full * 3 // 4 <= d <= full, True, "n=%d d=%d" % (n, d))
    eq(len(set(da[5:])) > 5, True)     # capped delays still differ


def test_reinit_after_k_consecutive_failures():
    link = FakeLink(fail=5)
    names = []
    sup = sv.Supervisor(link, base_ms=10, cap_ms=100, jitter_pct=0, reinit_after=2,
                        on_change=lambda old, new: names.append(sv.STATE_NAMES[new]))
    sup.start()
    drive(sup, lambda s: s.online)
    eq(names, ["LINK_UP", "BACKOFF", "LINK_UP", "BACKOFF", "REINIT", "LINK_UP", "BACKOFF",
               "LINK_UP", "BACKOFF", "REINIT", "LINK_UP", "BACKOFF", "LINK_UP", "ONLINE"])
    eq(link.calls.count("reinit"), 2)
    eq(sup.reinits, 2)
    eq(sup.in_row, 0)


def test_failed_reinit_backs_off_and_retries_reinit():
    link = FakeLink(fail=1, reinit_fails=1)
    sup = sv.Supervisor(link, base_ms=10, cap_ms=100, jitter_pct=0, reinit_after=1)
    sup.start()
    drive(sup, lambda s: s.online)
    eq(link.calls, ["up", "reinit", "reinit", "up"])
    eq(sup.failures, {"LinkDown": 1, "reinit OSError": 1})
    eq(sup.reinits, 1)


def test_link_loss_goes_offline_and_reconnects():
    link = FakeLink()
    names = []
    sup = sv.Supervisor(link, base_ms=10, jitter_pct=0, check_ms=500,
                        on_change=lambda old, new: names.append(sv.STATE_NAMES[new]))
    sup.start()
    eq(drive(sup, lambda s: s.online)[-1], (0, "ONLINE"))
    eq(sup.step(100), 600)             # watching: next check in check_ms
    link.alive = False
    eq(sup.step(600), 600)
    eq(sup.state_name, "OFFLINE")
    drive(sup, lambda s: s.online, now=600)
    eq(names, ["LINK_UP", "ONLINE", "OFFLINE", "LINK_UP", "ONLINE"])
    eq((sup.losses, sup.reconnects, sup.connects), (1, 1, 2))
    eq(sup.failures, {"link lost": 1})
    eq(link.calls, ["up", "down", "up"])


class FakeSession(FakeLink):
    pass


def test_session_loss_keeps_the_link_up():
    link, session = FakeLink(), FakeSession(fail=1)
    sup = sv.Supervisor(link, sessions=[session], base_ms=10, jitter_pct=0)
    sup.start()
    drive(sup, lambda s: s.online)
    eq((link.calls, session.calls), (["up"], ["up", "up"]))
    session.alive = False
    drive(sup, lambda s: s.online and s.losses)
    eq(link.calls, ["up"])
    eq(session.calls, ["up", "up", "down", "up"])
    eq(sup.failures, {"LinkDown": 1, "session lost": 1})


def test_stop_takes_everything_down_and_stays_offline():
    link = FakeLink()
    sup = sv.Supervisor(link)
    sup.start()
    drive(sup, lambda s: s.online)
    sup.stop(now=5)
    eq(sup.state_name, "OFFLINE")
    eq(link.calls[-1], "down")
    eq(sup.step(10), None)
    eq(sup.format_history()[-1], "5 STOP ONLINE -> OFFLINE")


def test_illegal_transitions_raise():
    sup = sv.Supervisor(FakeLink())
    e = raises(sv.SupervisorStateError, sup._fire, sv.RETRY, 0)
    eq("RETRY" in str(e) and "OFFLINE" in str(e), True)
    raises(sv.SupervisorStateError, sup._fire, sv.STOP, 0)
    for (state, event), new in sv.TRANSITIONS.items():
        eq(0 <= state < len(sv.STATE_NAMES) and 0 <= new < len(sv.STATE_NAMES), True)
        eq(0 <= event < len(sv.EVENT_NAMES), True)
    raises(ValueError, sv.Supervisor, FakeLink(), (), None, 0)


def test_is_up_that_raises_counts_as_lost():
    class Flaky(FakeLink):
        def is_up(self):
            if self.alive and len(self.calls) > 1:
                raise OSError(5, "probe failed")
            return self.alive

    link = Flaky()
    sup = sv.Supervisor(link, base_ms=10, jitter_pct=0)
    sup.start()
    drive(sup, lambda s: s.online)
    link.calls.append("probe")
    sup.step(1000)
    eq(sup.state_name, "OFFLINE")
    eq(sup.failures, {"OSError in is_up": 1})


def with_clock(fn):
    return portable.with_clock(sv, fn)


def xorshift32(x, n):
    out = []
    for _ in range(n):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out.append(x)
    return out


def test_defaults_limits_and_error_texts():
    sup = sv.Supervisor(FakeLink())
    eq((sup.base_ms, sup.cap_ms, sup.jitter_pct, sup.reinit_after, sup.check_ms),
       (1000, 300000, 25, 5, 1000))
    eq((sup.wanted, sup.last_error, sup.last_delay_ms, sup.history(), sup.format_history()),
       (False, None, 0, [], []))
    eq(sup.step(0), None)                      # not started: stays OFFLINE
    sv.Supervisor(FakeLink(), base_ms=1, cap_ms=1, jitter_pct=99, reinit_after=1)  # allowed
    for kw in ({"base_ms": 0}, {"base_ms": 10, "cap_ms": 9}, {"jitter_pct": 100},
               {"jitter_pct": -1}, {"reinit_after": 0}):
        e = raises(ValueError, sv.Supervisor, FakeLink(), **kw)
        eq(str(e), "supervisor needs 0 < base_ms <= cap_ms, 0 <= jitter_pct < 100, "
                   "reinit_after >= 1", repr(kw))
    e = raises(sv.SupervisorStateError, sup._fire, sv.RETRY, 0)
    eq((str(e), e.state, e.event),
       ("supervisor event RETRY is illegal in state OFFLINE", sv.OFFLINE, sv.RETRY))


def test_jitter_is_xorshift32_and_takes_at_most_jitter_pct_off():
    sup = sv.Supervisor(FakeLink(), seed=1)
    eq([sup._rand16() for _ in range(5)], [x & 0xFFFF for x in xorshift32(1, 5)])
    sup = sv.Supervisor(FakeLink(), base_ms=1000000, cap_ms=10 ** 9, jitter_pct=40, seed=7)
    r = [x & 0xFFFF for x in xorshift32(7, 3)]
    eq([sup.backoff_ms(n) for n in (1, 2, 3)],
       [d - d * 40 * r[i] // (100 * 65536) for i, d in enumerate((1000000, 2000000, 4000000))])
    eq(sv.Supervisor(FakeLink(), seed=0)._seed, 1)        # xorshift must not start at 0
    eq(sv.Supervisor(FakeLink(), seed=1 << 32)._seed, 1)


def test_supervisors_started_at_the_same_tick_jitter_differently():
    def check(clock):
        a, b = sv.Supervisor(FakeLink()), sv.Supervisor(FakeLink())
        eq(a._seed != b._seed, True)
    with_clock(check)


def test_history_keeps_the_newest_16_transitions_and_reports_old_states():
    changes = []
    link = FakeLink()
    sup = sv.Supervisor(link, base_ms=10, jitter_pct=0,
                        on_change=lambda old, new: changes.append((old, new)))
    sup.start()
    t = 0
    for _ in range(7):                 # START, UP_OK, LOST: 3 transitions a round
        drive(sup, lambda s: s.online, now=t)
        link.alive = False
        t += 1000
        sup.step(t)
    eq(len(changes), 21)
    eq(changes[:3], [(sv.OFFLINE, sv.LINK_UP), (sv.LINK_UP, sv.ONLINE),
                     (sv.ONLINE, sv.OFFLINE)])
    h = sup.history()
    eq(len(h), 16)
    eq([e[1:] for e in h[:2]], [(sv.LOST, sv.ONLINE, sv.OFFLINE),      # the 6th and 7th
                                (sv.START, sv.OFFLINE, sv.LINK_UP)])
    eq(h[-1][0], 7000)
    eq((sup.losses, sup.failures, sup.last_error, sup.reconnects),
       (7, {"link lost": 7}, "link lost", 6))


def test_a_success_resets_the_count_towards_reinit():
    link = FakeLink(fail=1)
    sup = sv.Supervisor(link, base_ms=10, jitter_pct=0, reinit_after=2)
    sup.start()
    drive(sup, lambda s: s.online)
    link.alive = False
    link.fail = 1
    drive(sup, lambda s: s.online, now=100)
    eq(link.calls, ["up", "up", "down", "up", "up"])     # no reinit: never 2 in a row
    eq((sup.reinits, sup.since_reinit, sup.in_row), (0, 0, 0))


def test_a_link_without_reinit_is_taken_down_instead():
    class Plain:
        def __init__(self):
            self.calls = []
            self.fail = 1

        def up(self):
            self.calls.append("up")
            if self.fail:
                self.fail -= 1
                raise LinkDown("no")

        def down(self):
            self.calls.append("down")

        def is_up(self):
            return False

    link = Plain()
    sup = sv.Supervisor(link, base_ms=10, jitter_pct=0, reinit_after=1)
    sup.start()
    drive(sup, lambda s: s.online)
    eq((link.calls, sup.reinits), (["up", "down", "up"], 1))


def test_a_failed_reinit_is_the_last_error():
    link = FakeLink(fail=1, reinit_fails=1)
    sup = sv.Supervisor(link, base_ms=10, jitter_pct=0, reinit_after=1)
    sup.start()
    drive(sup, lambda s: s.state_name == "BACKOFF" and s.failures.get("reinit OSError"))
    eq((type(sup.last_error).__name__, sup.last_error.args), ("OSError", (5, "reset failed")))


class SlowLink(FakeLink):
    """Each up() and reinit() takes ``ms`` on the clock."""

    def __init__(self, clock, ms, fail=0, reinit_fails=0):
        FakeLink.__init__(self, fail, reinit_fails)
        self.clock = clock
        self.ms = ms

    def up(self):
        self.clock.now += self.ms
        FakeLink.up(self)

    def reinit(self):
        self.clock.now += self.ms
        FakeLink.reinit(self)


def test_on_the_real_clock_delays_count_from_when_a_blocking_call_ended():
    def check(clock):
        link = SlowLink(clock, 300, fail=2, reinit_fails=1)
        sup = sv.Supervisor(link, base_ms=100, jitter_pct=0, reinit_after=2, check_ms=50)
        sup.start()
        wakes = []
        for _ in range(9):
            wake = sup.step()
            wakes.append((clock.now, sup.state_name, wake))
            if sup.online:
                break
            clock.now = max(clock.now, wake)
        eq(wakes, [(0, "LINK_UP", 0), (300, "BACKOFF", 400), (400, "LINK_UP", 400),
                   (700, "BACKOFF", 900), (900, "REINIT", 900), (1200, "BACKOFF", 1600),
                   (1600, "REINIT", 1600), (1900, "LINK_UP", 1600), (2200, "ONLINE", 2250)])
        link.alive = False
        clock.now = 2250
        eq(sup.step(), 2250)
        sup.start()
        sup.step()
        clock.now = 2400
        sup.stop()
        eq(sup.format_history()[-7:],
           ["1200 REINIT_FAILED REINIT -> BACKOFF", "1600 REINIT_DUE BACKOFF -> REINIT",
            "1900 REINIT_DONE REINIT -> LINK_UP", "2200 UP_OK LINK_UP -> ONLINE",
            "2250 LOST ONLINE -> OFFLINE", "2250 START OFFLINE -> LINK_UP",
            "2400 STOP LINK_UP -> OFFLINE"])
    with_clock(check)


def test_run_sleeps_until_each_wake_and_ends_at_the_deadline():
    def check(clock):
        sup = sv.Supervisor(FakeLink(), check_ms=1000)
        eq(sup.run(duration_ms=2500), "ONLINE")
        eq((clock.now, clock.sleeps), (2500, [1000, 1000, 500]))
    with_clock(check)


def test_run_gives_the_waits_to_idle_and_ends_on_stop():
    def check(clock):
        waits = []

        def idle(ms):
            waits.append(ms)
            clock.now += ms

        sup = sv.Supervisor(FakeLink(), check_ms=400)
        eq(sup.run(stop=lambda: clock.now >= 1000, idle=idle), "ONLINE")
        eq((clock.now, waits, clock.sleeps), (1200, [400, 400, 400], []))

        def idle_then_stop(ms):
            clock.now += ms
            sup.stop()

        eq(sup.run(idle=idle_then_stop), "OFFLINE")     # stopped: step() has nothing to do
        eq(clock.now, 1600)
    with_clock(check)


class FakeAt:
    def __init__(self, modem):
        self.modem = modem
        self.commands = []
        self.polls = []
        self.error = None
        self.boots = True

    def command(self, cmd, prefix=None, payload=None, timeout_ms=None, lone_line=False):
        self.commands.append((cmd, timeout_ms))
        if self.error is not None:
            raise self.error

    def poll(self, ms):
        self.polls.append(ms)

    def wait_for(self, pred, timeout_ms):
        self.waited = timeout_ms
        if self.boots:
            self.modem.reboots += 1
        return pred()


def _fake_modem():
    from synack.modems.cellular import ModemBackend

    class FakeModem(ModemBackend):
        """The bearer life of modems.base with a scripted AT channel: what a dialect
        supplies is recorded."""
        RESET_COMMAND = b"AT+CRESET"

        def __init__(self):
            self.init_modem(FakeAt(self))
            self.started = []

        def start(self, timeout_ms):
            self.started.append(timeout_ms)
            self.net_open = True

        def bearer_close(self):
            self.at.command(b"AT+NETCLOSE", timeout_ms=5000)

    return FakeModem()


def test_modem_link_maps_up_down_and_reinit_onto_the_modem():
    from synack.at.errors import CommandError
    from synack.link.modem import ModemLink
    from synack.modems.base import ModemNotResponding

    modem = _fake_modem()
    link = ModemLink(modem)
    eq((link.register_timeout_ms, link.reset_wait_ms), (60000, 30000))
    eq(link.is_up(), False)
    link.up()
    eq((modem.started, link.is_up(), modem.at.polls), ([60000], True, [0, 0]))
    link.down()
    eq((modem.at.commands, modem.net_open), ([(b"AT+NETCLOSE", 5000)], False))
    link.down()                                  # already down: nothing to send
    eq(len(modem.at.commands), 1)
    modem.net_open = True
    modem.at.error = CommandError(b"AT+NETCLOSE", b"ERROR")
    link.down()                                  # the bearer was gone anyway
    eq(modem.net_open, False)
    modem.at.error = None
    modem.at.commands = []
    modem.net_open = True
    link.reinit()
    eq((modem.at.commands, modem.at.waited, modem.net_open, modem.reboots),
       ([(b"AT+CRESET", 5000)], 30000, False, 1))
    modem.RESET_COMMAND = b"AT+CFUN=1,1"         # the dialect's reset, whatever it is
    link = ModemLink(modem, register_timeout_ms=5, reset_wait_ms=700)
    modem.at.boots = False
    e = raises(ModemNotResponding, link.reinit)
    eq(str(e), "modem did not boot within 700 ms after AT+CFUN=1,1")
    link.up()
    eq(modem.started[-1], 5)


def test_run_ends_exactly_at_the_deadline():
    def check(clock):
        sup = sv.Supervisor(FakeLink(), check_ms=1000)
        eq(sup.run(duration_ms=1001), "ONLINE")
        eq((clock.now, clock.sleeps), (1001, [1000, 1]))
        eq([e[1] for e in sup.history()], [sv.START, sv.UP_OK])   # from the first entry
    with_clock(check)


def test_with_an_explicit_now_every_transition_is_logged_at_that_time():
    def check(clock):
        clock.now = 99999                    # the real clock is not read
        link = FakeLink(fail=1)
        sup = sv.Supervisor(link, base_ms=10, jitter_pct=0, reinit_after=1)
        sup.start()
        drive(sup, lambda s: s.online, now=100)
        eq(sup.format_history(),
           ["100 START OFFLINE -> LINK_UP", "100 UP_FAILED LINK_UP -> BACKOFF",
            "110 REINIT_DUE BACKOFF -> REINIT", "110 REINIT_DONE REINIT -> LINK_UP",
            "110 UP_OK LINK_UP -> ONLINE"])
    with_clock(check)
