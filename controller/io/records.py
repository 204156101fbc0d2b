"""The station's records as the event loop uses them: reads awaited on the database thread,
writes queued in order (``WriteQueue``). Implements ``controller.ocpp.host.Records``."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from controller.core.station import Reservation
from controller.io.database import Database, WriteQueue
from controller.io.storage import OutboxEntry, Storage, TransactionRecord


class Records:
    def __init__(self, database: Database, writes: WriteQueue) -> None:
        self.database = database
        self.writes = writes
        self._storage = database.storage

    async def outbox(self, limit: int = 100, kinds: tuple[str, ...] = ()) -> list[OutboxEntry]:
        return await self.database.run(self._storage.outbox, limit, kinds)

    async def outbox_size(self) -> int:
        return await self.database.run(self._storage.outbox_size)

    async def outbox_attempted(self, entry_id: int) -> None:
        await self.database.run(self._storage.outbox_attempted, entry_id)

    async def outbox_delivered(self, entry_id: int, tx_id: str) -> None:
        # Once the CSMS has answered, the removal is done even if the session ends meanwhile
        # (its task cancelled): a removal cancelled while queued sends the message again.
        await asyncio.shield(self.database.run(self._storage.outbox_delivered, entry_id, tx_id))

    def outbox_delivered_later(
        self, entry_id: int, tx_id: str, csms_id: str | None, then: Callable[[], None]
    ) -> None:
        write = functools.partial(Storage.outbox_delivered, entry_id=entry_id, tx_id=tx_id, csms_id=csms_id)
        self.writes.put(write, then=then)

    async def drop_outbox(self, kinds: tuple[str, ...]) -> int:
        return await self.database.run(self._storage.drop_outbox, kinds)

    def drop_outbox_at_start(self, kinds: tuple[str, ...]) -> int:
        return self._storage.drop_outbox(kinds)

    async def meter_samples(self, tx_id: str) -> list[dict[str, Any]]:
        return await self.database.run(self._storage.meter_samples, tx_id)

    async def transactions(
        self, open_only: bool = False, limit: int = 1000, unreported: bool = False
    ) -> list[TransactionRecord]:
        return await self.database.run(self._storage.transactions, open_only, limit, unreported)

    async def open_tx_events(self) -> list[tuple[str, int, int, float | None]]:
        return await self.database.run(self._storage.open_tx_events)

    def add_tx_event(
        self,
        tx_id: str,
        evse_id: int,
        seq_no: int,
        ended: bool,
        energy_wh: float | None,
        body: dict[str, Any],
        then: Callable[[], None],
    ) -> None:
        write = functools.partial(
            Storage.add_tx_event,
            tx_id=tx_id,
            evse_id=evse_id,
            seq_no=seq_no,
            ended=ended,
            energy_wh=energy_wh,
            body=body,
        )
        self.writes.put(write, then=then)

    async def transaction_by_csms_id(self, csms_id: str) -> str | None:
        return await self.database.run(self._storage.transaction_by_csms_id, csms_id)

    # Queued behind the writes before them:

    def save_setting(self, key: str, value: str) -> None:
        self.writes.put(lambda storage: storage.set_setting(key, value))

    def save_reservation(self, r: Reservation) -> None:
        self.writes.put(
            lambda storage: storage.save_reservation(r.id, r.evse_id, r.id_tag, r.parent, r.expiry)
        )

    def delete_reservation(self, reservation_id: int) -> None:
        self.writes.put(lambda storage: storage.delete_reservation(reservation_id))

    def replace_charging_profiles(self, profiles: list[tuple[int, int, dict[str, Any]]]) -> None:
        self.writes.put(lambda storage: storage.replace_charging_profiles(profiles))

    async def get_setting(self, key: str) -> str | None:
        return await self.database.run(self._storage.get_setting, key)

    async def set_setting(self, key: str, value: str) -> None:
        await self.database.run(self._storage.set_setting, key, value)
