"""Hardware faults during a session: the contactor opens, the EVSE reports Faulted, the
transaction ends once with the energy it had. Each fault is skipped on a rig that cannot
make it (``Rig.faults``, ``Rig.forceable_states``)."""

from __future__ import annotations

import time

import pytest

from hil.conftest import TOKEN
from hil.rig import Measurement, Rig
from hil.scenarios.steps import charging
from hil.view import CsmsView


def needs_fault(rig: Rig, kind: str) -> None:
    if kind not in rig.faults:
        pytest.skip(f"this rig cannot inject {kind}")


def open_within(rig: Rig, budget_s: float) -> Measurement:
    """The contactor opens within the budget plus the rig's own slack (0.5 s: a shared CI
    machine and a polled rig). The budget itself is measured by python -m hil.loop_latency."""
    return rig.expect(lambda m: not m.contactor_closed, timeout=budget_s + 0.5, what="contactor open")


@pytest.mark.parametrize(
    ("kind", "error_code"), [("rcd", "GroundFailure"), ("contactor_stuck", "PowerSwitchFailure")]
)
def test_a_latching_fault_ends_the_session_and_stays_faulted(
    rig: Rig, view: CsmsView, kind: str, error_code: str
) -> None:
    needs_fault(rig, kind)
    if kind == "contactor_stuck":
        # A stuck contactor shows when it is asked to close: fault it before the session.
        mark = view.mark()
        rig.fault(kind)
        rig.plug()
        rig.swipe(TOKEN)
        rig.charge()
        report = view.status(1, "Faulted", after=mark)
        assert not rig.measure().contactor_closed
    else:
        tx, mark = charging(rig, view)
        rig.fault(kind)
        open_within(rig, 0.1)
        report = view.status(1, "Faulted", after=mark)
        assert view.ended(tx, after=mark).ends == 1
    if view.v16:
        assert report["errorCode"] == error_code
    rig.fault(kind, active=False)
    rig.unplug()
    time.sleep(1)
    assert all(tx.ended for tx in view.transactions())
    rig.plug()
    rig.swipe(TOKEN)
    rig.charge()
    time.sleep(1.5)
    assert not rig.measure().contactor_closed, "a latched fault must hold until reset"


def test_pilot_shorted_to_pe_opens_the_contactor(rig: Rig, view: CsmsView) -> None:
    if "E" not in rig.forceable_states:
        pytest.skip("this rig cannot short the pilot")
    tx, mark = charging(rig, view)
    rig.cp("E")
    open_within(rig, 0.1)
    rig.cp(None)
    rig.unplug()
    assert view.ended(tx, after=mark).ends == 1


def test_missing_diode_refuses_energy(rig: Rig, view: CsmsView) -> None:
    needs_fault(rig, "diode")
    mark = view.mark()
    rig.fault("diode")
    rig.plug()
    rig.swipe(TOKEN)
    rig.charge()
    view.status(1, "Faulted", after=mark)
    time.sleep(1)
    assert not rig.measure().contactor_closed
    rig.fault("diode", active=False)
    rig.expect(lambda m: m.contactor_closed, what="charging once the diode is back (not latching)")
    rig.unplug()


def test_meter_offline_stops_the_transaction_with_the_last_good_reading(rig: Rig, view: CsmsView) -> None:
    needs_fault(rig, "meter_offline")
    tx, mark = charging(rig, view)
    time.sleep(2)
    last_good = rig.measure().energy_wh
    rig.fault("meter_offline")
    view.status(1, "Faulted", after=mark, timeout=15)
    rig.expect(lambda m: not m.contactor_closed, what="contactor open")
    ended = view.ended(tx, after=mark)
    assert ended.ends == 1
    if last_good is not None:
        assert ended.meter_stop_wh is not None and ended.meter_stop_wh >= last_good - 50
    rig.fault("meter_offline", active=False)
    rig.unplug()


def test_a_welded_contactor_is_found_at_opening(rig: Rig, view: CsmsView) -> None:
    needs_fault(rig, "contactor_weld")
    tx, mark = charging(rig, view)
    rig.fault("contactor_weld")
    rig.unplug()
    report = view.status(1, "Faulted", after=mark)
    if view.v16:
        assert report["errorCode"] == "PowerSwitchFailure"
    assert view.ended(tx, after=mark).ends == 1
    rig.fault("contactor_weld", active=False)
