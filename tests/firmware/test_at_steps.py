"""The blocking runner of AT steps generators (at/steps.py run): each request executed
on the channel, its result sent back into the generator, its error thrown back in at the
``yield`` (caught there, or propagated), the generator's return value returned. Runs on
CPython and in the MicroPython VM (generators with send/throw, ``yield from``)."""

from portable import FakeClock, eq, raises

from synack.at import steps
from synack.at.engine import Reply
from synack.at.errors import CommandError, CommandTimeout

PORTABLE = True


class FakeAt:
    """A channel whose commands answer from ``answers`` (cmd -> lines or exception);
    records every call as the blocking Channel would get it."""

    def __init__(self, **answers):
        self.answers = answers
        self.calls = []

    def command(self, cmd, prefix=None, payload=None, timeout_ms=None, lone_line=False):
        self.calls.append(("command", cmd, prefix, payload, timeout_ms, lone_line))
        answer = self.answers.get(cmd.decode(), [])
        if isinstance(answer, Exception):
            raise answer
        return Reply(list(answer), None)

    def wait_for(self, predicate, timeout_ms):
        self.calls.append(("wait_for", timeout_ms))
        return predicate()

    def poll(self, timeout_ms):
        self.calls.append(("poll", timeout_ms))


def test_results_go_back_into_the_generator_and_its_value_comes_out():
    at = FakeAt(**{"AT+CSQ": [b"+CSQ: 20,99"], "AT+CGMM": [b"SIM7600"]})

    def inner():
        reply = yield steps.command(b"AT+CGMM")
        return reply.lines[0]

    def outer():
        signal = (yield steps.command(b"AT+CSQ", b"+CSQ:", 3000)).lines
        model = yield from inner()
        ok = yield steps.wait_for(lambda: True, 1500)
        nothing = yield steps.poll(200)
        return signal, model, ok, nothing

    eq(steps.run(at, outer()), ([b"+CSQ: 20,99"], b"SIM7600", True, None))
    eq(at.calls, [("command", b"AT+CSQ", b"+CSQ:", None, 3000, False),
                  ("command", b"AT+CGMM", None, None, None, False),  # the channel's default
                  ("wait_for", 1500), ("poll", 200)])


def test_payload_and_lone_line_commands_pass_every_argument():
    at = FakeAt(**{"AT+CIFSR": [b"10.0.0.2"]})

    def gen():
        yield steps.command(b"AT+CIPSEND=0,2", payload=b"hi", timeout_ms=10000)
        return (yield steps.command(b"AT+CIFSR", lone_line=True)).lines

    eq(steps.run(at, gen()), [b"10.0.0.2"])
    eq(at.calls, [("command", b"AT+CIPSEND=0,2", None, b"hi", 10000, False),
                  ("command", b"AT+CIFSR", None, None, 5000, True)])


def test_an_error_is_thrown_in_at_the_yield_and_caught_there():
    error = CommandError(b"AT+NETOPEN", b"+CME ERROR: 3")
    at = FakeAt(**{"AT+NETOPEN": error, "AT+NETOPEN?": [b"+NETOPEN: 1"]})

    def gen():
        try:
            yield steps.command(b"AT+NETOPEN")
        except CommandError as e:
            caught = e
        again = yield steps.command(b"AT+NETOPEN?")
        return caught, again.lines

    caught, lines = steps.run(at, gen())
    eq((caught is error, caught.code, lines), (True, 3, [b"+NETOPEN: 1"]))


def test_an_error_the_generator_does_not_catch_propagates():
    at = FakeAt(**{"AT": CommandTimeout(b"AT", 500)})
    after = []

    def gen():
        try:
            yield steps.command(b"AT", timeout_ms=500)
        except CommandError:
            after.append("wrong handler")
        after.append("not reached")

    e = raises(CommandTimeout, steps.run, at, gen())
    eq((str(e), after), (str(CommandTimeout(b"AT", 500)), []))

    def translating():
        why = None
        try:
            yield steps.command(b"AT", timeout_ms=500)
        except CommandTimeout as t:
            why = t
        raise ValueError("no modem: %s" % why)

    eq(str(raises(ValueError, steps.run, at, translating())).startswith("no modem: "), True)


def test_a_pause_sleeps_on_the_clock_given_and_a_generator_without_yields_runs():
    clock = FakeClock()

    def gen():
        yield steps.pause(500, clock)
        yield steps.pause(250, clock)
        return "slept"

    eq((steps.run(FakeAt(), gen()), clock.sleeps), ("slept", [500, 250]))

    def empty():
        yield from ()
        return 7

    eq(steps.run(FakeAt(), empty()), 7)
