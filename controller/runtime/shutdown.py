"""The stop, within the 2 s budget: contactors open first, then the records are flushed,
the CSMS gets what was queued, and every task and driver is closed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from controller.io.logs import FrameLog
from controller.io.storage import StorageError
from controller.ocpp.host import OcppSide
from controller.runtime.safety_side import SafetySide
from controller.runtime.services import StationServices

log = logging.getLogger(__name__)

# The 2 s stop budget: control threads 0.5 s at most, a final meter reading 0.2 s,
# flushing records 0.8 s; then a database call still waiting is interrupted.
SHUTDOWN_FLUSH_S = 0.8
DRIVER_CLOSE_S = 0.3
TASK_CANCEL_S = 0.5
OUTBOX_DRAIN_S = 0.5  # with the flush and the link close, SIGTERM still exits within 2 s


async def shut_down(
    safety: SafetySide,
    services: StationServices,
    client: OcppSide | None,
    frames: FrameLog | None,
    tasks: list[asyncio.Task[Any]],
) -> None:
    hardware, lifecycle = services.hardware, services.lifecycle
    # Safety first: every control loop opens its contactors and stops the PWM (all at
    # once, against one deadline); the meters still answer for the final reading.
    await safety.make_safe()
    await services.meters.read_at_stop()
    services.apply(services.station.shutdown(services.clock.now(), lifecycle.shutdown_reason))
    if any(t.get_name() == "writes" for t in tasks):
        try:
            await asyncio.wait_for(hardware.writes.flush(), SHUTDOWN_FLUSH_S)
        except TimeoutError:
            log.error(
                "%d record(s) could not be written before exit (storage failing); "
                "open transactions will be ended as PowerLoss at the next start",
                hardware.writes.pending(),
            )
            hardware.database.storage.interrupt()  # a call waiting on a lock gives up now
    if client is not None:
        with contextlib.suppress(Exception):
            # The transaction ends just queued reach the CSMS now rather than after the restart.
            await client.drain(OUTBOX_DRAIN_S)
        with contextlib.suppress(Exception):
            await client.close()
    pending = [*tasks, *services.background.tasks]
    for task in pending:
        task.cancel()
    if pending:
        # A driver call that swallows cancellation (a Modbus client busy reconnecting)
        # must not hold up the exit: the contactors are already open.
        await asyncio.wait(pending, timeout=TASK_CANCEL_S)
    if frames is not None:
        frames.close()
    # A driver that hangs while closing (a serial port, a meter's socket) must not
    # keep the service from exiting: the contactors are already open.
    closes = [meter.close() for meter in hardware.meters.values()]
    if hardware.rfid is not None:
        closes.append(hardware.rfid.close())
    with contextlib.suppress(Exception):  # all at once: hung drivers cost DRIVER_CLOSE_S once
        await asyncio.wait_for(asyncio.gather(*closes, return_exceptions=True), DRIVER_CLOSE_S)
    await safety.close()
    if lifecycle.restart is not None:
        for key, value in lifecycle.restart_settings.items():
            try:
                await asyncio.wait_for(hardware.records.set_setting(key, value), SHUTDOWN_FLUSH_S)
            except (StorageError, TimeoutError) as exc:
                log.error("setting %s not stored before the restart: %s", key, exc)
    hardware.database.close()
