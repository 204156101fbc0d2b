"""Property test of the safety supervisor.

A hypothesis state machine plays the physical world around one EVSE: the EV moves
between pilot states, its diode goes missing, the residual-current sensor trips, the
meter falls silent, the contactor welds or sticks, the EV draws more than offered, and
the station model grants and withdraws authorization and limits, and maintenance asks
for a contactor test with no EV (`evse doctor --actuate`). Time advances on a
simulated clock in control-loop steps. After every step it checks the properties the
docs/safety.md lists.
"""

from __future__ import annotations

import math

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from controller.safety.control import RECHECK_S, REST_HZ
from controller.safety.pilot import CONNECTED, CpState, PilotMode, PilotSample, classify, diode_present
from controller.safety.supervisor import (
    CLOSE_BUDGET_S,
    CONTACTOR_BREAK_S,
    DUTY_CHANGE_INTERVAL_S,
    FAULT_HOLD_F_S,
    OPEN_BUDGET_S,
    PWM_OFF_OPEN_S,
    ContactorTest,
    Fault,
    Inputs,
    Output,
    RcdTest,
    Supervisor,
)
from drivers.sim import pilot_levels

EV_STATES = [CpState.A, CpState.B, CpState.C, CpState.D, CpState.E]
# Raw high levels at band edges, in gaps, out of range and NaN: noise and broken wiring.
GLITCH_VOLTS = [
    12.0,
    10.99,
    10.5,
    9.0,
    8.0,
    7.5,
    7.0,
    6.0,
    5.0,
    4.0,
    3.0,
    1.5,
    0.0,
    -1.0,
    -6.0,
    -12.0,
    14.0,
    math.nan,
]
EPS = 1e-9


class SupervisorMachine(RuleBasedStateMachine):
    @initialize(
        period=st.sampled_from([0.005, 0.01, 0.02]),
        ventilation=st.booleans(),
        max_current=st.sampled_from([6.0, 16.0, 32.0, 63.0, 80.0]),
        lock_fitted=st.booleans(),
        feedback_fitted=st.booleans(),
    )
    def setup(
        self, period: float, ventilation: bool, max_current: float, lock_fitted: bool, feedback_fitted: bool
    ) -> None:
        self.period = period
        # without a feedback contact the driver echoes the last command (gpio, no feedback_pin)
        self.feedback_fitted = feedback_fitted
        self.sup = Supervisor(max_current_a=max_current, ventilation=ventilation, lock_fitted=lock_fitted)
        self.lock_works = True
        self.locked = False
        self.unlock = False
        self.rcd_test = RcdTest.NONE
        self.test_request = False
        self.test_closed_at: float | None = None
        self.now = 0.0
        # the physical world
        self.ev = CpState.A
        self.diode = True
        self.rcd = False
        self.meter_ok = True
        self.contactor_mode = "normal"  # "weld" | "stuck"
        self.physical_closed = False
        self.opened_at = float("-inf")  # when the contactor was last commanded open
        self.overdraw = False
        self.glitch: tuple[float, int] | None = None  # (raw high level, steps left)
        self.raw_history: list[float] = []
        self.last_pair_in_band = float("-inf")
        self.authorized = False
        self.limit = 32.0
        # what the checks remember
        self.last: Output | None = None
        self.forbidden_since: float | None = None
        self.good_since: float | None = None
        self.pwm_off_since: float | None = None
        self.hold_until = float("-inf")
        self.duty_changed_at: float | None = None
        self.last_duty: float | None = None
        self.mismatch_since: float | None = None

    # -- the world changes ---------------------------------------------------------

    @rule(state=st.sampled_from(EV_STATES))
    def ev_moves(self, state: CpState) -> None:
        self.ev = state

    @rule(present=st.booleans())
    def diode(self, present: bool) -> None:
        self.diode = present

    @rule(tripped=st.booleans())
    def residual_current(self, tripped: bool) -> None:
        self.rcd = tripped

    @rule(ok=st.booleans())
    def meter(self, ok: bool) -> None:
        self.meter_ok = ok

    @rule(mode=st.sampled_from(["normal", "normal", "weld", "stuck"]))
    def contactor_hardware(self, mode: str) -> None:
        self.contactor_mode = mode

    @rule(volts=st.sampled_from(GLITCH_VOLTS), steps=st.integers(min_value=1, max_value=30))
    def pilot_glitch(self, volts: float, steps: int) -> None:
        self.glitch = (volts, steps)

    @rule(works=st.booleans())
    def connector_lock(self, works: bool) -> None:
        self.lock_works = works

    @rule(requested=st.booleans())
    def unlock_request(self, requested: bool) -> None:
        self.unlock = requested

    @rule(state=st.sampled_from(list(RcdTest)))
    def rcd_self_test(self, state: RcdTest) -> None:
        self.rcd_test = state

    @rule(requested=st.booleans())
    def contactor_test(self, requested: bool) -> None:
        self.test_request = requested

    @rule(on=st.booleans())
    def ev_overdraws(self, on: bool) -> None:
        self.overdraw = on

    @rule(authorized=st.booleans())
    def authorization(self, authorized: bool) -> None:
        self.authorized = authorized

    @rule(limit=st.sampled_from([0.0, 5.9, 6.0, 10.0, 16.0, 32.0, 100.0]))
    def limit_changes(self, limit: float) -> None:
        self.limit = limit

    @precondition(lambda self: self.last is not None and Fault.RCD in self.last.faults)
    @rule()
    def restart(self) -> None:
        self.sup.reset()
        self.last = None
        self.duty_changed_at = self.last_duty = None
        self.hold_until = float("-inf")
        self.mismatch_since = None
        self.opened_at = float("-inf")  # a restart takes longer than the break time

    @rule(steps=st.integers(min_value=1, max_value=400))
    def time_passes(self, steps: int) -> None:
        for _ in range(steps):
            self._step()

    @rule(seconds=st.sampled_from([3.5, 6.5, 8.0]))
    def long_wait(self, seconds: float) -> None:
        for _ in range(int(seconds / self.period)):
            self._step()

    # -- one control step ----------------------------------------------------------

    def _current(self) -> float | None:
        if not self.meter_ok:
            return None
        if not self.physical_closed or self.ev not in (CpState.C, CpState.D):
            return 0.0
        offered = self.last.offered_a if self.last else 0.0
        return offered + 10.0 if self.overdraw else offered

    def _step(self) -> None:
        # The control loop's schedule: slower at rest, a quick second sample when one may
        # confirm an opening (controller.safety.control.ControlLoop.run).
        if self.sup.open_pending():
            self.now += min(self.period, RECHECK_S)
        elif self.sup.at_rest(self.now):
            self.now += max(self.period, 1 / REST_HZ)
        else:
            self.now += self.period
        mode = self.last.pilot if self.last else PilotMode.STEADY
        sample = pilot_levels(self.ev, mode, self.diode)
        if self.glitch is not None:
            volts, left = self.glitch
            sample = PilotSample(volts, sample.low_v)
            self.glitch = (volts, left - 1) if left > 1 else None
        self.raw_history = [*self.raw_history[-1:], sample.high_v]
        if len(self.raw_history) == 2 and all(self._energy_volts(v) for v in self.raw_history):
            self.last_pair_in_band = self.now
        inputs = Inputs(
            sample=sample,
            feedback_closed=self.physical_closed if self.feedback_fitted else self.sup.contactor,
            rcd_tripped=self.rcd,
            meter_ok=self.meter_ok,
            current_a=self._current(),
            authorized=self.authorized,
            limit_a=self.limit,
            lock_engaged=self.locked,
            unlock_requested=self.unlock,
            rcd_test=self.rcd_test,
            test_contactor=self.test_request,
        )
        previous = self.last
        out = self.sup.step(self.now, inputs)
        self.last = out
        self._check(previous, out, inputs, pwm_during_sample=mode is PilotMode.PWM)
        self.locked = out.lock and self.lock_works
        # the contactor hardware answers the command
        if out.contactor:
            self.physical_closed = self.contactor_mode != "stuck"
        elif self.contactor_mode != "weld":
            self.physical_closed = False

    # -- the properties ------------------------------------------------------------

    def _energy_state(self, state: CpState) -> bool:
        return state is CpState.C or (state is CpState.D and self.sup.ventilation)

    def _energy_volts(self, volts: float) -> bool:
        state = classify(volts)
        return state is not None and self._energy_state(state)

    def _check(self, prev: Output | None, out: Output, inp: Inputs, pwm_during_sample: bool) -> None:
        was_closed = prev.contactor if prev else False
        testing = out.contactor and out.contactor_test is ContactorTest.CLOSED
        if testing:
            self._check_test(was_closed, out, inp)
        else:
            self.test_closed_at = None
        if out.contactor_test in (ContactorTest.PASSED, ContactorTest.FAILED):
            event(f"contactor test {out.contactor_test}")
        self._check_energy(prev, out, inp, pwm_during_sample, testing)

    def _check_test(self, was_closed: bool, out: Output, inp: Inputs) -> None:
        """P8: a contactor test closes only with no EV on fresh samples, holds only while
        nothing is unsafe, and lasts at most the feedback timeout (plus a step or two)."""
        if not was_closed:
            event("contactor test closed")
            self.test_closed_at = self.now
            assert all(classify(v) is CpState.A for v in self.raw_history), "test closed without two A"
            assert len(self.raw_history) == 2, "test closed on the first sample"
            assert self.now - self.opened_at >= self.sup.min_close_interval_s - EPS
        assert classify(self.raw_history[-1]) is CpState.A, "test held closed outside A"
        assert out.cp is CpState.A and out.pilot is PilotMode.STEADY, "test closed with the pilot live"
        assert not out.faults, f"test held closed with faults {set(out.faults)}"
        assert inp.test_contactor, "test closed without its request"
        assert not inp.authorized, "test closed while authorized"
        assert not self.rcd and self.meter_ok
        assert self.test_closed_at is not None
        assert self.now - self.test_closed_at <= self.sup.feedback_timeout_s + 2 * self.period + EPS

    def _check_energy(
        self, prev: Output | None, out: Output, inp: Inputs, pwm_during_sample: bool, testing: bool
    ) -> None:
        was_closed = prev.contactor if prev else False
        energy = out.contactor and not testing

        # P1: the contactor is commanded closed only in a permitted state.
        if energy and not was_closed:
            assert self._energy_state(out.cp), "closed outside C/D"
            assert out.pilot is PilotMode.PWM and pwm_during_sample, "closed without PWM"
            assert not out.faults, f"closed with faults {set(out.faults)}"
            assert inp.authorized, "closed without authorization"
            assert diode_present(inp.sample), "closed without the EV diode in the sample"
            assert self.last_pair_in_band == self.now, "closed without two raw samples in C"
            assert inp.lock_engaged or not self.sup.lock_fitted, "closed with the connector unlocked"
            assert inp.rcd_test in (RcdTest.NONE, RcdTest.PASSED), "closed before the RCD self-test passed"
        if out.contactor and self.sup.lock_fitted:
            assert out.lock, "unlock commanded with the contactor closed"
        # P1b: never unlocked over live contacts (reported closed or welded) nor less than
        # CONTACTOR_BREAK_S after an open command, feedback fitted or not, an unlock request
        # (UnlockConnector) included.
        if was_closed and not out.contactor:
            self.opened_at = self.now
        if self.sup.lock_fitted and (inp.feedback_closed or Fault.CONTACTOR_WELD in out.faults):
            assert out.lock, "unlock commanded over live contacts"
        if self.sup.lock_fitted and self.now - self.opened_at < CONTACTOR_BREAK_S - EPS:
            assert out.lock, f"unlock commanded {(self.now - self.opened_at) * 1000:.0f} ms after opening"
        if energy:
            since = self.now - self.last_pair_in_band
            assert since <= OPEN_BUDGET_S + EPS, f"closed {since * 1000:.0f} ms without two raw C samples"
            assert not out.faults, f"held closed with faults {set(out.faults)}"
            assert out.pilot is not PilotMode.NEGATIVE, "held closed in state F"
            assert self._energy_state(out.cp), "held closed outside C/D"

        # P2: every required opening happens inside its budget.
        wire = self.raw_history[-1]  # what the pilot wire shows, a glitch included
        physically_forbidden = (
            not self._energy_volts(wire)
            or self.rcd
            or not self.meter_ok
            # a missing diode as the wire shows it: an EV level whose PWM low half is not -12 V
            or (pwm_during_sample and classify(wire) in CONNECTED and not diode_present(inp.sample))
        )
        if physically_forbidden:
            if self.forbidden_since is None:
                self.forbidden_since = self.now
        else:
            self.forbidden_since = None
        if energy and self.forbidden_since is not None:
            late = self.now - self.forbidden_since
            assert late <= OPEN_BUDGET_S + EPS, f"contactor still closed {late * 1000:.0f} ms after"

        # P3: PWM removed while closed: open within 6 s.
        if out.pilot is PilotMode.PWM:
            self.pwm_off_since = None
        elif prev is not None and prev.pilot is PilotMode.PWM:
            self.pwm_off_since = self.now
        if energy and self.pwm_off_since is not None:
            assert self.now - self.pwm_off_since <= PWM_OFF_OPEN_S + self.period + EPS

        # P4: a new fault holds state F for at least 300 ms.
        if prev is not None and out.faults - prev.faults:
            self.hold_until = self.now + FAULT_HOLD_F_S
        if self.now < self.hold_until - EPS:
            assert out.pilot is PilotMode.NEGATIVE, "state F not held after a fault"

        # P5: the duty changes at most once per 5 s, and never offers below 6 A or above max.
        if out.pilot is PilotMode.PWM:
            assert 6.0 <= out.offered_a <= self.sup.max_current_a + EPS
            if prev is None or prev.pilot is not PilotMode.PWM:
                if (
                    self.duty_changed_at is not None
                    and self.last_duty is not None
                    and (self.now - self.duty_changed_at < DUTY_CHANGE_INTERVAL_S - EPS)
                ):
                    assert out.duty_percent <= self.last_duty, "PWM restart raised the offer within 5 s"
                if (
                    out.duty_percent != self.last_duty
                    or self.duty_changed_at is None
                    or (self.now - self.duty_changed_at >= DUTY_CHANGE_INTERVAL_S - EPS)
                ):
                    self.duty_changed_at = self.now
            elif out.duty_percent != prev.duty_percent:
                assert self.duty_changed_at is not None
                assert self.now - self.duty_changed_at >= DUTY_CHANGE_INTERVAL_S - EPS
                self.duty_changed_at = self.now
            self.last_duty = out.duty_percent

        # P6: feedback that disagrees with the command for longer than the feedback timeout
        # becomes a latched fault (a weld if it says closed, stuck if it says open).
        if out.contactor != was_closed or inp.feedback_closed == was_closed:
            self.mismatch_since = None  # a new command restarts the timer, as it must
        elif self.mismatch_since is None:
            self.mismatch_since = self.now
        if self.mismatch_since is not None and (
            self.now - self.mismatch_since > self.sup.feedback_timeout_s + self.period + EPS
        ):
            expected = Fault.CONTACTOR_WELD if inp.feedback_closed else Fault.CONTACTOR_STUCK
            assert expected in out.faults, f"{expected} not detected"

        # P7: everything allowed for 3 s -> the contactor is closed.
        good = (
            self._energy_state(self.ev)
            and self.diode
            and not self.rcd
            and self.meter_ok
            and self.contactor_mode == "normal"
            and (self.lock_works or not self.sup.lock_fitted)
            and self.rcd_test in (RcdTest.NONE, RcdTest.PASSED)
            and not self.overdraw
            and self.authorized
            and self.glitch is None
            and min(self.limit, self.sup.max_current_a) >= 6.0
            and not out.faults
        )
        if good:
            if self.good_since is None:
                self.good_since = self.now
            if self.now - self.good_since > CLOSE_BUDGET_S:
                assert out.contactor, "not closed 3 s after everything allowed it"
        else:
            self.good_since = None

    @invariant()
    def rest_and_recheck_only_when_safe(self) -> None:
        if self.sup.at_rest(self.now):
            assert not self.sup.contactor and not self.sup.faults and self.sup.pilot is PilotMode.STEADY
            assert self.sup.cp is CpState.A
        if self.sup.open_pending():
            assert self.sup.contactor

    @invariant()
    def latched_faults_stay(self) -> None:
        if self.last is not None and self.last.faults & {Fault.RCD}:
            assert self.sup.faults & {Fault.RCD}


# HYPOTHESIS_PROFILE=thorough (see tests/conftest.py) runs many more examples.
SupervisorMachine.TestCase.settings = settings(stateful_step_count=60, deadline=None)
TestSupervisorProperties = SupervisorMachine.TestCase
