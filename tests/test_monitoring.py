"""OCPP 2.0.1 variable monitoring: set, clear, report, and the events of a change."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from controller.ocpp.v201.device_model import DeviceModel, Key, definitions
from controller.ocpp.v201.monitoring import Monitors, criteria_supported, timestamp
from tests.test_device_model import EVSES, STATION, assert_valid

NOW = datetime(2026, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
POWER: Key = ("EVSE", None, 1, None, "Power", None)
RCD: Key = ("RCD", None, 1, None, "Tripped", None)
CONTACTOR: Key = ("PowerContactor", None, 1, None, "Problem", None)
ACTIVE: Key = ("PowerContactor", None, 1, None, "Active", None)
STATE: Key = ("EVSE", None, 1, None, "AvailabilityState", None)


class Bench:
    def __init__(self, stored: str | None = None, model_store: dict[str, str] | None = None) -> None:
        self.model_saved: dict[str, str] = dict(model_store or {})
        self.model = DeviceModel(definitions(EVSES, STATION), self.model_saved, self.model_saved.__setitem__)
        self.saved: list[str] = []
        self.monitors = Monitors(self.model, stored, self.saved.append)
        self.power = "0"
        self.model.live(POWER, lambda: self.power)

    def set(self, **fields: Any) -> dict[str, Any]:
        result = self.monitors.set(fields)
        assert_valid("SetVariableMonitoringResponse", {"setMonitoringResult": [result]})
        return result

    def changed(self, key: Key, old: str | None, new: str, **kw: Any) -> list[dict[str, Any]]:
        events = self.monitors.changed(key, old, new, NOW, **kw)
        if events:
            assert_valid(
                "NotifyEventRequest", {"generatedAt": timestamp(NOW), "seqNo": 0, "eventData": events}
            )
        return events


def target(key: Key) -> dict[str, Any]:
    component: dict[str, Any] = {"name": key[0]}
    if key[2] is not None:
        component["evse"] = {"id": key[2]} if key[3] is None else {"id": key[2], "connectorId": key[3]}
    variable: dict[str, Any] = {"name": key[4]}
    if key[5] is not None:
        variable["instance"] = key[5]
    return {"component": component, "variable": variable}


def monitor(key: Key, kind: str, value: float = 0, severity: int = 5, **extra: Any) -> dict[str, Any]:
    return {**target(key), "type": kind, "value": value, "severity": severity, **extra}


@pytest.fixture
def mb() -> Bench:
    return Bench()


# -- SetVariableMonitoring (N04) --------------------------------------------------------


def test_set_assigns_ids_and_persists(mb: Bench) -> None:
    first = mb.set(**monitor(POWER, "UpperThreshold", 7000, 4))
    second = mb.set(**monitor(RCD, "Delta", 0, 1, transaction=True))
    assert (first["status"], first["id"], second["id"]) == ("Accepted", 1, 2)
    assert first["component"] == {"name": "EVSE", "evse": {"id": 1}} and first["type"] == "UpperThreshold"
    stored = json.loads(mb.saved[-1])
    assert stored["nextId"] == 3 and [m["id"] for m in stored["monitors"]] == [1, 2]
    again = Bench(mb.saved[-1])
    assert again.monitors.report() == mb.monitors.report()
    assert again.set(**monitor(ACTIVE, "Delta"))["id"] == 3
    assert mb.monitors.monitored() == [POWER, RCD]


@pytest.mark.parametrize(
    ("fields", "status", "reason"),
    [
        (monitor(("Nope", None, None, None, "X", None), "Delta"), "UnknownComponent", None),
        (monitor(("EVSE", None, 1, None, "Nope", None), "Delta"), "UnknownVariable", None),
        (monitor(("EVSE", None, None, None, "Power", None), "Delta"), "UnknownComponent", None),
        (monitor(POWER, "Periodic", 60), "UnsupportedMonitorType", "UnsupportedParam"),
        (monitor(POWER, "PeriodicClockAligned", 900), "UnsupportedMonitorType", "UnsupportedParam"),
        (monitor(RCD, "UpperThreshold", 0), "UnsupportedMonitorType", "UnsupportedParam"),
        (monitor(STATE, "LowerThreshold", 1), "UnsupportedMonitorType", "UnsupportedParam"),
        (
            monitor(("OCPPCommCtrlr", None, None, None, "HeartbeatInterval", None), "Delta"),
            "Rejected",
            "UnsupportedParam",
        ),
        (
            monitor(("SecurityCtrlr", None, None, None, "BasicAuthPassword", None), "Delta"),
            "Rejected",
            "UnsupportedParam",
        ),
        (monitor(POWER, "Delta", 10, 10), "Rejected", "ValueOutOfRange"),
        (monitor(POWER, "Delta", 10, -1), "Rejected", "ValueOutOfRange"),
        (monitor(POWER, "Delta", -10), "Rejected", "ValuePositiveOnly"),
        (monitor(POWER, "UpperThreshold", 30000), "Rejected", "ValueOutOfRange"),
        (monitor(POWER, "LowerThreshold", -1), "Rejected", "ValueOutOfRange"),
        (monitor(POWER, "Delta", 10, id=99), "Rejected", "NotFound"),
    ],
)
def test_set_refuses(mb: Bench, fields: dict[str, Any], status: str, reason: str | None) -> None:
    result = mb.set(**fields)
    assert result["status"] == status
    assert result.get("statusInfo", {}).get("reasonCode") == reason
    assert not mb.saved and mb.monitors.report() == []


def test_duplicate_and_replace(mb: Bench) -> None:
    assert mb.set(**monitor(POWER, "UpperThreshold", 7000, 4))["id"] == 1
    assert mb.set(**monitor(POWER, "UpperThreshold", 5000, 4))["status"] == "Duplicate"
    assert mb.set(**monitor(POWER, "UpperThreshold", 5000, 6))["id"] == 2  # another severity
    assert mb.set(**monitor(POWER, "UpperThreshold", 6000, 6, id=1))["status"] == "Duplicate"
    replaced = mb.set(**monitor(POWER, "LowerThreshold", 100, 3, id=1))
    assert (replaced["status"], replaced["id"]) == ("Accepted", 1)
    [data] = mb.monitors.report()
    assert data["variableMonitoring"] == [
        {"id": 1, "transaction": False, "value": 100, "type": "LowerThreshold", "severity": 3},
        {"id": 2, "transaction": False, "value": 5000, "type": "UpperThreshold", "severity": 6},
    ]
    assert mb.set(**monitor(POWER, "Delta", 5))["id"] == 3


def test_n04_fr_16_an_id_on_another_variable_is_rejected_not_moved(mb: Bench) -> None:
    assert mb.set(**monitor(POWER, "UpperThreshold", 7000, 4))["id"] == 1
    saved = len(mb.saved)
    moved = mb.set(**monitor(RCD, "Delta", 0, 4, id=1))
    assert (moved["status"], moved["statusInfo"]["reasonCode"]) == ("Rejected", "InvalidValue")
    assert len(mb.saved) == saved and mb.monitors.monitored() == [POWER]
    [data] = mb.monitors.report()
    assert data["variableMonitoring"][0]["type"] == "UpperThreshold"


# -- ClearVariableMonitoring (N06), SetMonitoringBase (N03) -----------------------------


def test_clear(mb: Bench) -> None:
    mb.set(**monitor(POWER, "UpperThreshold", 7000))
    mb.set(**monitor(RCD, "Delta"))
    saves = len(mb.saved)
    results = mb.monitors.clear([1, 7])
    assert results == [{"id": 1, "status": "Accepted"}, {"id": 7, "status": "NotFound"}]
    assert_valid("ClearVariableMonitoringResponse", {"clearMonitoringResult": results})
    assert len(mb.saved) == saves + 1 and [m["id"] for m in json.loads(mb.saved[-1])["monitors"]] == [2]
    assert mb.monitors.clear([1]) == [{"id": 1, "status": "NotFound"}] and len(mb.saved) == saves + 1


@pytest.mark.parametrize(("base", "kept"), [("All", 1), ("FactoryDefault", 0), ("HardWiredOnly", 0)])
def test_monitoring_base(mb: Bench, base: str, kept: int) -> None:
    mb.set(**monitor(RCD, "Delta"))
    mb.monitors.set_base(base)
    assert len(mb.monitors.report()) == kept
    assert mb.model.value("MonitoringCtrlr", "ActiveMonitoringBase") == base
    assert Bench(mb.saved[-1]).model.value("MonitoringCtrlr", "ActiveMonitoringBase") == base
    with pytest.raises(ValueError):
        mb.monitors.set_base("Some")


def test_an_unreadable_or_stale_store_starts_empty() -> None:
    assert Bench("not json").monitors.report() == []
    assert Bench('{"base": "All"}').monitors.report() == []
    gone = {"id": 4, "key": ["EVSE", None, 9, None, "Power", None], "type": "Delta", "value": 1}
    gone.update(severity=1, transaction=False)
    stale = Bench(json.dumps({"base": "All", "nextId": 5, "monitors": [gone]}))
    assert stale.monitors.report() == []
    assert stale.set(**monitor(POWER, "Delta"))["id"] == 5


# -- GetMonitoringReport (N02) ----------------------------------------------------------


def test_report_filters(mb: Bench) -> None:
    mb.set(**monitor(POWER, "UpperThreshold", 7000))
    mb.set(**monitor(POWER, "Delta", 500))
    mb.set(**monitor(RCD, "Delta", 0, 0))
    mb.set(**monitor(STATE, "Delta", 0, 7, transaction=True))
    everything = mb.monitors.report()
    assert [(d["variable"]["name"], len(d["variableMonitoring"])) for d in everything] == [
        ("AvailabilityState", 1),
        ("Power", 2),
        ("Tripped", 1),
    ]
    payload = {"requestId": 1, "seqNo": 0, "generatedAt": timestamp(NOW), "monitor": everything}
    assert_valid("NotifyMonitoringReportRequest", payload)
    thresholds = mb.monitors.report(["ThresholdMonitoring"])
    assert [[m["type"] for m in d["variableMonitoring"]] for d in thresholds] == [["UpperThreshold"]]
    assert len(mb.monitors.report(["DeltaMonitoring"])) == 3
    assert mb.monitors.report(["PeriodicMonitoring"]) == []
    assert len(mb.monitors.report(["PeriodicMonitoring", "ThresholdMonitoring"])) == 1
    rcd = mb.monitors.report(component_variables=[{"component": {"name": "RCD", "evse": {"id": 1}}}])
    assert [d["variable"]["name"] for d in rcd] == ["Tripped"]
    assert mb.monitors.report(component_variables=[{"component": {"name": "RCD"}}]) == []
    power_delta = mb.monitors.report(["DeltaMonitoring"], [target(POWER)])
    assert [m["type"] for m in power_delta[0]["variableMonitoring"]] == ["Delta"]


def test_n02_fr_02_periodic_monitoring_criteria_not_supported() -> None:
    assert criteria_supported([]) and criteria_supported(["ThresholdMonitoring", "DeltaMonitoring"])
    assert not criteria_supported(["PeriodicMonitoring"])
    assert not criteria_supported(["ThresholdMonitoring", "PeriodicMonitoring"])


# -- NotifyEvent (N07, N08) -------------------------------------------------------------


def test_hard_wired_notification_of_a_fault(mb: Bench) -> None:
    mb.monitors.next_event_id = 41
    [tripped] = mb.changed(RCD, "false", "true", tech_code="rcd")
    assert tripped == {
        "eventId": 41,
        "timestamp": "2026-05-01T12:00:00.250Z",
        "trigger": "Delta",
        "actualValue": "true",
        "eventNotificationType": "HardWiredNotification",
        "component": {"name": "RCD", "evse": {"id": 1}},
        "variable": {"name": "Tripped"},
        "cleared": False,
        "techCode": "rcd",
    }
    [cleared] = mb.changed(RCD, "true", "false")
    assert (cleared["eventId"], cleared["cleared"], cleared["actualValue"]) == (42, True, "false")
    assert mb.changed(RCD, "true", "TRUE") == []
    assert mb.changed(ACTIVE, "false", "true") == []  # Active: only custom monitors report it
    assert mb.changed(("Nope", None, None, None, "X", None), "a", "b") == []
    assert mb.monitors.severity(tripped) == 0
    assert mb.monitors.severity(mb.changed(CONTACTOR, "false", "true")[0]) == 1


def test_a_custom_monitor_replaces_the_hard_wired_notification(mb: Bench) -> None:
    ident = mb.set(**monitor(CONTACTOR, "Delta", 0, 2))["id"]
    [event] = mb.changed(CONTACTOR, "false", "true", tech_code="contactor_weld")
    assert event["eventNotificationType"] == "CustomMonitor" and event["variableMonitoringId"] == ident
    assert (event["trigger"], event["cleared"], event["techCode"]) == ("Delta", False, "contactor_weld")
    assert mb.monitors.severity(event) == 2
    [back] = mb.changed(CONTACTOR, "true", "false")
    assert back["cleared"] is True
    mb.set(**monitor(ACTIVE, "Delta", 0, 8))
    [active] = mb.changed(ACTIVE, "false", "true")
    assert "cleared" not in active and active["actualValue"] == "true"
    mb.set(**monitor(STATE, "Delta"))
    [state] = mb.changed(STATE, "Available", "Occupied")
    assert state["actualValue"] == "Occupied"
    assert mb.changed(STATE, "Occupied", "Occupied") == []


def test_thresholds(mb: Bench) -> None:
    upper = mb.set(**monitor(POWER, "UpperThreshold", 7000, 4))["id"]
    lower = mb.set(**monitor(POWER, "LowerThreshold", 100, 6))["id"]
    assert mb.changed(POWER, "3000", "6999") == []
    [up] = mb.changed(POWER, "6999", "7000.5")
    assert (up["variableMonitoringId"], up["trigger"], up["cleared"]) == (upper, "Alerting", False)
    assert mb.changed(POWER, "7000.5", "7200") == []  # still above: no new event
    [down] = mb.changed(POWER, "7200", "7000")
    assert (down["variableMonitoringId"], down["cleared"]) == (upper, True)
    [low] = mb.changed(POWER, "7000", "0")
    assert (low["variableMonitoringId"], low["trigger"], low["cleared"]) == (lower, "Alerting", False)
    assert [e["variableMonitoringId"] for e in mb.changed(POWER, "0", "8000")] == [upper, lower]
    assert mb.changed(POWER, "unknown", "8000") == []


def test_numeric_delta_counts_from_the_last_event(mb: Bench) -> None:
    mb.power = "1000"
    mb.set(**monitor(POWER, "Delta", 500))
    assert mb.changed(POWER, "1000", "1400") == []
    [event] = mb.changed(POWER, "1400", "1600")
    assert (event["trigger"], event["actualValue"]) == ("Delta", "1600")
    assert "cleared" not in event
    assert mb.changed(POWER, "1600", "1200") == []  # 400 from 1600
    assert len(mb.changed(POWER, "1200", "1000")) == 1


def test_monitoring_level_and_enabled(mb: Bench) -> None:
    mb.set(**monitor(CONTACTOR, "Delta", 0, 7))
    level = ("MonitoringCtrlr", None, None, None, "ActiveMonitoringLevel", None)
    mb.model.set_actual(level, "5")
    [event] = mb.changed(CONTACTOR, "false", "true")  # the monitor is above the level
    assert event["eventNotificationType"] == "HardWiredNotification"
    reader: Key = ("TokenReader", None, None, None, "Problem", None)
    assert len(mb.changed(reader, "false", "true")) == 1  # severity 4: within level 5
    mb.model.set_actual(level, "3")
    assert mb.changed(reader, "true", "false") == []
    mb.model.set_actual(level, "9")
    mb.model.set(
        {**target(("MonitoringCtrlr", None, None, None, "Enabled", None)), "attributeValue": "false"}
    )
    [event] = mb.changed(CONTACTOR, "true", "false")
    assert event["eventNotificationType"] == "HardWiredNotification" and event["cleared"] is True


def test_transaction_monitors(mb: Bench) -> None:
    mb.set(**monitor(STATE, "Delta", 0, 5, transaction=True))
    assert mb.changed(STATE, "Available", "Unavailable", transaction=False) == []
    assert len(mb.changed(STATE, "Unavailable", "Occupied", transaction=True)) == 1
    assert len(mb.changed(STATE, "Occupied", "Available")) == 1  # unknown: reported


def test_long_values_are_truncated(mb: Bench) -> None:
    mb.set(**monitor(STATE, "Delta"))
    [event] = mb.changed(STATE, "Available", "x" * 3000, tech_code="t" * 80)
    assert len(event["actualValue"]) == 1000 and len(event["techCode"]) == 50


def test_timestamps_are_utc() -> None:
    assert (
        timestamp(datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1))))
        == "2026-01-01T00:00:00.000Z"
    )
    assert timestamp(datetime(2026, 1, 1, 0, 0, 0, 999999)) == "2026-01-01T00:00:00.999Z"


def test_device_model_also_offers_monitors() -> None:
    from controller.ocpp.v201 import device_model

    assert device_model.Monitors is Monitors
    with pytest.raises(AttributeError):
        _ = device_model.Nothing


def test_n07_event_ids_sent_only_below_a_committed_reservation_and_never_repeat() -> None:
    """eventIds stay unique across restarts and power cuts (N07, EventDataType.eventId
    "Identifies the event"; CitrineOS refuses a repeat): an id may go out only once a
    stored reservation above it has committed, the next block is asked for when half of
    the last one is used, and a restart continues from the last committed end, even
    when a reservation asked for was lost or its write failed."""
    from controller.ocpp.v201.monitoring import EVENT_ID_BLOCK

    stored = 1  # what the database holds: the last committed reservation
    sent: list[int] = []
    waits = 0
    for restart in range(4):
        model = DeviceModel(definitions(EVSES, STATION), {}, lambda k, v: None)
        monitors = Monitors(model, None, lambda text: None, next_event_id=stored)
        in_flight: int | None = None  # a write queued, not yet committed
        for n in range(EVENT_ID_BLOCK + 30):  # crosses a block boundary
            old, new = ("false", "true") if n % 2 == 0 else ("true", "false")
            data = monitors.changed(RCD, old, new, NOW)
            if in_flight is not None:  # the write lags one event behind
                if restart == 2 and n == 60:
                    monitors.reservation_failed()  # refused (StorageError): not stored
                else:
                    stored = max(stored, in_flight)
                    monitors.reserved(in_flight)
                in_flight = None
            upto = monitors.reservation()
            if upto is not None:
                in_flight = upto
            if monitors.covers(data):
                assert max(e["eventId"] for e in data) < stored  # never above the committed end
                sent += [e["eventId"] for e in data]
            else:
                waits += 1
        # power cut: ``in_flight`` is lost; the next start reads ``stored``
    assert len(sent) == len(set(sent)), "an eventId went out twice"
    assert waits == 4  # only each start's first event waits for its write, the failed one too
    assert len(sent) == 4 * (EVENT_ID_BLOCK + 30) - waits


def test_n07_fr_14_threshold_state_survives_a_restart() -> None:
    """N07.FR.14: a threshold monitor that fired before a reboot, with the value back within its
    threshold after it -> NotifyEvent with cleared true (and no second Alerting while still past)."""
    mb = Bench()
    upper = mb.set(**monitor(POWER, "UpperThreshold", 7000, 4))["id"]
    lower = mb.set(**monitor(POWER, "LowerThreshold", 100, 6))["id"]  # set at 0 W: already past
    [up] = mb.changed(POWER, "3000", "7500")
    assert (up["variableMonitoringId"], up["cleared"]) == (upper, False)
    stored = json.loads(mb.saved[-1])
    assert {m["id"]: m["beyond"] for m in stored["monitors"]} == {upper: True, lower: False}

    still = Bench(mb.saved[-1])  # restarted, the value still above 7000 W
    assert still.changed(POWER, None, "7600") == []
    [back] = still.changed(POWER, "7600", "5000")
    assert (back["variableMonitoringId"], back["trigger"], back["cleared"]) == (upper, "Alerting", True)

    restarted = Bench(mb.saved[-1])  # restarted, the value back inside meanwhile
    [cleared] = restarted.changed(POWER, None, "5000")
    assert (cleared["variableMonitoringId"], cleared["cleared"]) == (upper, True)
    assert json.loads(restarted.saved[-1])["monitors"][0]["beyond"] is False
    assert restarted.changed(POWER, "5000", "6000") == []
    [low] = restarted.changed(POWER, "6000", "50")
    assert (low["variableMonitoringId"], low["cleared"]) == (lower, False)


def test_n07_fr_14_stores_without_the_state_load_as_not_past() -> None:
    stored = json.dumps(
        {
            "base": "All",
            "nextId": 2,
            "monitors": [
                {
                    "id": 1,
                    "key": list(POWER),
                    "type": "UpperThreshold",
                    "value": 10,
                    "severity": 5,
                    "transaction": False,
                }
            ],
        }
    )
    mb = Bench(stored)
    [event] = mb.changed(POWER, None, "20")
    assert (event["variableMonitoringId"], event["cleared"]) == (1, False)
