"""Build the drivers a config names: one factory per (device, driver), as data."""

from __future__ import annotations

import contextlib
import importlib
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.config import PACKAGES, Config, Device, EvseConfig, missing_package
from drivers.base import (
    ContactorDriver,
    DriverError,
    LockDriver,
    MeterDriver,
    PilotDriver,
    ResidualCurrentDriver,
    RfidDriver,
    WatchdogDriver,
)
from drivers.sim import (
    SimBench,
    SimContactor,
    SimLock,
    SimMeter,
    SimPilot,
    SimResidualCurrent,
)

SIM_STATE_FILE = "sim-hardware.json"


@dataclass
class EvseDrivers:
    pilot: PilotDriver
    contactor: ContactorDriver
    rcd: ResidualCurrentDriver | None
    meter: MeterDriver
    watchdog: WatchdogDriver | None = None
    lock: LockDriver | None = None


def _import(module: str) -> Any:
    """Import a driver module; a library it needs that is missing or broken is a DriverError
    that names the package (the config check reports a missing one before this)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = (exc.name or "").partition(".")[0]
        hint = missing_package(top) if top in PACKAGES else None
        raise DriverError(hint or f"cannot import {module}: {exc}") from exc


def _lazy(module: str, factory: str) -> Callable[[dict[str, Any]], Any]:
    """A factory imported on first use: a simulated station never imports Pi libraries."""

    def build(options: dict[str, Any]) -> Any:
        return getattr(_import(module), factory)(options)

    return build


# Real hardware: (device, driver) -> factory taking the driver's options.
HARDWARE: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
    ("pilot", "pi"): _lazy("drivers.pi_pilot", "build_pilot"),
    ("contactor", "gpio"): _lazy("drivers.pi_gpio", "build_contactor"),
    ("rcd", "gpio"): _lazy("drivers.pi_gpio", "build_rcd"),
    ("meter", "modbus"): _lazy("drivers.modbus_meter", "build_meter"),
    ("watchdog", "gpio"): _lazy("drivers.pi_gpio", "build_watchdog"),
    ("lock", "gpio"): _lazy("drivers.pi_gpio", "build_lock"),
}
# Simulated twins: (device) -> factory taking the EVSE's bench and the bench.
SIMULATED: dict[str, Callable[[Any, SimBench], Any]] = {
    "pilot": lambda sim, bench: SimPilot(sim),
    "contactor": lambda sim, bench: SimContactor(sim),
    "rcd": lambda sim, bench: SimResidualCurrent(sim),
    "meter": lambda sim, bench: SimMeter(sim, bench),
    "lock": lambda sim, bench: SimLock(sim),
}


def make_bench(config: Config) -> SimBench | None:
    if not config.uses_sim():
        return None
    return SimBench({e.id: e.phases for e in config.evses}, Path(config.storage_dir) / SIM_STATE_FILE)


def release(driver: Any) -> None:
    """Close a driver, sync or async, ignoring errors: used when giving hardware back."""
    with contextlib.suppress(Exception):
        result = driver.close()
        if isinstance(result, types.CoroutineType):  # run it unless a loop is running
            import asyncio  # only async drivers need it: the safety process has none

            try:
                asyncio.get_running_loop()
            except RuntimeError:
                asyncio.run(result)
            else:
                result.close()


SAFETY_DEVICES = ("pilot", "contactor", "rcd", "watchdog", "lock")  # the safety process's
DEVICES = (*SAFETY_DEVICES, "meter")


def _build(evse: EvseConfig, kinds: tuple[str, ...], sim: Callable[[str], Any]) -> dict[str, Any]:
    """The EVSE's drivers of ``kinds``; if one cannot be built, those already built are released."""
    built: dict[str, Any] = {}
    try:
        for kind in kinds:
            device: Device = getattr(evse, kind)
            if device.driver == "none":
                built[kind] = None
            elif device.driver == "sim":
                built[kind] = sim(kind)
            else:
                try:
                    built[kind] = HARDWARE[(kind, device.driver)](device.options)
                except DriverError as exc:
                    raise DriverError(f"evse {evse.id}: {kind}: {exc}") from exc
    except BaseException:
        for driver in built.values():
            if driver is not None:
                release(driver)
        raise
    return built


def _twin(evse: EvseConfig, bench: SimBench | None) -> Callable[[str], Any]:
    def build(kind: str) -> Any:
        assert bench is not None
        return SIMULATED[kind](bench.evses[evse.id], bench)

    return build


def build_evse(evse: EvseConfig, bench: SimBench | None) -> EvseDrivers:
    """Every driver of the EVSE, for a station whose safety runs in this process."""
    return EvseDrivers(**_build(evse, DEVICES, _twin(evse, bench)))


@dataclass
class SafetyDrivers:
    pilot: PilotDriver
    contactor: ContactorDriver
    rcd: ResidualCurrentDriver | None
    watchdog: WatchdogDriver | None
    lock: LockDriver | None


def build_safety(evse: EvseConfig, bench: SimBench | None) -> SafetyDrivers:
    """The drivers the safety process owns."""
    return SafetyDrivers(**_build(evse, SAFETY_DEVICES, _twin(evse, bench)))


def build_meter(evse: EvseConfig, simulated: Callable[[], MeterDriver]) -> MeterDriver:
    """The meter, in the OCPP process; ``simulated`` makes the twin for driver "sim"."""
    meter: MeterDriver = _build(evse, ("meter",), lambda _kind: simulated())["meter"]
    return meter


def build_rfid(config: Config, simulated: Callable[[], RfidDriver]) -> RfidDriver | None:
    """The station's reader, in the OCPP process; ``simulated`` makes the twin for "sim"."""
    if config.rfid is None:
        return None
    if config.rfid.driver == "sim":
        return simulated()
    try:
        build_serial = _import("drivers.rfid_serial").build_rfid
        return build_serial(config.rfid.driver, config.rfid.options)  # type: ignore[no-any-return]
    except DriverError as exc:
        raise DriverError(f"rfid: {exc}") from exc
