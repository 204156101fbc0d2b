"""The station model: sessions, authorization and transactions, free of I/O.

Events go in (what the control loop saw on an EVSE, a meter reading, a token at the
reader, a record safely written) and actions come out (write this record, allow or
withdraw energy, the connector status changed). The daemon applies the actions; the
OCPP adapters will translate the same actions into messages.

Energy is allowed on an EVSE only while it has a transaction whose start is already
persisted: every kWh delivered belongs to a transaction that survives a ``kill -9``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.pilot import CONNECTED, CpState, PilotMode
from controller.safety import Fault
from drivers.base import MeterReading

SAMPLE_INTERVAL = timedelta(seconds=60)  # periodic meter sample during a transaction
TOKEN_WAIT = timedelta(seconds=60)  # a token presented before plug-in waits this long
# A stopping transaction waits this long for a meter reading taken after the contactor
# opened, so that meterStop includes the last second of energy; then it takes the last
# good reading.
FINAL_READING_WAIT = timedelta(seconds=2)

# OCPP 1.6 error codes for the faults, highest priority first.
ERROR_CODES: tuple[tuple[Fault, str], ...] = (
    (Fault.RCD, "GroundFailure"),
    (Fault.CONTACTOR_WELD, "PowerSwitchFailure"),
    (Fault.CONTACTOR_STUCK, "PowerSwitchFailure"),
    (Fault.OVERCURRENT, "OverCurrentFailure"),
    (Fault.METER, "PowerMeterFailure"),
    (Fault.DIODE, "EVCommunicationError"),
    (Fault.LOCK, "ConnectorLockFailure"),
    (Fault.RCD_TEST, "OtherError"),
    (Fault.HARDWARE, "OtherError"),
)
STOP_REASONS = {Fault.RCD: "EmergencyStop"}  # any other fault stops with "Other"
# A missing diode keeps the session: the supervisor needs the PWM it permits to see the
# diode come back, and the EV may well recover. Every other fault ends the transaction.
SESSION_KEEPING_FAULTS = frozenset({Fault.DIODE})


@dataclass(frozen=True, slots=True)
class EvseView:
    """One EVSE as the control loop last saw it."""

    cp: CpState
    pilot: PilotMode
    duty_percent: float
    offered_a: float
    contactor_closed: bool
    faults: frozenset[Fault]


@dataclass
class Transaction:
    id: str
    evse_id: int
    id_tag: str
    started_at: datetime
    meter_start_wh: float
    persisted: bool = False
    last_sample_at: datetime | None = None


# -- actions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransactionStarted:
    tx: Transaction


@dataclass(frozen=True, slots=True)
class TransactionStopped:
    tx_id: str
    evse_id: int
    stopped_at: datetime
    meter_stop_wh: float
    reason: str


@dataclass(frozen=True, slots=True)
class MeterSampled:
    tx_id: str
    taken_at: datetime
    reading: MeterReading


@dataclass(frozen=True, slots=True)
class MeterReadWanted:
    """Read this EVSE's meter now rather than at the next poll."""

    evse_id: int


@dataclass(frozen=True, slots=True)
class Permit:
    evse_id: int
    authorized: bool
    limit_a: float


@dataclass(frozen=True, slots=True)
class StatusChanged:
    evse_id: int
    status: str
    error_code: str
    info: str = ""


@dataclass(frozen=True, slots=True)
class TokenRejected:
    token: str
    reason: str


Action = (
    TransactionStarted
    | TransactionStopped
    | MeterSampled
    | MeterReadWanted
    | Permit
    | StatusChanged
    | TokenRejected
)


@dataclass
class Stopping:
    tx: Transaction
    reason: str
    at: datetime
    deadline: datetime


@dataclass
class EvseState:
    id: int
    max_current_a: float
    view: EvseView | None = None
    reading: MeterReading | None = None
    ev_present: bool = False  # from the last pilot state that shows the EV (A..D)
    token: str | None = None  # the authorized identity of the session
    tx: Transaction | None = None
    stopping: Stopping | None = None  # ended, waiting for its final meter reading
    finishing: bool = False  # stopped by the user while the EV is still plugged
    status: tuple[str, str] = ("", "")
    permit: tuple[bool, float] = (False, 0.0)


@dataclass
class Station:
    evses: dict[int, EvseState]
    auth_mode: str  # "free" | "list" | "ocpp"
    allow: frozenset[str] = frozenset()
    free_id: str = "FREE"
    pending_token: tuple[str, datetime] | None = None
    closed: bool = False  # shut down: nothing new starts
    _actions: list[Action] = field(default_factory=list)

    @classmethod
    def create(cls, limits: dict[int, float], auth_mode: str, allow: list[str], free_id: str) -> Station:
        evses = {i: EvseState(i, limit) for i, limit in limits.items()}
        return cls(evses, auth_mode, frozenset(allow), free_id)

    # -- events ------------------------------------------------------------------------

    def evse_seen(self, now: datetime, evse_id: int, view: EvseView) -> list[Action]:
        evse = self.evses[evse_id]
        evse.view = view
        # E (short) and F (driven by us) say nothing about the EV: keep what A..D said.
        if view.cp not in (CpState.E, CpState.F):
            evse.ev_present = view.cp is not CpState.A
        return self._evaluate(now)

    def meter_read(self, now: datetime, evse_id: int, reading: MeterReading) -> list[Action]:
        evse = self.evses[evse_id]
        if evse.reading is None or reading.energy_wh >= evse.reading.energy_wh:
            evse.reading = reading
        self._finish_stop(evse)
        return self._evaluate(now)

    def token_presented(self, now: datetime, token: str) -> list[Action]:
        for evse in self.evses.values():
            if evse.tx is not None and evse.token == token:
                self._stop(now, evse, "Local")
                evse.token, evse.finishing = None, True
                return self._evaluate(now)
        if self.auth_mode != "list":
            self._actions.append(TokenRejected(token, f"auth mode is {self.auth_mode!r}"))
        elif token not in self.allow:
            self._actions.append(TokenRejected(token, "not in auth.allow"))
        else:
            waiting = [e for e in self.evses.values() if e.ev_present and e.tx is None and e.token is None]
            waiting.sort(key=lambda e: e.finishing)  # an EV waiting for a token before a finished one
            if waiting:
                waiting[0].token, waiting[0].finishing = token, False
            else:
                self.pending_token = (token, now + TOKEN_WAIT)
        return self._evaluate(now)

    def transaction_persisted(self, now: datetime, tx_id: str) -> list[Action]:
        for evse in self.evses.values():
            if evse.tx is not None and evse.tx.id == tx_id:
                evse.tx.persisted = True
        return self._evaluate(now)

    def tick(self, now: datetime) -> list[Action]:
        if self.pending_token and now >= self.pending_token[1]:
            self.pending_token = None
        return self._evaluate(now)

    def shutdown(self, now: datetime, reason: str) -> list[Action]:
        """End every transaction (the daemon is stopping); nothing starts after this."""
        self.closed = True
        for evse in self.evses.values():
            self._stop(now, evse, reason)
            self._finish_stop(evse)
        return self._drain()

    # -- the rules ---------------------------------------------------------------------

    def _evaluate(self, now: datetime) -> list[Action]:
        for evse in self.evses.values():
            view = evse.view
            if view is None:
                continue
            if not evse.ev_present:
                self._stop(now, evse, "EVDisconnected")
                evse.token, evse.finishing = None, False
            elif view.faults - SESSION_KEEPING_FAULTS:
                worst = next(f for f, _ in ERROR_CODES if f in view.faults)
                self._stop(now, evse, STOP_REASONS.get(worst, "Other"))
            elif not view.faults and view.cp in CONNECTED:
                self._maybe_start(now, evse)
            if evse.stopping and (now >= evse.stopping.deadline or Fault.METER in view.faults):
                self._finish_stop(evse)
            self._sample(now, evse)
            self._update_permit(evse)
            self._update_status(evse)
        return self._drain()

    def _maybe_start(self, now: datetime, evse: EvseState) -> None:
        if self.closed or evse.tx is not None or evse.stopping or evse.finishing or evse.reading is None:
            return
        if self.auth_mode == "free":
            evse.token = self.free_id
        elif evse.token is None and self.pending_token is not None:
            token, expires = self.pending_token
            self.pending_token = None
            if now < expires:
                evse.token = token
        if evse.token is None:
            return
        evse.tx = Transaction(
            str(uuid.uuid4()), evse.id, evse.token, now, evse.reading.energy_wh, last_sample_at=now
        )
        self._actions.append(TransactionStarted(evse.tx))

    def _stop(self, now: datetime, evse: EvseState, reason: str) -> None:
        if evse.tx is None:
            return
        evse.stopping = Stopping(evse.tx, reason, now, now + FINAL_READING_WAIT)
        evse.tx = None
        if evse.view is None or Fault.METER not in evse.view.faults:
            self._actions.append(MeterReadWanted(evse.id))

    def _finish_stop(self, evse: EvseState) -> None:
        stopping = evse.stopping
        if stopping is None:
            return
        tx = stopping.tx
        meter_stop = max(evse.reading.energy_wh, tx.meter_start_wh) if evse.reading else tx.meter_start_wh
        self._actions.append(TransactionStopped(tx.id, evse.id, stopping.at, meter_stop, stopping.reason))
        evse.stopping = None

    def _sample(self, now: datetime, evse: EvseState) -> None:
        tx = evse.tx
        if tx is None or evse.reading is None or tx.last_sample_at is None:
            return
        if now - tx.last_sample_at >= SAMPLE_INTERVAL:
            tx.last_sample_at = now
            self._actions.append(MeterSampled(tx.id, now, evse.reading))

    def _update_permit(self, evse: EvseState) -> None:
        authorized = evse.tx is not None and evse.tx.persisted
        permit = (authorized, evse.max_current_a if authorized else 0.0)
        if permit != evse.permit:
            evse.permit = permit
            self._actions.append(Permit(evse.id, *permit))

    def _update_status(self, evse: EvseState) -> None:
        status, code, info = self.connector_status(evse)
        if (status, code) != evse.status:
            evse.status = (status, code)
            self._actions.append(StatusChanged(evse.id, status, code, info))

    @staticmethod
    def connector_status(evse: EvseState) -> tuple[str, str, str]:
        """(status, errorCode, info) in OCPP 1.6 words."""
        view = evse.view
        assert view is not None
        for fault, code in ERROR_CODES:
            if fault in view.faults:
                return "Faulted", code, fault.value
        if view.cp is CpState.E:
            return "Faulted", "OtherError", "pilot shorted (state E)"
        if not evse.ev_present:
            return "Available", "NoError", ""
        if evse.tx is None:
            return ("Finishing" if evse.finishing else "Preparing"), "NoError", ""
        if view.contactor_closed and view.cp in (CpState.C, CpState.D):
            return "Charging", "NoError", ""
        if view.pilot is not PilotMode.PWM:
            return "SuspendedEVSE", "NoError", ""
        return "SuspendedEV", "NoError", ""

    def _drain(self) -> list[Action]:
        actions, self._actions = self._actions, []
        return actions
