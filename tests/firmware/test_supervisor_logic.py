"""Supervisor state machine on a fake link and a fake clock: backoff growth and cap,
jitter bounds, re-initialisation after repeated failures, loss and recovery, sessions."""

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
