"""Build the drivers a config names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from controller.config import Config, Device, EvseConfig
from drivers.base import (
    ContactorDriver,
    DriverError,
    MeterDriver,
    PilotDriver,
    ResidualCurrentDriver,
    RfidDriver,
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


def _unavailable(kind: str, evse: EvseConfig | None, device: Device) -> DriverError:
    where = f"evse {evse.id}: {kind}" if evse else kind
    return DriverError(
        f"{where}.driver: {device.driver!r} is not available in this version; "
        'use "sim" to run on simulated hardware'
    )


def make_bench(config: Config) -> SimBench | None:
    if not config.uses_sim():
        return None
    return SimBench({e.id: e.phases for e in config.evses}, Path(config.storage_dir) / SIM_STATE_FILE)


def build_evse(evse: EvseConfig, bench: SimBench | None) -> EvseDrivers:
    sim = bench.evses[evse.id] if bench else None
    for kind in ("pilot", "contactor", "meter", "rcd"):
        device: Device = getattr(evse, kind)
        if device.driver not in ("sim", "none"):
            raise _unavailable(kind, evse, device)
    assert sim is not None and bench is not None
    return EvseDrivers(
        pilot=SimPilot(sim),
        contactor=SimContactor(sim),
        rcd=SimResidualCurrent(sim) if evse.rcd.driver == "sim" else None,
        meter=SimMeter(sim, bench),
    )


def build_rfid(config: Config, bench: SimBench | None) -> RfidDriver | None:
    if config.rfid is None:
        return None
    if config.rfid.driver != "sim" or bench is None:
        raise _unavailable("rfid", None, config.rfid)
    return SimRfid(bench)
