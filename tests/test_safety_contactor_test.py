"""The supervisor's contactor test with no EV (`evse doctor --actuate`): granted only by
its rules, judged by the feedback as in charging, and ended by anything unsafe."""

from __future__ import annotations

import pytest

from controller.safety.pilot import CpState, PilotMode, PilotSample
from controller.safety.supervisor import TEST_GRANT_S, ContactorTest, Fault, Inputs, Supervisor
from tests.test_safety_scenarios import PERIOD, World


def idle_world(**supervisor: float | bool) -> World:
    world = World(**supervisor)
    world.authorized = False
    world.run(0.2)
    return world


def test_closes_once_with_no_ev_and_passes_when_the_feedback_follows_both_ways() -> None:
    world = idle_world(feedback_timeout_s=0.1)
    world.test_contactor = True
    assert world.until("out.contactor") <= 2 * PERIOD
    out = world.out
    assert out is not None and out.contactor_test is ContactorTest.CLOSED
    assert out.pilot is PilotMode.STEADY and out.offered_a == 0.0  # nothing is offered
    held = world.until("not out.contactor")
    assert 0.1 - 1e-9 <= held <= 0.1 + 2 * PERIOD  # closed for the feedback timeout
    assert world.until("out.contactor_test is ContactorTest.PASSED") <= 2 * PERIOD
    out = world.run(1.0)
    assert not out.contactor and out.contactor_test is ContactorTest.PASSED  # once per request
    world.test_contactor = False
    assert world.step().contactor_test is ContactorTest.IDLE
    world.test_contactor = True  # a new request: a new test
    assert world.until("out.contactor") <= 2 * PERIOD


def test_a_fresh_start_needs_two_raw_samples_in_a_before_closing() -> None:
    sup = Supervisor(max_current_a=32.0)
    a = PilotSample(12.0, 12.0)
    first = sup.step(0.0, Inputs(sample=a, test_contactor=True))
    assert not first.contactor and first.contactor_test is ContactorTest.WAITING
    assert sup.step(0.02, Inputs(sample=a, test_contactor=True)).contactor


@pytest.mark.parametrize("ev", [CpState.B, CpState.C, CpState.D, CpState.E])
def test_refused_with_an_ev_or_a_broken_pilot(ev: CpState) -> None:
    world = idle_world()
    world.ev = ev
    world.run(0.2)
    world.test_contactor = True
    out = world.run(TEST_GRANT_S + 0.1)
    assert out.contactor_test is ContactorTest.REFUSED and not out.contactor and not world.closed


def test_refused_while_authorized_or_faulted() -> None:
    world = idle_world()
    world.authorized = True
    world.test_contactor = True
    assert world.run(TEST_GRANT_S + 0.1).contactor_test is ContactorTest.REFUSED
    world = idle_world()
    world.meter_ok = False
    world.test_contactor = True
    out = world.run(TEST_GRANT_S + 0.1)
    assert out.contactor_test is ContactorTest.REFUSED and not out.contactor


def test_an_ev_arriving_during_the_test_opens_at_its_first_sample() -> None:
    world = idle_world(feedback_timeout_s=1.0)
    world.test_contactor = True
    world.until("out.contactor")
    world.ev = CpState.B
    out = world.step()
    assert not out.contactor and out.contactor_test is ContactorTest.ABORTED


def test_a_glitch_out_of_a_opens_at_once() -> None:
    sup = Supervisor(max_current_a=32.0, feedback_timeout_s=1.0)
    a, gap = PilotSample(12.0, 12.0), PilotSample(10.5, 10.5)  # a gap: the detector keeps A
    for i in range(3):
        out = sup.step(i * 0.02, Inputs(sample=a, feedback_closed=sup.contactor, test_contactor=True))
    assert out.contactor
    out = sup.step(0.1, Inputs(sample=gap, feedback_closed=True, test_contactor=True))
    assert out.cp is CpState.A and not out.contactor and out.contactor_test is ContactorTest.ABORTED


def test_ending_the_request_opens() -> None:
    world = idle_world(feedback_timeout_s=1.0)
    world.test_contactor = True
    world.until("out.contactor")
    world.test_contactor = False
    out = world.step()
    assert not out.contactor and out.contactor_test is ContactorTest.ABORTED
    assert world.step().contactor_test is ContactorTest.IDLE


def test_a_contactor_that_does_not_close_fails_with_the_stuck_fault() -> None:
    world = idle_world(feedback_timeout_s=0.1)
    world.stuck = True
    world.test_contactor = True
    world.until("out.contactor")
    world.until("not out.contactor", limit_s=0.3)
    out = world.out
    assert out is not None and out.contactor_test is ContactorTest.FAILED
    assert Fault.CONTACTOR_STUCK in out.faults


def test_a_contactor_that_does_not_open_fails_with_the_weld_fault() -> None:
    world = idle_world(feedback_timeout_s=0.1, lock_fitted=False)
    world.test_contactor = True
    world.until("out.contactor")
    world.weld = True
    world.until("out.contactor_test is ContactorTest.OPENING", limit_s=0.3)
    world.until("out.contactor_test is ContactorTest.FAILED", limit_s=0.3)
    out = world.out
    assert out is not None and Fault.CONTACTOR_WELD in out.faults and not out.contactor


def test_a_residual_current_trip_opens_the_test_and_fails_it() -> None:
    world = idle_world(feedback_timeout_s=1.0)
    world.test_contactor = True
    world.until("out.contactor")
    world.rcd = True
    out = world.step()
    assert not out.contactor and out.contactor_test is ContactorTest.FAILED and Fault.RCD in out.faults


def test_the_contactor_rests_min_close_interval_before_a_test() -> None:
    world = World(min_close_interval_s=1.0).charging()
    world.authorized = False
    world.ev = CpState.A
    world.until("not out.contactor")
    opened = world.now
    world.test_contactor = True
    world.until("out.contactor", limit_s=2.0)  # waited for, not refused
    assert world.now - opened >= 1.0 - 1e-9
