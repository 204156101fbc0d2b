"""Writable means it works, in-process (``tests.inproc``; moved from test_writable_keys.py):
the 2.0.1 variables whose effect shows in what the station does with a CSMS (AuthCtrlr,
ReservationCtrlr and SmartChargingCtrlr Enabled, MonitoringCtrlr.OfflineQueuingSeverity,
OCPPCommCtrlr.OfflineThreshold). The consumer tables, the answers of a raw CSMS and the
reboot command stay in test_writable_keys.py.
"""

from __future__ import annotations

import asyncio

from tests.inproc import Bench, go_offline, go_online, set_variables, station


@station(version="2.0.1")
async def test_c_auth_ctrlr_disabled_every_ev_charges(b: Bench) -> None:
    """AuthCtrlr.Enabled false: no authorization; an EV charges without a card, as in
    auth mode "free". Back to true, a card is needed again."""
    await set_variables(b, ("AuthCtrlr", "Enabled", "false"))
    mark = b.mark()
    b.sim.plug(1)
    b.sim.charge(1, max_current_a=16)
    await b.event("Started", after=mark)
    await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=10)
    assert [c for c in b.calls("Authorize")] == []
    b.sim.unplug(1)
    await b.event("Ended", after=mark)
    await set_variables(b, ("AuthCtrlr", "Enabled", "true"))
    mark = b.mark()
    b.sim.plug(1)
    b.sim.charge(1, max_current_a=16)
    await asyncio.sleep(2.0)
    assert not b.sim.status(1)["contactor_closed"]


@station(version="2.0.1")
async def test_h_reservation_and_k_smart_charging_disabled_are_rejected(b: Bench) -> None:
    """ReservationCtrlr.Enabled / SmartChargingCtrlr.Enabled false: ReserveNow and
    SetChargingProfile are Rejected; true again, they are accepted."""
    reserve = {
        "id": 3,
        "expiryDateTime": "2099-01-01T00:00:00Z",
        "idToken": {"idToken": "A", "type": "ISO14443"},
    }
    profile = {
        "evseId": 0,
        "chargingProfile": {
            "id": 9,
            "stackLevel": 0,
            "chargingProfilePurpose": "ChargingStationMaxProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": [
                {
                    "id": 1,
                    "startSchedule": "2026-01-01T00:00:00Z",
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}],
                }
            ],
        },
    }
    await set_variables(
        b, ("ReservationCtrlr", "Enabled", "false"), ("SmartChargingCtrlr", "Enabled", "false")
    )
    assert (await b.call("ReserveNow", reserve))["status"] == "Rejected"
    assert (await b.call("SetChargingProfile", profile))["status"] == "Rejected"
    await set_variables(b, ("ReservationCtrlr", "Enabled", "true"), ("SmartChargingCtrlr", "Enabled", "true"))
    assert (await b.call("ReserveNow", reserve))["status"] == "Accepted"
    assert (await b.call("SetChargingProfile", profile))["status"] == "Accepted"


@station(version="2.0.1")
async def test_n_offline_queuing_severity_keeps_only_severe_events_offline(b: Bench) -> None:
    """MonitoringCtrlr.OfflineQueuingSeverity: offline, only events of that severity or a
    more severe one (a lower number) are kept for the CSMS. RCD.Tripped is severity 0; a
    custom Delta monitor of severity 5 watches the EVSE's AvailabilityState."""
    monitor = {
        "value": 0,
        "type": "Delta",
        "severity": 5,
        "component": {"name": "EVSE", "evse": {"id": 1}},
        "variable": {"name": "AvailabilityState"},
    }
    reply = await b.call("SetVariableMonitoring", {"setMonitoringData": [monitor]})
    assert reply["setMonitoringResult"][0]["status"] == "Accepted", reply
    await set_variables(b, ("MonitoringCtrlr", "OfflineQueuingSeverity", "4"))
    await go_offline(b)
    b.sim.plug(1)  # Available -> Occupied: severity 5, not kept
    await asyncio.sleep(1.5)
    b.sim.fault("rcd")  # severity 0: kept
    await asyncio.sleep(1.0)
    mark = await go_online(b)
    await b.wait("NotifyEvent", after=mark, timeout=15)
    await asyncio.sleep(1.0)
    names = [item["variable"]["name"] for entry in b.calls("NotifyEvent") for item in entry["eventData"]]
    assert "Tripped" in names and "AvailabilityState" not in names, names


@station(version="2.0.1")
async def test_b04_offline_longer_than_offline_threshold_sends_every_status(b: Bench) -> None:
    """OCPPCommCtrlr.OfflineThreshold: after an outage longer than it, the station sends a
    StatusNotification for every connector again, changed or not."""
    await set_variables(b, ("OCPPCommCtrlr", "OfflineThreshold", "1"))
    await go_offline(b)
    await asyncio.sleep(1.5)
    mark = await go_online(b)
    await b.status201(1, "Available", after=mark, timeout=15)
