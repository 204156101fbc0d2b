"""The OCPP 1.6J adapter: the station model and services in 1.6 messages.

It holds no charging logic of its own: requests from the CSMS become calls on the
daemon's version-neutral services, and the station's events become 1.6 messages. The
transaction messages come from the persistent outbox, in order, at least once. The class
is composed of one part per feature profile, each in its own module of this package, on
the shared state and helpers of ``base``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from controller.io.link import Link, Reply
from controller.ocpp.v16.authorization import Authorization
from controller.ocpp.v16.availability import Availability
from controller.ocpp.v16.certificates import Certificates
from controller.ocpp.v16.firmware import Firmware
from controller.ocpp.v16.keys import KeyStore
from controller.ocpp.v16.provisioning import Provisioning
from controller.ocpp.v16.remote_trigger import RemoteTrigger
from controller.ocpp.v16.smart_charging import SmartCharging
from controller.ocpp.v16.tx_messages import TransactionMessages

if TYPE_CHECKING:
    from controller.ocpp.host import Host


class Ocpp16(
    TransactionMessages,
    Availability,
    Authorization,
    Provisioning,
    RemoteTrigger,
    Certificates,
    SmartCharging,
    Firmware,
):
    """The 1.6 feature profiles (Core, Firmware Management, Local Auth List Management,
    Reservation, Smart Charging, Remote Trigger) and the security extension in one adapter."""

    def __init__(self, host: Host, link: Link, stored_keys: dict[str, str]) -> None:
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
