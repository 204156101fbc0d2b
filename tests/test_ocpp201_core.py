"""OCPP 2.0.1 core end to end: the daemon as a subprocess on simulated hardware, against
the development CSMS on a real websocket.

Each test follows one OCA 2.0.1 compliance test case family: provisioning (B01-B03 boot,
heartbeat, B05 SetVariables, B06 GetVariables, B07/B08 reports, B09 network profile,
B11/B12 reset), F06 TriggerMessage, P01 DataTransfer, the OCPP-J wire rules of 2.0.1
(CALLERRORs for bad frames, every frame sent valid) and the choice of version with
``ocpp.version = "auto"``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from hil.csms import CallErrorReply, CsmsThread, Entry, describe
from hil.simrig import SimRig

# The fixtures `bench201` and `csms201` come from tests/conftest.py (tests.ocpp_harness).
from tests.ocpp_harness import ROOT, TOKEN, Bench, eventually, make_bench, write_config

PASSWORD = "S3cret-Basic-Auth-Pw42"  # 16..40 characters: a valid BasicAuthPassword
Z_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

# -- helpers -----------------------------------------------------------------------------


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


def index_of(
    bench: Bench, action: str, after: int = 0, where: Callable[[dict[str, Any]], bool] | None = None
) -> int:
    """Timeline index of the first matching CALL from the station at ``after`` or later (-1: none)."""
    for i, e in enumerate(bench.csms.timeline[after:], start=after):
        if (
            e.kind == "call"
            and e.direction == "in"
            and e.action == action
            and isinstance(e.payload, dict)
            and (where is None or where(e.payload))
        ):
            return i
    return -1


def quiet_for(bench: Bench, action: str, after: int, seconds: float) -> None:
    """Assert the station sends no ``action`` for ``seconds``."""
    time.sleep(seconds)
    assert since(bench, action, after) == [], f"unexpected {action}"


def component(name: str, evse: int | None = None, connector: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if evse is not None:
        out["evse"] = {"id": evse} if connector is None else {"id": evse, "connectorId": connector}
    return out


def variable(name: str, instance: str | None = None) -> dict[str, Any]:
    return {"name": name} if instance is None else {"name": name, "instance": instance}


def get_item(
    comp: str,
    var: str,
    attribute: str | None = None,
    evse: int | None = None,
    connector: int | None = None,
    instance: str | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "component": component(comp, evse, connector),
        "variable": variable(var, instance),
    }
    if attribute is not None:
        item["attributeType"] = attribute
    return item


def get_vars(bench: Bench, *items: dict[str, Any]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = bench.call("GetVariables", {"getVariableData": list(items)})[
        "getVariableResult"
    ]
    assert len(results) == len(items)
    return results


def get_value(bench: Bench, comp: str, var: str, **where: Any) -> str:
    result = get_vars(bench, get_item(comp, var, **where))[0]
    assert result["attributeStatus"] == "Accepted", result
    value: str = result["attributeValue"]
    return value


def set_vars(bench: Bench, *items: tuple[str, str, str]) -> list[dict[str, Any]]:
    """SetVariables of (component, variable, value) items; returns the results in order."""
    data = [
        {"component": {"name": c}, "variable": {"name": v}, "attributeValue": value} for c, v, value in items
    ]
    results: list[dict[str, Any]] = bench.call("SetVariables", {"setVariableData": data})["setVariableResult"]
    assert len(results) == len(items)
    return results


def set_var(bench: Bench, comp: str, var: str, value: str) -> str:
    status: str = set_vars(bench, (comp, var, value))[0]["attributeStatus"]
    return status


def reconnect_rig(bench: Bench) -> None:
    """After a reset the daemon re-executed itself: connect to its new rig socket."""
    if bench.rig is not None:
        bench.rig.close()
    bench.rig = SimRig.wait_for(bench.dir / "var" / "sim.sock")


def report_parts(bench: Bench, request_id: int, after: int, timeout: float = 15) -> list[dict[str, Any]]:
    """The NotifyReport parts of ``request_id``, once the last one (tbc false) has arrived."""
    bench.wait("NotifyReport", lambda p: p["requestId"] == request_id and not p.get("tbc"), timeout, after)
    return since(bench, "NotifyReport", after, lambda p: p["requestId"] == request_id)


def report_items(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for part in parts for item in part["reportData"]]


def item_name(item: dict[str, Any]) -> str:
    comp, var = item["component"], item["variable"]
    evse = comp.get("evse")
    where = f"[{evse['id']}{',' + str(evse['connectorId']) if 'connectorId' in evse else ''}]" if evse else ""
    inst = f":{var['instance']}" if "instance" in var else ""
    return f"{comp['name']}{where}.{var['name']}{inst}"


def charge201(bench: Bench, evse: int = 1) -> dict[str, Any]:
    """Plug in, swipe, charge until the contactor closes; returns the TransactionEvent Started."""
    mark = bench.mark()
    bench.sim().plug(evse)
    bench.sim().swipe(TOKEN)
    bench.sim().charge(evse, max_current_a=16)
    bench.sim().wait_until(lambda s: s["contactor_closed"], evse=evse, timeout=10)
    return bench.event("Started", lambda p: p["evse"]["id"] == evse, after=mark)


def error_reply(bench: Bench, unique_id: str) -> Entry | None:
    for entry in bench.csms.timeline:
        if entry.direction == "in" and entry.kind == "error" and entry.unique_id == unique_id:
            return entry
    return None


def csms_errors(bench: Bench) -> list[Entry]:
    """CALLERRORs the CSMS sent: its ``ocpp`` library answers a station CALL that breaks the schema so."""
    return [e for e in bench.csms.timeline if e.direction == "out" and e.kind == "error"]


def padded(payload: dict[str, Any], size: int) -> dict[str, Any]:
    """``payload`` with a customData member that makes its compact JSON exactly ``size`` bytes."""
    padded = {**payload, "customData": {"vendorId": "org.example.pad", "pad": ""}}
    short = size - len(json.dumps(padded, separators=(",", ":")))
    assert short >= 0
    padded["customData"]["pad"] = "x" * short
    return padded


def assert_link_intact(bench: Bench) -> None:
    """The connection survived: a triggered Heartbeat works and no reconnect happened."""
    mark = bench.mark()
    assert bench.call("TriggerMessage", {"requestedMessage": "Heartbeat"}) == {"status": "Accepted"}
    bench.wait("Heartbeat", after=mark, timeout=10)
    assert len(bench.calls("BootNotification")) == 1
    kinds = [e.kind for e in bench.csms.timeline]
    assert kinds.count("connect") == 1 and "disconnect" not in kinds
    assert bench.proc is not None and bench.proc.poll() is None


@cache
def _schema_validator(action: str, response: bool) -> jsonschema.Draft4Validator:
    name = f"{action}{'Response' if response else 'Request'}.json"
    text = resources.files("ocpp").joinpath("v201", "schemas", name).read_text(encoding="utf-8")
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("date-time")
    def _rfc3339(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
            return False
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return False
        return True

    return jsonschema.Draft4Validator(json.loads(text), format_checker=checker)


def assert_station_frames_valid(bench: Bench) -> None:
    """Every CALL and CALLRESULT the station sent validates against the OCA 2.0.1 schema,
    date-times included; and the CSMS's library refused none of the station's CALLs."""
    checked = 0
    for e in bench.csms.timeline:
        if e.direction != "in" or e.kind not in ("call", "result") or not isinstance(e.payload, dict):
            continue
        if not e.action:
            continue
        errors = list(_schema_validator(e.action, e.kind == "result").iter_errors(e.payload))
        assert errors == [], f"{e.action} ({e.kind}) breaks the schema: {errors[0].message}: {e.payload}"
        checked += 1
    assert checked > 0
    assert csms_errors(bench) == []


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def show_timeline_on_failure(csms201: CsmsThread, tmp_path: Path) -> Iterator[None]:
    """Print the CSMS timeline and the daemon log's tail; pytest shows them when a test fails."""
    yield
    print_timeline(csms201)
    log = tmp_path / "daemon.log"
    if log.exists():
        print("--- daemon.log (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-80:]))


@pytest.fixture
def benches() -> Iterator[list[Bench]]:
    """Benches a test starts itself; killed at the end."""
    made: list[Bench] = []
    yield made
    for b in made:
        if b.proc is not None and b.proc.poll() is None:
            b.kill()


@pytest.fixture
def servers() -> Iterator[Callable[..., CsmsThread]]:
    """Start extra CSMSs (``servers(versions=("1.6",))``); stopped at the end."""
    made: list[CsmsThread] = []

    def make(**kwargs: Any) -> CsmsThread:
        server = CsmsThread(quiet=True, **kwargs)
        server.start()
        made.append(server)
        return server

    yield make
    for server in made:
        print_timeline(server)
        server.stop()


def print_timeline(server: CsmsThread) -> None:
    print(f"--- CSMS {', '.join(server.csms.versions)}")
    print("\n".join(f"{e.t:10.3f} {describe(e)}" for e in server.timeline))


# -- B01-B03 boot --------------------------------------------------------------------------


def test_b01_cold_boot(tmp_path: Path, csms201: CsmsThread, benches: list[Bench]) -> None:
    csms201.csms.heartbeat_interval = 2
    b = make_bench(tmp_path, csms201, version="2.0.1")
    benches.append(b)
    b.start()
    connect = next(e for e in b.csms.timeline if e.kind == "connect")
    assert isinstance(connect.payload, dict)
    assert connect.payload["subprotocol"] == "ocpp2.0.1"
    assert connect.payload["path"].endswith("/CP001")
    boots = b.calls("BootNotification")
    assert len(boots) == 1
    boot = boots[0]
    assert boot["reason"] == "PowerUp"
    station = boot["chargingStation"]
    assert station["serialNumber"] == "SIM-0001"
    assert station["vendorName"] == "Generic"
    assert station["model"] == "PiCharger-Sim"
    assert isinstance(station.get("firmwareVersion"), str) and station["firmwareVersion"]
    status = b.status201(1, "Available")
    assert set(status) == {"timestamp", "connectorStatus", "evseId", "connectorId"}
    assert status["connectorId"] == 1
    assert Z_TIME.match(status["timestamp"]), status["timestamp"]
    # Nothing comes before the BootNotification; the StatusNotification comes after it.
    calls = [e for e in b.csms.timeline if e.kind == "call" and e.direction == "in"]
    assert calls[0].action == "BootNotification"
    assert [e.action for e in calls].index("StatusNotification") > 0
    # The interval of the answer is the heartbeat interval now.
    assert get_value(b, "OCPPCommCtrlr", "HeartbeatInterval") == "2"
    assert get_value(b, "ChargingStation", "SerialNumber") == "SIM-0001"
    assert_station_frames_valid(b)


def test_b01_heartbeat_at_interval_from_boot(
    tmp_path: Path, csms201: CsmsThread, benches: list[Bench]
) -> None:
    csms201.csms.heartbeat_interval = 1
    b = make_bench(tmp_path, csms201, version="2.0.1")
    benches.append(b)
    b.start()
    boot = csms201.wait_for("BootNotification", station="CP001")
    first = csms201.wait_for("Heartbeat", station="CP001", timeout=5)
    assert 0.7 <= first.t - boot.t <= 2.5, f"first Heartbeat {first.t - boot.t:.1f} s after boot"
    second = csms201.wait_for(
        "Heartbeat", station="CP001", timeout=5, after=csms201.timeline.index(first) + 1
    )
    assert 0.7 <= second.t - first.t <= 2.5, f"second Heartbeat {second.t - first.t:.1f} s after the first"
    assert first.payload == {}


def test_b05_heartbeat_interval_set_takes_effect_at_once(bench201: Bench) -> None:
    assert get_value(bench201, "OCPPCommCtrlr", "HeartbeatInterval") == "300"
    mark = bench201.mark()
    t0 = time.monotonic()
    assert set_var(bench201, "OCPPCommCtrlr", "HeartbeatInterval", "1") == "Accepted"
    bench201.wait("Heartbeat", after=mark, timeout=5)
    assert time.monotonic() - t0 < 3.0
    first = len(since(bench201, "Heartbeat", mark))
    time.sleep(2.6)
    assert len(since(bench201, "Heartbeat", mark)) >= first + 2
    assert get_value(bench201, "OCPPCommCtrlr", "HeartbeatInterval") == "1"


def test_b02_cold_boot_pending(tmp_path: Path, csms201: CsmsThread, benches: list[Bench]) -> None:
    csms201.csms.heartbeat_interval = 1
    csms201.set_boot_status("Pending")
    b = make_bench(tmp_path, csms201, version="2.0.1")
    benches.append(b)
    b.start(wait_boot=False)
    first = csms201.wait_for("BootNotification", station="CP001")
    second = csms201.wait_for("BootNotification", station="CP001", after=csms201.timeline.index(first) + 1)
    assert second.t - first.t >= 0.8, "retried before the interval the CSMS gave"
    # While Pending the CSMS may read and change the device model, and ask for a report.
    assert get_value(b, "ChargingStation", "SerialNumber") == "SIM-0001"
    assert set_var(b, "TxCtrlr", "EVConnectionTimeOut", "50") == "Accepted"
    mark = b.mark()
    assert b.call("GetBaseReport", {"requestId": 7, "reportBase": "SummaryInventory"}) == {
        "status": "Accepted"
    }
    assert report_items(report_parts(b, 7, mark))
    # No other request from the station while Pending.
    b.sim().plug(1)
    time.sleep(1.5)
    for action in ("StatusNotification", "Heartbeat", "TransactionEvent", "MeterValues", "NotifyEvent"):
        assert b.calls(action) == [], f"{action} sent while Pending"
    assert all(p["reason"] == "PowerUp" for p in b.calls("BootNotification"))
    mark = b.mark()
    csms201.set_boot_status("Accepted")
    b.wait("BootNotification", after=mark, timeout=5)
    b.status201(1, "Occupied", after=mark)
    assert get_value(b, "TxCtrlr", "EVConnectionTimeOut") == "50"
    # Once accepted the station stops sending BootNotifications.
    count = len(b.calls("BootNotification"))
    time.sleep(1.5)
    assert len(b.calls("BootNotification")) == count
    assert_station_frames_valid(b)


def test_b02_fr_05_request_start_stop_transaction_rejected_while_pending(
    tmp_path: Path, csms201: CsmsThread, benches: list[Bench]
) -> None:
    """B02.FR.05: while the BootNotification is Pending the station answers
    RequestStartTransaction and RequestStopTransaction with Rejected."""
    csms201.csms.heartbeat_interval = 1
    csms201.set_boot_status("Pending")
    b = make_bench(tmp_path, csms201, version="2.0.1")
    benches.append(b)
    b.start(wait_boot=False)
    b.wait("BootNotification")
    # A transaction the station opens on its own while Pending (plugging in starts one here).
    assert set_var(b, "TxCtrlr", "TxStartPoint", "EVConnected") == "Accepted"
    b.sim().plug(1)
    query = "SELECT DISTINCT transaction_id FROM outbox WHERE kind = 'event'"
    rows = eventually(lambda: b.db(query), what="a queued TransactionEvent")
    tx_id = rows[0][0]
    start = {"idToken": {"idToken": TOKEN, "type": "ISO14443"}, "remoteStartId": 5, "evseId": 1}
    assert b.call("RequestStartTransaction", start)["status"] == "Rejected"
    assert b.call("RequestStopTransaction", {"transactionId": tx_id})["status"] == "Rejected"
    mark = b.mark()
    csms201.set_boot_status("Accepted")
    b.wait("BootNotification", after=mark, timeout=5)
    b.event("Started", after=mark)
    # The refused start left nothing behind: the transaction is not a remote start.
    assert all("remoteStartId" not in e for e in since(b, "TransactionEvent", mark))
    assert b.call("RequestStopTransaction", {"transactionId": tx_id})["status"] == "Accepted"
    ended = b.event("Ended", after=mark)
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"
    assert_station_frames_valid(b)


def test_b02_trigger_boot_notification_while_pending(
    tmp_path: Path, csms201: CsmsThread, benches: list[Bench]
) -> None:
    csms201.csms.heartbeat_interval = 30  # long: only a triggered BootNotification comes soon
    csms201.set_boot_status("Pending")
    b = make_bench(tmp_path, csms201, version="2.0.1")
    benches.append(b)
    b.start(wait_boot=False)
    b.wait("BootNotification")
    csms201.set_boot_status("Accepted")
    mark = b.mark()
    assert b.call("TriggerMessage", {"requestedMessage": "BootNotification"}) == {"status": "Accepted"}
    boot = b.wait("BootNotification", after=mark, timeout=5)
    assert boot["reason"] == "Triggered"
    b.status201(1, "Available", after=mark, timeout=3)
    # Accepted now: one registration, no second boot loop going on.
    time.sleep(1.0)
    assert len(since(b, "BootNotification", mark)) == 1
    assert b.call("TriggerMessage", {"requestedMessage": "BootNotification"}) == {"status": "Rejected"}


def test_b02_pending_holds_back_queued_transaction_events(
    tmp_path: Path, csms201: CsmsThread, benches: list[Bench]
) -> None:
    b = make_bench(tmp_path, csms201, version="2.0.1")
    benches.append(b)
    b.start()
    start = charge201(b)
    tx_id = start["transactionInfo"]["transactionId"]
    b.kill()  # a power cut: the transaction is ended as PowerLoss at the next start
    csms201.csms.heartbeat_interval = 1
    csms201.set_boot_status("Pending")
    mark = b.mark()
    b.start(wait_boot=False)
    b.wait("BootNotification", after=mark)
    b.wait("BootNotification", after=b.mark())
    # Not even messages cached from before may go out while Pending.
    assert since(b, "TransactionEvent", mark) == []
    assert since(b, "StatusNotification", mark) == []
    accepted = b.mark()
    csms201.set_boot_status("Accepted")
    b.wait("BootNotification", after=accepted, timeout=5)
    ended = b.event("Ended", after=accepted)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert ended["transactionInfo"]["stoppedReason"] == "PowerLoss"
    events = csms201.transactions201[tx_id]["events"]
    assert [e["seqNo"] for e in events] == list(range(len(events)))  # no gap across the power cut
    assert index_of(b, "BootNotification", accepted) < index_of(b, "TransactionEvent", accepted)


def test_b03_cold_boot_rejected(tmp_path: Path, csms201: CsmsThread, benches: list[Bench]) -> None:
    csms201.csms.heartbeat_interval = 1
    csms201.set_boot_status("Rejected")
    b = make_bench(tmp_path, csms201, version="2.0.1")
    benches.append(b)
    b.start(wait_boot=False)
    first = csms201.wait_for("BootNotification", station="CP001")
    second = csms201.wait_for("BootNotification", station="CP001", after=csms201.timeline.index(first) + 1)
    assert second.t - first.t >= 0.8, "retried before the interval the CSMS gave"
    # Requests from the CSMS while Rejected are refused (no answer, or CALLERROR SecurityError).
    for action, payload in (
        ("GetVariables", {"getVariableData": [get_item("OCPPCommCtrlr", "HeartbeatInterval")]}),
        ("RequestStartTransaction", {"idToken": {"idToken": TOKEN, "type": "ISO14443"}, "remoteStartId": 1}),
    ):
        with pytest.raises((CallErrorReply, TimeoutError)) as refused:
            b.call(action, payload, timeout=2)
        if isinstance(refused.value, CallErrorReply):
            assert refused.value.code == "SecurityError", refused.value
    b.sim().plug(1)
    time.sleep(1.2)
    for action in ("StatusNotification", "Heartbeat", "TransactionEvent", "Authorize", "NotifyEvent"):
        assert b.calls(action) == [], f"{action} sent while Rejected"
    mark = b.mark()
    csms201.set_boot_status("Accepted")
    b.wait("BootNotification", after=mark, timeout=5)
    b.status201(1, "Occupied", after=mark)
    assert get_value(b, "OCPPCommCtrlr", "HeartbeatInterval") == "1"


# -- B06 GetVariables ----------------------------------------------------------------------


def test_b06_get_variables(bench201: Bench) -> None:
    results = get_vars(
        bench201,
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


def test_b06_get_variables_evse_and_connector_components(bench201: Bench) -> None:
    evse1, connector1, evse2, station, no_evse = get_vars(
        bench201,
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
    mark = bench201.mark()
    bench201.sim().plug(1)
    bench201.status201(1, "Occupied", after=mark)
    assert get_value(bench201, "EVSE", "AvailabilityState", evse=1) == "Occupied"


def test_b06_get_variables_more_than_items_per_message(bench201: Bench) -> None:
    limit = int(get_value(bench201, "DeviceDataCtrlr", "ItemsPerMessage", instance="GetVariables"))
    item = get_item("OCPPCommCtrlr", "HeartbeatInterval")
    assert len(get_vars(bench201, *([item] * limit))) == limit
    with pytest.raises(CallErrorReply) as error:
        bench201.call("GetVariables", {"getVariableData": [item] * (limit + 1)})
    assert error.value.code == "OccurrenceConstraintViolation"
    assert_link_intact(bench201)


def test_b06_fr_05_items_per_message_get_variables_reported_for_the_csms(bench201: Bench) -> None:
    """B06.FR.05 is the CSMS's duty: "The CSMS SHALL NOT send more GetVariableData elements in a
    GetVariablesRequest than reported by the Charging Station via ItemsPerMessageGetVariables"
    (OCTT TC_B_08_CSMS). The station's part: it reports the limit, and a CSMS that splits its
    list into requests of that many items gets every result."""
    mark = bench201.mark()
    assert bench201.call("GetBaseReport", {"requestId": 5, "reportBase": "FullInventory"}) == {
        "status": "Accepted"
    }
    reported = {item_name(i): i for i in report_items(report_parts(bench201, 5, mark))}
    item = reported["DeviceDataCtrlr.ItemsPerMessage:GetVariables"]
    (attribute,) = item["variableAttribute"]
    assert attribute["mutability"] == "ReadOnly"
    assert item["variableCharacteristics"]["dataType"] == "integer"
    limit = int(attribute["value"])
    assert limit == int(get_value(bench201, "DeviceDataCtrlr", "ItemsPerMessage", instance="GetVariables"))
    wanted = [{"component": i["component"], "variable": i["variable"]} for i in reported.values()]
    wanted = wanted[: 2 * limit + 1]
    assert len(wanted) == 2 * limit + 1
    results = [r for at in range(0, len(wanted), limit) for r in get_vars(bench201, *wanted[at : at + limit])]
    assert [(r["component"], r["variable"]) for r in results] == [
        (w["component"], w["variable"]) for w in wanted
    ]
    assert_link_intact(bench201)


def test_b06_fr_17_get_variables_longer_than_bytes_per_message_format_violation(bench201: Bench) -> None:
    """B06.FR.17: a GetVariablesRequest longer than BytesPerMessageGetVariables: the station MAY
    answer CALLERROR FormatViolation; it does. One of exactly that length is answered."""
    limit = int(get_value(bench201, "DeviceDataCtrlr", "BytesPerMessage", instance="GetVariables"))
    request = {"getVariableData": [get_item("OCPPCommCtrlr", "HeartbeatInterval")]}
    result = bench201.call("GetVariables", padded(request, limit))["getVariableResult"]
    assert [r["attributeStatus"] for r in result] == ["Accepted"]
    with pytest.raises(CallErrorReply) as error:
        bench201.call("GetVariables", padded(request, limit + 1))
    assert error.value.code == "FormatViolation"
    assert "BytesPerMessage" in error.value.description
    assert_link_intact(bench201)


# -- B05 SetVariables ----------------------------------------------------------------------


def test_b05_set_variables_accepted_and_persisted(bench201: Bench) -> None:
    results = set_vars(
        bench201,
        ("TxCtrlr", "EVConnectionTimeOut", "45"),
        ("SampledDataCtrlr", "TxUpdatedInterval", "7"),
        ("TxCtrlr", "TxStartPoint", "EVConnected,Authorized"),
        ("AuthCtrlr", "LocalPreAuthorize", "true"),
    )
    assert [r["attributeStatus"] for r in results] == ["Accepted"] * 4
    assert results[0]["component"] == {"name": "TxCtrlr"}
    assert results[0]["variable"] == {"name": "EVConnectionTimeOut"}
    assert get_value(bench201, "TxCtrlr", "EVConnectionTimeOut") == "45"
    assert bench201.stop() == 0
    mark = bench201.mark()
    bench201.start()
    assert since(bench201, "BootNotification", mark)[0]["reason"] == "PowerUp"
    assert get_value(bench201, "TxCtrlr", "EVConnectionTimeOut") == "45"
    assert get_value(bench201, "SampledDataCtrlr", "TxUpdatedInterval") == "7"
    assert get_value(bench201, "TxCtrlr", "TxStartPoint") == "EVConnected,Authorized"
    assert get_value(bench201, "AuthCtrlr", "LocalPreAuthorize") == "true"
    # The persisted TxStartPoint is in force: plugging in starts the transaction (EVConnected).
    mark = bench201.mark()
    bench201.sim().plug(1)
    started_event = bench201.event("Started", after=mark)
    assert started_event["triggerReason"] == "CablePluggedIn"


def test_b05_set_variables_read_only_rejected(bench201: Bench) -> None:
    results = set_vars(
        bench201,
        ("ChargingStation", "SerialNumber", "OTHER"),
        ("SecurityCtrlr", "SecurityProfile", "3"),
        ("DeviceDataCtrlr", "ValueSize", "10"),
    )
    assert [r["attributeStatus"] for r in results] == ["Rejected"] * 3
    assert get_value(bench201, "ChargingStation", "SerialNumber") == "SIM-0001"
    assert get_value(bench201, "SecurityCtrlr", "SecurityProfile") == "0"


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
def test_b05_set_variables_invalid_value_rejected(
    bench201: Bench, comp: str, var: str, value: str, before: str
) -> None:
    assert get_value(bench201, comp, var) == before
    result = set_vars(bench201, (comp, var, value))[0]
    assert result["attributeStatus"] == "Rejected", result
    assert get_value(bench201, comp, var) == before


def test_b05_set_variables_reboot_required_unknown_and_write_only(bench201: Bench) -> None:
    ping, no_component, no_variable, password, short_password = set_vars(
        bench201,
        ("OCPPCommCtrlr", "WebSocketPingInterval", "20"),
        ("NoSuchCtrlr", "HeartbeatInterval", "10"),
        ("OCPPCommCtrlr", "NoSuchVariable", "10"),
        ("SecurityCtrlr", "BasicAuthPassword", PASSWORD),
        ("SecurityCtrlr", "BasicAuthPassword", "short"),
    )
    assert ping["attributeStatus"] == "RebootRequired"
    assert get_value(bench201, "OCPPCommCtrlr", "WebSocketPingInterval") == "20"
    assert no_component["attributeStatus"] == "UnknownComponent"
    assert no_variable["attributeStatus"] == "UnknownVariable"
    assert password["attributeStatus"] == "Accepted"
    assert short_password["attributeStatus"] == "Rejected"
    read = get_vars(bench201, get_item("SecurityCtrlr", "BasicAuthPassword"))[0]
    assert read["attributeStatus"] == "Rejected" and "attributeValue" not in read
    # MaxSet is not an attribute HeartbeatInterval has.
    data = {
        "component": {"name": "OCPPCommCtrlr"},
        "variable": {"name": "HeartbeatInterval"},
        "attributeType": "MaxSet",
        "attributeValue": "10",
    }
    reply = bench201.call("SetVariables", {"setVariableData": [data]})["setVariableResult"][0]
    assert reply["attributeStatus"] == "NotSupportedAttributeType"
    assert get_value(bench201, "OCPPCommCtrlr", "HeartbeatInterval") == "300"
    assert_station_frames_valid(bench201)


def test_b05_set_variables_evse_level_and_items_per_message(bench201: Bench) -> None:
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
    own, other = bench201.call("SetVariables", {"setVariableData": data})["setVariableResult"]
    assert own["attributeStatus"] == "Rejected"
    assert own["component"] == {"name": "EVSE", "evse": {"id": 1}}
    assert other["attributeStatus"] == "UnknownComponent"
    assert get_value(bench201, "EVSE", "AvailabilityState", evse=1) == "Available"
    limit = int(get_value(bench201, "DeviceDataCtrlr", "ItemsPerMessage", instance="SetVariables"))
    item = {
        "component": {"name": "TxCtrlr"},
        "variable": {"name": "EVConnectionTimeOut"},
        "attributeValue": "44",
    }
    with pytest.raises(CallErrorReply) as error:
        bench201.call("SetVariables", {"setVariableData": [item] * (limit + 1)})
    assert error.value.code == "OccurrenceConstraintViolation"
    assert get_value(bench201, "TxCtrlr", "EVConnectionTimeOut") == "60"


# -- B07 GetBaseReport, B08 GetReport ------------------------------------------------------


def check_parts(bench: Bench, parts: list[dict[str, Any]], request_id: int) -> None:
    per_message = int(get_value(bench, "DeviceDataCtrlr", "ItemsPerMessage", instance="GetReport"))
    assert [p["seqNo"] for p in parts] == list(range(len(parts)))
    assert [bool(p.get("tbc")) for p in parts] == [True] * (len(parts) - 1) + [False]
    for part in parts:
        assert part["requestId"] == request_id
        assert 1 <= len(part["reportData"]) <= per_message
        assert Z_TIME.match(part["generatedAt"]), part["generatedAt"]


@pytest.mark.parametrize("base", ["FullInventory", "ConfigurationInventory", "SummaryInventory"])
def test_b07_get_base_report(bench201: Bench, base: str) -> None:
    assert set_var(bench201, "SecurityCtrlr", "BasicAuthPassword", PASSWORD) == "Accepted"
    mark = bench201.mark()
    assert bench201.call("GetBaseReport", {"requestId": 42, "reportBase": base}) == {"status": "Accepted"}
    parts = report_parts(bench201, 42, mark)
    check_parts(bench201, parts, 42)
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
    assert_station_frames_valid(bench201)


def test_b07_get_base_report_full_inventory_item_count_matches_get_report(bench201: Bench) -> None:
    mark = bench201.mark()
    assert (
        bench201.call("GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"})["status"]
        == "Accepted"
    )
    full = report_items(report_parts(bench201, 1, mark))
    mark = bench201.mark()
    filter_all = {"componentVariable": [{"component": {"name": "OCPPCommCtrlr"}}], "requestId": 2}
    assert bench201.call("GetReport", filter_all) == {"status": "Accepted"}
    comm = report_items(report_parts(bench201, 2, mark))
    assert {item_name(i) for i in comm} == {
        item_name(i) for i in full if i["component"]["name"] == "OCPPCommCtrlr"
    }


def test_b08_get_report_component_variable_filter(bench201: Bench) -> None:
    mark = bench201.mark()
    request = {
        "requestId": 3,
        "componentVariable": [{"component": {"name": "OCPPCommCtrlr"}}],
    }
    assert bench201.call("GetReport", request) == {"status": "Accepted"}
    parts = report_parts(bench201, 3, mark)
    check_parts(bench201, parts, 3)
    items = report_items(parts)
    assert {i["component"]["name"] for i in items} == {"OCPPCommCtrlr"}
    assert "OCPPCommCtrlr.HeartbeatInterval" in {item_name(i) for i in items}
    # One variable of one component, and an EVSE-level component.
    mark = bench201.mark()
    request = {
        "requestId": 4,
        "componentVariable": [
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
            {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityState"}},
        ],
    }
    assert bench201.call("GetReport", request) == {"status": "Accepted"}
    items = report_items(report_parts(bench201, 4, mark))
    assert sorted(item_name(i) for i in items) == [
        "EVSE[1].AvailabilityState",
        "OCPPCommCtrlr.HeartbeatInterval",
    ]


def test_b08_fr_17_get_report_more_than_items_per_message_occurrence_violation(bench201: Bench) -> None:
    """B08.FR.17: "Charging Station receives a GetReportRequest with more ComponentVariableType
    elements than allowed by ItemsPerMessageGetReport. The Charging Station MAY respond with a
    CALLERROR(OccurenceConstraintViolation)" (2.0.1 errata spelling: OccurrenceConstraintViolation).
    No NotifyReport follows; a request of exactly that many is answered."""
    limit = int(get_value(bench201, "DeviceDataCtrlr", "ItemsPerMessage", instance="GetReport"))
    wanted = [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]
    mark = bench201.mark()
    with pytest.raises(CallErrorReply) as error:
        bench201.call("GetReport", {"requestId": 17, "componentVariable": wanted * (limit + 1)})
    assert error.value.code == "OccurrenceConstraintViolation"
    assert "ItemsPerMessage" in error.value.description
    request = {"requestId": 18, "componentVariable": wanted * limit}
    assert bench201.call("GetReport", request) == {"status": "Accepted"}
    assert [item_name(i) for i in report_items(report_parts(bench201, 18, mark))] == [
        "OCPPCommCtrlr.HeartbeatInterval"
    ]
    assert not since(bench201, "NotifyReport", mark, lambda p: p["requestId"] == 17)
    assert_link_intact(bench201)


def test_b08_fr_18_get_report_longer_than_bytes_per_message_format_violation(bench201: Bench) -> None:
    """B08.FR.18: "Charging Station receives a GetReportRequest with a length of more bytes than
    allowed by BytesPerMessageGetReport. The Charging Station MAY respond with a
    CALLERROR(FormatViolation)". No NotifyReport follows; one of exactly that length is answered."""
    limit = int(get_value(bench201, "DeviceDataCtrlr", "BytesPerMessage", instance="GetReport"))
    wanted = [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]
    mark = bench201.mark()
    with pytest.raises(CallErrorReply) as error:
        bench201.call("GetReport", padded({"requestId": 19, "componentVariable": wanted}, limit + 1))
    assert error.value.code == "FormatViolation"
    assert "BytesPerMessage" in error.value.description
    request = padded({"requestId": 20, "componentVariable": wanted}, limit)
    assert bench201.call("GetReport", request) == {"status": "Accepted"}
    assert len(report_items(report_parts(bench201, 20, mark))) == 1
    assert not since(bench201, "NotifyReport", mark, lambda p: p["requestId"] == 19)
    assert_link_intact(bench201)


def test_b08_get_report_component_criteria(bench201: Bench) -> None:
    assert set_var(bench201, "AuthCacheCtrlr", "Enabled", "false") == "Accepted"
    mark = bench201.mark()
    request = {"requestId": 5, "componentCriteria": ["Enabled"]}
    assert bench201.call("GetReport", request) == {"status": "Accepted"}
    parts = report_parts(bench201, 5, mark)
    check_parts(bench201, parts, 5)
    items = report_items(parts)
    comps = {i["component"]["name"] for i in items}
    assert {"AuthCtrlr", "SampledDataCtrlr", "LocalAuthListCtrlr"} <= comps
    # A component whose Enabled is false does not meet the criterion.
    assert "AuthCacheCtrlr" not in comps
    # All variables of a component that meets it are reported, not only Enabled.
    assert "AuthCtrlr.LocalPreAuthorize" in {item_name(i) for i in items}
    # Criteria and a component filter together.
    mark = bench201.mark()
    request = {
        "requestId": 6,
        "componentCriteria": ["Enabled"],
        "componentVariable": [{"component": {"name": "AuthCtrlr"}, "variable": {"name": "Enabled"}}],
    }
    assert bench201.call("GetReport", request) == {"status": "Accepted"}
    items = report_items(report_parts(bench201, 6, mark))
    assert [item_name(i) for i in items] == ["AuthCtrlr.Enabled"]


def test_b08_get_report_problem_criteria_after_fault(bench201: Bench) -> None:
    mark = bench201.mark()
    bench201.sim().fault("meter_offline", evse=1)
    bench201.status201(1, "Faulted", after=mark, timeout=15)
    mark = bench201.mark()
    assert bench201.call("GetReport", {"requestId": 12, "componentCriteria": ["Problem"]}) == {
        "status": "Accepted"
    }
    items = report_items(report_parts(bench201, 12, mark))
    names = {item_name(i) for i in items}
    assert {"FiscalMetering[1].Problem", "ChargingStation.Problem"} <= names
    problem = next(i for i in items if item_name(i) == "FiscalMetering[1].Problem")
    assert problem["variableAttribute"][0]["value"] == "true"
    assert all(i["component"]["name"] != "OCPPCommCtrlr" for i in items)


def test_b08_get_report_empty_result_set(bench201: Bench) -> None:
    mark = bench201.mark()
    request = {"requestId": 9, "componentVariable": [{"component": {"name": "NoSuchComponent"}}]}
    assert bench201.call("GetReport", request) == {"status": "EmptyResultSet"}
    request = {
        "requestId": 10,
        "componentVariable": [
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NoSuchVariable"}}
        ],
    }
    assert bench201.call("GetReport", request) == {"status": "EmptyResultSet"}
    # Problem criteria: no component has a problem on an idle, healthy station.
    assert bench201.call("GetReport", {"requestId": 11, "componentCriteria": ["Problem"]}) == {
        "status": "EmptyResultSet"
    }
    quiet_for(bench201, "NotifyReport", mark, 0.5)


# -- B11/B12 reset -------------------------------------------------------------------------


def test_b11_reset_immediate_without_transaction(bench201: Bench) -> None:
    assert bench201.proc is not None
    pid = bench201.proc.pid
    mark = bench201.mark()
    assert bench201.call("Reset", {"type": "Immediate"}) == {"status": "Accepted"}
    boot = bench201.wait("BootNotification", after=mark, timeout=15)
    assert boot["reason"] == "RemoteReset"
    bench201.status201(1, "Available", after=mark)
    assert bench201.proc.poll() is None and bench201.proc.pid == pid  # re-executed in place
    assert any(e.kind == "disconnect" for e in bench201.csms.timeline[mark:])
    assert since(bench201, "TransactionEvent", mark) == []
    reconnect_rig(bench201)
    assert bench201.sim().wait_until(lambda s: s["ocpp_connected"], timeout=10)["transaction_id"] is None
    # A later power-up is a PowerUp again, not a RemoteReset.
    assert bench201.stop() == 0
    mark = bench201.mark()
    bench201.start()
    assert since(bench201, "BootNotification", mark)[0]["reason"] == "PowerUp"


def test_b11_reset_on_idle_without_transaction(bench201: Bench) -> None:
    mark = bench201.mark()
    assert bench201.call("Reset", {"type": "OnIdle"}) == {"status": "Accepted"}
    boot = bench201.wait("BootNotification", after=mark, timeout=15)
    assert boot["reason"] == "RemoteReset"
    reconnect_rig(bench201)


def test_b12_reset_on_idle_with_transaction_scheduled(bench201: Bench) -> None:
    start = charge201(bench201)
    tx_id = start["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    assert bench201.call("Reset", {"type": "OnIdle"}) == {"status": "Scheduled"}
    time.sleep(1.5)
    assert since(bench201, "BootNotification", mark) == []
    assert since(bench201, "TransactionEvent", mark, lambda p: p["eventType"] == "Ended") == []
    assert bench201.sim().status(1)["contactor_closed"]
    bench201.sim().unplug(1)
    ended = bench201.event("Ended", after=mark, timeout=15)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    boot = bench201.wait("BootNotification", after=mark, timeout=15)
    assert boot["reason"] == "RemoteReset"
    ended_at = index_of(bench201, "TransactionEvent", mark, lambda p: p["eventType"] == "Ended")
    boot_at = index_of(bench201, "BootNotification", mark)
    assert ended_at < boot_at, "the station reset before it delivered the Ended event"
    reconnect_rig(bench201)
    bench201.status201(1, "Available", after=mark)
    assert bench201.csms.transactions201[tx_id]["ended_count"] == 1


def reset_immediate_during_transaction(bench: Bench) -> tuple[str, int]:
    """Charge, then Reset Immediate; returns the transaction id and the timeline mark before the reset."""
    start = charge201(bench)
    tx_id: str = start["transactionInfo"]["transactionId"]
    mark = bench.mark()
    assert bench.call("Reset", {"type": "Immediate"}) == {"status": "Accepted"}
    ended = bench.event("Ended", after=mark, timeout=15)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert ended["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    assert ended["triggerReason"] == "ResetCommand"
    boot = bench.wait("BootNotification", after=mark, timeout=15)
    assert boot["reason"] == "RemoteReset"
    reconnect_rig(bench)
    bench.sim().wait_until(lambda s: s["ocpp_connected"], timeout=10)
    time.sleep(0.5)  # anything still queued is delivered now
    return tx_id, mark


def test_b12_reset_immediate_with_transaction(bench201: Bench) -> None:
    tx_id, _ = reset_immediate_during_transaction(bench201)
    tx = bench201.csms.transactions201[tx_id]
    assert [e["seqNo"] for e in tx["events"]] == list(range(len(tx["events"])))
    assert tx["ended"] is not None and tx["ended"]["seqNo"] == len(tx["events"]) - 1
    assert bench201.sim().status(1)["transaction_id"] is None


def test_b12_reset_immediate_with_transaction_ended_once_before_reboot(bench201: Bench) -> None:
    tx_id, mark = reset_immediate_during_transaction(bench201)
    ended_at = index_of(bench201, "TransactionEvent", mark, lambda p: p["eventType"] == "Ended")
    boot_at = index_of(bench201, "BootNotification", mark)
    assert ended_at < boot_at, "the Ended event came after the reboot"
    assert bench201.csms.transactions201[tx_id]["ended_count"] == 1, "the Ended event was sent twice"


def test_b11_reset_with_evse_id_rejected(bench201: Bench) -> None:
    mark = bench201.mark()
    assert bench201.call("Reset", {"type": "Immediate", "evseId": 1})["status"] == "Rejected"
    assert bench201.call("Reset", {"type": "OnIdle", "evseId": 1})["status"] == "Rejected"
    quiet_for(bench201, "BootNotification", mark, 1.0)
    assert bench201.csms.connected() == ["CP001"]


# -- B09 SetNetworkProfile -----------------------------------------------------------------


def network_profile(slot: int, security_profile: int, url: str = "ws://127.0.0.1:9/ocpp") -> dict[str, Any]:
    return {
        "configurationSlot": slot,
        "connectionData": {
            "ocppVersion": "OCPP20",
            "ocppTransport": "JSON",
            "ocppCsmsUrl": url,
            "messageTimeout": 30,
            "securityProfile": security_profile,
            "ocppInterface": "Wired0",
        },
    }


def test_b09_set_network_profile_accepted(bench201: Bench) -> None:
    assert bench201.call("SetNetworkProfile", network_profile(1, 0)) == {"status": "Accepted"}
    assert bench201.call("SetNetworkProfile", network_profile(2, 0)) == {"status": "Accepted"}
    # A05 prerequisites: profile 1 needs a Basic auth password, which this station has not.
    assert bench201.call("SetNetworkProfile", network_profile(3, 1))["status"] == "Rejected"
    # The active connection is not touched.
    assert_link_intact(bench201)


def test_b09_set_network_profile_lower_security_profile_rejected(
    tmp_path: Path, servers: Callable[..., CsmsThread], benches: list[Bench]
) -> None:
    server = servers(versions=("2.0.1",), passwords={"CP001": PASSWORD})
    b = make_bench(tmp_path, server, version="2.0.1")
    text = b.config.read_text().replace(
        "[ocpp]\n", f'[ocpp]\nsecurity_profile = 1\npassword = "{PASSWORD}"\n'
    )
    b.config.write_text(text)
    benches.append(b)
    b.start()
    assert get_value(b, "SecurityCtrlr", "SecurityProfile") == "1"
    assert b.call("SetNetworkProfile", network_profile(1, 0))["status"] == "Rejected"
    assert b.call("SetNetworkProfile", network_profile(1, 1))["status"] == "Accepted"


# -- F06 TriggerMessage --------------------------------------------------------------------

EVSE1 = {"id": 1, "connectorId": 1}


def test_f06_trigger_message_heartbeat(bench201: Bench) -> None:
    mark = bench201.mark()
    assert bench201.call("TriggerMessage", {"requestedMessage": "Heartbeat"}) == {"status": "Accepted"}
    assert bench201.wait("Heartbeat", after=mark, timeout=5) == {}


def test_f06_trigger_message_status_notification(bench201: Bench) -> None:
    mark = bench201.mark()
    reply = bench201.call("TriggerMessage", {"requestedMessage": "StatusNotification", "evse": EVSE1})
    assert reply == {"status": "Accepted"}
    sent = bench201.wait("StatusNotification", after=mark, timeout=5)
    assert sent["evseId"] == 1 and sent["connectorId"] == 1 and sent["connectorStatus"] == "Available"
    # An EVSE the station does not have.
    mark = bench201.mark()
    reply = bench201.call("TriggerMessage", {"requestedMessage": "StatusNotification", "evse": {"id": 2}})
    assert reply["status"] == "Rejected"
    quiet_for(bench201, "StatusNotification", mark, 0.5)


def test_f06_trigger_message_boot_notification_after_accepted_rejected(bench201: Bench) -> None:
    mark = bench201.mark()
    reply = bench201.call("TriggerMessage", {"requestedMessage": "BootNotification"})
    assert reply["status"] == "Rejected"
    quiet_for(bench201, "BootNotification", mark, 0.5)


def test_f06_trigger_message_meter_values(bench201: Bench) -> None:
    mark = bench201.mark()
    reply = bench201.call("TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 1}})
    assert reply == {"status": "Accepted"}
    sent = bench201.wait("MeterValues", after=mark, timeout=5)
    assert sent["evseId"] == 1
    sampled = sent["meterValue"][0]["sampledValue"]
    assert sampled and all(s.get("context") == "Trigger" for s in sampled)
    assert any(
        s.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"
        for s in sampled
    )


def test_f06_trigger_message_meter_values_aligned_measurands(bench201: Bench) -> None:
    assert set_var(bench201, "AlignedDataCtrlr", "Measurands", "Energy.Active.Import.Register,Voltage") == (
        "Accepted"
    )
    assert set_var(bench201, "SampledDataCtrlr", "TxUpdatedMeasurands", "Energy.Active.Import.Register") == (
        "Accepted"
    )
    mark = bench201.mark()
    reply = bench201.call("TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 1}})
    assert reply == {"status": "Accepted"}
    sent = bench201.wait("MeterValues", after=mark, timeout=5)
    measurands = {
        s.get("measurand", "Energy.Active.Import.Register") for s in sent["meterValue"][0]["sampledValue"]
    }
    assert measurands == {"Energy.Active.Import.Register", "Voltage"}


def test_f06_trigger_message_not_implemented(bench201: Bench) -> None:
    for message in ("SignV2GCertificate", "SignCombinedCertificate", "PublishFirmwareStatusNotification"):
        reply = bench201.call("TriggerMessage", {"requestedMessage": message})
        assert reply["status"] == "NotImplemented", message


def test_f06_trigger_message_transaction_event(bench201: Bench) -> None:
    mark = bench201.mark()
    reply = bench201.call("TriggerMessage", {"requestedMessage": "TransactionEvent", "evse": EVSE1})
    assert reply["status"] == "Rejected"
    reply = bench201.call("TriggerMessage", {"requestedMessage": "TransactionEvent"})
    assert reply["status"] == "Rejected"
    quiet_for(bench201, "TransactionEvent", mark, 0.5)
    start = charge201(bench201)
    mark = bench201.mark()
    reply = bench201.call("TriggerMessage", {"requestedMessage": "TransactionEvent", "evse": EVSE1})
    assert reply == {"status": "Accepted"}
    updated = bench201.event("Updated", lambda p: p["triggerReason"] == "Trigger", after=mark, timeout=5)
    assert updated["transactionInfo"]["transactionId"] == start["transactionInfo"]["transactionId"]
    assert updated["seqNo"] > start["seqNo"]


# -- P01 DataTransfer ----------------------------------------------------------------------


def test_p01_data_transfer_unknown_vendor(bench201: Bench) -> None:
    reply = bench201.call("DataTransfer", {"vendorId": "com.example.nobody", "messageId": "x", "data": "y"})
    assert reply["status"] == "UnknownVendorId"
    reply = bench201.call("DataTransfer", {"vendorId": "com.example.nobody"})
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
def test_strict_wire_call_error(bench201: Bench, frame: list[Any], code: str) -> None:
    unique_id = frame[1]
    bench201.csms.send_raw("CP001", json.dumps(frame))
    entry = eventually(lambda: error_reply(bench201, unique_id), timeout=5, what=f"CALLERROR for {unique_id}")
    assert isinstance(entry.payload, dict)
    assert entry.payload["code"] == code, entry.payload
    assert isinstance(entry.payload["description"], str)
    assert isinstance(entry.payload["details"], dict)
    assert_link_intact(bench201)


def test_strict_wire_not_json(bench201: Bench) -> None:
    mark = bench201.mark()
    bench201.csms.send_raw("CP001", "not json")
    entry = eventually(lambda: error_reply(bench201, "-1"), timeout=5, what="CALLERROR for a non-JSON frame")
    assert isinstance(entry.payload, dict)
    assert entry.payload["code"] == "FormatViolation"
    raw = [e for e in bench201.csms.timeline[mark:] if e.direction == "in" and e.kind == "raw"]
    assert raw == []
    assert_link_intact(bench201)


@pytest.mark.parametrize("text", ['{"not": "an array"}', "[2]", '[2, 17, "Heartbeat", {}]'])
def test_strict_wire_not_an_ocpp_frame(bench201: Bench, text: str) -> None:
    bench201.csms.send_raw("CP001", text)
    entry = eventually(lambda: error_reply(bench201, "-1"), timeout=5, what="CALLERROR for a broken frame")
    assert isinstance(entry.payload, dict)
    assert entry.payload["code"] in ("FormatViolation", "RpcFrameworkError", "ProtocolError"), entry.payload
    assert_link_intact(bench201)


def test_strict_wire_unexpected_answers_ignored(bench201: Bench) -> None:
    mark = bench201.mark()
    bench201.csms.send_raw("CP001", json.dumps([3, "nobody-asked", {}]))
    bench201.csms.send_raw("CP001", json.dumps([4, "nobody-asked-either", "GenericError", "", {}]))
    time.sleep(0.5)
    assert [e for e in bench201.csms.timeline[mark:] if e.direction == "in"] == []
    assert_link_intact(bench201)


def test_strict_wire_every_station_frame_valid(bench201: Bench) -> None:
    assert set_var(bench201, "SampledDataCtrlr", "TxUpdatedInterval", "1") == "Accepted"
    assert set_var(bench201, "OCPPCommCtrlr", "HeartbeatInterval", "1") == "Accepted"
    start = charge201(bench201)
    assert Z_TIME.match(start["timestamp"]), start["timestamp"]
    updated = bench201.event("Updated", lambda p: p["triggerReason"] == "MeterValuePeriodic", timeout=5)
    assert Z_TIME.match(updated["timestamp"]) and Z_TIME.match(updated["meterValue"][0]["timestamp"])
    mark = bench201.mark()
    bench201.call("GetBaseReport", {"requestId": 77, "reportBase": "FullInventory"})
    report_parts(bench201, 77, mark)
    bench201.call("TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 1}})
    bench201.wait("MeterValues", after=mark, timeout=5)
    bench201.sim().unplug(1)
    ended = bench201.event("Ended", after=mark)
    assert Z_TIME.match(ended["timestamp"])
    bench201.wait("Heartbeat", after=mark, timeout=5)
    assert_station_frames_valid(bench201)


# -- version choice ------------------------------------------------------------------------


def cli_status(bench: Bench) -> dict[str, Any]:
    """``evse status --json`` of the running daemon."""
    result = subprocess.run(
        [sys.executable, "-m", "controller", "status", "--json", "--config", str(bench.config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    reply: dict[str, Any] = json.loads(result.stdout)
    return reply


def test_version_auto_against_ocpp16_only_csms(
    tmp_path: Path, servers: Callable[..., CsmsThread], benches: list[Bench]
) -> None:
    server = servers(versions=("1.6",))
    b = make_bench(tmp_path, server, version="auto")
    benches.append(b)
    b.start()
    connect = next(e for e in server.timeline if e.kind == "connect")
    assert isinstance(connect.payload, dict) and connect.payload["subprotocol"] == "ocpp1.6"
    boot = b.calls("BootNotification")[0]
    assert boot["chargePointSerialNumber"] == "SIM-0001" and "chargingStation" not in boot
    b.status(1, "Available")
    start = b.charge()
    assert start["idTag"] == TOKEN
    b.status(1, "Charging")
    assert b.sim().status(1)["connector_status"] == "Charging"
    status = cli_status(b)
    assert status["evses"][0]["connector_status"] == "Charging"
    assert status["ocpp"]["version"] == "1.6" and status["ocpp"]["connected"] is True
    mark = b.mark()
    b.sim().unplug(1)
    stop = b.wait("StopTransaction", after=mark)
    assert stop["reason"] == "EVDisconnected"
    assert b.calls("TransactionEvent") == []
    assert [e for e in server.timeline if e.direction == "out" and e.kind == "error"] == []


def test_version_auto_against_ocpp201_only_csms(
    tmp_path: Path, csms201: CsmsThread, benches: list[Bench]
) -> None:
    b = make_bench(tmp_path, csms201, version="auto")
    benches.append(b)
    b.start()
    connect = next(e for e in csms201.timeline if e.kind == "connect")
    assert isinstance(connect.payload, dict) and connect.payload["subprotocol"] == "ocpp2.0.1"
    boot = b.calls("BootNotification")[0]
    assert boot["reason"] == "PowerUp" and boot["chargingStation"]["serialNumber"] == "SIM-0001"
    b.status201(1, "Available")
    start = charge201(b)
    assert start["idToken"] == {"idToken": TOKEN, "type": "ISO14443"}
    assert b.sim().status(1)["connector_status"] == "Occupied"
    status = cli_status(b)
    assert status["evses"][0]["connector_status"] == "Occupied"
    assert status["ocpp"]["version"] == "2.0.1" and status["ocpp"]["connected"] is True
    mark = b.mark()
    b.sim().unplug(1)
    ended = b.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == start["transactionInfo"]["transactionId"]
    assert b.calls("StartTransaction") == []
    assert_station_frames_valid(b)


def test_version_auto_switches_from_ocpp16_to_ocpp201_csms(
    tmp_path: Path, servers: Callable[..., CsmsThread], csms201: CsmsThread, benches: list[Bench]
) -> None:
    old = servers(versions=("1.6",))
    b = make_bench(tmp_path, old, version="auto")
    benches.append(b)
    b.start()
    assert "chargePointVendor" in b.calls("BootNotification")[0]
    assert b.stop() == 0
    # The same station, its CSMS replaced by one that speaks 2.0.1 only.
    write_config(b.config, csms201.url, version="auto")
    b.csms = csms201
    b.start()
    boot = b.calls("BootNotification")[0]
    assert boot["reason"] == "PowerUp" and "chargingStation" in boot
    start = charge201(b)
    assert b.sim().status(1)["connector_status"] == "Occupied"
    mark = b.mark()
    b.sim().unplug(1)
    ended = b.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == start["transactionInfo"]["transactionId"]
    assert_station_frames_valid(b)


def test_version_auto_switches_from_ocpp201_to_ocpp16_csms(
    tmp_path: Path, servers: Callable[..., CsmsThread], csms201: CsmsThread, benches: list[Bench]
) -> None:
    b = make_bench(tmp_path, csms201, version="auto")
    benches.append(b)
    b.start()
    assert "chargingStation" in b.calls("BootNotification")[0]
    assert b.stop() == 0
    new = servers(versions=("1.6",))
    write_config(b.config, new.url, version="auto")
    b.csms = new
    b.start()
    boot = b.calls("BootNotification")[0]
    assert boot["chargePointSerialNumber"] == "SIM-0001"
    b.status(1, "Available")
    b.charge()
    b.status(1, "Charging")
    assert b.sim().status(1)["connector_status"] == "Charging"
    mark = b.mark()
    b.sim().unplug(1)
    assert b.wait("StopTransaction", after=mark)["reason"] == "EVDisconnected"
    assert [e for e in new.timeline if e.direction == "out" and e.kind == "error"] == []
