"""Supervision under systemd: the watchdog is pinged only while the safety side keeps the
station safe (its control loops tick) and every task runs. A failed safety side (a
stalled loop, the safety process gone) or a dead task gets every EVSE reported Faulted
and the service restarted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from controller.io.notify import Notifier
from controller.runtime.lifecycle import Lifecycle
from controller.runtime.safety_side import SafetySide

log = logging.getLogger(__name__)

SUPERVISE_INTERVAL_S = 0.25
REPORT_FAULT_S = 1.0  # after the safety side failed: time for the Faulted status to reach the CSMS


class Supervision:
    def __init__(
        self,
        safety: SafetySide,
        tasks: list[asyncio.Task[Any]],
        lifecycle: Lifecycle,
        notifier: Notifier,
        status_line: Callable[[], str],
    ) -> None:
        self.safety = safety
        self.tasks = tasks  # the daemon's long-running tasks: none may end
        self.lifecycle = lifecycle
        self.notifier = notifier
        self.status_line = status_line

    async def run(self) -> None:
        watchdog = self.notifier.watchdog_s
        last_ping, last_status = float("-inf"), ""
        while True:
            await asyncio.sleep(SUPERVISE_INTERVAL_S)
            if self.lifecycle.stopping.is_set():
                return  # shutdown stops the loops itself
            now = time.monotonic()
            failure = self.safety.failure()
            if failure is not None:
                await self._safety_failed(failure)
                return
            dead = [t for t in self.tasks if t.done()]
            if dead:
                self._task_died(dead)
                return
            if watchdog and now - last_ping >= watchdog / 4:
                self.notifier.send(WATCHDOG="1")
                last_ping = now
            line = self.status_line()
            if line != last_status:
                self.notifier.send(STATUS=line)
                last_status = line

    async def _safety_failed(self, failure: str) -> None:
        # Every EVSE is Faulted by now (the safety side said so); the watchdog pings stop.
        log.critical("%s; exiting for a restart", failure)
        await asyncio.sleep(REPORT_FAULT_S)
        self.lifecycle.fail(f"FAULT: {failure}; restarting")

    def _task_died(self, dead: list[asyncio.Task[Any]]) -> None:
        for task in dead:
            error = None if task.cancelled() else task.exception()
            log.critical(
                "task %s ended unexpectedly: %r; exiting for a restart",
                task.get_name(),
                error,
                exc_info=error,
            )
        self.lifecycle.fail(f"FAULT: {dead[0].get_name()} ended; restarting")
