"""OCPP 2.0.1 transactions: when they start and end, and their TransactionEvents. No I/O.

The station model decides when energy may flow (EV connected and authorized). A 2.0.1
transaction spans the same session but starts at the first of the configured
TxStartPoint conditions and ends as soon as one TxStopPoint condition no longer holds,
so it may begin before the station's transaction (EVConnected, Authorized: it takes the
id the station chose for its next transaction) and end after it (a stop point of
EVConnected alone keeps it open until the cable is unplugged).

Every event is numbered per transaction without gaps; the caller persists it in the
outbox together with its seqNo before it can be sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.core.measurands import measured
from controller.core.model import StopReason
from controller.core.timestamps import timestamp
from controller.ocpp.v201.words import EV_CONNECT_TIMEOUT, STOP_CAUSES

POINTS = ("EVConnected", "Authorized", "PowerPathClosed", "EnergyTransfer")
MAX_ENDED_VALUES = 500  # per transaction; a long session at a short interval keeps its first ones

NO_AUTHORIZATION = {"idToken": "", "type": "NoAuthorization"}
START_TRIGGERS = {
    "EVConnected": "CablePluggedIn",
    "Authorized": "Authorized",
    "PowerPathClosed": "ChargingStateChanged",
    "EnergyTransfer": "ChargingStateChanged",
}


@dataclass(frozen=True)
class Facts:
    """One EVSE as the station sees it after a batch of its actions."""

    ev_present: bool
    token: str | None  # the authorized identity of the session, if any
    tx_id: str | None  # the station's transaction (energy allowed once persisted)
    power_path_closed: bool
    charging_state: str  # Charging | EVConnected | SuspendedEV | SuspendedEVSE | Idle
    reading: dict[str, Any] | None  # the last meter reading, as services.sample_body makes it
    stopping: bool = False  # the station's transaction ended and waits for its final reading
    reservation_id: int | None = None  # the reservation the station's transaction used


@dataclass(frozen=True)
class Settings:
    start_points: frozenset[str] = frozenset({"PowerPathClosed"})
    stop_points: frozenset[str] = frozenset({"EVConnected", "Authorized"})
    started_measurands: tuple[str, ...] = ("Energy.Active.Import.Register",)
    updated_measurands: tuple[str, ...] = ("Energy.Active.Import.Register",)
    ended_measurands: tuple[str, ...] = ("Energy.Active.Import.Register",)
    aligned_measurands: tuple[str, ...] = ("Energy.Active.Import.Register",)
    ended_interval_s: int = 0  # SampledDataCtrlr.TxEndedInterval: samples kept for the Ended event
    aligned_ended_interval_s: int = 0  # AlignedDataCtrlr.TxEndedInterval
    aligned_ended_measurands: tuple[str, ...] = ("Energy.Active.Import.Register",)
    # The station's id for sessions AuthCtrlr.Enabled false lets charge (auth.free_id):
    # reported as an empty idToken of type NoAuthorization ("no authorization possible/needed").
    no_authorization_id: str | None = None


@dataclass(frozen=True)
class Event:
    """A TransactionEvent to persist and send; ``energy_wh`` is kept for a power loss."""

    tx_id: str
    evse_id: int
    seq_no: int
    ended: bool
    energy_wh: float | None
    payload: dict[str, Any]


@dataclass
class Open:
    id: str
    evse_id: int
    seq_no: int = -1  # the last one used
    token: str | None = None  # the idToken already reported
    charging_state: str = ""
    station_tx: str | None = None  # the station's transaction it covers
    stopped: tuple[str, str] | None = None  # energy ended for this reason (trigger, stoppedReason)
    remote_start_id: int | None = None
    energy_wh: float | None = None
    ev_seen: bool = False  # the EV has been connected during this transaction
    ended_values: list[dict[str, Any]] = field(default_factory=list)  # meter values for the Ended event
    last_ended_sample: datetime | None = None
    aligned_slot: int | None = None  # the clock-aligned interval the last tick fell in
    opened_at: datetime | None = None
    reservation_id: int | None = None  # to report with the next event
    stop_token: str | None = None  # the idToken that ended the authorization, reported once (E07.FR.02)


@dataclass
class Transactions:
    settings: Settings = field(default_factory=Settings)
    open: dict[int, Open] = field(default_factory=dict)
    remote_starts: dict[int, int] = field(default_factory=dict)  # evse -> remoteStartId not yet used
    token_types: dict[str, str] = field(default_factory=dict)  # idToken types the CSMS named
    _last: dict[int, Facts] = field(default_factory=dict)
    # The station's transaction a 2.0.1 transaction already covered: one that started
    # again on it (a PowerPathClosed stop point, then the contactor closed again) needs an id of its own.
    _covered: dict[int, str] = field(default_factory=dict)
    # Start points that held when the EVSE's last transaction ended: each must go away
    # and come back before it starts another (a local stop with the EV still plugged in
    # does not start a new transaction for EVConnected).
    _spent: dict[int, set[str]] = field(default_factory=dict)

    def by_id(self, tx_id: str) -> Open | None:
        return next((o for o in self.open.values() if o.id == tx_id), None)

    def reported_token(self, token: str) -> dict[str, str]:
        """The IdTokenType a session's token is reported as."""
        if token == self.settings.no_authorization_id:
            return dict(NO_AUTHORIZATION)
        return id_token(token, self.token_types.get(token, "ISO14443"))

    # -- inputs ------------------------------------------------------------------------

    def energy_ended(
        self, evse_id: int, tx_id: str, reason: StopReason, energy_wh: float, token: str | None = None
    ) -> None:
        """The station ended its transaction ``tx_id`` (TransactionStopped; ``token`` stopped it)."""
        current = self.open.get(evse_id)
        if current is not None and current.station_tx == tx_id and current.stopped is None:
            current.stopped = STOP_CAUSES[reason]
            current.energy_wh = energy_wh
            current.stop_token = token if current.stopped[0] == "StopAuthorized" else None

    def sampled(
        self, now: datetime, evse_id: int, tx_id: str, sample: dict[str, Any], offline: bool
    ) -> list[Event]:
        """A periodic or clock-aligned sample of the station's transaction ``tx_id``."""
        current = self.open.get(evse_id)
        if current is None or current.station_tx != tx_id or current.stopped is not None:
            return []
        clock = sample["context"] == "Sample.Clock"
        measurands = self.settings.aligned_measurands if clock else self.settings.updated_measurands
        values = meter_value(sample, measurands)
        if not values["sampledValue"]:
            return []
        current.energy_wh = sample["energy_wh"]
        trigger = "MeterValueClock" if clock else "MeterValuePeriodic"
        return [self._event(now, current, "Updated", trigger, offline, meter=[values])]

    def observe(
        self,
        now: datetime,
        evse_id: int,
        facts: Facts,
        offline: bool,
        upcoming_id: Callable[[], str] | None = None,
    ) -> list[Event]:
        """Start, update or end the EVSE's 2.0.1 transaction from what the station shows
        (``upcoming_id``: the id the station's next transaction on the EVSE will take)."""
        before = self._last.get(evse_id)
        self._last[evse_id] = facts
        events: list[Event] = []
        current = self.open.get(evse_id)
        if before is not None and before.token is not None and facts.token is None and facts.tx_id is None:
            self.remote_starts.pop(evse_id, None)  # the remote start ran out (EVConnectionTimeOut)
        if current is None:
            point = self._start_point(evse_id, facts)
            if point is None:
                return []
            if facts.tx_id is not None and self._covered.get(evse_id) != facts.tx_id:
                tx_id = facts.tx_id
            elif facts.tx_id is None and upcoming_id is not None:
                tx_id = upcoming_id()  # begun early: the station's transaction will carry it
            else:
                tx_id = str(uuid.uuid4())
            current = Open(tx_id, evse_id)
            current.station_tx = facts.tx_id
            current.reservation_id = facts.reservation_id if facts.tx_id is not None else None
            current.charging_state = facts.charging_state
            if facts.token is not None:  # else the remote start still waits for its authorization
                current.remote_start_id = self.remote_starts.pop(evse_id, None)
            current.opened_at = now
            # F01.FR.19 / F02.FR.21 as read by the OCTT and libocpp: a transaction the CSMS
            # started says so, whichever TxStartPoint opened it.
            trigger = "RemoteStart" if current.remote_start_id is not None else START_TRIGGERS[point]
            self.open[evse_id] = current
            meter = []
            if facts.reading is not None:
                begin = {**facts.reading, "context": "Transaction.Begin"}
                values = meter_value(begin, self.settings.started_measurands)
                if values["sampledValue"]:
                    meter.append(values)
                current.energy_wh = facts.reading["energy_wh"]
            if facts.token is not None:
                current.token = facts.token
            events.append(self._event(now, current, "Started", trigger, offline, meter=meter))
        else:
            if facts.tx_id is not None and current.stopped is not None and facts.tx_id != current.station_tx:
                # Energy stopped but the transaction went on (TxStopPoint EVConnected), and a
                # new authorization started the station's next session inside it.
                current.stopped, current.token = None, None
                current.station_tx = None
            if current.station_tx is None and facts.tx_id is not None:
                current.station_tx = facts.tx_id
                current.reservation_id = facts.reservation_id
            if facts.token is not None and current.token is None and current.stopped is None:
                current.token = facts.token
                if current.remote_start_id is None:
                    current.remote_start_id = self.remote_starts.pop(evse_id, None)
                trigger = "RemoteStart" if current.remote_start_id is not None else "Authorized"
                events.append(self._event(now, current, "Updated", trigger, offline))
            if facts.reading is not None:
                current.energy_wh = facts.reading["energy_wh"]
        current.ev_seen = current.ev_seen or facts.ev_present
        end = self._end_cause(current, facts, before)
        if end is not None:
            events.append(self._end(now, current, end, facts, offline))
            return events
        state = facts.charging_state
        if facts.stopping and current.stopped is None:
            return events  # the Ended event follows with the final reading
        if current.stopped is not None and not events and state != current.charging_state:
            current.charging_state = state
            events.append(self._event(now, current, "Updated", current.stopped[0], offline))
        elif state != current.charging_state:
            current.charging_state = state
            events.append(self._event(now, current, "Updated", "ChargingStateChanged", offline))
        return events

    def tick(self, now: datetime) -> None:
        """Once a second: keep the TxEndedInterval samples the Ended events will carry."""
        settings = self.settings
        for evse_id, current in self.open.items():
            facts = self._last.get(evse_id)
            if facts is None or facts.reading is None or current.station_tx is None or current.stopped:
                continue
            if len(current.ended_values) >= MAX_ENDED_VALUES:
                continue
            since = current.last_ended_sample or current.opened_at or now
            # Ticks come about once a second: half a tick early is on time.
            if settings.ended_interval_s and (now - since).total_seconds() >= settings.ended_interval_s - 0.5:
                current.last_ended_sample = now
                sample = {**facts.reading, "timestamp": timestamp(now), "context": "Sample.Periodic"}
                value = meter_value(sample, settings.ended_measurands)
                if value["sampledValue"]:
                    current.ended_values.append(value)
            aligned = settings.aligned_ended_interval_s
            slot = int(now.timestamp() // aligned) if aligned else None
            if current.aligned_slot is None and slot is not None and current.opened_at is not None:
                current.aligned_slot = int(current.opened_at.timestamp() // aligned)
            crossed = slot is not None and current.aligned_slot is not None and slot != current.aligned_slot
            current.aligned_slot = slot
            if crossed:
                sample = {**facts.reading, "timestamp": timestamp(now), "context": "Sample.Clock"}
                value = meter_value(sample, settings.aligned_ended_measurands)
                if value["sampledValue"]:
                    current.ended_values.append(value)

    def triggered(self, now: datetime, evse_id: int, offline: bool) -> list[Event]:
        """TriggerMessage(TransactionEvent): an Updated event with the latest reading."""
        current = self.open.get(evse_id)
        if current is None:
            return []
        meter = []
        facts = self._last.get(evse_id)
        if facts is not None and facts.reading is not None:
            sample = {**facts.reading, "context": "Trigger"}
            values = meter_value(sample, self.settings.updated_measurands)
            if values["sampledValue"]:
                meter.append(values)
        return [self._event(now, current, "Updated", "Trigger", offline, meter=meter)]

    def end(self, now: datetime, evse_id: int, reason: StopReason, offline: bool) -> list[Event]:
        """End the EVSE's transaction now (remote stop before authorization, shutdown)."""
        current = self.open.get(evse_id)
        if current is None:
            return []
        cause = STOP_CAUSES[reason]
        if current.stopped is not None:
            cause = cause[0], current.stopped[1]  # this is the trigger; why the energy stopped stays
        facts = self._last.get(evse_id)
        return [self._end(now, current, cause, facts, offline)]

    # -- rules -------------------------------------------------------------------------

    @staticmethod
    def _held(facts: Facts) -> set[str]:
        held = {
            "EVConnected": facts.ev_present,
            "Authorized": facts.token is not None or facts.tx_id is not None,
            # Energy flows only in a station transaction: a contactor still opening after
            # one ended starts nothing.
            "PowerPathClosed": facts.power_path_closed and facts.tx_id is not None,
            "EnergyTransfer": facts.charging_state == "Charging" and facts.tx_id is not None,
        }
        return {p for p, on in held.items() if on}

    def _start_point(self, evse_id: int, facts: Facts) -> str | None:
        held = self._held(facts)
        spent = self._spent.setdefault(evse_id, set())
        if facts.tx_id is not None and facts.tx_id != self._covered.get(evse_id):
            spent.clear()  # a new session of the station's
        spent &= held
        point = next((p for p in POINTS if p in self.settings.start_points and p in held - spent), None)
        if point is None and "PowerPathClosed" in held:
            # Energy flows only inside a transaction, whatever the start points say.
            point = "PowerPathClosed"
        return point

    def _end_cause(self, current: Open, facts: Facts, before: Facts | None) -> tuple[str, str] | None:
        stops = self.settings.stop_points
        if facts.stopping and current.stopped is None and current.station_tx is not None:
            return None  # its end comes with the final meter reading (energy_ended)
        if not facts.ev_present and current.ev_seen:
            stopped = current.stopped
            if stopped is None:
                return STOP_CAUSES[StopReason.EV_DISCONNECTED]
            if stopped[0] in ("AbnormalCondition", "ResetCommand"):
                return stopped
            return "EVCommunicationLost", stopped[1]  # the unplug ends it; why the energy stopped stays
        if current.station_tx is None and current.token is not None and facts.token is None:
            return EV_CONNECT_TIMEOUT
        if current.stopped is not None and (
            "Authorized" in stops or not facts.ev_present or "EVConnected" not in stops
        ):
            return current.stopped
        if before is None:
            return None
        path_opened = before.power_path_closed and not facts.power_path_closed
        transfer_ended = before.charging_state == "Charging" and facts.charging_state != "Charging"
        if ("PowerPathClosed" in stops and path_opened) or ("EnergyTransfer" in stops and transfer_ended):
            return self._suspended(facts)
        return None

    @staticmethod
    def _suspended(facts: Facts) -> tuple[str, str]:
        if facts.charging_state == "SuspendedEV":
            return "ChargingStateChanged", "StoppedByEV"
        return "ChargingStateChanged", "Other"

    def _end(
        self, now: datetime, current: Open, cause: tuple[str, str], facts: Facts | None, offline: bool
    ) -> Event:
        del self.open[current.evse_id]
        meter: list[dict[str, Any]] = list(current.ended_values)
        if current.station_tx is not None:
            self._covered[current.evse_id] = current.station_tx
        self._spent[current.evse_id] = self._held(facts) if facts is not None else set()
        energy = current.energy_wh
        if facts is not None and facts.reading is not None and energy is not None:
            end = {**facts.reading, "energy_wh": energy, "context": "Transaction.End"}
            values = meter_value(end, self.settings.ended_measurands)
            if values["sampledValue"]:
                meter.append(values)
        state = facts.charging_state if facts is not None else "Idle"
        current.charging_state = state if state in ("EVConnected", "Idle") else "EVConnected"
        return self._event(now, current, "Ended", cause[0], offline, meter=meter, stopped=cause[1])

    def _event(
        self,
        now: datetime,
        current: Open,
        kind: str,
        trigger: str,
        offline: bool,
        meter: Sequence[dict[str, Any]] = (),
        stopped: str | None = None,
    ) -> Event:
        current.seq_no += 1
        info: dict[str, Any] = {"transactionId": current.id}
        if current.charging_state:
            info["chargingState"] = current.charging_state
        if stopped is not None:
            info["stoppedReason"] = stopped
        if current.remote_start_id is not None and (kind == "Started" or trigger == "RemoteStart"):
            info["remoteStartId"] = current.remote_start_id
        payload: dict[str, Any] = {
            "eventType": kind,
            "timestamp": timestamp(now),
            "triggerReason": trigger,
            "seqNo": current.seq_no,
            "transactionInfo": info,
            "evse": {"id": current.evse_id, "connectorId": 1},
        }
        if offline:
            payload["offline"] = True
        if current.reservation_id is not None:
            payload["reservationId"] = current.reservation_id
            current.reservation_id = None
        if current.token is not None and (kind == "Started" or trigger in ("Authorized", "RemoteStart")):
            payload["idToken"] = self.reported_token(current.token)
        elif trigger == "StopAuthorized" and current.stop_token is not None:
            # E07.FR.02: once, in the event in which the authorization ended: the card that ended it.
            token, current.stop_token = current.stop_token, None
            payload["idToken"] = self.reported_token(token)
        if meter:
            payload["meterValue"] = list(meter)
        return Event(current.id, current.evse_id, current.seq_no, kind == "Ended", current.energy_wh, payload)


def unreported_start(
    at: datetime, tx_id: str, evse_id: int, token: dict[str, str], energy_wh: float
) -> dict[str, Any]:
    """The Started event of a station transaction a crash kept from being reported."""
    begin = {
        "timestamp": timestamp(at),
        "context": "Transaction.Begin",
        "energy_wh": energy_wh,
        "power_w": 0.0,
        "current_a": [],
        "voltage_v": [],
    }
    return {
        "eventType": "Started",
        "timestamp": timestamp(at),
        "triggerReason": "Authorized",
        "seqNo": 0,
        "offline": True,
        "transactionInfo": {"transactionId": tx_id},
        "evse": {"id": evse_id, "connectorId": 1},
        "idToken": token,
        "meterValue": [meter_value(begin, ("Energy.Active.Import.Register",))],
    }


def power_loss(
    now: datetime, tx_id: str, evse_id: int, last_seq_no: int, energy_wh: float | None
) -> dict[str, Any]:
    """The Ended event of a transaction a crash or power cut interrupted."""
    payload: dict[str, Any] = {
        "eventType": "Ended",
        "timestamp": timestamp(now),
        "triggerReason": "AbnormalCondition",
        "seqNo": last_seq_no + 1,
        "offline": True,
        "transactionInfo": {"transactionId": tx_id, "stoppedReason": "PowerLoss"},
        "evse": {"id": evse_id, "connectorId": 1},
    }
    if energy_wh is not None:
        sample = {
            "timestamp": payload["timestamp"],
            "context": "Transaction.End",
            "energy_wh": energy_wh,
            "power_w": 0.0,
            "current_a": [],
            "voltage_v": [],
        }
        payload["meterValue"] = [meter_value(sample, ("Energy.Active.Import.Register",))]
    return payload


def id_token(token: str, kind: str = "ISO14443") -> dict[str, str]:
    """A token from the reader (an ISO14443 UID) or the CSMS, as a 2.0.1 IdTokenType."""
    return {"idToken": token, "type": kind}


def meter_value(sample: dict[str, Any], measurands: Sequence[str]) -> dict[str, Any]:
    """One 2.0.1 MeterValueType from a stored reading, with the configured measurands."""
    values = []
    for measurand, value, unit, phase in measured(sample, measurands):
        item: dict[str, Any] = {
            "value": round(value, 1),
            "context": sample["context"],
            "measurand": measurand,
            "location": "Outlet",
            "unitOfMeasure": {"unit": unit},
        }
        if phase:
            item["phase"] = phase
        values.append(item)
    return {"timestamp": sample["timestamp"], "sampledValue": values}
