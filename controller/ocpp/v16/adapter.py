"""The OCPP 1.6J adapter: the station model and services in 1.6 messages.

It holds no charging logic of its own: requests from the CSMS become calls on the
daemon's version-neutral services, and the station's events become 1.6 messages. The
transaction messages come from the persistent outbox, in order, at least once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from controller.core import authorization as auth
from controller.core import schedule
from controller.core import station as station_model
from controller.core.measurands import measured
from controller.core.station import Reservation
from controller.io.link import Link, Reply
from controller.io.storage import OutboxEntry, timestamp
from controller.ocpp.adapter import Adapter, Retries
from controller.ocpp.fields import optional_times, required_time, tx_profile
from controller.ocpp.ocppj import RpcError
from controller.ocpp.v16.keys import KeyStore
from controller.services import FirmwareRequest

if TYPE_CHECKING:
    from controller.daemon import Daemon

log = logging.getLogger(__name__)


def _wh(value: float) -> int:
    return math.floor(value + 1e-9)


# Signed-update statuses in the words of the 1.6 core FirmwareStatusNotification.
PLAIN_FIRMWARE_STATUS = {
    "InstallVerificationFailed": "InstallationFailed",
    "InvalidSignature": "InstallationFailed",
}
PLAIN_FIRMWARE_STATUSES = frozenset(
    {"Downloaded", "DownloadFailed", "Downloading", "Idle", "InstallationFailed", "Installing", "Installed"}
)
CERTIFICATE_TYPES = {
    "CentralSystemRootCertificate": "CSMSRootCertificate",
    "ManufacturerRootCertificate": "ManufacturerRootCertificate",
}


class Ocpp16(Adapter):
    VERSION = "1.6"
    SIGN_CERTIFICATE_TRIGGER = "SignChargePointCertificate"
    OUTBOX_KINDS = ("start", "meter", "stop", "security")

    def __init__(self, host: Daemon, link: Link, stored_keys: dict[str, str]) -> None:
        super().__init__(host, link)
        ocpp = host.config.ocpp or {}
        overrides = {
            "NumberOfConnectors": str(len(host.station.evses)),
            "ConnectorPhaseRotation": ",".join(f"{i}.Unknown" for i in host.station.evses),
            "CpoName": host.config.station["vendor"][:64],
        }
        secret = ("SecurityProfile", "AuthorizationKey")  # kept by the client and in credentials
        stored_keys = {k: v for k, v in stored_keys.items() if k not in secret}
        self.keys = KeyStore(stored_keys, overrides, self._save_key)
        self.keys.values["SecurityProfile"] = str(ocpp.get("security_profile", 0))  # the client raises it
        request = stored_keys.get("firmware_request")
        self.firmware_request: int | None = int(request) if request else None  # a signed update
        self._abandoned: set[str] = set()  # transactions whose StartTransaction was dropped
        self._status_sent: dict[int, tuple[str, str]] = {}
        self.firmware_status = "Idle"
        self.diagnostics_status = "Idle"
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[Reply]]] = {
            "CancelReservation": self._cancel_reservation,
            "CertificateSigned": self._certificate_signed,
            "ChangeAvailability": self._change_availability,
            "ChangeConfiguration": self._change_configuration,
            "ClearCache": self._clear_cache,
            "ClearChargingProfile": self._clear_charging_profile,
            "DataTransfer": self._data_transfer,
            "DeleteCertificate": self._delete_certificate,
            "ExtendedTriggerMessage": self._extended_trigger_message,
            "GetInstalledCertificateIds": self._get_installed_certificate_ids,
            "GetLog": self._get_log,
            "InstallCertificate": self._install_certificate,
            "SignedUpdateFirmware": self._signed_update_firmware,
            "GetCompositeSchedule": self._get_composite_schedule,
            "GetConfiguration": self._get_configuration,
            "GetDiagnostics": self._get_diagnostics,
            "GetLocalListVersion": self._get_local_list_version,
            "RemoteStartTransaction": self._remote_start,
            "RemoteStopTransaction": self._remote_stop,
            "ReserveNow": self._reserve_now,
            "Reset": self._reset,
            "SendLocalList": self._send_local_list,
            "SetChargingProfile": self._set_charging_profile,
            "TriggerMessage": self._trigger_message,
            "UnlockConnector": self._unlock_connector,
            "UpdateFirmware": self._update_firmware,
        }
        self.apply_keys()

    # -- settings ----------------------------------------------------------------------

    def _save_key(self, name: str, value: str) -> None:
        self.host.save_setting(f"ocpp16.{name}", value)

    def apply_keys(self) -> None:
        """Hand the keys that steer version-neutral behaviour to the station."""
        keys, station = self.keys, self.host.station
        station.connection_timeout = timedelta(seconds=keys.number("ConnectionTimeOut"))
        station.stop_on_invalid_id = keys.flag("StopTransactionOnInvalidId")
        station.max_energy_on_invalid_id_wh = 0.0  # 1.6: energy stops at once
        station.end_on_deauthorize = False  # 1.6: StopTransactionOnInvalidId alone decides
        station.preparing_for_token = True
        station.auth_mode = self.host.config.auth["mode"]  # 2.0.1 AuthCtrlr.Enabled may have changed it
        station.sample_interval = timedelta(seconds=keys.number("MeterValueSampleInterval"))
        self.host.aligned_interval_s = keys.number("ClockAlignedDataInterval")

    def heartbeat_interval(self) -> int:
        return self.keys.number("HeartbeatInterval")

    def auth_settings(self) -> auth.AuthSettings:
        keys = self.keys
        return auth.AuthSettings(
            local_auth_list_enabled=keys.flag("LocalAuthListEnabled"),
            auth_cache_enabled=keys.flag("AuthorizationCacheEnabled"),
            local_pre_authorize=keys.flag("LocalPreAuthorize"),
            local_authorize_offline=keys.flag("LocalAuthorizeOffline"),
            allow_offline_tx_for_unknown_id=keys.flag("AllowOfflineTxForUnknownId"),
        )

    # -- connection --------------------------------------------------------------------

    def _boot_payload(self) -> dict[str, Any]:
        return self._identity("chargePointVendor", 20, "chargePointModel", "chargePointSerialNumber")

    def _set_heartbeat_interval(self, seconds: int) -> None:
        self.keys.values["HeartbeatInterval"] = str(seconds)

    # -- status ------------------------------------------------------------------------

    def _station_status(self) -> tuple[str, str]:
        """Connector 0: Unavailable when every EVSE is inoperative."""
        operative = any(e.available for e in self.host.station.evses.values())
        return ("Available" if operative else "Unavailable"), "NoError"

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
                if not state.status[0] or self._status_sent.get(evse_id) == state.status:
                    continue
                tx = state.tx
                if tx is not None and tx.id not in self.host.csms_ids and tx.id not in self._abandoned:
                    continue  # its StartTransaction goes first; delivering it wakes us again
                status, code, info = (*state.status, self.host.status_info(evse_id))
                if await self._status(evse_id, status, code, info):
                    self._status_sent[evse_id] = (status, code)

    async def _status(self, connector: int, status: str, code: str, info: str) -> bool:
        payload: dict[str, Any] = {
            "connectorId": connector,
            "errorCode": code,
            "status": status,
            "timestamp": timestamp(self.host.now()),
        }
        if info:
            payload["info"] = info[:50]
        return await self._status_call(payload, f"connector {connector}")

    # -- authorization -----------------------------------------------------------------

    def _authorize_payload(self, token: str) -> dict[str, Any]:
        return {"idTag": token}

    def _authorize_info(self, reply: dict[str, Any]) -> auth.IdTagInfo:
        return auth.info_from_ocpp16(reply["idTagInfo"])

    # -- transaction messages ----------------------------------------------------------

    async def _drop(self, entry: OutboxEntry, why: str) -> None:
        log.error("%s for transaction %s dropped: %s", entry.kind, entry.transaction_id, why)
        if entry.kind == "start":
            self._abandoned.add(entry.transaction_id)
            self._status_wake.set()
        await self.host.database.run(
            self.host.database.storage.outbox_delivered, entry.id, entry.transaction_id
        )

    def _retries(self) -> Retries:
        keys = self.keys
        return Retries(
            keys.number("TransactionMessageAttempts"), keys.number("TransactionMessageRetryInterval")
        )

    async def _deliver(self, entry: OutboxEntry) -> bool:
        """Send one outbox entry until it is answered or its attempts run out.

        False when the connection closed first (the entry stays for the next session).
        """
        database = self.host.database
        csms_id = None
        if entry.kind != "start":
            csms_id = entry.csms_id or self.host.csms_ids.get(entry.transaction_id)
            if csms_id is None:
                await self._drop(entry, "the CSMS never acknowledged its start")
                return True
        if entry.kind == "stop" and (
            self.keys.items("StopTxnSampledData") or self.keys.items("StopTxnAlignedData")
        ):
            samples = await database.run(database.storage.meter_samples, entry.transaction_id)
            entry = dataclasses.replace(entry, body={**entry.body, "samples": samples})
        action, payload = self._message(entry, csms_id)
        reply = await self._call_entry(entry, action, payload, self._retries)
        if reply is None:
            return False
        if not isinstance(reply, dict):
            await self._drop(entry, f"not accepted after its attempts: {reply}")
            return True
        new_id = str(reply["transactionId"]) if action == "StartTransaction" else None
        await self._entry_delivered(entry, entry.kind == "stop", new_id)
        if new_id is not None:
            self.host.csms_ids[entry.transaction_id] = new_id
            self._status_wake.set()
        elif entry.kind == "stop":
            self.host.csms_ids.pop(entry.transaction_id, None)
        if "idTagInfo" in reply:
            self.host.id_tag_info(
                entry.transaction_id,
                entry.body.get("id_tag", ""),
                auth.info_from_ocpp16(reply["idTagInfo"]),
            )
        return True

    def _message(self, entry: OutboxEntry, csms_id: str | None) -> tuple[str, dict[str, Any]]:
        body = entry.body
        if entry.kind == "start":
            payload: dict[str, Any] = {
                "connectorId": body["evse_id"],
                "idTag": body["id_tag"],
                "meterStart": _wh(body["meter_start_wh"]),
                "timestamp": body["timestamp"],
            }
            if body.get("reservation_id") is not None:
                payload["reservationId"] = body["reservation_id"]
            return "StartTransaction", payload
        assert csms_id is not None
        if entry.kind == "meter":
            measurands = self.keys.items(
                "MeterValuesAlignedData" if body["context"] == "Sample.Clock" else "MeterValuesSampledData"
            )
            return "MeterValues", {
                "connectorId": body["evse_id"],
                "transactionId": int(csms_id),
                "meterValue": [self.meter_value(body, measurands)],
            }
        payload = {
            "transactionId": int(csms_id),
            "meterStop": _wh(body["meter_stop_wh"]),
            "timestamp": body["timestamp"],
            "reason": body["reason"],
        }
        if body.get("id_tag"):
            payload["idTag"] = body["id_tag"]
        data = [
            self.meter_value(
                s,
                self.keys.items(
                    "StopTxnAlignedData" if s["context"] == "Sample.Clock" else "StopTxnSampledData"
                ),
            )
            for s in body.get("samples", [])
        ]
        data = [d for d in data if d["sampledValue"]]
        if data:
            payload["transactionData"] = data
        return "StopTransaction", payload

    @staticmethod
    def meter_value(sample: dict[str, Any], measurands: list[str]) -> dict[str, Any]:
        """One 1.6 meterValue from a stored reading, with the configured measurands."""
        values = []
        for measurand, value, unit, phase in measured(sample, measurands):
            item = {
                "value": f"{value:.1f}",
                "context": sample["context"],
                "measurand": measurand,
                "location": "Outlet",
                "unit": unit,
            }
            if phase:
                item["phase"] = phase
            values.append(item)
        return {"timestamp": sample["timestamp"], "sampledValue": values}

    def _meter_values_payload(self, evse_id: int, sample: dict[str, Any], context: str) -> dict[str, Any]:
        key = "MeterValuesAlignedData" if context == "Sample.Clock" else "MeterValuesSampledData"
        payload: dict[str, Any] = {
            "connectorId": evse_id,
            "meterValue": [self.meter_value(sample, self.keys.items(key))],
        }
        csms_id = self.host.csms_transaction_id(evse_id)
        if csms_id is not None:
            payload["transactionId"] = int(csms_id)
        return payload

    # -- requests from the CSMS --------------------------------------------------------

    def _known(self, connector: int | None, station: bool = True) -> bool:
        """An EVSE of this station or, with ``station``, 0 for the station as a whole."""
        return self._evse(connector) or (station and connector == 0)

    def _require(self, connector: int) -> None:
        if not self._known(connector):
            raise RpcError("property", f"connectorId {connector} does not exist")

    async def _change_availability(self, p: dict[str, Any]) -> Reply:
        connector = p["connectorId"]
        self._require(connector)
        operative = p["type"] == "Operative"
        # 1.6 has one availability per connector (connector 0: all of them): Operative lifts
        # every level a 2.0.1 CSMS may have set before a version change.
        levels = station_model.LEVELS if operative else (station_model.EVSE,)
        status = self.host.set_availability(connector, operative, levels)
        return Reply({"status": status})

    async def _change_configuration(self, p: dict[str, Any]) -> Reply:
        if p["key"] == "SecurityProfile":
            return self._change_security_profile(p["value"])
        if p["key"] == "AuthorizationKey":
            return self._change_authorization_key(p["value"])
        status = self.keys.change(p["key"], p["value"])
        if status in ("Accepted", "RebootRequired"):
            self.apply_keys()
            if p["key"] == "HeartbeatInterval":
                self._heartbeat_changed.set()
            log.info("configuration key %s set to %s", p["key"], p["value"])
        return Reply({"status": status})

    def _change_security_profile(self, value: str) -> Reply:
        try:
            profile = int(value)
        except ValueError:
            return Reply({"status": "Rejected"})
        current = self.keys.number("SecurityProfile")
        problem = (
            f"the security profile may only be raised (now {current})"
            if not current < profile <= 3
            else self.host.ocpp.profile_problem(profile)
        )
        if problem is not None:
            log.warning("SecurityProfile %s refused: %s", value, problem)
            return Reply({"status": "Rejected"})

        async def reconnect() -> None:
            await self.host.ocpp.raise_profile(profile)

        return Reply({"status": "Accepted"}, reconnect)

    def _change_authorization_key(self, value: str) -> Reply:
        if self.keys.problem("AuthorizationKey", value) is not None:
            return Reply({"status": "Rejected"})
        try:
            self.host.credentials.set_password(value)
        except OSError as exc:
            log.error("AuthorizationKey not stored: %s", exc)
            return Reply({"status": "Rejected"})
        log.info("configuration key AuthorizationKey set")
        self.host.security_event("ReconfigurationOfSecurityParameters", "AuthorizationKey changed")
        return Reply({"status": "Accepted"}, self.host.ocpp.password_changed)

    def security_profile_changed(self, profile: int) -> None:
        self.keys.values["SecurityProfile"] = str(profile)

    async def _get_configuration(self, p: dict[str, Any]) -> Reply:
        names = p.get("key") or None
        if names and len(names) > self.keys.number("GetConfigurationMaxKeys"):
            raise RpcError("occurrence", "more keys than GetConfigurationMaxKeys")
        known, unknown = self.keys.report(names)
        payload: dict[str, Any] = {"configurationKey": known}
        if unknown:
            payload["unknownKey"] = unknown
        return Reply(payload)

    async def _clear_cache(self, p: dict[str, Any]) -> Reply:
        await self.host.clear_auth_cache()
        return Reply({"status": "Accepted"})

    async def _remote_start(self, p: dict[str, Any]) -> Reply:
        connector = p.get("connectorId")
        if connector is not None and not self._known(connector, station=False):
            return Reply({"status": "Rejected"})
        raw = p.get("chargingProfile")
        try:
            profile = tx_profile("RemoteStartTransaction", raw, schedule.from_ocpp16, connector or 0)
        except ValueError:
            return Reply({"status": "Rejected"})
        token = p["idTag"]
        authorize_first = self.keys.flag("AuthorizeRemoteTxRequests")
        if authorize_first and not self.host.can_remote_start(connector, token):
            return Reply({"status": "Rejected"})
        return self._start_remotely(connector, token, profile, {"status": "Accepted"}, authorize_first)

    async def _remote_stop(self, p: dict[str, Any]) -> Reply:
        ok = await self.host.remote_stop(str(p["transactionId"]))
        return Reply({"status": "Accepted" if ok else "Rejected"})

    async def _reset(self, p: dict[str, Any]) -> Reply:
        kind = p["type"]

        async def reset() -> None:  # runs once the reply has been sent
            self.host.reset(hard=kind == "Hard", retries=self.keys.number("ResetRetries"))

        return Reply({"status": "Accepted"}, reset)

    async def _unlock_connector(self, p: dict[str, Any]) -> Reply:
        connector = p["connectorId"]
        if not self._known(connector, station=False):
            return Reply({"status": "NotSupported"})
        return Reply({"status": await self.host.unlock(connector)})

    async def _get_local_list_version(self, p: dict[str, Any]) -> Reply:
        if not self.keys.flag("LocalAuthListEnabled"):
            return Reply({"listVersion": -1})
        return Reply({"listVersion": self.host.local_list.version})

    async def _send_local_list(self, p: dict[str, Any]) -> Reply:
        if not self.keys.flag("LocalAuthListEnabled"):
            return Reply({"status": "NotSupported"})
        entries = p.get("localAuthorizationList", [])
        if len(entries) > self.keys.number("SendLocalListMaxLength"):
            return Reply({"status": "Failed"})
        return await self._local_list(
            p["updateType"], p["listVersion"], lambda: auth.entries_from_ocpp16(entries)
        )

    async def _reserve_now(self, p: dict[str, Any]) -> Reply:
        connector = p["connectorId"]
        if not self._known(connector):
            return Reply({"status": "Rejected"})
        expiry = required_time(p, "expiryDate")
        reservation = Reservation(p["reservationId"], connector, p["idTag"], expiry, p.get("parentIdTag"))
        return Reply({"status": await self.host.reserve(reservation)})

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
                    status, code = self.host.station.evses[evse_id].status
                    await self._status(evse_id, status or "Available", code or "NoError", "")
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

    # -- firmware and diagnostics ------------------------------------------------------

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

    # -- security ----------------------------------------------------------------------

    def organization(self) -> str:
        return self.keys.get("CpoName")

    async def _certificate_signed(self, p: dict[str, Any]) -> Reply:
        return await self._certificate_signed_reply(
            p["certificateChain"], self.keys.number("CertificateSignedMaxChainSize")
        )

    async def _install_certificate(self, p: dict[str, Any]) -> Reply:
        return await self._install_certificate_reply(
            CERTIFICATE_TYPES[p["certificateType"]],
            p["certificate"],
            self.keys.flag("AdditionalRootCertificateCheck"),
        )

    async def _get_installed_certificate_ids(self, p: dict[str, Any]) -> Reply:
        found = self._installed_certificates([CERTIFICATE_TYPES[p["certificateType"]]])
        if found is None:
            return Reply({"status": "NotFound"})
        return Reply({"status": "Accepted", "certificateHashData": [data for _, data in found]})

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

    async def _get_diagnostics(self, p: dict[str, Any]) -> Reply:
        times = optional_times(p, "startTime", "stopTime")
        name = self.host.diagnostics_name()

        upload = self._upload(p["location"], name, times, p, self.diagnostics_status_notification)
        return Reply({"fileName": name}, upload)

    async def diagnostics_status_notification(self, status: str) -> None:
        self.diagnostics_status = status
        await self._notify("DiagnosticsStatusNotification", {"status": status})

    @staticmethod
    def reported_status(status: str) -> str:
        return status
