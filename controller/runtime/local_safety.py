"""The safety side in this process: control threads, their drivers, the simulated world
and the rig socket on the event loop. ``evse run`` puts all of that in the safety
process (``SafetyLink``); this is for the in-process test bench, which ticks the same
channels on a virtual clock."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping

from controller.config import Config
from controller.io.rig import Rig, RigError, serve
from controller.runtime.safety_side import ChannelPort, Publish
from controller.runtime.startup import StartupError
from controller.runtime.status import StatusReport
from controller.safety.control import ControlLoop, EvseChannel, abandon_stalled, stop_all
from controller.safety.process import make_channel, sim_reader
from controller.safety.view import EvseView
from drivers.base import DriverError, MeterDriver, RfidDriver
from drivers.registry import build_safety, make_bench
from drivers.sim import SimBench, SimMeter, SimRfid


class LocalSafety:
    def __init__(self, config: Config) -> None:
        self.config = config
        try:
            self.bench: SimBench | None = make_bench(config)
            drivers = {e.id: build_safety(e, self.bench) for e in config.evses}
        except DriverError as exc:
            raise StartupError(str(exc)) from exc
        self._channels = {e.id: make_channel(e, drivers[e.id]) for e in config.evses}
        self.loops: list[ControlLoop] = []
        self.server: asyncio.AbstractServer | None = None

    @property
    def channels(self) -> Mapping[int, ChannelPort]:
        return self._channels

    @property
    def local_channels(self) -> Mapping[int, EvseChannel]:
        return self._channels

    def sim_meter(self, evse_id: int) -> MeterDriver:
        assert self.bench is not None
        return SimMeter(self.bench.evses[evse_id], self.bench)

    def sim_rfid(self) -> RfidDriver:
        assert self.bench is not None
        return SimRfid(self.bench)

    async def open(self) -> None:
        pass

    async def start(self, publish: Publish, report: StatusReport) -> None:
        loop = asyncio.get_running_loop()

        def published(evse_id: int, view: EvseView) -> None:  # on a control thread
            loop.call_soon_threadsafe(publish, evse_id, view)

        self.loops = [ControlLoop([c], self.config.sample_hz, published) for c in self._channels.values()]
        for control in self.loops:
            control.start()
        path = self.config.sim_socket
        if path is not None:
            rig = Rig(self.bench, report.status, list(self._channels), reader=sim_reader(self.config))
            try:
                self.server = await serve(rig, path)
            except (RigError, OSError) as exc:
                raise StartupError(f"sim.socket: cannot listen on {path}: {exc}") from exc

    def set_logging(self, level: str, modules: Mapping[str, str]) -> None:
        pass  # this process's logging is the safety side's

    def push_status(self) -> None:
        pass  # the rig asks this process

    def failure(self) -> str | None:
        names = abandon_stalled(self.loops, time.monotonic())
        return None if names is None else f"control loop {names} stalled"

    async def make_safe(self) -> None:
        stop_all(self.loops)
        if not self.loops:  # never started: the drivers are still to be left safe
            for channel in self._channels.values():
                channel.make_safe()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.bench is not None:
            with contextlib.suppress(OSError):
                self.bench.save()
        if self.config.sim_socket is not None and self.server is not None:
            with contextlib.suppress(OSError):
                self.config.sim_socket.unlink()
