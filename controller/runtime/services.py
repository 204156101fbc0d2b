"""The version-neutral services around the station model, wired together.

``StationServices`` builds each service with what it needs and is what the actions hand
on to (``ActionHooks``). It serves standalone stations too; ``controller.runtime.host``
adds what only an [ocpp] station has and faces the adapters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar

from controller.config import Config
from controller.core.station import Action, EvseView
from controller.runtime.actions import ActionRunner
from controller.runtime.authorizer import Authorizer
from controller.runtime.certificates import SecurityEvents
from controller.runtime.charging import SmartCharging
from controller.runtime.lifecycle import Lifecycle
from controller.runtime.meters import AlignedValues, Meters
from controller.runtime.ocpp_ref import OcppRef
from controller.runtime.remote import RemoteControl
from controller.runtime.startup import Hardware, Stored
from controller.runtime.status import StatusReport
from controller.runtime.tasks import Background
from controller.runtime.transaction_ids import TransactionIds

T = TypeVar("T")
TICK_S = 1.0


class Clock:
    """The station's time: the system's, moved to the CSMS's when they differ."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self._clock = now
        self.offset = timedelta(0)  # the CSMS's time minus ours

    def now(self) -> datetime:
        return self._clock() + self.offset


class StationServices:
    def __init__(
        self,
        config: Config,
        hardware: Hardware,
        stored: Stored,
        clock: Clock,
        lifecycle: Lifecycle,
        background: Background,
    ) -> None:
        self.hardware = hardware
        self.station = station = hardware.station
        self.stored = stored
        self.clock = clock
        self.lifecycle = lifecycle
        self.background = background
        # The station state moved: the daemon points this at the rig's status in the safety process.
        self.changed: Callable[[], None] = lambda: None
        now, records, channels = clock.now, hardware.records, hardware.channels
        self.ocpp = OcppRef(config.ocpp is not None)
        self.actions = ActionRunner(
            station, now, hardware.writes, channels, hardware.read_now, self.ocpp, self
        )
        self.events = SecurityEvents(hardware.security_log, now, hardware.writes, self.ocpp)
        self.tx_ids = TransactionIds(station, stored.csms_ids, records)
        self.charging = SmartCharging(station, now, self.apply, records, self.tx_ids)
        self.remote = RemoteControl(station, now, self.apply, records, self.tx_ids, self.charging, channels)
        self.authorizer = Authorizer(
            station,
            stored.local_list,
            stored.auth_cache,
            now,
            self.apply,
            hardware.database,
            hardware.writes,
            self.ocpp,
        )
        meters = hardware.meters
        self.meters = Meters(meters, station, channels, hardware.read_now, now, self.apply)
        self.aligned = AlignedValues(station, now, hardware.writes, self.ocpp, background.spawn)
        self.report = StatusReport(station, channels, self.ocpp, stored.csms_ids, records)
        self._counting: asyncio.Task[None] | None = None

    def apply(self, actions: list[Action]) -> None:
        self.actions.apply(actions)
        self.changed()  # even with no actions: a meter reading moved the energy

    def set_clock(self, delta: timedelta) -> None:
        """Move our notion of now by ``delta`` (the CSMS's time), timers included."""
        self.clock.offset += delta
        self.station.shift(delta)
        self.charging.limits_wake.set()  # the next change of a limit is elsewhere on the new clock

    def status(self, evse_id: int | None) -> dict[str, Any]:
        return self.report.status(evse_id)

    # -- what the actions hand on (ActionHooks) -------------------------------------------

    def transaction_started(self, evse_id: int, tx_id: str, token: str) -> None:
        self.charging.transaction_started(evse_id, tx_id, token)

    def transaction_ended(self, tx_id: str) -> None:
        self.charging.transaction_ended(tx_id)

    def authorize_presented(self, token: str) -> Coroutine[object, object, None]:
        return self.authorizer.authorize_presented(token)

    def forget_reservation(self, reservation_id: int) -> None:
        self.remote.forget_reservation(reservation_id)

    def spawn(self, work: Coroutine[object, object, T]) -> asyncio.Task[T]:
        return self.background.spawn(work)

    # -- event sources ----------------------------------------------------------------------

    def evse_seen(self, evse_id: int, view: EvseView) -> None:
        """What the control loop publishes (on the event loop, from its thread)."""
        if self.lifecycle.stopping.is_set():
            return
        before = self.station.evses[evse_id].view
        self.apply(self.station.evse_seen(self.clock.now(), evse_id, view))
        client = self.ocpp.client
        if client is not None and (before is None or before.contactor_closed != view.contactor_closed):
            client.station_changed([])  # 2.0.1: PowerPathClosed is a transaction point

    async def read_tokens(self) -> None:
        rfid = self.hardware.rfid
        assert rfid is not None
        async for token in rfid.tokens():
            self.authorizer.token_presented(token)

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self.apply(self.station.tick(self.clock.now()))
            client = self.ocpp.client
            if client is not None:
                client.tick()
                if self._counting is None or self._counting.done():  # never wait on SQLite here
                    self._counting = self.spawn(self.report.count_outbox())
