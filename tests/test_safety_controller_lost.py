"""The supervisor when the OCPP process is lost (``Inputs.controller_lost``, set by the
safety process on silence or death): PWM off and the contactor open in the same step,
with none of the PWM_OFF_OPEN_S grace a withdrawn authorization gets; nothing closes
while it lasts, and charging resumes by the usual rules once it is over."""

from __future__ import annotations

from controller.safety.pilot import CpState, PilotMode
from controller.safety.supervisor import PWM_OFF_OPEN_S, Inputs, Output, Supervisor
from drivers.sim import pilot_levels

PERIOD = 0.02


class Ev:
    def __init__(self) -> None:
        self.sup = Supervisor(max_current_a=32.0)
        self.now = 0.0
        self.out: Output | None = None

    def step(self, lost: bool = False, authorized: bool = True) -> Output:
        self.now += PERIOD
        mode = self.out.pilot if self.out else PilotMode.STEADY
        closed = self.out.contactor if self.out else False
        self.out = self.sup.step(
            self.now,
            Inputs(
                sample=pilot_levels(CpState.C, mode),
                feedback_closed=closed,
                authorized=authorized,
                limit_a=16.0,
                controller_lost=lost,
            ),
        )
        return self.out

    def run(self, seconds: float, **inputs: bool) -> Output:
        out = self.step(**inputs)
        for _ in range(round(seconds / PERIOD) - 1):
            out = self.step(**inputs)
        return out


def charging() -> Ev:
    ev = Ev()
    assert ev.run(1.0).contactor
    return ev


def test_lost_controller_opens_in_the_same_step_and_stops_the_pwm() -> None:
    ev = charging()
    out = ev.step(lost=True)
    assert not out.contactor and out.pilot is PilotMode.STEADY and not out.faults


def test_a_withdrawn_authorization_alone_keeps_the_iec_grace() -> None:
    ev = charging()
    assert ev.run(PWM_OFF_OPEN_S / 2, authorized=False).contactor  # EV still drawing: not yet
    assert not ev.run(PWM_OFF_OPEN_S, authorized=False).contactor


def test_nothing_closes_while_the_controller_is_lost_and_charging_resumes_after() -> None:
    ev = charging()
    assert not any(ev.step(lost=True).contactor for _ in range(100))
    assert ev.run(1.0).contactor
