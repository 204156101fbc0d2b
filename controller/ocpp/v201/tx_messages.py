"""OCPP 2.0.1 transactions (E) and remote control (F) in messages: the TransactionEvents
``transactions`` derives from the station, their delivery, and the CSMS's requests."""

from __future__ import annotations

import functools
import logging
from typing import Any

from controller.core import authorization as auth
from controller.core import schedule
from controller.core.station import (
    Action,
    ConnectorStatus,
    EvseState,
    MeterSampled,
    ReservationEnd,
    ReservationEnded,
    StopReason,
    TransactionStopped,
)
from controller.io.link import Reply
from controller.io.storage import OutboxEntry
from controller.ocpp.adapter import Retries
from controller.ocpp.bodies import sample_body
from controller.ocpp.fields import tx_profile
from controller.ocpp.v201 import transactions as tx201
from controller.ocpp.v201.base import Base201
from controller.ocpp.v201.words import CHARGING_STATES
from controller.safety.pilot import CpState

log = logging.getLogger(__name__)


class TransactionMessages(Base201):
    """TransactionEvent, MeterValues, RequestStart/StopTransaction, GetTransactionStatus, recovery."""

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
                case ReservationEnded(reservation_id, _, ReservationEnd.EXPIRED):
                    host.spawn(self._reservation_update(reservation_id, "Expired"))
                case ReservationEnded(reservation_id, evse_id, ReservationEnd.REMOVED):
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
        status = state.status[0] if state.status else ConnectorStatus.AVAILABLE
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

    async def recover(self) -> None:
        """End, as PowerLoss, the 2.0.1 transactions a crash or power cut left open.

        Called once the meters have been read: the meter knows the energy delivered
        after the last event was written. A station transaction whose Started event never
        reached the database (a crash right after the contactor closed) is reported too,
        Started and Ended at once.
        """
        records = self.host.records
        now = self.host.now()
        self.tx = tx201.Transactions(settings=self.tx.settings)  # nothing is open any more
        unreported = await records.transactions(False, 1000, True)
        interrupted = await records.open_tx_events()
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

    def _retries(self) -> Retries:
        return Retries(
            self._number("OCPPCommCtrlr", "MessageAttempts", variable_instance="TransactionEvent"),
            self._number("OCPPCommCtrlr", "MessageAttemptInterval", variable_instance="TransactionEvent"),
        )

    async def _deliver(self, entry: OutboxEntry) -> bool:
        payload = entry.body
        reply = await self._call_entry(entry, "TransactionEvent", payload, self._retries)
        if reply is None:
            return False
        if not isinstance(reply, dict):
            log.error("TransactionEvent for %s dropped after its attempts: %s", entry.transaction_id, reply)
            await self.host.records.outbox_delivered(entry.id, entry.transaction_id)
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

    async def _get_transaction_status(self, p: dict[str, Any]) -> Reply:
        entries = await self.host.records.outbox(1000)
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

    async def _request_stop(self, p: dict[str, Any]) -> Reply:
        current = self.tx.by_id(p["transactionId"])
        if current is None or self.registration == "Pending":  # B02.FR.05
            return Reply({"status": "Rejected"})
        station, now = self.host.station, self.host.now()
        state = station.evses[current.evse_id]
        if state.tx is not None:
            self.host.stop_transaction(state.tx.id, StopReason.REMOTE)
        else:
            # No energy allowed yet (TxStartPoint EVConnected): nothing to stop but the transaction.
            station.withdraw_token(current.evse_id)
            for event in self.tx.end(now, current.evse_id, StopReason.REMOTE, not self.online):
                self._queue(event)
        return Reply({"status": "Accepted"})
