"""A bench rig on a second Raspberry Pi: relays for the EV simulator and the faults, an
ADS1115 for the pilot, an input for the contactor, a UART that plays an RDM6300 reader.

The wiring and parts list are in hil/README.md; the pins come from a TOML file
(``hil/pirig.example.toml``). Every action is a set of relays: the tables below are the
whole of what the rig does to the charger. Relays switch break-before-make, with the
contacts' release time between, so the pilot never sees two EV paths at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpiozero import DigitalInputDevice, OutputDevice

from controller.safety.pilot import classify
from drivers.pi_pilot import Ads1115, I2cBus
from drivers.rfid_frames import rdm6300_frame
from hil.rig import Measurement, Rig, RigError

# EV-side relays: the pilot line to the EV simulator (diode + R2 2.74 kOhm), R3 for state C
# (1.3 kOhm) or D (270 Ohm) in parallel with R2, and a short of the pilot to PE (state E).
EV_RELAYS = ("cp_connect", "r_c", "r_d", "cp_short_pe")
PILOT_STATES: dict[str, frozenset[str]] = {
    "A": frozenset(),
    "B": frozenset({"cp_connect"}),
    "C": frozenset({"cp_connect", "r_c"}),
    "D": frozenset({"cp_connect", "r_d"}),
    "E": frozenset({"cp_short_pe"}),
}
# Fault -> the relay that makes it: a test current through the RCD's sensor, the EV diode
# shorted, the contactor's feedback contact bridged (a weld as the charger sees it), the
# contactor coil's supply cut (stuck open), the meter's RS-485 line A opened.
FAULT_RELAYS: dict[str, str] = {
    "rcd": "rcd_test",
    "diode": "diode_bypass",
    "contactor_weld": "weld_bridge",
    "contactor_stuck": "coil_break",
    "meter_offline": "meter_break",
}
RELAYS = EV_RELAYS + tuple(FAULT_RELAYS.values())
RELAY_RELEASE_S = 0.02  # a small signal relay opens its contacts within 5-10 ms


@dataclass
class AdcChannels:
    """Where the pilot is read: two peak detectors (high and low level) and the duty as
    the RC-filtered output of a comparator on the pilot (``duty_full_v`` = 100 %)."""

    address: int = 0x48
    high: int = 0
    low: int = 1
    duty: int = 2
    scale: float = 7.273
    offset_v: float = -12.0
    duty_full_v: float = 3.3


@dataclass
class EvsePins:
    relays: dict[str, int]
    contactor_sense: int
    adc: AdcChannels = field(default_factory=AdcChannels)
    meter: dict[str, Any] | None = None


@dataclass
class PiRigConfig:
    evses: dict[int, EvsePins]
    rfid_port: str | None = None
    rfid_baudrate: int = 9600
    i2c_bus: int = 1
    relay_active_high: bool = True
    station_power: int | None = None  # a relay with normally-closed contacts in the charger's supply

    @classmethod
    def load(cls, path: Path) -> PiRigConfig:
        try:
            data = tomllib.loads(path.read_text())
            return cls.from_dict(data)
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
            raise RigError(f"{path}: {exc}; see hil/pirig.example.toml") from exc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PiRigConfig:
        rig = dict(data.get("rig", {}))
        evses: dict[int, EvsePins] = {}
        for table in data.get("evse", []):
            relays = {str(k): int(v) for k, v in table["relays"].items()}
            unknown = set(relays) - set(RELAYS)
            if unknown:
                raise ValueError(f"evse {table['id']}: unknown relay(s) {sorted(unknown)}; known: {RELAYS}")
            evses[int(table["id"])] = EvsePins(
                relays=relays,
                contactor_sense=int(table["contactor_sense"]),
                adc=AdcChannels(**table.get("adc", {})),
                meter=table.get("meter"),
            )
        if not evses:
            raise ValueError("no [[evse]] table")
        return cls(evses=evses, **rig)


class PiRig(Rig):
    """The rig of a real bench. ``bus`` is an I2C bus (smbus2.SMBus by default) and
    ``serial_port`` a pyserial port; both are parameters so tests can pass their own."""

    forceable_states = frozenset(PILOT_STATES)  # F is the charger's to drive, not the EV's

    def __init__(
        self,
        config: PiRigConfig,
        bus: I2cBus | None = None,
        serial_port: Any = None,
        meters: Mapping[int, Any] | None = None,
    ) -> None:
        self.config = config
        self._bus = bus
        self._serial = serial_port
        self._meters = dict(meters or {})
        self._loop: asyncio.AbstractEventLoop | None = None
        self._adcs: dict[int, Ads1115] = {}
        self.power: OutputDevice | None = None
        self._relays: dict[int, dict[str, OutputDevice]] = {}
        self._sense: dict[int, DigitalInputDevice] = {}
        self._ev: dict[int, str] = {}
        self._forced: dict[int, str | None] = {}
        try:
            for evse, pins in config.evses.items():
                self._relays[evse] = {
                    name: OutputDevice(pin, active_high=config.relay_active_high, initial_value=False)
                    for name, pin in pins.relays.items()
                }
                self._sense[evse] = DigitalInputDevice(pins.contactor_sense, pull_up=True)
                self._ev[evse] = "A"
                self._forced[evse] = None
            self.power = (
                OutputDevice(config.station_power, active_high=config.relay_active_high, initial_value=False)
                if config.station_power is not None
                else None
            )
        except BaseException:
            self.close()
            raise
        self.faults = frozenset(k for k, relay in FAULT_RELAYS.items() if self._has(relay))

    @classmethod
    def from_file(cls, path: Path) -> PiRig:
        config = PiRigConfig.load(path)
        from drivers.registry import HARDWARE  # the bench meter uses the charger's meter drivers

        meters = {
            evse: HARDWARE[("meter", pins.meter.get("driver", "modbus"))](pins.meter)
            for evse, pins in config.evses.items()
            if pins.meter
        }
        return cls(config, meters=meters)

    def _has(self, relay: str) -> bool:
        return any(relay in relays for relays in self._relays.values())

    def _evse(self, evse: int) -> dict[str, OutputDevice]:
        try:
            return self._relays[evse]
        except KeyError:
            raise RigError(f"no evse {evse} on this rig (has {sorted(self._relays)})") from None

    def _apply(self, evse: int) -> None:
        relays = self._evse(evse)
        wanted = PILOT_STATES[self._forced[evse] or self._ev[evse]]
        missing = wanted - set(relays)
        if missing:
            raise RigError(f"evse {evse}: no relay for {sorted(missing)} in the rig config")
        released = False
        for name in EV_RELAYS:
            if name in relays and name not in wanted and relays[name].value:
                relays[name].off()
                released = True
        if released:
            time.sleep(RELAY_RELEASE_S)
        for name in EV_RELAYS:
            if name in wanted:
                relays[name].on()

    def _ev_state(self, evse: int, state: str) -> None:
        self._evse(evse)
        self._ev[evse] = state
        self._forced[evse] = None
        self._apply(evse)

    def plug(self, evse: int = 1) -> None:
        self._ev_state(evse, "B")

    def charge(self, evse: int = 1, max_current_a: float | None = None, phases: int | None = None) -> None:
        # The bench's load bank decides the current; the resistors only ask for energy.
        self._ev_state(evse, "C")

    def suspend(self, evse: int = 1) -> None:
        self._ev_state(evse, "B")

    def unplug(self, evse: int = 1) -> None:
        self._ev_state(evse, "A")

    def cp(self, state: str | None, evse: int = 1) -> None:
        if state is not None and state not in self.forceable_states:
            raise RigError(
                f"a bench EV cannot force pilot state {state!r}; it can: {sorted(self.forceable_states)}"
            )
        self._evse(evse)
        self._forced[evse] = state
        self._apply(evse)

    def fault(self, kind: str, active: bool = True, evse: int = 1) -> None:
        relay = FAULT_RELAYS.get(kind)
        if relay is None:
            raise RigError(f"unknown fault {kind!r}; known: {sorted(FAULT_RELAYS)}")
        relays = self._evse(evse)
        if relay not in relays:
            raise RigError(
                f"evse {evse}: fault {kind} needs relay {relay}, which the rig config does not wire"
            )
        relays[relay].value = active

    def power_cut(self, cut: bool) -> None:
        """Cut (or restore) the charger's supply: a real power loss."""
        if self.power is None:
            raise RigError("no station_power relay in the rig config")
        self.power.value = cut

    def swipe(self, token: str) -> None:
        try:
            frame = rdm6300_frame(token)
        except ValueError as exc:
            raise RigError(f"the rig plays an RDM6300 reader: {exc}") from None
        if self._serial is None:
            if self.config.rfid_port is None:
                raise RigError("no rfid_port in the rig config: the rig cannot present cards")
            import serial

            self._serial = serial.Serial(self.config.rfid_port, self.config.rfid_baudrate)
        self._serial.write(frame)
        self._serial.flush()

    def _adc(self, evse: int) -> Ads1115:
        if self._bus is None:
            from smbus2 import SMBus

            self._bus = SMBus(self.config.i2c_bus)
        address = self.config.evses[evse].adc.address
        if evse not in self._adcs:
            # EVSEs on one ADC share its channel selection.
            shared = next((a for a in self._adcs.values() if a.address == address), None)
            self._adcs[evse] = shared or Ads1115(self._bus, address)
        return self._adcs[evse]

    def _volts(self, evse: int, channel: int) -> float:
        adc = self._adc(evse)
        try:
            adc.select(channel)
            return adc.read_volts()
        except OSError as exc:
            raise RigError(f"the rig's ADS1115 at 0x{adc.address:02X} does not answer: {exc}") from exc

    def measure(self, evse: int = 1) -> Measurement:
        self._evse(evse)
        channels = self.config.evses[evse].adc
        high = self._volts(evse, channels.high) * channels.scale + channels.offset_v
        low = self._volts(evse, channels.low) * channels.scale + channels.offset_v
        if high - low < 2.0:  # no square wave: a steady level
            duty = 100.0 if high > 0 else 0.0
        else:
            duty = min(100.0, max(0.0, self._volts(evse, channels.duty) / channels.duty_full_v * 100))
        state = classify(high)
        power = energy = None
        meter = self._meters.get(evse)
        if meter is not None:
            self._loop = self._loop or asyncio.new_event_loop()
            reading = self._loop.run_until_complete(meter.read())
            power, energy = reading.power_w, reading.energy_wh
        return Measurement(
            cp_state=state.value if state is not None else "?",
            pilot_v=round(high, 2),
            duty_percent=round(duty, 1),
            contactor_closed=self._sense[evse].is_active,
            power_w=power,
            energy_wh=energy,
        )

    def relays_on(self, evse: int = 1) -> set[str]:
        """The names of the relays now energised on ``evse``."""
        return {name for name, relay in self._evse(evse).items() if relay.value}

    def close(self) -> None:
        """Every relay off (no EV, no fault, power on) and every handle released; again is harmless."""
        for relays in self._relays.values():
            for relay in relays.values():
                if not relay.closed:
                    relay.off()
                    relay.close()
        for sense in self._sense.values():
            sense.close()
        if self.power is not None and not self.power.closed:
            self.power.off()
            self.power.close()
        if self._meters:
            loop = self._loop or asyncio.new_event_loop()
            for meter in self._meters.values():
                with contextlib.suppress(Exception):
                    loop.run_until_complete(meter.close())
            loop.close()
            self._meters, self._loop = {}, None
        for handle in (self._serial, self._bus):
            close = getattr(handle, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        self._serial = self._bus = None
