"""The supervisor through the sequences of IEC 61851-1 Annex A, one scenario per test."""

from __future__ import annotations

import itertools

import pytest

from controller.safety.pilot import CpState, PilotMode, PilotSample
from controller.safety.supervisor import (
    CONTACTOR_BREAK_S,
    FAULT_HOLD_F_S,
    OVERCURRENT_TIME_S,
    PWM_OFF_OPEN_S,
    ContactorTest,
    Fault,
    Inputs,
    Output,
    RcdTest,
    Supervisor,
)
from drivers.sim import pilot_levels

PERIOD = 0.02  # the default 50 Hz control loop


class World:
    """One EVSE with an EV and a contactor that follows its command."""

    def __init__(self, feedback: bool = True, **supervisor: float | bool) -> None:
        self.sup = Supervisor(max_current_a=32.0, **supervisor)  # type: ignore[arg-type]
        self.feedback = feedback  # without a feedback contact the driver echoes the command
        self.now = 0.0
        self.ev = CpState.A
        self.diode = True
        self.weld = self.stuck = self.rcd = False
        self.meter_ok = True
        self.current_a: float | None = None
        self.authorized = True
        self.limit = 32.0
        self.closed = False
        self.lock_works = True
        self.locked = False
        self.rcd_test = RcdTest.NONE
        self.unlock = False
        self.test_contactor = False  # maintenance: evse doctor --actuate
        self.out: Output | None = None
        self.pilots: list[tuple[float, PilotMode, float]] = []

    def run(self, seconds: float) -> Output:
        for _ in range(round(seconds / PERIOD)):
            self.step()
        assert self.out is not None
        return self.out

    def step(self) -> Output:
        self.now += PERIOD
        mode = self.out.pilot if self.out else PilotMode.STEADY
        self.out = self.sup.step(
            self.now,
            Inputs(
                sample=pilot_levels(self.ev, mode, self.diode),
                feedback_closed=self.closed if self.feedback else self.sup.contactor,
                rcd_tripped=self.rcd,
                meter_ok=self.meter_ok,
                current_a=self.current_a,
                authorized=self.authorized,
                limit_a=self.limit,
                lock_engaged=self.locked,
                unlock_requested=self.unlock,
                rcd_test=self.rcd_test,
                test_contactor=self.test_contactor,
            ),
        )
        self.locked = self.out.lock and self.lock_works
        self.pilots.append((self.now, self.out.pilot, self.out.duty_percent))
        if self.out.contactor:
            self.closed = not self.stuck
        elif not self.weld:
            self.closed = False
        return self.out

    def until(self, condition: str, limit_s: float = 10.0) -> float:
        """Seconds until ``condition`` holds for the output (evaluated on it)."""
        start = self.now
        while self.now - start < limit_s:
            out = self.step()
            names = {"out": out, "PilotMode": PilotMode, "Fault": Fault, "ContactorTest": ContactorTest}
            if eval(condition, {}, names):
                return self.now - start
        raise AssertionError(f"{condition} not reached within {limit_s} s")

    def charging(self) -> World:
        self.ev = CpState.C
        self.until("out.contactor")
        return self


def test_ev_requests_energy_contactor_closes_within_3_s() -> None:
    world = World()
    world.ev = CpState.B
    world.run(1.0)
    world.ev = CpState.C
    assert world.until("out.contactor") <= 3.0


def test_no_closing_without_authorization() -> None:
    world = World()
    world.authorized = False
    world.ev = CpState.C
    out = world.run(5.0)
    assert not out.contactor and out.pilot is PilotMode.STEADY


@pytest.mark.parametrize("state", [CpState.B, CpState.A, CpState.E])
def test_ev_leaves_c_contactor_opens_within_100_ms(state: CpState) -> None:
    world = World().charging()
    world.ev = state
    assert world.until("not out.contactor") <= 0.100


def test_state_d_needs_ventilation() -> None:
    world = World()
    world.ev = CpState.D
    assert not world.run(5.0).contactor
    vented = World(ventilation=True)
    vented.ev = CpState.D
    assert vented.until("out.contactor") <= 3.0


@pytest.mark.parametrize(
    ("fault", "attribute", "value"),
    [(Fault.RCD, "rcd", True), (Fault.METER, "meter_ok", False)],
)
def test_fault_opens_within_100_ms_and_holds_state_f(fault: Fault, attribute: str, value: bool) -> None:
    world = World().charging()
    setattr(world, attribute, value)
    assert world.until("not out.contactor") <= 0.100
    assert fault in world.out.faults  # type: ignore[union-attr]
    f_started = world.now
    f_held = world.until("out.pilot is not PilotMode.NEGATIVE", limit_s=2.0) if fault is Fault.METER else 1.0
    assert world.now - f_started + PERIOD >= FAULT_HOLD_F_S or f_held >= FAULT_HOLD_F_S


def test_residual_current_latches_until_reset() -> None:
    world = World().charging()
    world.rcd = True
    world.run(0.5)
    world.rcd = False
    out = world.run(5.0)
    assert Fault.RCD in out.faults and out.pilot is PilotMode.NEGATIVE and not out.contactor
    world.sup.reset()
    assert not world.run(0.1).faults


def test_missing_diode_never_closes_and_clears_when_it_comes_back() -> None:
    world = World()
    world.diode = False
    world.ev = CpState.C
    out = world.run(3.0)
    assert Fault.DIODE in out.faults and not out.contactor
    world.diode = True
    assert world.until("out.contactor") <= 3.0


def test_pilot_short_from_c_is_not_mistaken_for_a_missing_diode() -> None:
    world = World().charging()
    world.ev = CpState.E
    world.run(0.2)
    assert not world.out.contactor and Fault.DIODE not in world.out.faults  # type: ignore[union-attr]


def test_weld_is_detected_when_the_contactor_is_told_to_open() -> None:
    world = World().charging()
    world.weld = True
    world.ev = CpState.B
    assert world.until("Fault.CONTACTOR_WELD in out.faults") <= 0.5 + 2 * PERIOD + 0.1
    out = world.run(2.0)
    assert out.pilot is PilotMode.NEGATIVE and not out.contactor


def test_stuck_contactor_is_a_latched_fault() -> None:
    world = World()
    world.stuck = True
    world.ev = CpState.C
    world.until("Fault.CONTACTOR_STUCK in out.faults")
    world.stuck = False
    assert Fault.CONTACTOR_STUCK in world.run(5.0).faults


def test_pwm_removed_and_ev_stays_in_c_opens_after_6_s() -> None:
    world = World().charging()
    world.limit = 0.0  # the station withdraws the offer; the EV ignores it
    assert world.until("out.pilot is PilotMode.STEADY") <= 2 * PERIOD
    waited = world.until("not out.contactor")
    # the opening, its feedback, then the release: a step each
    assert PWM_OFF_OPEN_S <= waited <= PWM_OFF_OPEN_S + 4 * PERIOD


def test_limit_below_6_a_offers_nothing_and_resumes_when_it_rises() -> None:
    world = World().charging()
    world.limit = 5.0
    world.ev = CpState.C
    out = world.run(8.0)
    assert out.pilot is PilotMode.STEADY and out.offered_a == 0 and not out.contactor
    world.limit = 16.0
    world.until("out.contactor")
    assert world.out.offered_a == pytest.approx(16.0, abs=0.1)  # type: ignore[union-attr]


def test_offered_current_changes_at_most_once_per_5_s() -> None:
    world = World().charging()
    for limit in (20.0, 10.0, 16.0, 25.0):
        world.limit = limit
        world.run(1.0)
    duties = [(t, d) for t, mode, d in world.pilots if mode is PilotMode.PWM]
    changes = [t for (t, d), (_, before) in zip(duties[1:], duties, strict=False) if d != before]
    assert all(b - a >= 5.0 - 1e-9 for a, b in itertools.pairwise(changes))
    assert world.run(10.0).offered_a == pytest.approx(25.0, abs=0.1)


def test_soft_overcurrent_stops_after_7_s() -> None:
    world = World().charging()
    world.current_a = 45.0  # offered 32 A; threshold (32 + 0.5) x 1.1 = 35.75 A
    waited = world.until("Fault.OVERCURRENT in out.faults")
    assert OVERCURRENT_TIME_S - PERIOD <= waited <= OVERCURRENT_TIME_S + 2 * PERIOD
    assert not world.out.contactor  # type: ignore[union-attr]
    world.current_a = 0.0
    world.ev = CpState.A
    assert Fault.OVERCURRENT not in world.run(0.5).faults


def test_current_within_tolerance_is_not_overcurrent() -> None:
    world = World().charging()
    world.current_a = 35.0
    assert world.run(10.0).contactor


class Glitching(World):
    """A world whose pilot wire shows ``volts`` instead of the EV for some samples."""

    def __init__(self, **supervisor: float | bool) -> None:
        super().__init__(**supervisor)
        self.wire: list[float] = []

    def step(self) -> Output:
        if not self.wire:
            return super().step()
        volts = self.wire.pop(0)
        self.now += PERIOD
        mode = self.out.pilot if self.out else PilotMode.STEADY
        low = pilot_levels(self.ev, mode, self.diode).low_v
        self.out = self.sup.step(
            self.now,
            Inputs(
                sample=PilotSample(volts, low),
                feedback_closed=self.closed,
                authorized=self.authorized,
                limit_a=self.limit,
            ),
        )
        self.closed = self.out.contactor
        return self.out


def test_no_closing_on_a_single_b_sample_when_pwm_starts() -> None:
    world = Glitching()
    world.authorized = False
    world.ev = CpState.C
    world.run(0.2)  # C confirmed, no PWM
    world.authorized = True
    world.step()  # PWM starts
    world.wire = [9.0]  # the first PWM sample reads B
    assert not world.step().contactor


@pytest.mark.parametrize(
    "pattern",
    [[9.0, 7.5], [7.5], [12.0, 6.0], [6.0, 3.0], [10.5, 6.0, 4.5]],
    ids=["B-gap", "steady gap", "A-C", "C-D unventilated", "gaps around C"],
)
def test_a_pilot_that_does_not_stay_in_c_opens_within_100_ms(pattern: list[float]) -> None:
    world = Glitching().charging()
    world.wire = pattern * 50
    assert world.until("not out.contactor", limit_s=1.0) <= 0.100


def test_one_noisy_sample_does_not_interrupt_charging() -> None:
    world = Glitching().charging()
    for _ in range(10):
        world.wire = [7.5]
        assert world.step().contactor
        world.run(0.1)
        assert world.out is not None and world.out.contactor


def test_pwm_off_and_on_again_never_raises_the_offer_within_5_s() -> None:
    world = World()
    world.limit = 16.0
    world.charging()
    world.limit = 0.0
    world.run(0.2)
    world.limit = 32.0
    assert world.until("out.pilot is PilotMode.PWM") < 0.1
    assert world.out.offered_a == pytest.approx(16.0, abs=0.1)  # type: ignore[union-attr]
    world.run(5.0)
    assert world.out.offered_a == pytest.approx(32.0, abs=0.1)  # type: ignore[union-attr]


def test_a_fitted_lock_engages_before_closing_and_releases_after_unplug() -> None:
    world = World(lock_fitted=True)
    world.ev = CpState.C
    assert world.until("out.contactor") <= 3.0
    assert world.locked
    world.ev = CpState.A
    world.until("not out.contactor")
    # not before the contacts have surely parted and the arc died
    assert CONTACTOR_BREAK_S <= world.until("not out.lock", limit_s=1.0) <= CONTACTOR_BREAK_S + 2 * PERIOD


def test_a_jammed_lock_never_closes_and_reports_a_lock_failure() -> None:
    world = World(lock_fitted=True)
    world.lock_works = False
    world.ev = CpState.C
    waited = world.until("Fault.LOCK in out.faults")
    assert 1.0 <= waited <= 1.0 + 4 * PERIOD  # from the lock command, which waits for C confirmed
    assert not world.run(3.0).contactor


def test_the_lock_holds_5_s_through_a_pilot_short() -> None:
    world = World(lock_fitted=True).charging()
    world.ev = CpState.E
    assert world.until("not out.contactor") <= 0.1
    # 5 s from the last moment the contacts may have been live (the break time after opening)
    assert 4.8 + CONTACTOR_BREAK_S <= world.until("not out.lock", limit_s=8.0) <= 5.1 + CONTACTOR_BREAK_S


def test_no_closing_until_the_residual_current_self_test_passed() -> None:
    world = World()
    world.rcd_test = RcdTest.PENDING
    world.ev = CpState.C
    assert not world.run(3.0).contactor
    world.rcd_test = RcdTest.PASSED
    assert world.until("out.contactor") <= 0.1


def test_a_failed_self_test_is_a_fault_that_blocks_charging() -> None:
    world = World()
    world.rcd_test = RcdTest.FAILED
    world.ev = CpState.C
    out = world.run(3.0)
    assert Fault.RCD_TEST in out.faults and not out.contactor


def test_a_welded_contactor_keeps_the_connector_locked_even_after_unplug() -> None:
    world = World(lock_fitted=True).charging()
    world.weld = True
    world.ev = CpState.A  # the plug end is pulled while the contacts weld
    world.run(8.0)
    assert world.closed and world.out is not None
    assert Fault.CONTACTOR_WELD in world.out.faults and world.out.lock


def test_a_lock_that_opens_under_load_opens_the_contactor_within_two_samples() -> None:
    world = World(lock_fitted=True).charging()
    world.lock_works = False
    # the switch reports open one step after the jam in this model, then two samples
    assert world.until("not out.contactor") <= 3 * PERIOD + 1e-9


# -- UnlockConnector: the supervisor releases the lock, never over live contacts ----------------


def test_an_unlock_request_releases_the_lock_of_a_connected_ev_without_energy() -> None:
    """1.6 TC_017_1 / 2.0.1 TC_F_06: EV plugged in (B), no transaction: the lock releases."""
    world = World(lock_fitted=True)
    world.authorized = False
    world.ev = CpState.B
    world.run(0.5)
    assert world.locked
    world.unlock = True
    assert world.until("not out.lock", limit_s=1.0) <= 2 * PERIOD
    world.unlock = False  # the request is answered; the release holds while the EV stays
    world.run(3.0)
    assert not world.out.lock and not world.out.faults  # type: ignore[union-attr]


def test_an_unlock_request_waits_for_the_contactor_to_open() -> None:
    """IEC 61851-1: the lock stays engaged while energy may flow. The transaction ended (no
    permit) but the EV stays in C: the contactor opens after the PWM_OFF_OPEN_S grace, and
    the lock releases CONTACTOR_BREAK_S after that."""
    world = World(lock_fitted=True).charging()
    world.authorized = False
    world.unlock = True
    opened = world.until("not out.contactor", limit_s=PWM_OFF_OPEN_S + 1.0)
    assert PWM_OFF_OPEN_S <= opened <= PWM_OFF_OPEN_S + 2 * PERIOD
    assert world.out is not None and world.out.lock
    assert CONTACTOR_BREAK_S <= world.until("not out.lock", limit_s=1.0) <= CONTACTOR_BREAK_S + 2 * PERIOD
    assert not world.closed


def test_an_unlock_request_during_charging_waits_out_the_break_time_without_contactor_feedback() -> None:
    """A contactor without a feedback contact (gpio driver, no ``feedback_pin``): the driver
    echoes the command, so the feedback says open one sample after the open command. The EV
    ignores the PWM loss and stays in C, the contactor opens under load after PWM_OFF_OPEN_S
    (IEC 61851-1 Table A.6 seq. 10.2), and the lock still holds CONTACTOR_BREAK_S after that
    (1.6 UnlockConnector / 2.0.1 F05: the transaction ends first, then the unlock)."""
    world = World(lock_fitted=True, feedback=False).charging()
    world.authorized = False
    world.unlock = True
    opened_at = world.now + world.until("not out.contactor", limit_s=PWM_OFF_OPEN_S + 1.0)
    while world.now - opened_at < CONTACTOR_BREAK_S - 1e-9:
        out = world.step()
        assert out.lock and world.locked, f"released {(world.now - opened_at) * 1000:.0f} ms after opening"
    assert world.until("not out.lock", limit_s=1.0) <= 2 * PERIOD  # the unlock still happens
    world.unlock = False
    assert not world.run(1.0).lock and not world.out.faults  # type: ignore[union-attr]


def test_an_unlock_request_never_releases_over_welded_contacts() -> None:
    world = World(lock_fitted=True).charging()
    world.weld = True
    world.authorized = False
    world.ev = CpState.B
    world.unlock = True
    world.run(8.0)
    assert world.closed and world.out is not None
    assert Fault.CONTACTOR_WELD in world.out.faults and world.out.lock


def test_an_unlock_request_is_ignored_while_energy_is_authorized() -> None:
    """2.0.1 F05.FR.02: no unlocking during an authorized transaction."""
    world = World(lock_fitted=True).charging()
    world.unlock = True
    out = world.run(3.0)
    assert out.contactor and out.lock and world.locked


def test_a_released_lock_engages_again_before_a_new_session_closes() -> None:
    world = World(lock_fitted=True)
    world.authorized = False
    world.ev = CpState.C
    world.run(0.5)
    world.unlock = True
    world.until("not out.lock", limit_s=1.0)
    world.unlock = False
    world.run(1.0)
    assert not world.locked
    world.authorized = True  # a new session on the same EV: lock first, then close
    world.until("out.contactor", limit_s=3.0)
    assert world.locked


def test_an_unlock_request_ends_when_the_ev_leaves() -> None:
    world = World(lock_fitted=True)
    world.authorized = False
    world.ev = CpState.B
    world.run(0.5)
    world.unlock = True
    world.until("not out.lock", limit_s=1.0)
    world.unlock = False
    world.ev = CpState.A
    world.run(0.5)
    world.ev = CpState.B  # the next EV is locked in as before
    assert world.until("out.lock", limit_s=1.0) <= 3 * PERIOD
