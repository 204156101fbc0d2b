"""Session tasks end with their OCPP session, even when cancelled as their event is set.

Python 3.11's ``asyncio.wait_for`` returns normally when the waiting task is cancelled in the
same loop step as the awaited event completes (fixed in 3.12). A CI run of the CSMS-restart
scenario caught the outcome: the outbox task of the first session lived on beside the next
session's, and a TransactionEvent Ended reached the CSMS twice.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from controller.aio import wait_event
from controller.io.database import Database, WriteQueue
from controller.io.records import Records
from controller.io.storage import Storage
from controller.ocpp.adapter import Adapter


async def _cancelled_as_set(waiter: Any) -> asyncio.Task[Any]:
    event = asyncio.Event()
    task = asyncio.ensure_future(waiter(event))
    await asyncio.sleep(0)  # the task waits on the event
    event.set()
    task.cancel()  # the same loop step, as when a session ends while its wake-up comes
    await asyncio.sleep(0.01)
    return task


def test_wait_event_is_cancelled_even_as_the_event_is_set() -> None:
    async def loop_on(event: asyncio.Event) -> None:
        while True:
            await wait_event(event, 5.0)
            event.clear()

    task = asyncio.run(_cancelled_as_set(loop_on))
    assert task.cancelled()


def test_the_outbox_task_ends_with_its_session_when_woken_as_it_closes(tmp_path: Path) -> None:
    async def main() -> bool:
        database = Database(Storage(tmp_path / "evse.db"))
        records = Records(database, WriteQueue(database))
        host = SimpleNamespace(records=records, spawn=asyncio.ensure_future)
        link = SimpleNamespace(connected=True, endpoint=SimpleNamespace(url="ws://csms/ocpp/CP1"))
        adapter = Adapter(host, link)  # type: ignore[arg-type]
        adapter.accepted = True
        task = asyncio.ensure_future(adapter._deliver_outbox())
        adapter._session = [task]
        for _ in range(50):  # until it waits for a wake-up (the outbox is empty)
            await asyncio.sleep(0.002)
        adapter.outbox_changed()
        adapter.closed()
        await asyncio.sleep(0.05)
        done = task.done()
        task.cancel()
        database.close()
        return done

    assert asyncio.run(main())
