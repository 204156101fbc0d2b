"""OCPP 1.6 remote trigger: TriggerMessage and the security extension's ExtendedTriggerMessage."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from controller.io.link import Reply
from controller.ocpp.v16 import words
from controller.ocpp.v16.firmware import Firmware


class RemoteTrigger(Firmware):
    """TriggerMessage, ExtendedTriggerMessage: the firmware and diagnostics statuses among them."""

    async def _trigger_message(self, p: dict[str, Any]) -> Reply:
        message = p["requestedMessage"]
        connector = p.get("connectorId")
        if connector is not None and not self._known(connector):
            return Reply({"status": "Rejected"})
        evses = [connector] if connector else list(self.host.station.evses)
        follow_up: Callable[[], Awaitable[None]]
        if message == "BootNotification":

            async def follow_up() -> None:
                await self._boot()
        elif message == "Heartbeat":
            follow_up = self.heartbeat
        elif message == "StatusNotification":

            async def follow_up() -> None:
                for evse_id in [connector] if connector is not None else [0, *evses]:
                    if evse_id == 0:
                        await self._status(0, *self._station_status(), "")
                        continue
                    await self._status(
                        evse_id, *words.status_words(self.host.station.evses[evse_id].status), ""
                    )
        elif message == "MeterValues":
            follow_up = self._meter_values_trigger(evses)
        elif message == "FirmwareStatusNotification":

            async def follow_up() -> None:
                await self.firmware_status_notification(self.firmware_status, core=True)
        elif message == "DiagnosticsStatusNotification":

            async def follow_up() -> None:
                await self.diagnostics_status_notification(self.diagnostics_status)
        else:
            return Reply({"status": "NotImplemented"})
        return Reply({"status": "Accepted"}, follow_up)

    async def _extended_trigger_message(self, p: dict[str, Any]) -> Reply:
        message = p["requestedMessage"]
        if message in ("BootNotification", "Heartbeat", "MeterValues", "StatusNotification"):
            return await self._trigger_message(p)
        if p.get("connectorId") is not None and not self._known(p["connectorId"]):
            return Reply({"status": "Rejected"})
        follow_up = self._shared_trigger(message)
        if follow_up is None:
            return Reply({"status": "NotImplemented"})
        return Reply({"status": "Accepted"}, follow_up)
