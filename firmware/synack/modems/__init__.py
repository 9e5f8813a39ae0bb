"""The modems synack drives, by dialect name, and ``detect()`` for a modem of unknown make.

    from synack import modems
    from synack.link import modem_uart
    uart = modem_uart(1, 115200)
    Modem = modems.driver(modems.detect(uart))    # or modems.driver("bg96")
    modem = Modem(uart, apn="internet")
    modem.start()

A driver module is loaded only when asked for (one dialect's code in RAM). Adding a
dialect: its module here, one line in ``DRIVERS`` and one in ``MODELS`` (docs/modems.md).
"""

# dialect name -> (module in this package, class)
DRIVERS = {
    "sim7600": ("sim7600", "SIM7600"),
    "bg96": ("bg96", "BG96"),
    "sim800": ("sim800", "SIM800"),
    "sara-r4": ("sara_r4", "SARAR4"),
}

# a piece of the AT+CGMM (or ATI) answer -> dialect; the first that occurs wins
MODELS = (
    (b"SIM7600", "sim7600"), (b"SIM7500", "sim7600"), (b"SIM7800", "sim7600"),
    (b"BG96", "bg96"), (b"BG95", "bg96"), (b"EG91", "bg96"), (b"EC2", "bg96"),
    (b"SIM800", "sim800"), (b"SIM900", "sim800"),
    (b"SARA-R4", "sara-r4"), (b"SARA-R5", "sara-r4"),
)


def driver(name):
    """The driver class of dialect ``name``; ValueError naming the known ones."""
    try:
        module, cls = DRIVERS[name]
    except KeyError:
        raise ValueError("unknown modem dialect %r; known: %s"
                         % (name, ", ".join(sorted(DRIVERS))))
    pkg = __import__("synack.modems." + module)  # the top package: walk down to the module
    return getattr(getattr(pkg.modems, module), cls)


def dialect_of(model):
    """The dialect whose model name occurs in ``model`` (bytes), or None."""
    for piece, name in MODELS:
        if piece in model:
            return name
    return None


def detect(uart, timeout_ms=1000):
    """Ask the modem on ``uart`` what it is (``AT+CGMM``, then ``ATI``) and return its
    dialect name. Raises base.ModemNotResponding when it does not answer, and
    base.UnknownModem naming the model when no driver knows it."""
    from ..at.driver import Channel
    from ..at.errors import ModemError
    from ..at.parser import Parser
    from . import base

    at = Channel(uart, Parser())
    base.sync(at, timeout_ms=timeout_ms)
    seen = []
    for cmd in (b"AT+CGMM", b"ATI"):
        try:
            lines = at.command(cmd, timeout_ms=timeout_ms).lines
        except ModemError:
            continue
        for line in lines:
            name = dialect_of(line)
            if name is not None:
                return name
        seen.extend(lines)
    raise base.UnknownModem("no synack driver for this modem (it says %s); known "
                            "dialects: %s" % (b" / ".join(seen).decode("ascii", "replace")
                                              or "nothing", ", ".join(sorted(DRIVERS))))
