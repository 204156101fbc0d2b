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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.core.limits import Load, composite_schedule, effective_limit, next_limit_change
from controller.core.model import (
    CONNECTOR,
    EVSE,
    FAULT_PRIORITY,
    FAULT_STOP_REASONS,
    FIRMWARE,
    LEVELS,
    SESSION_KEEPING_FAULTS,
    STATION,
    Action,
    AuthorizeWanted,
    AvailabilityChange,
    ConnectorStatus,
    EvseState,
    EvseView,
    MeterReadWanted,
    MeterSampled,
    Permit,
    Reservation,
    ReservationEnd,
    ReservationEnded,
    ReservationResult,
    StatusChanged,
    Stopping,
    StopReason,
    TokenRejected,
    Transaction,
    TransactionStarted,
    TransactionStopped,
    UnlockResult,
    availability_setting,
    parse_availability,
)
from controller.core.schedule import Period, Profiles
from controller.safety.pilot import CONNECTED, CpState, PilotMode
from controller.safety.supervisor import Fault
from drivers.base import MeterReading

__all__ = [
    "CONNECTOR",
    "EVSE",
    "FAULT_PRIORITY",
    "FAULT_STOP_REASONS",
    "FIRMWARE",
    "LEVELS",
    "SESSION_KEEPING_FAULTS",
    "STATION",
    "Action",
    "AuthorizeWanted",
    "AvailabilityChange",
    "ConnectorStatus",
    "EvseState",
    "EvseView",
    "MeterReadWanted",
    "MeterSampled",
    "Permit",
    "Reservation",
    "ReservationEnd",
    "ReservationEnded",
    "ReservationResult",
    "Station",
    "StatusChanged",
    "StopReason",
    "Stopping",
    "TokenRejected",
    "Transaction",
    "TransactionStarted",
    "TransactionStopped",
    "UnlockResult",
    "availability_setting",
    "parse_availability",
]

SAMPLE_INTERVAL = timedelta(seconds=60)  # periodic meter sample during a transaction
TOKEN_WAIT = timedelta(seconds=60)  # a token presented before plug-in waits this long (ConnectionTimeOut)
# A stopping transaction waits this long for a meter reading taken after the contactor
# opened, so that meterStop includes the last second of energy; then it takes the last
# good reading.
FINAL_READING_WAIT = timedelta(seconds=2)
# 2.0.1 H01.FR.16/17, 1.6 section 5.13 (3): these statuses end an EVSE's reservation.
LOSES_RESERVATION = (ConnectorStatus.FAULTED, ConnectorStatus.UNAVAILABLE)


@dataclass
class Station:
    evses: dict[int, EvseState]
    auth_mode: str  # "free" | "list" | "ocpp"
    allow: frozenset[str] = frozenset()
    free_id: str = "FREE"
    pending_token: tuple[str, datetime] | None = None
    pending_parent: str | None = None
    closed: bool = False  # shut down: nothing new starts
    connection_timeout: timedelta = TOKEN_WAIT
    stop_on_invalid_id: bool = True
    max_energy_on_invalid_id_wh: float = 0.0
    # The authorization is a stop condition of the transaction: an id tag the CSMS refuses
    # ends it whatever ``stop_on_invalid_id`` says (the protocol adapter decides).
    end_on_deauthorize: bool = False
    # 1.6: a token presented with no EV makes the connectors it could start on Preparing
    # (1.6 section 4.9). 2.0.1 has no such state: its connectors stay Available.
    preparing_for_token: bool = True
    sample_interval: timedelta = SAMPLE_INTERVAL  # zero: no periodic samples
    profiles: Profiles = field(default_factory=Profiles)  # the charging profiles installed
    _actions: list[Action] = field(default_factory=list)
    # token -> when the CSMS was asked about it, and the EVSEs whose EV waited for a token then
    _asked: dict[str, tuple[datetime, frozenset[int]]] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        limits: dict[int, float],
        auth_mode: str,
        allow: list[str],
        free_id: str,
        phases: Mapping[int, int] | None = None,
    ) -> Station:
        """``limits``: the hardware limit of each EVSE in A; ``phases``: those it is wired for (3)."""
        evses = {i: EvseState(i, limit, (phases or {}).get(i, 3)) for i, limit in limits.items()}
        return cls(evses, auth_mode, frozenset(allow), free_id)

    # -- events ------------------------------------------------------------------------

    def evse_seen(self, now: datetime, evse_id: int, view: EvseView) -> list[Action]:
        evse = self.evses[evse_id]
        evse.view = view
        if evse.tx is not None and view.pilot is PilotMode.PWM:
            evse.tx.offered = True
        # E (short) and F (driven by us) say nothing about the EV: keep what A..D said.
        if view.cp not in (CpState.E, CpState.F):
            if evse.ev_present and view.cp is CpState.A:
                evse.departed_at = now
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
                self._end_by_token(now, evse, token)
                return self._evaluate(now)
        if not any(e.available for e in self.evses.values()):
            self._actions.append(TokenRejected(token, "every EVSE is unavailable"))
        elif self.auth_mode == "ocpp":
            waiting = frozenset(e.id for e in self.evses.values() if e.ev_present and e.idle())
            self._asked = {t: a for t, a in self._asked.items() if now - a[0] <= 2 * self.connection_timeout}
            self._asked[token] = (now, waiting)
            self._actions.append(AuthorizeWanted(token))
        elif self.auth_mode != "list":
            self._actions.append(TokenRejected(token, f"auth mode is {self.auth_mode!r}"))
        elif token not in self.allow:
            self._actions.append(TokenRejected(token, "not in auth.allow"))
        else:
            self._assign(now, token, None)
        return self._evaluate(now)

    def token_authorized(
        self, now: datetime, token: str, accepted: bool, parent: str | None = None, reason: str = ""
    ) -> list[Action]:
        """The answer to ``AuthorizeWanted``.

        An acceptance that comes too late starts nothing: after ``connection_timeout``, or
        after the EV it was presented for has left (an answer held up by the network must
        not start a session for the next EV on that card).
        """
        asked = self._asked.pop(token, None)
        if not accepted:
            self._actions.append(TokenRejected(token, reason or "not authorized"))
            return self._evaluate(now)
        for evse in self.evses.values():
            tx = evse.tx
            if tx is not None and (tx.id_tag == token or (parent is not None and tx.parent == parent)):
                self._end_by_token(now, evse, token)
                return self._evaluate(now)
        late = asked is not None and self._late(now, *asked)
        if late:
            self._actions.append(TokenRejected(token, f"authorized too late ({late}); present it again"))
            return self._evaluate(now)
        self._assign(now, token, parent)
        return self._evaluate(now)

    def _late(self, now: datetime, asked_at: datetime, waiting: frozenset[int]) -> str:
        """Why an answer to a question asked at ``asked_at`` comes too late ("" if it does not)."""
        if now - asked_at > self.connection_timeout:
            return f"more than {self.connection_timeout.total_seconds():.0f} s after it was presented"
        for evse_id in sorted(waiting):
            departed = self.evses[evse_id].departed_at
            if departed is not None and departed >= asked_at:
                return f"the EV on EVSE {evse_id} it was presented for has left"
        return ""

    def _end_by_token(self, now: datetime, evse: EvseState, token: str) -> None:
        self._stop(now, evse, StopReason.LOCAL, token)
        evse.token, evse.token_parent, evse.finishing = None, None, True

    def _assign(self, now: datetime, token: str, parent: str | None) -> None:
        waiting = [
            e
            for e in self.evses.values()
            if e.ev_present and e.idle() and e.available and self._admits(e, token, parent)
        ]
        waiting.sort(key=lambda e: e.finishing)  # an EV waiting for a token before a finished one
        if waiting:
            evse = waiting[0]
            evse.token, evse.token_parent, evse.finishing = token, parent, False
            return
        reserved = [e for e in self.evses.values() if e.reservation and e.reservation.admits(token, parent)]
        if reserved and reserved[0].idle():
            evse = reserved[0]
            evse.token, evse.token_parent = token, parent
            evse.token_expires = now + self.connection_timeout
            return
        self.pending_token = (token, now + self.connection_timeout)
        self.pending_parent = parent

    @staticmethod
    def _admits(evse: EvseState, token: str, parent: str | None) -> bool:
        return evse.reservation is None or evse.reservation.admits(token, parent)

    # -- remote control (OCPP) ---------------------------------------------------------

    def remote_start_target(
        self, evse_id: int | None, token: str, parent: str | None = None, parent_unknown: bool = False
    ) -> EvseState | None:
        """The EVSE a remote start for ``token`` would use (``evse_id`` or the station's pick).

        ``parent_unknown``: the token is not authorized yet, so a reservation for a
        parent group may still turn out to admit it.
        """
        if self.closed:
            return None

        def fits(e: EvseState) -> bool:
            if not (e.idle() and e.available and self._usable(e)):
                return False
            return self._admits(e, token, parent) or (
                parent_unknown and e.reservation is not None and e.reservation.parent is not None
            )

        if evse_id is not None:
            found = self.evses.get(evse_id)
            return found if found is not None and fits(found) else None
        candidates = sorted(filter(fits, self.evses.values()), key=lambda e: not e.ev_present)
        return candidates[0] if candidates else None  # a plugged-in EV first

    def remote_start(
        self, now: datetime, evse_id: int | None, token: str, parent: str | None = None
    ) -> int | None:
        """Start a session for ``token``; the EVSE it will run on, or None if refused."""
        evse = self.remote_start_target(evse_id, token, parent)
        if evse is None:
            return None
        evse.token, evse.token_parent, evse.finishing = token, parent, False
        evse.token_expires = None if evse.ev_present else now + self.connection_timeout
        self._rules(now)
        return evse.id

    @staticmethod
    def _usable(evse: EvseState) -> bool:
        view = evse.view
        return view is not None and not (view.faults - SESSION_KEEPING_FAULTS) and view.cp is not CpState.E

    def stop_transaction(self, now: datetime, tx_id: str, reason: StopReason) -> bool:
        """End a transaction for the CSMS (remote stop, unlock, deauthorization, resets)."""
        for evse in self.evses.values():
            if evse.tx is not None and evse.tx.id == tx_id:
                self._stop(now, evse, reason)
                evse.token, evse.token_parent, evse.finishing = None, None, evse.ev_present
                self._rules(now)
                return True
        return False

    def withdraw_token(self, evse_id: int) -> None:
        """Forget the identity waiting on an EVSE (a session the CSMS stopped before it started)."""
        evse = self.evses[evse_id]
        if evse.tx is None:
            evse.token, evse.token_parent, evse.token_expires = None, None, None

    def upcoming_tx_id(self, evse_id: int) -> str:
        """The id the EVSE's next transaction will take, chosen now: a 2.0.1 transaction may
        begin before the station's, which then carries its id."""
        evse = self.evses[evse_id]
        if evse.next_tx_id is None:
            evse.next_tx_id = str(uuid.uuid4())
        return evse.next_tx_id

    def retire_tx_id(self, evse_id: int, tx_id: str) -> None:
        """A transaction ``tx_id`` ended before the station's began: its id is never used again."""
        evse = self.evses.get(evse_id)
        if evse is not None and evse.next_tx_id == tx_id:
            evse.next_tx_id = None

    def adopt_parent(self, tx_id: str, parent: str) -> None:
        """The CSMS named the parent id of a running transaction's id tag (1.6
        StartTransaction.conf); a card with the same parent may now stop it."""
        for evse in self.evses.values():
            if evse.tx is not None and evse.tx.id == tx_id:
                evse.tx.parent = evse.token_parent = parent

    def deauthorized(self, now: datetime, tx_id: str) -> str:
        """The CSMS answered the start with an id tag that is not valid.

        With ``stop_on_invalid_id`` or ``end_on_deauthorize`` the transaction ends
        (DeAuthorized); else it goes on until the EV leaves, but energy stops once
        ``max_energy_on_invalid_id_wh`` more than its start has been delivered (at once
        with 0). A transaction started without identification (auth mode "free") goes on
        untouched. Returns "stopped", "suspended" or "" (no such transaction, or nothing done).
        """
        if self.unidentified(tx_id):
            return ""
        if self.stop_on_invalid_id or self.end_on_deauthorize:
            return "stopped" if self.stop_transaction(now, tx_id, StopReason.DEAUTHORIZED) else ""
        for evse in self.evses.values():
            tx = evse.tx
            if tx is not None and tx.id == tx_id:
                if tx.energy_cap_wh is None:
                    tx.energy_cap_wh = tx.meter_start_wh + max(self.max_energy_on_invalid_id_wh, 0.0)
                self._rules(now)
                return "suspended"
        return ""

    def unidentified(self, tx_id: str) -> bool:
        """Whether ``tx_id`` runs without identification (auth mode "free")."""
        return any(e.tx is not None and e.tx.id == tx_id and e.tx.unidentified for e in self.evses.values())

    def set_available(
        self, now: datetime, evse_id: int, available: bool, levels: tuple[str, ...] = (EVSE,)
    ) -> AvailabilityChange:
        """ChangeAvailability for one EVSE or, with 0, every EVSE: set ``levels`` (Inoperative
        adds them, Operative lifts them); the other levels stay as they are."""
        targets = list(self.evses.values()) if evse_id == 0 else [self.evses[evse_id]]
        busy = False
        for evse in targets:
            if available:
                evse.inoperative.difference_update(levels)
            else:
                evse.inoperative.update(levels)
            busy = busy or (not available and evse.transacting)
            if not available and evse.tx is None:
                evse.token, evse.token_parent, evse.token_expires = None, None, None
        self._rules(now)
        return AvailabilityChange.SCHEDULED if busy else AvailabilityChange.ACCEPTED

    def reserve(self, now: datetime, reservation: Reservation) -> ReservationResult:
        """ReserveNow: keep the EVSE for the reservation's holder, if it can be."""
        evse = self.evses.get(reservation.evse_id)
        if evse is None:
            return ReservationResult.REJECTED
        current = evse.reservation
        if current is not None and current.id != reservation.id:
            return ReservationResult.OCCUPIED
        for other in self.evses.values():
            if other is not evse and other.reservation and other.reservation.id == reservation.id:
                other.reservation = None  # a reservation id moves to the new EVSE
        if not self._usable(evse):
            return ReservationResult.FAULTED
        if not evse.available:
            return ReservationResult.UNAVAILABLE
        if not evse.idle() or (evse.ev_present and current is None):
            return ReservationResult.OCCUPIED
        evse.reservation = reservation
        self._rules(now)
        return ReservationResult.ACCEPTED

    def cancel_reservation(self, now: datetime, reservation_id: int) -> bool:
        for evse in self.evses.values():
            if evse.reservation and evse.reservation.id == reservation_id:
                evse.reservation = None
                self._actions.append(ReservationEnded(reservation_id, evse.id, ReservationEnd.CANCELLED))
                self._rules(now)
                return True
        return False

    def shift(self, delta: timedelta) -> None:
        """The clock was set (to the CSMS's time): move the timers that measure durations.

        Reservation expiries are moments the CSMS named, so they stay.
        """
        if self.pending_token is not None:
            self.pending_token = (self.pending_token[0], self.pending_token[1] + delta)
        self._asked = {token: (at + delta, waiting) for token, (at, waiting) in self._asked.items()}
        for evse in self.evses.values():
            if evse.token_expires is not None:
                evse.token_expires += delta
            if evse.departed_at is not None:
                evse.departed_at += delta
            if evse.stopping is not None:
                evse.stopping.deadline += delta
            if evse.tx is not None and evse.tx.last_sample_at is not None:
                evse.tx.last_sample_at += delta

    def limits_changed(self, now: datetime) -> list[Action]:
        """The profiles changed, or ``now`` is a ``next_limit_change``: apply the limits."""
        return self._evaluate(now)

    # -- charging limits ---------------------------------------------------------------

    def loads(self) -> dict[int, Load]:
        """What the EVSEs' limits depend on besides the profiles, as they are now."""
        return {
            evse.id: Load(
                evse.max_current_a,
                evse.phases,
                evse.tx.id if evse.tx else None,
                evse.tx.started_at if evse.tx else None,
            )
            for evse in self.evses.values()
        }

    def composite(self, evse_id: int, start: datetime, duration_s: int, unit: str) -> list[Period]:
        """GetCompositeSchedule: the limit the permits carry, from ``start`` on."""
        return composite_schedule(self.profiles, evse_id, start, duration_s, unit, self.loads())

    def next_limit_change(self, now: datetime) -> datetime | None:
        """When ``limits_changed`` is next due (profiles, transactions and the clock as they are)."""
        return next_limit_change(self.profiles, now, self.loads())

    def transacting(self) -> bool:
        """Whether a transaction runs, or waits for its final reading, on some EVSE."""
        return any(evse.transacting for evse in self.evses.values())

    def drain(self) -> list[Action]:
        """Actions raised by the remote-control calls above."""
        return self._drain()

    def transaction_persisted(self, now: datetime, tx_id: str) -> list[Action]:
        for evse in self.evses.values():
            if evse.tx is not None and evse.tx.id == tx_id:
                evse.tx.persisted = True
        return self._evaluate(now)

    def tick(self, now: datetime) -> list[Action]:
        if self.pending_token and now >= self.pending_token[1]:
            self.pending_token = None
        for evse in self.evses.values():
            if evse.token_expires is not None and evse.tx is None and now >= evse.token_expires:
                evse.token, evse.token_parent, evse.token_expires = None, None, None
            reservation = evse.reservation
            if reservation is not None and now >= reservation.expiry:
                evse.reservation = None
                self._actions.append(ReservationEnded(reservation.id, evse.id, ReservationEnd.EXPIRED))
        return self._evaluate(now)

    def shutdown(self, now: datetime, reason: StopReason) -> list[Action]:
        """End every transaction (the daemon is stopping); nothing starts after this."""
        self.closed = True
        for evse in self.evses.values():
            self._stop(now, evse, reason)
            self._finish_stop(evse)
        return self._drain()

    # -- the rules ---------------------------------------------------------------------

    def _evaluate(self, now: datetime) -> list[Action]:
        self._rules(now)
        return self._drain()

    def _rules(self, now: datetime) -> None:
        """Apply every rule; the actions wait in ``_actions`` for the next drain."""
        pending = self.pending_token
        running = self._running()
        self._update_limits(now)
        for evse in self.evses.values():
            view = evse.view
            if view is None:
                continue
            if not evse.ev_present:
                self._stop(now, evse, StopReason.EV_DISCONNECTED)
                if evse.token_expires is None:
                    evse.token, evse.token_parent = None, None
                evse.finishing = False
            elif view.faults - SESSION_KEEPING_FAULTS:
                worst = next(f for f in FAULT_PRIORITY if f in view.faults)
                self._stop(now, evse, FAULT_STOP_REASONS.get(worst, StopReason.OTHER))
            elif not view.faults and view.cp in CONNECTED:
                self._maybe_start(now, evse)
            if evse.stopping and (now >= evse.stopping.deadline or Fault.METER in view.faults):
                self._finish_stop(evse)
            self._sample(now, evse)
            self._update_permit(evse)
            self._update_status(now, evse)
            reservation = evse.reservation
            if reservation is not None and evse.status and evse.status[0] in LOSES_RESERVATION:
                # 2.0.1 H01.FR.16/17, 1.6 section 5.13 (3): a Faulted or Unavailable EVSE
                # loses its reservation; it does not come back when the EVSE recovers.
                evse.reservation = None
                self._actions.append(ReservationEnded(reservation.id, evse.id, ReservationEnd.REMOVED))
        if self._running() != running:
            # A transaction started or ended: the station maximum is shared anew.
            self._update_limits(now)
            for evse in self.evses.values():
                if evse.view is not None:
                    self._update_permit(evse)
        if pending is not None and self.pending_token is None:
            # An EV took the token: the EVSEs looked at before it stop waiting for one.
            for evse in self.evses.values():
                if evse.view is not None:
                    self._update_status(now, evse)

    def _maybe_start(self, now: datetime, evse: EvseState) -> None:
        if self.closed or evse.tx is not None or evse.stopping or evse.finishing or evse.reading is None:
            return
        if not evse.available:
            return
        if self.auth_mode == "free" and evse.token is None and evse.reservation is None:
            evse.token = self.free_id
        elif evse.token is None and self.pending_token is not None:
            token, expires = self.pending_token
            if now < expires and self._admits(evse, token, self.pending_parent):
                evse.token, evse.token_parent = token, self.pending_parent
                self.pending_token = None
            elif now >= expires:
                self.pending_token = None
        if evse.token is None or not self._admits(evse, evse.token, evse.token_parent):
            return
        reservation = evse.reservation
        evse.tx = Transaction(
            evse.next_tx_id or str(uuid.uuid4()),
            evse.id,
            evse.token,
            now,
            evse.reading.energy_wh,
            last_sample_at=now,
            reservation_id=reservation.id if reservation else None,
            parent=evse.token_parent,
            unidentified=self.auth_mode == "free" and evse.token == self.free_id,
        )
        evse.token_expires = None
        evse.next_tx_id = None
        if reservation is not None:
            evse.reservation = None
            self._actions.append(ReservationEnded(reservation.id, evse.id, ReservationEnd.USED))
        self._actions.append(TransactionStarted(evse.tx))

    def _update_limits(self, now: datetime) -> None:
        """Every EVSE's effective limit at ``now``."""
        loads = self.loads()
        for evse in self.evses.values():
            evse.limit_a = effective_limit(self.profiles, evse.id, now, "A", loads).value

    def _running(self) -> list[str | None]:
        return [evse.tx.id if evse.tx else None for evse in self.evses.values()]

    def _stop(self, now: datetime, evse: EvseState, reason: StopReason, id_tag: str | None = None) -> None:
        if evse.tx is None:
            return
        evse.stopping = Stopping(evse.tx, reason, now, now + FINAL_READING_WAIT, id_tag)
        evse.tx = None
        if evse.view is None or Fault.METER not in evse.view.faults:
            self._actions.append(MeterReadWanted(evse.id))

    def _finish_stop(self, evse: EvseState) -> None:
        stopping = evse.stopping
        if stopping is None:
            return
        tx = stopping.tx
        meter_stop = max(evse.reading.energy_wh, tx.meter_start_wh) if evse.reading else tx.meter_start_wh
        self._actions.append(
            TransactionStopped(tx.id, evse.id, stopping.at, meter_stop, stopping.reason, stopping.id_tag)
        )
        evse.stopping = None

    def _sample(self, now: datetime, evse: EvseState) -> None:
        tx = evse.tx
        if tx is None or evse.reading is None or tx.last_sample_at is None or not self.sample_interval:
            return
        if now - tx.last_sample_at >= self.sample_interval:
            tx.last_sample_at = now
            self._actions.append(MeterSampled(tx.id, now, evse.reading, evse.id))

    @staticmethod
    def _capped(evse: EvseState) -> bool:
        """The transaction's id tag was refused and its energy allowance is used up."""
        tx = evse.tx
        if tx is None or tx.energy_cap_wh is None:
            return False
        return evse.reading is None or evse.reading.energy_wh >= tx.energy_cap_wh

    def _update_permit(self, evse: EvseState) -> None:
        authorized = evse.tx is not None and evse.tx.persisted and not self._capped(evse)
        permit = (authorized, evse.limit_a if authorized else 0.0)
        if permit != evse.permit:
            evse.permit = permit
            self._actions.append(Permit(evse.id, *permit))

    def _awaits_token(self, now: datetime, evse: EvseState) -> bool:
        """A token presented before any EV was plugged in could start on this EVSE."""
        pending = self.pending_token
        return (
            pending is not None
            and now < pending[1]
            and self.preparing_for_token
            and evse.idle()
            and evse.available
            and not evse.ev_present
            and self._admits(evse, pending[0], self.pending_parent)
        )

    def _update_status(self, now: datetime, evse: EvseState) -> None:
        status, fault, info = self.connector_status(evse, self._awaits_token(now, evse))
        if (status, fault) != evse.status:
            evse.status = (status, fault)
            self._actions.append(StatusChanged(evse.id, status, fault, info))

    @staticmethod
    def connector_status(
        evse: EvseState, awaiting_token: bool = False
    ) -> tuple[ConnectorStatus, Fault | None, str]:
        """(status, the fault that makes it Faulted, info); ``awaiting_token``: a token
        presented with no EV waits for one (Preparing, 1.6 section 4.9)."""
        view = evse.view
        assert view is not None
        for fault in FAULT_PRIORITY:
            if fault in view.faults:
                return ConnectorStatus.FAULTED, fault, fault.value
        if view.cp is CpState.E:
            return ConnectorStatus.FAULTED, None, "pilot shorted (state E)"
        if evse.tx is None and not evse.available:
            # A scheduled ChangeAvailability: straight from the session's status to Unavailable,
            # also while the ended transaction waits for its final reading (no Available between).
            return ConnectorStatus.UNAVAILABLE, None, ""
        if not evse.transacting:
            if evse.reservation is not None and evse.token is None:
                return ConnectorStatus.RESERVED, None, ""
            if (evse.token is not None or awaiting_token) and not evse.finishing:
                return ConnectorStatus.PREPARING, None, ""
        if not evse.ev_present:
            return ConnectorStatus.AVAILABLE, None, ""
        if evse.tx is None:
            return (ConnectorStatus.FINISHING if evse.finishing else ConnectorStatus.PREPARING), None, ""
        if not evse.tx.persisted:
            return ConnectorStatus.PREPARING, None, ""  # not started until its record is written
        if Station._capped(evse):
            return ConnectorStatus.SUSPENDED_EVSE, None, ""  # the CSMS refused the id tag
        if view.contactor_closed and view.cp in (CpState.C, CpState.D):
            return ConnectorStatus.CHARGING, None, ""
        if view.pilot is not PilotMode.PWM:
            if not evse.tx.offered and evse.limit_a > 0:
                return ConnectorStatus.PREPARING, None, ""  # not suspended: the first PWM is on its way
            return ConnectorStatus.SUSPENDED_EVSE, None, ""
        return ConnectorStatus.SUSPENDED_EV, None, ""

    def _drain(self) -> list[Action]:
        actions, self._actions = self._actions, []
        return actions
