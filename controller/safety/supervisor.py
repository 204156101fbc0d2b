"""The safety supervisor of one EVSE: what the pilot and the contactor must do now.

Theory of operation
-------------------
Everything that decides whether energy may flow lives in this file. It does no I/O and
reads no clock: the control loop calls ``Supervisor.step(now, inputs)`` at the pilot
sampling rate with a monotonic time in seconds and what the hardware and the station
model say, and applies the returned ``Output`` to the pilot generator and the contactor.

Each step does three things, in this order:

1. **Faults.** Hardware conditions (residual current, contactor feedback disagreeing
   with the command, the EV diode missing, the meter silent, sustained over-current, a
   driver failing) become the set ``faults``. Residual current and contactor faults
   latch until ``reset()`` (a restart): the EVSE stays unavailable after the cause goes.
   Over-current and a missing diode hold until the EV is unplugged or, for the diode,
   until it is measured present again (in E or F it cannot be measured, so it holds);
   the others follow their condition.
   A new fault drives the pilot to -12 V (state F) for at least ``FAULT_HOLD_F_S``;
   a latched fault keeps it there.
2. **Pilot.** PWM runs only while an EV is connected (B, C or D; D only with
   ventilation), the station model authorizes energy, the limit is at least 6 A and no
   fault other than a missing diode is active (the diode can only be re-checked with
   PWM running). The duty changes at most once per ``DUTY_CHANGE_INTERVAL_S``, and PWM
   switched off and on again within that time never offers more than before.
3. **Contactor.** See ``CLOSE_REQUIRES`` and ``OPEN_WHEN`` below: the whole rule set.
   One exception, for maintenance (``evse doctor --actuate``): ``TEST_CLOSE_REQUIRES``
   lets the contactor close once with no EV, to see its feedback follow both ways.

Time budgets (the property tests check every one):

- Pilot leaves C/D, or any fault: open in the same step the change is confirmed. The
  control loop takes the confirming sample 5 ms after the first one (``open_pending``),
  so at the default 50 Hz that is within a period plus 5 ms of the physical change (plus
  the ADC's conversion time on hardware: 6-12 ms on an ADS1115), inside the 100 ms of
  ``OPEN_BUDGET_S``.
- C with everything allowed: close in the step after PWM is seen with the diode,
  well inside ``CLOSE_BUDGET_S``.
- PWM removed while the EV stays in C: open after ``PWM_OFF_OPEN_S`` under load.
- The OCPP process lost (``Inputs.controller_lost``): PWM off and open in the same step.
- Connector lock: released no sooner than ``CONTACTOR_BREAK_S`` after the open command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from controller.safety.pilot import (
    CONNECTED,
    CpState,
    PilotDetector,
    PilotMode,
    PilotSample,
    classify,
    current_for_duty,
    diode_present,
    duty_for_current,
)

# Timing, IEC 61851-1 Annex A.
OPEN_BUDGET_S = 0.100  # Table A.6 seq. 8.1: EV stops requesting -> contactor open
CLOSE_BUDGET_S = 3.0  # Table A.6 seq. 4: EV requests (C) -> contactor closed
PWM_OFF_OPEN_S = 6.0  # Table A.6 seq. 10.2: PWM removed, EV stays in C -> open under load
DUTY_CHANGE_INTERVAL_S = 5.0  # A.2.3: offered current changes at most once per 5 s
FAULT_HOLD_F_S = 0.300  # Table A.5: state F held at least 300 ms after a fault
OVERCURRENT_FACTOR = 1.10  # soft over-current: above (offered + 0.5 A) x 1.10 ...
OVERCURRENT_MARGIN_A = 0.5
OVERCURRENT_TIME_S = 7.0  # ... for longer than this (the standard allows no less than 6 s)
FEEDBACK_TIMEOUT_S = 0.5  # contactor feedback must follow a command within this
# Open command -> contacts parted and the arc out: a contactor's opening time (tens of ms
# with an AC coil, several times that for a DC coil with a freewheeling diode, as on relay
# boards) plus arcing up to the next current zero (10 ms at 50 Hz, 8.3 ms at 60 Hz), with
# margin. The lock holds this long after every open command, feedback fitted or not: an
# auxiliary contact reports the armature released, not the arc gone, and without one the
# driver only echoes the command. The interlock must never let a plug be drawn under load.
CONTACTOR_BREAK_S = 0.200
LOCK_TIMEOUT_S = 1.0  # a connector lock must report engaged within this
LOCK_LOST_SAMPLES = 2  # a lock reported open this many samples in a row opens the contactor
LOCK_HOLD_E_F_S = 5.0  # in E or F the connector unlocks only after this (as firmware in the field does)


class Fault(StrEnum):
    RCD = "rcd"
    CONTACTOR_WELD = "contactor_weld"
    CONTACTOR_STUCK = "contactor_stuck"
    DIODE = "diode"
    METER = "meter_offline"
    OVERCURRENT = "overcurrent"
    HARDWARE = "hardware"
    LOCK = "connector_lock"
    RCD_TEST = "rcd_self_test"


class RcdTest(StrEnum):
    """The residual-current sensor's self-test, run by the control loop when an EV connects."""

    NONE = "none"  # no self-test fitted
    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"


class ContactorTest(StrEnum):
    """A maintenance test of the contactor with no EV: closed once, then opened again."""

    IDLE = "idle"  # not requested
    WAITING = "waiting"  # requested; the rules do not allow it yet
    CLOSED = "closed"  # closed for the test, waiting for the feedback to follow
    OPENING = "opening"  # opened again, waiting for the feedback to follow
    PASSED = "passed"  # the feedback followed both commands
    FAILED = "failed"  # a fault (the feedback did not follow: stuck or welded) ended it
    ABORTED = "aborted"  # opened early: the request ended or the pilot left A
    REFUSED = "refused"  # the rules did not allow it within TEST_GRANT_S


LATCHED = frozenset({Fault.RCD, Fault.CONTACTOR_WELD, Fault.CONTACTOR_STUCK})
# A contactor test is refused when the rules do not allow it for this long (the
# contactor's rest after opening, min_close_interval_s, is waited for).
TEST_GRANT_S = 0.5


@dataclass(frozen=True, slots=True)
class Inputs:
    """What the hardware measured and the station model allows, at one step."""

    sample: PilotSample
    feedback_closed: bool = False
    rcd_tripped: bool = False
    meter_ok: bool = True
    hardware_ok: bool = True
    current_a: float | None = None  # highest phase current measured, None if unknown
    authorized: bool = False
    limit_a: float = 0.0
    lock_engaged: bool = False  # connector lock feedback (ignored without a lock)
    unlock_requested: bool = False  # the station asks to release the lock (UnlockConnector)
    rcd_test: RcdTest = RcdTest.NONE
    test_contactor: bool = False  # maintenance asks for one contactor test (see ContactorTest)
    # The OCPP process died or went silent: every permit is withdrawn at once, without the
    # PWM_OFF_OPEN_S grace a withdrawn authorization gets (the safety process sets it).
    controller_lost: bool = False


@dataclass(frozen=True, slots=True)
class Output:
    pilot: PilotMode
    duty_percent: float  # 100 steady, 0 at -12 V
    contactor: bool
    cp: CpState
    faults: frozenset[Fault]
    lock: bool = False
    contactor_test: ContactorTest = ContactorTest.IDLE

    @property
    def offered_a(self) -> float:
        return current_for_duty(self.duty_percent) if self.pilot is PilotMode.PWM else 0.0


@dataclass
class Supervisor:
    max_current_a: float
    ventilation: bool = False
    feedback_timeout_s: float = FEEDBACK_TIMEOUT_S
    min_close_interval_s: float = 0.0  # contactor rating: rest at least this long after opening
    lock_fitted: bool = False
    detector: PilotDetector = field(default_factory=PilotDetector)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Power-on state; the only way to clear a latched fault."""
        self.cp = self.detector.state
        self.faults: frozenset[Fault] = frozenset()
        self.pilot = PilotMode.STEADY
        self.duty = 100.0
        self.contactor = False
        self._hold_until = float("-inf")
        self._duty_changed_at = float("-inf")
        self._last_duty = 100.0  # the last duty offered, kept while PWM is off
        self._pwm_off_since: float | None = None
        self._mismatch_since: float | None = None
        self._overcurrent_since: float | None = None
        self._diode_seen = False
        self._diode_missing = False
        self._overcurrent = False
        # Energy flows only while raw samples keep confirming C (or ventilated D): the
        # detector's hysteresis suits status reporting, but a pilot that lingers in a gap
        # or alternates between bands must not hold the contactor closed.
        self._opened_at = float("-inf")
        self.lock = False
        self._lock_hold_until = float("-inf")
        self._lock_pending_since: float | None = None
        self._unlocking = False  # an unlock request holds until the EV leaves or energy is authorized
        self._unlocked_samples = 0
        self._energy_run = 0  # consecutive raw samples in the energy band (gaps count as outside)
        self._energy_confirmed_at = float("-inf")
        self._idle_run = 0  # consecutive raw samples in A
        self.test = ContactorTest.IDLE
        self._test_since = float("-inf")

    def step(self, now: float, inputs: Inputs) -> Output:
        pwm_during_sample = self.pilot is PilotMode.PWM
        self.cp = self.detector.feed(inputs.sample)
        raw = classify(inputs.sample.high_v)
        in_band = raw is CpState.C or (raw is CpState.D and self.ventilation)
        self._energy_run = self._energy_run + 1 if in_band else 0
        self._idle_run = self._idle_run + 1 if raw is CpState.A else 0
        if self._energy_run >= self.detector.confirmations:
            self._energy_confirmed_at = now
        self._update_faults(now, inputs, pwm_during_sample)
        self._update_pilot(now, inputs)
        self._update_contactor(now, inputs, pwm_during_sample)
        self._update_lock(now, inputs)
        return Output(self.pilot, self.duty, self.contactor, self.cp, self.faults, self.lock, self.test)

    def energy_allowed_state(self) -> bool:
        return self.cp is CpState.C or (self.cp is CpState.D and self.ventilation)

    def at_rest(self, now: float) -> bool:
        """No EV and nothing live or changing: state A, which the last sample agreed with,
        contactor and lock commanded open, steady pilot, no fault and no fault hold. The
        control loop may then sample less often."""
        return (
            self.cp is CpState.A
            and self.detector.settled
            and not self.contactor
            and not self.lock
            and self.pilot is PilotMode.STEADY
            and not self.faults
            and now >= self._hold_until
        )

    def open_pending(self) -> bool:
        """The contactor is closed and the last sample was outside the energy band: the
        next sample may confirm an opening, so the control loop takes it at once."""
        return self.contactor and self.test is not ContactorTest.CLOSED and self._energy_run == 0

    # -- 1. faults ---------------------------------------------------------------------

    def _update_faults(self, now: float, inputs: Inputs, pwm_during_sample: bool) -> None:
        if self.cp is CpState.A:
            self._diode_seen = self._diode_missing = self._overcurrent = False
        elif self.cp in CONNECTED and pwm_during_sample and classify(inputs.sample.high_v) in CONNECTED:
            # Judge the diode only on a sample that itself shows the EV: during a change
            # of state (C -> E, say) the confirmed state still lags behind the sample.
            present = diode_present(inputs.sample)
            self._diode_seen, self._diode_missing = present, not present
        if not pwm_during_sample:
            self._diode_seen = False

        if inputs.feedback_closed == self.contactor:
            self._mismatch_since = None
        elif self._mismatch_since is None:
            self._mismatch_since = now
        feedback_fault = (
            self._mismatch_since is not None and now - self._mismatch_since >= self.feedback_timeout_s
        )

        offered = self.max_offered_a() if pwm_during_sample else 0.0
        threshold = (offered + OVERCURRENT_MARGIN_A) * OVERCURRENT_FACTOR
        if self.contactor and pwm_during_sample and (inputs.current_a or 0.0) > threshold:
            if self._overcurrent_since is None:
                self._overcurrent_since = now
            if now - self._overcurrent_since >= OVERCURRENT_TIME_S:
                self._overcurrent = True
        else:
            self._overcurrent_since = None

        self._unlocked_samples = (
            self._unlocked_samples + 1 if self.lock_fitted and not inputs.lock_engaged else 0
        )
        if self.lock and not inputs.lock_engaged:
            if self._lock_pending_since is None:
                self._lock_pending_since = now
        else:
            self._lock_pending_since = None
        lock_fault = self._lock_pending_since is not None and now - self._lock_pending_since >= LOCK_TIMEOUT_S

        active = {
            Fault.RCD: inputs.rcd_tripped,
            Fault.LOCK: lock_fault,
            Fault.RCD_TEST: inputs.rcd_test is RcdTest.FAILED,
            Fault.CONTACTOR_WELD: feedback_fault and inputs.feedback_closed,
            Fault.CONTACTOR_STUCK: feedback_fault and not inputs.feedback_closed,
            Fault.DIODE: self._diode_missing,
            Fault.METER: not inputs.meter_ok,
            Fault.OVERCURRENT: self._overcurrent,
            Fault.HARDWARE: not inputs.hardware_ok,
        }
        faults = frozenset(f for f, on in active.items() if on) | (self.faults & LATCHED)
        if faults - self.faults:
            self._hold_until = now + FAULT_HOLD_F_S
        self.faults = faults

    def max_offered_a(self) -> float:
        return current_for_duty(self.duty) if self.pilot is PilotMode.PWM else 0.0

    # -- 2. pilot ----------------------------------------------------------------------

    def _update_pilot(self, now: float, inputs: Inputs) -> None:
        was_pwm = self.pilot is PilotMode.PWM
        target = duty_for_current(min(inputs.limit_a, self.max_current_a))
        if now < self._hold_until or self.faults & LATCHED:
            self.pilot, self.duty = PilotMode.NEGATIVE, 0.0
        elif (
            target is not None
            and inputs.authorized
            and not inputs.controller_lost
            and self.cp in CONNECTED
            and (self.cp is not CpState.D or self.ventilation)
            and not self.faults - {Fault.DIODE}
        ):
            recent = now - self._duty_changed_at < DUTY_CHANGE_INTERVAL_S
            if not was_pwm:
                # PWM off and on again must not raise the offer faster than the 5 s rule.
                duty = min(target, self._last_duty) if recent else target
                if duty != self._last_duty or not recent:
                    self._duty_changed_at = now
                self.pilot, self.duty = PilotMode.PWM, duty
            elif target != self.duty and not recent:
                self.duty, self._duty_changed_at = target, now
            self._last_duty = self.duty
        else:
            self.pilot, self.duty = PilotMode.STEADY, 100.0
        if self.pilot is PilotMode.PWM:
            self._pwm_off_since = None
        elif was_pwm:
            self._pwm_off_since = now

    # -- 3. contactor ------------------------------------------------------------------
    #
    # CLOSE_REQUIRES: pilot confirmed C (or D with ventilation) and the last two raw
    #   samples in that band, PWM running now and during the sample, the diode seen in
    #   that sample, no fault, session authorized, min_close_interval_s since it opened,
    #   the connector lock engaged (if fitted), the residual-current self-test passed (if fitted).
    # OPEN_WHEN: any fault; pilot at -12 V; pilot confirmed outside C (D without
    #   ventilation counts as outside); the OCPP process lost; no two consecutive raw samples in the band for
    #   OPEN_BUDGET_S / 2; PWM removed for PWM_OFF_OPEN_S; a fitted lock reported open
    #   for LOCK_LOST_SAMPLES samples.

    def _update_contactor(self, now: float, inputs: Inputs, pwm_during_sample: bool) -> None:
        if self.test is ContactorTest.CLOSED:
            self._update_test_closed(now, inputs)
            return
        if self.contactor:
            pwm_grace_over = self._pwm_off_since is not None and now - self._pwm_off_since >= PWM_OFF_OPEN_S
            if (
                self.faults
                or self.pilot is PilotMode.NEGATIVE
                or not self.energy_allowed_state()
                or pwm_grace_over
                or inputs.controller_lost
                or self._unlocked_samples >= LOCK_LOST_SAMPLES
                or now - self._energy_confirmed_at > OPEN_BUDGET_S / 2
            ):
                self._command_contactor(False, now)
        elif (
            self.energy_allowed_state()
            and self.pilot is PilotMode.PWM
            and pwm_during_sample
            and self._diode_seen
            and self._energy_confirmed_at == now
            and now - self._opened_at >= self.min_close_interval_s
            and (inputs.lock_engaged or not self.lock_fitted)
            and inputs.rcd_test in (RcdTest.NONE, RcdTest.PASSED)
            and not self.faults
            and inputs.authorized
            and not inputs.controller_lost
        ):
            self._command_contactor(True, now)
        self._update_test(now, inputs)

    def _command_contactor(self, closed: bool, now: float) -> None:
        self.contactor = closed
        self._mismatch_since = None
        if not closed:
            self._opened_at = now

    # -- 3b. contactor test (maintenance) ------------------------------------------------
    #
    # TEST_CLOSE_REQUIRES: a test requested and not yet run for this request, the
    #   contactor open (no charging), pilot confirmed A and the last two raw samples in
    #   A, steady pilot, no fault and no fault hold, no authorization, feedback reporting
    #   open, min_close_interval_s since it opened.
    # TEST_OPEN_WHEN: any fault; the request ends; a raw sample or the confirmed pilot
    #   outside A; authorization; the feedback reported closed and feedback_timeout_s
    #   passed since the close. Feedback that does not follow, closing or opening, is the
    #   stuck or weld fault of step 1, as in charging.

    def _update_test(self, now: float, inputs: Inputs) -> None:
        if not inputs.test_contactor:
            self.test = ContactorTest.IDLE
            return
        if self.test is ContactorTest.IDLE:
            self.test, self._test_since = ContactorTest.WAITING, now
        if self.test is ContactorTest.OPENING:
            if self.faults & {Fault.CONTACTOR_WELD, Fault.CONTACTOR_STUCK}:
                self.test = ContactorTest.FAILED
            elif not inputs.feedback_closed:
                self.test = ContactorTest.PASSED
        elif self.test is ContactorTest.WAITING:
            allowed = (
                not self.contactor
                and self.cp is CpState.A
                and self._idle_run >= self.detector.confirmations
                and self.pilot is PilotMode.STEADY
                and not self.faults
                and now >= self._hold_until
                and not inputs.authorized
                and not inputs.feedback_closed
            )
            if allowed and now - self._opened_at >= self.min_close_interval_s:
                self._command_contactor(True, now)
                self.test, self._test_since = ContactorTest.CLOSED, now
            elif allowed:
                self._test_since = now  # the contactor's rest is waited for, not refused
            elif now - self._test_since >= TEST_GRANT_S:
                self.test = ContactorTest.REFUSED

    def _update_test_closed(self, now: float, inputs: Inputs) -> None:
        if self.faults:
            self._command_contactor(False, now)
            self.test = ContactorTest.FAILED
        elif (
            not inputs.test_contactor
            or self._idle_run == 0
            or self.cp is not CpState.A
            or self.pilot is not PilotMode.STEADY
            or inputs.authorized
        ):
            self._command_contactor(False, now)
            self.test = ContactorTest.ABORTED
        elif inputs.feedback_closed and now - self._test_since >= self.feedback_timeout_s:
            self._command_contactor(False, now)
            self.test = ContactorTest.OPENING

    # -- 4. connector lock ---------------------------------------------------------------
    # Locked while an EV is connected or the contacts may be live (commanded or reported
    # closed, welded, or commanded open less than CONTACTOR_BREAK_S ago); through E and F
    # it holds for LOCK_HOLD_E_F_S (the EV may still be there); unlocked in A. An unlock
    # request (UnlockConnector) releases it with the EV still connected once nothing is
    # live, and holds until the EV leaves (A) or energy is authorized again; a request made
    # while energy is authorized is ignored.

    def _contacts_may_be_live(self, now: float, feedback_closed: bool) -> bool:
        """Commanded or reported closed, welded, or opened too recently for the arc to be out."""
        return (
            self.contactor
            or feedback_closed
            or Fault.CONTACTOR_WELD in self.faults
            or now - self._opened_at < CONTACTOR_BREAK_S
        )

    def _update_lock(self, now: float, inputs: Inputs) -> None:
        if not self.lock_fitted:
            return
        if self.cp is CpState.A or inputs.authorized:
            self._unlocking = False
        if inputs.unlock_requested and not inputs.authorized:
            self._unlocking = True
        if self._contacts_may_be_live(now, inputs.feedback_closed):
            self.lock, self._lock_hold_until = True, now + LOCK_HOLD_E_F_S
        elif self._unlocking:
            self.lock, self._lock_hold_until = False, float("-inf")
        elif self.cp in CONNECTED:
            self.lock, self._lock_hold_until = True, now + LOCK_HOLD_E_F_S
        elif self.cp in (CpState.E, CpState.F):
            self.lock = now < self._lock_hold_until
        else:
            self.lock = False
