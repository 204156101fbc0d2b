import math

import pytest

from controller.safety.pilot import (
    CpState,
    PilotDetector,
    PilotMode,
    PilotSample,
    classify,
    current_for_duty,
    diode_present,
    duty_for_current,
)
from drivers.sim import pilot_levels


@pytest.mark.parametrize(
    ("volts", "state"),
    [
        (12.0, CpState.A),
        (11.2, CpState.A),
        (9.0, CpState.B),
        (6.0, CpState.C),
        (3.0, CpState.D),
        (0.0, CpState.E),
        (-12.0, CpState.F),
        (14.0, CpState.E),  # above the supply: broken circuit
        (-6.0, CpState.E),  # neither -12 V nor an EV: broken circuit
        (-14.0, CpState.E),
        (math.nan, CpState.E),
    ],
)
def test_each_level_falls_in_its_band(volts: float, state: CpState) -> None:
    assert classify(volts) is state


@pytest.mark.parametrize("volts", [10.5, 7.5, 4.5, 1.5, -1.5, -10.5])
def test_readings_between_bands_are_gaps(volts: float) -> None:
    assert classify(volts) is None


def feed(detector: PilotDetector, *highs: float) -> list[CpState]:
    return [detector.feed(PilotSample(h, h)) for h in highs]


def test_a_new_state_needs_two_equal_readings() -> None:
    detector = PilotDetector()
    assert feed(detector, 9.0) == [CpState.A]
    assert feed(detector, 9.0) == [CpState.B]


def test_a_single_glitch_is_ignored() -> None:
    detector = PilotDetector()
    feed(detector, 6.0, 6.0)
    assert feed(detector, 9.0, 6.0, 6.0) == [CpState.C, CpState.C, CpState.C]


def test_gap_readings_keep_the_previous_state_and_reset_a_candidate() -> None:
    detector = PilotDetector()
    feed(detector, 9.0, 9.0)
    assert feed(detector, 6.0, 7.5, 6.0) == [CpState.B, CpState.B, CpState.B]
    assert feed(detector, 6.0) == [CpState.C]


def test_leaving_c_is_confirmed_even_when_readings_disagree() -> None:
    detector = PilotDetector()
    feed(detector, 6.0, 6.0)
    # a bouncing unplug: A, E, A never gives two equal readings
    assert feed(detector, 12.0, 0.0) == [CpState.C, CpState.E]


def test_diode_is_seen_from_the_negative_level() -> None:
    assert diode_present(pilot_levels(CpState.C, PilotMode.PWM, diode=True))
    assert not diode_present(pilot_levels(CpState.C, PilotMode.PWM, diode=False))


@pytest.mark.parametrize(
    ("amps", "duty"),
    [(6, 10.0), (10, 16.66), (16, 26.66), (32, 53.33), (51, 85.0), (63, 89.2), (80, 96.0), (100, 96.0)],
)
def test_duty_formula_both_ranges(amps: float, duty: float) -> None:
    assert duty_for_current(amps) == pytest.approx(duty, abs=0.005)


@pytest.mark.parametrize("amps", [0, 5.9, -1, math.nan])
def test_nothing_is_offered_below_6_amps(amps: float) -> None:
    assert duty_for_current(amps) is None


@pytest.mark.parametrize("amps", [6, 6.5, 10, 13, 16, 20, 32, 40, 51, 52, 63, 70, 80])
def test_the_ev_never_reads_more_than_offered(amps: float) -> None:
    duty = duty_for_current(amps)
    assert duty is not None
    read = current_for_duty(duty)
    assert read <= amps + 1e-9
    assert read >= min(amps, 51.0) - 0.1  # 51..53.75 A can only be offered as 51 A


@pytest.mark.parametrize(("duty", "amps"), [(5.0, 0.0), (8.5, 6.0), (50.0, 30.0), (90.0, 65.0), (98.0, 0.0)])
def test_how_an_ev_reads_the_duty(duty: float, amps: float) -> None:
    assert current_for_duty(duty) == pytest.approx(amps)
