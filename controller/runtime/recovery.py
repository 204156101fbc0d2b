"""Recovery after a crash or power cut: the transactions left open end, once, as PowerLoss."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial

from controller.core.station import Station, StopReason
from controller.io.records import Records
from controller.io.storage import Storage, StorageError
from controller.ocpp.v16 import outbox
from controller.runtime.meters import Meters
from controller.runtime.ocpp_ref import OcppRef

log = logging.getLogger(__name__)


async def recover(
    station: Station, meters: Meters, records: Records, ocpp: OcppRef, now: Callable[[], datetime]
) -> None:
    """End transactions a crash or power cut left open, exactly once, as PowerLoss.

    The meters are read first: they know the energy delivered after the last record. The
    stops go through the write queue: a locked or full database delays them but neither
    loses them nor keeps the station from starting.
    """
    await meters.read_at_start()
    if ocpp.client is not None:
        try:
            await ocpp.client.recover()
        except StorageError as exc:
            log.error("cannot look for interrupted OCPP 2.0.1 transactions now: %s", exc)
    try:
        interrupted = await records.transactions(True)
    except StorageError as exc:
        log.error(
            "cannot look for interrupted transactions now (%s); they will be ended "
            "as PowerLoss at the next start",
            exc,
        )
        return
    for record in interrupted:
        state = station.evses.get(record.evse_id)
        energy = record.last_energy_wh
        if state is not None and state.reading is not None:
            energy = max(energy, state.reading.energy_wh)
        at = now()
        body = (
            outbox.stop_body(record.evse_id, at, energy, StopReason.POWER_LOSS, None)
            if ocpp.queues_records
            else None
        )
        records.writes.put(
            partial(
                Storage.stop_transaction,
                tx_id=record.id,
                stopped_at=at,
                meter_stop_wh=energy,
                reason=StopReason.POWER_LOSS,
                outbox=body,
            )
        )
        log.warning(
            "EVSE %d: transaction %s was interrupted (power loss or crash); ended "
            "with reason PowerLoss at %.1f Wh",
            record.evse_id,
            record.id,
            energy,
            extra={"evse_id": record.evse_id, "transaction_id": record.id},
        )
