"""The AT layer's exceptions (at/errors.py): what a CommandError keeps (the command, the
final result, the reply lines, the code) and the exact message it shows -- the CME
code's meaning added once, never repeated, and the lines that explain the error. Runs on
CPython and in the MicroPython VM."""

from portable import eq

from synack.at.errors import CME_TEXT, CommandError, CommandTimeout, ModemError

PORTABLE = True


def test_bare_error_keeps_command_and_result_and_has_no_code():
    e = CommandError(b"AT+CIPCLOSE=3", b"ERROR")
    eq(e.command, b"AT+CIPCLOSE=3")
    eq(e.result, b"ERROR")
    eq(e.lines, [])
    eq(e.dropped, 0)
    eq(e.code, None)
    eq(str(e), "AT+CIPCLOSE=3 -> ERROR")
    eq(isinstance(e, ModemError), True)


def test_known_cme_code_is_parsed_and_explained_once():
    e = CommandError(b"AT+CPIN?", b"+CME ERROR: 10")
    eq(e.code, 10)
    eq(str(e), "AT+CPIN? -> +CME ERROR: 10 (SIM not inserted)")
    e = CommandError(b"AT+CMGS=1", b"+CMS ERROR: 50")
    eq(e.code, 50)
    eq(str(e), "AT+CMGS=1 -> +CMS ERROR: 50 (%s)" % CME_TEXT[50])


def test_code_without_a_space_after_the_colon_is_parsed():
    e = CommandError(b"AT+CPIN?", b"+CME ERROR:11")
    eq(e.code, 11)
    eq(str(e), "AT+CPIN? -> +CME ERROR:11 (SIM PIN required)")


def test_unknown_code_is_kept_and_shown_as_the_number_only():
    e = CommandError(b"AT+CGATT=1", b"+CME ERROR: 999")
    eq(e.code, 999)
    eq(str(e), "AT+CGATT=1 -> +CME ERROR: 999")


def test_verbose_error_text_is_shown_once_and_has_no_code():
    # CMEE=2: the modem sends the text itself; adding it again would say it twice
    e = CommandError(b"AT+CPIN?", b"+CME ERROR: SIM not inserted")
    eq(e.code, None)
    eq(str(e), "AT+CPIN? -> +CME ERROR: SIM not inserted")


def test_verbose_text_with_a_colon_is_not_taken_for_a_code():
    e = CommandError(b"AT+CIPOPEN=0", b"+CME ERROR: timeout: 30")
    eq(e.code, None)
    eq(str(e), "AT+CIPOPEN=0 -> +CME ERROR: timeout: 30")


def test_reply_lines_explain_the_error_in_order():
    lines = [b"+IP ERROR: Network is already opened", b"+IP ERROR: busy"]
    e = CommandError(b"AT+NETOPEN", b"ERROR", lines)
    eq(e.lines, lines)
    eq(str(e), "AT+NETOPEN -> ERROR; +IP ERROR: Network is already opened; "
               "+IP ERROR: busy")


def test_dropped_lines_are_counted_in_the_message():
    e = CommandError(b"AT+COPS=?", b"+CME ERROR: 3", [b"+COPS: 1"], dropped=4)
    eq(e.dropped, 4)
    eq(str(e), "AT+COPS=? -> +CME ERROR: 3 (operation not allowed); +COPS: 1; "
               "4 more lines dropped")


def test_timeout_names_the_command_its_limit_and_the_detail():
    e = CommandTimeout(b"AT+CIPRXGET=2,0,64", 5000, "payload cut short")
    eq(e.command, b"AT+CIPRXGET=2,0,64")
    eq(e.timeout_ms, 5000)
    eq(str(e), "AT+CIPRXGET=2,0,64: no answer within 5000 ms (payload cut short)")
    eq(str(CommandTimeout(b"AT", 20)), "AT: no answer within 20 ms")
    eq(isinstance(e, ModemError), True)
