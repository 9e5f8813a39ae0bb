"""asyncio drivers for the schedule-driven parts (poller, supervisor, heartbeat) and
for the outbox.

Both cores are sans-I/O (``Schedule.next_delay``, ``Supervisor.step``), so running them
as tasks only changes how the waits are spent: ``await asyncio.sleep_ms`` instead of
``time.sleep_ms``, leaving the event loop free for the application between polls and
checks. A modem link's bring-up and re-initialisation (``ModemLink.up_async``:
registration, bearer open, tens of seconds; ``reinit_async``: a reboot) are awaited
too: their AT commands wait in the event loop; so is a poll whose poller has an
AsyncClient (``Poller.poll_async``), including a bearer its connect reopens. With the
blocking Client a poll's network calls block, within their timeouts — keep those
timeouts short when other tasks must stay responsive.

    import asyncio
    from synack import tasks
    asyncio.create_task(tasks.supervise(supervisor))
    asyncio.create_task(tasks.poll(poller))
    asyncio.create_task(tasks.heartbeat(heartbeat_driver))

The outbox is delivered over ``synack.http.aclient.AsyncClient``, whose socket waits
are awaits too: ``await tasks.deliver(outbox, AsyncClient(), url)``.
"""

import time

import asyncio


async def sleep_ms(ms):
    """asyncio.sleep_ms on MicroPython, asyncio.sleep on CPython."""
    if hasattr(asyncio, "sleep_ms"):
        await asyncio.sleep_ms(ms)  # type: ignore[attr-defined]
    else:
        await asyncio.sleep(ms / 1000)


async def give_way():
    """Let the other tasks that are due run before this one goes on: after a socket call
    that did not block but took its time (a modem's AT exchange: up to ~130 ms at
    115200 baud), so that a run of them never holds the loop for a whole transfer.
    MicroPython's scheduler orders tasks by due time, so ``sleep_ms(0)`` puts this one
    behind every task already due. CPython's loop runs a timer's task one iteration
    after the timer fires: ``sleep(0)`` would let another AT exchange in first, so this
    task waits a timer too (0.1 ms, after the ones already due)."""
    if hasattr(asyncio, "sleep_ms"):
        await asyncio.sleep_ms(0)  # type: ignore[attr-defined]
    else:
        await asyncio.sleep(0.0001)


async def poll(poller, polls=None, stop=None):
    """Run ``poller`` (a synack.poll.Poller) as a task; returns the number of polls.
    With a synack.http.aclient.AsyncClient as the poller's client the polls themselves
    are awaited (``Poller.poll_async``); with the blocking Client each poll blocks the
    loop for as long as its network calls take."""
    done = 0
    await sleep_ms(poller.schedule.first_delay())
    while not (stop is not None and stop()) and (polls is None or done < polls):
        if poller.client.is_async:   # an AsyncClient: the request's waits are awaits too
            _, delay = await poller.poll_async()
        else:
            _, delay = poller.poll()
        done += 1
        if polls is not None and done >= polls:
            break
        await sleep_ms(delay)
    return done


async def supervise(supervisor, stop=None):
    """Run ``supervisor`` (a synack.supervisor.Supervisor) as a task until it is stopped
    or ``stop()`` is true; returns the final state name. A link with ``up_async`` and
    ``reinit_async`` (a modem) is brought up and re-initialised by awaiting them; others
    (Wi-Fi) by the blocking ``up()`` and ``reinit()``."""
    supervisor.start()
    while not (stop is not None and stop()):
        call = supervisor.async_call()
        if call is None:
            wake = supervisor.step()
        else:
            error = None
            try:
                await call()
            except Exception as e:  # the supervisor counts it and backs off
                error = e
            wake = supervisor.async_done(error)
        if wake is None:
            break
        wait = time.ticks_diff(wake, time.ticks_ms())
        await sleep_ms(wait if wait > 0 else 0)
    return supervisor.state_name


async def heartbeat(driver, duration_ms=None, stop=None):
    """Run a synack.heartbeat.Driver as a task: reads are non-blocking and the waits go
    to the event loop. Returns "dead", "deadline" or "stopped", as Driver.run does."""
    end = None if duration_ms is None else time.ticks_add(time.ticks_ms(), duration_ms)
    while True:
        wait = driver.step(end, stop)
        if isinstance(wait, str):
            return wait
        driver.read_ready()
        await sleep_ms(min(wait, driver.poll_ms))


async def flush(outbox, deliver, limit=None):
    """``Outbox.flush`` with a coroutine: ``await deliver(id, payload)`` returns True
    once the server acknowledged. Oldest first; a message is removed (``Outbox.ack``)
    only after that. Stops at the first False (returns) or exception (propagates; the
    message stays queued). Returns how many were delivered."""
    n = 0
    while len(outbox) and (limit is None or n < limit):
        mid, payload = outbox.peek()  # a corrupt record: quarantined, CorruptRecord raised
        if not await deliver(mid, payload):
            break
        outbox.ack(mid)
        n += 1
    return n


async def deliver(outbox, client, url, headers=None, limit=None, id_header="X-Message-Id"):
    """Deliver ``outbox`` (a synack.outbox.Outbox) with ``client`` (a
    synack.http.aclient.AsyncClient): one POST per message, its id in ``id_header`` so
    that the server can deduplicate a message resent after a lost acknowledgement. A
    2xx response whose body was read to its end is the acknowledgement; any other
    status stops the run (returns), a socket or HTTP error propagates. Either way the
    message stays queued. Returns how many were delivered."""
    extra = list(headers.items() if isinstance(headers, dict) else headers or ())

    async def post(mid, payload):
        resp = await client.post(url, body=payload, headers=extra + [(id_header, str(mid))])
        try:
            await resp.drain()
        finally:
            resp.close()
        return 200 <= resp.status < 300

    return await flush(outbox, post, limit)
