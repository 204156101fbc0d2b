"""The OCPP 2.0.1 adapter: the station model and services in 2.0.1 messages.

Like the 1.6 adapter it holds no charging logic: settings live in the device model
(``device_model.py``), transactions are derived by ``tx201`` from what the station does,
and requests from the CSMS become calls on the daemon's version-neutral services.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from controller.core import authorization as auth
from controller.core import schedule
from controller.core import station as station_model
from controller.core.station import (
    Action,
    EvseState,
    MeterSampled,
    Reservation,
    ReservationEnded,
    TransactionStopped,
)
from controller.io.link import CallFailed, Link, NotConnected, Reply
from controller.io.storage import OutboxEntry, Storage, StorageError, timestamp
from controller.ocpp import connection
from controller.ocpp.adapter import Adapter, Retries, required_time, retry_backoff, tx_profile
from controller.ocpp.ocppj import RpcError
from controller.ocpp.v201 import device_model as dm
from controller.ocpp.v201 import transactions as tx201
from controller.ocpp.v201.monitoring import Monitors, criteria_supported
from controller.safety.pilot import CpState, PilotMode
from controller.services import sample_body

if TYPE_CHECKING:
    from controller.daemon import Daemon

log = logging.getLogger(__name__)

PREFIX = "ocpp201."
STATUS_WORDS = {  # 1.6 connector status -> 2.0.1 ConnectorStatusEnumType
    "Available": "Available",
    "Preparing": "Occupied",
    "Charging": "Occupied",
    "SuspendedEV": "Occupied",
    "SuspendedEVSE": "Occupied",
    "Finishing": "Occupied",
    "Reserved": "Reserved",
    "Unavailable": "Unavailable",
    "Faulted": "Faulted",
}
CHARGING_STATES = {
    "Charging": "Charging",
    "SuspendedEV": "SuspendedEV",
    "SuspendedEVSE": "SuspendedEVSE",
}
MAX_UNSENT_EVENTS = 100
NOTIFY_EVENT_ATTEMPTS = 3  # a NotifyEvent the CSMS refuses this often is dropped
NOTIFY_EVENT_RETRY_S = 2.0  # times the attempt number
EVENT_ID_SETTING = "events201.next_id"  # the first NotifyEvent eventId not yet reserved


def _positive(text: str | None) -> int:
    return int(text) if text and text.isdigit() and int(text) > 0 else 1


NETWORK_VARIABLES = ("NetworkConfigurationPriority", "NetworkProfileConnectionAttempts")


class Ocpp201(Adapter):
    VERSION = "2.0.1"
    SIGN_CERTIFICATE_TRIGGER = "SignChargingStationCertificate"
    OUTBOX_KINDS = ("event", "security")

    def __init__(self, host: Daemon, link: Link, settings: dict[str, str]) -> None:
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

    # -- settings ----------------------------------------------------------------------

    def _save(self, key: str, value: str) -> None:
        if key == self._password_key:  # write-only: kept out of the database
            try:
                self.host.credentials.set_password(value)
            except OSError as exc:
                log.error("BasicAuthPassword not stored: %s", exc)
                return
            self.host.security_event("ReconfigurationOfSecurityParameters", "BasicAuthPassword changed")
            return
        self.host.save_setting(PREFIX + key, value)

    def _save_monitors(self, value: str) -> None:
        self.host.save_setting("monitors201", value)

    def _value(self, component: str, variable: str, **where: Any) -> str:
        return self.model.value(component, variable, **where)

    def _number(self, component: str, variable: str, **where: Any) -> int:
        return int(self.model.number(component, variable, **where))

    def _flag(self, component: str, variable: str, **where: Any) -> bool:
        return self.model.flag(component, variable, **where)

    def _items(self, component: str, variable: str, **where: Any) -> list[str]:
        return self.model.items(component, variable, **where)

    def heartbeat_interval(self) -> int:
        return self._number("OCPPCommCtrlr", "HeartbeatInterval")

    def call_timeout(self) -> float:
        return float(self._number("OCPPCommCtrlr", "MessageTimeout", variable_instance="Default"))

    def backoff(self, attempt: int) -> float:
        """OCPP 2.0.1 Part 4 5.3: RetryBackOffWaitMinimum, doubled after each failed attempt
        up to RetryBackOffRepeatTimes times, plus up to RetryBackOffRandomRange at random."""
        return retry_backoff(
            attempt,
            self._number("OCPPCommCtrlr", "RetryBackOffWaitMinimum"),
            self._number("OCPPCommCtrlr", "RetryBackOffRepeatTimes"),
            self._number("OCPPCommCtrlr", "RetryBackOffRandomRange"),
            random.random(),
        )

    def apply_keys(self) -> None:
        """Hand the variables that steer version-neutral behaviour to the station."""
        station = self.host.station
        station.connection_timeout = timedelta(seconds=self._number("TxCtrlr", "EVConnectionTimeOut"))
        station.stop_on_invalid_id = self._flag("TxCtrlr", "StopTxOnInvalidId")
        station.max_energy_on_invalid_id_wh = float(self._number("TxCtrlr", "MaxEnergyOnInvalidId"))
        # E06.FR.04: with TxStopPoint Authorized a non-valid idTokenInfo ends the transaction,
        # whatever StopTxOnInvalidId says; that and MaxEnergyOnInvalidId only count without it.
        station.end_on_deauthorize = "Authorized" in self._items("TxCtrlr", "TxStopPoint")
        station.preparing_for_token = False  # no EV, no Occupied: a presented token leaves it Available
        # AuthCtrlr.Enabled false: no authorization before a transaction; every EV charges,
        # reported with an idToken of type NoAuthorization (tx201.Settings).
        enabled = self._flag("AuthCtrlr", "Enabled")
        station.auth_mode = self.host.config.auth["mode"] if enabled else "free"
        sampled = self._flag("SampledDataCtrlr", "Enabled")
        interval = self._number("SampledDataCtrlr", "TxUpdatedInterval") if sampled else 0
        station.sample_interval = timedelta(seconds=interval)
        aligned = self._flag("AlignedDataCtrlr", "Enabled")
        self.host.aligned_interval_s = self._number("AlignedDataCtrlr", "Interval") if aligned else 0
        self.tx.settings = tx201.Settings(
            start_points=frozenset(self._items("TxCtrlr", "TxStartPoint")),
            stop_points=frozenset(self._items("TxCtrlr", "TxStopPoint")),
            started_measurands=tuple(self._items("SampledDataCtrlr", "TxStartedMeasurands")),
            updated_measurands=tuple(self._items("SampledDataCtrlr", "TxUpdatedMeasurands")),
            ended_measurands=tuple(self._items("SampledDataCtrlr", "TxEndedMeasurands")),
            aligned_measurands=tuple(self._items("AlignedDataCtrlr", "Measurands")),
            ended_interval_s=self._number("SampledDataCtrlr", "TxEndedInterval") if sampled else 0,
            aligned_ended_interval_s=self._number("AlignedDataCtrlr", "TxEndedInterval") if aligned else 0,
            aligned_ended_measurands=tuple(self._items("AlignedDataCtrlr", "TxEndedMeasurands")),
            no_authorization_id=None if enabled else station.free_id,
        )

    def auth_settings(self) -> auth.AuthSettings:
        return auth.AuthSettings(
            local_auth_list_enabled=self._flag("LocalAuthListCtrlr", "Enabled"),
            auth_cache_enabled=self._flag("AuthCacheCtrlr", "Enabled"),
            local_pre_authorize=self._flag("AuthCtrlr", "LocalPreAuthorize"),
            local_authorize_offline=self._flag("AuthCtrlr", "LocalAuthorizeOffline"),
            allow_offline_tx_for_unknown_id=self._flag("AuthCtrlr", "OfflineTxForUnknownIdEnabled"),
            cache_lifetime_s=self._number("AuthCacheCtrlr", "LifeTime"),
        )

    def _register_live(self) -> None:
        host, model = self.host, self.model

        def live(component: str, variable: str, getter: Callable[[], str], **where: Any) -> None:
            found = model.find(component, variable, **where)
            if found is not None:
                model.live(found.key, getter)

        live("ClockCtrlr", "DateTime", lambda: timestamp(host.now()))
        live("SecurityCtrlr", "Identity", lambda: str(host.config.station["id"]))
        live("LocalAuthListCtrlr", "Entries", lambda: str(len(host.local_list)))
        live(
            "SmartChargingCtrlr",
            "Entries",
            lambda: str(len(host.profiles.all())),
            variable_instance="ChargingProfiles",
        )
        live("ChargingStation", "AvailabilityState", lambda: self._station_state())
        live(
            "ChargingStation", "Problem", lambda: _bool(any(self._evse_faults(i) for i in host.station.evses))
        )
        live("TokenReader", "Problem", lambda: "false")
        live("OCPPCommCtrlr", "ActiveNetworkProfile", self._active_slot)
        live("SecurityCtrlr", "CertificateEntries", lambda: str(host.certs.count()))
        for evse_id in host.station.evses:
            live("EVSE", "AvailabilityState", functools.partial(self._evse_state, evse_id), evse=evse_id)
            live("EVSE", "Power", functools.partial(self._power, evse_id), evse=evse_id)
            live(
                "Connector",
                "AvailabilityState",
                functools.partial(self._evse_state, evse_id),
                evse=evse_id,
                connector=1,
            )
            live("PowerContactor", "Active", functools.partial(self._contactor, evse_id), evse=evse_id)
            live("CPPWMController", "Active", functools.partial(self._pwm, evse_id), evse=evse_id)
            for component, variable in set(dm.FAULT_VARIABLES.values()):
                live(
                    component,
                    variable,
                    functools.partial(self._fault_value, evse_id, component, variable),
                    evse=evse_id,
                )

    def _active_slot(self) -> str:
        target = getattr(self.host.ocpp, "target", None)
        return str(target.slot or 0) if target is not None else "0"

    def _station_state(self) -> str:
        states = {self._evse_state(i) for i in self.host.station.evses}
        if "Available" in states or "Occupied" in states:
            return "Available"
        return "Faulted" if "Faulted" in states else "Unavailable"

    def _evse_state(self, evse_id: int) -> str:
        status = self.host.station.evses[evse_id].status[0] or "Available"
        return STATUS_WORDS.get(status, "Available")

    def _power(self, evse_id: int) -> str:
        reading = self.host.station.evses[evse_id].reading
        return f"{reading.power_w:.1f}" if reading is not None else "0"

    def _contactor(self, evse_id: int) -> str:
        view = self.host.station.evses[evse_id].view
        return _bool(view is not None and view.contactor_closed)

    def _pwm(self, evse_id: int) -> str:
        view = self.host.station.evses[evse_id].view
        return _bool(view is not None and view.pilot is PilotMode.PWM)

    def _evse_faults(self, evse_id: int) -> frozenset[str]:
        view = self.host.station.evses[evse_id].view
        return frozenset(str(f) for f in view.faults) if view is not None else frozenset()

    def _fault_value(self, evse_id: int, component: str, variable: str) -> str:
        faults = self._evse_faults(evse_id)
        return _bool(any(dm.FAULT_VARIABLES.get(f) == (component, variable) for f in faults))

    @staticmethod
    def reported_status(status: str) -> str:
        return STATUS_WORDS.get(status, status)

    # -- connection --------------------------------------------------------------------

    def _session_started(self) -> None:
        if self._unsent_events:
            unsent, self._unsent_events = self._unsent_events, []
            self.host.spawn(self._notify_event(unsent))

    def _boot_payload(self) -> dict[str, Any]:
        charging_station = self._identity("vendorName", 50, "model", "serialNumber")
        return {"reason": self.boot_reason, "chargingStation": charging_station}

    def _set_heartbeat_interval(self, seconds: int) -> None:
        key = self.model.find("OCPPCommCtrlr", "HeartbeatInterval")
        assert key is not None
        self.model.set_actual(key.key, str(seconds))

    def _boot_accepted(self) -> None:
        if self.boot_reason not in ("PowerUp", "Triggered"):
            self.host.save_setting(PREFIX + "boot_reason", "")
        self.boot_reason = "PowerUp"

    # -- status and events -------------------------------------------------------------

    def _closed(self) -> None:
        self._offline_since = self.host.now()
        super()._closed()

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

    async def _status(self, evse_id: int, status: str) -> bool:
        payload = {
            "timestamp": timestamp(self.host.now()),
            "connectorStatus": status,
            "evseId": evse_id,
            "connectorId": 1,
        }
        return await self._status_call(payload, f"EVSE {evse_id}")

    def station_changed(self, actions: list[Action]) -> None:
        """Derive transaction events, reservation updates and fault events from the actions."""
        host, now = self.host, self.host.now()
        offline = not self.online
        events: list[tx201.Event] = []
        for action in actions:
            match action:
                case TransactionStopped(tx_id, evse_id, _, meter_stop, reason, stopper):
                    self.tx.energy_ended(evse_id, tx_id, reason, meter_stop, stopper)
                case MeterSampled(tx_id, taken_at, reading, evse_id, context):
                    sample = sample_body(evse_id, taken_at, context, reading)
                    events += self.tx.sampled(now, evse_id, tx_id, sample, offline)
                case ReservationEnded(reservation_id, _, reason) if reason == "Expired":
                    host.spawn(self._reservation_update(reservation_id, "Expired"))
                case ReservationEnded(reservation_id, evse_id, reason) if reason == "Removed":
                    # H01.FR.16/17: the reserved EVSE became Faulted or Unavailable.
                    self._removed.setdefault(evse_id, []).append(reservation_id)
                    self._status_wake.set()
        for evse_id, state in host.station.evses.items():
            if state.view is None:
                continue
            upcoming = functools.partial(host.station.upcoming_tx_id, evse_id)
            events += self.tx.observe(now, evse_id, self._facts(state), offline, upcoming)
            if host.station.closed and evse_id in self.tx.open:
                events += self.tx.end(now, evse_id, host.shutdown_reason, offline)
            self._check_faults(evse_id, now)
        for event in events:
            self._queue(event)

    def _facts(self, state: EvseState) -> tx201.Facts:
        view = state.view
        assert view is not None
        tx = state.tx
        status = state.status[0]
        charging = CHARGING_STATES.get(status, "EVConnected" if state.ev_present else "Idle")
        if tx is None and state.ev_present:
            charging = "EVConnected"
        reading = (
            sample_body(state.id, self.host.now(), "Sample.Periodic", state.reading)
            if state.reading
            else None
        )
        return tx201.Facts(
            ev_present=state.ev_present and view.cp is not CpState.E,
            token=tx.id_tag if tx is not None else state.token,
            tx_id=tx.id if tx is not None else None,
            power_path_closed=view.contactor_closed,
            charging_state=charging,
            reading=reading,
            stopping=state.stopping is not None,
            reservation_id=tx.reservation_id if tx is not None else None,
        )

    def _queue(self, event: tx201.Event) -> None:
        if event.ended:
            self.host.station.retire_tx_id(event.evse_id, event.tx_id)
        log.info(
            "TransactionEvent %s for %s (seqNo %d, %s)",
            event.payload["eventType"],
            event.tx_id,
            event.seq_no,
            event.payload["triggerReason"],
            extra={"evse_id": event.evse_id, "transaction_id": event.tx_id},
        )
        self.host.writes.put(
            functools.partial(
                Storage.add_tx_event,
                tx_id=event.tx_id,
                evse_id=event.evse_id,
                seq_no=event.seq_no,
                ended=event.ended,
                energy_wh=event.energy_wh,
                body=event.payload,
            ),
            then=self.outbox_changed,
        )

    async def recover(self) -> None:
        """End, as PowerLoss, the 2.0.1 transactions a crash or power cut left open.

        Called once the meters have been read: the meter knows the energy delivered
        after the last event was written. A station transaction whose Started event never
        reached the database (a crash right after the contactor closed) is reported too,
        Started and Ended at once.
        """
        database = self.host.database
        now = self.host.now()
        self.tx = tx201.Transactions(settings=self.tx.settings)  # nothing is open any more
        unreported = await database.run(database.storage.transactions, False, 1000, True)
        interrupted = await database.run(database.storage.open_tx_events)
        for record in unreported:
            started = tx201.unreported_start(
                record.started_at,
                record.id,
                record.evse_id,
                self.tx.reported_token(record.id_tag),
                record.meter_start_wh,
            )
            self._queue(tx201.Event(record.id, record.evse_id, 0, False, record.meter_start_wh, started))
            interrupted.append((record.id, record.evse_id, 0, record.last_energy_wh))
        for tx_id, evse_id, seq_no, energy in interrupted:
            state = self.host.station.evses.get(evse_id)
            if state is not None and state.reading is not None and energy is not None:
                energy = max(energy, state.reading.energy_wh)
            payload = tx201.power_loss(now, tx_id, evse_id, seq_no, energy)
            log.warning("transaction %s was interrupted (power loss or crash); ended as PowerLoss", tx_id)
            self._queue(tx201.Event(tx_id, evse_id, seq_no + 1, True, energy, payload))

    def tick(self) -> None:
        """Once a second: TxEndedInterval samples, custom monitors on non-fault variables."""
        now, data = self.host.now(), []
        self.tx.tick(now)
        faults = set(dm.FAULT_VARIABLES.values())
        for key in self.monitors.monitored():
            definition = self.model.definition(key)
            if definition is None or (definition.component, definition.variable) in faults:
                continue
            value = self.model.actual(key)
            old = self._watched.get(key)
            self._watched[key] = value
            if old != value:  # None: the first look since the start (N07.FR.14)
                data += self.monitors.changed(key, old, value, now)
        if data:
            self.host.spawn(self._notify_event(data))

    def _check_faults(self, evse_id: int, now: datetime) -> None:
        faults = self._evse_faults(evse_id)
        before = self._faults.get(evse_id, frozenset())
        if faults == before:
            return
        self._faults[evse_id] = faults
        data: list[dict[str, Any]] = []
        for variable in {dm.FAULT_VARIABLES[f] for f in faults ^ before if f in dm.FAULT_VARIABLES}:
            found = self.model.find(variable[0], variable[1], evse=evse_id)
            if found is None:
                continue
            new = self._fault_value(evse_id, *variable)
            old = _bool(any(dm.FAULT_VARIABLES.get(f) == variable for f in before))
            if new != old:
                data += self.monitors.changed(found.key, old, new, now)
        if data:
            self.host.spawn(self._notify_event(data))

    async def _notify_event(self, data: list[dict[str, Any]]) -> None:
        """Send EventData; kept for the next accepted boot while offline, retried up to
        NOTIFY_EVENT_ATTEMPTS times when refused (CALLERROR) or unanswered, then dropped."""
        while self.online and data:
            if not await self._event_ids_reserved(data):
                break
            payload = {"generatedAt": timestamp(self.host.now()), "seqNo": 0, "eventData": data}
            try:
                await self.link.call("NotifyEvent", payload, self.call_timeout())
            except NotConnected:
                break
            except (CallFailed, TimeoutError) as exc:
                data = self._event_failed(data, exc)
                if data:
                    await asyncio.sleep(NOTIFY_EVENT_RETRY_S * self._event_attempts[data[0]["eventId"]])
                continue
            for item in data:
                self._event_attempts.pop(item["eventId"], None)
            return
        # MonitoringCtrlr.OfflineQueuingSeverity: offline, only events this severe (or more) are kept.
        severity = self._number("MonitoringCtrlr", "OfflineQueuingSeverity")
        kept = [item for item in data if self.monitors.severity(item) <= severity]
        if len(kept) < len(data):
            log.info(
                "%d event(s) less severe than OfflineQueuingSeverity %d not kept",
                len(data) - len(kept),
                severity,
            )
        data = kept
        if not data:
            return
        log.warning("NotifyEvent not delivered; sent after the next boot")
        # Kept in memory (not across restarts) and sent once the CSMS accepts us again.
        unsent = (self._unsent_events + data)[-MAX_UNSENT_EVENTS:]
        self._unsent_events = unsent
        queued = {item["eventId"] for item in unsent}
        self._event_attempts = {k: n for k, n in self._event_attempts.items() if k in queued}

    async def _event_ids_reserved(self, data: list[dict[str, Any]]) -> bool:
        """Whether the eventIds of ``data`` lie below a reservation the database has committed
        (a repeat after a power cut would be refused), storing the next one when due."""
        database = self.host.database
        async with self._event_ids_lock:  # one write at a time; the others wait for it
            upto = self.monitors.reservation()
            if upto is not None:
                try:
                    await database.run(database.storage.set_setting, EVENT_ID_SETTING, str(upto))
                except StorageError as exc:
                    self.monitors.reservation_failed()
                    log.error("NotifyEvent eventIds not reserved: %s", exc)
                else:
                    self.monitors.reserved(upto)
            return self.monitors.covers(data)

    def _event_failed(self, data: list[dict[str, Any]], exc: Exception) -> list[dict[str, Any]]:
        """Count a failed attempt for each item; the ones still to retry."""
        retry, dropped = [], []
        for item in data:
            attempts = self._event_attempts.get(item["eventId"], 0) + 1
            if attempts >= NOTIFY_EVENT_ATTEMPTS:
                self._event_attempts.pop(item["eventId"], None)
                dropped.append(item["eventId"])
            else:
                self._event_attempts[item["eventId"]] = attempts
                retry.append(item)
        if dropped:
            log.error(
                "NotifyEvent eventId %s dropped after %d attempts: %s", dropped, NOTIFY_EVENT_ATTEMPTS, exc
            )
        else:
            log.warning("NotifyEvent not accepted (%s); retrying", exc)
        return retry

    async def _reservation_update(self, reservation_id: int, status: str) -> None:
        payload = {"reservationId": reservation_id, "reservationUpdateStatus": status}
        await self._notify("ReservationStatusUpdate", payload)

    # -- authorization -----------------------------------------------------------------

    def _authorize_payload(self, token: str) -> dict[str, Any]:
        return {"idToken": tx201.id_token(token, self.tx.token_types.get(token, "ISO14443"))}

    def _authorize_info(self, reply: dict[str, Any]) -> auth.IdTagInfo:
        return auth.info_from_ocpp201(reply["idTokenInfo"])

    # -- transaction events ------------------------------------------------------------

    def _retries(self) -> Retries:
        return Retries(
            self._number("OCPPCommCtrlr", "MessageAttempts", variable_instance="TransactionEvent"),
            self._number("OCPPCommCtrlr", "MessageAttemptInterval", variable_instance="TransactionEvent"),
        )

    async def _deliver(self, entry: OutboxEntry) -> bool:
        database = self.host.database
        payload = entry.body
        reply = await self._call_entry(entry, "TransactionEvent", payload, self._retries)
        if reply is None:
            return False
        if not isinstance(reply, dict):
            log.error("TransactionEvent for %s dropped after its attempts: %s", entry.transaction_id, reply)
            await database.run(database.storage.outbox_delivered, entry.id, entry.transaction_id)
            return True
        await self._entry_delivered(entry, payload["eventType"] == "Ended")
        if "idTokenInfo" in reply and "idToken" in payload:
            try:
                info = auth.info_from_ocpp201(reply["idTokenInfo"])
            except ValueError:
                return True
            current = self.tx.by_id(entry.transaction_id)
            station_tx = current.station_tx if current is not None else entry.transaction_id
            self.host.id_tag_info(station_tx or entry.transaction_id, payload["idToken"]["idToken"], info)
        return True

    def _meter_values_payload(
        self, evse_id: int, sample: dict[str, Any], context: str
    ) -> dict[str, Any] | None:
        # Clock-aligned and triggered values both carry AlignedDataCtrlr.Measurands (F06.FR.06).
        value = tx201.meter_value(sample, self._items("AlignedDataCtrlr", "Measurands"))
        return {"evseId": evse_id, "meterValue": [value]} if value["sampledValue"] else None

    async def meter_values_now(self, evse_id: int, context: str) -> None:
        if context == "Sample.Clock" and not self._flag("AlignedDataCtrlr", "SendDuringIdle"):
            return
        await super().meter_values_now(evse_id, context)

    # -- requests from the CSMS --------------------------------------------------------

    def _items_per_message(self, instance: str) -> int:
        return self._number("DeviceDataCtrlr", "ItemsPerMessage", variable_instance=instance)

    def _check_per_message(self, instance: str, p: dict[str, Any], key: str) -> None:
        """B06.FR.16/17, B08.FR.17/18: a request with more ``key`` entries than
        DeviceDataCtrlr.ItemsPerMessage[instance] is refused with OccurrenceConstraintViolation,
        one longer than BytesPerMessage[instance] with FormatViolation."""
        limit = self._items_per_message(instance)
        if len(p.get(key, ())) > limit:
            raise RpcError("occurrence", f"more {key} than ItemsPerMessage {instance} ({limit})")
        limit = self._number("DeviceDataCtrlr", "BytesPerMessage", variable_instance=instance)
        # The payload as compact JSON: the frame's envelope and any whitespace are not counted.
        size = len(json.dumps(p, separators=(",", ":"), ensure_ascii=False).encode())
        if size > limit:
            raise RpcError(
                "format", f"{instance}Request of {size} bytes, over BytesPerMessage {instance} ({limit})"
            )

    # B: provisioning

    async def _get_variables(self, p: dict[str, Any]) -> Reply:
        self._check_per_message("GetVariables", p, "getVariableData")
        return Reply({"getVariableResult": [self.model.get(item) for item in p["getVariableData"]]})

    async def _set_variables(self, p: dict[str, Any]) -> Reply:
        items = p["setVariableData"]
        if len(items) > self._items_per_message("SetVariables"):
            raise RpcError("occurrence", "more setVariableData than ItemsPerMessage SetVariables")
        results, changed = [], []
        for item in items:
            result, definition = self.model.set(item)
            results.append(result)
            if definition is not None:
                changed.append(definition)
                log.info(
                    "%s.%s set to %s",
                    definition.component,
                    definition.variable,
                    "***" if definition.mutability == "WriteOnly" else item["attributeValue"],
                )
        if changed:
            self.apply_keys()
            if any(d.variable in NETWORK_VARIABLES for d in changed):
                self.host.ocpp.network_changed()  # from the next connection on
            if any(d.variable == "HeartbeatInterval" for d in changed):
                self._heartbeat_changed.set()
            if any(d.variable == "BasicAuthPassword" for d in changed):
                return Reply({"setVariableResult": results}, self.host.ocpp.password_changed)  # A01
        return Reply({"setVariableResult": results})

    async def _get_base_report(self, p: dict[str, Any]) -> Reply:
        data = self.model.report(base=p["reportBase"])
        return self._report_reply(p["requestId"], data)

    async def _get_report(self, p: dict[str, Any]) -> Reply:
        self._check_per_message("GetReport", p, "componentVariable")
        data = self.model.report(
            criteria=p.get("componentCriteria", ()), component_variables=p.get("componentVariable", ())
        )
        return self._report_reply(p["requestId"], data)

    def _report_reply(
        self,
        request_id: int,
        data: list[dict[str, Any]],
        action: str = "NotifyReport",
        key: str = "reportData",
    ) -> Reply:
        """Accepted, then ``data`` in parts of ItemsPerMessage[GetReport] (seqNo, tbc)."""
        if not data:
            return Reply({"status": "EmptyResultSet"})
        size = max(1, self._items_per_message("GetReport"))

        async def send() -> None:
            parts = [data[i : i + size] for i in range(0, len(data), size)]
            for seq_no, part in enumerate(parts):
                payload = {
                    "requestId": request_id,
                    "generatedAt": timestamp(self.host.now()),
                    "seqNo": seq_no,
                    "tbc": seq_no < len(parts) - 1,
                    key: part,
                }
                try:
                    await self.link.call(action, payload, self.call_timeout())
                except (NotConnected, CallFailed, TimeoutError) as exc:
                    log.warning("%s %d part %d not delivered: %s", action, request_id, seq_no, exc)
                    return

        return Reply({"status": "Accepted"}, send)

    async def _reset(self, p: dict[str, Any]) -> Reply:
        if "evseId" in p:
            # One EVSE cannot restart on its own: the whole station is one process.
            return Reply({"status": "Rejected"})
        busy = any(e.tx is not None or e.stopping is not None for e in self.host.station.evses.values())
        on_idle = p["type"] == "OnIdle"

        async def reset() -> None:
            while on_idle and any(
                e.tx is not None or e.stopping is not None for e in self.host.station.evses.values()
            ):
                await asyncio.sleep(1.0)
            if self.host.stopping.is_set():
                return  # SIGTERM came first: no restart
            # Stored at exit, and only if no SIGTERM cancels the restart meanwhile.
            self.host.restart_settings[PREFIX + "boot_reason"] = "RemoteReset"
            self.host.reset(hard=True, retries=self._number("OCPPCommCtrlr", "ResetRetries"))

        return Reply({"status": "Scheduled" if busy and on_idle else "Accepted"}, reset)

    async def _set_network_profile(self, p: dict[str, Any]) -> Reply:
        data, slot = p["connectionData"], p["configurationSlot"]
        profile, url = data["securityProfile"], data["ocppCsmsUrl"]
        problem = None
        if data["ocppVersion"] != "OCPP20":
            problem = f"OCPP version {data['ocppVersion']} is not spoken here"
        elif slot < 0 or data["ocppTransport"] != "JSON":
            problem = "only JSON over websockets, slots from 0"
        elif profile < self._number("SecurityCtrlr", "SecurityProfile"):
            problem = "the security profile may only be raised"
        elif not url.startswith("wss://" if profile >= 2 else "ws://"):
            problem = f"security profile {profile} needs a {'wss' if profile >= 2 else 'ws'}:// URL"
        else:
            problem = self.host.ocpp.profile_problem(profile)
        if problem is not None:
            log.warning("SetNetworkProfile slot %d refused: %s", slot, problem)
            info = {"reasonCode": "InvalidNetworkConf", "additionalInfo": problem[:512]}
            return Reply({"status": "Rejected", "statusInfo": info})
        self.host.ocpp.save(f"{PREFIX}network.{slot}", json.dumps(data))
        self.host.ocpp.network_changed()
        self.host.security_event("ReconfigurationOfSecurityParameters", f"network profile slot {slot} set")
        return Reply({"status": "Accepted"})

    def security_profile_changed(self, profile: int) -> None:
        key = self.model.find("SecurityCtrlr", "SecurityProfile")
        if key is not None:
            self.model.set_actual(key.key, str(profile))

    # A: certificates

    def organization(self) -> str:
        return self._value("SecurityCtrlr", "OrganizationName")

    def sign_certificate_payload(self, csr: str) -> dict[str, Any]:
        return {"csr": csr, "certificateType": "ChargingStationCertificate"}

    def cert_signing_wait(self) -> tuple[int, int]:
        return (
            self._number("SecurityCtrlr", "CertSigningWaitMinimum"),
            self._number("SecurityCtrlr", "CertSigningRepeatTimes"),
        )

    async def _certificate_signed(self, p: dict[str, Any]) -> Reply:
        if p.get("certificateType", "ChargingStationCertificate") != "ChargingStationCertificate":
            return Reply({"status": "Rejected", "statusInfo": {"reasonCode": "NotSupported"}})
        return await self._certificate_signed_reply(
            p["certificateChain"], self._number("SecurityCtrlr", "MaxCertificateChainSize")
        )

    async def _install_certificate(self, p: dict[str, Any]) -> Reply:
        return await self._install_certificate_reply(
            p["certificateType"],
            p["certificate"],
            self._flag("SecurityCtrlr", "AdditionalRootCertificateCheck"),
        )

    async def _get_installed_certificate_ids(self, p: dict[str, Any]) -> Reply:
        found = self._installed_certificates(p.get("certificateType") or None)
        if found is None:
            return Reply({"status": "NotFound"})
        chain = [{"certificateType": kind, "certificateHashData": data} for kind, data in found]
        return Reply({"status": "Accepted", "certificateHashDataChain": chain})

    async def _trigger_message(self, p: dict[str, Any]) -> Reply:
        message = p["requestedMessage"]
        evse = p.get("evse", {}).get("id")
        if evse is not None and not self._evse(evse):
            return Reply({"status": "Rejected"})
        evses = [evse] if evse else list(self.host.station.evses)
        follow_up: Callable[[], Awaitable[None]]
        if message == "BootNotification":
            if self.registration == "Accepted":
                return Reply({"status": "Rejected"})

            async def follow_up() -> None:
                self.boot_reason = "Triggered"
                self._boot_wake.set()  # the boot loop, waiting while Pending, sends it now
        elif message == "Heartbeat":
            follow_up = self.heartbeat
        elif message == "StatusNotification":

            async def follow_up() -> None:
                for evse_id in evses:
                    await self._status(evse_id, self._evse_state(evse_id))
        elif message == "MeterValues":
            follow_up = self._meter_values_trigger(evses)
        elif message == "TransactionEvent":
            if not any(e in self.tx.open for e in evses):
                return Reply({"status": "Rejected"})

            async def follow_up() -> None:
                for evse_id in evses:
                    for event in self.tx.triggered(self.host.now(), evse_id, not self.online):
                        self._queue(event)
        else:
            shared = self._shared_trigger(message)
            if shared is None:
                return Reply({"status": "NotImplemented"})
            follow_up = shared
        return Reply({"status": "Accepted"}, follow_up)

    # C, D: authorization and local list

    async def _clear_cache(self, p: dict[str, Any]) -> Reply:
        if not self._flag("AuthCacheCtrlr", "Enabled"):
            return Reply({"status": "Rejected"})
        await self.host.clear_auth_cache()
        return Reply({"status": "Accepted"})

    async def _get_local_list_version(self, p: dict[str, Any]) -> Reply:
        # D02.FR.03: 0 while the local list is disabled; D02.FR.02: 0 when none was sent.
        if not self._flag("LocalAuthListCtrlr", "Enabled"):
            return Reply({"versionNumber": 0})
        return Reply({"versionNumber": self.host.local_list.version})

    async def _send_local_list(self, p: dict[str, Any]) -> Reply:
        if not self._flag("LocalAuthListCtrlr", "Enabled"):
            return Reply({"status": "Failed"})
        if p["versionNumber"] <= 0:
            # D01.FR.18: versionNumber SHALL be greater than 0 (0 means "no list installed").
            log.warning("SendLocalList refused: versionNumber %s is not greater than 0", p["versionNumber"])
            return Reply({"status": "Failed"})
        entries = p.get("localAuthorizationList", [])
        return await self._local_list(
            p["updateType"], p["versionNumber"], lambda: auth.entries_from_ocpp201(entries)
        )

    # E, F: transactions and remote control

    async def _get_transaction_status(self, p: dict[str, Any]) -> Reply:
        database = self.host.database
        entries = await database.run(database.storage.outbox, 1000)
        tx_id = p.get("transactionId")
        queued = [e for e in entries if e.kind == "event" and tx_id in (None, e.transaction_id)]
        payload: dict[str, Any] = {"messagesInQueue": bool(queued)}
        if tx_id is not None:
            payload["ongoingIndicator"] = self.tx.by_id(tx_id) is not None
        return Reply(payload)

    async def _request_start(self, p: dict[str, Any]) -> Reply:
        if self.registration == "Pending":
            return Reply({"status": "Rejected"})  # B02.FR.05: no remote start before Accepted
        evse_id = p.get("evseId")
        if evse_id is not None and not self._evse(evse_id):
            return Reply({"status": "Rejected"})
        raw = p.get("chargingProfile")
        if raw is not None and not self._flag("SmartChargingCtrlr", "Enabled"):
            # F01.FR.12: without smart charging the profile is ignored
            log.info("RequestStartTransaction: smart charging is disabled, its charging profile is ignored")
            raw = None
        try:
            profile = tx_profile("RequestStartTransaction", raw, schedule.from_ocpp201, evse_id or 0)
        except ValueError:
            return Reply({"status": "Rejected"})
        token = p["idToken"]["idToken"]
        self._remember_type(p["idToken"])
        station = self.host.station
        target = station.remote_start_target(evse_id, token, parent_unknown=True)
        if target is None:
            return Reply({"status": "Rejected"})
        open_tx = self.tx.open.get(target.id)
        reply: dict[str, Any] = {"status": "Accepted"}
        if open_tx is not None:
            open_tx.remote_start_id = p["remoteStartId"]
            reply["transactionId"] = open_tx.id
        else:
            self.tx.remote_starts[target.id] = p["remoteStartId"]

        def forget() -> None:
            self.tx.remote_starts.pop(target.id, None)

        authorize_first = self._flag("AuthCtrlr", "AuthorizeRemoteStart")
        return self._start_remotely(target.id, token, profile, reply, authorize_first, forget)

    def _remember_type(self, token: dict[str, Any]) -> None:
        if token["type"] != "ISO14443":
            types = self.tx.token_types
            types[token["idToken"]] = token["type"]
            while len(types) > 100:  # a few recent ones are all a session needs
                del types[next(iter(types))]

    async def _request_stop(self, p: dict[str, Any]) -> Reply:
        current = self.tx.by_id(p["transactionId"])
        if current is None or self.registration == "Pending":  # B02.FR.05
            return Reply({"status": "Rejected"})
        station, now = self.host.station, self.host.now()
        state = station.evses[current.evse_id]
        if state.tx is not None:
            station.stop_transaction(now, state.tx.id, "Remote")
            self.host._apply(station.drain())
        else:
            # No energy allowed yet (TxStartPoint EVConnected): nothing to stop but the transaction.
            station.withdraw_token(current.evse_id)
            for event in self.tx.end(now, current.evse_id, "Remote", not self.online):
                self._queue(event)
        return Reply({"status": "Accepted"})

    async def _unlock_connector(self, p: dict[str, Any]) -> Reply:
        evse_id = p["evseId"]
        if not self._evse(evse_id) or p["connectorId"] != 1:
            return Reply({"status": "UnknownConnector"})
        if self.host.station.evses[evse_id].tx is not None:
            return Reply({"status": "OngoingAuthorizedTransaction"})
        status = await self.host.unlock(evse_id)
        return Reply({"status": "Unlocked" if status == "Unlocked" else "UnlockFailed"})

    # G: availability

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
        return Reply({"status": status})

    # H: reservation

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
        return Reply({"status": await self.host.reserve(reservation)})

    # K: smart charging

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

    # L: firmware

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
        await self.host.database.run(
            self.host.database.storage.set_setting, PREFIX + "firmware_request", str(p["requestId"])
        )
        return reply

    async def firmware_status_notification(self, status: str) -> None:
        # After Installed a triggered notification reports Idle (L01.FR.25); after a
        # failure, the failure (L01.FR.26).
        self.firmware_status = "Idle" if status == "Installed" else status
        if self.firmware_request is None:
            stored = await self.host.database.run(
                self.host.database.storage.get_setting, PREFIX + "firmware_request"
            )
            self.firmware_request = int(stored) if stored else None
        payload: dict[str, Any] = {"status": status}
        if self.firmware_request is not None and status != "Idle":
            payload["requestId"] = self.firmware_request
        await self._notify("FirmwareStatusNotification", payload)

    # N: diagnostics and monitoring

    async def _set_variable_monitoring(self, p: dict[str, Any]) -> Reply:
        results = [self.monitors.set(item) for item in p["setMonitoringData"]]
        for key in self.monitors.monitored():
            # A Delta counts from the value when the monitor was set.
            self._watched.setdefault(key, self.model.actual(key))
        return Reply({"setMonitoringResult": results})

    async def _clear_variable_monitoring(self, p: dict[str, Any]) -> Reply:
        return Reply({"clearMonitoringResult": self.monitors.clear(p["id"])})

    async def _get_monitoring_report(self, p: dict[str, Any]) -> Reply:
        criteria = p.get("monitoringCriteria", ())
        if not criteria_supported(criteria):
            return Reply({"status": "NotSupported"})  # N02.FR.02, even with others that are supported
        data = self.monitors.report(criteria, p.get("componentVariable", ()))
        return self._report_reply(p["requestId"], data, "NotifyMonitoringReport", "monitor")

    async def _set_monitoring_base(self, p: dict[str, Any]) -> Reply:
        self.monitors.set_base(p["monitoringBase"])
        return Reply({"status": "Accepted"})

    async def _set_monitoring_level(self, p: dict[str, Any]) -> Reply:
        level = self.model.find("MonitoringCtrlr", "ActiveMonitoringLevel")
        if level is None or not 0 <= p["severity"] <= 9:
            return Reply({"status": "Rejected"})
        self.model.set_actual(level.key, str(p["severity"]))
        return Reply({"status": "Accepted"})


def _bool(value: bool) -> str:
    return "true" if value else "false"
