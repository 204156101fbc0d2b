"""Build the drivers a config names: one factory per (device, driver), as data."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.config import Config, Device, EvseConfig
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
    SimMeter,
    SimPilot,
    SimResidualCurrent,
    SimRfid,
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


def _pi_pilot(options: dict[str, Any]) -> PilotDriver:
    from drivers.pi_pilot import build_pilot

    return build_pilot(options)


def _gpio_contactor(options: dict[str, Any]) -> ContactorDriver:
    from drivers.pi_gpio import build_contactor

    return build_contactor(options)


def _gpio_rcd(options: dict[str, Any]) -> ResidualCurrentDriver:
    from drivers.pi_gpio import build_rcd

    return build_rcd(options)


def _gpio_watchdog(options: dict[str, Any]) -> WatchdogDriver:
    from drivers.pi_gpio import build_watchdog

    return build_watchdog(options)


def _gpio_lock(options: dict[str, Any]) -> LockDriver:
    from drivers.pi_gpio import build_lock

    return build_lock(options)


def _modbus_meter(options: dict[str, Any]) -> MeterDriver:
    from drivers.modbus_meter import build_meter

    return build_meter(options)


# Real hardware: (device, driver) -> factory taking the driver's options.
HARDWARE: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
    ("pilot", "pi"): _pi_pilot,
    ("contactor", "gpio"): _gpio_contactor,
    ("rcd", "gpio"): _gpio_rcd,
    ("meter", "modbus"): _modbus_meter,
    ("watchdog", "gpio"): _gpio_watchdog,
    ("lock", "gpio"): _gpio_lock,
}
# Simulated twins: (device) -> factory taking the EVSE's bench and the bench.
SIMULATED: dict[str, Callable[[Any, SimBench], Any]] = {
    "pilot": lambda sim, bench: SimPilot(sim),
    "contactor": lambda sim, bench: SimContactor(sim),
    "rcd": lambda sim, bench: SimResidualCurrent(sim),
    "meter": lambda sim, bench: SimMeter(sim, bench),
}


def make_bench(config: Config) -> SimBench | None:
    if not config.uses_sim():
        return None
    return SimBench({e.id: e.phases for e in config.evses}, Path(config.storage_dir) / SIM_STATE_FILE)


def _close(driver: Any) -> None:
    with contextlib.suppress(Exception):
        result = driver.close()
        if hasattr(result, "close"):  # an async close() returned a coroutine: not awaited here
            result.close()


def build_evse(evse: EvseConfig, bench: SimBench | None) -> EvseDrivers:
    """The EVSE's drivers; if one cannot be built, those already built are released."""
    built: dict[str, Any] = {}
    try:
        for kind in ("pilot", "contactor", "rcd", "meter", "watchdog", "lock"):
            device: Device = getattr(evse, kind)
            if device.driver == "none":
                built[kind] = None
            elif device.driver == "sim":
                assert bench is not None
                built[kind] = SIMULATED[kind](bench.evses[evse.id], bench)
            else:
                try:
                    built[kind] = HARDWARE[(kind, device.driver)](device.options)
                except DriverError as exc:
                    raise DriverError(f"evse {evse.id}: {kind}: {exc}") from exc
    except BaseException:
        for driver in built.values():
            if driver is not None:
                _close(driver)
        raise
    return EvseDrivers(**built)


def build_rfid(config: Config, bench: SimBench | None) -> RfidDriver | None:
    if config.rfid is None:
        return None
    if config.rfid.driver == "sim":
        assert bench is not None
        return SimRfid(bench)
    from drivers.rfid_serial import build_rfid as build_serial

    try:
        return build_serial(config.rfid.driver, config.rfid.options)
    except DriverError as exc:
        raise DriverError(f"rfid: {exc}") from exc
