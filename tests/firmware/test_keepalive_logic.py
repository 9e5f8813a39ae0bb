"""Keepalive settings: validation, the detection bound, and mapping to a modem's units."""

from portable import eq, raises

from synack import keepalive

PORTABLE = True


def test_defaults_and_bound():
    ka = keepalive.Keepalive()
    eq((ka.idle, ka.interval, ka.count), (7200, 75, 10))
    eq(ka.deadline_s(), 7200 + 75 * 10)
    eq(keepalive.Keepalive(5, 2, 3).deadline_s(), 11)


def test_bad_values_are_clear_errors():
    for args in ((0, 1, 1), (1, -1, 1), (1, 1, 0), (1.5, 1, 1)):
        e = raises(ValueError, keepalive.Keepalive, *args)
        eq("keepalive" in str(e) and ">= 1" in str(e), True)


def test_modem_units_only_when_exact_and_in_range():
    minutes = ((1, 120), (1, 75), (1, 10))
    eq(keepalive.in_units(keepalive.Keepalive(120, 60, 5), 60, *minutes), (2, 1, 5))
    eq(keepalive.in_units(keepalive.Keepalive(90, 60, 5), 60, *minutes), None)   # 1.5 min
    eq(keepalive.in_units(keepalive.Keepalive(60, 60, 11), 60, *minutes), None)  # count
    eq(keepalive.in_units(keepalive.Keepalive(7260, 60, 1), 60, *minutes), None)  # 121 min


def test_sim7600_choice_of_mechanism():
    from synack.modems.sim7600 import _ctcpka_units
    eq(_ctcpka_units(keepalive.Keepalive(7200, 60, 10)), (120, 1, 10))
    eq(_ctcpka_units(keepalive.Keepalive(7200, 75, 10)), None)   # 75 s is not whole minutes
