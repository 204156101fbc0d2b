"""OCPP 2.0.1 firmware updates (L)."""

from __future__ import annotations

import logging
from typing import Any

from controller.io.link import Reply
from controller.ocpp.v201.base import PREFIX, Base201

log = logging.getLogger(__name__)


class Firmware(Base201):
    """UpdateFirmware and FirmwareStatusNotification."""

    async def _update_firmware(self, p: dict[str, Any]) -> Reply:
        firmware = p["firmware"]
        times = self._firmware_times(firmware)
        signature, pem = firmware.get("signature"), firmware.get("signingCertificate")
        cert = None
        if signature is not None or pem is not None:
            cert = self.host.check_signing_certificate(pem or "")
            if cert is None:
                return Reply({"status": "InvalidCertificate"})
            if signature is None:
                return Reply({"status": "Rejected", "statusInfo": {"reasonCode": "MissingSignature"}})
        elif self.host.firmware_roots():
            log.error("unsigned firmware refused: this station installs signed firmware only")
            return Reply({"status": "Rejected", "statusInfo": {"reasonCode": "MissingSignature"}})
        reply = self._update_signed_firmware(p, times, signature, cert)
        self.firmware_request = p["requestId"]
        await self.host.records.set_setting(PREFIX + "firmware_request", str(p["requestId"]))
        return reply

    async def firmware_status_notification(self, status: str) -> None:
        # After Installed a triggered notification reports Idle (L01.FR.25); after a
        # failure, the failure (L01.FR.26).
        self.firmware_status = "Idle" if status == "Installed" else status
        if self.firmware_request is None:
            stored = await self.host.records.get_setting(PREFIX + "firmware_request")
            self.firmware_request = int(stored) if stored else None
        payload: dict[str, Any] = {"status": status}
        if self.firmware_request is not None and status != "Idle":
            payload["requestId"] = self.firmware_request
        await self._notify("FirmwareStatusNotification", payload)
