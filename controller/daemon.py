"""The daemon: a thin asyncio shell that wires the station together and runs its tasks.

This is the OCPP process. Pilots, contactors, locks and the simulated world with its rig
socket live in the safety process (``controller.safety.process``), which ``evse run``
forks first and this process reaches through ``SafetyLink``. Here SQLite runs on its own
thread and everything else (meters, RFID, the station model, OCPP) on the asyncio event
loop. What runs there lives in ``controller.runtime``: this module opens it
(``startup``), starts the tasks, reloads the config on SIGHUP and stops.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controller.config import Config, ConfigError, load
from controller.io import logs
from controller.io.notify import Notifier
from controller.reload import plan as reload_plan
from controller.runtime.lifecycle import Lifecycle
from controller.runtime.recovery import recover
from controller.runtime.safety_side import SafetySide
from controller.runtime.services import Clock, StationServices
from controller.runtime.shutdown import shut_down
from controller.runtime.startup import StartupError as StartupError
from controller.runtime.startup import Stored, load_stored, open_hardware, open_ocpp_files
from controller.runtime.supervision import Supervision
from controller.runtime.tasks import Background

if TYPE_CHECKING:
    from controller.runtime.host import OcppHost
    from controller.safety.spawn import SafetyChild

log = logging.getLogger(__name__)

GIL_SWITCH_INTERVAL_S = 0.001  # default 5 ms; the safety heartbeat thread must get the GIL quickly


def utcnow() -> datetime:
    return datetime.now(UTC)


class Daemon:
    def __init__(
        self,
        config: Config,
        now: Callable[[], datetime] = utcnow,
        version: str = "unknown",
        safety: SafetyChild | None = None,
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> None:
        """``safety``: the safety process ``evse run`` forked; without it (the in-process
        test bench) the control loops run in this process."""
        self.config = config
        self.child = safety
        self.stop_requested = stop_requested  # a SIGTERM or SIGINT before run() took them over
        self.version = version
        self.notifier = Notifier()
        self.lifecycle = Lifecycle(self.notifier)
        self.clock = Clock(now)
        self.background = Background()
        self.tasks: list[asyncio.Task[Any]] = []  # set once every task runs; none may end
        self.safety: SafetySide | None = None
        self.host: OcppHost | None = None  # what the OCPP adapters see, when [ocpp] is set

    @property
    def restart(self) -> str | None:
        """After stopping: "exec" (re-execute in place), "reboot", or None."""
        return self.lifecycle.restart

    @property
    def restart_retries(self) -> int:
        return self.lifecycle.restart_retries

    def open(self) -> StationServices:
        """Storage, drivers, the station model and its services; the OCPP client if configured."""
        config = self.config
        if self.child is not None:
            from controller.runtime.safety_link import SafetyLink

            self.safety = SafetyLink(self.child, config)
        else:
            from controller.runtime.local_safety import LocalSafety

            self.safety = LocalSafety(config)
        hardware = open_hardware(config, self.safety)
        stored = load_stored(hardware, self.clock.now) if config.ocpp is not None else Stored()
        self.services = StationServices(config, hardware, stored, self.clock, self.lifecycle, self.background)
        if config.ocpp is not None:
            from controller.runtime.host import OcppHost  # a standalone station loads no OCPP

            self.host = OcppHost(config, self.version, self.services, open_ocpp_files(config))
        return self.services

    async def run(self) -> int:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.lifecycle.terminate)
        if self.stop_requested():
            self.lifecycle.terminate()
        tasks: list[asyncio.Task[Any]] = []
        services: StationServices | None = None

        def start(work: Coroutine[object, object, None], name: str) -> None:
            tasks.append(asyncio.create_task(work, name=name))

        try:
            services = self.open()
            hardware, config, safety = services.hardware, self.config, self.safety
            assert safety is not None
            await safety.open()
            await recover(services.station, services.meters, hardware.records, services.ocpp, self.clock.now)
            services.events.event("StartupOfTheDevice", f"evse {self.version} started")
            # What start-up built lives as long as the daemon: out of the collector's way. A
            # full collection holds the GIL, and walking the modules alone took 20 ms while
            # the CSMS flooded the station.
            gc.collect()
            gc.freeze()
            await safety.start(services.evse_seen, services.report)
            services.changed = safety.push_status
            if self.host is not None:
                self.host.client.link.before_send = safety.push_status
            start(hardware.writes.run(), "writes")
            for evse_id in hardware.meters:
                start(services.meters.poll(evse_id), f"meter {evse_id}")
            if hardware.rfid is not None:
                start(services.read_tokens(), "rfid")
            start(services.tick(), "tick")
            if self.host is not None:
                start(self.host.client.run(), "ocpp")
                start(services.charging.follow_limits(), "limits")
                services.spawn(self.host.firmware.watch())
                start(services.aligned.run(), "aligned meter values")
            supervision = Supervision(safety, tasks, self.lifecycle, self.notifier, services.report.line)
            start(supervision.run(), "supervise")
            log.info(
                "station %s running: %d EVSE(s), auth mode %s, %s",
                config.station["id"],
                len(hardware.channels),
                config.auth["mode"],
                f"rig socket {config.sim_socket}" if config.sim_socket else "no rig socket",
            )
            self.tasks = tasks
            loop.add_signal_handler(signal.SIGHUP, self.reload)  # a reload before this would say READY
            self.notifier.send(READY="1", STATUS=services.report.line())
            await self.lifecycle.stopping.wait()
        finally:
            if services is not None:
                client = self.host.client if self.host is not None else None
                frames = self.host.frames if self.host is not None else None
                assert self.safety is not None
                await shut_down(self.safety, services, client, frames, tasks)
            elif self.safety is not None:
                await self.safety.make_safe()
                await self.safety.close()
        return self.lifecycle.exit_code

    def reload(self) -> None:
        """SIGHUP: apply what can change live; an invalid file keeps the running config."""
        self.notifier.send(RELOADING="1", MONOTONIC_USEC=str(time.monotonic_ns() // 1000))
        try:
            new = load(self.config.path)
        except ConfigError as exc:
            log.error(
                "reload: %s is invalid; keeping the running config:\n  %s",
                self.config.path,
                "\n  ".join(exc.problems),
            )
        else:
            self.config, live, restart = reload_plan(self.config, new)
            self._apply_config()
            if live:
                log.info("reload: applied %s", ", ".join(live))
            if restart:
                log.warning(
                    "reload: %s changed; takes effect after a restart (systemctl restart evse)",
                    ", ".join(restart),
                )
            if not live and not restart:
                log.info("reload: %s unchanged", self.config.path)
        self.notifier.send(READY="1", STATUS=self.services.report.line())

    def _apply_config(self) -> None:
        config = self.config
        logs.setup(config.logging.get("level", "info"), config.logging.get("modules"))
        if self.safety is not None:
            self.safety.set_logging(config.logging.get("level", "info"), config.logging.get("modules") or {})
        station = self.services.station
        station.auth_mode = config.auth["mode"]
        station.allow = frozenset(config.auth["allow"])
        station.free_id = config.auth["free_id"]
        if self.host is not None:
            self.host.config = config
            self.host.client.apply_keys()  # what the CSMS set (AuthCtrlr.Enabled) stays in force
        for evse in config.evses:
            station.evses[evse.id].max_current_a = evse.max_current_a
            self.services.hardware.channels[
                evse.id
            ].max_current_a = evse.max_current_a  # the control thread takes it
        self.services.apply(station.tick(self.clock.now()))
