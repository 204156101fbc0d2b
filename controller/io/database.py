"""``Storage`` on its own thread for the event loop, and the ordered queue of its writes.

``Database`` runs the synchronous ``Storage`` on a dedicated thread; ``WriteQueue``
orders writes and retries the head of the queue when the disk is full or read-only, so a
failing disk delays records but never loses or reorders them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from controller.io.storage import Storage, StorageError

log = logging.getLogger(__name__)
T = TypeVar("T")


class Database:
    """``Storage`` on its own thread, awaited from the event loop."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.storage.close()


class WriteQueue:
    """Writes in order; a failing write is retried until it succeeds, never dropped."""

    def __init__(self, database: Database, retry_s: float = 1.0) -> None:
        self.database = database
        self.retry_s = retry_s
        self._queue: asyncio.Queue[tuple[Callable[[Storage], None], Callable[[], None] | None]]
        self._queue = asyncio.Queue()
        self._in_flight = 0
        self.failing = False

    def put(self, write: Callable[[Storage], None], then: Callable[[], None] | None = None) -> None:
        self._queue.put_nowait((write, then))

    def pending(self) -> int:
        """Records not yet written, the one being retried included."""
        return self._queue.qsize() + self._in_flight

    async def run(self) -> None:
        while True:
            write, then = await self._queue.get()
            self._in_flight = 1
            try:
                if await self._apply(write) and then is not None:
                    then()
            except Exception:
                log.exception("storage write follow-up failed")
            finally:
                self._in_flight = 0
                self._queue.task_done()

    async def _apply(self, write: Callable[[Storage], None]) -> bool:
        """Write, retrying while the condition may pass; False if the record was refused."""
        while True:
            try:
                await self.database.run(write, self.database.storage)
            except StorageError as exc:
                if not exc.retry:
                    log.error("%s; record skipped: %r", exc, write)
                    return False
                if not self.failing:
                    log.error("%s", exc)
                self.failing = True
                await asyncio.sleep(self.retry_s)
                continue
            if self.failing:
                log.warning("database writable again; queued records written")
            self.failing = False
            return True

    async def flush(self) -> None:
        await self._queue.join()
