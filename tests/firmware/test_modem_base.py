"""The 27.007 helpers every modem dialect shares (modems/base.py): sync, SIM check,
signal, registration, integer fields; over a scripted AT channel and a fake clock."""

import portable
from portable import eq, raises

from synack.at.engine import Reply
from synack.at.errors import CommandError, CommandTimeout
from synack.modems import base

PORTABLE = True


def with_clock(fn):
    return portable.with_clock(base, fn)


class ScriptedAt:
    """``answers``: command -> list of replies, each a list of lines, an exception, or a
    callable; the last one repeats. poll(ms) moves the clock."""

    def __init__(self, clock=None, **answers):
        self.clock = clock
        self.answers = answers
        self.sent = []

    def command(self, cmd, prefix=None, timeout_ms=None):
        self.sent.append((cmd, timeout_ms))
        key = cmd.decode()
        todo = self.answers[key] if key in self.answers else [[]]
        answer = todo.pop(0) if len(todo) > 1 else todo[0]
        if isinstance(answer, Exception):
            raise answer
        return Reply(list(answer), None)

    def poll(self, ms):
        self.clock.now += ms


def cme(code):
    return CommandError(b"AT+CPIN?", b"+CME ERROR: %d" % code)


def test_sync_retries_until_the_modem_answers():
    at = ScriptedAt(**{"AT": [CommandTimeout(b"AT", 500), CommandTimeout(b"AT", 500), []]})
    base.sync(at)
    eq(at.sent, [(b"AT", 500)] * 3)
    at = ScriptedAt(**{"AT": [CommandTimeout(b"AT", 200)]})
    e = raises(base.ModemNotResponding, base.sync, at, 3, 200)
    eq(str(e), "modem does not answer AT (3 attempts of 200 ms): check power, wiring "
               "(TX/RX crossed?) and baud rate")
    eq(len(at.sent), 3)
    eq(len(raises(base.ModemNotResponding, base.sync,
                  ScriptedAt(**{"AT": [CommandTimeout(b"AT", 1)]})).args), 1)


def test_sim_ready_pin_and_errors():
    def check(clock):
        at = ScriptedAt(clock, **{"AT+CPIN?": [[b"+CPIN: READY"]]})
        base.check_sim(at)
        at = ScriptedAt(clock, **{"AT+CPIN?": [[b"+CPIN: SIM PIN"], [b"+CPIN: READY"]]})
        base.check_sim(at, pin="1234")
        eq(at.sent[1], (b'AT+CPIN="1234"', 5000))
        at = ScriptedAt(clock, **{"AT+CPIN?": [[b"+CPIN: SIM PIN"]]})
        e = raises(base.SIMLocked, base.check_sim, at, "1234")   # the PIN is tried once
        eq(str(e), "SIM is locked: +CPIN: SIM PIN (give the PIN in the config)")
        eq(len([c for c, _ in at.sent if c.startswith(b'AT+CPIN="')]), 1)
        e = raises(base.SIMLocked, base.check_sim,
                   ScriptedAt(clock, **{"AT+CPIN?": [[b"+CPIN: SIM PUK"]]}), "1")
        eq(str(e), "SIM is locked: +CPIN: SIM PUK")
        e = raises(base.NoSIM, base.check_sim, ScriptedAt(clock, **{"AT+CPIN?": [cme(10)]}))
        eq(str(e), "no SIM card: " + str(cme(10)))
        e = raises(base.NoSIM, base.check_sim, ScriptedAt(clock, **{"AT+CPIN?": [cme(13)]}))
        eq(str(e), "SIM not usable: " + str(cme(13)))
        e = raises(base.NoSIM, base.check_sim, ScriptedAt(clock, **{"AT+CPIN?": [[]]}))
        eq(str(e), "AT+CPIN? gave no +CPIN line")
    with_clock(check)


def test_a_busy_sim_is_asked_again_until_the_timeout():
    def check(clock):
        at = ScriptedAt(clock, **{"AT+CPIN?": [cme(14), cme(14), [b"+CPIN: READY"]]})
        base.check_sim(at)
        eq((clock.sleeps, clock.now), ([500, 500], 1000))
        clock.sleeps = []
        at = ScriptedAt(clock, **{"AT+CPIN?": [cme(14)]})
        e = raises(base.NoSIM, base.check_sim, at, None, 1200)
        eq((str(e).startswith("SIM not usable: "), clock.sleeps), (True, [500, 500, 500]))
    with_clock(check)


def test_signal_in_dbm():
    def dbm(line):
        return base.signal_dbm(ScriptedAt(**{"AT+CSQ": [[line] if line else []]}))

    eq([dbm(b"+CSQ: %d,99" % r) for r in (0, 1, 31, 99, 100, 191)],
       [-113, -111, -51, None, -116, -25])
    for bad in (b"+CSQ: 32,99", b"+CSQ: 98,0", b"+CSQ: 192,0", b"+CSQ: x,0", None):
        raises(base.MalformedReply, dbm, bad)
    eq(str(raises(base.MalformedReply, dbm, b"+CSQ: 32,99")),
       "AT+CSQ: malformed reply [b'+CSQ: 32,99']")


def test_registration_takes_the_best_domain():
    def reg(cereg, creg):
        return base.registration(ScriptedAt(**{"AT+CEREG?": [cereg], "AT+CREG?": [creg]}))

    eq(reg([b"+CEREG: 0,1"], [b"+CREG: 0,2"]), base.REG_HOME)
    eq(reg([b"+CEREG: 0,2"], [b"+CREG: 0,5"]), base.REG_ROAMING)
    eq(reg([b"+CEREG: 0,2"], [b"+CREG: 0,3"]), base.REG_DENIED)
    eq(reg([b"+CEREG: 0,3"], [b"+CREG: 0,2"]), base.REG_DENIED)
    eq(reg([b"+CEREG: 0,0"], [b"+CREG: 0,2"]), base.REG_SEARCHING)
    eq(reg([b"+CEREG: 0,2"], [b"+CREG: 0,0"]), base.REG_SEARCHING)
    eq(reg([b"+CEREG: 0,0"], [b"+CREG: 0,0"]), base.REG_NOT_SEARCHING)
    eq(reg([b"+CEREG: 0,4"], [b"+CREG: 0,0"]), base.REG_UNKNOWN)
    eq(reg([b"+CEREG: 0,6"], [b"+CREG: 0,0"]), base.REG_UNKNOWN)    # out of range
    eq(reg([b"+CEREG: 0"], [b"+CREG: 0,x"]), base.REG_UNKNOWN)      # malformed
    eq(reg([], CommandError(b"AT+CREG?", b"ERROR")), base.REG_UNKNOWN)
    eq(reg(CommandError(b"AT+CEREG?", b"ERROR"), [b"+CREG: 0,1"]), base.REG_HOME)


def test_wait_registered_polls_until_registered_denied_or_timeout():
    def check(clock):
        at = ScriptedAt(clock, **{"AT+CEREG?": [[b"+CEREG: 0,2"], [b"+CEREG: 0,2"],
                                                [b"+CEREG: 0,5"]],
                                  "AT+CREG?": [[b"+CREG: 0,2"]]})
        eq(base.wait_registered(at, 60000, 700), base.REG_ROAMING)
        eq(clock.now, 1400)
        at = ScriptedAt(clock, **{"AT+CEREG?": [[b"+CEREG: 0,3"]]})
        e = raises(base.RegistrationDenied, base.wait_registered, at)
        eq((e.stat, str(e)), (3, "network registration denied (+CEREG stat 3): SIM not "
                                 "provisioned for this network, or barred"))
        clock.now = 0
        at = ScriptedAt(clock, **{"AT+CEREG?": [[b"+CEREG: 0,2"]]})
        e = raises(base.NotRegistered, base.wait_registered, at, 2000, 1000)
        eq((e.stat, str(e), clock.now),
           (2, "not registered on the network: +CREG/+CEREG stat 2 (searching)", 2000))
    with_clock(check)


def test_not_registered_names_the_state():
    eq(str(base.NotRegistered(0)),
       "not registered on the network: +CREG/+CEREG stat 0 (not registered)")
    eq(str(base.NotRegistered(5)),
       "not registered on the network: +CREG/+CEREG stat 5 (registered (roaming))")
    eq(str(base.NotRegistered(6)), "not registered on the network: +CREG/+CEREG stat 6 (?)")
    eq(str(base.NotRegistered(-1)), "not registered on the network: +CREG/+CEREG stat -1 (?)")
    eq(str(base.NotRegistered(1, "custom")), "custom")


def test_integer_fields():
    eq(base.parse_ints(b"+CIPOPEN: 0,1", 9), [0, 1])
    eq(base.parse_ints(b"+CIPSEND: 1,10,-1", 9), [1, 10, -1])
    eq(base.parse_ints(b"+CIPSEND: 1,-0,2", 9), [1, 0, 2])
    for bad in (b"+CIPOPEN: 0,x", b"+CIPOPEN: 0,--1", b"+CIPOPEN: 0,-", b"+CIPOPEN: +1,0",
                b"+CIPOPEN: 0,"):
        eq(base.parse_ints(bad, 9), None, repr(bad))


def test_sync_tries_ten_times_half_a_second_each_by_default():
    at = ScriptedAt(**{"AT": [CommandTimeout(b"AT", 500)]})
    raises(base.ModemNotResponding, base.sync, at)
    eq(at.sent, [(b"AT", 500)] * 10)


def test_a_busy_sim_is_asked_again_for_ten_seconds_by_default():
    def check(clock):
        at = ScriptedAt(clock, **{"AT+CPIN?": [cme(14)]})
        raises(base.NoSIM, base.check_sim, at)
        eq(clock.sleeps, [500] * 20)
    with_clock(check)


def test_a_busy_sim_is_asked_again_while_any_time_is_left():
    def check(clock):
        at = ScriptedAt(clock, **{"AT+CPIN?": [cme(14)]})
        raises(base.NoSIM, base.check_sim, at, None, 1)
        eq((clock.sleeps, len(at.sent)), ([500], 2))
    with_clock(check)


def test_a_pin_that_would_inject_a_command_is_refused_by_name():
    def check(clock):
        at = ScriptedAt(clock, **{"AT+CPIN?": [[b"+CPIN: SIM PIN"]]})
        e = raises(ValueError, base.check_sim, at, '1";+CFUN=0')
        eq(str(e), "invalid PIN '1\";+CFUN=0': printable ASCII without '\"', at most 100 "
                   "characters")
        eq(at.sent, [(b"AT+CPIN?", None)])
    with_clock(check)


def test_malformed_signal_quotes_the_first_line_only():
    at = ScriptedAt(**{"AT+CSQ": [[b"+CSQ: 32,99", b"+CSQ: 5,99"]]})
    eq(str(raises(base.MalformedReply, base.signal_dbm, at)),
       "AT+CSQ: malformed reply [b'+CSQ: 32,99']")


def test_wait_registered_polls_every_second_for_a_minute_by_default():
    def check(clock):
        at = ScriptedAt(clock, **{"AT+CEREG?": [[b"+CEREG: 0,2"]]})
        raises(base.NotRegistered, base.wait_registered, at)
        eq(clock.now, 60000)
        eq(len([c for c, _ in at.sent if c == b"AT+CEREG?"]), 61)
    with_clock(check)


def test_wait_registered_polls_again_while_any_time_is_left():
    def check(clock):
        at = ScriptedAt(clock, **{"AT+CEREG?": [[b"+CEREG: 0,2"]]})
        raises(base.NotRegistered, base.wait_registered, at, 1, 1)
        eq((clock.now, len([c for c, _ in at.sent if c == b"AT+CEREG?"])), (1, 2))
    with_clock(check)
