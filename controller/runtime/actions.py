"""Carry out what the station model decides: records, permits to the control loop, meter
reads, the log, and what the OCPP side hears of it."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from functools import partial
from typing import Protocol

from controller.core.station import (
    Action,
    AuthorizeWanted,
    ConnectorStatus,
    MeterReadWanted,
    MeterSampled,
    Permit,
    ReservationEnded,
    Station,
    StatusChanged,
    TokenRejected,
    TransactionStarted,
    TransactionStopped,
)
from controller.io.database import WriteQueue
from controller.io.storage import Storage
from controller.ocpp.v16 import outbox, words
from controller.runtime.ocpp_ref import OcppRef
from controller.runtime.safety_side import ChannelPort

log = logging.getLogger(__name__)


class ActionHooks(Protocol):
    """The services an action hands on to."""

    def transaction_started(self, evse_id: int, tx_id: str, token: str) -> None: ...
    def transaction_ended(self, tx_id: str) -> None: ...
    def authorize_presented(self, token: str) -> Coroutine[object, object, None]: ...
    def forget_reservation(self, reservation_id: int) -> None: ...
    def spawn(self, work: Coroutine[object, object, None]) -> asyncio.Task[None]: ...


class ActionRunner:
    def __init__(
        self,
        station: Station,
        now: Callable[[], datetime],
        writes: WriteQueue,
        channels: Mapping[int, ChannelPort],
        read_now: dict[int, asyncio.Event],
        ocpp: OcppRef,
        hooks: ActionHooks,
    ) -> None:
        self.station = station
        self.now = now
        self.writes = writes
        self.channels = channels
        self.read_now = read_now
        self.ocpp = ocpp
        self.hooks = hooks
        self._limits: dict[int, float] = {}  # the charging limit last logged per EVSE

    def apply(self, actions: list[Action]) -> None:
        queues = self.ocpp.queues_records
        client = self.ocpp.client
        for action in actions:
            match action:
                case TransactionStarted(tx):
                    log.info(
                        "EVSE %d: transaction %s started for %s at %.1f Wh",
                        tx.evse_id,
                        tx.id,
                        tx.id_tag,
                        tx.meter_start_wh,
                        extra={"evse_id": tx.evse_id, "transaction_id": tx.id},
                    )
                    self.writes.put(
                        partial(
                            Storage.start_transaction,
                            tx_id=tx.id,
                            evse_id=tx.evse_id,
                            id_tag=tx.id_tag,
                            started_at=tx.started_at,
                            meter_start_wh=tx.meter_start_wh,
                            outbox=outbox.start_body(tx) if queues else None,
                        ),
                        then=partial(self._persisted, tx.id),
                    )
                    if client is not None:
                        self.hooks.transaction_started(tx.evse_id, tx.id, tx.id_tag)
                case TransactionStopped(tx_id, evse_id, stopped_at, meter_stop, reason, id_tag):
                    log.info(
                        "EVSE %d: transaction %s stopped (%s) at %.1f Wh",
                        evse_id,
                        tx_id,
                        words.STOP_REASONS[reason],
                        meter_stop,
                        extra={"evse_id": evse_id, "transaction_id": tx_id},
                    )
                    body = (
                        outbox.stop_body(evse_id, stopped_at, meter_stop, reason, id_tag) if queues else None
                    )
                    self.writes.put(
                        partial(
                            Storage.stop_transaction,
                            tx_id=tx_id,
                            stopped_at=stopped_at,
                            meter_stop_wh=meter_stop,
                            reason=reason,
                            outbox=body,
                        ),
                        then=self.ocpp.outbox_changed,
                    )
                    if client is not None:
                        self.hooks.transaction_ended(tx_id)
                case MeterSampled(tx_id, taken_at, reading, evse_id):
                    self.writes.put(
                        partial(
                            Storage.add_meter_sample,
                            tx_id=tx_id,
                            taken_at=taken_at,
                            context="Sample.Periodic",
                            reading=reading,
                            outbox=(
                                outbox.sample_body(evse_id, taken_at, "Sample.Periodic", reading)
                                if queues
                                else None
                            ),
                        ),
                        then=self.ocpp.outbox_changed,
                    )
                case MeterReadWanted(evse_id):
                    self.read_now[evse_id].set()
                case Permit(evse_id, authorized, limit_a):
                    self.channels[evse_id].permit = (authorized, limit_a)
                case StatusChanged(evse_id, status, fault, info):
                    # The journal speaks the 1.6 words, whatever the version spoken.
                    level = logging.WARNING if status is ConnectorStatus.FAULTED else logging.INFO
                    word, code = words.status_words((status, fault))
                    detail = f" ({code}: {info})" if code != words.NO_ERROR else ""
                    log.log(level, "EVSE %d: %s%s", evse_id, word, detail, extra={"evse_id": evse_id})
                    if client is not None:
                        client.status_changed()
                case TokenRejected(token, reason):
                    log.warning("token %s rejected: %s", token, reason)
                case AuthorizeWanted(token):
                    self.hooks.spawn(self.hooks.authorize_presented(token))
                case ReservationEnded(reservation_id, evse_id, reason):
                    log.info(
                        "EVSE %d: reservation %d ended (%s)",
                        evse_id,
                        reservation_id,
                        reason.value.capitalize(),
                    )
                    self.hooks.forget_reservation(reservation_id)
        if actions and client is not None:
            client.station_changed(actions)
        self._log_limits()

    def _log_limits(self) -> None:
        # The core recomputes limits at every evaluation (a tick, a pilot change, a profile
        # edge): say each change once, whichever call made it.
        for evse_id, state in self.station.evses.items():
            if self._limits.get(evse_id, math.inf) != state.limit_a:
                log.info("EVSE %d: charging limit %.1f A", evse_id, state.limit_a, extra={"evse_id": evse_id})
            self._limits[evse_id] = state.limit_a

    def _persisted(self, tx_id: str) -> None:
        self.apply(self.station.transaction_persisted(self.now(), tx_id))
        self.ocpp.outbox_changed()
