"""What every part of the OCPP 2.0.1 adapter builds on: the device model's settings, the
live variables, and the messages several parts send (statuses, transaction events, NotifyEvent,
reports)."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from controller.core import authorization as auth
from controller.core.model import ConnectorStatus
from controller.io.link import CallFailed, NotConnected, Reply
from controller.io.storage import StorageError, timestamp
from controller.ocpp.adapter import Adapter, retry_backoff
from controller.ocpp.v201 import device_model as dm
from controller.ocpp.v201 import transactions as tx201
from controller.ocpp.v201 import words
from controller.ocpp.v201.monitoring import Monitors
from controller.safety.pilot import PilotMode

log = logging.getLogger(__name__)


PREFIX = "ocpp201."
MAX_UNSENT_EVENTS = 100
NOTIFY_EVENT_ATTEMPTS = 3  # a NotifyEvent the CSMS refuses this often is dropped
NOTIFY_EVENT_RETRY_S = 2.0  # times the attempt number
EVENT_ID_SETTING = "events201.next_id"  # the first NotifyEvent eventId not yet reserved


class Base201(Adapter):
    """The 2.0.1 adapter's state and the helpers its parts share; ``Ocpp201`` sets the state."""

    VERSION = "2.0.1"
    SIGN_CERTIFICATE_TRIGGER = "SignChargingStationCertificate"
    OUTBOX_KINDS = ("event", "security")
    model: dm.DeviceModel
    monitors: Monitors
    tx: tx201.Transactions
    boot_reason: str
    firmware_request: int | None
    _password_key: str
    _event_ids_lock: asyncio.Lock
    _faults: dict[int, frozenset[str]]
    _watched: dict[dm.Key, str]
    _unsent_events: list[dict[str, Any]]
    _event_attempts: dict[int, int]  # eventId -> NotifyEvents the CSMS refused
    _offline_since: datetime | None  # when the last connection closed
    _status_sent: dict[int, str]
    _removed: dict[int, list[int]]  # EVSE -> reservations it lost, not yet reported

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
        target = self.host.ocpp.target
        return str(target.slot or 0) if target is not None else "0"

    def _station_state(self) -> str:
        states = {self._evse_state(i) for i in self.host.station.evses}
        if "Available" in states or "Occupied" in states:
            return "Available"
        return "Faulted" if "Faulted" in states else "Unavailable"

    def _evse_state(self, evse_id: int) -> str:
        status = self.host.station.evses[evse_id].status
        return words.connector_status(status[0] if status else None)

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
    def reported_status(status: ConnectorStatus) -> str:
        return words.CONNECTOR_STATUSES[status]

    def _session_started(self) -> None:
        if self._unsent_events:
            unsent, self._unsent_events = self._unsent_events, []
            self.host.spawn(self._notify_event(unsent))

    async def _status(self, evse_id: int, status: str) -> bool:
        payload = {
            "timestamp": timestamp(self.host.now()),
            "connectorStatus": status,
            "evseId": evse_id,
            "connectorId": 1,
        }
        return await self._status_call(payload, f"EVSE {evse_id}")

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
        self.host.records.add_tx_event(
            event.tx_id,
            event.evse_id,
            event.seq_no,
            event.ended,
            event.energy_wh,
            event.payload,
            then=self.outbox_changed,
        )

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
        records = self.host.records
        async with self._event_ids_lock:  # one write at a time; the others wait for it
            upto = self.monitors.reservation()
            if upto is not None:
                try:
                    await records.set_setting(EVENT_ID_SETTING, str(upto))
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

    def _remember_type(self, token: dict[str, Any]) -> None:
        if token["type"] != "ISO14443":
            types = self.tx.token_types
            types[token["idToken"]] = token["type"]
            while len(types) > 100:  # a few recent ones are all a session needs
                del types[next(iter(types))]

    def _items_per_message(self, instance: str) -> int:
        return self._number("DeviceDataCtrlr", "ItemsPerMessage", variable_instance=instance)

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


def _bool(value: bool) -> str:
    return "true" if value else "false"
