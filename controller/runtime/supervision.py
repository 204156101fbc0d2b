"""Supervision under systemd: the watchdog is pinged only while every control loop ticks
and every task runs; a stalled loop or a dead task gets the station made safe and the
service restarted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from controller.io.notify import Notifier
from controller.runtime.lifecycle import Lifecycle
from controller.safety.control import ControlLoop

log = logging.getLogger(__name__)

STALL_S = 1.0  # a control loop silent this long is stalled: make safe, exit, restart
SUPERVISE_INTERVAL_S = 0.25


class Supervision:
    def __init__(
        self,
        loops: list[ControlLoop],
        tasks: list[asyncio.Task[Any]],
        lifecycle: Lifecycle,
        notifier: Notifier,
        status_line: Callable[[], str],
    ) -> None:
        self.loops = loops
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
            stalled = [c for c in self.loops if not c.is_alive() or now - c.stats.last_tick > STALL_S]
            if stalled:
                self._stalled(stalled)
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

    def _stalled(self, loops: list[ControlLoop]) -> None:
        # The stalled thread cannot open its contactor: do it from here, then exit so
        # systemd restarts the service (Restart=on-failure); the watchdog pings stop.
        for control in loops:
            for channel in control.channels:
                channel.make_safe()
        names = ", ".join(c.name for c in loops)
        log.critical(
            "control loop %s stalled for over %.1f s; contactor opened from the event loop; "
            "exiting for a restart",
            names,
            STALL_S,
        )
        self.lifecycle.fail(f"FAULT: control loop {names} stalled; restarting")

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
