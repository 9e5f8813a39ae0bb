"""Assertion helpers for tests that run both under pytest (CPython) and inside a real
MicroPython VM, where pytest does not exist. Test modules that mark themselves
``PORTABLE = True`` may only use these and plain Python that MicroPython supports."""


def raises(exc_type, fn, *args, **kwargs):
    """Call fn; return the exception it raised, which must be an ``exc_type``."""
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    raise AssertionError("%s did not raise %s" % (getattr(fn, "__name__", fn),
                                                  exc_type.__name__))


def eq(got, want, msg=""):
    if got != want:
        text = "got %r, want %r" % (got, want)
        if len(text) > 600:
            text = text[:600] + "..."
        raise AssertionError(text + (" (" + msg + ")" if msg else ""))


def feed_variants(data):
    """The same input whole, one byte at a time, and split in two at every boundary."""
    yield [data]
    yield [data[i:i + 1] for i in range(len(data))]
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]


class FakeClock:
    """Stands in for the ``time`` module inside a firmware module: the clock moves only
    when code sleeps (``sleep_ms``) or a test sets ``now``; sleeps are recorded."""

    def __init__(self, now=0):
        self.now = now
        self.sleeps = []

    def ticks_ms(self):
        return self.now

    def ticks_us(self):
        return 0

    def ticks_add(self, t, delta):
        return t + delta

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        self.sleeps.append(ms)
        self.now += ms


def with_clock(module, fn, now=0):
    """Run ``fn(clock)`` with ``module.time`` replaced by a FakeClock."""
    real = module.time
    clock = FakeClock(now)
    module.time = clock
    try:
        return fn(clock)
    finally:
        module.time = real
