"""asyncio helpers."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """``event.wait()`` for at most ``timeout`` s: True if the event was set.

    Not ``asyncio.wait_for``: on Python 3.11 it returns normally when the task is cancelled
    in the same loop step as the event is set, so a task cancelled at the end of an OCPP
    session could live on beside the next session's (and send its messages twice).
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
