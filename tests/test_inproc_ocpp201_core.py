"""OCPP 2.0.1 core in-process (``tests.inproc``), moved from test_ocpp201_core.py: the
station's daemon, link and adapter on the virtual clock against the development CSMS.

Each test follows one OCA 2.0.1 compliance test case family: provisioning (B01-B03 boot,
heartbeat, B05 SetVariables, B06 GetVariables, B07/B08 reports, B09 network profile), F06
TriggerMessage, P01 DataTransfer and the OCPP-J wire rules of 2.0.1 (CALLERRORs for bad
frames, every frame sent valid). What needs the process (the cold boot, a power cut, the
resets that re-execute it, Basic auth against another CSMS, the choice of version with
``ocpp.version = "auto"``) stays in test_ocpp201_core.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from hil.csms import CallErrorReply
from tests.inproc import TOKEN, Bench, assert_link_intact, station
from tests.ocpp201_helpers import (
    PASSWORD,
    Z_TIME,
    assert_station_frames_valid,
    get_item,
    network_profile,
    padded,
)
from tests.ocpp_helpers import error_reply, since

# -- helpers -----------------------------------------------------------------------------

# -- helpers -----------------------------------------------------------------------------


async def quiet_for(b: Bench, action: str, after: int, seconds: float) -> None:
    """Assert the station sends no ``action`` for ``seconds``."""
    await asyncio.sleep(seconds)
    assert since(b, action, after) == [], f"unexpected {action}"


async def get_vars(b: Bench, *items: dict[str, Any]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = (await b.call("GetVariables", {"getVariableData": list(items)}))[
        "getVariableResult"
    ]
    assert len(results) == len(items)
    return results


async def get_value(b: Bench, comp: str, var: str, **where: Any) -> str:
    result = (await get_vars(b, get_item(comp, var, **where)))[0]
    assert result["attributeStatus"] == "Accepted", result
    value: str = result["attributeValue"]
    return value


async def set_vars(b: Bench, *items: tuple[str, str, str]) -> list[dict[str, Any]]:
    """SetVariables of (component, variable, value) items; returns the results in order."""
    data = [
        {"component": {"name": c}, "variable": {"name": v}, "attributeValue": value} for c, v, value in items
    ]
    results: list[dict[str, Any]] = (await b.call("SetVariables", {"setVariableData": data}))[
        "setVariableResult"
    ]
    assert len(results) == len(items)
    return results


async def set_var(b: Bench, comp: str, var: str, value: str) -> str:
    status: str = (await set_vars(b, (comp, var, value)))[0]["attributeStatus"]
    return status


async def report_parts(b: Bench, request_id: int, after: int, timeout: float = 15) -> list[dict[str, Any]]:
    """The NotifyReport parts of ``request_id``, once the last one (tbc false) has arrived."""
    await b.wait("NotifyReport", lambda p: p["requestId"] == request_id and not p.get("tbc"), timeout, after)
    return since(b, "NotifyReport", after, lambda p: p["requestId"] == request_id)


def report_items(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for part in parts for item in part["reportData"]]


def item_name(item: dict[str, Any]) -> str:
    comp, var = item["component"], item["variable"]
    evse = comp.get("evse")
    where = f"[{evse['id']}{',' + str(evse['connectorId']) if 'connectorId' in evse else ''}]" if evse else ""
    inst = f":{var['instance']}" if "instance" in var else ""
    return f"{comp['name']}{where}.{var['name']}{inst}"


async def charge201(b: Bench, evse: int = 1) -> dict[str, Any]:
    """Plug in, swipe, charge until the contactor closes; returns the TransactionEvent Started."""
    mark = b.mark()
    b.sim.plug(evse)
    b.sim.swipe(TOKEN)
    b.sim.charge(evse, max_current_a=16)
    await b.sim.wait_until(lambda s: s["contactor_closed"], evse=evse, timeout=10)
    return await b.event("Started", lambda p: p["evse"]["id"] == evse, after=mark)


@station(start=False, version="2.0.1")
async def test_b01_heartbeat_at_interval_from_boot(b: Bench) -> None:
    b.csms.heartbeat_interval = 1
    await b.start()
    boot = await b.csms.wait_for("BootNotification", station="CP001")
    first = await b.csms.wait_for("Heartbeat", station="CP001", timeout=5)
    assert 0.7 <= first.t - boot.t <= 2.5, f"first Heartbeat {first.t - boot.t:.1f} s after boot"
    second = await b.csms.wait_for(
        "Heartbeat", station="CP001", timeout=5, after=b.csms.timeline.index(first) + 1
    )
    assert 0.7 <= second.t - first.t <= 2.5, f"second Heartbeat {second.t - first.t:.1f} s after the first"
    assert first.payload == {}


@station(version="2.0.1")
async def test_b05_heartbeat_interval_set_takes_effect_at_once(b: Bench) -> None:
    assert await get_value(b, "OCPPCommCtrlr", "HeartbeatInterval") == "300"
    mark = b.mark()
    t0 = asyncio.get_running_loop().time()
    assert await set_var(b, "OCPPCommCtrlr", "HeartbeatInterval", "1") == "Accepted"
    await b.wait("Heartbeat", after=mark, timeout=5)
    assert asyncio.get_running_loop().time() - t0 < 3.0
    first = len(since(b, "Heartbeat", mark))
    await asyncio.sleep(2.6)
    assert len(since(b, "Heartbeat", mark)) >= first + 2
    assert await get_value(b, "OCPPCommCtrlr", "HeartbeatInterval") == "1"


@station(start=False, version="2.0.1")
async def test_b02_cold_boot_pending(b: Bench) -> None:
    b.csms.heartbeat_interval = 1
    b.csms.boot_status = "Pending"
    await b.start(wait_boot=False)
    first = await b.csms.wait_for("BootNotification", station="CP001")
    second = await b.csms.wait_for(
        "BootNotification", station="CP001", after=b.csms.timeline.index(first) + 1
    )
    assert second.t - first.t >= 0.8, "retried before the interval the CSMS gave"
    # While Pending the CSMS may read and change the device model, and ask for a report.
    assert await get_value(b, "ChargingStation", "SerialNumber") == "SIM-0001"
    assert await set_var(b, "TxCtrlr", "EVConnectionTimeOut", "50") == "Accepted"
    mark = b.mark()
    assert await b.call("GetBaseReport", {"requestId": 7, "reportBase": "SummaryInventory"}) == {
        "status": "Accepted"
    }
    assert report_items(await report_parts(b, 7, mark))
    # No other request from the station while Pending.
    b.sim.plug(1)
    await asyncio.sleep(1.5)
    for action in ("StatusNotification", "Heartbeat", "TransactionEvent", "MeterValues", "NotifyEvent"):
        assert b.calls(action) == [], f"{action} sent while Pending"
    assert all(p["reason"] == "PowerUp" for p in b.calls("BootNotification"))
    mark = b.mark()
    b.csms.boot_status = "Accepted"
    await b.wait("BootNotification", after=mark, timeout=5)
    await b.status201(1, "Occupied", after=mark)
    assert await get_value(b, "TxCtrlr", "EVConnectionTimeOut") == "50"
    # Once accepted the station stops sending BootNotifications.
    count = len(b.calls("BootNotification"))
    await asyncio.sleep(1.5)
    assert len(b.calls("BootNotification")) == count
    assert_station_frames_valid(b)


@station(start=False, version="2.0.1")
async def test_b02_fr_05_request_start_stop_transaction_rejected_while_pending(b: Bench) -> None:
    """B02.FR.05: while the BootNotification is Pending the station answers
    RequestStartTransaction and RequestStopTransaction with Rejected."""
    b.csms.heartbeat_interval = 1
    b.csms.boot_status = "Pending"
    await b.start(wait_boot=False)
    await b.wait("BootNotification")
    # A transaction the station opens on its own while Pending (plugging in starts one here).
    assert await set_var(b, "TxCtrlr", "TxStartPoint", "EVConnected") == "Accepted"
    b.sim.plug(1)
    query = "SELECT DISTINCT transaction_id FROM outbox WHERE kind = 'event'"
    rows = await b.eventually(lambda: b.db(query), what="a queued TransactionEvent")
    tx_id = rows[0][0]
    start = {"idToken": {"idToken": TOKEN, "type": "ISO14443"}, "remoteStartId": 5, "evseId": 1}
    assert (await b.call("RequestStartTransaction", start))["status"] == "Rejected"
    assert (await b.call("RequestStopTransaction", {"transactionId": tx_id}))["status"] == "Rejected"
    mark = b.mark()
    b.csms.boot_status = "Accepted"
    await b.wait("BootNotification", after=mark, timeout=5)
    await b.event("Started", after=mark)
    # The refused start left nothing behind: the transaction is not a remote start.
    assert all("remoteStartId" not in e for e in since(b, "TransactionEvent", mark))
    assert (await b.call("RequestStopTransaction", {"transactionId": tx_id}))["status"] == "Accepted"
    ended = await b.event("Ended", after=mark)
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"
    assert_station_frames_valid(b)


@station(start=False, version="2.0.1")
async def test_b02_trigger_boot_notification_while_pending(b: Bench) -> None:
    b.csms.heartbeat_interval = 30  # long: only a triggered BootNotification comes soon
    b.csms.boot_status = "Pending"
    await b.start(wait_boot=False)
    await b.wait("BootNotification")
    b.csms.boot_status = "Accepted"
    mark = b.mark()
    assert await b.call("TriggerMessage", {"requestedMessage": "BootNotification"}) == {"status": "Accepted"}
    boot = await b.wait("BootNotification", after=mark, timeout=5)
    assert boot["reason"] == "Triggered"
    await b.status201(1, "Available", after=mark, timeout=3)
    # Accepted now: one registration, no second boot loop going on.
    await asyncio.sleep(1.0)
    assert len(since(b, "BootNotification", mark)) == 1
    assert await b.call("TriggerMessage", {"requestedMessage": "BootNotification"}) == {"status": "Rejected"}


@station(start=False, version="2.0.1")
async def test_b03_cold_boot_rejected(b: Bench) -> None:
    b.csms.heartbeat_interval = 1
    b.csms.boot_status = "Rejected"
    await b.start(wait_boot=False)
    first = await b.csms.wait_for("BootNotification", station="CP001")
    second = await b.csms.wait_for(
        "BootNotification", station="CP001", after=b.csms.timeline.index(first) + 1
    )
    assert second.t - first.t >= 0.8, "retried before the interval the CSMS gave"
    # Requests from the CSMS while Rejected are refused (no answer, or CALLERROR SecurityError).
    for action, payload in (
        ("GetVariables", {"getVariableData": [get_item("OCPPCommCtrlr", "HeartbeatInterval")]}),
        ("RequestStartTransaction", {"idToken": {"idToken": TOKEN, "type": "ISO14443"}, "remoteStartId": 1}),
    ):
        with pytest.raises((CallErrorReply, TimeoutError)) as refused:
            await b.call(action, payload, timeout=2)
        if isinstance(refused.value, CallErrorReply):
            assert refused.value.code == "SecurityError", refused.value
    b.sim.plug(1)
    await asyncio.sleep(1.2)
    for action in ("StatusNotification", "Heartbeat", "TransactionEvent", "Authorize", "NotifyEvent"):
        assert b.calls(action) == [], f"{action} sent while Rejected"
    mark = b.mark()
    b.csms.boot_status = "Accepted"
    await b.wait("BootNotification", after=mark, timeout=5)
    await b.status201(1, "Occupied", after=mark)
    assert await get_value(b, "OCPPCommCtrlr", "HeartbeatInterval") == "1"


# -- B06 GetVariables ----------------------------------------------------------------------


@station(version="2.0.1")
async def test_b06_get_variables(b: Bench) -> None:
    results = await get_vars(
        b,
        get_item("OCPPCommCtrlr", "HeartbeatInterval"),
        get_item("NoSuchCtrlr", "HeartbeatInterval"),
        get_item("OCPPCommCtrlr", "NoSuchVariable"),
        get_item("OCPPCommCtrlr", "HeartbeatInterval", attribute="MaxSet"),
        get_item("SecurityCtrlr", "BasicAuthPassword"),
        get_item("TxCtrlr", "TxStartPoint", attribute="Actual"),
        get_item("DeviceDataCtrlr", "ItemsPerMessage", instance="GetVariables"),
    )
    known, no_component, no_variable, max_set, password, start_point, per_message = results
    assert known["attributeStatus"] == "Accepted" and known["attributeValue"] == "300"
    assert known["component"] == {"name": "OCPPCommCtrlr"}
    assert known["variable"] == {"name": "HeartbeatInterval"}
    assert no_component["attributeStatus"] == "UnknownComponent" and "attributeValue" not in no_component
    assert no_variable["attributeStatus"] == "UnknownVariable" and "attributeValue" not in no_variable
    assert max_set["attributeStatus"] == "NotSupportedAttributeType" and "attributeValue" not in max_set
    assert max_set["attributeType"] == "MaxSet"
    assert password["attributeStatus"] == "Rejected" and "attributeValue" not in password
    assert start_point["attributeStatus"] == "Accepted"
    assert start_point["attributeValue"] == "PowerPathClosed"
    assert start_point["attributeType"] == "Actual"
    assert per_message["attributeStatus"] == "Accepted" and int(per_message["attributeValue"]) >= 1
    assert per_message["variable"] == {"name": "ItemsPerMessage", "instance": "GetVariables"}


@station(version="2.0.1")
async def test_b06_get_variables_evse_and_connector_components(b: Bench) -> None:
    evse1, connector1, evse2, station, no_evse = await get_vars(
        b,
        get_item("EVSE", "AvailabilityState", evse=1),
        get_item("Connector", "AvailabilityState", evse=1, connector=1),
        get_item("EVSE", "AvailabilityState", evse=2),
        get_item("ChargingStation", "AvailabilityState"),
        get_item("EVSE", "AvailabilityState"),
    )
    assert evse1["attributeStatus"] == "Accepted" and evse1["attributeValue"] == "Available"
    assert evse1["component"] == {"name": "EVSE", "evse": {"id": 1}}
    assert connector1["attributeStatus"] == "Accepted" and connector1["attributeValue"] == "Available"
    assert evse2["attributeStatus"] == "UnknownComponent"
    assert station["attributeStatus"] == "Accepted" and station["attributeValue"] == "Available"
    assert no_evse["attributeStatus"] in ("UnknownComponent", "UnknownVariable")
    # The state follows the EVSE.
    mark = b.mark()
    b.sim.plug(1)
    await b.status201(1, "Occupied", after=mark)
    assert await get_value(b, "EVSE", "AvailabilityState", evse=1) == "Occupied"


@station(version="2.0.1")
async def test_b06_get_variables_more_than_items_per_message(b: Bench) -> None:
    limit = int(await get_value(b, "DeviceDataCtrlr", "ItemsPerMessage", instance="GetVariables"))
    item = get_item("OCPPCommCtrlr", "HeartbeatInterval")
    assert len(await get_vars(b, *([item] * limit))) == limit
    with pytest.raises(CallErrorReply) as error:
        await b.call("GetVariables", {"getVariableData": [item] * (limit + 1)})
    assert error.value.code == "OccurrenceConstraintViolation"
    await assert_link_intact(b)


@station(version="2.0.1")
async def test_b06_fr_05_items_per_message_get_variables_reported_for_the_csms(b: Bench) -> None:
    """B06.FR.05 is the CSMS's duty: "The CSMS SHALL NOT send more GetVariableData elements in a
    GetVariablesRequest than reported by the Charging Station via ItemsPerMessageGetVariables"
    (OCTT TC_B_08_CSMS). The station's part: it reports the limit, and a CSMS that splits its
    list into requests of that many items gets every result."""
    mark = b.mark()
    assert await b.call("GetBaseReport", {"requestId": 5, "reportBase": "FullInventory"}) == {
        "status": "Accepted"
    }
    reported = {item_name(i): i for i in report_items(await report_parts(b, 5, mark))}
    item = reported["DeviceDataCtrlr.ItemsPerMessage:GetVariables"]
    (attribute,) = item["variableAttribute"]
    assert attribute["mutability"] == "ReadOnly"
    assert item["variableCharacteristics"]["dataType"] == "integer"
    limit = int(attribute["value"])
    assert limit == int(await get_value(b, "DeviceDataCtrlr", "ItemsPerMessage", instance="GetVariables"))
    wanted = [{"component": i["component"], "variable": i["variable"]} for i in reported.values()]
    wanted = wanted[: 2 * limit + 1]
    assert len(wanted) == 2 * limit + 1
    results = [r for at in range(0, len(wanted), limit) for r in await get_vars(b, *wanted[at : at + limit])]
    assert [(r["component"], r["variable"]) for r in results] == [
        (w["component"], w["variable"]) for w in wanted
    ]
    await assert_link_intact(b)


@station(version="2.0.1")
async def test_b06_fr_17_get_variables_longer_than_bytes_per_message_format_violation(b: Bench) -> None:
    """B06.FR.17: a GetVariablesRequest longer than BytesPerMessageGetVariables: the station MAY
    answer CALLERROR FormatViolation; it does. One of exactly that length is answered."""
    limit = int(await get_value(b, "DeviceDataCtrlr", "BytesPerMessage", instance="GetVariables"))
    request = {"getVariableData": [get_item("OCPPCommCtrlr", "HeartbeatInterval")]}
    result = (await b.call("GetVariables", padded(request, limit)))["getVariableResult"]
    assert [r["attributeStatus"] for r in result] == ["Accepted"]
    with pytest.raises(CallErrorReply) as error:
        await b.call("GetVariables", padded(request, limit + 1))
    assert error.value.code == "FormatViolation"
    assert "BytesPerMessage" in error.value.description
    await assert_link_intact(b)


# -- B05 SetVariables ----------------------------------------------------------------------


@station(version="2.0.1")
async def test_b05_set_variables_accepted_and_persisted(b: Bench) -> None:
    results = await set_vars(
        b,
        ("TxCtrlr", "EVConnectionTimeOut", "45"),
        ("SampledDataCtrlr", "TxUpdatedInterval", "7"),
        ("TxCtrlr", "TxStartPoint", "EVConnected,Authorized"),
        ("AuthCtrlr", "LocalPreAuthorize", "true"),
    )
    assert [r["attributeStatus"] for r in results] == ["Accepted"] * 4
    assert results[0]["component"] == {"name": "TxCtrlr"}
    assert results[0]["variable"] == {"name": "EVConnectionTimeOut"}
    assert await get_value(b, "TxCtrlr", "EVConnectionTimeOut") == "45"
    assert await b.stop() == 0
    mark = b.mark()
    await b.start()
    assert since(b, "BootNotification", mark)[0]["reason"] == "PowerUp"
    assert await get_value(b, "TxCtrlr", "EVConnectionTimeOut") == "45"
    assert await get_value(b, "SampledDataCtrlr", "TxUpdatedInterval") == "7"
    assert await get_value(b, "TxCtrlr", "TxStartPoint") == "EVConnected,Authorized"
    assert await get_value(b, "AuthCtrlr", "LocalPreAuthorize") == "true"
    # The persisted TxStartPoint is in force: plugging in starts the transaction (EVConnected).
    mark = b.mark()
    b.sim.plug(1)
    started_event = await b.event("Started", after=mark)
    assert started_event["triggerReason"] == "CablePluggedIn"


@station(version="2.0.1")
async def test_b05_set_variables_read_only_rejected(b: Bench) -> None:
    results = await set_vars(
        b,
        ("ChargingStation", "SerialNumber", "OTHER"),
        ("SecurityCtrlr", "SecurityProfile", "3"),
        ("DeviceDataCtrlr", "ValueSize", "10"),
    )
    assert [r["attributeStatus"] for r in results] == ["Rejected"] * 3
    assert await get_value(b, "ChargingStation", "SerialNumber") == "SIM-0001"
    assert await get_value(b, "SecurityCtrlr", "SecurityProfile") == "0"


@pytest.mark.parametrize(
    ("comp", "var", "value", "before"),
    [
        ("OCPPCommCtrlr", "HeartbeatInterval", "abc", "300"),
        ("OCPPCommCtrlr", "HeartbeatInterval", "1.5", "300"),
        ("OCPPCommCtrlr", "HeartbeatInterval", "-5", "300"),
        ("TxCtrlr", "EVConnectionTimeOut", "99999999", "60"),
        ("AuthCtrlr", "LocalPreAuthorize", "maybe", "false"),
        ("TxCtrlr", "TxStartPoint", "EVConnected,Bogus", "PowerPathClosed"),
        ("TxCtrlr", "TxStartPoint", "", "PowerPathClosed"),
        ("TxCtrlr", "TxStopPoint", "ParkingBayOccupancy", "EVConnected,Authorized"),
        ("SampledDataCtrlr", "TxUpdatedMeasurands", "Energy.Bogus", "Energy.Active.Import.Register"),
    ],
    ids=[
        "text",
        "decimal",
        "negative",
        "too-high",
        "bool",
        "member",
        "empty",
        "unsupported-member",
        "measurand",
    ],
)
@station(version="2.0.1")
async def test_b05_set_variables_invalid_value_rejected(
    b: Bench, comp: str, var: str, value: str, before: str
) -> None:
    assert await get_value(b, comp, var) == before
    result = (await set_vars(b, (comp, var, value)))[0]
    assert result["attributeStatus"] == "Rejected", result
    assert await get_value(b, comp, var) == before


@station(version="2.0.1")
async def test_b05_set_variables_reboot_required_unknown_and_write_only(b: Bench) -> None:
    ping, no_component, no_variable, password, short_password = await set_vars(
        b,
        ("OCPPCommCtrlr", "WebSocketPingInterval", "20"),
        ("NoSuchCtrlr", "HeartbeatInterval", "10"),
        ("OCPPCommCtrlr", "NoSuchVariable", "10"),
        ("SecurityCtrlr", "BasicAuthPassword", PASSWORD),
        ("SecurityCtrlr", "BasicAuthPassword", "short"),
    )
    assert ping["attributeStatus"] == "RebootRequired"
    assert await get_value(b, "OCPPCommCtrlr", "WebSocketPingInterval") == "20"
    assert no_component["attributeStatus"] == "UnknownComponent"
    assert no_variable["attributeStatus"] == "UnknownVariable"
    assert password["attributeStatus"] == "Accepted"
    assert short_password["attributeStatus"] == "Rejected"
    read = (await get_vars(b, get_item("SecurityCtrlr", "BasicAuthPassword")))[0]
    assert read["attributeStatus"] == "Rejected" and "attributeValue" not in read
    # MaxSet is not an attribute HeartbeatInterval has.
    data = {
        "component": {"name": "OCPPCommCtrlr"},
        "variable": {"name": "HeartbeatInterval"},
        "attributeType": "MaxSet",
        "attributeValue": "10",
    }
    reply = (await b.call("SetVariables", {"setVariableData": [data]}))["setVariableResult"][0]
    assert reply["attributeStatus"] == "NotSupportedAttributeType"
    assert await get_value(b, "OCPPCommCtrlr", "HeartbeatInterval") == "300"
    assert_station_frames_valid(b)


@station(version="2.0.1")
async def test_b05_set_variables_evse_level_and_items_per_message(b: Bench) -> None:
    data = [
        {
            "component": {"name": "EVSE", "evse": {"id": 1}},
            "variable": {"name": "AvailabilityState"},
            "attributeValue": "Unavailable",
        },
        {
            "component": {"name": "EVSE", "evse": {"id": 2}},
            "variable": {"name": "AvailabilityState"},
            "attributeValue": "Unavailable",
        },
    ]
    own, other = (await b.call("SetVariables", {"setVariableData": data}))["setVariableResult"]
    assert own["attributeStatus"] == "Rejected"
    assert own["component"] == {"name": "EVSE", "evse": {"id": 1}}
    assert other["attributeStatus"] == "UnknownComponent"
    assert await get_value(b, "EVSE", "AvailabilityState", evse=1) == "Available"
    limit = int(await get_value(b, "DeviceDataCtrlr", "ItemsPerMessage", instance="SetVariables"))
    item = {
        "component": {"name": "TxCtrlr"},
        "variable": {"name": "EVConnectionTimeOut"},
        "attributeValue": "44",
    }
    with pytest.raises(CallErrorReply) as error:
        await b.call("SetVariables", {"setVariableData": [item] * (limit + 1)})
    assert error.value.code == "OccurrenceConstraintViolation"
    assert await get_value(b, "TxCtrlr", "EVConnectionTimeOut") == "60"


# -- B07 GetBaseReport, B08 GetReport ------------------------------------------------------


async def check_parts(b: Bench, parts: list[dict[str, Any]], request_id: int) -> None:
    per_message = int(await get_value(b, "DeviceDataCtrlr", "ItemsPerMessage", instance="GetReport"))
    assert [p["seqNo"] for p in parts] == list(range(len(parts)))
    assert [bool(p.get("tbc")) for p in parts] == [True] * (len(parts) - 1) + [False]
    for part in parts:
        assert part["requestId"] == request_id
        assert 1 <= len(part["reportData"]) <= per_message
        assert Z_TIME.match(part["generatedAt"]), part["generatedAt"]


@pytest.mark.parametrize("base", ["FullInventory", "ConfigurationInventory", "SummaryInventory"])
@station(version="2.0.1")
async def test_b07_get_base_report(b: Bench, base: str) -> None:
    assert await set_var(b, "SecurityCtrlr", "BasicAuthPassword", PASSWORD) == "Accepted"
    mark = b.mark()
    assert await b.call("GetBaseReport", {"requestId": 42, "reportBase": base}) == {"status": "Accepted"}
    parts = await report_parts(b, 42, mark)
    await check_parts(b, parts, 42)
    items = report_items(parts)
    names = [item_name(i) for i in items]
    assert len(names) == len(set(names)), "an item reported twice"
    assert PASSWORD not in json.dumps(parts)
    for item in items:
        for attribute in item["variableAttribute"]:
            if attribute.get("mutability") == "WriteOnly":
                assert "value" not in attribute, item
    by_name = {item_name(i): i for i in items}
    if base == "FullInventory":
        assert len(parts) >= 2, "a full inventory of this size comes in several parts"
        heartbeat = by_name["OCPPCommCtrlr.HeartbeatInterval"]
        actual = next(a for a in heartbeat["variableAttribute"] if a.get("type", "Actual") == "Actual")
        assert actual["value"] == "300" and actual["mutability"] == "ReadWrite"
        assert heartbeat["variableCharacteristics"]["dataType"] == "integer"
        assert by_name["ChargingStation.SerialNumber"]["variableAttribute"][0]["value"] == "SIM-0001"
        assert "EVSE[1].AvailabilityState" in by_name
        assert "Connector[1,1].AvailabilityState" in by_name
        assert "SecurityCtrlr.BasicAuthPassword" in by_name
    elif base == "ConfigurationInventory":
        assert "OCPPCommCtrlr.HeartbeatInterval" in by_name
        assert "ChargingStation.SerialNumber" not in by_name
        for item in items:
            mutability = {a.get("mutability", "ReadWrite") for a in item["variableAttribute"]}
            assert mutability & {"ReadWrite", "WriteOnly"}, item
    else:
        assert "EVSE[1].AvailabilityState" in by_name
        assert "OCPPCommCtrlr.HeartbeatInterval" not in by_name
    assert_station_frames_valid(b)


@station(version="2.0.1")
async def test_b07_get_base_report_full_inventory_item_count_matches_get_report(b: Bench) -> None:
    mark = b.mark()
    assert (await b.call("GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"}))[
        "status"
    ] == "Accepted"
    full = report_items(await report_parts(b, 1, mark))
    mark = b.mark()
    filter_all = {"componentVariable": [{"component": {"name": "OCPPCommCtrlr"}}], "requestId": 2}
    assert await b.call("GetReport", filter_all) == {"status": "Accepted"}
    comm = report_items(await report_parts(b, 2, mark))
    assert {item_name(i) for i in comm} == {
        item_name(i) for i in full if i["component"]["name"] == "OCPPCommCtrlr"
    }


@station(version="2.0.1")
async def test_b08_get_report_component_variable_filter(b: Bench) -> None:
    mark = b.mark()
    request = {
        "requestId": 3,
        "componentVariable": [{"component": {"name": "OCPPCommCtrlr"}}],
    }
    assert await b.call("GetReport", request) == {"status": "Accepted"}
    parts = await report_parts(b, 3, mark)
    await check_parts(b, parts, 3)
    items = report_items(parts)
    assert {i["component"]["name"] for i in items} == {"OCPPCommCtrlr"}
    assert "OCPPCommCtrlr.HeartbeatInterval" in {item_name(i) for i in items}
    # One variable of one component, and an EVSE-level component.
    mark = b.mark()
    request = {
        "requestId": 4,
        "componentVariable": [
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
            {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityState"}},
        ],
    }
    assert await b.call("GetReport", request) == {"status": "Accepted"}
    items = report_items(await report_parts(b, 4, mark))
    assert sorted(item_name(i) for i in items) == [
        "EVSE[1].AvailabilityState",
        "OCPPCommCtrlr.HeartbeatInterval",
    ]


@station(version="2.0.1")
async def test_b08_fr_17_get_report_more_than_items_per_message_occurrence_violation(b: Bench) -> None:
    """B08.FR.17: "Charging Station receives a GetReportRequest with more ComponentVariableType
    elements than allowed by ItemsPerMessageGetReport. The Charging Station MAY respond with a
    CALLERROR(OccurenceConstraintViolation)" (2.0.1 errata spelling: OccurrenceConstraintViolation).
    No NotifyReport follows; a request of exactly that many is answered."""
    limit = int(await get_value(b, "DeviceDataCtrlr", "ItemsPerMessage", instance="GetReport"))
    wanted = [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]
    mark = b.mark()
    with pytest.raises(CallErrorReply) as error:
        await b.call("GetReport", {"requestId": 17, "componentVariable": wanted * (limit + 1)})
    assert error.value.code == "OccurrenceConstraintViolation"
    assert "ItemsPerMessage" in error.value.description
    request = {"requestId": 18, "componentVariable": wanted * limit}
    assert await b.call("GetReport", request) == {"status": "Accepted"}
    assert [item_name(i) for i in report_items(await report_parts(b, 18, mark))] == [
        "OCPPCommCtrlr.HeartbeatInterval"
    ]
    assert not since(b, "NotifyReport", mark, lambda p: p["requestId"] == 17)
    await assert_link_intact(b)


@station(version="2.0.1")
async def test_b08_fr_18_get_report_longer_than_bytes_per_message_format_violation(b: Bench) -> None:
    """B08.FR.18: "Charging Station receives a GetReportRequest with a length of more bytes than
    allowed by BytesPerMessageGetReport. The Charging Station MAY respond with a
    CALLERROR(FormatViolation)". No NotifyReport follows; one of exactly that length is answered."""
    limit = int(await get_value(b, "DeviceDataCtrlr", "BytesPerMessage", instance="GetReport"))
    wanted = [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]
    mark = b.mark()
    with pytest.raises(CallErrorReply) as error:
        await b.call("GetReport", padded({"requestId": 19, "componentVariable": wanted}, limit + 1))
    assert error.value.code == "FormatViolation"
    assert "BytesPerMessage" in error.value.description
    request = padded({"requestId": 20, "componentVariable": wanted}, limit)
    assert await b.call("GetReport", request) == {"status": "Accepted"}
    assert len(report_items(await report_parts(b, 20, mark))) == 1
    assert not since(b, "NotifyReport", mark, lambda p: p["requestId"] == 19)
    await assert_link_intact(b)


@station(version="2.0.1")
async def test_b08_get_report_component_criteria(b: Bench) -> None:
    assert await set_var(b, "AuthCacheCtrlr", "Enabled", "false") == "Accepted"
    mark = b.mark()
    request = {"requestId": 5, "componentCriteria": ["Enabled"]}
    assert await b.call("GetReport", request) == {"status": "Accepted"}
    parts = await report_parts(b, 5, mark)
    await check_parts(b, parts, 5)
    items = report_items(parts)
    comps = {i["component"]["name"] for i in items}
    assert {"AuthCtrlr", "SampledDataCtrlr", "LocalAuthListCtrlr"} <= comps
    # A component whose Enabled is false does not meet the criterion.
    assert "AuthCacheCtrlr" not in comps
    # All variables of a component that meets it are reported, not only Enabled.
    assert "AuthCtrlr.LocalPreAuthorize" in {item_name(i) for i in items}
    # Criteria and a component filter together.
    mark = b.mark()
    request = {
        "requestId": 6,
        "componentCriteria": ["Enabled"],
        "componentVariable": [{"component": {"name": "AuthCtrlr"}, "variable": {"name": "Enabled"}}],
    }
    assert await b.call("GetReport", request) == {"status": "Accepted"}
    items = report_items(await report_parts(b, 6, mark))
    assert [item_name(i) for i in items] == ["AuthCtrlr.Enabled"]


@station(version="2.0.1")
async def test_b08_get_report_problem_criteria_after_fault(b: Bench) -> None:
    mark = b.mark()
    b.sim.fault("meter_offline", evse=1)
    await b.status201(1, "Faulted", after=mark, timeout=15)
    mark = b.mark()
    assert await b.call("GetReport", {"requestId": 12, "componentCriteria": ["Problem"]}) == {
        "status": "Accepted"
    }
    items = report_items(await report_parts(b, 12, mark))
    names = {item_name(i) for i in items}
    assert {"FiscalMetering[1].Problem", "ChargingStation.Problem"} <= names
    problem = next(i for i in items if item_name(i) == "FiscalMetering[1].Problem")
    assert problem["variableAttribute"][0]["value"] == "true"
    assert all(i["component"]["name"] != "OCPPCommCtrlr" for i in items)


@station(version="2.0.1")
async def test_b08_get_report_empty_result_set(b: Bench) -> None:
    mark = b.mark()
    request = {"requestId": 9, "componentVariable": [{"component": {"name": "NoSuchComponent"}}]}
    assert await b.call("GetReport", request) == {"status": "EmptyResultSet"}
    request = {
        "requestId": 10,
        "componentVariable": [
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NoSuchVariable"}}
        ],
    }
    assert await b.call("GetReport", request) == {"status": "EmptyResultSet"}
    # Problem criteria: no component has a problem on an idle, healthy station.
    assert await b.call("GetReport", {"requestId": 11, "componentCriteria": ["Problem"]}) == {
        "status": "EmptyResultSet"
    }
    await quiet_for(b, "NotifyReport", mark, 0.5)


@station(version="2.0.1")
async def test_b11_reset_with_evse_id_rejected(b: Bench) -> None:
    mark = b.mark()
    assert (await b.call("Reset", {"type": "Immediate", "evseId": 1}))["status"] == "Rejected"
    assert (await b.call("Reset", {"type": "OnIdle", "evseId": 1}))["status"] == "Rejected"
    await quiet_for(b, "BootNotification", mark, 1.0)
    assert list(b.csms.stations) == ["CP001"]


# -- B09 SetNetworkProfile -----------------------------------------------------------------


@station(version="2.0.1")
async def test_b09_set_network_profile_accepted(b: Bench) -> None:
    assert await b.call("SetNetworkProfile", network_profile(1, 0)) == {"status": "Accepted"}
    assert await b.call("SetNetworkProfile", network_profile(2, 0)) == {"status": "Accepted"}
    # A05 prerequisites: profile 1 needs a Basic auth password, which this station has not.
    assert (await b.call("SetNetworkProfile", network_profile(3, 1)))["status"] == "Rejected"
    # The active connection is not touched.
    await assert_link_intact(b)


# -- F06 TriggerMessage --------------------------------------------------------------------


EVSE1 = {"id": 1, "connectorId": 1}


@station(version="2.0.1")
async def test_f06_trigger_message_heartbeat(b: Bench) -> None:
    mark = b.mark()
    assert await b.call("TriggerMessage", {"requestedMessage": "Heartbeat"}) == {"status": "Accepted"}
    assert await b.wait("Heartbeat", after=mark, timeout=5) == {}


@station(version="2.0.1")
async def test_f06_trigger_message_status_notification(b: Bench) -> None:
    mark = b.mark()
    reply = await b.call("TriggerMessage", {"requestedMessage": "StatusNotification", "evse": EVSE1})
    assert reply == {"status": "Accepted"}
    sent = await b.wait("StatusNotification", after=mark, timeout=5)
    assert sent["evseId"] == 1 and sent["connectorId"] == 1 and sent["connectorStatus"] == "Available"
    # An EVSE the station does not have.
    mark = b.mark()
    reply = await b.call("TriggerMessage", {"requestedMessage": "StatusNotification", "evse": {"id": 2}})
    assert reply["status"] == "Rejected"
    await quiet_for(b, "StatusNotification", mark, 0.5)


@station(version="2.0.1")
async def test_f06_trigger_message_boot_notification_after_accepted_rejected(b: Bench) -> None:
    mark = b.mark()
    reply = await b.call("TriggerMessage", {"requestedMessage": "BootNotification"})
    assert reply["status"] == "Rejected"
    await quiet_for(b, "BootNotification", mark, 0.5)


@station(version="2.0.1")
async def test_f06_trigger_message_meter_values(b: Bench) -> None:
    mark = b.mark()
    reply = await b.call("TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 1}})
    assert reply == {"status": "Accepted"}
    sent = await b.wait("MeterValues", after=mark, timeout=5)
    assert sent["evseId"] == 1
    sampled = sent["meterValue"][0]["sampledValue"]
    assert sampled and all(s.get("context") == "Trigger" for s in sampled)
    assert any(
        s.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"
        for s in sampled
    )


@station(version="2.0.1")
async def test_f06_trigger_message_meter_values_aligned_measurands(b: Bench) -> None:
    assert await set_var(b, "AlignedDataCtrlr", "Measurands", "Energy.Active.Import.Register,Voltage") == (
        "Accepted"
    )
    assert await set_var(b, "SampledDataCtrlr", "TxUpdatedMeasurands", "Energy.Active.Import.Register") == (
        "Accepted"
    )
    mark = b.mark()
    reply = await b.call("TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 1}})
    assert reply == {"status": "Accepted"}
    sent = await b.wait("MeterValues", after=mark, timeout=5)
    measurands = {
        s.get("measurand", "Energy.Active.Import.Register") for s in sent["meterValue"][0]["sampledValue"]
    }
    assert measurands == {"Energy.Active.Import.Register", "Voltage"}


@station(version="2.0.1")
async def test_f06_trigger_message_not_implemented(b: Bench) -> None:
    for message in ("SignV2GCertificate", "SignCombinedCertificate", "PublishFirmwareStatusNotification"):
        reply = await b.call("TriggerMessage", {"requestedMessage": message})
        assert reply["status"] == "NotImplemented", message


@station(version="2.0.1")
async def test_f06_trigger_message_transaction_event(b: Bench) -> None:
    mark = b.mark()
    reply = await b.call("TriggerMessage", {"requestedMessage": "TransactionEvent", "evse": EVSE1})
    assert reply["status"] == "Rejected"
    reply = await b.call("TriggerMessage", {"requestedMessage": "TransactionEvent"})
    assert reply["status"] == "Rejected"
    await quiet_for(b, "TransactionEvent", mark, 0.5)
    start = await charge201(b)
    mark = b.mark()
    reply = await b.call("TriggerMessage", {"requestedMessage": "TransactionEvent", "evse": EVSE1})
    assert reply == {"status": "Accepted"}
    updated = await b.event("Updated", lambda p: p["triggerReason"] == "Trigger", after=mark, timeout=5)
    assert updated["transactionInfo"]["transactionId"] == start["transactionInfo"]["transactionId"]
    assert updated["seqNo"] > start["seqNo"]


# -- P01 DataTransfer ----------------------------------------------------------------------


@station(version="2.0.1")
async def test_p01_data_transfer_unknown_vendor(b: Bench) -> None:
    reply = await b.call("DataTransfer", {"vendorId": "com.example.nobody", "messageId": "x", "data": "y"})
    assert reply["status"] == "UnknownVendorId"
    reply = await b.call("DataTransfer", {"vendorId": "com.example.nobody"})
    assert reply["status"] == "UnknownVendorId"


# -- OCPP-J wire (2.0.1) -------------------------------------------------------------------


BAD_FRAMES = [
    ([2, "w1", "ClearCache", {"surprise": 1}], "FormatViolation"),
    ([2, "w2", "GetVariables", {}], "OccurrenceConstraintViolation"),
    ([2, "w3", "GetVariables", {"getVariableData": []}], "OccurrenceConstraintViolation"),
    ([2, "w4", "DataTransfer", {"vendorId": 5}], "TypeConstraintViolation"),
    ([2, "w5", "TriggerMessage", {"requestedMessage": "Bogus"}], "PropertyConstraintViolation"),
    ([2, "w6", "DataTransfer", {"vendorId": "x" * 300}], "PropertyConstraintViolation"),
    ([2, "w7", "NoSuchAction", {}], "NotImplemented"),
    ([2, "w8", "ClearCache"], "FormatViolation"),
    ([9, "w9", {}], "MessageTypeNotSupported"),
    # Part 4 4.3: NotSupported = "Requested Action is recognized but not supported by the
    # receiver"; NotImplemented (w7) = "Requested Action is not known by receiver".
    (
        [
            2,
            "w10",
            "SetDisplayMessage",
            {"message": {"id": 1, "priority": "NormalCycle", "message": {"format": "UTF8", "content": "hi"}}},
        ],
        "NotSupported",
    ),
    ([2, "w11", "CustomerInformation", {"requestId": 1, "report": True, "clear": False}], "NotSupported"),
    ([2, "w12", "CostUpdated", {"totalCost": 1.5, "transactionId": "tx1"}], "NotSupported"),
    ([2, "w13", "Heartbeat", {}], "NotSupported"),
]


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES, ids=[f"{f[1]}-{c}" for f, c in BAD_FRAMES])
@station(version="2.0.1")
async def test_strict_wire_call_error(b: Bench, frame: list[Any], code: str) -> None:
    unique_id = frame[1]
    await b.send_raw(json.dumps(frame))
    entry = await b.eventually(
        lambda: error_reply(b, unique_id), timeout=5, what=f"CALLERROR for {unique_id}"
    )
    assert isinstance(entry.payload, dict)
    assert entry.payload["code"] == code, entry.payload
    assert isinstance(entry.payload["description"], str)
    assert isinstance(entry.payload["details"], dict)
    await assert_link_intact(b)


@station(version="2.0.1")
async def test_strict_wire_not_json(b: Bench) -> None:
    mark = b.mark()
    await b.send_raw("not json")
    entry = await b.eventually(lambda: error_reply(b, "-1"), timeout=5, what="CALLERROR for a non-JSON frame")
    assert isinstance(entry.payload, dict)
    assert entry.payload["code"] == "FormatViolation"
    raw = [e for e in b.csms.timeline[mark:] if e.direction == "in" and e.kind == "raw"]
    assert raw == []
    await assert_link_intact(b)


@pytest.mark.parametrize("text", ['{"not": "an array"}', "[2]", '[2, 17, "Heartbeat", {}]'])
@station(version="2.0.1")
async def test_strict_wire_not_an_ocpp_frame(b: Bench, text: str) -> None:
    await b.send_raw(text)
    entry = await b.eventually(lambda: error_reply(b, "-1"), timeout=5, what="CALLERROR for a broken frame")
    assert isinstance(entry.payload, dict)
    assert entry.payload["code"] in ("FormatViolation", "RpcFrameworkError", "ProtocolError"), entry.payload
    await assert_link_intact(b)


@station(version="2.0.1")
async def test_strict_wire_unexpected_answers_ignored(b: Bench) -> None:
    mark = b.mark()
    await b.send_raw(json.dumps([3, "nobody-asked", {}]))
    await b.send_raw(json.dumps([4, "nobody-asked-either", "GenericError", "", {}]))
    await asyncio.sleep(0.5)
    assert [e for e in b.csms.timeline[mark:] if e.direction == "in"] == []
    await assert_link_intact(b)


@station(version="2.0.1")
async def test_strict_wire_every_station_frame_valid(b: Bench) -> None:
    assert await set_var(b, "SampledDataCtrlr", "TxUpdatedInterval", "1") == "Accepted"
    assert await set_var(b, "OCPPCommCtrlr", "HeartbeatInterval", "1") == "Accepted"
    start = await charge201(b)
    assert Z_TIME.match(start["timestamp"]), start["timestamp"]
    updated = await b.event("Updated", lambda p: p["triggerReason"] == "MeterValuePeriodic", timeout=5)
    assert Z_TIME.match(updated["timestamp"]) and Z_TIME.match(updated["meterValue"][0]["timestamp"])
    mark = b.mark()
    await b.call("GetBaseReport", {"requestId": 77, "reportBase": "FullInventory"})
    await report_parts(b, 77, mark)
    await b.call("TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 1}})
    await b.wait("MeterValues", after=mark, timeout=5)
    b.sim.unplug(1)
    ended = await b.event("Ended", after=mark)
    assert Z_TIME.match(ended["timestamp"])
    await b.wait("Heartbeat", after=mark, timeout=5)
    assert_station_frames_valid(b)
