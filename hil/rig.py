"""What a test rig does to a charger, whatever the rig is made of.

The EV side (plug, charge, suspend, unplug, a raw pilot state), the card reader (swipe),
the hardware faults, and what the rig measures. ``SimRig`` (hil.simrig) does it over the
rig socket of a daemon on simulated hardware; ``PiRig`` (hil.pirig) with relays and an
ADC on a second Raspberry Pi. Scenarios are written against this interface only, so the
same suite qualifies a simulated station and a real one.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

# Hardware faults a rig can inject (the names of the rig protocol).
FAULTS = ("rcd", "diode", "contactor_weld", "contactor_stuck", "meter_offline")

# The pilot's high level for each state (IEC 61851-1 table A.4, nominal values).
NOMINAL_PILOT_V = {"A": 12.0, "B": 9.0, "C": 6.0, "D": 3.0, "E": 0.0, "F": -12.0}


class RigError(Exception):
    """The rig could not do what it was asked (a refused command, missing hardware)."""


@dataclass(frozen=True)
class Measurement:
    """What the rig sees of one EVSE, from the EV's side of the cable.

    ``duty_percent`` is 100 for a steady pilot; ``power_w`` and ``energy_wh`` are None
    when the rig has no meter of its own.
    """

    cp_state: str
    pilot_v: float
    duty_percent: float
    contactor_closed: bool
    power_w: float | None
    energy_wh: float | None

    @property
    def pwm(self) -> bool:
        return 0.0 < self.duty_percent < 100.0


class Rig(ABC):
    """One rig attached to one charger; EVSEs are numbered from 1 as in the station config."""

    #: Pilot states ``cp`` can force on this rig.
    forceable_states: frozenset[str] = frozenset("ABCDEF")
    #: Faults ``fault`` can inject on this rig.
    faults: frozenset[str] = frozenset(FAULTS)

    @abstractmethod
    def plug(self, evse: int = 1) -> None:
        """EV connected, not requesting energy (state B)."""

    @abstractmethod
    def charge(self, evse: int = 1, max_current_a: float | None = None, phases: int | None = None) -> None:
        """EV requests energy (state C) and draws up to ``max_current_a`` when offered."""

    @abstractmethod
    def suspend(self, evse: int = 1) -> None:
        """EV stops requesting energy (C back to B)."""

    @abstractmethod
    def unplug(self, evse: int = 1) -> None:
        """EV disconnected (state A)."""

    @abstractmethod
    def cp(self, state: str | None, evse: int = 1) -> None:
        """Force a raw pilot state (one of ``forceable_states``); None releases it."""

    @abstractmethod
    def swipe(self, token: str) -> None:
        """Present an RFID card (the id as the reader reports it, uppercase hex)."""

    @abstractmethod
    def fault(self, kind: str, active: bool = True, evse: int = 1) -> None:
        """Set or clear a hardware fault, one of ``faults``."""

    @abstractmethod
    def measure(self, evse: int = 1) -> Measurement:
        """What the rig measures now."""

    @abstractmethod
    def close(self) -> None:
        """Release the rig (relays back to rest: no EV, no fault)."""

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def expect(
        self, check: Callable[[Measurement], bool], timeout: float = 10.0, evse: int = 1, what: str = ""
    ) -> Measurement:
        """Measure until ``check`` holds; the measurement that passed."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.measure(evse)
            if check(seen):
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"{what or 'condition'} not met within {timeout} s; last seen {seen}")
            time.sleep(0.02)
