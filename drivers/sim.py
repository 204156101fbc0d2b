"""Simulated hardware: one bench per EVSE with an EV, a pilot, a contactor and a meter.

The physics follow CONTRACTS section 3: the EV pulls the pilot to the voltage of its
state (its diode keeps the negative half at -12 V); while the contactor is physically
closed and the EV requests energy it draws min(offered current, its max) on its phases
at 230 V; the meter integrates that power into an energy register that never decreases.
The EV and the energy register persist in a JSON file, as real hardware would keep them
across a controller restart.

The control thread drives pilot and contactor while the event loop reads the meter and
the rig changes the EV, so every bench guards its state with a lock.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.safety.pilot import CpState, PilotMode, PilotSample, current_for_duty
from drivers.base import DriverError, MeterReading

log = logging.getLogger(__name__)

LINE_VOLTAGE_V = 230.0
# The contract's faults, plus pilot_hang: the pilot ADC read never returns (an I2C bus
# hang), which stalls that EVSE's control loop.
SIM_FAULTS = (
    "contactor_weld",
    "contactor_stuck",
    "rcd",
    "meter_offline",
    "diode",
    "lock_jam",
    "pilot_hang",
)
STATE_VOLTS = {
    CpState.A: 12.0,
    CpState.B: 9.0,
    CpState.C: 6.0,
    CpState.D: 3.0,
    CpState.E: 0.0,
    CpState.F: -12.0,
}


def pilot_levels(state: CpState, mode: PilotMode, diode: bool = True) -> PilotSample:
    """The pilot's high and low level for an EV in ``state`` under our ``mode``."""
    if state is CpState.E:
        return PilotSample(0.0, 0.0)  # shorted: nothing we drive shows
    if mode is PilotMode.NEGATIVE or state is CpState.F:
        return PilotSample(-12.0, -12.0)
    high = STATE_VOLTS[state]
    if mode is PilotMode.STEADY:
        return PilotSample(high, high)
    if state is CpState.A or diode:
        return PilotSample(high, -12.0)
    return PilotSample(high, -high)


@dataclass
class SimEv:
    plugged: bool = False
    requesting: bool = False
    max_current_a: float = 32.0
    phases: int = 3


@dataclass
class SimEvse:
    """The physical world around one EVSE."""

    evse_id: int
    phases: int
    clock: Callable[[], float] = time.monotonic
    ev: SimEv = field(default_factory=SimEv)
    forced_cp: CpState | None = None
    faults: set[str] = field(default_factory=set)
    pilot_mode: PilotMode = PilotMode.STEADY
    duty_percent: float = 100.0
    contactor_closed: bool = False
    energy_wh: float = 0.0
    # When the pilot state last changed and the contactor command last changed (``clock``
    # time): what an oscilloscope on a bench would show, for the latency benchmark.
    cp_changed_at: float = 0.0
    contactor_command: bool = False
    contactor_commanded_at: float = 0.0
    # The connector lock, when the EVSE has lock = { driver = "sim" }: it follows its
    # command unless jammed, and a freed lock moves to the position last commanded.
    lock_fitted: bool = False
    lock_command: bool = False
    lock_engaged: bool = False

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self._integrated_at = self.clock()

    # physics -----------------------------------------------------------------------

    def cp_state(self) -> CpState:
        if self.forced_cp is not None:
            return self.forced_cp
        if not self.ev.plugged:
            return CpState.A
        return CpState.C if self.ev.requesting else CpState.B

    def current_a(self) -> float:
        if not self.contactor_closed or self.cp_state() not in (CpState.C, CpState.D):
            return 0.0
        offered = current_for_duty(self.duty_percent) if self.pilot_mode is PilotMode.PWM else 0.0
        return min(offered, self.ev.max_current_a)

    def power_w(self) -> float:
        return self.current_a() * LINE_VOLTAGE_V * self.ev.phases

    def integrate(self) -> None:
        """Add the energy drawn since the last call; call before anything changes power."""
        with self.lock:
            now = self.clock()
            self.energy_wh += self.power_w() * max(0.0, now - self._integrated_at) / 3600.0
            self._integrated_at = now

    # the EV side, driven by the rig --------------------------------------------------

    def set_ev(self, **changes: Any) -> None:
        with self.lock:
            self.integrate()
            before = self.cp_state()
            for key, value in changes.items():
                setattr(self.ev, key, value)
            self.forced_cp = None
            self._note_cp(before)

    def force_cp(self, state: CpState | None) -> None:
        with self.lock:
            self.integrate()
            before = self.cp_state()
            self.forced_cp = state
            self._note_cp(before)

    def _note_cp(self, before: CpState) -> None:
        if self.cp_state() is not before:
            self.cp_changed_at = self.clock()

    def set_fault(self, kind: str, active: bool) -> None:
        with self.lock:
            self.integrate()
            if active:
                self.faults.add(kind)
            else:
                self.faults.discard(kind)
            if kind == "contactor_stuck" and active:
                self.contactor_closed = False
            if kind == "lock_jam" and not active:
                self.lock_engaged = self.lock_command

    # the EVSE side, driven by the controller -----------------------------------------

    def drive_pilot(self, mode: PilotMode, duty_percent: float) -> None:
        with self.lock:
            self.integrate()
            self.pilot_mode, self.duty_percent = mode, duty_percent

    def pilot_sample(self) -> PilotSample:
        with self.lock:
            return pilot_levels(self.cp_state(), self.pilot_mode, "diode" not in self.faults)

    def drive_contactor(self, closed: bool) -> None:
        with self.lock:
            self.integrate()
            if closed != self.contactor_command:
                self.contactor_command, self.contactor_commanded_at = closed, self.clock()
            if closed:
                self.contactor_closed = "contactor_stuck" not in self.faults
            elif "contactor_weld" not in self.faults:
                self.contactor_closed = False

    def drive_lock(self, locked: bool) -> None:
        with self.lock:
            self.lock_command = locked
            if "lock_jam" not in self.faults:
                self.lock_engaged = locked

    def meter_reading(self) -> MeterReading:
        with self.lock:
            if "meter_offline" in self.faults:
                raise DriverError(f"simulated meter of EVSE {self.evse_id} does not answer")
            self.integrate()
            amps = self.current_a()
            n = self.ev.phases
            return MeterReading(
                energy_wh=self.energy_wh,
                power_w=self.power_w(),
                current_a=tuple([amps] * n + [0.0] * (self.phases - n)),
                voltage_v=tuple([LINE_VOLTAGE_V] * self.phases),
            )


class SimBench:
    """All simulated EVSEs plus the station's RFID reader, persisted in one file."""

    def __init__(self, phases: dict[int, int], state_file: Path) -> None:
        self.state_file = state_file
        self.evses = {i: SimEvse(i, p) for i, p in phases.items()}
        # Where a token presented at the reader goes: the RFID driver sets it.
        self.on_swipe: Callable[[str], None] = lambda token: None
        self._lock = threading.Lock()
        self._save_failed = False
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("simulated hardware state %s unreadable, starting fresh: %s", self.state_file, exc)
            return
        for key, saved in data.get("evses", {}).items():
            evse = self.evses.get(int(key))
            if evse is None or not isinstance(saved, dict):
                continue
            evse.energy_wh = float(saved.get("energy_wh", 0.0))
            ev = saved.get("ev", {})
            evse.ev = SimEv(
                plugged=bool(ev.get("plugged", False)),
                requesting=bool(ev.get("requesting", False)),
                max_current_a=float(ev.get("max_current_a", 32.0)),
                phases=int(ev.get("phases", evse.phases)),
            )

    def save(self) -> None:
        """Write the EV and energy state atomically: a kill at any moment leaves a whole file."""
        with self._lock:
            snapshot: dict[str, Any] = {"evses": {}}
            for evse in self.evses.values():
                with evse.lock:
                    evse.integrate()
                    snapshot["evses"][str(evse.evse_id)] = {
                        "energy_wh": evse.energy_wh,
                        "ev": vars(evse.ev).copy(),
                        # observed by tests after exit; never loaded: a coil is unpowered at start
                        "contactor_closed": evse.contactor_closed,
                        "lock_engaged": evse.lock_engaged,
                        "pilot": evse.pilot_mode.value,
                    }
            tmp = self.state_file.with_suffix(".tmp")
            try:
                tmp.write_text(json.dumps(snapshot))
                os.replace(tmp, self.state_file)
            except OSError as exc:
                # The file stands in for physics, which a full disk does not stop: go on
                # from memory and say so once.
                if not self._save_failed:
                    log.warning(
                        "simulated hardware state not saved to %s (kept in memory): %s", self.state_file, exc
                    )
                self._save_failed = True
                return
            if self._save_failed:
                log.info("simulated hardware state saved to %s again", self.state_file)
            self._save_failed = False


class SimPilot:
    def __init__(self, evse: SimEvse) -> None:
        self.evse = evse

    def set_output(self, mode: PilotMode, duty_percent: float) -> None:
        self.evse.drive_pilot(mode, duty_percent)

    def sample(self) -> PilotSample:
        while "pilot_hang" in self.evse.faults:
            time.sleep(0.01)
        return self.evse.pilot_sample()

    def close(self) -> None:
        self.evse.drive_pilot(PilotMode.STEADY, 100.0)


class SimContactor:
    def __init__(self, evse: SimEvse) -> None:
        self.evse = evse

    def command(self, closed: bool) -> None:
        self.evse.drive_contactor(closed)

    def feedback_closed(self) -> bool:
        return self.evse.contactor_closed

    def close(self) -> None:
        self.evse.drive_contactor(False)


class SimLock:
    def __init__(self, evse: SimEvse) -> None:
        self.evse = evse
        evse.lock_fitted = True

    def command(self, locked: bool) -> None:
        self.evse.drive_lock(locked)

    def engaged(self) -> bool:
        return self.evse.lock_engaged

    def close(self) -> None:
        self.evse.drive_lock(False)


class SimResidualCurrent:
    def __init__(self, evse: SimEvse) -> None:
        self.evse = evse

    def tripped(self) -> bool:
        return "rcd" in self.evse.faults


class SimMeter:
    def __init__(self, evse: SimEvse, bench: SimBench) -> None:
        self.evse, self.bench = evse, bench

    async def read(self) -> MeterReading:
        reading = self.evse.meter_reading()
        # Persist before reporting: energy once reported never goes backwards on restart.
        self.bench.save()
        return reading

    async def close(self) -> None:
        self.bench.save()


class SimRfid:
    def __init__(self, bench: SimBench) -> None:
        import asyncio  # only where the reader runs on an event loop, never in the safety process

        self.bench = bench
        self.swipes: asyncio.Queue[str] = asyncio.Queue()
        bench.on_swipe = self.swipes.put_nowait

    async def tokens(self) -> AsyncIterator[str]:
        while True:
            yield await self.swipes.get()

    async def close(self) -> None:
        pass
