"""Meter polling: each EVSE's meter read every second (at once when the station asks),
a meter fault after repeated failures, clock-aligned values, and the readings taken at
start and at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from functools import partial

from controller.aio import wait_event
from controller.core.station import Action, MeterSampled, Station
from controller.io.database import WriteQueue
from controller.io.storage import Storage
from controller.ocpp.v16 import outbox
from controller.runtime.ocpp_ref import OcppRef
from controller.runtime.safety_side import ChannelPort
from drivers.base import DriverError, MeterDriver, MeterReading

log = logging.getLogger(__name__)

METER_INTERVAL_S = 1.0
METER_TIMEOUT_S = 2.0
METER_FAILURES_FOR_FAULT = 3
FINAL_READING_TIMEOUT_S = 0.2


def finite(reading: MeterReading) -> bool:
    values = (reading.energy_wh, reading.power_w, *reading.current_a, *reading.voltage_v)
    return all(math.isfinite(v) for v in values)


class Meters:
    def __init__(
        self,
        meters: dict[int, MeterDriver],
        station: Station,
        channels: Mapping[int, ChannelPort],
        read_now: dict[int, asyncio.Event],
        now: Callable[[], datetime],
        apply: Callable[[list[Action]], None],
    ) -> None:
        self.meters = meters
        self.station = station
        self.channels = channels
        self.read_now = read_now
        self.now = now
        self.apply = apply

    async def poll(self, evse_id: int) -> None:
        meter, channel = self.meters[evse_id], self.channels[evse_id]
        failures = 0
        while True:
            try:
                reading = await asyncio.wait_for(meter.read(), METER_TIMEOUT_S)
                if not finite(reading):
                    raise DriverError(f"meter returned non-finite values: {reading}")
            except (DriverError, TimeoutError, OSError) as exc:
                failures += 1
                if failures == METER_FAILURES_FOR_FAULT:
                    log.error(
                        "EVSE %d: meter not answering (%d tries): %s",
                        evse_id,
                        failures,
                        exc or "timeout",
                        extra={"evse_id": evse_id},
                    )
                    channel.meter = (False, None)
            else:
                if failures >= METER_FAILURES_FOR_FAULT:
                    log.warning("EVSE %d: meter answering again", evse_id, extra={"evse_id": evse_id})
                failures = 0
                channel.meter = (True, max(reading.current_a, default=0.0))
                self.apply(self.station.meter_read(self.now(), evse_id, reading))
            await wait_event(self.read_now[evse_id], METER_INTERVAL_S)
            self.read_now[evse_id].clear()

    async def read_at_start(self) -> None:
        """One reading per EVSE before anything else: the energy a power cut left."""
        for evse_id, meter in self.meters.items():
            with contextlib.suppress(DriverError, TimeoutError, OSError):
                reading = await asyncio.wait_for(meter.read(), METER_TIMEOUT_S)
                if finite(reading):
                    self.apply(self.station.meter_read(self.now(), evse_id, reading))

    async def read_at_stop(self) -> None:
        """One meter reading per EVSE after the contactors opened, for meterStop."""

        async def read(evse_id: int, meter: MeterDriver) -> None:
            task = asyncio.ensure_future(meter.read())
            # Not wait_for: it waits for a cancelled read to finish, and a driver busy
            # reconnecting may take seconds to notice.
            done, _ = await asyncio.wait({task}, timeout=FINAL_READING_TIMEOUT_S)
            if task not in done:
                task.cancel()
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
                return
            with contextlib.suppress(DriverError, TimeoutError, OSError):
                self.apply(self.station.meter_read(self.now(), evse_id, task.result()))

        await asyncio.gather(*(read(i, m) for i, m in self.meters.items()))


class AlignedValues:
    """Clock-aligned meter values (ClockAlignedDataInterval), in or out of a transaction."""

    def __init__(
        self,
        station: Station,
        now: Callable[[], datetime],
        writes: WriteQueue,
        ocpp: OcppRef,
        spawn: Callable[[Coroutine[object, object, None]], asyncio.Task[None]],
    ) -> None:
        self.station = station
        self.now = now
        self.writes = writes
        self.ocpp = ocpp
        self.spawn = spawn
        self.interval_s = 0  # set by the adapter's keys; 0: none

    async def run(self) -> None:
        client = self.ocpp.client
        assert client is not None
        while True:
            interval = self.interval_s
            if interval <= 0:
                await asyncio.sleep(1.0)
                continue
            now = self.now().timestamp()
            await asyncio.sleep(interval - now % interval)
            at = self.now()
            for evse_id, state in self.station.evses.items():
                tx = state.tx
                if tx is not None and tx.persisted and state.reading is not None:
                    body = None
                    if self.ocpp.queues_records:
                        body = outbox.sample_body(evse_id, at, "Sample.Clock", state.reading)
                    self.writes.put(
                        partial(
                            Storage.add_meter_sample,
                            tx_id=tx.id,
                            taken_at=at,
                            context="Sample.Clock",
                            reading=state.reading,
                            outbox=body,
                        ),
                        then=self.ocpp.outbox_changed,
                    )
                    client.station_changed([MeterSampled(tx.id, at, state.reading, evse_id, "Sample.Clock")])
                else:
                    self.spawn(client.meter_values_now(evse_id, "Sample.Clock"))
