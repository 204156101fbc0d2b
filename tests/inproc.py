"""An in-process OCPP bench: the station and the development CSMS on one virtual-clock loop.

What runs is the real station: the daemon's start-up, storage (SQLite in ``tmp_path``), the
station model, the OCPP client, its ``Link`` and the version adapter, the simulated drivers
and each EVSE's real ``EvseChannel`` and supervisor. What is replaced sits at the I/O edges:

- the websocket: ``controller.io.link.connect`` returns one end of an in-memory pipe whose
  other end the development CSMS (``hil.csms.DevCsms``) serves, so every frame still goes
  through the station's OCPP-J codec and schema checks and the CSMS's ``ocpp`` package;
- the control thread: each ``ControlLoop`` becomes a task on the loop that ticks the same
  channels on virtual time (fast while anything is live, slowly at rest, at once when the
  bench moves the EV);
- time: ``tests.virtual_clock`` (sleeps jump; SQLite's thread work stays real), and the
  station's and the CSMS's wall clocks follow it;
- signals: the loop records the handlers instead of installing them (``send_signal``);
- the journal: the station's log lines (INFO and up) are kept in ``Bench.log``.

What it cannot show stays end to end (``tests.ocpp_harness``): TLS, a killed process (power
loss), the re-execution after a reset or a firmware install, real sockets to other servers
(HTTP transfers, a second CSMS) and the rig socket.

A test is an ``async def`` taking the ``Bench``, decorated with ``@station(...)``:

    @station(csms={"heartbeat_interval": 2}, version="2.0.1")
    async def test_heartbeat(b: Bench) -> None:
        await b.wait("Heartbeat")
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import controller.daemon as daemon_module
import controller.io.link as link_module
import controller.runtime.local_safety as local_safety_module
import tests.virtual_clock as virtual_clock
from controller.config import load
from controller.core.station import EvseView
from controller.safety.control import RECHECK_S, EvseChannel
from controller.safety.pilot import CpState
from hil.csms import describe
from hil.station import config_text
from tests.inproc_net import Network, StationEnd, VirtualCsms
from tests.inproc_net import virtual_now as virtual_now  # for the tests: the station's time
from tests.ocpp_helpers import calls_in, iso
from tests.virtual_clock import VirtualClockLoop

TOKEN = "04A1B2C3"
# Real time given to other threads before a jump: SQLite work holds the clock by itself
# (run_in_executor) and no other thread is involved, so none is needed: epoll waits at
# least a millisecond, and a long session makes thousands of jumps.
REAL_GRACE_S = 0.0
STATION_ID = "CP001"
URL = "ws://csms.test/ocpp"
ACTIVE_PERIOD_S = 0.02  # control ticks while a view is changing (the real loop's 50 Hz)
STEADY_PERIOD_S = 0.5  # while every view has stayed the same for STEADY_AFTER_S
STEADY_AFTER_S = 1.0
REST_PERIOD_S = 1.0  # every EVSE at rest (the bench wakes the loop when it moves an EV)


# -- the control loop on virtual time -------------------------------------------------------


class _Stats:
    ticks = 0
    late_ticks = 0
    max_lateness_s = 0.0

    @property
    def last_tick(self) -> float:
        return time.monotonic()  # ticks are on virtual time: supervision never sees a stall


class VirtualControl:
    """``ControlLoop`` as a task: the same channels ticked on the loop's (virtual) clock."""

    made: list[VirtualControl] = []

    def __init__(
        self, channels: list[EvseChannel], sample_hz: int, publish: Callable[[int, EvseView], None]
    ) -> None:
        self.channels, self.publish = channels, publish
        self.name = f"control-{'-'.join(str(c.evse_id) for c in channels)}"
        self.stats = _Stats()
        self.poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        VirtualControl.made.append(self)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    def is_alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def halt(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def stop(self, timeout: float = 0.5) -> None:
        self.halt()
        for channel in self.channels:
            channel.make_safe()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        published: dict[int, EvseView] = {}
        changed_at = loop.time()
        while True:
            now = loop.time()
            for channel in self.channels:
                view = channel.tick(now)
                if published.get(channel.evse_id) != view:
                    published[channel.evse_id] = view
                    changed_at = now
                    self.publish(channel.evse_id, view)
            self.stats.ticks += 1
            if any(c.recheck for c in self.channels):
                delay = RECHECK_S
            elif all(c.at_rest for c in self.channels):
                delay = REST_PERIOD_S
            elif now - changed_at < STEADY_AFTER_S:
                delay = ACTIVE_PERIOD_S
            else:
                delay = STEADY_PERIOD_S
            self.poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.poke.wait(), delay)


class BenchLoop(VirtualClockLoop):
    """The virtual-clock loop; signal handlers are recorded for the test to call."""

    def __init__(self) -> None:
        super().__init__()
        self.signal_handlers: dict[int, Callable[[], object]] = {}

    def add_signal_handler(self, sig: int, callback: Callable[..., object], *args: Any) -> None:
        self.signal_handlers[sig] = lambda: callback(*args)

    def remove_signal_handler(self, sig: int) -> bool:
        return self.signal_handlers.pop(sig, None) is not None


# -- the bench --------------------------------------------------------------------------------


def _parts(daemon: Any) -> SimpleNamespace:
    """The pieces of a running daemon the bench drives (sim bench, status, station model);
    AttributeError until the daemon has opened them."""
    services = daemon.services
    return SimpleNamespace(
        bench=daemon.safety.bench, status=services.status, station=services.hardware.station
    )


class Hands:
    """The EV and the RFID reader, as the rig socket moves them (``hil.simrig.SimRig``)."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench

    def _sim(self, evse: int) -> Any:
        return _parts(self.bench.daemon).bench.evses[evse]

    def _moved(self, evse: int, **ev: Any) -> None:
        self._sim(evse).set_ev(**ev)
        self.bench.wake()

    def plug(self, evse: int = 1) -> None:
        self._moved(evse, plugged=True, requesting=False)

    def charge(self, evse: int = 1, max_current_a: float = 32, phases: int | None = None) -> None:
        sim = self._sim(evse)
        self._moved(
            evse,
            plugged=True,
            requesting=True,
            max_current_a=float(max_current_a),
            phases=phases or sim.phases,
        )

    def suspend(self, evse: int = 1) -> None:
        self._moved(evse, requesting=False)

    def unplug(self, evse: int = 1) -> None:
        self._moved(evse, plugged=False, requesting=False)

    def cp(self, state: str | None, evse: int = 1) -> None:
        self._sim(evse).force_cp(CpState(state) if state else None)
        self.bench.wake()

    def fault(self, kind: str, active: bool = True, evse: int = 1) -> None:
        self._sim(evse).set_fault(kind, active)
        self.bench.wake()

    def swipe(self, token: str) -> None:
        _parts(self.bench.daemon).bench.on_swipe(token)

    def timing(self, evse: int = 1) -> dict[str, Any]:
        sim = self._sim(evse)
        with sim.lock:
            return {
                "cp_state": sim.cp_state().value,
                "lock_engaged": sim.lock_engaged if sim.lock_fitted else None,
            }

    def status(self, evse: int = 1) -> dict[str, Any]:
        status: dict[str, Any] = _parts(self.bench.daemon).status(evse)
        return status

    async def wait_until(
        self, check: Callable[[dict[str, Any]], Any], timeout: float = 5.0, evse: int = 1
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            status = self.status(evse)
            if check(status):
                return status
            if loop.time() > deadline:
                raise AssertionError(f"condition not met within {timeout} s; last status {status}")
            await asyncio.sleep(0.02)


class Journal(logging.Handler):
    """The station's log lines (INFO and up), as ``daemon.log`` holds them end to end."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def read_text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Bench:
    dir: Path
    csms: VirtualCsms
    net: Network
    options: dict[str, Any] = field(default_factory=dict)
    daemon: Any = None
    running: asyncio.Task[int] | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sim = Hands(self)
        self.log = Journal()

    @property
    def config(self) -> Path:
        return self.dir / "evse.toml"

    def write_config(self, **options: Any) -> None:
        self.options = options
        self.config.write_text(config_text(URL, **options))

    # -- the station ---------------------------------------------------------------------

    async def start(self, wait_boot: bool = True) -> None:
        """Start the station (the daemon's ``run``) on the storage of the last one, if any."""
        mark = self.mark()
        loop = asyncio.get_running_loop()
        epoch = self.csms.epoch

        def now() -> datetime:
            return epoch + timedelta(seconds=loop.time())

        config = load(self.config)
        self.daemon = daemon_module.Daemon(config, now=now, version="0.0.0-inproc")
        self.running = asyncio.create_task(self.daemon.run(), name="daemon")
        self.starts += 1
        await self._sim_ready()
        if wait_boot:
            await self.wait("BootNotification", after=mark)
            if self.version == "1.6":
                await self.wait("StatusNotification", lambda p: p["connectorId"] == 1, after=mark)
            else:
                await self.wait("StatusNotification", lambda p: p["evseId"] == 1, after=mark)
            await self.wait(
                "SecurityEventNotification", lambda p: p["type"] == "StartupOfTheDevice", after=mark
            )

    async def _sim_ready(self) -> None:
        for _ in range(1000):
            with contextlib.suppress(AttributeError):
                for sim in _parts(self.daemon).bench.evses.values():
                    if getattr(sim, "_virtual", False):
                        continue
                    loop = asyncio.get_running_loop()
                    sim.integrate()
                    sim.clock = loop.time  # energy follows the virtual clock
                    sim._integrated_at = loop.time()
                    sim._virtual = True
                return
            if self.running is not None and self.running.done():
                self.running.result()
                raise AssertionError("the station stopped while starting")
            await asyncio.sleep(0)
        raise AssertionError("the station did not open its hardware")

    @property
    def version(self) -> str:
        return str(self.options.get("version", "1.6"))

    def send_signal(self, sig: int) -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, BenchLoop)
        loop.signal_handlers[sig]()

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Send ``sig`` (SIGTERM, SIGINT) and wait for the daemon's ``run`` to return its exit code."""
        self.send_signal(sig)
        return await self.exited(timeout)

    async def exited(self, timeout: float = 10) -> int:
        """Wait for the daemon to stop by itself (a reset, a firmware restart); its exit code."""
        assert self.running is not None
        code = await asyncio.wait_for(asyncio.shield(self.running), timeout)
        self.exits.append(code)
        VirtualControl.made.clear()
        return code

    async def restarted(self, timeout: float = 30, wait_boot: bool = True) -> None:
        """After a reset: the daemon stopped and (as ``evse run`` re-executes itself) starts again."""
        await self.exited(timeout)
        assert self.daemon.restart is not None, "the daemon stopped without planning a restart"
        await self.start(wait_boot=wait_boot)

    def wake(self) -> None:
        """The EV moved: the control loops sample now rather than at their next tick."""
        for control in VirtualControl.made:
            control.poke.set()

    # -- the CSMS side -------------------------------------------------------------------

    async def call(
        self, action: str, payload: dict[str, Any], timeout: float = 10, validate: bool = True
    ) -> dict[str, Any]:
        session = await self.csms.wait_station(STATION_ID, timeout)
        return await session.call(action, payload, timeout, validate)

    async def send_raw(self, text: str) -> None:
        session = await self.csms.wait_station(STATION_ID)
        await session.send_raw(text)

    async def wait(
        self,
        action: str,
        where: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 10,
        after: int = 0,
    ) -> dict[str, Any]:
        entry = await self.csms.wait_for(
            action, station=STATION_ID, where=where, timeout=timeout, after=after
        )
        payload: dict[str, Any] = entry.payload  # type: ignore[assignment]
        return payload

    def mark(self) -> int:
        return len(self.csms.timeline)

    def calls(self, action: str) -> list[dict[str, Any]]:
        return self.csms.calls(action, station=STATION_ID)

    def since(
        self, action: str, after: int, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> list[dict[str, Any]]:
        """Payloads of the station's CALLs of ``action`` at timeline index ``after`` or later."""
        return calls_in(self.csms.timeline, action, after, where)

    async def status(
        self, connector: int, status: str, after: int = 0, timeout: float = 10
    ) -> dict[str, Any]:
        return await self.wait(
            "StatusNotification",
            lambda p: p["connectorId"] == connector and p["status"] == status,
            timeout,
            after,
        )

    async def status201(self, evse: int, status: str, after: int = 0, timeout: float = 10) -> dict[str, Any]:
        return await self.wait(
            "StatusNotification",
            lambda p: p["evseId"] == evse and p["connectorStatus"] == status,
            timeout,
            after,
        )

    async def event(
        self,
        event_type: str,
        where: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 10,
        after: int = 0,
    ) -> dict[str, Any]:
        """The next 2.0.1 TransactionEvent of ``event_type`` (Started, Updated, Ended)."""
        return await self.wait(
            "TransactionEvent",
            lambda p: p["eventType"] == event_type and (where is None or where(p)),
            timeout,
            after,
        )

    async def disconnect(self) -> None:
        await self.csms.disconnect(STATION_ID)

    # -- the station side ----------------------------------------------------------------

    def db(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.dir / "var" / "evse.db")) as db:
            return db.execute(sql, params).fetchall()

    async def charge(
        self, evse: int = 1, token: str | None = TOKEN, max_current_a: float = 16
    ) -> dict[str, Any]:
        """Plug in, swipe (unless token is None), charge; returns the StartTransaction payload."""
        mark = self.mark()
        self.sim.plug(evse)
        if token is not None:
            self.sim.swipe(token)
        start = await self.wait("StartTransaction", lambda p: p["connectorId"] == evse, after=mark)
        self.sim.charge(evse, max_current_a=max_current_a)
        await self.sim.wait_until(lambda s: s["contactor_closed"], evse=evse, timeout=10)
        return start

    async def eventually(
        self, check: Callable[[], Any], timeout: float = 10.0, what: str = "condition"
    ) -> Any:
        """Poll ``check`` (a plain or an async function) until it returns something true."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            assert loop.time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    async def quiet_for(self, action: str, after: int, seconds: float) -> None:
        """Assert the station sends no ``action`` for ``seconds``."""
        await asyncio.sleep(seconds)
        assert self.since(action, after) == [], f"unexpected {action}"

    def timeline(self) -> str:
        return "\n".join(f"{e.t:10.3f} {describe(e)}" for e in self.csms.timeline)


Scenario = Callable[[Bench], Awaitable[None]]


def run_bench(
    tmp_path: Path, scenario: Scenario, csms: dict[str, Any] | None = None, start: bool = True, **config: Any
) -> None:
    """Run ``scenario`` against a station (booted unless ``start`` is False) on the virtual clock."""
    networks: list[Network] = []

    async def connect(uri: str, **options: Any) -> StationEnd:
        return await networks[-1].connect(uri, **options)

    async def main() -> None:
        settings = dict(csms or {})
        if config.get("version") == "2.0.1":
            settings.setdefault("versions", ("2.0.1",))  # as the e2e tests' csms201
        server = VirtualCsms(quiet=True, **settings)
        bench = Bench(tmp_path, server, Network(server))
        networks.append(bench.net)
        root = logging.getLogger()
        level = root.level
        root.addHandler(bench.log)
        root.setLevel(min(level, logging.INFO))
        bench.write_config(**config)
        try:
            if start:
                await bench.start()
            await scenario(bench)
        except BaseException:
            print(bench.timeline())
            raise
        finally:
            if bench.running is not None and not bench.running.done():
                with contextlib.suppress(Exception):
                    await bench.stop()
            root.removeHandler(bench.log)
            root.setLevel(level)

    VirtualControl.made.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(local_safety_module, "ControlLoop", VirtualControl)
        patch.setattr(daemon_module, "gc", SimpleNamespace(collect=gc.collect, freeze=lambda: None))
        patch.setattr(daemon_module.sys, "setswitchinterval", lambda _: None)
        patch.setattr(link_module, "connect", connect)
        patch.setattr(virtual_clock, "REAL_GRACE_S", REAL_GRACE_S)
        with asyncio.Runner(loop_factory=BenchLoop) as runner:
            runner.run(main())
    VirtualControl.made.clear()


def station(
    csms: dict[str, Any] | None = None, start: bool = True, **config: Any
) -> Callable[[Callable[..., Awaitable[None]]], Callable[..., None]]:
    """Make ``async def test_x(b: Bench, ...)`` a pytest test on its own station and CSMS.

    ``csms``: ``DevCsms`` settings (``versions``, ``heartbeat_interval``, ``boot_status``,
    ``auth`` ...); ``config``: ``hil.station.config_text`` arguments (``version``, ``evses``,
    ``auth_mode``, ``lock``, ``extra``); ``start=False`` leaves starting to the test. Parameters
    after the bench are pytest's (``parametrize``).
    """

    def wrap(scenario: Callable[..., Awaitable[None]]) -> Callable[..., None]:
        params = list(inspect.signature(scenario).parameters.values())[1:]

        def test(tmp_path: Path, **kwargs: Any) -> None:
            run_bench(tmp_path, lambda bench: scenario(bench, **kwargs), csms, start, **config)

        test.__name__ = test.__qualname__ = scenario.__name__
        test.__doc__ = scenario.__doc__
        test.__module__ = scenario.__module__
        tmp = inspect.Parameter("tmp_path", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Path)
        test.__signature__ = inspect.Signature([tmp, *params])  # type: ignore[attr-defined]
        test.pytestmark = getattr(scenario, "pytestmark", [])  # type: ignore[attr-defined]
        return test

    return wrap


async def set_variables(b: Bench, *items: tuple[str, str, str] | tuple[str, str, str, str]) -> None:
    """SetVariables (component, variable, value[, variable instance]), each Accepted."""
    data = []
    for item in items:
        variable: dict[str, str] = {"name": item[1]}
        if len(item) == 4:
            variable["instance"] = item[3]
        data.append({"component": {"name": item[0]}, "variable": variable, "attributeValue": item[2]})
    reply = await b.call("SetVariables", {"setVariableData": data})
    assert [r["attributeStatus"] for r in reply["setVariableResult"]] == ["Accepted"] * len(items), reply


async def go_offline(b: Bench) -> None:
    """Take the CSMS away: refuse every connection attempt, close the open one."""
    b.csms.passwords = {}  # no station has credentials: every attempt gets HTTP 401
    await b.csms.disconnect(STATION_ID)
    await b.sim.wait_until(lambda s: not s["ocpp_connected"], timeout=15)


async def go_online(b: Bench, timeout: float = 25.0) -> int:
    """Let the station back in, waiting up to ``timeout`` (its back-off after refused attempts)
    for it to reconnect; returns the timeline mark taken before it reconnected."""
    mark = b.mark()
    b.csms.passwords = None
    # A reconnection is not a boot (no BootNotification): wait for the connection itself.
    await b.eventually(
        lambda: any(e.kind == "connect" for e in b.csms.timeline[mark:]),
        timeout,
        "the station to reconnect",
    )
    await b.sim.wait_until(lambda s: s["ocpp_connected"], timeout=timeout)
    return mark


async def no_call(
    b: Bench,
    action: str,
    after: int,
    seconds: float,
    where: Callable[[dict[str, Any]], bool] | None = None,
) -> None:
    """Assert that the station sends no (matching) ``action`` for ``seconds``."""
    with pytest.raises(TimeoutError):
        await b.wait(action, where, timeout=seconds, after=after)


async def assert_link_intact(b: Bench, heartbeat_timeout: float = 10) -> None:
    """The connection survived: a triggered Heartbeat works and no reconnect happened."""
    mark = b.mark()
    assert await b.call("TriggerMessage", {"requestedMessage": "Heartbeat"}) == {"status": "Accepted"}
    await b.wait("Heartbeat", after=mark, timeout=heartbeat_timeout)
    assert len(b.calls("BootNotification")) == 1
    kinds = [e.kind for e in b.csms.timeline]
    assert kinds.count("connect") == 1 and "disconnect" not in kinds
    assert b.running is not None and not b.running.done()


def now_iso(offset_s: float = 0.0) -> str:
    """The virtual clock ``offset_s`` from now (the in-process station's time), as a timestamp."""
    return iso(virtual_now() + timedelta(seconds=offset_s))
