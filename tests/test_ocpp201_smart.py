"""OCPP 2.0.1 availability, reservation, metering, smart charging, firmware, logs and
monitoring, end to end.

The daemon runs as a subprocess on simulated hardware against the development CSMS
speaking 2.0.1 only. The tests follow the OCA 2.0.1 compliance test cases of functional
blocks G (availability), H (reservation), J (meter values), K (smart charging),
L (firmware management) and N (diagnostics and monitoring). Firmware images and log
uploads go through a local HTTP server in a thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hil.csms import CsmsThread
from hil.simrig import SimRig
from tests import ocpp_harness
from tests.ocpp_harness import TOKEN, Bench, eventually, make_bench
from tests.test_ocpp16_smart import FileServer

# The bench's fixtures, under their own names (imported names shadowed by parameters upset ruff).
bench201 = ocpp_harness.bench201
csms201 = ocpp_harness.csms201
timeline201 = ocpp_harness.timeline201  # prints the timeline and daemon log of a failed test
set_variables = ocpp_harness.set_variables

OTHER_TOKEN = "0A0B0C0D"
# The supervisor changes the offered current at most once per 5 s (IEC 61851-1 A.2.3).
DUTY_CHANGE_WAIT_S = 7.5


# -- helpers ---------------------------------------------------------------------------------


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso(offset_s: float = 0.0) -> str:
    return iso(datetime.now(UTC) + timedelta(seconds=offset_s))


def id_token(token: str = TOKEN) -> dict[str, str]:
    return {"idToken": token, "type": "ISO14443"}


def since(
    bench: Bench, action: str, after: int = 0, where: Callable[[dict[str, Any]], bool] | None = None
) -> list[dict[str, Any]]:
    """Payloads of the station's CALLs of ``action`` at timeline index ``after`` or later."""
    return [
        e.payload
        for e in bench.csms.timeline[after:]
        if e.kind == "call"
        and e.direction == "in"
        and e.action == action
        and isinstance(e.payload, dict)
        and (where is None or where(e.payload))
    ]


def no_call(
    bench: Bench,
    action: str,
    after: int,
    seconds: float,
    where: Callable[[dict[str, Any]], bool] | None = None,
) -> None:
    """Assert that the station sends no (matching) ``action`` for ``seconds``."""
    with pytest.raises(TimeoutError):
        bench.wait(action, where, timeout=seconds, after=after)


def change_availability(bench: Bench, status: str, evse: int | None = None) -> str:
    payload: dict[str, Any] = {"operationalStatus": status}
    if evse is not None:
        payload["evse"] = {"id": evse}
    result: str = bench.call("ChangeAvailability", payload)["status"]
    return result


def start_session(bench: Bench, token: str = TOKEN, max_current_a: float = 16) -> dict[str, Any]:
    """Plug in, swipe and charge on EVSE 1; returns the Started TransactionEvent."""
    mark = bench.mark()
    bench.sim().plug(1)
    bench.sim().swipe(token)
    bench.sim().charge(1, max_current_a=max_current_a)
    started = bench.event("Started", after=mark)
    bench.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    return started


def reconnect_rig(bench: Bench) -> None:
    """The daemon re-executed itself in place: connect to its new rig socket."""
    if bench.rig is not None:
        bench.rig.close()
    bench.rig = SimRig.wait_for(bench.dir / "var" / "sim.sock")


# -- G: availability ---------------------------------------------------------------------------


def test_g04_change_availability_station_inoperative_when_idle(bench201: Bench) -> None:
    mark = bench201.mark()
    assert change_availability(bench201, "Inoperative") == "Accepted"
    bench201.status201(1, "Unavailable", after=mark)
    mark = bench201.mark()
    bench201.sim().plug(1)
    bench201.sim().swipe(TOKEN)
    bench201.sim().charge(1)
    no_call(bench201, "TransactionEvent", mark, 2.0)
    status = bench201.sim().status(1)
    assert not status["contactor_closed"]
    assert status["transaction_id"] is None
    assert status["connector_status"] == "Unavailable"
    bench201.sim().unplug(1)
    mark = bench201.mark()
    assert change_availability(bench201, "Operative") == "Accepted"
    bench201.status201(1, "Available", after=mark)


def test_g03_change_availability_evse_inoperative_then_operative(bench201: Bench) -> None:
    mark = bench201.mark()
    assert change_availability(bench201, "Inoperative", evse=1) == "Accepted"
    bench201.status201(1, "Unavailable", after=mark)
    assert bench201.sim().status(1)["connector_status"] == "Unavailable"
    mark = bench201.mark()
    bench201.sim().plug(1)
    bench201.sim().charge(1)
    no_call(bench201, "TransactionEvent", mark, 1.5)
    assert not bench201.sim().status(1)["contactor_closed"]
    mark = bench201.mark()
    assert change_availability(bench201, "Operative", evse=1) == "Accepted"
    bench201.status201(1, "Occupied", after=mark)  # the EV is still plugged in
    # The EVSE is usable again: a swipe now starts charging.
    bench201.sim().swipe(TOKEN)
    bench201.event("Started", after=mark)
    bench201.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)


def test_g03_token_swiped_while_inoperative_is_not_kept(bench201: Bench) -> None:
    assert change_availability(bench201, "Inoperative", evse=1) == "Accepted"
    bench201.sim().plug(1)
    bench201.sim().charge(1)
    bench201.sim().swipe(TOKEN)
    time.sleep(0.5)
    mark = bench201.mark()
    assert change_availability(bench201, "Operative", evse=1) == "Accepted"
    # Nobody presented a token since: nothing may start.
    no_call(bench201, "TransactionEvent", mark, 2.0)
    assert not bench201.sim().status(1)["contactor_closed"]


def test_g03_change_availability_evse_during_transaction_scheduled(bench201: Bench) -> None:
    started = start_session(bench201)
    tx_id = started["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    assert change_availability(bench201, "Inoperative", evse=1) == "Scheduled"
    # The transaction goes on.
    no_call(bench201, "StatusNotification", mark, 1.5, lambda p: p["connectorStatus"] == "Unavailable")
    status = bench201.sim().status(1)
    assert status["contactor_closed"]
    assert status["transaction_id"] == tx_id
    assert not since(bench201, "TransactionEvent", mark, lambda p: p["eventType"] == "Ended")
    bench201.sim().unplug(1)
    ended = bench201.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    bench201.status201(1, "Unavailable", after=mark)
    assert bench201.sim().status(1)["connector_status"] == "Unavailable"
    # G03.FR.05: the change comes when the transaction ends, straight from Occupied: a
    # momentary Available would be published to drivers.
    seen = [p["connectorStatus"] for p in since(bench201, "StatusNotification", mark)]
    assert seen == ["Unavailable"]


def test_g04_change_availability_station_during_transaction_scheduled(bench201: Bench) -> None:
    start_session(bench201)
    mark = bench201.mark()
    assert change_availability(bench201, "Inoperative") == "Scheduled"
    time.sleep(1.0)
    assert bench201.sim().status(1)["contactor_closed"]
    bench201.sim().unplug(1)
    bench201.event("Ended", after=mark)
    bench201.status201(1, "Unavailable", after=mark)
    assert [p["connectorStatus"] for p in since(bench201, "StatusNotification", mark)] == ["Unavailable"]


def test_g03_change_availability_unknown_evse_rejected(bench201: Bench) -> None:
    mark = bench201.mark()
    assert change_availability(bench201, "Inoperative", evse=5) == "Rejected"
    reply = bench201.call(
        "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 3}}
    )
    assert reply["status"] == "Rejected"
    no_call(bench201, "StatusNotification", mark, 1.0)
    assert bench201.sim().status(1)["connector_status"] == "Available"


def test_g03_change_availability_persists_across_restart(bench201: Bench) -> None:
    mark = bench201.mark()
    assert change_availability(bench201, "Inoperative", evse=1) == "Accepted"
    bench201.status201(1, "Unavailable", after=mark)
    assert bench201.stop() == 0
    mark = bench201.mark()
    bench201.start()
    first = bench201.wait("StatusNotification", lambda p: p["evseId"] == 1, after=mark)
    assert first["connectorStatus"] == "Unavailable"
    mark = bench201.mark()
    assert change_availability(bench201, "Operative", evse=1) == "Accepted"
    bench201.status201(1, "Available", after=mark)


def test_g03_connector_inoperative_outlives_its_evse_turning_operative_and_a_restart(bench201: Bench) -> None:
    """G03 (FR.06-FR.08) and G04 (FR.07-FR.09): the station, the EVSE and the connector keep
    their own availability, persisted: a connector set Inoperative stays Unavailable when its
    EVSE goes Inoperative and Operative again, when the station does, and after a restart."""
    connector = {"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 1}}
    mark = bench201.mark()
    assert bench201.call("ChangeAvailability", connector)["status"] == "Accepted"
    bench201.status201(1, "Unavailable", after=mark)
    assert change_availability(bench201, "Inoperative", evse=1) == "Accepted"
    assert change_availability(bench201, "Inoperative") == "Accepted"
    assert change_availability(bench201, "Operative") == "Accepted"
    assert change_availability(bench201, "Operative", evse=1) == "Accepted"
    time.sleep(1.0)
    assert [p["connectorStatus"] for p in since(bench201, "StatusNotification", mark)] == ["Unavailable"]
    assert bench201.sim().status(1)["connector_status"] == "Unavailable"
    assert bench201.stop() == 0
    mark = bench201.mark()
    bench201.start()
    first = bench201.wait("StatusNotification", lambda p: p["evseId"] == 1, after=mark)
    assert first["connectorStatus"] == "Unavailable"
    mark = bench201.mark()
    assert bench201.call("ChangeAvailability", {**connector, "operationalStatus": "Operative"}) == {
        "status": "Accepted"
    }
    bench201.status201(1, "Available", after=mark)


def test_g04_evse_inoperative_stays_so_when_the_station_turns_operative(bench201: Bench) -> None:
    mark = bench201.mark()
    assert change_availability(bench201, "Inoperative", evse=1) == "Accepted"
    assert change_availability(bench201, "Inoperative") == "Accepted"
    assert change_availability(bench201, "Operative") == "Accepted"
    bench201.status201(1, "Unavailable", after=mark)
    no_call(bench201, "StatusNotification", mark, 1.0, lambda p: p["connectorStatus"] == "Available")
    mark = bench201.mark()
    assert change_availability(bench201, "Operative", evse=1) == "Accepted"
    bench201.status201(1, "Available", after=mark)


def test_g03_change_availability_scheduled_then_operative_cancels(bench201: Bench) -> None:
    start_session(bench201)
    assert change_availability(bench201, "Inoperative", evse=1) == "Scheduled"
    assert change_availability(bench201, "Operative", evse=1) == "Accepted"
    mark = bench201.mark()
    bench201.sim().unplug(1)
    bench201.event("Ended", after=mark)
    bench201.status201(1, "Available", after=mark)
    no_call(bench201, "StatusNotification", mark, 1.0, lambda p: p["connectorStatus"] == "Unavailable")


def test_g04_change_availability_station_state_variable(bench201: Bench) -> None:
    def state(component: dict[str, Any]) -> str:
        item = {"component": component, "variable": {"name": "AvailabilityState"}}
        reply = bench201.call("GetVariables", {"getVariableData": [item]})
        value: str = reply["getVariableResult"][0]["attributeValue"]
        return value

    assert state({"name": "ChargingStation"}) == "Available"
    mark = bench201.mark()
    assert change_availability(bench201, "Inoperative") == "Accepted"
    bench201.status201(1, "Unavailable", after=mark)
    assert state({"name": "ChargingStation"}) == "Unavailable"
    assert state({"name": "EVSE", "evse": {"id": 1}}) == "Unavailable"


# -- H: reservation ----------------------------------------------------------------------------


def reserve(
    bench: Bench,
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
    status: str = bench.call("ReserveNow", payload)["status"]
    return status


def cancel(bench: Bench, reservation_id: int) -> str:
    status: str = bench.call("CancelReservation", {"reservationId": reservation_id})["status"]
    return status


def test_h01_reserve_now_accepted_and_reserved(bench201: Bench) -> None:
    mark = bench201.mark()
    assert reserve(bench201, 1) == "Accepted"
    bench201.status201(1, "Reserved", after=mark)
    assert bench201.sim().status(1)["connector_status"] == "Reserved"


def test_h03_use_reserved_evse_other_token_cannot_start(bench201: Bench) -> None:
    mark = bench201.mark()
    assert reserve(bench201, 1, OTHER_TOKEN) == "Accepted"
    bench201.status201(1, "Reserved", after=mark)
    mark = bench201.mark()
    bench201.sim().plug(1)
    bench201.sim().swipe(TOKEN)
    bench201.sim().charge(1)
    no_call(bench201, "TransactionEvent", mark, 2.0)
    status = bench201.sim().status(1)
    assert status["transaction_id"] is None
    assert not status["contactor_closed"]


def test_h03_use_reserved_evse_consumes_reservation(bench201: Bench) -> None:
    mark = bench201.mark()
    assert reserve(bench201, 42) == "Accepted"
    bench201.status201(1, "Reserved", after=mark)
    started = start_session(bench201)
    assert started["idToken"] == id_token()
    # The reservation is used up: cancelling it now finds nothing.
    assert cancel(bench201, 42) == "Rejected"
    bench201.sim().unplug(1)
    bench201.event("Ended", after=mark)
    bench201.status201(1, "Available", after=mark)


def test_h03_use_reserved_evse_transaction_event_carries_reservation_id(bench201: Bench) -> None:
    assert reserve(bench201, 43) == "Accepted"
    mark = bench201.mark()
    start_session(bench201)
    with_id = since(bench201, "TransactionEvent", mark, lambda p: p.get("reservationId") == 43)
    assert with_id, since(bench201, "TransactionEvent", mark)


def test_h04_reservation_expires(bench201: Bench) -> None:
    mark = bench201.mark()
    assert reserve(bench201, 3, expires_in=2) == "Accepted"
    bench201.status201(1, "Reserved", after=mark)
    update = bench201.wait("ReservationStatusUpdate", after=mark, timeout=10)
    assert update == {"reservationId": 3, "reservationUpdateStatus": "Expired"}
    bench201.status201(1, "Available", after=mark)
    assert cancel(bench201, 3) == "Rejected"


def test_h02_cancel_reservation_accepted(bench201: Bench) -> None:
    mark = bench201.mark()
    assert reserve(bench201, 4, OTHER_TOKEN) == "Accepted"
    bench201.status201(1, "Reserved", after=mark)
    mark = bench201.mark()
    assert cancel(bench201, 4) == "Accepted"
    bench201.status201(1, "Available", after=mark)
    # A cancelled reservation is not reported as Expired.
    no_call(bench201, "ReservationStatusUpdate", mark, 0.5)
    # Anyone may charge again.
    assert start_session(bench201)["idToken"] == id_token()


def test_h02_cancel_reservation_unknown_rejected(bench201: Bench) -> None:
    assert cancel(bench201, 12345) == "Rejected"


def test_h01_reserve_now_occupied(bench201: Bench) -> None:
    bench201.sim().plug(1)
    bench201.sim().wait_until(lambda s: s["cp_state"] == "B")
    bench201.status201(1, "Occupied")
    assert reserve(bench201, 5, OTHER_TOKEN) == "Occupied"
    bench201.sim().unplug(1)
    start_session(bench201)
    assert reserve(bench201, 6, OTHER_TOKEN) == "Occupied"


def test_h01_reserve_now_faulted(bench201: Bench) -> None:
    mark = bench201.mark()
    bench201.sim().fault("rcd")
    bench201.status201(1, "Faulted", after=mark)
    assert reserve(bench201, 7) == "Faulted"


def test_h01_reserve_now_unavailable(bench201: Bench) -> None:
    mark = bench201.mark()
    assert change_availability(bench201, "Inoperative", evse=1) == "Accepted"
    bench201.status201(1, "Unavailable", after=mark)
    assert reserve(bench201, 8) == "Unavailable"


def call_index(bench: Bench, action: str, after: int, where: Callable[[dict[str, Any]], bool]) -> int:
    """Timeline index of the station's first matching CALL of ``action`` from ``after`` on."""
    return next(
        i
        for i, e in enumerate(bench.csms.timeline)
        if i >= after
        and e.kind == "call"
        and e.direction == "in"
        and e.action == action
        and isinstance(e.payload, dict)
        and where(e.payload)
    )


def test_h01_fr_16_tc_h_20_reserved_evse_faulted_removes_reservation(bench201: Bench) -> None:
    """H01.FR.16, OCTT TC_H_20: the reserved EVSE becomes Faulted: the station cancels the
    reservation and, after the Faulted status, sends ReservationStatusUpdate Removed."""
    mark = bench201.mark()
    assert reserve(bench201, 21, OTHER_TOKEN) == "Accepted"
    bench201.status201(1, "Reserved", after=mark)
    mark = bench201.mark()
    bench201.sim().fault("rcd")
    update = bench201.wait("ReservationStatusUpdate", after=mark)
    assert update == {"reservationId": 21, "reservationUpdateStatus": "Removed"}
    faulted = call_index(bench201, "StatusNotification", mark, lambda p: p["connectorStatus"] == "Faulted")
    removed = call_index(bench201, "ReservationStatusUpdate", mark, lambda p: p["reservationId"] == 21)
    assert faulted < removed
    assert cancel(bench201, 21) == "Rejected"
    eventually(lambda: bench201.db("SELECT id FROM reservations") == [], what="reservation row deleted")


def test_h01_fr_17_reserved_evse_unavailable_removes_reservation(bench201: Bench) -> None:
    """H01.FR.17: the reserved EVSE becomes Unavailable (ChangeAvailability Inoperative):
    the reservation is cancelled, reported Removed, and does not come back with Operative."""
    mark = bench201.mark()
    assert reserve(bench201, 22, OTHER_TOKEN) == "Accepted"
    bench201.status201(1, "Reserved", after=mark)
    mark = bench201.mark()
    assert change_availability(bench201, "Inoperative", evse=1) == "Accepted"
    update = bench201.wait("ReservationStatusUpdate", after=mark)
    assert update == {"reservationId": 22, "reservationUpdateStatus": "Removed"}
    unavailable = call_index(
        bench201, "StatusNotification", mark, lambda p: p["connectorStatus"] == "Unavailable"
    )
    assert unavailable < call_index(bench201, "ReservationStatusUpdate", mark, lambda p: True)
    mark = bench201.mark()
    assert change_availability(bench201, "Operative", evse=1) == "Accepted"
    bench201.status201(1, "Available", after=mark)
    assert cancel(bench201, 22) == "Rejected"
    # Anyone may charge again.
    assert start_session(bench201)["idToken"] == id_token()


def test_h01_reserve_now_unknown_evse_rejected(bench201: Bench) -> None:
    assert reserve(bench201, 9, evse=7) == "Rejected"


def test_h01_reserve_now_non_evse_specific(bench201: Bench) -> None:
    reply = bench201.call(
        "GetVariables",
        {
            "getVariableData": [
                {"component": {"name": "ReservationCtrlr"}, "variable": {"name": "NonEvseSpecific"}}
            ]
        },
    )
    assert reply["getVariableResult"][0]["attributeValue"] == "true"
    mark = bench201.mark()
    assert reserve(bench201, 10, evse=None) == "Accepted"
    # The only EVSE is kept for the holder.
    bench201.status201(1, "Reserved", after=mark)
    mark = bench201.mark()
    bench201.sim().plug(1)
    bench201.sim().swipe(OTHER_TOKEN)
    no_call(bench201, "TransactionEvent", mark, 1.5)
    bench201.sim().swipe(TOKEN)
    bench201.sim().charge(1)
    bench201.event("Started", after=mark)
    assert cancel(bench201, 10) == "Rejected"


def test_h03_use_reserved_evse_group_id_token_admits_group_member(bench201: Bench) -> None:
    group = {"idToken": "GROUP-1", "type": "Central"}

    def authorize(p: dict[str, Any]) -> dict[str, Any]:
        return {"idTokenInfo": {"status": "Accepted", "groupIdToken": group}}

    bench201.csms.set_reply("Authorize", authorize)
    assert reserve(bench201, 11, OTHER_TOKEN, groupIdToken=group) == "Accepted"
    started = start_session(bench201)  # TOKEN, whose Authorize answer names the same group
    assert started["idToken"] == id_token()
    assert cancel(bench201, 11) == "Rejected"


def test_h03_use_reserved_evse_group_id_token_other_group_refused(bench201: Bench) -> None:
    def authorize(p: dict[str, Any]) -> dict[str, Any]:
        return {
            "idTokenInfo": {"status": "Accepted", "groupIdToken": {"idToken": "GROUP-2", "type": "Central"}}
        }

    bench201.csms.set_reply("Authorize", authorize)
    group = {"idToken": "GROUP-1", "type": "Central"}
    assert reserve(bench201, 12, OTHER_TOKEN, groupIdToken=group) == "Accepted"
    mark = bench201.mark()
    bench201.sim().plug(1)
    bench201.sim().swipe(TOKEN)
    bench201.sim().charge(1)
    no_call(bench201, "TransactionEvent", mark, 2.0)
    assert cancel(bench201, 12) == "Accepted"


def test_h01_reserve_now_persists_across_restart(bench201: Bench) -> None:
    mark = bench201.mark()
    assert reserve(bench201, 13, OTHER_TOKEN) == "Accepted"
    bench201.status201(1, "Reserved", after=mark)
    assert bench201.stop() == 0
    mark = bench201.mark()
    bench201.start()
    first = bench201.wait("StatusNotification", lambda p: p["evseId"] == 1, after=mark)
    assert first["connectorStatus"] == "Reserved"
    assert cancel(bench201, 13) == "Accepted"


# -- J: meter values ---------------------------------------------------------------------------


def sampled_values(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for mv in event.get("meterValue", []) for v in mv["sampledValue"]]


def test_j02_clock_aligned_meter_values_in_transaction(bench201: Bench) -> None:
    set_variables(bench201, ("AlignedDataCtrlr", "Interval", "2"))
    start_session(bench201)
    mark = bench201.mark()
    first = bench201.event(
        "Updated", lambda p: p["triggerReason"] == "MeterValueClock", after=mark, timeout=5
    )
    second = bench201.event(
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
    assert not since(bench201, "MeterValues", mark)


def test_j01_clock_aligned_meter_values_when_idle_only_with_send_during_idle(bench201: Bench) -> None:
    set_variables(bench201, ("AlignedDataCtrlr", "Interval", "1"))
    mark = bench201.mark()
    no_call(bench201, "MeterValues", mark, 2.5)
    set_variables(bench201, ("AlignedDataCtrlr", "SendDuringIdle", "true"))
    mark = bench201.mark()
    meter = bench201.wait("MeterValues", after=mark, timeout=5)
    assert meter["evseId"] == 1
    values = [v for mv in meter["meterValue"] for v in mv["sampledValue"]]
    assert values and {v["context"] for v in values} == {"Sample.Clock"}
    assert not since(bench201, "TransactionEvent", mark)


def test_j02_sampled_meter_values_tx_updated_interval(bench201: Bench) -> None:
    set_variables(bench201, ("SampledDataCtrlr", "TxUpdatedInterval", "1"))
    start_session(bench201)
    mark = bench201.mark()
    event = bench201.event(
        "Updated", lambda p: p["triggerReason"] == "MeterValuePeriodic", after=mark, timeout=5
    )
    assert {v["context"] for v in sampled_values(event)} == {"Sample.Periodic"}


def test_j02_sampled_meter_values_in_ended_event(bench201: Bench) -> None:
    set_variables(bench201, ("SampledDataCtrlr", "TxEndedInterval", "1"))
    start_session(bench201)
    time.sleep(3.5)
    mark = bench201.mark()
    bench201.sim().unplug(1)
    ended = bench201.event("Ended", after=mark)
    contexts = [v["context"] for v in sampled_values(ended)]
    assert contexts.count("Sample.Periodic") >= 2, ended["meterValue"]
    assert contexts[-1] == "Transaction.End"


def test_j02_clock_aligned_meter_values_in_ended_event(bench201: Bench) -> None:
    set_variables(bench201, ("AlignedDataCtrlr", "TxEndedInterval", "1"))
    start_session(bench201)
    time.sleep(3.5)
    mark = bench201.mark()
    bench201.sim().unplug(1)
    ended = bench201.event("Ended", after=mark)
    contexts = [v["context"] for v in sampled_values(ended)]
    # About one a second; the station ticks once a second, so allow for a missed boundary.
    assert contexts.count("Sample.Clock") >= 2, ended["meterValue"]


def test_f06_trigger_message_meter_values(bench201: Bench) -> None:
    mark = bench201.mark()
    reply = bench201.call("TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 1}})
    assert reply["status"] == "Accepted"
    meter = bench201.wait("MeterValues", after=mark)
    assert meter["evseId"] == 1
    values = [v for mv in meter["meterValue"] for v in mv["sampledValue"]]
    assert values and {v["context"] for v in values} == {"Trigger"}
    # Without an EVSE: every EVSE.
    mark = bench201.mark()
    assert bench201.call("TriggerMessage", {"requestedMessage": "MeterValues"})["status"] == "Accepted"
    assert bench201.wait("MeterValues", after=mark)["evseId"] == 1
    reply = bench201.call("TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 9}})
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


def set_profile(bench: Bench, evse: int, body: dict[str, Any]) -> str:
    reply = bench.call("SetChargingProfile", {"evseId": evse, "chargingProfile": body})
    status: str = reply["status"]
    return status


def composite(bench: Bench, evse: int = 1, unit: str = "A", duration: int = 3600) -> dict[str, Any]:
    return bench.call(
        "GetCompositeSchedule", {"evseId": evse, "duration": duration, "chargingRateUnit": unit}
    )


def limits(reply: dict[str, Any]) -> list[tuple[int, float]]:
    return [(p["startPeriod"], p["limit"]) for p in reply["schedule"]["chargingSchedulePeriod"]]


def offered(bench: Bench, amps: float, timeout: float = DUTY_CHANGE_WAIT_S) -> dict[str, Any]:
    """Wait until the PWM offers ``amps``; returns the rig status."""
    return bench.sim().wait_until(
        lambda s: s["pwm"] and s["offered_a"] == pytest.approx(amps, abs=0.1), timeout=timeout
    )


def tx_of(event: dict[str, Any]) -> str:
    tx_id: str = event["transactionInfo"]["transactionId"]
    return tx_id


def test_k01_set_charging_profile_tx_default_limits_offered_current(bench201: Bench) -> None:
    assert set_profile(bench201, 1, charging_profile(1, "TxDefaultProfile", 10)) == "Accepted"
    start_session(bench201)
    status = offered(bench201, 10)
    assert status["duty_percent"] == pytest.approx(16.67, abs=0.1)
    assert status["contactor_closed"]
    # The EV draws no more than offered: 10 A on 3 phases at 230 V.
    bench201.sim().wait_until(lambda s: 0 < s["power_w"] <= 6900 * 1.02, timeout=10)
    assert limits(composite(bench201)) == [(0, 10.0)]


def test_k01_set_charging_profile_tx_default_absolute_while_charging(bench201: Bench) -> None:
    start_session(bench201)
    offered(bench201, 32)
    body = charging_profile(1, "TxDefaultProfile", 10, kind="Absolute", start=now_iso(-60))
    assert set_profile(bench201, 0, body) == "Accepted"  # on evse 0: for every EVSE
    status = offered(bench201, 10)
    assert status["duty_percent"] == pytest.approx(16.67, abs=0.1)
    assert status["contactor_closed"]


def test_k01_set_charging_profile_in_watts(bench201: Bench) -> None:
    body = charging_profile(1, "TxDefaultProfile", 6900, unit="W")  # 10 A on 3 phases at 230 V
    assert set_profile(bench201, 1, body) == "Accepted"
    start_session(bench201)
    status = offered(bench201, 10)
    assert status["duty_percent"] == pytest.approx(16.67, abs=0.1)
    assert limits(composite(bench201)) == [(0, 10.0)]
    reply = composite(bench201, unit="W")
    assert limits(reply) == [(0, 6900.0)]


@pytest.fixture
def single_phase201(tmp_path: Path, csms201: CsmsThread) -> Iterator[Bench]:
    """A 2.0.1 station whose one EVSE is wired single phase (SupplyPhases 1)."""
    running = make_bench(tmp_path, csms201, version="2.0.1")
    running.config.write_text(running.config.read_text().replace("phases = 3", "phases = 1"))
    running.start()
    yield running
    if running.proc is not None and running.proc.poll() is None:
        running.kill()


def test_k01_fr_49_no_number_phases_means_three_on_a_single_phase_evse(single_phase201: Bench) -> None:
    """K01.FR.49: "When a SetChargingProfileRequest without a value for numberPhases is received
    AND the EVSE is of type AC: The Charging Station SHALL assume numberPhases = 3", also on a
    single-phase EVSE (the 2.1 errata note: single-phase regions should send numberPhases = 1).
    K01.FR.50 then gives 6900 W / (230 V x 3) = 10 A, enforced and reported alike."""
    body = charging_profile(1, "TxDefaultProfile", 6900, unit="W")
    assert set_profile(single_phase201, 1, body) == "Accepted"
    start_session(single_phase201)  # a Relative profile: it starts with the transaction
    offered(single_phase201, 10)
    assert limits(composite(single_phase201)) == [(0, 10.0)]
    # With numberPhases = 1 the same power is 30 A on the one phase.
    body["chargingSchedule"][0]["chargingSchedulePeriod"][0]["numberPhases"] = 1
    assert set_profile(single_phase201, 1, body) == "Accepted"
    reply = composite(single_phase201)
    assert reply["schedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 30.0, "numberPhases": 1}
    ]
    offered(single_phase201, 30)


def test_k01_fr_45_number_phases_above_supply_phases_rejected(single_phase201: Bench) -> None:
    """K01.FR.45 (as libocpp reads it): a period with more numberPhases than the AC EVSE is
    supplied with (EVSE SupplyPhases 1) is Rejected, not silently capped; EVSE 0 is judged by
    the station's SupplyPhases."""
    for evse, purpose in ((1, "TxDefaultProfile"), (0, "TxDefaultProfile"), (0, "ChargingStationMaxProfile")):
        body = charging_profile(1, purpose, 10)
        body["chargingSchedule"][0]["chargingSchedulePeriod"][0]["numberPhases"] = 3
        reply = single_phase201.call("SetChargingProfile", {"evseId": evse, "chargingProfile": body})
        assert reply["status"] == "Rejected", (evse, purpose)
        assert reply["statusInfo"]["reasonCode"] == "InvalidSchedule"
    assert limits(composite(single_phase201)) == [(0, 32.0)]
    body = charging_profile(1, "TxDefaultProfile", 10)
    body["chargingSchedule"][0]["chargingSchedulePeriod"][0]["numberPhases"] = 1
    assert set_profile(single_phase201, 1, body) == "Accepted"


def test_k01_set_charging_profile_unknown_evse_rejected(bench201: Bench) -> None:
    assert set_profile(bench201, 4, charging_profile(1, "TxDefaultProfile", 10)) == "Rejected"
    assert limits(composite(bench201)) == [(0, 32.0)]


def test_k01_set_charging_profile_two_schedules_rejected(bench201: Bench) -> None:
    body = charging_profile(1, "TxDefaultProfile", 10, schedules=2)
    assert set_profile(bench201, 1, body) == "Rejected"
    reply = bench201.call("GetChargingProfiles", {"requestId": 1, "chargingProfile": {}})
    assert reply["status"] == "NoProfiles"


def test_k02_set_charging_profile_tx_profile_for_running_transaction(bench201: Bench) -> None:
    tx_id = tx_of(start_session(bench201))
    offered(bench201, 32)
    assert set_profile(bench201, 1, charging_profile(2, "TxProfile", 8, tx_id=tx_id)) == "Accepted"
    status = offered(bench201, 8)
    assert status["duty_percent"] == pytest.approx(13.33, abs=0.1)
    assert limits(composite(bench201)) == [(0, 8.0)]
    mark = bench201.mark()
    bench201.sim().unplug(1)
    bench201.event("Ended", after=mark)
    # A TxProfile lives only as long as its transaction.
    eventually(lambda: limits(composite(bench201)) == [(0, 32.0)], timeout=5, what="TxProfile removed")
    reply = bench201.call(
        "GetChargingProfiles", {"requestId": 2, "chargingProfile": {"chargingProfilePurpose": "TxProfile"}}
    )
    assert reply["status"] == "NoProfiles"


def test_k02_set_charging_profile_tx_profile_unknown_transaction_rejected(bench201: Bench) -> None:
    body = charging_profile(2, "TxProfile", 8, tx_id="no-such-transaction")
    assert set_profile(bench201, 1, body) == "Rejected"
    assert set_profile(bench201, 1, charging_profile(3, "TxProfile", 8)) == "Rejected"  # no transactionId
    tx_id = tx_of(start_session(bench201))
    assert set_profile(bench201, 1, body) == "Rejected"
    # A TxProfile belongs on the EVSE of its transaction, never on evse 0.
    assert set_profile(bench201, 0, charging_profile(4, "TxProfile", 8, tx_id=tx_id)) == "Rejected"
    assert limits(composite(bench201)) == [(0, 32.0)]


def test_k01_set_charging_profile_charging_station_max_profile(bench201: Bench) -> None:
    cap = charging_profile(1, "ChargingStationMaxProfile", 12, kind="Absolute", start=now_iso(-60))
    # A ChargingStationMaxProfile belongs on evse 0 only.
    assert set_profile(bench201, 1, cap) == "Rejected"
    assert set_profile(bench201, 0, cap) == "Accepted"
    assert limits(composite(bench201, evse=0)) == [(0, 12.0)]
    tx_id = tx_of(start_session(bench201))
    status = offered(bench201, 12)
    assert status["contactor_closed"]
    # A TxProfile above the station maximum is capped by it.
    assert set_profile(bench201, 1, charging_profile(2, "TxProfile", 20, tx_id=tx_id)) == "Accepted"
    assert limits(composite(bench201)) == [(0, 12.0)]
    time.sleep(2.0)
    assert bench201.sim().status(1)["offered_a"] == 12


def test_k01_set_charging_profile_stack_level_higher_wins(bench201: Bench) -> None:
    start = now_iso(-60)
    low = charging_profile(1, "TxDefaultProfile", 12, stack_level=0, kind="Absolute", start=start)
    high = charging_profile(2, "TxDefaultProfile", 8, stack_level=1, kind="Absolute", start=start)
    assert set_profile(bench201, 1, low) == "Accepted"
    assert set_profile(bench201, 1, high) == "Accepted"
    assert limits(composite(bench201)) == [(0, 8.0)]
    start_session(bench201)
    offered(bench201, 8)
    # The higher stack level wins even when it allows more.
    higher = charging_profile(3, "TxDefaultProfile", 20, stack_level=2, kind="Absolute", start=start)
    assert set_profile(bench201, 1, higher) == "Accepted"
    assert limits(composite(bench201)) == [(0, 20.0)]
    offered(bench201, 20)


def test_k01_set_charging_profile_below_minimum_suspends_evse(bench201: Bench) -> None:
    tx_id = tx_of(start_session(bench201))
    offered(bench201, 32)
    mark = bench201.mark()
    assert set_profile(bench201, 0, charging_profile(1, "TxDefaultProfile", 4)) == "Accepted"
    status = bench201.sim().wait_until(lambda s: not s["contactor_closed"], timeout=DUTY_CHANGE_WAIT_S)
    assert status["duty_percent"] == 100
    assert status["offered_a"] == 0
    assert not status["pwm"]
    event = bench201.event(
        "Updated", lambda p: p["transactionInfo"].get("chargingState") == "SuspendedEVSE", after=mark
    )
    assert tx_of(event) == tx_id  # the transaction goes on
    assert bench201.sim().status(1)["transaction_id"] == tx_id
    # Clearing the limit resumes charging by itself.
    mark = bench201.mark()
    reply = bench201.call("ClearChargingProfile", {"chargingProfileId": 1})
    assert reply["status"] == "Accepted"
    offered(bench201, 32)
    bench201.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    event = bench201.event(
        "Updated", lambda p: p["transactionInfo"].get("chargingState") == "Charging", after=mark
    )
    assert tx_of(event) == tx_id
    assert not since(bench201, "TransactionEvent", 0, lambda p: p["eventType"] == "Ended")


def _schedule_with_edges(bench: Bench) -> None:
    """TxDefault on EVSE 1: 10 A now, 16 A from 1800 s from now, none from 2800 s (hardware 32 A)."""
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=100)
    body = charging_profile(
        1, "TxDefaultProfile", kind="Absolute", start=iso(base), periods=[(0, 10), (1900, 16)], duration=2900
    )
    assert set_profile(bench, 1, body) == "Accepted"


def _near(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [lim for _, lim in got] == [lim for _, lim in expected], got
    for (start, _), (want, _) in zip(got, expected, strict=True):
        assert want - 1 <= start <= want, got  # edges round up to whole seconds from the request


def test_k08_get_composite_schedule(bench201: Bench) -> None:
    _schedule_with_edges(bench201)
    reply = composite(bench201)
    assert reply["status"] == "Accepted"
    schedule = reply["schedule"]
    assert schedule["evseId"] == 1
    assert schedule["duration"] == 3600
    assert schedule["chargingRateUnit"] == "A"
    start = datetime.fromisoformat(schedule["scheduleStart"].replace("Z", "+00:00"))
    assert abs(start - datetime.now(UTC)) < timedelta(seconds=5)
    _near(limits(reply), [(0, 10.0), (1800, 16.0), (2800, 32.0)])
    watts = composite(bench201, unit="W")
    assert watts["schedule"]["chargingRateUnit"] == "W"
    _near(limits(watts), [(0, 6900.0), (1800, 11040.0), (2800, 22080.0)])  # 3 phases at 230 V


def test_k08_get_composite_schedule_is_what_the_pilot_offers(bench201: Bench) -> None:
    start = now_iso(-60)
    assert set_profile(
        bench201, 1, charging_profile(1, "TxDefaultProfile", 14, kind="Absolute", start=start)
    ) == ("Accepted")
    cap = charging_profile(2, "ChargingStationMaxProfile", 9, kind="Absolute", start=start)
    assert set_profile(bench201, 0, cap) == "Accepted"
    start_session(bench201)
    (first,) = limits(composite(bench201))
    assert first == (0, 9.0)
    offered(bench201, first[1])


def test_k08_get_composite_schedule_starts_at_the_request_instant(bench201: Bench) -> None:
    """K08: the schedule runs from the request's own instant; a profile begun earlier in that
    same second is in force from period 0 (no phantom first period at the hardware limit)."""
    now = datetime.now(UTC)
    if now.microsecond > 300_000:
        time.sleep(1.05 - now.microsecond / 1e6)
        now = datetime.now(UTC)
    begun = now.replace(microsecond=0) + timedelta(milliseconds=400)
    time.sleep(max(0.0, (begun - datetime.now(UTC)).total_seconds()) + 0.05)
    body = charging_profile(1, "TxDefaultProfile", 10, kind="Absolute", start=iso(begun))
    assert set_profile(bench201, 1, body) == "Accepted"
    reply = composite(bench201)
    assert datetime.fromisoformat(reply["schedule"]["scheduleStart"]) > begun
    assert limits(reply) == [(0, 10.0)]


def test_k08_two_evses_share_the_station_maximum_as_reported(tmp_path: Path, csms201: CsmsThread) -> None:
    """K08: the composite is the limit in force (local limits included): two EVSEs charging
    under a 20 A ChargingStationMaxProfile each get and report 10 A."""
    station = make_bench(tmp_path, csms201, version="2.0.1", evses=2)
    station.start()
    try:
        cap = charging_profile(1, "ChargingStationMaxProfile", 20, kind="Absolute", start=now_iso(-60))
        assert set_profile(station, 0, cap) == "Accepted"
        for evse, token in ((1, TOKEN), (2, OTHER_TOKEN)):
            mark = station.mark()
            station.sim().plug(evse)
            station.sim().swipe(token)
            station.sim().charge(evse, max_current_a=32)
            station.event("Started", after=mark)
        for evse in (1, 2):
            station.sim().wait_until(lambda s: s["pwm"] and s["offered_a"] == 10, evse=evse, timeout=15)
            assert limits(composite(station, evse=evse)) == [(0, 10.0)]
        assert limits(composite(station, evse=0)) == [(0, 20.0)]
    finally:
        station.kill()


def test_k08_get_composite_schedule_unknown_evse_rejected(bench201: Bench) -> None:
    assert composite(bench201, evse=5)["status"] == "Rejected"
    reply = composite(bench201, evse=0)
    assert reply["status"] == "Accepted"
    assert reply["schedule"]["evseId"] == 0


def _report(bench: Bench, request_id: int, after: int) -> list[dict[str, Any]]:
    """The ReportChargingProfiles of a request, until tbc is false."""
    reports = []
    while True:
        report = bench.wait(
            "ReportChargingProfiles",
            lambda p: p["requestId"] == request_id and p not in reports,
            after=after,
        )
        reports.append(report)
        if not report.get("tbc", False):
            return reports


def _setup_two_profiles(bench: Bench) -> None:
    start = now_iso(-60)
    assert set_profile(
        bench, 1, charging_profile(1, "TxDefaultProfile", 10, kind="Absolute", start=start)
    ) == ("Accepted")
    cap = charging_profile(2, "ChargingStationMaxProfile", 20, kind="Absolute", start=start)
    assert set_profile(bench, 0, cap) == "Accepted"


def test_k09_get_charging_profiles_by_id(bench201: Bench) -> None:
    _setup_two_profiles(bench201)
    mark = bench201.mark()
    reply = bench201.call(
        "GetChargingProfiles", {"requestId": 7, "chargingProfile": {"chargingProfileId": [1]}}
    )
    assert reply["status"] == "Accepted"
    (report,) = _report(bench201, 7, mark)
    assert report["evseId"] == 1
    assert report["chargingLimitSource"] == "CSO"
    assert [p["id"] for p in report["chargingProfile"]] == [1]
    profile = report["chargingProfile"][0]
    assert profile["chargingProfilePurpose"] == "TxDefaultProfile"
    assert profile["chargingSchedule"][0]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 10.0}]


def test_k09_get_charging_profiles_by_purpose(bench201: Bench) -> None:
    _setup_two_profiles(bench201)
    mark = bench201.mark()
    criteria = {"chargingProfilePurpose": "ChargingStationMaxProfile"}
    reply = bench201.call("GetChargingProfiles", {"requestId": 8, "chargingProfile": criteria})
    assert reply["status"] == "Accepted"
    (report,) = _report(bench201, 8, mark)
    assert report["evseId"] == 0
    assert [p["id"] for p in report["chargingProfile"]] == [2]


def test_k09_get_charging_profiles_by_evse(bench201: Bench) -> None:
    _setup_two_profiles(bench201)
    mark = bench201.mark()
    reply = bench201.call("GetChargingProfiles", {"requestId": 9, "evseId": 1, "chargingProfile": {}})
    assert reply["status"] == "Accepted"
    reports = _report(bench201, 9, mark)
    assert [p["id"] for r in reports for p in r["chargingProfile"]] == [1]
    mark = bench201.mark()
    reply = bench201.call("GetChargingProfiles", {"requestId": 10, "chargingProfile": {}})
    assert reply["status"] == "Accepted"
    reports = _report(bench201, 10, mark)
    assert sorted(p["id"] for r in reports for p in r["chargingProfile"]) == [1, 2]
    assert [r["tbc"] for r in reports][-1] is False


def test_k09_get_charging_profiles_nothing_matching(bench201: Bench) -> None:
    mark = bench201.mark()
    reply = bench201.call("GetChargingProfiles", {"requestId": 1, "chargingProfile": {}})
    assert reply["status"] == "NoProfiles"
    _setup_two_profiles(bench201)
    reply = bench201.call(
        "GetChargingProfiles", {"requestId": 2, "chargingProfile": {"chargingProfileId": [99]}}
    )
    assert reply["status"] == "NoProfiles"
    reply = bench201.call(
        "GetChargingProfiles", {"requestId": 3, "chargingProfile": {"chargingProfilePurpose": "TxProfile"}}
    )
    assert reply["status"] == "NoProfiles"
    no_call(bench201, "ReportChargingProfiles", mark, 0.5)


def test_k10_clear_charging_profile_by_id(bench201: Bench) -> None:
    _setup_two_profiles(bench201)
    assert limits(composite(bench201)) == [(0, 10.0)]
    assert bench201.call("ClearChargingProfile", {"chargingProfileId": 1})["status"] == "Accepted"
    assert limits(composite(bench201)) == [(0, 20.0)]
    assert bench201.call("ClearChargingProfile", {"chargingProfileId": 1})["status"] == "Unknown"


def test_k10_clear_charging_profile_by_criteria(bench201: Bench) -> None:
    _setup_two_profiles(bench201)
    criteria = {"chargingProfilePurpose": "ChargingStationMaxProfile", "stackLevel": 0}
    assert (
        bench201.call("ClearChargingProfile", {"chargingProfileCriteria": criteria})["status"] == "Accepted"
    )
    assert limits(composite(bench201)) == [(0, 10.0)]
    criteria = {"evseId": 1, "chargingProfilePurpose": "TxDefaultProfile"}
    assert (
        bench201.call("ClearChargingProfile", {"chargingProfileCriteria": criteria})["status"] == "Accepted"
    )
    assert limits(composite(bench201)) == [(0, 32.0)]
    reply = bench201.call("GetChargingProfiles", {"requestId": 1, "chargingProfile": {}})
    assert reply["status"] == "NoProfiles"


def test_k10_clear_charging_profile_unknown(bench201: Bench) -> None:
    assert bench201.call("ClearChargingProfile", {"chargingProfileId": 77})["status"] == "Unknown"
    _setup_two_profiles(bench201)
    criteria = {"chargingProfilePurpose": "TxProfile"}
    assert bench201.call("ClearChargingProfile", {"chargingProfileCriteria": criteria})["status"] == "Unknown"
    criteria = {"evseId": 1, "stackLevel": 5}
    assert bench201.call("ClearChargingProfile", {"chargingProfileCriteria": criteria})["status"] == "Unknown"
    assert limits(composite(bench201)) == [(0, 10.0)]


EXTERNAL = "ChargingStationExternalConstraints"


def test_k10_fr_06_clear_charging_profile_external_constraints_unknown(bench201: Bench) -> None:
    """K10.FR.06: the CSMS may not clear ChargingStationExternalConstraints; no such profile
    is stored here, so the answer is Unknown, not a CALLERROR, and nothing else is cleared."""
    _setup_two_profiles(bench201)
    for criteria in ({"chargingProfilePurpose": EXTERNAL}, {"evseId": 1, "chargingProfilePurpose": EXTERNAL}):
        reply = bench201.call("ClearChargingProfile", {"chargingProfileCriteria": criteria})
        assert reply["status"] == "Unknown"
        assert reply["statusInfo"]["reasonCode"] == "InvalidValue"
    assert limits(composite(bench201)) == [(0, 10.0)]


def test_k09_get_charging_profiles_external_constraints_no_profiles(bench201: Bench) -> None:
    """K09: a ChargingStationExternalConstraints profile can't be on the station: NoProfiles."""
    _setup_two_profiles(bench201)
    mark = bench201.mark()
    criteria = {"chargingProfilePurpose": EXTERNAL}
    reply = bench201.call("GetChargingProfiles", {"requestId": 4, "chargingProfile": criteria})
    assert reply["status"] == "NoProfiles"
    no_call(bench201, "ReportChargingProfiles", mark, 0.5)


def test_k01_fr_22_set_charging_profile_external_constraints_rejected(bench201: Bench) -> None:
    """K01.FR.22: the CSMS may not set a ChargingStationExternalConstraints profile: Rejected."""
    body = charging_profile(1, EXTERNAL, 10, kind="Absolute", start=now_iso(-60))
    assert set_profile(bench201, 0, body) == "Rejected"
    assert set_profile(bench201, 1, body) == "Rejected"
    assert limits(composite(bench201)) == [(0, 32.0)]


def remote_start(remote_start_id: int, purpose: str = "TxProfile", limit: float = 8) -> dict[str, Any]:
    """A RequestStartTransaction for EVSE 1 with a charging profile."""
    return {
        "idToken": id_token(),
        "remoteStartId": remote_start_id,
        "evseId": 1,
        "chargingProfile": charging_profile(5, purpose, limit),
    }


def test_k05_request_start_transaction_with_tx_profile(bench201: Bench) -> None:
    bench201.sim().plug(1)
    # Only a TxProfile may come with a remote start.
    assert (
        bench201.call("RequestStartTransaction", remote_start(1, "TxDefaultProfile"))["status"] == "Rejected"
    )
    mark = bench201.mark()
    body = remote_start(2)
    assert bench201.call("RequestStartTransaction", body)["status"] == "Accepted"
    bench201.sim().charge(1, max_current_a=16)
    started = bench201.event("Started", after=mark)
    assert started["transactionInfo"].get("remoteStartId") == 2
    status = offered(bench201, 8)
    bench201.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    assert status["duty_percent"] == pytest.approx(13.33, abs=0.1)
    assert limits(composite(bench201)) == [(0, 8.0)]
    # The profile belongs to this transaction: it reports with its transactionId and ends with it.
    mark = bench201.mark()
    reply = bench201.call(
        "GetChargingProfiles", {"requestId": 4, "chargingProfile": {"chargingProfilePurpose": "TxProfile"}}
    )
    assert reply["status"] == "Accepted"
    (report,) = _report(bench201, 4, mark)
    assert report["chargingProfile"][0]["transactionId"] == tx_of(started)
    mark = bench201.mark()
    assert bench201.call("RequestStopTransaction", {"transactionId": tx_of(started)})["status"] == "Accepted"
    bench201.event("Ended", after=mark)
    eventually(lambda: limits(composite(bench201)) == [(0, 32.0)], timeout=5, what="TxProfile removed")


def test_tc_k_38_request_start_profile_ignored_without_smart_charging(bench201: Bench) -> None:
    """F01.FR.12 (OCTT TC_K_38_CS): with SmartChargingCtrlr.Enabled false the chargingProfile of
    a RequestStartTransaction is ignored: the transaction starts, no limit comes of it."""
    set_variables(bench201, ("SmartChargingCtrlr", "Enabled", "false"))
    bench201.sim().plug(1)
    mark = bench201.mark()
    assert bench201.call("RequestStartTransaction", remote_start(7))["status"] == "Accepted"
    bench201.sim().charge(1, max_current_a=32)
    started = bench201.event("Started", after=mark)
    assert started["transactionInfo"].get("remoteStartId") == 7
    offered(bench201, 32)
    assert limits(composite(bench201)) == [(0, 32.0)]


def test_k01_set_charging_profile_persists_across_restart(bench201: Bench) -> None:
    body = charging_profile(3, "TxDefaultProfile", 10, kind="Absolute", start=now_iso(-60))
    assert set_profile(bench201, 1, body) == "Accepted"
    assert bench201.stop() == 0
    bench201.start()
    assert limits(composite(bench201)) == [(0, 10.0)]
    start_session(bench201)
    offered(bench201, 10)


# -- L: firmware management --------------------------------------------------------------------


@pytest.fixture
def files() -> Iterator[FileServer]:
    server = FileServer()
    server.start()
    yield server
    server.stop()


INSTALL_HOOK = """\
#!/bin/sh
case "$1" in --*) echo "$1" >> "{record}.steps"; exit 0;; esac
echo "$1" >> "{record}"
cp "$1" "{copy}"
exit {code}
"""


@pytest.fixture
def firmware_station(tmp_path: Path, csms201: CsmsThread) -> Iterator[Callable[..., Bench]]:
    """Starts a 2.0.1 station whose firmware.install_command is a script recording its
    argument (in hook.log) and copying the image (to installed.bin), then exiting with the
    code given."""
    started: list[Bench] = []

    def start(hook_exit: int = 0, evses: int = 1) -> Bench:
        hook = tmp_path / "install.sh"
        record, copy = tmp_path / "hook.log", tmp_path / "installed.bin"
        hook.write_text(INSTALL_HOOK.format(record=record, copy=copy, code=hook_exit))
        hook.chmod(0o755)
        extra = f'[firmware]\ninstall_command = "{hook}"\n'
        station = make_bench(tmp_path, csms201, version="2.0.1", evses=evses, extra=extra)
        started.append(station)
        station.start()
        return station

    yield start
    for station in started:
        if station.proc is not None and station.proc.poll() is None:
            station.kill()


def update_firmware(bench: Bench, request_id: int, location: str, **extra: Any) -> str:
    payload = {
        "requestId": request_id,
        "firmware": {"location": location, "retrieveDateTime": now_iso()},
        **extra,
    }
    status: str = bench.call("UpdateFirmware", payload)["status"]
    return status


def fw_notifications(bench: Bench, after: int) -> list[dict[str, Any]]:
    return since(bench, "FirmwareStatusNotification", after)


def wait_fw(bench: Bench, status: str, after: int, timeout: float = 10) -> dict[str, Any]:
    return bench.wait(
        "FirmwareStatusNotification", lambda p: p["status"] == status, timeout=timeout, after=after
    )


def test_l01_update_firmware_installed(
    tmp_path: Path, files: FileServer, firmware_station: Callable[..., Bench]
) -> None:
    station = firmware_station(0)
    image = bytes(range(256)) * 64
    files.files["/fw/image-2.0.bin"] = image
    pid = station.proc.pid if station.proc else None
    mark = station.mark()
    assert update_firmware(station, 17, f"{files.url}/fw/image-2.0.bin") == "Accepted"
    wait_fw(station, "Installed", mark, timeout=20)
    notes = fw_notifications(station, mark)
    assert [n["status"] for n in notes] == [
        "Downloading",
        "Downloaded",
        "Installing",
        "InstallRebooting",
        "Installed",
    ]
    assert all(n.get("requestId") == 17 for n in notes), notes
    # The daemon re-executed itself in place and booted again, for the firmware update.
    boots = since(station, "BootNotification", mark)
    assert [b["reason"] for b in boots] == ["FirmwareUpdate"]
    timeline = station.csms.timeline
    boot_at = max(i for i, e in enumerate(timeline) if e.action == "BootNotification" and e.kind == "call")
    installed_at = max(i for i, e in enumerate(timeline) if e.action == "FirmwareStatusNotification")
    assert mark < boot_at < installed_at
    assert station.proc is not None and station.proc.poll() is None and station.proc.pid == pid
    reconnect_rig(station)
    assert station.sim().status(1)["ocpp_connected"]
    assert (tmp_path / "hook.log").read_text().split() == [
        str(tmp_path / "var" / "firmware" / "firmware.bin")
    ]
    assert (tmp_path / "installed.bin").read_bytes() == image
    assert files.gets == ["/fw/image-2.0.bin"]
    # A later restart is a plain power-up again.
    mark = station.mark()
    assert station.stop() == 0
    station.start()
    assert [b["reason"] for b in since(station, "BootNotification", mark)] == ["PowerUp"]
    no_call(station, "FirmwareStatusNotification", mark, 0.5)


def test_l01_update_firmware_download_failed(
    tmp_path: Path, files: FileServer, firmware_station: Callable[..., Bench]
) -> None:
    station = firmware_station(0)
    mark = station.mark()
    location = f"{files.url}/fw/missing.bin"
    assert update_firmware(station, 5, location, retries=1, retryInterval=1) == "Accepted"
    wait_fw(station, "DownloadFailed", mark)
    notes = fw_notifications(station, mark)
    assert [n["status"] for n in notes] == ["Downloading", "DownloadFailed"]
    assert all(n.get("requestId") == 5 for n in notes), notes
    assert files.gets == ["/fw/missing.bin"] * 2  # the first attempt and one retry
    assert not (tmp_path / "hook.log").exists()
    assert station.proc is not None and station.proc.poll() is None
    assert not since(station, "BootNotification", mark)


def test_l01_update_firmware_installation_failed(
    tmp_path: Path, files: FileServer, firmware_station: Callable[..., Bench]
) -> None:
    station = firmware_station(1)
    files.files["/fw.bin"] = b"firmware image"
    mark = station.mark()
    assert update_firmware(station, 6, f"{files.url}/fw.bin") == "Accepted"
    wait_fw(station, "InstallationFailed", mark)
    notes = fw_notifications(station, mark)
    assert [n["status"] for n in notes] == ["Downloading", "Downloaded", "Installing", "InstallationFailed"]
    assert all(n.get("requestId") == 6 for n in notes), notes
    assert (tmp_path / "hook.log").read_text().split() == [
        str(tmp_path / "var" / "firmware" / "firmware.bin")
    ]
    # No restart: the station keeps running on its old firmware.
    no_call(station, "BootNotification", mark, 0.5)
    assert station.sim().status(1)["ocpp_connected"]


def test_l01_update_firmware_installs_after_transaction(
    tmp_path: Path, files: FileServer, firmware_station: Callable[..., Bench]
) -> None:
    station = firmware_station(0)
    files.files["/fw.bin"] = b"new firmware"
    tx_id = tx_of(start_session(station))
    mark = station.mark()
    assert update_firmware(station, 8, f"{files.url}/fw.bin") == "Accepted"
    wait_fw(station, "Downloaded", mark)
    # No install while a transaction runs: the session goes on.
    no_call(station, "FirmwareStatusNotification", station.mark(), 1.5, lambda p: p["status"] == "Installing")
    assert station.sim().status(1)["contactor_closed"]
    assert not since(station, "TransactionEvent", mark, lambda p: p["eventType"] == "Ended")
    station.sim().unplug(1)
    ended = station.event("Ended", after=mark)
    assert tx_of(ended) == tx_id
    assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    wait_fw(station, "Installed", mark, timeout=15)
    notes = fw_notifications(station, mark)
    assert [n["status"] for n in notes if n["status"] != "InstallScheduled"] == [
        "Downloading",
        "Downloaded",
        "Installing",
        "InstallRebooting",
        "Installed",
    ]
    assert all(n.get("requestId") == 8 for n in notes), notes
    reconnect_rig(station)
    assert (tmp_path / "installed.bin").read_bytes() == b"new firmware"


def test_f06_trigger_message_firmware_status_idle(bench201: Bench) -> None:
    mark = bench201.mark()
    reply = bench201.call("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
    assert reply["status"] == "Accepted"
    assert bench201.wait("FirmwareStatusNotification", after=mark) == {"status": "Idle"}


def test_l01_update_firmware_while_one_is_scheduled_accepted_canceled(
    files: FileServer, firmware_station: Callable[..., Bench]
) -> None:
    station = firmware_station(0)
    files.files["/fw.bin"] = b"new firmware"
    first = {
        "requestId": 31,
        "firmware": {"location": f"{files.url}/fw.bin", "retrieveDateTime": now_iso(30)},
    }
    assert station.call("UpdateFirmware", first)["status"] == "Accepted"
    mark = station.mark()
    # The first one is cancelled (the station runs one update at a time): it must say so.
    assert update_firmware(station, 32, f"{files.url}/fw.bin") == "AcceptedCanceled"
    wait_fw(station, "Installed", mark, timeout=15)


def test_l01_update_firmware_install_date_time_in_future_install_scheduled(
    files: FileServer, firmware_station: Callable[..., Bench]
) -> None:
    station = firmware_station(0)
    files.files["/fw.bin"] = b"new firmware"
    mark = station.mark()
    install_at = datetime.now(UTC) + timedelta(seconds=4)
    firmware = {
        "location": f"{files.url}/fw.bin",
        "retrieveDateTime": now_iso(),
        "installDateTime": iso(install_at),
    }
    assert station.call("UpdateFirmware", {"requestId": 33, "firmware": firmware})["status"] == "Accepted"
    wait_fw(station, "Installed", mark, timeout=15)
    statuses = [n["status"] for n in fw_notifications(station, mark)]
    assert statuses == [
        "Downloading",
        "Downloaded",
        "InstallScheduled",
        "Installing",
        "InstallRebooting",
        "Installed",
    ], statuses
    notes = [
        e
        for e in station.csms.timeline[mark:]
        if e.kind == "call" and e.action == "FirmwareStatusNotification"
    ]
    installing = next(e for e in notes if isinstance(e.payload, dict) and e.payload["status"] == "Installing")
    assert installing.t - notes[0].t >= 3.0  # not before installDateTime


def test_f06_trigger_message_firmware_status_idle_after_installed(
    files: FileServer, firmware_station: Callable[..., Bench]
) -> None:
    station = firmware_station(0)
    files.files["/fw.bin"] = b"new firmware"
    mark = station.mark()
    assert update_firmware(station, 34, f"{files.url}/fw.bin") == "Accepted"
    wait_fw(station, "Installed", mark, timeout=15)
    mark = station.mark()
    reply = station.call("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
    assert reply["status"] == "Accepted"
    # The update is over: nothing firmware-related goes on any more.
    assert station.wait("FirmwareStatusNotification", after=mark) == {"status": "Idle"}


def test_f06_trigger_message_firmware_status_after_failure_repeats_it(
    files: FileServer, firmware_station: Callable[..., Bench]
) -> None:
    station = firmware_station(0)
    mark = station.mark()
    assert update_firmware(station, 35, f"{files.url}/missing.bin") == "Accepted"
    wait_fw(station, "DownloadFailed", mark)
    mark = station.mark()
    reply = station.call("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
    assert reply["status"] == "Accepted"
    # L01.FR.26: the last status sent, with its request.
    assert station.wait("FirmwareStatusNotification", after=mark) == {
        "status": "DownloadFailed",
        "requestId": 35,
    }


def test_l01_update_firmware_waiting_sets_unused_evses_unavailable(
    files: FileServer, firmware_station: Callable[..., Bench]
) -> None:
    station = firmware_station(0, evses=2)
    files.files["/fw.bin"] = b"new firmware"
    start_session(station)
    mark = station.mark()
    assert update_firmware(station, 9, f"{files.url}/fw.bin") == "Accepted"
    wait_fw(station, "Downloaded", mark)
    # Nobody may start a session the install would cut off.
    station.status201(2, "Unavailable", after=mark, timeout=3)
    station.sim().plug(2)
    station.sim().swipe(OTHER_TOKEN)
    station.sim().charge(2)
    no_call(station, "TransactionEvent", mark, 1.5, lambda p: p["evse"]["id"] == 2)


# -- N: logs -----------------------------------------------------------------------------------


def get_log(bench: Bench, request_id: int, location: str, log_type: str = "DiagnosticsLog") -> dict[str, Any]:
    payload = {"logType": log_type, "requestId": request_id, "log": {"remoteLocation": location}}
    return bench.call("GetLog", payload)


def log_notifications(bench: Bench, after: int) -> list[dict[str, Any]]:
    return since(bench, "LogStatusNotification", after)


def test_n01_get_log_diagnostics_uploaded(bench201: Bench, files: FileServer) -> None:
    mark = bench201.mark()
    reply = get_log(bench201, 3, f"{files.url}/upload/")
    assert reply["status"] == "Accepted"
    name = reply["filename"]
    assert name
    bench201.wait("LogStatusNotification", lambda p: p["status"] == "Uploaded", after=mark, timeout=15)
    assert log_notifications(bench201, mark) == [
        {"status": "Uploading", "requestId": 3},
        {"status": "Uploaded", "requestId": 3},
    ]
    assert [f for f, _ in files.uploads] == [name]
    assert files.uploads[0][1]  # not empty


def test_n01_get_log_security_log_uploaded(bench201: Bench, files: FileServer) -> None:
    mark = bench201.mark()
    reply = get_log(bench201, 4, f"{files.url}/upload/", log_type="SecurityLog")
    assert reply["status"] == "Accepted"
    bench201.wait("LogStatusNotification", lambda p: p["status"] == "Uploaded", after=mark, timeout=15)
    assert [n["requestId"] for n in log_notifications(bench201, mark)] == [4, 4]
    assert [f for f, _ in files.uploads] == [reply["filename"]]


def test_n01_get_log_upload_failure(bench201: Bench) -> None:
    mark = bench201.mark()
    payload = {
        "logType": "DiagnosticsLog",
        "requestId": 5,
        "retries": 0,
        "log": {"remoteLocation": "http://127.0.0.1:1/"},
    }
    reply = bench201.call("GetLog", payload)
    assert reply["status"] == "Accepted"
    bench201.wait("LogStatusNotification", lambda p: p["status"] == "UploadFailure", after=mark, timeout=15)
    assert log_notifications(bench201, mark) == [
        {"status": "Uploading", "requestId": 5},
        {"status": "UploadFailure", "requestId": 5},
    ]


def test_f06_trigger_message_log_status_idle(bench201: Bench) -> None:
    mark = bench201.mark()
    reply = bench201.call("TriggerMessage", {"requestedMessage": "LogStatusNotification"})
    assert reply["status"] == "Accepted"
    assert bench201.wait("LogStatusNotification", after=mark) == {"status": "Idle"}


def test_f06_trigger_message_log_status_idle_after_upload(bench201: Bench, files: FileServer) -> None:
    mark = bench201.mark()
    assert get_log(bench201, 6, f"{files.url}/upload/")["status"] == "Accepted"
    bench201.wait("LogStatusNotification", lambda p: p["status"] == "Uploaded", after=mark, timeout=15)
    mark = bench201.mark()
    reply = bench201.call("TriggerMessage", {"requestedMessage": "LogStatusNotification"})
    assert reply["status"] == "Accepted"
    assert bench201.wait("LogStatusNotification", after=mark) == {"status": "Idle"}


# -- N: monitoring -----------------------------------------------------------------------------


def event_data(
    bench: Bench, component: str, variable: str, after: int, timeout: float = 10
) -> dict[str, Any]:
    """The next EventData the station reports for ``component``.``variable`` on EVSE 1."""

    def concerns(item: dict[str, Any]) -> bool:
        return (
            item["component"]["name"] == component
            and item["component"].get("evse", {}).get("id") == 1
            and item["variable"]["name"] == variable
        )

    notify = bench.wait("NotifyEvent", lambda p: any(concerns(i) for i in p["eventData"]), timeout, after)
    return next(i for i in notify["eventData"] if concerns(i))


def test_n07_rcd_trip_hardwired_notification(bench201: Bench) -> None:
    mark = bench201.mark()
    bench201.sim().fault("rcd")
    item = event_data(bench201, "RCD", "Tripped", mark)
    assert item["actualValue"] == "true"
    assert item["eventNotificationType"] == "HardWiredNotification"
    assert item["trigger"] == "Delta"
    assert item.get("cleared", False) is False
    bench201.status201(1, "Faulted", after=mark)
    assert bench201.sim().status(1)["connector_status"] == "Faulted"
    # RCD trips latch: clearing the rig's fault changes nothing until a restart.
    mark = bench201.mark()
    bench201.sim().fault("rcd", False)
    no_call(bench201, "NotifyEvent", mark, 1.0)
    assert bench201.sim().status(1)["connector_status"] == "Faulted"


def test_n07_rcd_trip_during_transaction_ends_it(bench201: Bench) -> None:
    tx_id = tx_of(start_session(bench201))
    mark = bench201.mark()
    bench201.sim().fault("rcd")
    item = event_data(bench201, "RCD", "Tripped", mark)
    assert item["actualValue"] == "true"
    bench201.sim().wait_until(lambda s: not s["contactor_closed"], timeout=2)
    bench201.status201(1, "Faulted", after=mark)
    ended = bench201.event("Ended", after=mark)
    assert tx_of(ended) == tx_id
    assert ended["triggerReason"] == "AbnormalCondition"
    assert ended["transactionInfo"]["stoppedReason"] == "GroundFault"


def test_n07_contactor_stuck_power_contactor_problem(bench201: Bench) -> None:
    bench201.sim().fault("contactor_stuck")
    mark = bench201.mark()
    bench201.sim().plug(1)
    bench201.sim().swipe(TOKEN)
    bench201.sim().charge(1)
    item = event_data(bench201, "PowerContactor", "Problem", mark)
    assert item["actualValue"] == "true"
    assert item["eventNotificationType"] == "HardWiredNotification"
    bench201.status201(1, "Faulted", after=mark)
    assert not bench201.sim().status(1)["contactor_closed"]


def test_n07_contactor_weld_power_contactor_problem(bench201: Bench) -> None:
    start_session(bench201)
    bench201.sim().fault("contactor_weld")
    mark = bench201.mark()
    bench201.sim().unplug(1)  # the contactor should open now: the weld shows
    item = event_data(bench201, "PowerContactor", "Problem", mark)
    assert item["actualValue"] == "true"
    assert item["eventNotificationType"] == "HardWiredNotification"
    bench201.status201(1, "Faulted", after=mark)
    bench201.event("Ended", after=mark)


def test_n07_meter_offline_fiscal_metering_problem_ends_transaction(bench201: Bench) -> None:
    set_variables(bench201, ("SampledDataCtrlr", "TxUpdatedInterval", "1"))
    tx_id = tx_of(start_session(bench201))
    # Some energy first, so the last good reading is not the start.
    bench201.sim().wait_until(lambda s: s["energy_wh"] > 0, timeout=10)
    mark = bench201.mark()
    bench201.sim().fault("meter_offline")
    item = event_data(bench201, "FiscalMetering", "Problem", mark, timeout=15)
    assert item["actualValue"] == "true"
    assert item["eventNotificationType"] == "HardWiredNotification"
    ended = bench201.event("Ended", after=mark, timeout=15)
    assert tx_of(ended) == tx_id
    last_good = bench201.sim().status(1)["energy_wh"]
    energy = [
        v["value"]
        for v in sampled_values(ended)
        if v.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"
    ]
    assert energy == [pytest.approx(last_good, abs=1)], ended
    bench201.status201(1, "Faulted", after=mark)
    bench201.sim().wait_until(lambda s: not s["contactor_closed"], timeout=1)
    # The meter answers again: the problem clears by itself.
    mark = bench201.mark()
    bench201.sim().fault("meter_offline", False)
    item = event_data(bench201, "FiscalMetering", "Problem", mark, timeout=15)
    assert item["actualValue"] == "false"
    assert item["cleared"] is True


def test_n07_diode_missing_cp_pwm_controller_problem_and_cleared(bench201: Bench) -> None:
    mark = bench201.mark()
    bench201.sim().plug(1)
    bench201.sim().fault("diode")
    bench201.sim().swipe(TOKEN)
    bench201.sim().charge(1)
    item = event_data(bench201, "CPPWMController", "Problem", mark)
    assert item["actualValue"] == "true"
    assert item["eventNotificationType"] == "HardWiredNotification"
    bench201.status201(1, "Faulted", after=mark)
    assert not bench201.sim().status(1)["contactor_closed"]
    # Not latching: the fault clears with the condition, with a cleared event.
    mark = bench201.mark()
    bench201.sim().fault("diode", False)
    item = event_data(bench201, "CPPWMController", "Problem", mark)
    assert item["actualValue"] == "false"
    assert item["cleared"] is True
    bench201.wait("StatusNotification", lambda p: p["connectorStatus"] != "Faulted", after=mark)


def set_monitor(bench: Bench, severity: int = 3, **item: Any) -> dict[str, Any]:
    data = {
        "value": 1,
        "type": "Delta",
        "severity": severity,
        "component": {"name": "RCD", "evse": {"id": 1}},
        "variable": {"name": "Tripped"},
        **item,
    }
    (result,) = bench.call("SetVariableMonitoring", {"setMonitoringData": [data]})["setMonitoringResult"]
    return dict(result)


def test_n04_set_variable_monitoring_custom_monitor_event(bench201: Bench) -> None:
    result = set_monitor(bench201)
    assert result["status"] == "Accepted"
    monitor_id = result["id"]
    mark = bench201.mark()
    bench201.sim().fault("rcd")
    item = event_data(bench201, "RCD", "Tripped", mark)
    assert item["eventNotificationType"] == "CustomMonitor"
    assert item["variableMonitoringId"] == monitor_id
    assert item["actualValue"] == "true"
    bench201.status201(1, "Faulted", after=mark)


def test_n02_get_monitoring_report_lists_monitor(bench201: Bench) -> None:
    monitor_id = set_monitor(bench201)["id"]
    mark = bench201.mark()
    assert bench201.call("GetMonitoringReport", {"requestId": 21})["status"] == "Accepted"
    report = bench201.wait("NotifyMonitoringReport", lambda p: p["requestId"] == 21, after=mark)
    assert report["tbc"] is False
    (data,) = [m for m in report["monitor"] if m["component"]["name"] == "RCD"]
    assert data["component"]["evse"]["id"] == 1
    assert data["variable"]["name"] == "Tripped"
    assert data["variableMonitoring"] == [
        {"id": monitor_id, "transaction": False, "value": 1, "type": "Delta", "severity": 3}
    ]
    # By criteria: no threshold monitors.
    reply = bench201.call(
        "GetMonitoringReport", {"requestId": 22, "monitoringCriteria": ["ThresholdMonitoring"]}
    )
    assert reply["status"] == "EmptyResultSet"


def test_n02_fr_02_get_monitoring_report_periodic_monitoring_not_supported(bench201: Bench) -> None:
    """N02.FR.02: a GetMonitoringReport with a monitoringCriteria the station does not support
    (PeriodicMonitoring: it has no periodic monitors) is answered NotSupported, and no report follows."""
    set_monitor(bench201)
    mark = bench201.mark()
    for criteria in (["PeriodicMonitoring"], ["DeltaMonitoring", "PeriodicMonitoring"]):
        reply = bench201.call("GetMonitoringReport", {"requestId": 26, "monitoringCriteria": criteria})
        assert reply["status"] == "NotSupported"
    no_call(bench201, "NotifyMonitoringReport", mark, 0.5)
    reply = bench201.call("GetMonitoringReport", {"requestId": 27, "monitoringCriteria": ["DeltaMonitoring"]})
    assert reply["status"] == "Accepted"


def test_n06_clear_variable_monitoring(bench201: Bench) -> None:
    monitor_id = set_monitor(bench201)["id"]
    reply = bench201.call("ClearVariableMonitoring", {"id": [monitor_id, 9999]})
    assert reply["clearMonitoringResult"] == [
        {"id": monitor_id, "status": "Accepted"},
        {"id": 9999, "status": "NotFound"},
    ]
    assert bench201.call("GetMonitoringReport", {"requestId": 23})["status"] == "EmptyResultSet"
    # Without the monitor the trip is a hard-wired notification again.
    mark = bench201.mark()
    bench201.sim().fault("rcd")
    assert event_data(bench201, "RCD", "Tripped", mark)["eventNotificationType"] == "HardWiredNotification"


def test_n05_set_monitoring_level_suppresses_monitor(bench201: Bench) -> None:
    set_monitor(bench201, severity=5)
    assert bench201.call("SetMonitoringLevel", {"severity": 4})["status"] == "Accepted"
    mark = bench201.mark()
    bench201.sim().fault("rcd")
    # The custom monitor (severity 5) is above the level; the hard-wired trip (Danger) is not.
    item = event_data(bench201, "RCD", "Tripped", mark)
    assert item["eventNotificationType"] == "HardWiredNotification"
    assert "variableMonitoringId" not in item
    bench201.status201(1, "Faulted", after=mark)


def test_n04_fr_16_set_variable_monitoring_id_of_another_variable_rejected(bench201: Bench) -> None:
    """N04.FR.16: an id of an existing monitor with another component/variable is answered
    Rejected instead of replacing (moving) the monitor."""
    monitor_id = set_monitor(bench201)["id"]  # RCD.Tripped on EVSE 1
    other = {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"}}
    result = set_monitor(bench201, id=monitor_id, **other)
    assert result["status"] == "Rejected"
    assert result["id"] == monitor_id
    # The monitor stays where it was and still reports the trip.
    mark = bench201.mark()
    bench201.sim().fault("rcd")
    item = event_data(bench201, "RCD", "Tripped", mark)
    assert item["eventNotificationType"] == "CustomMonitor"
    assert item["variableMonitoringId"] == monitor_id


def test_n04_set_variable_monitoring_unknown_component_and_variable(bench201: Bench) -> None:
    result = set_monitor(bench201, component={"name": "FluxCapacitor"})
    assert result["status"] == "UnknownComponent"
    result = set_monitor(bench201, variable={"name": "Flux"})
    assert result["status"] == "UnknownVariable"
    result = set_monitor(bench201, component={"name": "RCD", "evse": {"id": 4}})
    assert result["status"] == "UnknownComponent"
    assert bench201.call("GetMonitoringReport", {"requestId": 24})["status"] == "EmptyResultSet"


def test_n04_set_variable_monitoring_persists_across_restart(bench201: Bench) -> None:
    monitor_id = set_monitor(bench201)["id"]
    assert bench201.stop() == 0
    bench201.start()
    mark = bench201.mark()
    bench201.sim().fault("rcd")
    item = event_data(bench201, "RCD", "Tripped", mark)
    assert item["eventNotificationType"] == "CustomMonitor"
    assert item["variableMonitoringId"] == monitor_id


def test_n03_set_monitoring_base_hard_wired_only_removes_custom_monitors(bench201: Bench) -> None:
    set_monitor(bench201)
    assert bench201.call("SetMonitoringBase", {"monitoringBase": "HardWiredOnly"})["status"] == "Accepted"
    assert bench201.call("GetMonitoringReport", {"requestId": 25})["status"] == "EmptyResultSet"
    mark = bench201.mark()
    bench201.sim().fault("rcd")
    assert event_data(bench201, "RCD", "Tripped", mark)["eventNotificationType"] == "HardWiredNotification"


def evse_power_above(bench: Bench, watts: float) -> dict[str, Any]:
    """An UpperThreshold monitor (severity 5) on EVSE 1's Power: the SetMonitoringResult."""
    return set_monitor(
        bench,
        severity=5,
        type="UpperThreshold",
        value=watts,
        component={"name": "EVSE", "evse": {"id": 1}},
        variable={"name": "Power"},
    )


def test_n07_upper_threshold_monitor_on_evse_power_alerts(bench201: Bench) -> None:
    result = evse_power_above(bench201, 1000)
    assert result["status"] == "Accepted"
    mark = bench201.mark()
    start_session(bench201)  # 16 A on 3 phases: about 11 kW
    bench201.sim().wait_until(lambda s: s["power_w"] > 1000, timeout=10)
    item = event_data(bench201, "EVSE", "Power", mark, timeout=3)
    assert item["eventNotificationType"] == "CustomMonitor"
    assert item["variableMonitoringId"] == result["id"]
    assert item["trigger"] == "Alerting"
    assert float(item["actualValue"]) > 1000


def test_n07_fr_14_fired_threshold_monitor_cleared_after_restart(bench201: Bench) -> None:
    """N07.FR.14: an UpperThreshold monitor fired, the station restarts, the value is back within
    the threshold -> NotifyEvent cleared true for that monitor."""
    result = evse_power_above(bench201, 1000)
    mark = bench201.mark()
    start_session(bench201)
    assert event_data(bench201, "EVSE", "Power", mark)["cleared"] is False
    assert bench201.stop() == 0
    # The simulated hardware restarts with the daemon: no car, 0 W.
    mark = bench201.mark()
    bench201.start()
    item = event_data(bench201, "EVSE", "Power", mark)
    assert (item["variableMonitoringId"], item["trigger"]) == (result["id"], "Alerting")
    assert item["cleared"] is True
    assert float(item["actualValue"]) <= 1000


def test_n07_delta_monitor_on_power_contactor_active(bench201: Bench) -> None:
    result = set_monitor(
        bench201,
        component={"name": "PowerContactor", "evse": {"id": 1}},
        variable={"name": "Active"},
    )
    assert result["status"] == "Accepted"
    time.sleep(1.2)  # the station looks at such variables once a second
    mark = bench201.mark()
    start_session(bench201)
    item = event_data(bench201, "PowerContactor", "Active", mark, timeout=3)
    assert item["eventNotificationType"] == "CustomMonitor"
    assert item["variableMonitoringId"] == result["id"]
    assert item["actualValue"] == "true"
