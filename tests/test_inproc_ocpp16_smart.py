"""OCPP 1.6 Smart Charging and Reservation in-process (``tests.inproc``), moved from
test_ocpp16_smart.py: SetChargingProfile, GetCompositeSchedule and ClearChargingProfile,
enforced on the PWM of the real supervisor and reported alike; ReserveNow and
CancelReservation. The station's clock is the virtual one, so profile start times and
reservation expiries are taken from it (``virtual_now``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.inproc import TOKEN, Bench, no_call, now_iso, station, virtual_now
from tests.ocpp_helpers import iso

DUTY_CHANGE_WAIT_S = 7.5
OTHER_TOKEN = "0A0B0C0D"


def profile(
    profile_id: int,
    purpose: str,
    limit: float = 10,
    stack_level: int = 0,
    kind: str = "Relative",
    unit: str = "A",
    start: str | None = None,
    periods: list[tuple[int, float]] | None = None,
    duration: int | None = None,
    tx_id: int | None = None,
) -> dict[str, Any]:
    """A 1.6 csChargingProfiles object."""
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": lim} for s, lim in (periods or [(0, limit)])],
    }
    if start is not None:
        schedule["startSchedule"] = start
    if duration is not None:
        schedule["duration"] = duration
    body: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
    }
    if tx_id is not None:
        body["transactionId"] = tx_id
    return body


async def set_profile(b: Bench, connector: int, body: dict[str, Any]) -> str:
    reply = await b.call("SetChargingProfile", {"connectorId": connector, "csChargingProfiles": body})
    status: str = reply["status"]
    return status


async def composite(b: Bench, unit: str = "A", connector: int = 1, duration: int = 3600) -> dict[str, Any]:
    return await b.call(
        "GetCompositeSchedule",
        {"connectorId": connector, "duration": duration, "chargingRateUnit": unit},
    )


def limits(reply: dict[str, Any]) -> list[tuple[int, float]]:
    return [(p["startPeriod"], p["limit"]) for p in reply["chargingSchedule"]["chargingSchedulePeriod"]]


async def offered(b: Bench, amps: float, timeout: float = DUTY_CHANGE_WAIT_S) -> dict[str, Any]:
    """Wait until the PWM offers ``amps``; returns the rig status."""
    return await b.sim.wait_until(lambda s: s["pwm"] and s["offered_a"] == amps, timeout=timeout)


async def csms_tx_id(b: Bench) -> int:
    """The CSMS's id of the running transaction, once the station has stored it."""
    tx_id = await b.eventually(
        lambda: max((i for i, t in b.csms.transactions.items() if t["stop"] is None), default=None),
        what="a transaction at the CSMS",
    )
    await b.eventually(
        lambda: b.db("SELECT id FROM transactions WHERE csms_id = ?", str(tx_id)),
        what="the station to store the CSMS's transaction id",
    )
    return int(tx_id)


# -- Smart Charging ----------------------------------------------------------------------------


@station()
async def test_set_charging_profile_tx_default_absolute_limits_offered_current(b: Bench) -> None:
    start = now_iso(-60)
    body = profile(1, "TxDefaultProfile", 10, kind="Absolute", start=start)
    assert await set_profile(b, 0, body) == "Accepted"
    await b.charge()
    status = await offered(b, 10)
    assert status["duty_percent"] == pytest.approx(16.67, abs=0.02)
    assert status["contactor_closed"]
    # The EV draws no more than offered: 10 A on 3 phases at 230 V.
    await b.sim.wait_until(lambda s: 0 < s["power_w"] <= 6900 * 1.02, timeout=15)
    # The technician reads the limit in the journal, whichever evaluation applied it.
    assert "EVSE 1: charging limit 10.0 A" in b.log.read_text()


@station()
async def test_set_charging_profile_tx_default_relative_while_charging(b: Bench) -> None:
    await b.charge()
    await offered(b, 32)
    assert await set_profile(b, 0, profile(1, "TxDefaultProfile", 10)) == "Accepted"
    status = await offered(b, 10)
    assert status["duty_percent"] == pytest.approx(16.67, abs=0.02)
    assert status["contactor_closed"]
    assert status["connector_status"] == "Charging"


@station()
async def test_set_charging_profile_tx_profile_overrides_tx_default(b: Bench) -> None:
    assert await set_profile(b, 0, profile(1, "TxDefaultProfile", 10)) == "Accepted"
    await b.charge()
    await offered(b, 10)
    tx_id = await csms_tx_id(b)
    # Only for its own transaction.
    assert await set_profile(b, 1, profile(2, "TxProfile", 14, tx_id=tx_id + 100)) == "Rejected"
    # Higher than the default: a TxProfile replaces the TxDefaultProfile, it is not combined.
    assert await set_profile(b, 1, profile(2, "TxProfile", 14, tx_id=tx_id)) == "Accepted"
    assert limits(await composite(b)) == [(0, 14.0)]
    await offered(b, 14)


@station()
async def test_set_charging_profile_tx_profile_without_transaction_rejected(b: Bench) -> None:
    assert await set_profile(b, 1, profile(1, "TxProfile", 8)) == "Rejected"
    assert await set_profile(b, 1, profile(2, "TxProfile", 8, tx_id=4711)) == "Rejected"
    assert limits(await composite(b)) == [(0, 32.0)]


@station()
async def test_set_charging_profile_stack_level_higher_wins(b: Bench) -> None:
    start = now_iso(-60)
    low = profile(1, "TxDefaultProfile", 12, stack_level=0, kind="Absolute", start=start)
    high = profile(2, "TxDefaultProfile", 8, stack_level=1, kind="Absolute", start=start)
    assert await set_profile(b, 0, low) == "Accepted"
    assert await set_profile(b, 0, high) == "Accepted"
    assert limits(await composite(b)) == [(0, 8.0)]
    await b.charge()
    await offered(b, 8, timeout=15)
    # The higher stack level wins even when it allows more.
    higher = profile(3, "TxDefaultProfile", 20, stack_level=2, kind="Absolute", start=start)
    assert await set_profile(b, 0, higher) == "Accepted"
    assert limits(await composite(b)) == [(0, 20.0)]


@station()
async def test_set_charging_profile_charge_point_max_caps_tx_profile(b: Bench) -> None:
    cap = profile(1, "ChargePointMaxProfile", 12, kind="Absolute", start=now_iso(-60))
    assert await set_profile(b, 0, cap) == "Accepted"
    # A ChargePointMaxProfile belongs on connector 0 only.
    misplaced = profile(9, "ChargePointMaxProfile", 12, kind="Absolute", start=now_iso(-60))
    assert await set_profile(b, 1, misplaced) == "Rejected"
    await b.charge()
    tx_id = await csms_tx_id(b)
    assert await set_profile(b, 1, profile(2, "TxProfile", 20, tx_id=tx_id)) == "Accepted"
    assert limits(await composite(b)) == [(0, 12.0)]
    status = await offered(b, 12, timeout=15)
    assert status["contactor_closed"]


async def _schedule_with_edges(b: Bench) -> None:
    """TxDefault: 10 A now, 16 A from 1800 s from now, none from 2800 s (hardware 32 A)."""
    base = virtual_now().replace(microsecond=0) - timedelta(seconds=100)
    body = profile(
        1,
        "TxDefaultProfile",
        kind="Absolute",
        start=iso(base),
        periods=[(0, 10), (1900, 16)],
        duration=2900,
    )
    assert await set_profile(b, 1, body) == "Accepted"


def _near(reply: dict[str, Any], expected: list[tuple[int, float]]) -> None:
    got = limits(reply)
    assert [lim for _, lim in got] == [lim for _, lim in expected], got
    for (start, _), (want, _) in zip(got, expected, strict=True):
        assert want - 1 <= start <= want, got  # edges round up to whole seconds from the request


@station()
async def test_get_composite_schedule_amps(b: Bench) -> None:
    await _schedule_with_edges(b)
    reply = await composite(b, "A")
    assert reply["status"] == "Accepted"
    assert reply["connectorId"] == 1
    schedule = reply["chargingSchedule"]
    assert schedule["chargingRateUnit"] == "A"
    assert schedule["duration"] == 3600
    assert abs(datetime.fromisoformat(schedule["startSchedule"]) - virtual_now()) < timedelta(seconds=5)
    _near(reply, [(0, 10.0), (1800, 16.0), (2800, 32.0)])


@station()
async def test_get_composite_schedule_watts(b: Bench) -> None:
    await _schedule_with_edges(b)
    reply = await composite(b, "W")
    assert reply["status"] == "Accepted"
    assert reply["chargingSchedule"]["chargingRateUnit"] == "W"
    # 3 phases at 230 V.
    _near(reply, [(0, 6900.0), (1800, 11040.0), (2800, 22080.0)])


@station(start=False)
async def test_number_phases_absent_means_three_on_a_single_phase_connector(b: Bench) -> None:
    """1.6 section 7.13 ChargingSchedulePeriod numberPhases: "If a number of phases is needed,
    numberPhases=3 will be assumed unless another number is given", also on a connector wired
    single phase: 6900 W is 10 A (230 V x 3), enforced and reported alike; numberPhases 1
    makes it 30 A."""
    b.config.write_text(b.config.read_text().replace("phases = 3", "phases = 1"))
    await b.start()
    body = profile(1, "TxDefaultProfile", 6900, unit="W", kind="Absolute", start=now_iso(-60))
    assert await set_profile(b, 1, body) == "Accepted"
    assert limits(await composite(b)) == [(0, 10.0)]
    await b.charge()
    await offered(b, 10)
    body["chargingSchedule"]["chargingSchedulePeriod"][0]["numberPhases"] = 1
    assert await set_profile(b, 1, body) == "Accepted"
    periods = (await composite(b))["chargingSchedule"]["chargingSchedulePeriod"]
    assert periods == [{"startPeriod": 0, "limit": 30.0, "numberPhases": 1}]
    await offered(b, 30)


@station()
async def test_get_composite_schedule_station_wide(b: Bench) -> None:
    cap = profile(1, "ChargePointMaxProfile", 20, kind="Absolute", start=now_iso(-60))
    assert await set_profile(b, 0, cap) == "Accepted"
    reply = await composite(b, "A", connector=0)
    assert reply["status"] == "Accepted"
    assert reply["connectorId"] == 0
    assert limits(reply) == [(0, 20.0)]
    # A connector the station does not have.
    assert (await composite(b, "A", connector=5))["status"] == "Rejected"


@station()
async def test_get_composite_schedule_starts_at_the_request_instant(b: Bench) -> None:
    """1.6 §5.7 / K08: the schedule runs from the request's own instant. A profile that began
    earlier in that same second is in force from period 0 (no first period at the hardware
    limit, as a start truncated to the second gave)."""
    now = virtual_now()
    if now.microsecond > 300_000:  # leave most of a second for the two calls
        await asyncio.sleep(1.05 - now.microsecond / 1e6)
        now = virtual_now()
    begun = now.replace(microsecond=0) + timedelta(milliseconds=400)
    await asyncio.sleep(max(0.0, (begun - virtual_now()).total_seconds()) + 0.05)
    body = profile(1, "TxDefaultProfile", 10, kind="Absolute", start=iso(begun))
    assert await set_profile(b, 1, body) == "Accepted"
    reply = await composite(b)
    start = datetime.fromisoformat(reply["chargingSchedule"]["startSchedule"])
    assert start > begun  # the request's instant, milliseconds kept
    assert limits(reply) == [(0, 10.0)]


@station(evses=2)
async def test_get_composite_schedule_two_connectors_share_the_charge_point_max(b: Bench) -> None:
    """K08 / 1.6 §5.7: the composite is the limit in force, local limits included: two
    connectors charging under a 20 A ChargePointMaxProfile each get and report 10 A."""
    cap = profile(1, "ChargePointMaxProfile", 20, kind="Absolute", start=now_iso(-60))
    assert await set_profile(b, 0, cap) == "Accepted"
    await b.charge(1, max_current_a=32)
    await b.charge(2, token=OTHER_TOKEN, max_current_a=32)
    for connector in (1, 2):
        assert limits(await composite(b, connector=connector)) == [(0, 10.0)]
        await b.sim.wait_until(lambda s: s["pwm"] and s["offered_a"] == 10, evse=connector, timeout=15)
    assert limits(await composite(b, connector=0)) == [(0, 20.0)]


@station()
async def test_get_composite_schedule_station_wide_without_profiles(b: Bench) -> None:
    reply = await composite(b, "A", connector=0)
    assert reply["status"] == "Accepted"
    assert reply["connectorId"] == 0
    assert all(0 < lim <= 32 for _, lim in limits(reply))


@station()
async def test_clear_charging_profile_by_id_restores_limit(b: Bench) -> None:
    assert await set_profile(b, 0, profile(7, "TxDefaultProfile", 10)) == "Accepted"
    await b.charge()
    await offered(b, 10, timeout=15)
    reply = await b.call("ClearChargingProfile", {"id": 7})
    assert reply["status"] == "Accepted"
    assert limits(await composite(b)) == [(0, 32.0)]
    await offered(b, 32)


@station()
async def test_clear_charging_profile_unknown_id(b: Bench) -> None:
    assert await set_profile(b, 0, profile(7, "TxDefaultProfile", 10)) == "Accepted"
    assert (await b.call("ClearChargingProfile", {"id": 99}))["status"] == "Unknown"
    cleared = {"connectorId": 0, "chargingProfilePurpose": "TxProfile"}
    assert (await b.call("ClearChargingProfile", cleared))["status"] == "Unknown"
    # The installed profile is untouched.
    await b.charge()
    await offered(b, 10, timeout=15)
    # Cleared by its purpose and stack level instead of its id.
    cleared = {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 0}
    assert (await b.call("ClearChargingProfile", cleared))["status"] == "Accepted"
    assert limits(await composite(b)) == [(0, 32.0)]


@station()
async def test_set_charging_profile_below_minimum_suspends_evse(b: Bench) -> None:
    await b.charge()
    mark = b.mark()
    assert await set_profile(b, 0, profile(1, "TxDefaultProfile", 4)) == "Accepted"
    # The PWM stops at once; the simulated EV stays in C, so the contactor opens under load
    # once the EV has had its 6 s to react (IEC 61851-1 Table A.6, seq. 10.2).
    status = await b.sim.wait_until(lambda s: not s["pwm"], timeout=15)
    assert status["duty_percent"] == 100
    assert status["offered_a"] == 0
    status = await b.sim.wait_until(lambda s: not s["contactor_closed"], timeout=15)
    assert status["duty_percent"] == 100
    assert status["offered_a"] == 0
    await b.status(1, "SuspendedEVSE", after=mark)
    assert status["transaction_id"] is not None  # the transaction goes on
    # Raising the limit (same id: the profile is replaced) resumes by itself.
    mark = b.mark()
    assert await set_profile(b, 0, profile(1, "TxDefaultProfile", 10)) == "Accepted"
    status = await offered(b, 10)
    await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=15)
    await b.status(1, "Charging", after=mark)
    assert len(b.calls("StartTransaction")) == 1
    assert not b.calls("StopTransaction")


@station()
async def test_set_charging_profile_persists_across_restart(b: Bench) -> None:
    body = profile(3, "TxDefaultProfile", 10, kind="Absolute", start=now_iso(-60))
    assert await set_profile(b, 0, body) == "Accepted"
    assert limits(await composite(b)) == [(0, 10.0)]
    assert await b.stop() == 0
    await b.start()
    assert limits(await composite(b)) == [(0, 10.0)]
    await b.charge()
    await offered(b, 10, timeout=15)


@station()
async def test_remote_start_transaction_with_charging_profile(b: Bench) -> None:
    b.sim.plug(1)
    # Only a TxProfile may come with a remote start.
    wrong = {"connectorId": 1, "idTag": TOKEN, "chargingProfile": profile(5, "TxDefaultProfile", 8)}
    assert (await b.call("RemoteStartTransaction", wrong))["status"] == "Rejected"
    mark = b.mark()
    reply = await b.call(
        "RemoteStartTransaction",
        {"connectorId": 1, "idTag": TOKEN, "chargingProfile": profile(5, "TxProfile", 8)},
    )
    assert reply["status"] == "Accepted"
    await b.wait("StartTransaction", after=mark)
    b.sim.charge(1, max_current_a=16)
    status = await offered(b, 8, timeout=15)
    await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=15)
    assert status["duty_percent"] == pytest.approx(13.33, abs=0.02)
    assert limits(await composite(b)) == [(0, 8.0)]


@station()
async def test_remote_start_transaction_with_charging_profile_ends_with_transaction(b: Bench) -> None:
    b.sim.plug(1)
    mark = b.mark()
    body = {"connectorId": 1, "idTag": TOKEN, "chargingProfile": profile(5, "TxProfile", 8)}
    assert (await b.call("RemoteStartTransaction", body))["status"] == "Accepted"
    await b.wait("StartTransaction", after=mark)
    tx_id = await csms_tx_id(b)
    assert limits(await composite(b)) == [(0, 8.0)]
    mark = b.mark()
    assert (await b.call("RemoteStopTransaction", {"transactionId": tx_id}))["status"] == "Accepted"
    await b.wait("StopTransaction", after=mark)
    # A TxProfile lives only as long as its transaction.
    for _ in range(300):
        if limits(await composite(b)) == [(0, 32.0)]:
            break
        await asyncio.sleep(0.05)
    assert limits(await composite(b)) == [(0, 32.0)], "TxProfile removed"


@station()
async def test_set_charging_profile_tx_profile_station_reports_csms_transaction_id(b: Bench) -> None:
    await b.charge()
    tx_id = await csms_tx_id(b)
    assert await set_profile(b, 1, profile(2, "TxProfile", 14, tx_id=tx_id)) == "Accepted"
    await b.sim.wait_until(lambda s: s["transaction_id"] == str(tx_id), timeout=15)


async def reserve(b: Bench, reservation_id: int, id_tag: str, connector: int = 1, **extra: Any) -> str:
    payload = {
        "connectorId": connector,
        "expiryDate": now_iso(extra.pop("expires_in", 600)),
        "idTag": id_tag,
        "reservationId": reservation_id,
        **extra,
    }
    status: str = (await b.call("ReserveNow", payload))["status"]
    return status


# -- Reservation -------------------------------------------------------------------------------


@station()
async def test_reserve_now_accepted_and_reserved(b: Bench) -> None:
    mark = b.mark()
    assert await reserve(b, 1, TOKEN) == "Accepted"
    await b.status(1, "Reserved", after=mark)
    assert b.sim.status(1)["connector_status"] == "Reserved"


@station()
async def test_reserve_now_other_id_tag_refused(b: Bench) -> None:
    assert await reserve(b, 1, OTHER_TOKEN) == "Accepted"
    mark = b.mark()
    b.sim.plug(1)
    b.sim.swipe(TOKEN)
    await no_call(b, "StartTransaction", mark, 2.0)
    assert b.sim.status(1)["transaction_id"] is None


@station()
async def test_reserve_now_reserved_id_tag_starts_transaction(b: Bench) -> None:
    mark = b.mark()
    assert await reserve(b, 42, TOKEN) == "Accepted"
    await b.status(1, "Reserved", after=mark)
    start = await b.charge()
    assert start["idTag"] == TOKEN
    assert start["reservationId"] == 42
    # The reservation is used up: cancelling it now finds nothing.
    assert (await b.call("CancelReservation", {"reservationId": 42}))["status"] == "Rejected"


@station()
async def test_reserve_now_remote_start_other_id_tag_rejected(b: Bench) -> None:
    assert await reserve(b, 12, OTHER_TOKEN) == "Accepted"
    b.sim.plug(1)
    reply = await b.call("RemoteStartTransaction", {"connectorId": 1, "idTag": TOKEN})
    assert reply["status"] == "Rejected"
    mark = b.mark()
    reply = await b.call("RemoteStartTransaction", {"connectorId": 1, "idTag": OTHER_TOKEN})
    assert reply["status"] == "Accepted"
    start = await b.wait("StartTransaction", after=mark)
    assert start["idTag"] == OTHER_TOKEN
    assert start["reservationId"] == 12


@station()
async def test_reserve_now_remote_start_other_id_tag_rejected_when_authorizing(b: Bench) -> None:
    change = {"key": "AuthorizeRemoteTxRequests", "value": "true"}
    assert (await b.call("ChangeConfiguration", change))["status"] == "Accepted"
    assert await reserve(b, 13, OTHER_TOKEN) == "Accepted"
    b.sim.plug(1)
    mark = b.mark()
    reply = await b.call("RemoteStartTransaction", {"connectorId": 1, "idTag": TOKEN})
    assert reply["status"] == "Rejected"
    await no_call(b, "StartTransaction", mark, 1.5)


@station()
async def test_reserve_now_expiry_returns_to_available(b: Bench) -> None:
    mark = b.mark()
    assert await reserve(b, 3, TOKEN, expires_in=2) == "Accepted"
    await b.status(1, "Reserved", after=mark)
    await b.status(1, "Available", after=mark, timeout=15)
    assert (await b.call("CancelReservation", {"reservationId": 3}))["status"] == "Rejected"


@station()
async def test_cancel_reservation_accepted(b: Bench) -> None:
    mark = b.mark()
    assert await reserve(b, 4, OTHER_TOKEN) == "Accepted"
    await b.status(1, "Reserved", after=mark)
    mark = b.mark()
    assert (await b.call("CancelReservation", {"reservationId": 4}))["status"] == "Accepted"
    await b.status(1, "Available", after=mark)
    # Anyone may charge again.
    assert (await b.charge())["idTag"] == TOKEN


@station()
async def test_reserve_now_persists_across_restart(b: Bench) -> None:
    mark = b.mark()
    assert await reserve(b, 11, OTHER_TOKEN) == "Accepted"
    await b.status(1, "Reserved", after=mark)
    assert await b.stop() == 0
    mark = b.mark()
    await b.start()
    assert (await b.wait("StatusNotification", lambda p: p["connectorId"] == 1, after=mark))["status"] == (
        "Reserved"
    )
    assert (await b.call("CancelReservation", {"reservationId": 11}))["status"] == "Accepted"


@station()
async def test_cancel_reservation_unknown_rejected(b: Bench) -> None:
    assert (await b.call("CancelReservation", {"reservationId": 12345}))["status"] == "Rejected"


@station()
async def test_reserve_now_occupied(b: Bench) -> None:
    b.sim.plug(1)
    await b.sim.wait_until(lambda s: s["cp_state"] == "B")
    assert await reserve(b, 5, OTHER_TOKEN) == "Occupied"
    b.sim.swipe(TOKEN)
    await b.wait("StartTransaction")
    await csms_tx_id(b)
    assert await reserve(b, 6, OTHER_TOKEN) == "Occupied"


@station()
async def test_reserve_now_second_reservation_on_reserved_connector_occupied(b: Bench) -> None:
    assert await reserve(b, 1, TOKEN) == "Accepted"
    assert await reserve(b, 2, OTHER_TOKEN) == "Occupied"
    # The same reservation id replaces the reservation.
    assert await reserve(b, 1, OTHER_TOKEN) == "Accepted"


@station()
async def test_reserve_now_faulted(b: Bench) -> None:
    mark = b.mark()
    b.sim.fault("rcd")
    await b.status(1, "Faulted", after=mark)
    assert await reserve(b, 7, TOKEN) == "Faulted"


@station()
async def test_reserve_now_unavailable(b: Bench) -> None:
    mark = b.mark()
    reply = await b.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert reply["status"] == "Accepted"
    await b.status(1, "Unavailable", after=mark)
    assert await reserve(b, 8, TOKEN) == "Unavailable"


@station()
async def test_reserve_now_connector_faulted_terminates_reservation(b: Bench) -> None:
    """1.6 section 5.13: "A reservation SHALL be terminated on the Charge Point when ... (3)
    when the Charge Point or connector are set to Faulted or Unavailable." 1.6 has no message
    for it: the CSMS sees the Faulted status, and CancelReservation then finds nothing."""
    mark = b.mark()
    assert await reserve(b, 14, OTHER_TOKEN) == "Accepted"
    await b.status(1, "Reserved", after=mark)
    mark = b.mark()
    b.sim.fault("rcd")
    await b.status(1, "Faulted", after=mark)
    assert (await b.call("CancelReservation", {"reservationId": 14}))["status"] == "Rejected"
    await b.eventually(lambda: b.db("SELECT id FROM reservations") == [], what="reservation row deleted")


@station()
async def test_reserve_now_connector_unavailable_terminates_reservation(b: Bench) -> None:
    """1.6 section 5.13 (3): a connector set Unavailable loses its reservation; it is not
    Reserved again when it becomes Operative."""
    mark = b.mark()
    assert await reserve(b, 15, OTHER_TOKEN) == "Accepted"
    await b.status(1, "Reserved", after=mark)
    mark = b.mark()
    reply = await b.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert reply["status"] == "Accepted"
    await b.status(1, "Unavailable", after=mark)
    mark = b.mark()
    reply = await b.call("ChangeAvailability", {"connectorId": 1, "type": "Operative"})
    assert reply["status"] == "Accepted"
    await b.status(1, "Available", after=mark)
    assert (await b.call("CancelReservation", {"reservationId": 15}))["status"] == "Rejected"
    # Anyone may charge again.
    assert (await b.charge())["idTag"] == TOKEN


@station()
async def test_reserve_now_connector_zero(b: Bench) -> None:
    reply = await b.call("GetConfiguration", {"key": ["ReserveConnectorZeroSupported"]})
    assert reply["configurationKey"][0]["value"] == "true"
    assert await reserve(b, 9, TOKEN, connector=0) == "Accepted"
    start = await b.charge()
    assert start["reservationId"] == 9


@station()
async def test_reserve_now_parent_id_tag(b: Bench) -> None:
    def authorize(p: dict[str, Any]) -> dict[str, Any]:
        return {"idTagInfo": {"status": "Accepted", "parentIdTag": "GROUP-1"}}

    b.csms.replies["Authorize"] = authorize
    assert await reserve(b, 10, OTHER_TOKEN, parentIdTag="GROUP-1") == "Accepted"
    start = await b.charge()  # TOKEN, whose Authorize answer names the same parent
    assert start["idTag"] == TOKEN
    assert start["reservationId"] == 10
