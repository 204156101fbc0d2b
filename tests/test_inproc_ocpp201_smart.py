"""OCPP 2.0.1 availability, reservation, metering, smart charging, logs and monitoring
in-process (``tests.inproc``), moved from test_ocpp201_smart.py.

The station's daemon, link and adapter run on the virtual clock against the development
CSMS speaking 2.0.1 only. The tests follow the OCA 2.0.1 compliance test cases of
functional blocks G (availability), H (reservation), J (meter values), K (smart
charging), L (firmware status without a download) and N (diagnostics and monitoring).
Profile start times and expiries come from the virtual clock (``virtual_now``). What moves
files over HTTP (firmware updates and their install hook, log uploads) stays in
test_ocpp201_smart.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.inproc import TOKEN, Bench, no_call, now_iso, set_variables, station, virtual_now
from tests.ocpp201_helpers import id_token, tx_of
from tests.ocpp_helpers import iso, since

OTHER_TOKEN = "0A0B0C0D"
# The supervisor changes the offered current at most once per 5 s (IEC 61851-1 A.2.3).
DUTY_CHANGE_WAIT_S = 7.5

# -- helpers ---------------------------------------------------------------------------------


async def single_phase(b: Bench) -> None:
    """Start the station with its one EVSE wired single phase (SupplyPhases 1)."""
    b.config.write_text(b.config.read_text().replace("phases = 3", "phases = 1"))
    await b.start()


# -- helpers ---------------------------------------------------------------------------------


async def change_availability(b: Bench, status: str, evse: int | None = None) -> str:
    payload: dict[str, Any] = {"operationalStatus": status}
    if evse is not None:
        payload["evse"] = {"id": evse}
    result: str = (await b.call("ChangeAvailability", payload))["status"]
    return result


async def start_session(b: Bench, token: str = TOKEN, max_current_a: float = 16) -> dict[str, Any]:
    """Plug in, swipe and charge on EVSE 1; returns the Started TransactionEvent."""
    mark = b.mark()
    b.sim.plug(1)
    b.sim.swipe(token)
    b.sim.charge(1, max_current_a=max_current_a)
    started = await b.event("Started", after=mark)
    await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=10)
    return started


# -- G: availability ---------------------------------------------------------------------------


@station(version="2.0.1")
async def test_g04_change_availability_station_inoperative_when_idle(b: Bench) -> None:
    mark = b.mark()
    assert await change_availability(b, "Inoperative") == "Accepted"
    await b.status201(1, "Unavailable", after=mark)
    mark = b.mark()
    b.sim.plug(1)
    b.sim.swipe(TOKEN)
    b.sim.charge(1)
    await no_call(b, "TransactionEvent", mark, 2.0)
    status = b.sim.status(1)
    assert not status["contactor_closed"]
    assert status["transaction_id"] is None
    assert status["connector_status"] == "Unavailable"
    b.sim.unplug(1)
    mark = b.mark()
    assert await change_availability(b, "Operative") == "Accepted"
    await b.status201(1, "Available", after=mark)


@station(version="2.0.1")
async def test_g03_change_availability_evse_inoperative_then_operative(b: Bench) -> None:
    mark = b.mark()
    assert await change_availability(b, "Inoperative", evse=1) == "Accepted"
    await b.status201(1, "Unavailable", after=mark)
    assert b.sim.status(1)["connector_status"] == "Unavailable"
    mark = b.mark()
    b.sim.plug(1)
    b.sim.charge(1)
    await no_call(b, "TransactionEvent", mark, 1.5)
    assert not b.sim.status(1)["contactor_closed"]
    mark = b.mark()
    assert await change_availability(b, "Operative", evse=1) == "Accepted"
    await b.status201(1, "Occupied", after=mark)  # the EV is still plugged in
    # The EVSE is usable again: a swipe now starts charging.
    b.sim.swipe(TOKEN)
    await b.event("Started", after=mark)
    await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=10)


@station(version="2.0.1")
async def test_g03_token_swiped_while_inoperative_is_not_kept(b: Bench) -> None:
    assert await change_availability(b, "Inoperative", evse=1) == "Accepted"
    b.sim.plug(1)
    b.sim.charge(1)
    b.sim.swipe(TOKEN)
    await asyncio.sleep(0.5)
    mark = b.mark()
    assert await change_availability(b, "Operative", evse=1) == "Accepted"
    # Nobody presented a token since: nothing may start.
    await no_call(b, "TransactionEvent", mark, 2.0)
    assert not b.sim.status(1)["contactor_closed"]


@station(version="2.0.1")
async def test_g03_change_availability_evse_during_transaction_scheduled(b: Bench) -> None:
    started = await start_session(b)
    tx_id = started["transactionInfo"]["transactionId"]
    mark = b.mark()
    assert await change_availability(b, "Inoperative", evse=1) == "Scheduled"
    # The transaction goes on.
    await no_call(b, "StatusNotification", mark, 1.5, lambda p: p["connectorStatus"] == "Unavailable")
    status = b.sim.status(1)
    assert status["contactor_closed"]
    assert status["transaction_id"] == tx_id
    assert not since(b, "TransactionEvent", mark, lambda p: p["eventType"] == "Ended")
    b.sim.unplug(1)
    ended = await b.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    await b.status201(1, "Unavailable", after=mark)
    assert b.sim.status(1)["connector_status"] == "Unavailable"
    # G03.FR.05: the change comes when the transaction ends, straight from Occupied: a
    # momentary Available would be published to drivers.
    seen = [p["connectorStatus"] for p in since(b, "StatusNotification", mark)]
    assert seen == ["Unavailable"]


@station(version="2.0.1")
async def test_g04_change_availability_station_during_transaction_scheduled(b: Bench) -> None:
    await start_session(b)
    mark = b.mark()
    assert await change_availability(b, "Inoperative") == "Scheduled"
    await asyncio.sleep(1.0)
    assert b.sim.status(1)["contactor_closed"]
    b.sim.unplug(1)
    await b.event("Ended", after=mark)
    await b.status201(1, "Unavailable", after=mark)
    assert [p["connectorStatus"] for p in since(b, "StatusNotification", mark)] == ["Unavailable"]


@station(version="2.0.1")
async def test_g03_change_availability_unknown_evse_rejected(b: Bench) -> None:
    mark = b.mark()
    assert await change_availability(b, "Inoperative", evse=5) == "Rejected"
    reply = await b.call(
        "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 3}}
    )
    assert reply["status"] == "Rejected"
    await no_call(b, "StatusNotification", mark, 1.0)
    assert b.sim.status(1)["connector_status"] == "Available"


@station(version="2.0.1")
async def test_g03_change_availability_persists_across_restart(b: Bench) -> None:
    mark = b.mark()
    assert await change_availability(b, "Inoperative", evse=1) == "Accepted"
    await b.status201(1, "Unavailable", after=mark)
    assert await b.stop() == 0
    mark = b.mark()
    await b.start()
    first = await b.wait("StatusNotification", lambda p: p["evseId"] == 1, after=mark)
    assert first["connectorStatus"] == "Unavailable"
    mark = b.mark()
    assert await change_availability(b, "Operative", evse=1) == "Accepted"
    await b.status201(1, "Available", after=mark)


@station(version="2.0.1")
async def test_g03_connector_inoperative_outlives_its_evse_turning_operative_and_a_restart(b: Bench) -> None:
    """G03 (FR.06-FR.08) and G04 (FR.07-FR.09): the station, the EVSE and the connector keep
    their own availability, persisted: a connector set Inoperative stays Unavailable when its
    EVSE goes Inoperative and Operative again, when the station does, and after a restart."""
    connector = {"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 1}}
    mark = b.mark()
    assert (await b.call("ChangeAvailability", connector))["status"] == "Accepted"
    await b.status201(1, "Unavailable", after=mark)
    assert await change_availability(b, "Inoperative", evse=1) == "Accepted"
    assert await change_availability(b, "Inoperative") == "Accepted"
    assert await change_availability(b, "Operative") == "Accepted"
    assert await change_availability(b, "Operative", evse=1) == "Accepted"
    await asyncio.sleep(1.0)
    assert [p["connectorStatus"] for p in since(b, "StatusNotification", mark)] == ["Unavailable"]
    assert b.sim.status(1)["connector_status"] == "Unavailable"
    assert await b.stop() == 0
    mark = b.mark()
    await b.start()
    first = await b.wait("StatusNotification", lambda p: p["evseId"] == 1, after=mark)
    assert first["connectorStatus"] == "Unavailable"
    mark = b.mark()
    assert await b.call("ChangeAvailability", {**connector, "operationalStatus": "Operative"}) == {
        "status": "Accepted"
    }
    await b.status201(1, "Available", after=mark)


@station(version="2.0.1")
async def test_g04_evse_inoperative_stays_so_when_the_station_turns_operative(b: Bench) -> None:
    mark = b.mark()
    assert await change_availability(b, "Inoperative", evse=1) == "Accepted"
    assert await change_availability(b, "Inoperative") == "Accepted"
    assert await change_availability(b, "Operative") == "Accepted"
    await b.status201(1, "Unavailable", after=mark)
    await no_call(b, "StatusNotification", mark, 1.0, lambda p: p["connectorStatus"] == "Available")
    mark = b.mark()
    assert await change_availability(b, "Operative", evse=1) == "Accepted"
    await b.status201(1, "Available", after=mark)


@station(version="2.0.1")
async def test_g03_change_availability_scheduled_then_operative_cancels(b: Bench) -> None:
    await start_session(b)
    assert await change_availability(b, "Inoperative", evse=1) == "Scheduled"
    assert await change_availability(b, "Operative", evse=1) == "Accepted"
    mark = b.mark()
    b.sim.unplug(1)
    await b.event("Ended", after=mark)
    await b.status201(1, "Available", after=mark)
    await no_call(b, "StatusNotification", mark, 1.0, lambda p: p["connectorStatus"] == "Unavailable")


@station(version="2.0.1")
async def test_g04_change_availability_station_state_variable(b: Bench) -> None:
    async def state(component: dict[str, Any]) -> str:
        item = {"component": component, "variable": {"name": "AvailabilityState"}}
        reply = await b.call("GetVariables", {"getVariableData": [item]})
        value: str = reply["getVariableResult"][0]["attributeValue"]
        return value

    assert await state({"name": "ChargingStation"}) == "Available"
    mark = b.mark()
    assert await change_availability(b, "Inoperative") == "Accepted"
    await b.status201(1, "Unavailable", after=mark)
    assert await state({"name": "ChargingStation"}) == "Unavailable"
    assert await state({"name": "EVSE", "evse": {"id": 1}}) == "Unavailable"


# -- H: reservation ----------------------------------------------------------------------------


async def reserve(
    b: Bench,
    reservation_id: int,
    token: str = TOKEN,
    evse: int | None = 1,
    expires_in: float = 600,
    **extra: Any,
) -> str:
    payload: dict[str, Any] = {
        "id": reservation_id,
        "expiryDateTime": now_iso(expires_in),
        "idToken": id_token(token),
        **extra,
    }
    if evse is not None:
        payload["evseId"] = evse
    status: str = (await b.call("ReserveNow", payload))["status"]
    return status


async def cancel(b: Bench, reservation_id: int) -> str:
    status: str = (await b.call("CancelReservation", {"reservationId": reservation_id}))["status"]
    return status


@station(version="2.0.1")
async def test_h01_reserve_now_accepted_and_reserved(b: Bench) -> None:
    mark = b.mark()
    assert await reserve(b, 1) == "Accepted"
    await b.status201(1, "Reserved", after=mark)
    assert b.sim.status(1)["connector_status"] == "Reserved"


@station(version="2.0.1")
async def test_h03_use_reserved_evse_other_token_cannot_start(b: Bench) -> None:
    mark = b.mark()
    assert await reserve(b, 1, OTHER_TOKEN) == "Accepted"
    await b.status201(1, "Reserved", after=mark)
    mark = b.mark()
    b.sim.plug(1)
    b.sim.swipe(TOKEN)
    b.sim.charge(1)
    await no_call(b, "TransactionEvent", mark, 2.0)
    status = b.sim.status(1)
    assert status["transaction_id"] is None
    assert not status["contactor_closed"]


@station(version="2.0.1")
async def test_h03_use_reserved_evse_consumes_reservation(b: Bench) -> None:
    mark = b.mark()
    assert await reserve(b, 42) == "Accepted"
    await b.status201(1, "Reserved", after=mark)
    started = await start_session(b)
    assert started["idToken"] == id_token()
    # The reservation is used up: cancelling it now finds nothing.
    assert await cancel(b, 42) == "Rejected"
    b.sim.unplug(1)
    await b.event("Ended", after=mark)
    await b.status201(1, "Available", after=mark)


@station(version="2.0.1")
async def test_h03_use_reserved_evse_transaction_event_carries_reservation_id(b: Bench) -> None:
    assert await reserve(b, 43) == "Accepted"
    mark = b.mark()
    await start_session(b)
    with_id = since(b, "TransactionEvent", mark, lambda p: p.get("reservationId") == 43)
    assert with_id, since(b, "TransactionEvent", mark)


@station(version="2.0.1")
async def test_h04_reservation_expires(b: Bench) -> None:
    mark = b.mark()
    assert await reserve(b, 3, expires_in=2) == "Accepted"
    await b.status201(1, "Reserved", after=mark)
    update = await b.wait("ReservationStatusUpdate", after=mark, timeout=10)
    assert update == {"reservationId": 3, "reservationUpdateStatus": "Expired"}
    await b.status201(1, "Available", after=mark)
    assert await cancel(b, 3) == "Rejected"


@station(version="2.0.1")
async def test_h02_cancel_reservation_accepted(b: Bench) -> None:
    mark = b.mark()
    assert await reserve(b, 4, OTHER_TOKEN) == "Accepted"
    await b.status201(1, "Reserved", after=mark)
    mark = b.mark()
    assert await cancel(b, 4) == "Accepted"
    await b.status201(1, "Available", after=mark)
    # A cancelled reservation is not reported as Expired.
    await no_call(b, "ReservationStatusUpdate", mark, 0.5)
    # Anyone may charge again.
    assert (await start_session(b))["idToken"] == id_token()


@station(version="2.0.1")
async def test_h02_cancel_reservation_unknown_rejected(b: Bench) -> None:
    assert await cancel(b, 12345) == "Rejected"


@station(version="2.0.1")
async def test_h01_reserve_now_occupied(b: Bench) -> None:
    b.sim.plug(1)
    await b.sim.wait_until(lambda s: s["cp_state"] == "B")
    await b.status201(1, "Occupied")
    assert await reserve(b, 5, OTHER_TOKEN) == "Occupied"
    b.sim.unplug(1)
    await start_session(b)
    assert await reserve(b, 6, OTHER_TOKEN) == "Occupied"


@station(version="2.0.1")
async def test_h01_reserve_now_faulted(b: Bench) -> None:
    mark = b.mark()
    b.sim.fault("rcd")
    await b.status201(1, "Faulted", after=mark)
    assert await reserve(b, 7) == "Faulted"


@station(version="2.0.1")
async def test_h01_reserve_now_unavailable(b: Bench) -> None:
    mark = b.mark()
    assert await change_availability(b, "Inoperative", evse=1) == "Accepted"
    await b.status201(1, "Unavailable", after=mark)
    assert await reserve(b, 8) == "Unavailable"


def call_index(b: Bench, action: str, after: int, where: Callable[[dict[str, Any]], bool]) -> int:
    """Timeline index of the station's first matching CALL of ``action`` from ``after`` on."""
    return next(
        i
        for i, e in enumerate(b.csms.timeline)
        if i >= after
        and e.kind == "call"
        and e.direction == "in"
        and e.action == action
        and isinstance(e.payload, dict)
        and where(e.payload)
    )


@station(version="2.0.1")
async def test_h01_fr_16_tc_h_20_reserved_evse_faulted_removes_reservation(b: Bench) -> None:
    """H01.FR.16, OCTT TC_H_20: the reserved EVSE becomes Faulted: the station cancels the
    reservation and, after the Faulted status, sends ReservationStatusUpdate Removed."""
    mark = b.mark()
    assert await reserve(b, 21, OTHER_TOKEN) == "Accepted"
    await b.status201(1, "Reserved", after=mark)
    mark = b.mark()
    b.sim.fault("rcd")
    update = await b.wait("ReservationStatusUpdate", after=mark)
    assert update == {"reservationId": 21, "reservationUpdateStatus": "Removed"}
    faulted = call_index(b, "StatusNotification", mark, lambda p: p["connectorStatus"] == "Faulted")
    removed = call_index(b, "ReservationStatusUpdate", mark, lambda p: p["reservationId"] == 21)
    assert faulted < removed
    assert await cancel(b, 21) == "Rejected"
    await b.eventually(lambda: b.db("SELECT id FROM reservations") == [], what="reservation row deleted")


@station(version="2.0.1")
async def test_h01_fr_17_reserved_evse_unavailable_removes_reservation(b: Bench) -> None:
    """H01.FR.17: the reserved EVSE becomes Unavailable (ChangeAvailability Inoperative):
    the reservation is cancelled, reported Removed, and does not come back with Operative."""
    mark = b.mark()
    assert await reserve(b, 22, OTHER_TOKEN) == "Accepted"
    await b.status201(1, "Reserved", after=mark)
    mark = b.mark()
    assert await change_availability(b, "Inoperative", evse=1) == "Accepted"
    update = await b.wait("ReservationStatusUpdate", after=mark)
    assert update == {"reservationId": 22, "reservationUpdateStatus": "Removed"}
    unavailable = call_index(b, "StatusNotification", mark, lambda p: p["connectorStatus"] == "Unavailable")
    assert unavailable < call_index(b, "ReservationStatusUpdate", mark, lambda p: True)
    mark = b.mark()
    assert await change_availability(b, "Operative", evse=1) == "Accepted"
    await b.status201(1, "Available", after=mark)
    assert await cancel(b, 22) == "Rejected"
    # Anyone may charge again.
    assert (await start_session(b))["idToken"] == id_token()


@station(version="2.0.1")
async def test_h01_reserve_now_unknown_evse_rejected(b: Bench) -> None:
    assert await reserve(b, 9, evse=7) == "Rejected"


@station(version="2.0.1")
async def test_h01_reserve_now_non_evse_specific(b: Bench) -> None:
    reply = await b.call(
        "GetVariables",
        {
            "getVariableData": [
                {"component": {"name": "ReservationCtrlr"}, "variable": {"name": "NonEvseSpecific"}}
            ]
        },
    )
    assert reply["getVariableResult"][0]["attributeValue"] == "true"
    mark = b.mark()
    assert await reserve(b, 10, evse=None) == "Accepted"
    # The only EVSE is kept for the holder.
    await b.status201(1, "Reserved", after=mark)
    mark = b.mark()
    b.sim.plug(1)
    b.sim.swipe(OTHER_TOKEN)
    await no_call(b, "TransactionEvent", mark, 1.5)
    b.sim.swipe(TOKEN)
    b.sim.charge(1)
    await b.event("Started", after=mark)
    assert await cancel(b, 10) == "Rejected"


@station(version="2.0.1")
async def test_h03_use_reserved_evse_group_id_token_admits_group_member(b: Bench) -> None:
    group = {"idToken": "GROUP-1", "type": "Central"}

    def authorize(p: dict[str, Any]) -> dict[str, Any]:
        return {"idTokenInfo": {"status": "Accepted", "groupIdToken": group}}

    b.csms.set_reply("Authorize", authorize)
    assert await reserve(b, 11, OTHER_TOKEN, groupIdToken=group) == "Accepted"
    started = await start_session(b)  # TOKEN, whose Authorize answer names the same group
    assert started["idToken"] == id_token()
    assert await cancel(b, 11) == "Rejected"


@station(version="2.0.1")
async def test_h03_use_reserved_evse_group_id_token_other_group_refused(b: Bench) -> None:
    def authorize(p: dict[str, Any]) -> dict[str, Any]:
        return {
            "idTokenInfo": {"status": "Accepted", "groupIdToken": {"idToken": "GROUP-2", "type": "Central"}}
        }

    b.csms.set_reply("Authorize", authorize)
    group = {"idToken": "GROUP-1", "type": "Central"}
    assert await reserve(b, 12, OTHER_TOKEN, groupIdToken=group) == "Accepted"
    mark = b.mark()
    b.sim.plug(1)
    b.sim.swipe(TOKEN)
    b.sim.charge(1)
    await no_call(b, "TransactionEvent", mark, 2.0)
    assert await cancel(b, 12) == "Accepted"


@station(version="2.0.1")
async def test_h01_reserve_now_persists_across_restart(b: Bench) -> None:
    mark = b.mark()
    assert await reserve(b, 13, OTHER_TOKEN) == "Accepted"
    await b.status201(1, "Reserved", after=mark)
    assert await b.stop() == 0
    mark = b.mark()
    await b.start()
    first = await b.wait("StatusNotification", lambda p: p["evseId"] == 1, after=mark)
    assert first["connectorStatus"] == "Reserved"
    assert await cancel(b, 13) == "Accepted"


# -- J: meter values ---------------------------------------------------------------------------


def sampled_values(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for mv in event.get("meterValue", []) for v in mv["sampledValue"]]


@station(version="2.0.1")
async def test_j02_clock_aligned_meter_values_in_transaction(b: Bench) -> None:
    await set_variables(b, ("AlignedDataCtrlr", "Interval", "2"))
    await start_session(b)
    mark = b.mark()
    first = await b.event("Updated", lambda p: p["triggerReason"] == "MeterValueClock", after=mark, timeout=5)
    second = await b.event(
        "Updated",
        lambda p: p["triggerReason"] == "MeterValueClock" and p["seqNo"] > first["seqNo"],
        after=mark,
        timeout=5,
    )
    for event in (first, second):
        values = sampled_values(event)
        assert values, event
        assert {v["context"] for v in values} == {"Sample.Clock"}
        assert any(
            v.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"
            for v in values
        )
        # Aligned to the interval: on an even second.
        at = datetime.fromisoformat(event["meterValue"][0]["timestamp"].replace("Z", "+00:00"))
        assert at.second % 2 == 0 and at.microsecond < 500_000, at
    # In a transaction they go in TransactionEvents only.
    assert not since(b, "MeterValues", mark)


@station(version="2.0.1")
async def test_j01_clock_aligned_meter_values_when_idle_only_with_send_during_idle(b: Bench) -> None:
    await set_variables(b, ("AlignedDataCtrlr", "Interval", "1"))
    mark = b.mark()
    await no_call(b, "MeterValues", mark, 2.5)
    await set_variables(b, ("AlignedDataCtrlr", "SendDuringIdle", "true"))
    mark = b.mark()
    meter = await b.wait("MeterValues", after=mark, timeout=5)
    assert meter["evseId"] == 1
    values = [v for mv in meter["meterValue"] for v in mv["sampledValue"]]
    assert values and {v["context"] for v in values} == {"Sample.Clock"}
    assert not since(b, "TransactionEvent", mark)


@station(version="2.0.1")
async def test_j02_sampled_meter_values_tx_updated_interval(b: Bench) -> None:
    await set_variables(b, ("SampledDataCtrlr", "TxUpdatedInterval", "1"))
    await start_session(b)
    mark = b.mark()
    event = await b.event(
        "Updated", lambda p: p["triggerReason"] == "MeterValuePeriodic", after=mark, timeout=5
    )
    assert {v["context"] for v in sampled_values(event)} == {"Sample.Periodic"}


@station(version="2.0.1")
async def test_j02_sampled_meter_values_in_ended_event(b: Bench) -> None:
    await set_variables(b, ("SampledDataCtrlr", "TxEndedInterval", "1"))
    await start_session(b)
    await asyncio.sleep(3.5)
    mark = b.mark()
    b.sim.unplug(1)
    ended = await b.event("Ended", after=mark)
    contexts = [v["context"] for v in sampled_values(ended)]
    assert contexts.count("Sample.Periodic") >= 2, ended["meterValue"]
    assert contexts[-1] == "Transaction.End"


@station(version="2.0.1")
async def test_j02_clock_aligned_meter_values_in_ended_event(b: Bench) -> None:
    await set_variables(b, ("AlignedDataCtrlr", "TxEndedInterval", "1"))
    await start_session(b)
    await asyncio.sleep(3.5)
    mark = b.mark()
    b.sim.unplug(1)
    ended = await b.event("Ended", after=mark)
    contexts = [v["context"] for v in sampled_values(ended)]
    # About one a second; the station ticks once a second, so allow for a missed boundary.
    assert contexts.count("Sample.Clock") >= 2, ended["meterValue"]


@station(version="2.0.1")
async def test_f06_trigger_message_meter_values(b: Bench) -> None:
    mark = b.mark()
    reply = await b.call("TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 1}})
    assert reply["status"] == "Accepted"
    meter = await b.wait("MeterValues", after=mark)
    assert meter["evseId"] == 1
    values = [v for mv in meter["meterValue"] for v in mv["sampledValue"]]
    assert values and {v["context"] for v in values} == {"Trigger"}
    # Without an EVSE: every EVSE.
    mark = b.mark()
    assert (await b.call("TriggerMessage", {"requestedMessage": "MeterValues"}))["status"] == "Accepted"
    assert (await b.wait("MeterValues", after=mark))["evseId"] == 1
    reply = await b.call("TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 9}})
    assert reply["status"] == "Rejected"


# -- K: smart charging -------------------------------------------------------------------------


def charging_profile(
    profile_id: int,
    purpose: str,
    limit: float = 10,
    stack_level: int = 0,
    kind: str = "Relative",
    unit: str = "A",
    start: str | None = None,
    periods: list[tuple[int, float]] | None = None,
    duration: int | None = None,
    tx_id: str | None = None,
    schedules: int = 1,
) -> dict[str, Any]:
    """A 2.0.1 ChargingProfileType."""
    rows = [{"startPeriod": s, "limit": lim} for s, lim in (periods or [(0, limit)])]
    body: dict[str, Any] = {
        "id": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": [],
    }
    for n in range(schedules):
        schedule: dict[str, Any] = {
            "id": profile_id * 10 + n,
            "chargingRateUnit": unit,
            "chargingSchedulePeriod": rows,
        }
        if start is not None:
            schedule["startSchedule"] = start
        if duration is not None:
            schedule["duration"] = duration
        body["chargingSchedule"].append(schedule)
    if tx_id is not None:
        body["transactionId"] = tx_id
    return body


async def set_profile(b: Bench, evse: int, body: dict[str, Any]) -> str:
    reply = await b.call("SetChargingProfile", {"evseId": evse, "chargingProfile": body})
    status: str = reply["status"]
    return status


async def composite(b: Bench, evse: int = 1, unit: str = "A", duration: int = 3600) -> dict[str, Any]:
    return await b.call(
        "GetCompositeSchedule", {"evseId": evse, "duration": duration, "chargingRateUnit": unit}
    )


def limits(reply: dict[str, Any]) -> list[tuple[int, float]]:
    return [(p["startPeriod"], p["limit"]) for p in reply["schedule"]["chargingSchedulePeriod"]]


async def offered(b: Bench, amps: float, timeout: float = DUTY_CHANGE_WAIT_S) -> dict[str, Any]:
    """Wait until the PWM offers ``amps``; returns the rig status."""
    return await b.sim.wait_until(
        lambda s: s["pwm"] and s["offered_a"] == pytest.approx(amps, abs=0.1), timeout=timeout
    )


@station(version="2.0.1")
async def test_k01_set_charging_profile_tx_default_limits_offered_current(b: Bench) -> None:
    assert await set_profile(b, 1, charging_profile(1, "TxDefaultProfile", 10)) == "Accepted"
    await start_session(b)
    status = await offered(b, 10)
    assert status["duty_percent"] == pytest.approx(16.67, abs=0.1)
    assert status["contactor_closed"]
    # The EV draws no more than offered: 10 A on 3 phases at 230 V.
    await b.sim.wait_until(lambda s: 0 < s["power_w"] <= 6900 * 1.02, timeout=10)
    assert limits(await composite(b)) == [(0, 10.0)]


@station(version="2.0.1")
async def test_k01_set_charging_profile_tx_default_absolute_while_charging(b: Bench) -> None:
    await start_session(b)
    await offered(b, 32)
    body = charging_profile(1, "TxDefaultProfile", 10, kind="Absolute", start=now_iso(-60))
    assert await set_profile(b, 0, body) == "Accepted"  # on evse 0: for every EVSE
    status = await offered(b, 10)
    assert status["duty_percent"] == pytest.approx(16.67, abs=0.1)
    assert status["contactor_closed"]


@station(version="2.0.1")
async def test_k01_set_charging_profile_in_watts(b: Bench) -> None:
    body = charging_profile(1, "TxDefaultProfile", 6900, unit="W")  # 10 A on 3 phases at 230 V
    assert await set_profile(b, 1, body) == "Accepted"
    await start_session(b)
    status = await offered(b, 10)
    assert status["duty_percent"] == pytest.approx(16.67, abs=0.1)
    assert limits(await composite(b)) == [(0, 10.0)]
    reply = await composite(b, unit="W")
    assert limits(reply) == [(0, 6900.0)]


@station(start=False, version="2.0.1")
async def test_k01_fr_49_no_number_phases_means_three_on_a_single_phase_evse(b: Bench) -> None:
    """K01.FR.49: "When a SetChargingProfileRequest without a value for numberPhases is received
    AND the EVSE is of type AC: The Charging Station SHALL assume numberPhases = 3", also on a
    single-phase EVSE (the 2.1 errata note: single-phase regions should send numberPhases = 1).
    K01.FR.50 then gives 6900 W / (230 V x 3) = 10 A, enforced and reported alike."""
    await single_phase(b)
    body = charging_profile(1, "TxDefaultProfile", 6900, unit="W")
    assert await set_profile(b, 1, body) == "Accepted"
    await start_session(b)  # a Relative profile: it starts with the transaction
    await offered(b, 10)
    assert limits(await composite(b)) == [(0, 10.0)]
    # With numberPhases = 1 the same power is 30 A on the one phase.
    body["chargingSchedule"][0]["chargingSchedulePeriod"][0]["numberPhases"] = 1
    assert await set_profile(b, 1, body) == "Accepted"
    reply = await composite(b)
    assert reply["schedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 30.0, "numberPhases": 1}
    ]
    await offered(b, 30)


@station(start=False, version="2.0.1")
async def test_k01_fr_45_number_phases_above_supply_phases_rejected(b: Bench) -> None:
    """K01.FR.45 (as libocpp reads it): a period with more numberPhases than the AC EVSE is
    supplied with (EVSE SupplyPhases 1) is Rejected, not silently capped; EVSE 0 is judged by
    the station's SupplyPhases."""
    await single_phase(b)
    for evse, purpose in ((1, "TxDefaultProfile"), (0, "TxDefaultProfile"), (0, "ChargingStationMaxProfile")):
        body = charging_profile(1, purpose, 10)
        body["chargingSchedule"][0]["chargingSchedulePeriod"][0]["numberPhases"] = 3
        reply = await b.call("SetChargingProfile", {"evseId": evse, "chargingProfile": body})
        assert reply["status"] == "Rejected", (evse, purpose)
        assert reply["statusInfo"]["reasonCode"] == "InvalidSchedule"
    assert limits(await composite(b)) == [(0, 32.0)]
    body = charging_profile(1, "TxDefaultProfile", 10)
    body["chargingSchedule"][0]["chargingSchedulePeriod"][0]["numberPhases"] = 1
    assert await set_profile(b, 1, body) == "Accepted"


@station(version="2.0.1")
async def test_k01_set_charging_profile_unknown_evse_rejected(b: Bench) -> None:
    assert await set_profile(b, 4, charging_profile(1, "TxDefaultProfile", 10)) == "Rejected"
    assert limits(await composite(b)) == [(0, 32.0)]


@station(version="2.0.1")
async def test_k01_set_charging_profile_two_schedules_rejected(b: Bench) -> None:
    body = charging_profile(1, "TxDefaultProfile", 10, schedules=2)
    assert await set_profile(b, 1, body) == "Rejected"
    reply = await b.call("GetChargingProfiles", {"requestId": 1, "chargingProfile": {}})
    assert reply["status"] == "NoProfiles"


@station(version="2.0.1")
async def test_k02_set_charging_profile_tx_profile_for_running_transaction(b: Bench) -> None:
    tx_id = tx_of(await start_session(b))
    await offered(b, 32)
    assert await set_profile(b, 1, charging_profile(2, "TxProfile", 8, tx_id=tx_id)) == "Accepted"
    status = await offered(b, 8)
    assert status["duty_percent"] == pytest.approx(13.33, abs=0.1)
    assert limits(await composite(b)) == [(0, 8.0)]
    mark = b.mark()
    b.sim.unplug(1)
    await b.event("Ended", after=mark)

    # A TxProfile lives only as long as its transaction.
    async def removed() -> bool:
        return limits(await composite(b)) == [(0, 32.0)]

    await b.eventually(removed, timeout=5, what="TxProfile removed")
    reply = await b.call(
        "GetChargingProfiles", {"requestId": 2, "chargingProfile": {"chargingProfilePurpose": "TxProfile"}}
    )
    assert reply["status"] == "NoProfiles"


@station(version="2.0.1")
async def test_k02_set_charging_profile_tx_profile_unknown_transaction_rejected(b: Bench) -> None:
    body = charging_profile(2, "TxProfile", 8, tx_id="no-such-transaction")
    assert await set_profile(b, 1, body) == "Rejected"
    assert await set_profile(b, 1, charging_profile(3, "TxProfile", 8)) == "Rejected"  # no transactionId
    tx_id = tx_of(await start_session(b))
    assert await set_profile(b, 1, body) == "Rejected"
    # A TxProfile belongs on the EVSE of its transaction, never on evse 0.
    assert await set_profile(b, 0, charging_profile(4, "TxProfile", 8, tx_id=tx_id)) == "Rejected"
    assert limits(await composite(b)) == [(0, 32.0)]


@station(version="2.0.1")
async def test_k01_set_charging_profile_charging_station_max_profile(b: Bench) -> None:
    cap = charging_profile(1, "ChargingStationMaxProfile", 12, kind="Absolute", start=now_iso(-60))
    # A ChargingStationMaxProfile belongs on evse 0 only.
    assert await set_profile(b, 1, cap) == "Rejected"
    assert await set_profile(b, 0, cap) == "Accepted"
    assert limits(await composite(b, evse=0)) == [(0, 12.0)]
    tx_id = tx_of(await start_session(b))
    status = await offered(b, 12)
    assert status["contactor_closed"]
    # A TxProfile above the station maximum is capped by it.
    assert await set_profile(b, 1, charging_profile(2, "TxProfile", 20, tx_id=tx_id)) == "Accepted"
    assert limits(await composite(b)) == [(0, 12.0)]
    await asyncio.sleep(2.0)
    assert b.sim.status(1)["offered_a"] == 12


@station(version="2.0.1")
async def test_k01_set_charging_profile_stack_level_higher_wins(b: Bench) -> None:
    start = now_iso(-60)
    low = charging_profile(1, "TxDefaultProfile", 12, stack_level=0, kind="Absolute", start=start)
    high = charging_profile(2, "TxDefaultProfile", 8, stack_level=1, kind="Absolute", start=start)
    assert await set_profile(b, 1, low) == "Accepted"
    assert await set_profile(b, 1, high) == "Accepted"
    assert limits(await composite(b)) == [(0, 8.0)]
    await start_session(b)
    await offered(b, 8)
    # The higher stack level wins even when it allows more.
    higher = charging_profile(3, "TxDefaultProfile", 20, stack_level=2, kind="Absolute", start=start)
    assert await set_profile(b, 1, higher) == "Accepted"
    assert limits(await composite(b)) == [(0, 20.0)]
    await offered(b, 20)


@station(version="2.0.1")
async def test_k01_set_charging_profile_below_minimum_suspends_evse(b: Bench) -> None:
    tx_id = tx_of(await start_session(b))
    await offered(b, 32)
    mark = b.mark()
    assert await set_profile(b, 0, charging_profile(1, "TxDefaultProfile", 4)) == "Accepted"
    status = await b.sim.wait_until(lambda s: not s["contactor_closed"], timeout=DUTY_CHANGE_WAIT_S)
    assert status["duty_percent"] == 100
    assert status["offered_a"] == 0
    assert not status["pwm"]
    event = await b.event(
        "Updated", lambda p: p["transactionInfo"].get("chargingState") == "SuspendedEVSE", after=mark
    )
    assert tx_of(event) == tx_id  # the transaction goes on
    assert b.sim.status(1)["transaction_id"] == tx_id
    # Clearing the limit resumes charging by itself.
    mark = b.mark()
    reply = await b.call("ClearChargingProfile", {"chargingProfileId": 1})
    assert reply["status"] == "Accepted"
    await offered(b, 32)
    await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=10)
    event = await b.event(
        "Updated", lambda p: p["transactionInfo"].get("chargingState") == "Charging", after=mark
    )
    assert tx_of(event) == tx_id
    assert not since(b, "TransactionEvent", 0, lambda p: p["eventType"] == "Ended")


async def _schedule_with_edges(b: Bench) -> None:
    """TxDefault on EVSE 1: 10 A now, 16 A from 1800 s from now, none from 2800 s (hardware 32 A)."""
    base = virtual_now().replace(microsecond=0) - timedelta(seconds=100)
    body = charging_profile(
        1, "TxDefaultProfile", kind="Absolute", start=iso(base), periods=[(0, 10), (1900, 16)], duration=2900
    )
    assert await set_profile(b, 1, body) == "Accepted"


def _near(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [lim for _, lim in got] == [lim for _, lim in expected], got
    for (start, _), (want, _) in zip(got, expected, strict=True):
        assert want - 1 <= start <= want, got  # edges round up to whole seconds from the request


@station(version="2.0.1")
async def test_k08_get_composite_schedule(b: Bench) -> None:
    await _schedule_with_edges(b)
    reply = await composite(b)
    assert reply["status"] == "Accepted"
    schedule = reply["schedule"]
    assert schedule["evseId"] == 1
    assert schedule["duration"] == 3600
    assert schedule["chargingRateUnit"] == "A"
    start = datetime.fromisoformat(schedule["scheduleStart"].replace("Z", "+00:00"))
    assert abs(start - virtual_now()) < timedelta(seconds=5)
    _near(limits(reply), [(0, 10.0), (1800, 16.0), (2800, 32.0)])
    watts = await composite(b, unit="W")
    assert watts["schedule"]["chargingRateUnit"] == "W"
    _near(limits(watts), [(0, 6900.0), (1800, 11040.0), (2800, 22080.0)])  # 3 phases at 230 V


@station(version="2.0.1")
async def test_k08_get_composite_schedule_is_what_the_pilot_offers(b: Bench) -> None:
    start = now_iso(-60)
    assert await set_profile(
        b, 1, charging_profile(1, "TxDefaultProfile", 14, kind="Absolute", start=start)
    ) == ("Accepted")
    cap = charging_profile(2, "ChargingStationMaxProfile", 9, kind="Absolute", start=start)
    assert await set_profile(b, 0, cap) == "Accepted"
    await start_session(b)
    (first,) = limits(await composite(b))
    assert first == (0, 9.0)
    await offered(b, first[1])


@station(version="2.0.1")
async def test_k08_get_composite_schedule_starts_at_the_request_instant(b: Bench) -> None:
    """K08: the schedule runs from the request's own instant; a profile begun earlier in that
    same second is in force from period 0 (no phantom first period at the hardware limit)."""
    now = virtual_now()
    if now.microsecond > 300_000:
        await asyncio.sleep(1.05 - now.microsecond / 1e6)
        now = virtual_now()
    begun = now.replace(microsecond=0) + timedelta(milliseconds=400)
    await asyncio.sleep(max(0.0, (begun - virtual_now()).total_seconds()) + 0.05)
    body = charging_profile(1, "TxDefaultProfile", 10, kind="Absolute", start=iso(begun))
    assert await set_profile(b, 1, body) == "Accepted"
    reply = await composite(b)
    assert datetime.fromisoformat(reply["schedule"]["scheduleStart"]) > begun
    assert limits(reply) == [(0, 10.0)]


@station(version="2.0.1", evses=2)
async def test_k08_two_evses_share_the_station_maximum_as_reported(b: Bench) -> None:
    """K08: the composite is the limit in force (local limits included): two EVSEs charging
    under a 20 A ChargingStationMaxProfile each get and report 10 A."""
    cap = charging_profile(1, "ChargingStationMaxProfile", 20, kind="Absolute", start=now_iso(-60))
    assert await set_profile(b, 0, cap) == "Accepted"
    for evse, token in ((1, TOKEN), (2, OTHER_TOKEN)):
        mark = b.mark()
        b.sim.plug(evse)
        b.sim.swipe(token)
        b.sim.charge(evse, max_current_a=32)
        await b.event("Started", after=mark)
    for evse in (1, 2):
        await b.sim.wait_until(lambda s: s["pwm"] and s["offered_a"] == 10, evse=evse, timeout=15)
        assert limits(await composite(b, evse=evse)) == [(0, 10.0)]
    assert limits(await composite(b, evse=0)) == [(0, 20.0)]


@station(version="2.0.1")
async def test_k08_get_composite_schedule_unknown_evse_rejected(b: Bench) -> None:
    assert (await composite(b, evse=5))["status"] == "Rejected"
    reply = await composite(b, evse=0)
    assert reply["status"] == "Accepted"
    assert reply["schedule"]["evseId"] == 0


async def _report(b: Bench, request_id: int, after: int) -> list[dict[str, Any]]:
    """The ReportChargingProfiles of a request, until tbc is false."""
    reports = []
    while True:
        report = await b.wait(
            "ReportChargingProfiles",
            lambda p: p["requestId"] == request_id and p not in reports,
            after=after,
        )
        reports.append(report)
        if not report.get("tbc", False):
            return reports


async def _setup_two_profiles(b: Bench) -> None:
    start = now_iso(-60)
    assert await set_profile(
        b, 1, charging_profile(1, "TxDefaultProfile", 10, kind="Absolute", start=start)
    ) == ("Accepted")
    cap = charging_profile(2, "ChargingStationMaxProfile", 20, kind="Absolute", start=start)
    assert await set_profile(b, 0, cap) == "Accepted"


@station(version="2.0.1")
async def test_k09_get_charging_profiles_by_id(b: Bench) -> None:
    await _setup_two_profiles(b)
    mark = b.mark()
    reply = await b.call(
        "GetChargingProfiles", {"requestId": 7, "chargingProfile": {"chargingProfileId": [1]}}
    )
    assert reply["status"] == "Accepted"
    (report,) = await _report(b, 7, mark)
    assert report["evseId"] == 1
    assert report["chargingLimitSource"] == "CSO"
    assert [p["id"] for p in report["chargingProfile"]] == [1]
    profile = report["chargingProfile"][0]
    assert profile["chargingProfilePurpose"] == "TxDefaultProfile"
    assert profile["chargingSchedule"][0]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 10.0}]


@station(version="2.0.1")
async def test_k09_get_charging_profiles_by_purpose(b: Bench) -> None:
    await _setup_two_profiles(b)
    mark = b.mark()
    criteria = {"chargingProfilePurpose": "ChargingStationMaxProfile"}
    reply = await b.call("GetChargingProfiles", {"requestId": 8, "chargingProfile": criteria})
    assert reply["status"] == "Accepted"
    (report,) = await _report(b, 8, mark)
    assert report["evseId"] == 0
    assert [p["id"] for p in report["chargingProfile"]] == [2]


@station(version="2.0.1")
async def test_k09_get_charging_profiles_by_evse(b: Bench) -> None:
    await _setup_two_profiles(b)
    mark = b.mark()
    reply = await b.call("GetChargingProfiles", {"requestId": 9, "evseId": 1, "chargingProfile": {}})
    assert reply["status"] == "Accepted"
    reports = await _report(b, 9, mark)
    assert [p["id"] for r in reports for p in r["chargingProfile"]] == [1]
    mark = b.mark()
    reply = await b.call("GetChargingProfiles", {"requestId": 10, "chargingProfile": {}})
    assert reply["status"] == "Accepted"
    reports = await _report(b, 10, mark)
    assert sorted(p["id"] for r in reports for p in r["chargingProfile"]) == [1, 2]
    assert [r["tbc"] for r in reports][-1] is False


@station(version="2.0.1")
async def test_k09_get_charging_profiles_nothing_matching(b: Bench) -> None:
    mark = b.mark()
    reply = await b.call("GetChargingProfiles", {"requestId": 1, "chargingProfile": {}})
    assert reply["status"] == "NoProfiles"
    await _setup_two_profiles(b)
    reply = await b.call(
        "GetChargingProfiles", {"requestId": 2, "chargingProfile": {"chargingProfileId": [99]}}
    )
    assert reply["status"] == "NoProfiles"
    reply = await b.call(
        "GetChargingProfiles", {"requestId": 3, "chargingProfile": {"chargingProfilePurpose": "TxProfile"}}
    )
    assert reply["status"] == "NoProfiles"
    await no_call(b, "ReportChargingProfiles", mark, 0.5)


@station(version="2.0.1")
async def test_k10_clear_charging_profile_by_id(b: Bench) -> None:
    await _setup_two_profiles(b)
    assert limits(await composite(b)) == [(0, 10.0)]
    assert (await b.call("ClearChargingProfile", {"chargingProfileId": 1}))["status"] == "Accepted"
    assert limits(await composite(b)) == [(0, 20.0)]
    assert (await b.call("ClearChargingProfile", {"chargingProfileId": 1}))["status"] == "Unknown"


@station(version="2.0.1")
async def test_k10_clear_charging_profile_by_criteria(b: Bench) -> None:
    await _setup_two_profiles(b)
    criteria = {"chargingProfilePurpose": "ChargingStationMaxProfile", "stackLevel": 0}
    assert (await b.call("ClearChargingProfile", {"chargingProfileCriteria": criteria}))[
        "status"
    ] == "Accepted"
    assert limits(await composite(b)) == [(0, 10.0)]
    criteria = {"evseId": 1, "chargingProfilePurpose": "TxDefaultProfile"}
    assert (await b.call("ClearChargingProfile", {"chargingProfileCriteria": criteria}))[
        "status"
    ] == "Accepted"
    assert limits(await composite(b)) == [(0, 32.0)]
    reply = await b.call("GetChargingProfiles", {"requestId": 1, "chargingProfile": {}})
    assert reply["status"] == "NoProfiles"


@station(version="2.0.1")
async def test_k10_clear_charging_profile_unknown(b: Bench) -> None:
    assert (await b.call("ClearChargingProfile", {"chargingProfileId": 77}))["status"] == "Unknown"
    await _setup_two_profiles(b)
    criteria = {"chargingProfilePurpose": "TxProfile"}
    assert (await b.call("ClearChargingProfile", {"chargingProfileCriteria": criteria}))[
        "status"
    ] == "Unknown"
    criteria = {"evseId": 1, "stackLevel": 5}
    assert (await b.call("ClearChargingProfile", {"chargingProfileCriteria": criteria}))[
        "status"
    ] == "Unknown"
    assert limits(await composite(b)) == [(0, 10.0)]


EXTERNAL = "ChargingStationExternalConstraints"


@station(version="2.0.1")
async def test_k10_fr_06_clear_charging_profile_external_constraints_unknown(b: Bench) -> None:
    """K10.FR.06: the CSMS may not clear ChargingStationExternalConstraints; no such profile
    is stored here, so the answer is Unknown, not a CALLERROR, and nothing else is cleared."""
    await _setup_two_profiles(b)
    for criteria in ({"chargingProfilePurpose": EXTERNAL}, {"evseId": 1, "chargingProfilePurpose": EXTERNAL}):
        reply = await b.call("ClearChargingProfile", {"chargingProfileCriteria": criteria})
        assert reply["status"] == "Unknown"
        assert reply["statusInfo"]["reasonCode"] == "InvalidValue"
    assert limits(await composite(b)) == [(0, 10.0)]


@station(version="2.0.1")
async def test_k09_get_charging_profiles_external_constraints_no_profiles(b: Bench) -> None:
    """K09: a ChargingStationExternalConstraints profile can't be on the station: NoProfiles."""
    await _setup_two_profiles(b)
    mark = b.mark()
    criteria = {"chargingProfilePurpose": EXTERNAL}
    reply = await b.call("GetChargingProfiles", {"requestId": 4, "chargingProfile": criteria})
    assert reply["status"] == "NoProfiles"
    await no_call(b, "ReportChargingProfiles", mark, 0.5)


@station(version="2.0.1")
async def test_k01_fr_22_set_charging_profile_external_constraints_rejected(b: Bench) -> None:
    """K01.FR.22: the CSMS may not set a ChargingStationExternalConstraints profile: Rejected."""
    body = charging_profile(1, EXTERNAL, 10, kind="Absolute", start=now_iso(-60))
    assert await set_profile(b, 0, body) == "Rejected"
    assert await set_profile(b, 1, body) == "Rejected"
    assert limits(await composite(b)) == [(0, 32.0)]


def remote_start(remote_start_id: int, purpose: str = "TxProfile", limit: float = 8) -> dict[str, Any]:
    """A RequestStartTransaction for EVSE 1 with a charging profile."""
    return {
        "idToken": id_token(),
        "remoteStartId": remote_start_id,
        "evseId": 1,
        "chargingProfile": charging_profile(5, purpose, limit),
    }


@station(version="2.0.1")
async def test_k05_request_start_transaction_with_tx_profile(b: Bench) -> None:
    b.sim.plug(1)
    # Only a TxProfile may come with a remote start.
    assert (await b.call("RequestStartTransaction", remote_start(1, "TxDefaultProfile")))[
        "status"
    ] == "Rejected"
    mark = b.mark()
    body = remote_start(2)
    assert (await b.call("RequestStartTransaction", body))["status"] == "Accepted"
    b.sim.charge(1, max_current_a=16)
    started = await b.event("Started", after=mark)
    assert started["transactionInfo"].get("remoteStartId") == 2
    status = await offered(b, 8)
    await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=10)
    assert status["duty_percent"] == pytest.approx(13.33, abs=0.1)
    assert limits(await composite(b)) == [(0, 8.0)]
    # The profile belongs to this transaction: it reports with its transactionId and ends with it.
    mark = b.mark()
    reply = await b.call(
        "GetChargingProfiles", {"requestId": 4, "chargingProfile": {"chargingProfilePurpose": "TxProfile"}}
    )
    assert reply["status"] == "Accepted"
    (report,) = await _report(b, 4, mark)
    assert report["chargingProfile"][0]["transactionId"] == tx_of(started)
    mark = b.mark()
    assert (await b.call("RequestStopTransaction", {"transactionId": tx_of(started)}))["status"] == "Accepted"
    await b.event("Ended", after=mark)

    async def removed() -> bool:
        return limits(await composite(b)) == [(0, 32.0)]

    await b.eventually(removed, timeout=5, what="TxProfile removed")


@station(version="2.0.1")
async def test_tc_k_38_request_start_profile_ignored_without_smart_charging(b: Bench) -> None:
    """F01.FR.12 (OCTT TC_K_38_CS): with SmartChargingCtrlr.Enabled false the chargingProfile of
    a RequestStartTransaction is ignored: the transaction starts, no limit comes of it."""
    await set_variables(b, ("SmartChargingCtrlr", "Enabled", "false"))
    b.sim.plug(1)
    mark = b.mark()
    assert (await b.call("RequestStartTransaction", remote_start(7)))["status"] == "Accepted"
    b.sim.charge(1, max_current_a=32)
    started = await b.event("Started", after=mark)
    assert started["transactionInfo"].get("remoteStartId") == 7
    await offered(b, 32)
    assert limits(await composite(b)) == [(0, 32.0)]


@station(version="2.0.1")
async def test_k01_set_charging_profile_persists_across_restart(b: Bench) -> None:
    body = charging_profile(3, "TxDefaultProfile", 10, kind="Absolute", start=now_iso(-60))
    assert await set_profile(b, 1, body) == "Accepted"
    assert await b.stop() == 0
    await b.start()
    assert limits(await composite(b)) == [(0, 10.0)]
    await start_session(b)
    await offered(b, 10)


async def triggered(b: Bench, message: str) -> dict[str, Any]:
    """TriggerMessage ``message``, Accepted; returns the message the station then sends."""
    mark = b.mark()
    reply = await b.call("TriggerMessage", {"requestedMessage": message})
    assert reply["status"] == "Accepted"
    return await b.wait(message, after=mark)


@station(version="2.0.1")
async def test_f06_trigger_message_firmware_status_idle(b: Bench) -> None:
    assert await triggered(b, "FirmwareStatusNotification") == {"status": "Idle"}


# -- N: logs -----------------------------------------------------------------------------------


async def get_log(
    b: Bench, request_id: int, location: str, log_type: str = "DiagnosticsLog"
) -> dict[str, Any]:
    payload = {"logType": log_type, "requestId": request_id, "log": {"remoteLocation": location}}
    return await b.call("GetLog", payload)


def log_notifications(b: Bench, after: int) -> list[dict[str, Any]]:
    return since(b, "LogStatusNotification", after)


@station(version="2.0.1")
async def test_n01_get_log_upload_failure(b: Bench) -> None:
    mark = b.mark()
    payload = {
        "logType": "DiagnosticsLog",
        "requestId": 5,
        "retries": 0,
        "log": {"remoteLocation": "http://127.0.0.1:1/"},
    }
    reply = await b.call("GetLog", payload)
    assert reply["status"] == "Accepted"
    await b.wait("LogStatusNotification", lambda p: p["status"] == "UploadFailure", after=mark, timeout=15)
    assert log_notifications(b, mark) == [
        {"status": "Uploading", "requestId": 5},
        {"status": "UploadFailure", "requestId": 5},
    ]


@station(version="2.0.1")
async def test_f06_trigger_message_log_status_idle(b: Bench) -> None:
    assert await triggered(b, "LogStatusNotification") == {"status": "Idle"}


# -- N: monitoring -----------------------------------------------------------------------------


async def event_data(
    b: Bench, component: str, variable: str, after: int, timeout: float = 10
) -> dict[str, Any]:
    """The next EventData the station reports for ``component``.``variable`` on EVSE 1."""

    def concerns(item: dict[str, Any]) -> bool:
        return (
            item["component"]["name"] == component
            and item["component"].get("evse", {}).get("id") == 1
            and item["variable"]["name"] == variable
        )

    notify = await b.wait("NotifyEvent", lambda p: any(concerns(i) for i in p["eventData"]), timeout, after)
    return next(i for i in notify["eventData"] if concerns(i))


@station(version="2.0.1")
async def test_n07_rcd_trip_hardwired_notification(b: Bench) -> None:
    mark = b.mark()
    b.sim.fault("rcd")
    item = await event_data(b, "RCD", "Tripped", mark)
    assert item["actualValue"] == "true"
    assert item["eventNotificationType"] == "HardWiredNotification"
    assert item["trigger"] == "Delta"
    assert item.get("cleared", False) is False
    await b.status201(1, "Faulted", after=mark)
    assert b.sim.status(1)["connector_status"] == "Faulted"
    # RCD trips latch: clearing the rig's fault changes nothing until a restart.
    mark = b.mark()
    b.sim.fault("rcd", False)
    await no_call(b, "NotifyEvent", mark, 1.0)
    assert b.sim.status(1)["connector_status"] == "Faulted"


@station(version="2.0.1")
async def test_n07_rcd_trip_during_transaction_ends_it(b: Bench) -> None:
    tx_id = tx_of(await start_session(b))
    mark = b.mark()
    b.sim.fault("rcd")
    item = await event_data(b, "RCD", "Tripped", mark)
    assert item["actualValue"] == "true"
    await b.sim.wait_until(lambda s: not s["contactor_closed"], timeout=2)
    await b.status201(1, "Faulted", after=mark)
    ended = await b.event("Ended", after=mark)
    assert tx_of(ended) == tx_id
    assert ended["triggerReason"] == "AbnormalCondition"
    assert ended["transactionInfo"]["stoppedReason"] == "GroundFault"


@station(version="2.0.1")
async def test_n07_contactor_stuck_power_contactor_problem(b: Bench) -> None:
    b.sim.fault("contactor_stuck")
    mark = b.mark()
    b.sim.plug(1)
    b.sim.swipe(TOKEN)
    b.sim.charge(1)
    item = await event_data(b, "PowerContactor", "Problem", mark)
    assert item["actualValue"] == "true"
    assert item["eventNotificationType"] == "HardWiredNotification"
    await b.status201(1, "Faulted", after=mark)
    assert not b.sim.status(1)["contactor_closed"]


@station(version="2.0.1")
async def test_n07_contactor_weld_power_contactor_problem(b: Bench) -> None:
    await start_session(b)
    b.sim.fault("contactor_weld")
    mark = b.mark()
    b.sim.unplug(1)  # the contactor should open now: the weld shows
    item = await event_data(b, "PowerContactor", "Problem", mark)
    assert item["actualValue"] == "true"
    assert item["eventNotificationType"] == "HardWiredNotification"
    await b.status201(1, "Faulted", after=mark)
    await b.event("Ended", after=mark)


@station(version="2.0.1")
async def test_n07_meter_offline_fiscal_metering_problem_ends_transaction(b: Bench) -> None:
    await set_variables(b, ("SampledDataCtrlr", "TxUpdatedInterval", "1"))
    tx_id = tx_of(await start_session(b))
    # Some energy first, so the last good reading is not the start.
    await b.sim.wait_until(lambda s: s["energy_wh"] > 0, timeout=10)
    mark = b.mark()
    b.sim.fault("meter_offline")
    item = await event_data(b, "FiscalMetering", "Problem", mark, timeout=15)
    assert item["actualValue"] == "true"
    assert item["eventNotificationType"] == "HardWiredNotification"
    ended = await b.event("Ended", after=mark, timeout=15)
    assert tx_of(ended) == tx_id
    last_good = b.sim.status(1)["energy_wh"]
    energy = [
        v["value"]
        for v in sampled_values(ended)
        if v.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"
    ]
    assert energy == [pytest.approx(last_good, abs=1)], ended
    await b.status201(1, "Faulted", after=mark)
    await b.sim.wait_until(lambda s: not s["contactor_closed"], timeout=1)
    # The meter answers again: the problem clears by itself.
    mark = b.mark()
    b.sim.fault("meter_offline", False)
    item = await event_data(b, "FiscalMetering", "Problem", mark, timeout=15)
    assert item["actualValue"] == "false"
    assert item["cleared"] is True


@station(version="2.0.1")
async def test_n07_diode_missing_cp_pwm_controller_problem_and_cleared(b: Bench) -> None:
    mark = b.mark()
    b.sim.plug(1)
    b.sim.fault("diode")
    b.sim.swipe(TOKEN)
    b.sim.charge(1)
    item = await event_data(b, "CPPWMController", "Problem", mark)
    assert item["actualValue"] == "true"
    assert item["eventNotificationType"] == "HardWiredNotification"
    await b.status201(1, "Faulted", after=mark)
    assert not b.sim.status(1)["contactor_closed"]
    # Not latching: the fault clears with the condition, with a cleared event.
    mark = b.mark()
    b.sim.fault("diode", False)
    item = await event_data(b, "CPPWMController", "Problem", mark)
    assert item["actualValue"] == "false"
    assert item["cleared"] is True
    await b.wait("StatusNotification", lambda p: p["connectorStatus"] != "Faulted", after=mark)


async def set_monitor(b: Bench, severity: int = 3, **item: Any) -> dict[str, Any]:
    data = {
        "value": 1,
        "type": "Delta",
        "severity": severity,
        "component": {"name": "RCD", "evse": {"id": 1}},
        "variable": {"name": "Tripped"},
        **item,
    }
    (result,) = (await b.call("SetVariableMonitoring", {"setMonitoringData": [data]}))["setMonitoringResult"]
    return dict(result)


@station(version="2.0.1")
async def test_n04_set_variable_monitoring_custom_monitor_event(b: Bench) -> None:
    result = await set_monitor(b)
    assert result["status"] == "Accepted"
    monitor_id = result["id"]
    mark = b.mark()
    b.sim.fault("rcd")
    item = await event_data(b, "RCD", "Tripped", mark)
    assert item["eventNotificationType"] == "CustomMonitor"
    assert item["variableMonitoringId"] == monitor_id
    assert item["actualValue"] == "true"
    await b.status201(1, "Faulted", after=mark)


@station(version="2.0.1")
async def test_n02_get_monitoring_report_lists_monitor(b: Bench) -> None:
    monitor_id = (await set_monitor(b))["id"]
    mark = b.mark()
    assert (await b.call("GetMonitoringReport", {"requestId": 21}))["status"] == "Accepted"
    report = await b.wait("NotifyMonitoringReport", lambda p: p["requestId"] == 21, after=mark)
    assert report["tbc"] is False
    (data,) = [m for m in report["monitor"] if m["component"]["name"] == "RCD"]
    assert data["component"]["evse"]["id"] == 1
    assert data["variable"]["name"] == "Tripped"
    assert data["variableMonitoring"] == [
        {"id": monitor_id, "transaction": False, "value": 1, "type": "Delta", "severity": 3}
    ]
    # By criteria: no threshold monitors.
    reply = await b.call(
        "GetMonitoringReport", {"requestId": 22, "monitoringCriteria": ["ThresholdMonitoring"]}
    )
    assert reply["status"] == "EmptyResultSet"


@station(version="2.0.1")
async def test_n02_fr_02_get_monitoring_report_periodic_monitoring_not_supported(b: Bench) -> None:
    """N02.FR.02: a GetMonitoringReport with a monitoringCriteria the station does not support
    (PeriodicMonitoring: it has no periodic monitors) is answered NotSupported, and no report follows."""
    await set_monitor(b)
    mark = b.mark()
    for criteria in (["PeriodicMonitoring"], ["DeltaMonitoring", "PeriodicMonitoring"]):
        reply = await b.call("GetMonitoringReport", {"requestId": 26, "monitoringCriteria": criteria})
        assert reply["status"] == "NotSupported"
    await no_call(b, "NotifyMonitoringReport", mark, 0.5)
    reply = await b.call("GetMonitoringReport", {"requestId": 27, "monitoringCriteria": ["DeltaMonitoring"]})
    assert reply["status"] == "Accepted"


@station(version="2.0.1")
async def test_n06_clear_variable_monitoring(b: Bench) -> None:
    monitor_id = (await set_monitor(b))["id"]
    reply = await b.call("ClearVariableMonitoring", {"id": [monitor_id, 9999]})
    assert reply["clearMonitoringResult"] == [
        {"id": monitor_id, "status": "Accepted"},
        {"id": 9999, "status": "NotFound"},
    ]
    assert (await b.call("GetMonitoringReport", {"requestId": 23}))["status"] == "EmptyResultSet"
    # Without the monitor the trip is a hard-wired notification again.
    mark = b.mark()
    b.sim.fault("rcd")
    assert (await event_data(b, "RCD", "Tripped", mark))["eventNotificationType"] == "HardWiredNotification"


@station(version="2.0.1")
async def test_n05_set_monitoring_level_suppresses_monitor(b: Bench) -> None:
    await set_monitor(b, severity=5)
    assert (await b.call("SetMonitoringLevel", {"severity": 4}))["status"] == "Accepted"
    mark = b.mark()
    b.sim.fault("rcd")
    # The custom monitor (severity 5) is above the level; the hard-wired trip (Danger) is not.
    item = await event_data(b, "RCD", "Tripped", mark)
    assert item["eventNotificationType"] == "HardWiredNotification"
    assert "variableMonitoringId" not in item
    await b.status201(1, "Faulted", after=mark)


@station(version="2.0.1")
async def test_n04_fr_16_set_variable_monitoring_id_of_another_variable_rejected(b: Bench) -> None:
    """N04.FR.16: an id of an existing monitor with another component/variable is answered
    Rejected instead of replacing (moving) the monitor."""
    monitor_id = (await set_monitor(b))["id"]  # RCD.Tripped on EVSE 1
    other = {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"}}
    result = await set_monitor(b, id=monitor_id, **other)
    assert result["status"] == "Rejected"
    assert result["id"] == monitor_id
    # The monitor stays where it was and still reports the trip.
    mark = b.mark()
    b.sim.fault("rcd")
    item = await event_data(b, "RCD", "Tripped", mark)
    assert item["eventNotificationType"] == "CustomMonitor"
    assert item["variableMonitoringId"] == monitor_id


@station(version="2.0.1")
async def test_n04_set_variable_monitoring_unknown_component_and_variable(b: Bench) -> None:
    result = await set_monitor(b, component={"name": "FluxCapacitor"})
    assert result["status"] == "UnknownComponent"
    result = await set_monitor(b, variable={"name": "Flux"})
    assert result["status"] == "UnknownVariable"
    result = await set_monitor(b, component={"name": "RCD", "evse": {"id": 4}})
    assert result["status"] == "UnknownComponent"
    assert (await b.call("GetMonitoringReport", {"requestId": 24}))["status"] == "EmptyResultSet"


@station(version="2.0.1")
async def test_n04_set_variable_monitoring_persists_across_restart(b: Bench) -> None:
    monitor_id = (await set_monitor(b))["id"]
    assert await b.stop() == 0
    await b.start()
    mark = b.mark()
    b.sim.fault("rcd")
    item = await event_data(b, "RCD", "Tripped", mark)
    assert item["eventNotificationType"] == "CustomMonitor"
    assert item["variableMonitoringId"] == monitor_id


@station(version="2.0.1")
async def test_n03_set_monitoring_base_hard_wired_only_removes_custom_monitors(b: Bench) -> None:
    await set_monitor(b)
    assert (await b.call("SetMonitoringBase", {"monitoringBase": "HardWiredOnly"}))["status"] == "Accepted"
    assert (await b.call("GetMonitoringReport", {"requestId": 25}))["status"] == "EmptyResultSet"
    mark = b.mark()
    b.sim.fault("rcd")
    assert (await event_data(b, "RCD", "Tripped", mark))["eventNotificationType"] == "HardWiredNotification"


async def evse_power_above(b: Bench, watts: float) -> dict[str, Any]:
    """An UpperThreshold monitor (severity 5) on EVSE 1's Power: the SetMonitoringResult."""
    return await set_monitor(
        b,
        severity=5,
        type="UpperThreshold",
        value=watts,
        component={"name": "EVSE", "evse": {"id": 1}},
        variable={"name": "Power"},
    )


@station(version="2.0.1")
async def test_n07_upper_threshold_monitor_on_evse_power_alerts(b: Bench) -> None:
    result = await evse_power_above(b, 1000)
    assert result["status"] == "Accepted"
    mark = b.mark()
    await start_session(b)  # 16 A on 3 phases: about 11 kW
    await b.sim.wait_until(lambda s: s["power_w"] > 1000, timeout=10)
    item = await event_data(b, "EVSE", "Power", mark, timeout=3)
    assert item["eventNotificationType"] == "CustomMonitor"
    assert item["variableMonitoringId"] == result["id"]
    assert item["trigger"] == "Alerting"
    assert float(item["actualValue"]) > 1000


@station(version="2.0.1")
async def test_n07_fr_14_fired_threshold_monitor_cleared_after_restart(b: Bench) -> None:
    """N07.FR.14: an UpperThreshold monitor fired, the station restarts, the value is back within
    the threshold -> NotifyEvent cleared true for that monitor."""
    result = await evse_power_above(b, 1000)
    mark = b.mark()
    await start_session(b)
    assert (await event_data(b, "EVSE", "Power", mark))["cleared"] is False
    assert await b.stop() == 0
    # The simulated hardware restarts with the daemon: no car, 0 W.
    mark = b.mark()
    await b.start()
    item = await event_data(b, "EVSE", "Power", mark)
    assert (item["variableMonitoringId"], item["trigger"]) == (result["id"], "Alerting")
    assert item["cleared"] is True
    assert float(item["actualValue"]) <= 1000


@station(version="2.0.1")
async def test_n07_delta_monitor_on_power_contactor_active(b: Bench) -> None:
    result = await set_monitor(
        b,
        component={"name": "PowerContactor", "evse": {"id": 1}},
        variable={"name": "Active"},
    )
    assert result["status"] == "Accepted"
    await asyncio.sleep(1.2)  # the station looks at such variables once a second
    mark = b.mark()
    await start_session(b)
    item = await event_data(b, "PowerContactor", "Active", mark, timeout=3)
    assert item["eventNotificationType"] == "CustomMonitor"
    assert item["variableMonitoringId"] == result["id"]
    assert item["actualValue"] == "true"
