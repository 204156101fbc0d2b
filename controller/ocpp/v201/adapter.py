"""The OCPP 2.0.1 adapter: the station model and services in 2.0.1 messages.

Like the 1.6 adapter it holds no charging logic: settings live in the device model
(``device_model.py``), transactions are derived by ``transactions`` from what the station
does, and requests from the CSMS become calls on the daemon's version-neutral services.
The class is composed of one part per functional block of the specification, each in
its own module of this package, on the shared state and helpers of ``base``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from controller.io.link import Link, Reply
from controller.ocpp import connection
from controller.ocpp.v201 import device_model as dm
from controller.ocpp.v201 import transactions as tx201
from controller.ocpp.v201.authorization import Authorization
from controller.ocpp.v201.availability import Availability
from controller.ocpp.v201.base import EVENT_ID_SETTING, PREFIX
from controller.ocpp.v201.certificates import Certificates
from controller.ocpp.v201.firmware import Firmware
from controller.ocpp.v201.monitoring import Monitors
from controller.ocpp.v201.provisioning import Provisioning
from controller.ocpp.v201.smart_charging import SmartCharging
from controller.ocpp.v201.tx_messages import TransactionMessages
from controller.ocpp.v201.variable_monitoring import VariableMonitoring

if TYPE_CHECKING:
    from controller.ocpp.host import Host

__all__ = ["Ocpp201"]


def _positive(text: str | None) -> int:
    return int(text) if text and text.isdigit() and int(text) > 0 else 1


class Ocpp201(
    Provisioning,
    Authorization,
    Availability,
    TransactionMessages,
    SmartCharging,
    Firmware,
    Certificates,
    VariableMonitoring,
):
    """The 2.0.1 functional blocks this station implements, in one adapter."""

    def __init__(self, host: Host, link: Link, settings: dict[str, str]) -> None:
        super().__init__(host, link)
        config = host.config
        station = config.station
        ocpp = config.ocpp or {}
        evses = {e.id: dm.EvseInfo(e.max_current_a, e.phases, e.lock.driver != "none") for e in config.evses}
        info = dm.StationInfo(
            station["vendor"],
            station["model"],
            station.get("serial") or "",
            host.version,
            connection.floor(int(ocpp.get("security_profile", 0)), settings.get(connection.FLOOR_SETTING)),
        )
        stored = {k[len(PREFIX) :]: v for k, v in settings.items() if k.startswith(PREFIX)}
        self._password_key = dm.storage_key(("SecurityCtrlr", None, None, None, "BasicAuthPassword", None))
        self.model = dm.DeviceModel(dm.definitions(evses, info), stored, self._save)
        self.monitors = Monitors(
            self.model,
            settings.get("monitors201"),
            self._save_monitors,
            next_event_id=_positive(settings.get(EVENT_ID_SETTING)),
        )
        self._event_ids_lock = asyncio.Lock()
        self._register_live()
        self.tx = tx201.Transactions()
        self._faults: dict[int, frozenset[str]] = {}
        self._watched: dict[dm.Key, str] = {}
        self._unsent_events: list[dict[str, Any]] = []
        self._event_attempts: dict[int, int] = {}  # eventId -> NotifyEvents the CSMS refused
        self._offline_since: datetime | None = None  # when the last connection closed
        self._status_sent: dict[int, str] = {}
        self._removed: dict[int, list[int]] = {}  # EVSE -> reservations it lost, not yet reported
        self.boot_reason = "PowerUp"
        if settings.get("firmware.installed") == "pending":
            self.boot_reason = "FirmwareUpdate"
        elif settings.get(PREFIX + "boot_reason"):
            self.boot_reason = settings[PREFIX + "boot_reason"]  # cleared once a boot is accepted
        self.firmware_status = "Idle"
        self.firmware_request: int | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[Reply]]] = {
            "CancelReservation": self._cancel_reservation,
            "CertificateSigned": self._certificate_signed,
            "ChangeAvailability": self._change_availability,
            "ClearCache": self._clear_cache,
            "DeleteCertificate": self._delete_certificate,
            "GetInstalledCertificateIds": self._get_installed_certificate_ids,
            "InstallCertificate": self._install_certificate,
            "ClearChargingProfile": self._clear_charging_profile,
            "ClearVariableMonitoring": self._clear_variable_monitoring,
            "DataTransfer": self._data_transfer,
            "GetBaseReport": self._get_base_report,
            "GetChargingProfiles": self._get_charging_profiles,
            "GetCompositeSchedule": self._get_composite_schedule,
            "GetLocalListVersion": self._get_local_list_version,
            "GetLog": self._get_log,
            "GetMonitoringReport": self._get_monitoring_report,
            "GetReport": self._get_report,
            "GetTransactionStatus": self._get_transaction_status,
            "GetVariables": self._get_variables,
            "RequestStartTransaction": self._request_start,
            "RequestStopTransaction": self._request_stop,
            "ReserveNow": self._reserve_now,
            "Reset": self._reset,
            "SendLocalList": self._send_local_list,
            "SetChargingProfile": self._set_charging_profile,
            "SetMonitoringBase": self._set_monitoring_base,
            "SetMonitoringLevel": self._set_monitoring_level,
            "SetNetworkProfile": self._set_network_profile,
            "SetVariableMonitoring": self._set_variable_monitoring,
            "SetVariables": self._set_variables,
            "TriggerMessage": self._trigger_message,
            "UnlockConnector": self._unlock_connector,
            "UpdateFirmware": self._update_firmware,
        }
