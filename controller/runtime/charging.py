"""Smart charging: the installed charging profiles, and the limit they set on each EVSE."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime

from controller.aio import wait_event
from controller.core import schedule
from controller.core.station import Action, Station
from controller.io.records import Records
from controller.runtime.transaction_ids import TransactionIds

log = logging.getLogger(__name__)


class SmartCharging:
    def __init__(
        self,
        station: Station,
        now: Callable[[], datetime],
        apply: Callable[[list[Action]], None],
        records: Records,
        tx_ids: TransactionIds,
    ) -> None:
        self.station = station
        self.profiles = station.profiles
        self.now = now
        self.apply = apply
        self.records = records
        self.tx_ids = tx_ids
        self.pending_profiles: dict[int, tuple[str, schedule.Profile]] = {}  # remote start: token, TxProfile
        self.limits_wake = asyncio.Event()  # the next change of a charging limit may have moved

    def remote_start_profile(self, evse_id: int, token: str, profile: schedule.Profile) -> None:
        """Installed when this token's transaction starts on the EVSE."""
        self.pending_profiles[evse_id] = (token, profile)

    async def install_profile(self, profile: schedule.Profile) -> str:
        local = None if profile.tx_id is None else await self.tx_ids.local(profile.tx_id)
        active = None  # read after the await: the transaction may have ended meanwhile
        if profile.evse_id:
            tx = self.station.evses[profile.evse_id].tx
            active = tx.id if tx is not None else None
        if profile.tx_id is not None:
            if local is None or local != active:
                return "Rejected"
            profile = dataclasses.replace(profile, tx_id=local)
        status = self.profiles.install(profile, active)
        if status == "Accepted":
            self._save_profiles()
            self.update_limits()
        return status

    async def clear_profiles(
        self,
        profile_id: int | None,
        evse_id: int | None,
        purpose: schedule.Purpose | None,
        stack_level: int | None,
    ) -> int:
        count = self.profiles.clear(profile_id, evse_id, purpose, stack_level)
        if count:
            self._save_profiles()
            self.update_limits()
        return count

    def _save_profiles(self) -> None:
        rows = [(p.id, p.evse_id, schedule.to_ocpp16(p)) for p in self.profiles.all()]
        self.records.replace_charging_profiles(rows)

    def composite(self, evse_id: int, start: datetime, duration_s: int, unit: str) -> list[schedule.Period]:
        """GetCompositeSchedule: the limit the station enforces, from ``start`` on."""
        return self.station.composite(evse_id, start, duration_s, unit)

    def update_limits(self) -> None:
        """Apply the limits in force now; profiles, transactions or the clock changed, so the
        limit timer (``follow_limits``) learns the next change anew."""
        self.apply(self.station.limits_changed(self.now()))  # the actions log changed limits
        self.limits_wake.set()

    async def follow_limits(self) -> None:
        """Apply the charging limits at the instant the profiles change them (the station core
        says when); ``update_limits`` wakes this when that instant may have moved."""
        while True:
            due = self.station.next_limit_change(self.now())
            if due is None:
                await self.limits_wake.wait()
            else:
                await wait_event(self.limits_wake, max(0.0, (due - self.now()).total_seconds()))
            if not self.limits_wake.is_set():
                self.update_limits()  # woken a little early, this changes nothing: sleep the rest
            self.limits_wake.clear()

    def transaction_started(self, evse_id: int, tx_id: str, token: str) -> None:
        pending = self.pending_profiles.pop(evse_id, None)
        if pending is not None and pending[0] == token:
            profile = pending[1]
            status = self.profiles.install(dataclasses.replace(profile, evse_id=evse_id, tx_id=tx_id), tx_id)
            log.info("remote start charging profile %d: %s", profile.id, status)
            if status == "Accepted":
                self._save_profiles()
        self.update_limits()

    def transaction_ended(self, tx_id: str) -> None:
        if self.profiles.transaction_ended(tx_id):
            self._save_profiles()
        self.update_limits()
