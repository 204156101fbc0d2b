"""Faults of the network, the power, the CSMS, the clock and the disk during a session.
Whatever happens, the EV keeps charging while it safely can, and the CSMS ends up with
each transaction exactly once, with energy that never goes backwards."""

from __future__ import annotations

import time
from datetime import datetime

from hil.conftest import Station
from hil.csms import CsmsThread
from hil.proxy import ProxyThread
from hil.rig import Rig
from hil.scenarios.steps import charging
from hil.view import CsmsView


def still_charging(rig: Rig, seconds: float) -> float | None:
    """The contactor stays closed and the energy rises for ``seconds``; the last energy."""
    first = rig.measure().energy_wh
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert rig.measure().contactor_closed, "charging stopped"
        time.sleep(0.1)
    last = rig.measure().energy_wh
    if first is not None and last is not None:
        assert last > first
    return last


def finish(
    rig: Rig, view: CsmsView, tx: str, mark: int, at_least_wh: float | None, timeout: float = 30
) -> None:
    rig.unplug()
    ended = view.ended(tx, after=mark, timeout=timeout)
    assert ended.ends == 1, f"{ended.ends} stop messages"
    assert len(view.transactions()) == 1, view.transactions()
    assert ended.meter_start_wh is not None and ended.meter_stop_wh is not None
    assert ended.meter_stop_wh >= ended.meter_start_wh
    if at_least_wh is not None:
        assert ended.meter_stop_wh >= at_least_wh - 1


def test_network_down_mid_session_the_queue_arrives_once(
    rig: Rig, view: CsmsView, proxy: ProxyThread
) -> None:
    tx, mark = charging(rig, view)
    proxy.command("down on")
    energy = still_charging(rig, 2)
    rig.unplug()
    time.sleep(1)
    assert not view.connected()
    proxy.command("down off")
    ended = view.ended(tx, after=mark, timeout=90)
    assert ended.ends == 1 and len(view.transactions()) == 1
    assert ended.meter_stop_wh is not None and energy is not None and ended.meter_stop_wh >= energy - 1


def test_connection_reset_and_latency_do_not_stop_charging(
    rig: Rig, view: CsmsView, proxy: ProxyThread
) -> None:
    tx, mark = charging(rig, view)
    proxy.command("reset")
    still_charging(rig, 1)
    proxy.command("delay 1.5")
    energy = still_charging(rig, 2)
    finish(rig, view, tx, mark, energy, timeout=90)


def test_power_loss_mid_session_ends_the_transaction_once(station: Station, view: CsmsView) -> None:
    tx, mark = charging(station.rig, view)
    energy = still_charging(station.rig, 1.5)
    station.power_loss()
    ended = view.ended(tx, after=mark, timeout=90)
    assert ended.ends == 1
    assert ended.stop_reason == "PowerLoss"
    assert ended.meter_stop_wh is not None and energy is not None and ended.meter_stop_wh >= energy - 1
    view.booted(after=mark)
    station.rig.unplug()
    assert len(view.transactions()) == 1


def test_csms_restart_mid_session(rig: Rig, view: CsmsView, csms: CsmsThread) -> None:
    tx, mark = charging(rig, view)
    csms.restart(down_s=2)
    energy = still_charging(rig, 3)
    finish(rig, view, tx, mark, energy, timeout=90)


def test_clock_jump_mid_session(rig: Rig, view: CsmsView, csms: CsmsThread) -> None:
    tx, mark = charging(rig, view)
    csms.csms.clock_offset_s = 3600.0  # the CSMS's (and so the station's) clock jumps an hour ahead
    assert view.trigger_heartbeat() == "Accepted"
    event = view.wait("SecurityEventNotification", lambda p: p["type"] == "SettingSystemTime", after=mark)
    jumped = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    energy = still_charging(rig, 1.5)
    finish(rig, view, tx, mark, energy)
    stop = view.wait(
        "StopTransaction" if view.v16 else "TransactionEvent",
        lambda p: p.get("eventType", "Ended") == "Ended",
        after=mark,
    )
    assert datetime.fromisoformat(stop["timestamp"].replace("Z", "+00:00")) >= jumped


def test_disk_full_mid_session_loses_nothing(station: Station, view: CsmsView, proxy: ProxyThread) -> None:
    tx, mark = charging(station.rig, view)
    station.fill_disk()
    proxy.command("down on")  # nothing reaches the CSMS: everything must wait on a full disk
    try:
        energy = still_charging(station.rig, 2)
        station.rig.unplug()
        time.sleep(2)
    finally:
        station.free_disk()
        proxy.command("down off")
    ended = view.ended(tx, after=mark, timeout=90)
    assert ended.ends == 1 and len(view.transactions()) == 1
    assert ended.meter_stop_wh is not None and energy is not None and ended.meter_stop_wh >= energy - 1
