"""OCPP 1.6 smart charging: profiles in, composite schedules out."""

from __future__ import annotations

import logging
from typing import Any

from controller.core import schedule
from controller.io.link import Reply
from controller.io.storage import timestamp
from controller.ocpp.v16.base import Base16

log = logging.getLogger(__name__)


class SmartCharging(Base16):
    """SetChargingProfile, ClearChargingProfile, GetCompositeSchedule."""

    async def _set_charging_profile(self, p: dict[str, Any]) -> Reply:
        connector = p["connectorId"]
        self._require(connector)
        try:
            profile = schedule.from_ocpp16(p["csChargingProfiles"], connector)
        except ValueError as exc:
            log.warning("SetChargingProfile refused: %s", exc)
            return Reply({"status": "Rejected"})
        return Reply({"status": await self.host.install_profile(profile)})

    async def _clear_charging_profile(self, p: dict[str, Any]) -> Reply:
        purpose = schedule.Purpose(p["chargingProfilePurpose"]) if "chargingProfilePurpose" in p else None
        return await self._clear_profiles(p.get("id"), p.get("connectorId"), purpose, p.get("stackLevel"))

    async def _get_composite_schedule(self, p: dict[str, Any]) -> Reply:
        connector = p["connectorId"]
        if not self._known(connector):
            return Reply({"status": "Rejected"})
        start, periods, unit = self._composite(connector, p)
        return Reply(
            {
                "status": "Accepted",
                "connectorId": connector,
                "scheduleStart": timestamp(start),
                "chargingSchedule": schedule.composite_to_ocpp16(periods, start, p["duration"], unit),
            }
        )
