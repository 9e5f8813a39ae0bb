"""The blocking runner of AT steps generators (at/steps.py run): each request executed
on the channel, its result sent back into the generator, its error thrown back in at the
``yield`` (caught there, or propagated), the generator's return value returned. Runs on
CPython and in the MicroPython VM (generators with send/throw, ``yield from``)."""

from portable import FakeClock, eq, raises, with_clock

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


# -- Stepper: the same generators on a real Channel, advanced without waiting ----------

from synack.at.driver import Channel  # noqa: E402
from synack.at.parser import Parser  # noqa: E402


class SlowModem:
    """A UART whose modem answers a command only when the test says so (``answer()``):
    until then every ``advance()`` of a Stepper must return at once, undone."""

    def __init__(self, **replies):
        self.replies = dict(replies)
        self.replies.setdefault("AT", b"\r\nOK\r\n")
        self.rx = bytearray()
        self.pending = []
        self.commands = []
        self._out = bytearray()

    def write(self, data):
        self._out += bytes(data)
        while b"\r" in self._out:
            i = self._out.index(b"\r")
            cmd = bytes(self._out[:i])
            self._out = self._out[i + 1:]
            self.commands.append(cmd)
            self.pending.append(self.replies.get(cmd.decode(), b"\r\nERROR\r\n"))
        return len(data)

    def answer(self, n=1):
        for _ in range(n):
            self.rx += self.pending.pop(0)

    def say(self, data):
        self.rx += data

    def any(self):
        return len(self.rx)

    def readinto(self, buf):
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n


def slow_channel(**replies):
    uart = SlowModem(**replies)
    return uart, Channel(uart, Parser(urcs=(b"+EVT:",)))


def test_a_stepper_returns_at_once_until_the_reply_is_there():
    uart, at = slow_channel(**{"AT+CSQ": b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"})
    events = []
    at.engine.on_urc(b"+EVT:", events.append)

    def gen():
        signal = (yield steps.command(b"AT+CSQ", b"+CSQ:")).lines
        seen = yield steps.wait_for(lambda: bool(events), 60000)
        return signal, seen

    s = steps.Stepper(at, gen())
    eq((s.advance(), s.advance(), uart.commands), (False, False, [b"AT+CSQ"]))
    uart.answer()
    eq((s.advance(), s.done), (False, False))  # the reply is in; now the wait
    uart.say(b"\r\n+EVT: 1\r\n")
    eq((s.advance(), s.done, s.value), (True, True, ([b"+CSQ: 20,99"], True)))
    eq((at.engine.busy, at.owner), (False, None))
    eq((s.advance(), s.value), (True, ([b"+CSQ: 20,99"], True)))  # done stays done


def test_a_stepper_throws_an_error_in_at_the_yield_and_raises_what_escapes():
    uart, at = slow_channel(**{"AT+NETOPEN": b"\r\n+CME ERROR: 3\r\n"})

    def gen():
        try:
            yield steps.command(b"AT+NETOPEN")
        except CommandError as e:
            raise ValueError("bearer: %d" % e.code)

    s = steps.Stepper(at, gen())
    s.advance()
    uart.answer()
    eq(str(raises(ValueError, s.advance)), "bearer: 3")
    eq(at.engine.busy, False)


def test_a_blocking_command_meanwhile_answers_the_steppers_first():
    uart, at = slow_channel(**{"AT+A": b"\r\n+A: 1\r\n\r\nOK\r\n",
                               "AT+B": b"\r\n+B: 2\r\n\r\nOK\r\n"})

    def gen():
        return (yield steps.command(b"AT+A", b"+A:")).lines

    s = steps.Stepper(at, gen())
    eq(s.advance(), False)
    uart.answer()           # A's reply waits in the UART; B's is answered when sent
    real = uart.write

    def write_and_answer(data):
        n = real(data)
        while uart.pending:
            uart.answer()
        return n

    uart.write = write_and_answer
    eq(at.command(b"AT+B", b"+B:").lines, [b"+B: 2"])
    eq((s.advance(), s.value, uart.commands), (True, [b"+A: 1"], [b"AT+A", b"AT+B"]))


def test_a_stepper_resyncs_a_channel_that_needs_it_before_its_command():
    uart, at = slow_channel(**{"AT+CSQ": b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"})
    at.needs_resync = True

    def gen():
        return (yield steps.command(b"AT+CSQ", b"+CSQ:")).lines

    def run(clock):
        s = steps.Stepper(at, gen())
        eq((s.advance(), uart.commands), (False, [b"AT"]))
        uart.answer()
        eq((s.advance(), uart.commands), (False, [b"AT"]))  # OK: now 100 ms of quiet
        clock.now = 99
        eq((s.advance(), uart.commands), (False, [b"AT"]))
        clock.now = 100
        eq((s.advance(), uart.commands), (False, [b"AT", b"AT+CSQ"]))
        uart.answer()
        eq((s.advance(), s.value, at.needs_resync), (True, [b"+CSQ: 20,99"], False))
    with_clock(steps, run)


def test_cancel_aborts_the_command_in_flight_and_closes_the_generator():
    uart, at = slow_channel()
    closed = []

    def gen():
        try:
            yield steps.command(b"AT+SLOW")
        finally:
            closed.append(True)

    s = steps.Stepper(at, gen())
    s.advance()
    eq(at.engine.busy, True)
    s.cancel()
    eq((at.engine.busy, at.needs_resync, at.owner, closed), (False, True, None, [True]))


def test_a_stepper_wait_ends_at_its_deadline_and_a_pause_after_its_time():
    def run(clock):
        uart, at = slow_channel()

        def gen():
            seen = yield steps.wait_for(lambda: False, 300)
            yield steps.pause(200, clock)
            return seen

        s = steps.Stepper(at, gen())
        eq(s.advance(), False)
        clock.now = 299
        eq(s.advance(), False)
        clock.now = 300
        eq(s.advance(), False)   # the wait is over (False): now the pause
        clock.now = 499
        eq(s.advance(), False)
        clock.now = 500
        eq((s.advance(), s.value), (True, False))
    with_clock(steps, run)
