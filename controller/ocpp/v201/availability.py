"""OCPP 2.0.1 connector statuses, availability (G), reservations (H) and unlocking."""

from __future__ import annotations

from typing import Any

from controller.core import station as station_model
from controller.core.station import (
    Reservation,
)
from controller.io.link import Reply
from controller.ocpp.fields import required_time
from controller.ocpp.v201 import words
from controller.ocpp.v201.base import Base201
from controller.ocpp.words import AVAILABILITY_STATUSES, RESERVATION_STATUSES


class Availability(Base201):
    """StatusNotification, ChangeAvailability, ReserveNow, UnlockConnector."""

    def closed(self) -> None:
        self._offline_since = self.host.now()
        super().closed()

    def _statuses_after_reconnect(self) -> None:
        """OfflineThreshold: offline longer than this, every connector's status is sent again."""
        since, self._offline_since = self._offline_since, None
        threshold = self._number("OCPPCommCtrlr", "OfflineThreshold")
        if since is not None and (self.host.now() - since).total_seconds() > threshold:
            self._status_sent.clear()

    async def _send_statuses(self) -> None:
        self._statuses_after_reconnect()
        while True:
            await self._status_wake.wait()
            self._status_wake.clear()
            for evse_id in self.host.station.evses:
                status = self._evse_state(evse_id)
                if self._status_sent.get(evse_id) != status and await self._status(evse_id, status):
                    self._status_sent[evse_id] = status
                if self._removed.get(evse_id) and self._status_sent.get(evse_id) == self._evse_state(evse_id):
                    # After the Faulted/Unavailable status, as in OCTT TC_H_20: not while a
                    # status sent before the change was still awaiting its answer.
                    for reservation_id in self._removed.pop(evse_id):
                        await self._reservation_update(reservation_id, "Removed")

    async def _change_availability(self, p: dict[str, Any]) -> Reply:
        evse = p.get("evse") or {}
        evse_id = evse.get("id", 0)
        if evse_id and (not self._evse(evse_id) or evse.get("connectorId", 1) != 1):
            return Reply({"status": "Rejected"})
        # G03/G04: the station, an EVSE and a connector each keep their own setting.
        if not evse_id:
            level = station_model.STATION
        else:
            level = station_model.CONNECTOR if "connectorId" in evse else station_model.EVSE
        status = self.host.set_availability(evse_id, p["operationalStatus"] == "Operative", (level,))
        return Reply({"status": AVAILABILITY_STATUSES[status]})

    async def _reserve_now(self, p: dict[str, Any]) -> Reply:
        if not self._flag("ReservationCtrlr", "Enabled"):
            return Reply({"status": "Rejected"})
        evse_id = p.get("evseId", 0)
        if evse_id and not self._evse(evse_id):
            return Reply({"status": "Rejected"})
        if p.get("connectorType") not in (None, "cType2", "sType2", "Unknown"):
            return Reply({"status": "Rejected"})
        expiry = required_time(p, "expiryDateTime")
        group = p.get("groupIdToken", {}).get("idToken")
        self._remember_type(p["idToken"])
        reservation = Reservation(p["id"], evse_id, p["idToken"]["idToken"], expiry, group)
        return Reply({"status": RESERVATION_STATUSES[await self.host.reserve(reservation)]})

    async def _unlock_connector(self, p: dict[str, Any]) -> Reply:
        evse_id = p["evseId"]
        if not self._evse(evse_id) or p["connectorId"] != 1:
            return Reply({"status": "UnknownConnector"})
        if self.host.station.evses[evse_id].tx is not None:
            return Reply({"status": "OngoingAuthorizedTransaction"})
        return Reply({"status": words.UNLOCK_STATUSES[await self.host.unlock(evse_id)]})
