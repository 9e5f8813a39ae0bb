"""What may go inside an AT command (at/quote.py), at the edges of each rule: IPv4
literals of ASCII digits only, host names up to 253 characters with labels up to 63 and
one trailing dot, quoted parameters of printable ASCII (space and "~" included, '"' and
DEL not) up to their length limit. Runs on CPython and in the MicroPython VM."""

import errno

from portable import eq, raises

from synack.at import quote

PORTABLE = True


def test_ipv4_literal_is_four_parts_of_one_to_three_ascii_digits_up_to_255():
    for good in ("0.0.0.0", "10.0.0.1", "255.255.255.255", b"192.168.1.20", "001.02.3.4"):
        eq(quote.is_ipv4(good), True, repr(good))
    for bad in ("1.2.3", "1.2.3.4.5", "256.1.1.1", "0001.2.3.4", "1..2.3", "1.2.3.x4",
                "a.b.c.d", "1.2.3.4:", "1:.2.3.4", "1.2.3.", "-1.2.3.4", " 1.2.3.4",
                "\u0661.2.3.4", 1234, None):
        eq(quote.is_ipv4(bad), False, repr(bad))


def test_host_name_up_to_253_characters():
    longest = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61
    eq(len(longest), 253)
    eq(quote.is_host(longest), True)
    eq(quote.is_host(longest + "d"), False)
    eq(quote.is_host(""), False)


def test_label_up_to_63_characters():
    eq(quote.is_host("a" * 63 + ".com"), True)
    eq(quote.is_host("a" * 64 + ".com"), False)


def test_one_trailing_dot_is_allowed_and_only_one():
    eq(quote.is_host("a.b."), True)
    eq(quote.host("example.com."), b"example.com.")
    eq(quote.is_host("example.."), False)
    eq(quote.is_host("."), False)


def test_ipv4_literal_is_a_host():
    eq(quote.host("10.1.2.3"), b"10.1.2.3")
    eq(quote.is_host(b"255.255.255.255"), True)


def test_invalid_host_is_einval_naming_it():
    e = raises(OSError, quote.host, 'x";+CFUN=0;"')
    eq(e.args[0], errno.EINVAL)
    eq('x";+CFUN=0;"' in str(e), True)


def test_param_is_printable_ascii_with_space_and_tilde_without_quote_or_del():
    eq(quote.is_param("my apn ~"), True)
    eq(quote.is_param(b" !~"), True)
    for bad in (b"a\x7fb", b"a\x1fb", b'a"b', b"a\rb", "caf\u00e9"):
        eq(quote.is_param(bad), False, repr(bad))


def test_param_up_to_its_limit():
    eq(quote.is_param("x" * 100), True)
    eq(quote.is_param("x" * 101), False)
    eq(quote.is_param("12345678", 8), True)
    eq(quote.is_param("123456789", 8), False)


def test_param_returns_bytes_or_value_error_naming_what_and_the_limit():
    eq(quote.param("internet", "APN"), b"internet")
    eq(quote.param(b"1234", "PIN", 8), b"1234")
    eq(quote.param("12345678", "PIN", 8), b"12345678")
    e = raises(ValueError, quote.param, "123456789", "PIN", 8)
    eq(str(e), "invalid PIN '123456789': printable ASCII without '\"', at most 8 characters")
    e = raises(ValueError, quote.param, 'a"b', "APN")
    eq(str(e), "invalid APN 'a\"b': printable ASCII without '\"', at most 100 characters")


def test_host_name_letters_digits_hyphen_and_underscore_only():
    for good in ("AZ.example", "az09.example", "a-b_c.example", "Z", "z9"):
        eq(quote.is_host(good), True, repr(good))
    for bad in ("a:b", "a{b", "a@b", "a[b", "a`b", "a/b", "a b"):
        eq(quote.is_host(bad), False, repr(bad))


def test_invalid_host_message_quotes_it():
    e = raises(OSError, quote.host, "a b")
    eq(e.args[1], "invalid host name 'a b'")
