"""OCPP 2.0.1 smart charging (K): profiles in, composite schedules and reports out."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from controller.core import schedule
from controller.io.link import Reply
from controller.ocpp.v201.base import Base201

log = logging.getLogger(__name__)


class SmartCharging(Base201):
    """SetChargingProfile, GetChargingProfiles, ClearChargingProfile, GetCompositeSchedule."""

    async def _set_charging_profile(self, p: dict[str, Any]) -> Reply:
        if not self._flag("SmartChargingCtrlr", "Enabled"):
            return Reply({"status": "Rejected", "statusInfo": {"reasonCode": "Disabled"}})
        evse_id = p["evseId"]
        if evse_id and not self._evse(evse_id):
            return Reply({"status": "Rejected"})
        try:
            profile = schedule.from_ocpp201(p["chargingProfile"], evse_id)
            schedule.require_phases_supplied(profile, self._supply_phases(evse_id))
        except ValueError as exc:
            log.warning("SetChargingProfile refused: %s", exc)
            return Reply(
                {
                    "status": "Rejected",
                    "statusInfo": {"reasonCode": "InvalidSchedule", "additionalInfo": str(exc)[:512]},
                }
            )
        if profile.tx_id is not None:
            current = self.tx.by_id(profile.tx_id)
            if current is None or current.station_tx is None:
                return Reply({"status": "Rejected", "statusInfo": {"reasonCode": "TxNotFound"}})
            profile = dataclasses.replace(profile, tx_id=current.station_tx)
        return Reply({"status": await self.host.install_profile(profile)})

    def _supply_phases(self, evse_id: int) -> int:
        """The EVSE's SupplyPhases; for EVSE 0 the station's (its widest EVSE's)."""
        evses = self.host.evse_config
        return evses[evse_id].phases if evse_id else max(e.phases for e in evses.values())

    async def _get_charging_profiles(self, p: dict[str, Any]) -> Reply:
        criteria = p["chargingProfile"]
        sources = criteria.get("chargingLimitSource")
        if sources and "CSO" not in sources:
            return Reply({"status": "NoProfiles"})
        name = criteria.get("chargingProfilePurpose")
        purpose = schedule.purpose_from_ocpp201(name) if name else None
        if name and purpose is None:
            return Reply({"status": "NoProfiles"})  # e.g. ChargingStationExternalConstraints
        found = self.host.profiles.matching(
            criteria.get("chargingProfileId"), p.get("evseId"), purpose, criteria.get("stackLevel")
        )
        if not found:
            return Reply({"status": "NoProfiles"})
        by_evse: dict[int, list[schedule.Profile]] = {}
        for profile in found:
            by_evse.setdefault(profile.evse_id, []).append(profile)

        async def report() -> None:
            groups = sorted(by_evse.items())
            for index, (evse_id, profiles) in enumerate(groups):
                payload = {
                    "requestId": p["requestId"],
                    "chargingLimitSource": "CSO",
                    "evseId": evse_id,
                    "tbc": index < len(groups) - 1,
                    "chargingProfile": [schedule.to_ocpp201(self._csms_view(x)) for x in profiles],
                }
                await self._notify("ReportChargingProfiles", payload)

        return Reply({"status": "Accepted"}, report)

    def _csms_view(self, profile: schedule.Profile) -> schedule.Profile:
        """A profile with the transaction id the CSMS knows."""
        if profile.tx_id is None:
            return profile
        for current in self.tx.open.values():
            if current.station_tx == profile.tx_id:
                return dataclasses.replace(profile, tx_id=current.id)
        return profile

    async def _clear_charging_profile(self, p: dict[str, Any]) -> Reply:
        criteria = p.get("chargingProfileCriteria", {})
        name = criteria.get("chargingProfilePurpose")
        purpose = schedule.purpose_from_ocpp201(name) if name else None
        if name and purpose is None:
            # K10.FR.06: a CSMS may not clear ChargingStationExternalConstraints; none is stored here.
            info = {"reasonCode": "InvalidValue", "additionalInfo": f"no {name} profile on this station"}
            return Reply({"status": "Unknown", "statusInfo": info})
        return await self._clear_profiles(
            p.get("chargingProfileId"), criteria.get("evseId"), purpose, criteria.get("stackLevel")
        )

    async def _get_composite_schedule(self, p: dict[str, Any]) -> Reply:
        evse_id = p["evseId"]
        if evse_id and not self._evse(evse_id):
            return Reply({"status": "Rejected"})
        start, periods, unit = self._composite(evse_id, p)
        composite = schedule.composite_to_ocpp201(periods, start, p["duration"], unit, evse_id)
        return Reply({"status": "Accepted", "schedule": composite})
