"""OCPP 1.6 connector statuses, availability, reservations and unlocking."""

from __future__ import annotations

import asyncio
from typing import Any

from controller.core import station as station_model
from controller.core.station import Reservation
from controller.io.link import Reply
from controller.ocpp.fields import required_time
from controller.ocpp.v16 import words
from controller.ocpp.v16.base import Base16
from controller.ocpp.words import AVAILABILITY_STATUSES, RESERVATION_STATUSES


class Availability(Base16):
    """StatusNotification, ChangeAvailability, ReserveNow, UnlockConnector."""

    async def _send_statuses(self) -> None:
        while True:
            station = self._station_status()
            if self._status_sent.get(0) != station and await self._status(0, *station, ""):
                self._status_sent[0] = station
            await self._status_wake.wait()
            self._status_wake.clear()
            minimum = self.keys.number("MinimumStatusDuration")
            if minimum:
                await asyncio.sleep(minimum)  # report only what held for the minimum duration
            for evse_id, state in self.host.station.evses.items():
                if state.status is None:
                    continue
                reported = words.status_words(state.status)
                if self._status_sent.get(evse_id) == reported:
                    continue
                tx = state.tx
                if tx is not None and tx.id not in self.host.csms_ids and tx.id not in self._abandoned:
                    continue  # its StartTransaction goes first; delivering it wakes us again
                if await self._status(evse_id, *reported, self.host.status_info(evse_id)):
                    self._status_sent[evse_id] = reported

    async def _change_availability(self, p: dict[str, Any]) -> Reply:
        connector = p["connectorId"]
        self._require(connector)
        operative = p["type"] == "Operative"
        # 1.6 has one availability per connector (connector 0: all of them): Operative lifts
        # every level a 2.0.1 CSMS may have set before a version change.
        levels = station_model.LEVELS if operative else (station_model.EVSE,)
        status = self.host.set_availability(connector, operative, levels)
        return Reply({"status": AVAILABILITY_STATUSES[status]})

    async def _reserve_now(self, p: dict[str, Any]) -> Reply:
        connector = p["connectorId"]
        if not self._known(connector):
            return Reply({"status": "Rejected"})
        expiry = required_time(p, "expiryDate")
        reservation = Reservation(p["reservationId"], connector, p["idTag"], expiry, p.get("parentIdTag"))
        return Reply({"status": RESERVATION_STATUSES[await self.host.reserve(reservation)]})

    async def _unlock_connector(self, p: dict[str, Any]) -> Reply:
        connector = p["connectorId"]
        if not self._known(connector, station=False):
            return Reply({"status": "NotSupported"})
        return Reply({"status": words.UNLOCK_STATUSES[await self.host.unlock(connector)]})
