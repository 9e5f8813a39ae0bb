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


def test_each_bad_value_is_named_in_its_error():
    for args, text in (((0, 1, 1), "keepalive idle must be a whole number >= 1, got 0"),
                       ((1, -1, 1), "keepalive interval must be a whole number >= 1, got -1"),
                       ((1, 1, 0), "keepalive count must be a whole number >= 1, got 0"),
                       ((1, 1, 1.5), "keepalive count must be a whole number >= 1, got 1.5")):
        eq(str(raises(ValueError, keepalive.Keepalive, *args)), text)
    eq(repr(keepalive.Keepalive(30, 5, 4)), "Keepalive(idle=30, interval=5, count=4)")


def test_modem_units_are_whole_numbers_and_range_ends_are_included():
    ranges = ((2, 4), (1, 3), (2, 5))
    for ka, want in (((120, 60, 2), (2, 1, 2)),   # every lower end
                     ((240, 180, 5), (4, 3, 5)),  # every upper end
                     ((60, 60, 2), None), ((300, 60, 2), None),    # idle 1 or 5 min
                     ((120, 240, 2), None), ((120, 60, 1), None),  # interval 4, count 1
                     ((120, 60, 6), None)):
        got = keepalive.in_units(keepalive.Keepalive(*ka), 60, *ranges)
        eq(got, want, repr(ka))
        if got is not None:
            eq([type(v) for v in got], [int, int, int], repr(ka))
