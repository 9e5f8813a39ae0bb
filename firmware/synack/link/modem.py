"""A cellular modem as a link a Supervisor keeps up (up, down, is_up, reinit), for any
dialect: it calls the modem backend's life (modems/cellular.ModemBackend), not AT strings.

    from synack.link.modem import ModemLink
    from synack.supervisor import Supervisor
    sup = Supervisor(ModemLink(modem, register_timeout_ms=60000))

``up`` is the modem's bring-up (``start``), ``up_async`` the same as a coroutine
(``start_async``: the asyncio supervisor task awaits it, so other tasks keep running
while the bearer opens); ``is_up`` reads the URCs that arrived (network
loss arrives as one) and says whether the bearer is open; ``down`` deactivates the bearer;
``reinit`` reboots the modem (its dialect's reset command) and waits for its boot URC;
``reinit_async`` the same as a coroutine (``reset_async``).
"""


class ModemLink:
    def __init__(self, modem, register_timeout_ms=60000, reset_wait_ms=30000):
        self.modem = modem
        self.register_timeout_ms = register_timeout_ms
        self.reset_wait_ms = reset_wait_ms

    def up(self):
        self.modem.start(self.register_timeout_ms)

    async def up_async(self):
        await self.modem.start_async(self.register_timeout_ms)

    def is_up(self):
        return self.modem.is_up()

    def down(self):
        self.modem.bearer_down()

    def reinit(self):
        self.modem.reset(self.reset_wait_ms)

    async def reinit_async(self):
        await self.modem.reset_async(self.reset_wait_ms)
