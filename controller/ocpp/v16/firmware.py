"""OCPP 1.6 firmware updates (plain and signed) and diagnostics uploads."""

from __future__ import annotations

from typing import Any

from controller.io.link import Reply
from controller.ocpp.fields import optional_times, required_time
from controller.ocpp.ocppj import RpcError
from controller.ocpp.v16.base import Base16
from controller.runtime.firmware import FirmwareRequest

# Signed-update statuses in the words of the 1.6 core FirmwareStatusNotification.
PLAIN_FIRMWARE_STATUS = {
    "InstallVerificationFailed": "InstallationFailed",
    "InvalidSignature": "InstallationFailed",
}
PLAIN_FIRMWARE_STATUSES = frozenset(
    {"Downloaded", "DownloadFailed", "Downloading", "Idle", "InstallationFailed", "Installing", "Installed"}
)


class Firmware(Base16):
    """UpdateFirmware, SignedUpdateFirmware, GetDiagnostics and their status notifications."""

    async def _update_firmware(self, p: dict[str, Any]) -> Reply:
        if self.host.firmware_roots():
            raise RpcError("not_supported", "signed firmware only here: use SignedUpdateFirmware")
        retrieve = required_time(p, "retrieveDate")
        request = FirmwareRequest(p["location"], retrieve, p.get("retries", 0), p.get("retryInterval", 30))
        start = self._start_firmware(request)

        async def start_plain() -> None:
            self._firmware_request(None)
            await start()

        return Reply({}, start_plain)

    def _firmware_request(self, request_id: int | None) -> None:
        self.firmware_request = request_id
        self.host.save_setting("ocpp16.firmware_request", "" if request_id is None else str(request_id))

    async def _signed_update_firmware(self, p: dict[str, Any]) -> Reply:
        firmware = p["firmware"]
        times = self._firmware_times(firmware)
        cert = self.host.check_signing_certificate(firmware["signingCertificate"])
        if cert is None:
            return Reply({"status": "InvalidCertificate"})
        reply = self._update_signed_firmware(p, times, firmware["signature"], cert)
        self._firmware_request(p["requestId"])
        return reply

    async def firmware_status_notification(self, status: str, core: bool = False) -> None:
        """FirmwareStatusNotification, or SignedFirmwareStatusNotification for a signed update
        (``core``: the core message whatever the update, for the core TriggerMessage)."""
        payload: dict[str, Any]
        if core:
            plain = PLAIN_FIRMWARE_STATUS.get(status, status)
            payload = {"status": plain if plain in PLAIN_FIRMWARE_STATUSES else "Idle"}
            action = "FirmwareStatusNotification"
        elif self.firmware_request is not None:
            self.firmware_status = status
            payload = {"status": status}
            if status != "Idle":
                payload["requestId"] = self.firmware_request
            action = "SignedFirmwareStatusNotification"
        else:
            plain = PLAIN_FIRMWARE_STATUS.get(status, status)
            if plain not in PLAIN_FIRMWARE_STATUSES:
                return  # the 1.6 core has no word for it
            self.firmware_status = plain
            payload, action = {"status": plain}, "FirmwareStatusNotification"
        if status == "Installed" and not core:
            self.firmware_status = "Idle"
        await self._notify(action, payload)

    async def _get_diagnostics(self, p: dict[str, Any]) -> Reply:
        times = optional_times(p, "startTime", "stopTime")
        name = self.host.diagnostics_name()

        upload = self._upload(p["location"], name, times, p, self.diagnostics_status_notification)
        return Reply({"fileName": name}, upload)

    async def diagnostics_status_notification(self, status: str) -> None:
        self.diagnostics_status = status
        await self._notify("DiagnosticsStatusNotification", {"status": status})
