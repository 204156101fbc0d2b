"""The station's live state as the rig, `evse status` and systemd's status line show it."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from controller.core.station import ConnectorStatus, Station
from controller.io.records import Records
from controller.io.storage import StorageError
from controller.ocpp.v16 import words
from controller.runtime.ocpp_ref import OcppRef
from controller.runtime.safety_side import ChannelPort
from controller.safety.view import physical_status
from drivers.base import MeterReading


class StatusReport:
    def __init__(
        self,
        station: Station,
        channels: Mapping[int, ChannelPort],
        ocpp: OcppRef,
        csms_ids: dict[str, str],
        records: Records,
    ) -> None:
        self.station = station
        self.channels = channels
        self.ocpp = ocpp
        self.csms_ids = csms_ids
        self.records = records
        self.outbox_count = 0  # transaction messages the CSMS has not answered

    async def count_outbox(self) -> None:
        with contextlib.suppress(StorageError):
            self.outbox_count = await self.records.outbox_size()

    def status(self, evse_id: int | None) -> dict[str, Any]:
        if evse_id is None:
            return {"evses": [self._evse_status(i) for i in self.channels], "ocpp": self.link()}
        return self._evse_status(evse_id)

    def _reported_status(self, status: ConnectorStatus) -> str:
        """In the words of the version spoken; standalone, 1.6's (CONTRACTS.md section 3)."""
        client = self.ocpp.client
        return client.reported_status(status) if client is not None else words.STATUSES[status]

    def _evse_status(self, evse_id: int) -> dict[str, Any]:
        return {"evse": evse_id, **physical_status(self.channels[evse_id].view), **self.ocpp_fields(evse_id)}

    def ocpp_fields(self, evse_id: int) -> dict[str, Any]:
        """The status fields this process knows (the rest are the control loop's)."""
        state = self.station.evses[evse_id]
        reading: MeterReading | None = state.reading
        tx = state.tx
        return {
            "power_w": round(reading.power_w, 1) if reading else 0.0,
            "energy_wh": round(reading.energy_wh, 3) if reading else 0.0,
            "connector_status": self._reported_status(
                state.status[0] if state.status else ConnectorStatus.AVAILABLE
            ),
            "error_code": words.status_words(state.status)[1],
            "ocpp_connected": self.ocpp.online,
            "transaction_id": (self.csms_ids.get(tx.id, tx.id)) if tx and tx.persisted else None,
        }

    def link(self) -> dict[str, Any]:
        client = self.ocpp.client
        return {
            "connected": self.ocpp.online,
            "version": client.connected_version if client else None,
            "queued": self.outbox_count,
        }

    def line(self) -> str:
        """One line for systemd's STATUS=."""
        parts = []
        for evse_id, state in self.station.evses.items():
            status, code = words.status_words(state.status)
            text = f"EVSE {evse_id} {status}"
            if state.status and state.status[0] is ConnectorStatus.CHARGING and state.reading is not None:
                text += f" {state.reading.power_w / 1000:.1f} kW"
            if code != words.NO_ERROR:
                text += f" ({code})"
            parts.append(text)
        client = self.ocpp.client
        if not self.ocpp.configured:
            link = "standalone"
        elif client is not None and client.online:
            link = f"OCPP {client.connected_version} connected"
        else:
            link = "OCPP not connected"
        return f"{link}; " + ", ".join(parts)
