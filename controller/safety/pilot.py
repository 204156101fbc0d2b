"""IEC 61851-1 control pilot: states, level detection and the duty formula.

Pure: voltages and times in, states out. The EV pulls the +12 V pilot down through a
resistor (and a diode, so the negative half of the PWM stays at -12 V). We measure the
high and the low level of the pilot; the high level gives the state, the low level
proves the diode.

Detection follows the window scheme used by deployed firmware: each state has a band,
a reading in the gap between two bands keeps the previous state (hysteresis), and a new
state is reported only after ``CONFIRMATIONS`` equal readings in a row. Readings far
outside every band (above +13 V, between -10 V and -2 V, below -13 V) mean a broken
pilot circuit and are classified as E, which the supervisor treats like a short.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class CpState(StrEnum):
    A = "A"  # +12 V: no EV
    B = "B"  # +9 V: EV connected, not requesting energy
    C = "C"  # +6 V: EV requests energy
    D = "D"  # +3 V: EV requests energy, ventilation required
    E = "E"  # 0 V: pilot shorted / EVSE supply problem
    F = "F"  # -12 V: EVSE not available (driven by us)


CONNECTED = frozenset({CpState.B, CpState.C, CpState.D})
REQUESTING = frozenset({CpState.C, CpState.D})

# (lower bound inclusive, upper bound exclusive, state); None = gap, keep the previous state.
# Bands as in the J1772 / IEC 61851-1 tables with the margins chargebyte uses.
BANDS: tuple[tuple[float, float, CpState | None], ...] = (
    (13.0, math.inf, CpState.E),  # above the supply: broken circuit
    (11.0, 13.0, CpState.A),
    (10.0, 11.0, None),
    (8.0, 10.0, CpState.B),
    (7.0, 8.0, None),
    (5.0, 7.0, CpState.C),
    (4.0, 5.0, None),
    (2.0, 4.0, CpState.D),
    (1.0, 2.0, None),
    (-1.0, 1.0, CpState.E),
    (-2.0, -1.0, None),
    (-10.0, -2.0, CpState.E),  # neither driven -12 V nor an EV load: broken circuit
    (-11.0, -10.0, None),
    (-13.0, -11.0, CpState.F),
    (-math.inf, -13.0, CpState.E),
)

CONFIRMATIONS = 2
# With an EV diode the negative half of the PWM reaches the -12 V rail; without it the EV
# resistor loads the negative half too and the low level sits near minus the high level.
DIODE_LOW_MAX_V = -10.0


class PilotMode(StrEnum):
    """What the EVSE drives onto the pilot."""

    STEADY = "steady"  # +12 V, no PWM: x1 states, nothing offered
    PWM = "pwm"  # 1 kHz PWM at the duty: x2 states, current offered
    NEGATIVE = "negative"  # -12 V: state F, EVSE not available


@dataclass(frozen=True, slots=True)
class PilotSample:
    """One measurement of the pilot: the high and the low level in volts.

    With a steady pilot (no PWM) both levels are the same.
    """

    high_v: float
    low_v: float


def classify(volts: float) -> CpState | None:
    """The state whose band holds ``volts`` (the high level); None in a gap."""
    for low, high, state in BANDS:
        if low <= volts < high:
            return state
    return CpState.E  # NaN


def diode_present(sample: PilotSample) -> bool:
    return sample.low_v <= DIODE_LOW_MAX_V


class PilotDetector:
    """Turns raw samples into a confirmed pilot state.

    A state is adopted after ``confirmations`` equal readings in a row. A gap reading
    counts as the current state, so noise between bands never confirms anything new.
    Leaving C/D is confirmed by ``confirmations`` readings outside C/D even when they
    disagree with each other: a pilot that bounces between A and E must still stop the
    energy transfer.
    """

    def __init__(self, confirmations: int = CONFIRMATIONS) -> None:
        self.confirmations = confirmations
        self.state = CpState.A
        self._candidate = CpState.A
        self._count = 0
        self._not_requesting = 0

    def feed(self, sample: PilotSample) -> CpState:
        reading = classify(sample.high_v)
        if reading is None:
            reading = self.state
        if reading == self._candidate:
            self._count += 1
        else:
            self._candidate, self._count = reading, 1
        self._not_requesting = 0 if reading in REQUESTING else self._not_requesting + 1
        if self._count >= self.confirmations or (
            self.state in REQUESTING and self._not_requesting >= self.confirmations
        ):
            self.state = reading
        return self.state

    @property
    def settled(self) -> bool:
        """The last reading agreed with the confirmed state: no change is being confirmed."""
        return self._candidate is self.state


# Duty cycle <-> current, IEC 61851-1 Annex A (same in SAE J1772).
MIN_CURRENT_A = 6.0
MAX_CURRENT_A = 80.0


def duty_for_current(amps: float) -> float | None:
    """The PWM duty (percent) that offers ``amps``; None below 6 A (nothing may be offered).

    Rounded down to 0.01 % so that the EV never reads more than ``amps``.
    """
    if not amps >= MIN_CURRENT_A:  # also catches NaN
        return None
    amps = min(amps, MAX_CURRENT_A)
    # The two ranges meet badly: 52 A by the upper formula is 84.8 %, which an EV reads
    # with the lower one as 50.9 A. 85 % means 51 A in both, so the upper range starts there.
    duty = amps / 0.6 if amps <= 51.0 else max(85.0, amps / 2.5 + 64.0)
    return math.floor(duty * 100 + 1e-6) / 100


def current_for_duty(duty: float) -> float:
    """The current an EV reads from ``duty`` percent (0 where the duty offers none)."""
    if 8.0 <= duty < 10.0:
        return 6.0
    if 10.0 <= duty <= 85.0:
        return duty * 0.6
    if 85.0 < duty <= 96.0:
        return (duty - 64.0) * 2.5
    if 96.0 < duty <= 97.0:
        return 80.0
    return 0.0
