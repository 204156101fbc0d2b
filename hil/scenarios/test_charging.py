"""Charging sessions as a qualification runs them: start, stop, authorization, suspend,
remote control and a current limit, for each OCPP version (``--ocpp``)."""

from __future__ import annotations

import time

import pytest

from hil.conftest import TOKEN, Station
from hil.rig import Measurement, Rig
from hil.scenarios.steps import charging
from hil.view import CsmsView


def closed(m: Measurement) -> bool:
    return m.contactor_closed


def opened(m: Measurement) -> bool:
    return not m.contactor_closed


def energy_rises(rig: Rig, seconds: float = 2.5) -> None:
    first = rig.measure().energy_wh
    time.sleep(seconds)
    last = rig.measure().energy_wh
    if first is not None and last is not None:
        assert last > first, "the EV charges but the energy does not rise"


def test_boot_reports_every_evse_available(station: Station, view: CsmsView) -> None:
    view.status(1, "Available", timeout=15)
    assert not station.rig.measure().contactor_closed


def test_plug_then_swipe_charges_and_unplug_ends_the_transaction(rig: Rig, view: CsmsView) -> None:
    mark = view.mark()
    rig.plug()
    rig.expect(lambda m: m.cp_state == "B" and not m.contactor_closed, what="state B, contactor open")
    rig.swipe(TOKEN)
    rig.charge(max_current_a=16)
    tx = view.started(after=mark)  # 2.0.1 starts it when the power path closes (TxStartPoint)
    seen = rig.expect(closed, what="contactor closed")
    assert seen.pwm and seen.cp_state == "C"
    energy_rises(rig)
    rig.unplug()
    rig.expect(opened, timeout=1, what="contactor open after unplug")
    ended = view.ended(tx, after=mark)
    assert ended.ends == 1
    assert ended.id_token == TOKEN
    assert ended.meter_stop_wh is not None and ended.meter_start_wh is not None
    assert ended.meter_stop_wh > ended.meter_start_wh
    view.status(1, "Available", after=mark)


def test_swipe_then_plug_charges(rig: Rig, view: CsmsView) -> None:
    mark = view.mark()
    rig.swipe(TOKEN)
    view.wait("Authorize", after=mark)
    rig.plug()
    rig.charge()
    tx = view.started(after=mark)
    rig.expect(closed, what="contactor closed")
    rig.unplug()
    assert view.ended(tx, after=mark).ends == 1


def test_unknown_card_never_closes_the_contactor(rig: Rig, view: CsmsView) -> None:
    view.csms.csms.auth["0BADCAFE00"] = "Invalid"
    mark = view.mark()
    rig.plug()
    rig.charge()
    rig.swipe("0BADCAFE00")
    view.wait("Authorize", after=mark)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        seen = rig.measure()
        assert not seen.contactor_closed and not seen.pwm, seen
        time.sleep(0.05)
    assert view.transactions() == []


def test_ev_suspends_and_resumes(rig: Rig, view: CsmsView) -> None:
    tx, mark = charging(rig, view)
    rig.suspend()
    rig.expect(opened, timeout=1, what="contactor open after C -> B")
    view.status(1, "SuspendedEV", after=mark)
    rig.charge()
    rig.expect(closed, what="charging again")
    rig.unplug()
    assert view.ended(tx, after=mark).ends == 1
    assert len(view.transactions()) == 1  # one session, one transaction


def test_remote_start_and_remote_stop(rig: Rig, view: CsmsView) -> None:
    mark = view.mark()
    rig.plug()
    assert view.remote_start(TOKEN) == "Accepted"
    rig.charge()
    tx = view.started(after=mark)
    rig.expect(closed)
    assert view.remote_stop(tx) == "Accepted"
    rig.expect(opened, what="contactor open after the remote stop")
    ended = view.ended(tx, after=mark)
    assert ended.stop_reason == "Remote"
    rig.unplug()


@pytest.mark.parametrize(("limit", "duty"), [(10, 16.7), (20, 33.3)])
def test_a_current_limit_sets_the_pilot_duty(rig: Rig, view: CsmsView, limit: int, duty: float) -> None:
    assert view.set_limit(limit) == "Accepted"
    rig.plug()
    rig.swipe(TOKEN)
    rig.charge()
    view.started()
    seen = rig.expect(closed)
    assert seen.duty_percent == pytest.approx(duty, abs=0.5)
    rig.unplug()


def test_a_limit_below_6_amps_pauses_and_resumes(rig: Rig, view: CsmsView) -> None:
    tx, mark = charging(rig, view)
    assert view.set_limit(4) == "Accepted"
    seen = rig.expect(lambda m: not m.pwm and not m.contactor_closed, what="no PWM, contactor open")
    assert seen.duty_percent == 100
    view.status(1, "SuspendedEVSE", after=mark)
    assert view.clear_limit() == "Accepted"
    rig.expect(closed, what="charging again once the limit is gone")
    rig.unplug()
    assert view.ended(tx, after=mark).ends == 1
