"""The OCPP 2.0.1 device model: the table, GetVariables, SetVariables, reports, persistence."""

from __future__ import annotations

import dataclasses
import json
from enum import StrEnum
from importlib import resources
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft4Validator, FormatChecker
from ocpp.v201 import enums  # type: ignore[import-untyped]

from controller.ocpp.ocppj import is_datetime
from controller.ocpp.v201.device_model import (
    FAULT_VARIABLES,
    MEASURANDS,
    DeviceModel,
    EvseInfo,
    Invalid,
    StationInfo,
    VariableDef,
    definitions,
    normalize,
    storage_key,
)
from controller.safety.supervisor import Fault

STATION = StationInfo("Acme", "Pi-EVSE", "SN-1", "1.2.3", 2)
EVSES = {1: EvseInfo(32.0, 3, True), 2: EvseInfo(16.0, 1, False)}
_FORMATS = FormatChecker(formats=())
_FORMATS.checks("date-time")(is_datetime)


def validator(name: str) -> Draft4Validator:
    path = resources.files("ocpp").joinpath("v201", "schemas", f"{name}.json")
    return Draft4Validator(json.loads(path.read_text(encoding="utf-8")), format_checker=_FORMATS)


def assert_valid(name: str, payload: dict[str, Any]) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator(name).iter_errors(payload)]
    assert not errors, errors


def assert_results(get: list[dict[str, Any]] = [], set_: list[dict[str, Any]] = []) -> None:  # noqa: B006
    if get:
        assert_valid("GetVariablesResponse", {"getVariableResult": get})
    if set_:
        assert_valid("SetVariablesResponse", {"setVariableResult": set_})


def assert_report(items: list[dict[str, Any]]) -> None:
    payload = {"requestId": 1, "generatedAt": "2026-01-01T00:00:00Z", "seqNo": 0, "reportData": items}
    assert_valid("NotifyReportRequest", payload)


Saved = dict[str, str]


def _writable_decimal() -> list[VariableDef]:
    """The station's table with its one decimal variable made writable, to test decimals by."""
    return [
        dataclasses.replace(d, mutability="ReadWrite") if d.variable == "LimitChangeSignificance" else d
        for d in definitions(EVSES, STATION)
    ]


def make(stored: Saved | None = None, defs: list[VariableDef] | None = None) -> tuple[DeviceModel, Saved]:
    saved: Saved = dict(stored or {})
    model = DeviceModel(defs if defs is not None else definitions(EVSES, STATION), saved, saved.__setitem__)
    return model, saved


def request(
    component: str,
    variable: str,
    *,
    evse: int | None = None,
    connector: int | None = None,
    instance: str | None = None,
    component_instance: str | None = None,
    attribute: str | None = None,
    value: str | None = None,
) -> dict[str, Any]:
    comp: dict[str, Any] = {"name": component}
    if component_instance is not None:
        comp["instance"] = component_instance
    if evse is not None:
        comp["evse"] = {"id": evse} if connector is None else {"id": evse, "connectorId": connector}
    var: dict[str, Any] = {"name": variable}
    if instance is not None:
        var["instance"] = instance
    out: dict[str, Any] = {"component": comp, "variable": var}
    if attribute is not None:
        out["attributeType"] = attribute
    if value is not None:
        out["attributeValue"] = value
    return out


def status_of(model: DeviceModel, req: dict[str, Any]) -> str:
    """The status of a GetVariables (no attributeValue) or SetVariables request."""
    if "attributeValue" in req:
        result = model.set(req)[0]
        assert_results(set_=[result])
    else:
        result = model.get(req)
        assert_results(get=[result])
    return str(result["attributeStatus"])


# -- the table --------------------------------------------------------------------------


def _names(suffix: str) -> set[str]:
    return {
        member.value
        for name, kind in vars(enums).items()
        if name.endswith(suffix) and isinstance(kind, type) and issubclass(kind, StrEnum)
        for member in kind
    }


def test_every_name_is_standardized() -> None:
    components = {c.value for c in enums.ControllerComponentName} | {
        c.value for c in enums.PhysicalComponentName
    }
    variables = _names("VariableName")
    for d in definitions(EVSES, STATION):
        assert d.component in components, d
        assert d.variable in variables, d


def test_table_is_consistent() -> None:
    defs = definitions(EVSES, STATION)
    assert len({d.key for d in defs}) == len(defs)
    for d in defs:
        assert d.mutability in ("ReadOnly", "ReadWrite", "WriteOnly")
        assert not (d.live and d.mutability != "ReadOnly")
        if d.default and d.mutability != "WriteOnly":
            assert normalize(d, d.default) == d.default, d
        assert (d.evse is None) == (d.component not in ("EVSE", "Connector", *dict(FAULT_VARIABLES.values())))


def test_table_follows_the_brief() -> None:
    model, _ = make()
    tx = model.find("TxCtrlr", "TxStartPoint")
    assert tx is not None
    assert tx.values_list == ("EVConnected", "Authorized", "PowerPathClosed", "EnergyTransfer")
    assert model.items("TxCtrlr", "TxStartPoint") == ["PowerPathClosed"]
    assert model.items("TxCtrlr", "TxStopPoint") == ["EVConnected", "Authorized"]
    assert model.value("OCPPCommCtrlr", "MessageTimeout", variable_instance="Default") == "30"
    assert model.number("OCPPCommCtrlr", "MessageAttempts", variable_instance="TransactionEvent") == 3
    assert model.number("OCPPCommCtrlr", "HeartbeatInterval") == 300
    assert model.number("SecurityCtrlr", "SecurityProfile") == 2
    assert model.number("DeviceDataCtrlr", "ItemsPerMessage", variable_instance="GetReport") == 10
    assert model.items("SampledDataCtrlr", "TxUpdatedMeasurands") == [MEASURANDS[0]]
    assert model.value("ChargingStation", "VendorName") == "Acme"
    power = model.find("EVSE", "Power", evse=1)
    assert power is not None and power.max_limit == 32 * 230 * 3 and power.unit == "W" and power.live
    assert model.value("Connector", "ConnectorType", evse=1, connector=1) == "sType2"
    assert model.value("Connector", "ConnectorType", evse=2, connector=1) == "cType2"
    assert model.number("EVSE", "SupplyPhases", evse=2) == 1
    assert model.find("ConnectorPlugRetentionLock", "Problem", evse=1) is not None
    assert model.find("ConnectorPlugRetentionLock", "Problem", evse=2) is None
    ping = model.find("OCPPCommCtrlr", "WebSocketPingInterval")
    assert ping is not None and ping.reboot
    password = model.find("SecurityCtrlr", "BasicAuthPassword")
    assert password is not None and password.mutability == "WriteOnly"


def test_every_fault_has_a_variable_on_each_evse() -> None:
    model, _ = make()
    assert set(FAULT_VARIABLES) == {f.value for f in Fault}
    for fault, (component, variable) in FAULT_VARIABLES.items():
        d = model.find(component, variable, evse=1)
        assert d is not None and d.live and d.data_type == "boolean", fault
        if fault != "connector_lock":
            assert model.find(component, variable, evse=2) is not None


def test_a_variable_defined_twice_is_an_error() -> None:
    d = VariableDef("AuthCtrlr", "Enabled", "boolean", "true")
    with pytest.raises(ValueError, match="twice"):
        make(defs=[d, d])


def test_storage_keys_are_stable() -> None:
    assert storage_key(("OCPPCommCtrlr", None, None, None, "HeartbeatInterval", None)) == (
        "OCPPCommCtrlr/HeartbeatInterval/Actual"
    )
    assert storage_key(("OCPPCommCtrlr", None, None, None, "MessageTimeout", "Default")) == (
        "OCPPCommCtrlr/MessageTimeout[Default]/Actual"
    )
    assert (
        storage_key(("Connector", "x", 1, 2, "Available", None), "MaxSet")
        == "Connector[x]@1.2/Available/MaxSet"
    )


# -- reading ----------------------------------------------------------------------------


def test_typed_accessors() -> None:
    model, _ = make()
    assert model.flag("AuthCtrlr", "LocalAuthorizeOffline") is True
    assert model.flag("AuthCtrlr", "AuthorizeRemoteStart") is False
    number = model.number("OCPPCommCtrlr", "OfflineThreshold")
    assert number == 60 and isinstance(number, int)
    decimal = model.number("SmartChargingCtrlr", "LimitChangeSignificance")
    assert decimal == 10.0 and isinstance(decimal, float)
    assert model.items("SmartChargingCtrlr", "RateUnit") == ["A", "W"]
    assert model.value("authctrlr", "ENABLED") == "true"  # names are case-insensitive
    for call in (model.value, model.flag, model.number, model.items):
        with pytest.raises(KeyError):
            call("AuthCtrlr", "Nope")


def test_live_values_come_from_the_registered_getter() -> None:
    model, saved = make()
    d = model.find("EVSE", "Power", evse=1)
    assert d is not None
    assert model.actual(d.key) == "0"
    model.set_actual(d.key, "5")
    assert model.actual(d.key) == "5" and not saved  # live values are not persisted
    model.live(d.key, lambda: "7200.5")
    assert model.number("EVSE", "Power", evse=1) == 7200.5
    assert model.get(request("EVSE", "Power", evse=1))["attributeValue"] == "7200.5"
    with pytest.raises(KeyError):
        model.live(("Nope", None, None, None, "X", None), lambda: "")


def test_set_actual_persists_configuration() -> None:
    model, saved = make()
    key = ("OCPPCommCtrlr", None, None, None, "HeartbeatInterval", None)
    model.set_actual(key, "900")
    assert model.number("OCPPCommCtrlr", "HeartbeatInterval") == 900
    assert saved == {"OCPPCommCtrlr/HeartbeatInterval/Actual": "900"}
    model.set_actual(("ChargingStation", None, None, None, "Model", None), "X")  # ReadOnly: memory only
    assert model.value("ChargingStation", "Model") == "X" and len(saved) == 1


# -- GetVariables (B06) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("req", "status"),
    [
        (request("OCPPCommCtrlr", "HeartbeatInterval"), "Accepted"),
        (request("ocppcommctrlr", "heartbeatinterval"), "Accepted"),
        (request("OCPPCommCtrlr", "MessageTimeout", instance="Default"), "Accepted"),
        (request("OCPPCommCtrlr", "MessageTimeout"), "UnknownVariable"),
        (request("OCPPCommCtrlr", "MessageTimeout", instance="Other"), "UnknownVariable"),
        (request("OCPPCommCtrlr", "Nope"), "UnknownVariable"),
        (request("NopeCtrlr", "HeartbeatInterval"), "UnknownComponent"),
        (request("OCPPCommCtrlr", "HeartbeatInterval", component_instance="x"), "UnknownComponent"),
        (request("OCPPCommCtrlr", "HeartbeatInterval", evse=1), "UnknownComponent"),
        (request("EVSE", "Power"), "UnknownComponent"),  # EVSE-level without evse
        (request("EVSE", "Power", evse=1), "Accepted"),
        (request("EVSE", "Power", evse=3), "UnknownComponent"),
        (request("EVSE", "Power", evse=1, connector=1), "UnknownComponent"),
        (request("Connector", "ConnectorType", evse=1), "UnknownComponent"),
        (request("Connector", "ConnectorType", evse=1, connector=1), "Accepted"),
        (request("Connector", "ConnectorType", evse=1, connector=2), "UnknownComponent"),
        (request("ConnectorPlugRetentionLock", "Problem", evse=2), "UnknownComponent"),
        (request("OCPPCommCtrlr", "HeartbeatInterval", attribute="Actual"), "Accepted"),
        (request("OCPPCommCtrlr", "HeartbeatInterval", attribute="Target"), "NotSupportedAttributeType"),
        (request("OCPPCommCtrlr", "HeartbeatInterval", attribute="MaxSet"), "NotSupportedAttributeType"),
        (request("SecurityCtrlr", "BasicAuthPassword"), "Rejected"),
    ],
)
def test_get_statuses(req: dict[str, Any], status: str) -> None:
    model, _ = make()
    assert status_of(model, req) == status


def test_get_echoes_the_request() -> None:
    model, _ = make()
    asked = request("EVSE", "Power", evse=1, attribute="Actual")
    result = model.get(asked)
    assert result == {**asked, "attributeStatus": "Accepted", "attributeValue": "0"}
    bare = model.get(request("OCPPCommCtrlr", "HeartbeatInterval"))
    assert "attributeType" not in bare and bare["attributeValue"] == "300"
    unknown = model.get(request("Nope", "X", attribute="Target"))
    assert unknown == {**request("Nope", "X", attribute="Target"), "attributeStatus": "UnknownComponent"}


def test_write_only_never_leaks() -> None:
    model, _ = make()
    secret = "s3cret-password-123"
    result, _ = model.set(request("SecurityCtrlr", "BasicAuthPassword", value=secret))
    assert result["attributeStatus"] == "Accepted"
    got = model.get(request("SecurityCtrlr", "BasicAuthPassword"))
    assert got["attributeStatus"] == "Rejected" and "attributeValue" not in got
    assert got["attributeStatusInfo"]["reasonCode"] == "WriteOnly"
    for base in ("FullInventory", "ConfigurationInventory", "SummaryInventory"):
        assert secret not in json.dumps(model.report(base))
    assert model.value("SecurityCtrlr", "BasicAuthPassword") == secret  # the station itself may read it
    assert_results(get=[got])


def test_get_truncates_to_the_reporting_value_size() -> None:
    model, _ = make()
    d = model.find("SecurityCtrlr", "Identity")
    assert d is not None
    model.live(d.key, lambda: "x" * 3000)
    result = model.get(request("SecurityCtrlr", "Identity"))
    assert len(result["attributeValue"]) == 1000
    assert_results(get=[result])
    assert (
        len(
            model.report(component_variables=[request("SecurityCtrlr", "Identity")])[0]["variableAttribute"][
                0
            ]["value"]
        )
        == 1000
    )


def test_other_attribute_types() -> None:
    defs = [VariableDef("EVSE", "Power", "decimal", "0", evse=1, max_limit=100, extra=(("MaxSet", "32"),))]
    model, saved = make(defs=defs)
    got = model.get(request("EVSE", "Power", evse=1, attribute="MaxSet"))
    assert got["attributeValue"] == "32" and got["attributeType"] == "MaxSet"
    result, d = model.set(request("EVSE", "Power", evse=1, attribute="MaxSet", value="50"))
    assert result["attributeStatus"] == "Accepted" and d is defs[0]
    assert saved == {"EVSE@1/Power/MaxSet": "50"}
    assert model.value("EVSE", "Power", evse=1) == "0"
    assert status_of(model, request("EVSE", "Power", evse=1, attribute="MinSet", value="1")) == (
        "NotSupportedAttributeType"
    )
    report = model.report()
    assert [a["type"] for a in report[0]["variableAttribute"]] == ["Actual", "MaxSet"]
    assert_report(report)
    again, _ = make(saved, defs)
    assert again.actual(defs[0].key, "MaxSet") == "50"


# -- SetVariables (B05) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("component", "variable", "instance", "value", "stored"),
    [
        ("OCPPCommCtrlr", "HeartbeatInterval", None, "600", "600"),
        ("OCPPCommCtrlr", "HeartbeatInterval", None, " +0060 ", "60"),
        ("OCPPCommCtrlr", "MessageTimeout", "Default", "45", "45"),
        ("AuthCtrlr", "AuthorizeRemoteStart", None, "TRUE", "true"),
        ("AuthCtrlr", "LocalPreAuthorize", None, "False", "false"),
        ("SmartChargingCtrlr", "LimitChangeSignificance", None, "12.5", "12.5"),
        ("TxCtrlr", "TxStartPoint", None, "EVConnected, Authorized", "EVConnected,Authorized"),
        ("TxCtrlr", "TxStopPoint", None, "EnergyTransfer", "EnergyTransfer"),
        ("SampledDataCtrlr", "TxUpdatedMeasurands", None, "Voltage,Current.Import", "Voltage,Current.Import"),
        ("AlignedDataCtrlr", "Measurands", None, "", ""),  # no aligned measurands
        ("OCPPCommCtrlr", "NetworkConfigurationPriority", None, "1,0", "1,0"),
        ("SecurityCtrlr", "OrganizationName", None, "Example Org", "Example Org"),
        ("SecurityCtrlr", "BasicAuthPassword", None, "0123456789abcdef", "0123456789abcdef"),
    ],
)
def test_set_accepts_and_normalizes(
    component: str, variable: str, instance: str | None, value: str, stored: str
) -> None:
    model, saved = make(defs=_writable_decimal())
    result, d = model.set(request(component, variable, instance=instance, value=value))
    assert result["attributeStatus"] == "Accepted", result
    assert "attributeStatusInfo" not in result
    assert d is not None and d.variable == variable
    assert model.value(component, variable, variable_instance=instance) == stored
    assert saved == {storage_key(d.key): stored}
    assert_results(set_=[result])


@pytest.mark.parametrize(
    ("component", "variable", "value", "reason"),
    [
        ("OCPPCommCtrlr", "HeartbeatInterval", "abc", "InvalidValue"),
        ("OCPPCommCtrlr", "HeartbeatInterval", "60.5", "InvalidValue"),
        ("OCPPCommCtrlr", "HeartbeatInterval", "0", "ValueTooLow"),
        ("OCPPCommCtrlr", "HeartbeatInterval", "86401", "ValueTooHigh"),
        ("OCPPCommCtrlr", "HeartbeatInterval", "", "InvalidValue"),
        ("AuthCtrlr", "Enabled", "yes", "InvalidValue"),
        ("AuthCtrlr", "Enabled", "1", "InvalidValue"),
        ("SmartChargingCtrlr", "LimitChangeSignificance", "nan", "InvalidValue"),
        ("SmartChargingCtrlr", "LimitChangeSignificance", "1e400", "InvalidValue"),
        ("SmartChargingCtrlr", "LimitChangeSignificance", "1_0", "InvalidValue"),
        ("SmartChargingCtrlr", "LimitChangeSignificance", "100.5", "ValueTooHigh"),
        ("SmartChargingCtrlr", "LimitChangeSignificance", "-1", "ValueTooLow"),
        ("TxCtrlr", "TxStartPoint", "", "ValueTooLow"),
        ("TxCtrlr", "TxStartPoint", "ParkingBayOccupancy", "InvalidValue"),
        ("TxCtrlr", "TxStartPoint", "EVConnected,EVConnected", "InvalidValue"),
        ("TxCtrlr", "TxStopPoint", "EVConnected,,Authorized", "InvalidValue"),
        ("SampledDataCtrlr", "TxEndedMeasurands", "Temperature", "InvalidValue"),
        ("ClockCtrlr", "TimeSource", "GPS", "InvalidValue"),
        ("SecurityCtrlr", "BasicAuthPassword", "short", "ValueTooLow"),
        ("SecurityCtrlr", "BasicAuthPassword", "x" * 41, "ValueTooHigh"),
        ("SecurityCtrlr", "OrganizationName", "x" * 1001, "TooLargeElement"),
        ("ChargingStation", "Model", "Other", "ReadOnly"),
        ("SecurityCtrlr", "SecurityProfile", "3", "ReadOnly"),
        ("TxCtrlr", "StopTxOnEVSideDisconnect", "false", "ReadOnly"),
        ("ClockCtrlr", "DateTime", "2026-01-01T00:00:00Z", "ReadOnly"),
    ],
)
def test_set_rejects(component: str, variable: str, value: str, reason: str) -> None:
    model, saved = make(defs=_writable_decimal())
    before = model.actual(model.find(component, variable).key)  # type: ignore[union-attr]
    result, d = model.set(request(component, variable, value=value))
    assert result["attributeStatus"] == "Rejected" and d is None
    assert result["attributeStatusInfo"]["reasonCode"] == reason
    assert result["attributeStatusInfo"]["additionalInfo"]
    assert model.actual(model.find(component, variable).key) == before  # type: ignore[union-attr]
    assert not saved
    assert_results(set_=[result])


def test_set_unknown_and_unsupported() -> None:
    model, saved = make()
    cases = [
        (request("Nope", "HeartbeatInterval", value="1"), "UnknownComponent"),
        (request("OCPPCommCtrlr", "Nope", value="1"), "UnknownVariable"),
        (request("EVSE", "Power", value="1"), "UnknownComponent"),
        (
            request("OCPPCommCtrlr", "HeartbeatInterval", attribute="Target", value="1"),
            "NotSupportedAttributeType",
        ),
    ]
    for req, status in cases:
        result, d = model.set(req)
        assert (result["attributeStatus"], d) == (status, None)
        assert result["component"] == req["component"] and result["variable"] == req["variable"]
        assert_results(set_=[result])
    assert not saved


def test_reboot_required_is_still_stored() -> None:
    model, saved = make()
    result, d = model.set(request("OCPPCommCtrlr", "WebSocketPingInterval", attribute="Actual", value="60"))
    assert result["attributeStatus"] == "RebootRequired" and result["attributeType"] == "Actual"
    assert d is not None and model.number("OCPPCommCtrlr", "WebSocketPingInterval") == 60
    assert saved == {"OCPPCommCtrlr/WebSocketPingInterval/Actual": "60"}


def test_other_data_types() -> None:
    defs = [
        VariableDef("ClockCtrlr", "NextTimeOffsetTransitionDateTime", "dateTime"),
        VariableDef("AuthCacheCtrlr", "Policy", "OptionList", "LRU", values_list=("LRU", "FIFO")),
        VariableDef("ClockCtrlr", "TimeZone", "string", persistent=False),
        VariableDef("ClockCtrlr", "TimeOffset", "weird"),
    ]
    model, saved = make(defs=defs)
    dt = request("ClockCtrlr", "NextTimeOffsetTransitionDateTime", value="2026-03-29T01:00:00Z")
    assert status_of(model, dt) == "Accepted"
    for bad in ("2026-03-29T01:00:00", "tomorrow", ""):
        assert status_of(model, {**dt, "attributeValue": bad}) == "Rejected"
    assert status_of(model, request("AuthCacheCtrlr", "Policy", value="FIFO")) == "Accepted"
    assert status_of(model, request("AuthCacheCtrlr", "Policy", value="LFU")) == "Rejected"
    assert status_of(model, request("ClockCtrlr", "TimeZone", value="Europe/Amsterdam")) == "Accepted"
    assert status_of(model, request("ClockCtrlr", "TimeOffset", value="1")) == "Rejected"
    assert "ClockCtrlr/TimeZone/Actual" not in saved  # not persistent
    assert set(saved) == {
        "ClockCtrlr/NextTimeOffsetTransitionDateTime/Actual",
        "AuthCacheCtrlr/Policy/Actual",
    }


def test_persistence_round_trip() -> None:
    model, saved = make()
    model.set(request("OCPPCommCtrlr", "HeartbeatInterval", value="120"))
    model.set(request("TxCtrlr", "TxStartPoint", value="Authorized,EVConnected"))
    model.set(request("SecurityCtrlr", "BasicAuthPassword", value="a-very-long-password"))
    model.set(request("OCPPCommCtrlr", "MessageAttempts", instance="TransactionEvent", value="7"))
    again, _ = make(saved)
    assert again.number("OCPPCommCtrlr", "HeartbeatInterval") == 120
    assert again.items("TxCtrlr", "TxStartPoint") == ["Authorized", "EVConnected"]
    assert again.value("SecurityCtrlr", "BasicAuthPassword") == "a-very-long-password"
    assert again.number("OCPPCommCtrlr", "MessageAttempts", variable_instance="TransactionEvent") == 7
    assert again.report("FullInventory") == model.report("FullInventory")


def test_stored_values_the_table_no_longer_allows_are_ignored() -> None:
    stored = {
        "OCPPCommCtrlr/HeartbeatInterval/Actual": "-5",
        "AuthCtrlr/Enabled/Actual": "FALSE",
        "ChargingStation/Model/Actual": "Hacked",  # ReadOnly: never restored
        "Gone/Thing/Actual": "1",
    }
    model, _ = make(stored)
    assert model.number("OCPPCommCtrlr", "HeartbeatInterval") == 300
    assert model.value("AuthCtrlr", "Enabled") == "false"
    assert model.value("ChargingStation", "Model") == "Pi-EVSE"


@given(st.sampled_from(definitions(EVSES, STATION)), st.text(max_size=60))
def test_any_value_gives_a_valid_result(d: VariableDef, value: str) -> None:
    model, saved = make()
    req = request(
        d.component, d.variable, evse=d.evse, connector=d.connector, instance=d.variable_instance, value=value
    )
    result, changed = model.set(req)
    assert_results(set_=[result])
    if result["attributeStatus"] in ("Accepted", "RebootRequired"):
        assert changed == d and d.mutability != "ReadOnly"
        stored = model.actual(d.key)
        assert normalize(d, stored) == stored
        assert saved[storage_key(d.key)] == stored
    else:
        assert changed is None and not saved
        if d.mutability != "ReadOnly":
            with pytest.raises(Invalid):
                normalize(d, value)


# -- reports (B07, B08) -----------------------------------------------------------------


def _keys(items: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(i["component"]["name"], i["variable"]["name"]) for i in items}


def test_full_and_configuration_inventory() -> None:
    model, _ = make()
    full = model.report("FullInventory")
    assert len(full) == len(model.defs) == len(model.report())
    config = model.report("ConfigurationInventory")
    assert config and all(i["variableAttribute"][0]["mutability"] != "ReadOnly" for i in config)
    assert ("SecurityCtrlr", "BasicAuthPassword") in _keys(config)
    assert ("ChargingStation", "Model") not in _keys(config)
    assert_report(full)
    assert_report(config)
    with pytest.raises(ValueError):
        model.report("Everything")


def test_report_data_shape() -> None:
    model, _ = make()
    [power] = model.report(component_variables=[request("EVSE", "Power", evse=1)])
    assert power == {
        "component": {"name": "EVSE", "evse": {"id": 1}},
        "variable": {"name": "Power"},
        "variableAttribute": [
            {"type": "Actual", "value": "0", "mutability": "ReadOnly", "persistent": False, "constant": False}
        ],
        "variableCharacteristics": {
            "dataType": "decimal",
            "unit": "W",
            "minLimit": 0,
            "maxLimit": 22080,
            "supportsMonitoring": True,
        },
    }
    [tx] = model.report(component_variables=[request("TxCtrlr", "TxStartPoint")])
    assert (
        tx["variableCharacteristics"]["valuesList"] == "EVConnected,Authorized,PowerPathClosed,EnergyTransfer"
    )
    assert tx["variableCharacteristics"]["supportsMonitoring"] is False
    [password] = model.report(component_variables=[request("SecurityCtrlr", "BasicAuthPassword")])
    assert "value" not in password["variableAttribute"][0]
    [timeout] = model.report(component_variables=[request("OCPPCommCtrlr", "MessageTimeout")])
    assert timeout["variable"] == {"name": "MessageTimeout", "instance": "Default"}
    [plug] = model.report(component_variables=[request("Connector", "ConnectorType", evse=2, connector=1)])
    assert plug["component"] == {"name": "Connector", "evse": {"id": 2, "connectorId": 1}}


def _set_live(model: DeviceModel, component: str, variable: str, value: str, **where: Any) -> None:
    d = model.find(component, variable, **where)
    assert d is not None
    model.live(d.key, lambda: value)


def test_summary_inventory() -> None:
    model, _ = make()
    summary = model.report("SummaryInventory")
    variables = {i["variable"]["name"] for i in summary}
    assert variables == {"AvailabilityState", "Available"}
    assert ("ChargingStation", "AvailabilityState") in _keys(summary)
    assert len([i for i in summary if i["variable"]["name"] == "AvailabilityState"]) == 1 + 2 * 2
    assert ("AuthCacheCtrlr", "Available") not in _keys(summary)  # no availability state
    _set_live(model, "RCD", "Tripped", "true", evse=2)
    _set_live(model, "OverCurrentProtection", "Operated", "true", evse=1)
    _set_live(model, "PowerContactor", "Problem", "false", evse=1)
    summary = model.report("SummaryInventory")
    abnormal = [i for i in summary if i["variable"]["name"] in ("Problem", "Tripped", "Operated")]
    assert [(i["component"], i["variable"]["name"]) for i in abnormal] == [
        ({"name": "OverCurrentProtection", "evse": {"id": 1}}, "Operated"),
        ({"name": "RCD", "evse": {"id": 2}}, "Tripped"),
    ]
    assert_report(summary)


def test_criteria_keep_components_with_that_variable_true() -> None:
    model, _ = make()
    assert model.report(criteria=["Problem"]) == []
    _set_live(model, "PowerContactor", "Problem", "true", evse=2)
    problem = model.report(criteria=["Problem"])
    assert _keys(problem) == {
        ("PowerContactor", "Active"),
        ("PowerContactor", "Problem"),
        ("PowerContactor", "Tripped"),
    }
    assert all(i["component"]["evse"] == {"id": 2} for i in problem)
    enabled = {i["component"]["name"] for i in model.report(criteria=["Enabled"])}
    assert {"AuthCtrlr", "AuthCacheCtrlr", "TokenReader", "MonitoringCtrlr"} <= enabled
    model.set(request("AuthCacheCtrlr", "Enabled", value="false"))
    assert "AuthCacheCtrlr" not in {i["component"]["name"] for i in model.report(criteria=["Enabled"])}
    both = model.report(criteria=["Enabled", "Problem"])  # either criterion
    assert {"PowerContactor", "AuthCtrlr"} <= {i["component"]["name"] for i in both}
    available = {i["component"]["name"] for i in model.report(criteria=["Available"])}
    assert {"ChargingStation", "EVSE", "Connector", "ReservationCtrlr"} <= available
    assert "OCPPCommCtrlr" not in available
    _set_live(model, "PowerContactor", "Active", "true", evse=1)
    active = model.report(criteria=["Active"])
    assert {(i["component"]["name"], i["component"]["evse"]["id"]) for i in active} == {("PowerContactor", 1)}
    assert_report(both)


def test_component_variables_filter() -> None:
    model, _ = make()
    whole = model.report(component_variables=[{"component": {"name": "OCPPCommCtrlr"}}])
    assert len(whole) == len([d for d in model.defs if d.component == "OCPPCommCtrlr"])
    narrowed = model.report(
        component_variables=[
            {"component": {"name": "ocppcommctrlr"}, "variable": {"name": "HeartbeatInterval"}},
            {"component": {"name": "DeviceDataCtrlr"}, "variable": {"name": "ItemsPerMessage"}},
            {
                "component": {"name": "DeviceDataCtrlr"},
                "variable": {"name": "BytesPerMessage", "instance": "GetReport"},
            },
            {"component": {"name": "EVSE", "evse": {"id": 2}}, "variable": {"name": "Power"}},
            {"component": {"name": "EVSE"}, "variable": {"name": "Power"}},  # no evse: no EVSE-level match
            {"component": {"name": "Nope"}},
        ]
    )
    assert [
        (i["component"]["name"], i["variable"]["name"], i["variable"].get("instance")) for i in narrowed
    ] == [
        ("OCPPCommCtrlr", "HeartbeatInterval", None),
        ("DeviceDataCtrlr", "ItemsPerMessage", "GetReport"),
        ("DeviceDataCtrlr", "BytesPerMessage", "GetReport"),
        ("DeviceDataCtrlr", "ItemsPerMessage", "GetVariables"),
        ("DeviceDataCtrlr", "ItemsPerMessage", "SetVariables"),
        ("EVSE", "Power", None),
    ]
    assert narrowed[-1]["component"]["evse"] == {"id": 2}
    connector = model.report(
        component_variables=[{"component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}}}]
    )
    assert len(connector) == 4
    _set_live(model, "RCD", "Problem", "true", evse=1)
    mixed = model.report(
        criteria=["Problem"],
        component_variables=[
            {"component": {"name": "RCD", "evse": {"id": 1}}},
            {"component": {"name": "AuthCtrlr"}},
        ],
    )
    assert _keys(mixed) == {("RCD", "Tripped"), ("RCD", "Problem")}
    assert_report(narrowed)


@given(
    st.lists(st.sampled_from(["Active", "Available", "Enabled", "Problem"]), max_size=4),
    st.sampled_from([None, "FullInventory", "ConfigurationInventory", "SummaryInventory"]),
    st.booleans(),
)
def test_every_report_validates(criteria: list[str], base: str | None, faulty: bool) -> None:
    model, _ = make()
    if faulty:
        for component, variable in FAULT_VARIABLES.values():
            _set_live(model, component, variable, "true", evse=1)
    items = model.report(base, criteria)
    if items:
        assert_report(items)
