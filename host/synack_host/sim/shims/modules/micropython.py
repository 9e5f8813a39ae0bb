"""CPython stand-in for MicroPython's ``micropython`` module (device code under test)."""


def const(value):
    return value


def alloc_emergency_exception_buf(size):
    return None


def schedule(func, arg):
    func(arg)


def opt_level(level=None):
    return 0
