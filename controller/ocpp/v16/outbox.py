"""The bodies of the 1.6 transaction messages queued with each record (StartTransaction,
MeterValues, StopTransaction), in one commit with the record they report. The 1.6 adapter
turns them into messages when it delivers the outbox; 2.0.1 queues its own events."""

from __future__ import annotations

from datetime import datetime

from controller.core.station import StopReason, Transaction
from controller.core.timestamps import timestamp
from controller.ocpp.bodies import sample_body as sample_body
from controller.ocpp.host import Body
from controller.ocpp.v16.words import STOP_REASONS


def start_body(tx: Transaction) -> Body:
    return {
        "evse_id": tx.evse_id,
        "id_tag": tx.id_tag,
        "timestamp": timestamp(tx.started_at),
        "meter_start_wh": tx.meter_start_wh,
        "reservation_id": tx.reservation_id,
    }


def stop_body(evse_id: int, at: datetime, meter_stop: float, reason: StopReason, id_tag: str | None) -> Body:
    """The reason is stored in the 1.6 words it is sent in: stops queued by any version of
    the station are delivered alike."""
    return {
        "evse_id": evse_id,
        "timestamp": timestamp(at),
        "meter_stop_wh": meter_stop,
        "reason": STOP_REASONS[reason],
        "id_tag": id_tag,
    }
