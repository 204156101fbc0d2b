"""What the CSMS asks of the station directly: remote start and stop, unlocking a
connector, availability and reservations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from controller.core import schedule
from controller.core import station as station_model
from controller.core.model import AvailabilityChange, ReservationResult, StopReason, UnlockResult
from controller.core.station import Action, Reservation, Station
from controller.io.records import Records
from controller.runtime.charging import SmartCharging
from controller.runtime.safety_side import ChannelPort
from controller.runtime.transaction_ids import TransactionIds
from controller.safety.supervisor import LOCK_TIMEOUT_S, PWM_OFF_OPEN_S, Fault

log = logging.getLogger(__name__)

UNLOCK_POLL_S = 0.02  # how often UnlockConnector looks at the lock's state


class RemoteControl:
    def __init__(
        self,
        station: Station,
        now: Callable[[], datetime],
        apply: Callable[[list[Action]], None],
        records: Records,
        tx_ids: TransactionIds,
        charging: SmartCharging,
        channels: Mapping[int, ChannelPort],
    ) -> None:
        self.station = station
        self.now = now
        self.apply = apply
        self.records = records
        self.tx_ids = tx_ids
        self.charging = charging
        self.channels = channels

    # -- remote start and stop ---------------------------------------------------------

    def can_remote_start(self, connector: int | None, token: str) -> bool:
        """Whether a remote start could go ahead once ``token`` is authorized."""
        return self.station.remote_start_target(connector, token, parent_unknown=True) is not None

    def remote_start(
        self, connector: int | None, token: str, parent: str | None, profile: schedule.Profile | None
    ) -> bool:
        evse_id = self.station.remote_start(self.now(), connector, token, parent)
        if evse_id is not None and profile is not None:
            # Installed when this token's transaction starts there (maybe at once, below).
            self.charging.remote_start_profile(evse_id, token, profile)
        self.apply(self.station.drain())
        log.info(
            "remote start for %s on %s: %s",
            token,
            connector or "any EVSE",
            "rejected" if evse_id is None else f"accepted on EVSE {evse_id}",
        )
        return evse_id is not None

    async def remote_stop(self, csms_id: str) -> bool:
        tx_id = await self.tx_ids.local(csms_id)
        if tx_id is None:
            return False
        return self.stop_transaction(tx_id, StopReason.REMOTE)

    def stop_transaction(self, tx_id: str, reason: StopReason) -> bool:
        """End a transaction by command (remote stop, unlock) and carry out what follows."""
        ok = self.station.stop_transaction(self.now(), tx_id, reason)
        self.apply(self.station.drain())
        return ok

    # -- the connector lock --------------------------------------------------------------

    async def unlock(self, evse_id: int) -> UnlockResult:
        """UnlockConnector: a transaction on the EVSE ends first, and the answer is the
        lock's own feedback."""
        if not self.channels[evse_id].lock_fitted:
            return UnlockResult.NO_LOCK
        tx = self.station.evses[evse_id].tx
        if tx is not None:
            self.stop_transaction(tx.id, StopReason.UNLOCK_COMMAND)
        released = await release_lock(self.channels[evse_id], evse_id)
        return UnlockResult.UNLOCKED if released else UnlockResult.FAILED

    # -- availability ----------------------------------------------------------------------

    def set_availability(
        self,
        evse_id: int,
        operative: bool,
        levels: tuple[str, ...] = (station_model.EVSE,),
    ) -> AvailabilityChange:
        """ChangeAvailability of ``levels`` on one EVSE or, with 0, every EVSE; persisted (G03.FR.08)."""
        status = self.station.set_available(self.now(), evse_id, operative, levels)
        targets = list(self.station.evses) if evse_id == 0 else [evse_id]
        for target in targets:
            value = station_model.availability_setting(self.station.evses[target].inoperative)
            self.records.save_setting(f"availability.{target}", value)
        self.apply(self.station.drain())
        return status

    # -- reservations ------------------------------------------------------------------------

    async def reserve(self, reservation: Reservation) -> ReservationResult:
        if reservation.evse_id == 0:
            # Connector 0: the station keeps one EVSE for the holder; it picks the first free one.
            free = [
                e.id for e in self.station.evses.values() if e.idle() and e.available and not e.reservation
            ]
            if not free:
                return ReservationResult.OCCUPIED
            reservation = Reservation(
                reservation.id, free[0], reservation.id_tag, reservation.expiry, reservation.parent
            )
        status = self.station.reserve(self.now(), reservation)
        self.apply(self.station.drain())
        if status is ReservationResult.ACCEPTED:
            self.records.save_reservation(reservation)
        return status

    async def cancel_reservation(self, reservation_id: int) -> bool:
        ok = self.station.cancel_reservation(self.now(), reservation_id)
        self.apply(self.station.drain())
        return ok

    def forget_reservation(self, reservation_id: int) -> None:
        self.records.delete_reservation(reservation_id)


async def release_lock(channel: ChannelPort, evse_id: int) -> bool:
    """Ask the supervisor to release the connector lock; true once the lock reports it.

    Only the control loop commands the lock: the request goes to its channel, and the
    supervisor releases the lock once nothing is live (an EV that goes on drawing after
    its transaction ended keeps the contactor closed up to PWM_OFF_OPEN_S). False when
    the contacts are welded, or the lock still reports engaged LOCK_TIMEOUT_S after
    the release was commanded (jammed). Requests may overlap (a CSMS that retries after
    its own timeout): the request stays raised until the last of them has its answer."""
    clock = asyncio.get_running_loop().time
    channel.unlock_waiters += 1
    try:
        first = channel.ticks + 1  # a tick in progress may have missed the request
        deadline = clock() + PWM_OFF_OPEN_S + LOCK_TIMEOUT_S + 1.0
        released_at: float | None = None
        while clock() < deadline:
            await asyncio.sleep(UNLOCK_POLL_S)
            if channel.ticks <= first:
                continue
            locked, engaged = channel.lock_state
            if not locked and not engaged:
                log.info("EVSE %d: connector unlocked", evse_id, extra={"evse_id": evse_id})
                return True
            view = channel.view
            if view is not None and Fault.CONTACTOR_WELD in view.faults:
                break
            if not locked:
                if released_at is None:
                    released_at = clock()
                if clock() - released_at > LOCK_TIMEOUT_S:
                    break
        log.warning("EVSE %d: the connector lock did not release", evse_id, extra={"evse_id": evse_id})
        return False
    finally:
        channel.unlock_waiters -= 1
