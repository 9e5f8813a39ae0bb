"""Exceptions of the AT layer. Each carries the modem's own code and a readable message."""

# The CME codes a socket/bring-up driver meets in practice (3GPP TS 27.007 9.2.1).
# Not the whole table: the firmware has little flash, and the number is always shown.
CME_TEXT = {
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    30: "no network service",
    50: "incorrect parameters",
    100: "unknown error",
}


class ModemError(Exception):
    """Base class of everything the modem layer raises."""


class CommandError(ModemError):
    """The modem answered a command with ERROR, +CME ERROR or +CMS ERROR.

    ``code`` is the numeric CME/CMS code (None for a bare ERROR or a verbose text),
    ``result`` the final line as received, ``command`` what was sent, ``dropped`` how
    many reply lines the engine did not keep (beyond its cap).
    """

    def __init__(self, command, result, lines=None, dropped=0):
        self.command = command
        self.result = result
        self.lines = lines or []
        self.dropped = dropped
        self.code = None
        text = result.decode()
        colon = text.find(":")
        if colon > 0:  # pragma: no mutate -- results are ERROR or +CM? ERROR: colon -1 or 10
            detail = text[colon + 1:].strip()
            try:
                self.code = int(detail)
                detail = CME_TEXT.get(self.code, "")  # pragma: no mutate -- "" or None: no text
            except ValueError:
                pass
            if detail and not text.endswith(detail):
                text = "%s (%s)" % (text, detail)
        for ln in self.lines:  # e.g. "+IP ERROR: Network is already opened"
            text += "; " + ln.decode()
        if dropped:
            text += "; %d more lines dropped" % dropped
        super().__init__("%s -> %s" % (command.decode(), text))


class CommandTimeout(ModemError):
    """No final result within the command's timeout (a modem that stopped answering,
    or a length-framed payload that was cut short)."""

    def __init__(self, command, timeout_ms, detail=""):
        self.command = command
        self.timeout_ms = timeout_ms
        msg = "%s: no answer within %d ms" % (command.decode(), timeout_ms)
        if detail:
            msg += " (" + detail + ")"
        super().__init__(msg)
