"""OCPP 2.0.1 variable monitoring (functional block N) on the device model, without I/O.

Custom monitors (SetVariableMonitoring, N04) of type UpperThreshold, LowerThreshold and
Delta; Periodic and PeriodicClockAligned are answered UnsupportedMonitorType (they need a
timer, and nothing here runs one). ``changed`` turns a change of a variable into the
EventData items of NotifyEvent: one per triggered custom monitor, and a
HardWiredNotification for a Problem/Tripped/Operated variable no custom monitor reported.

The custom monitors persist as one JSON document (``save``):
``{"base": ..., "nextId": ..., "monitors": [{"id", "key", "type", "value", "severity", "transaction",
"beyond"}]}``. ``beyond`` keeps whether a threshold monitor's value was past its threshold when
last seen, so that a monitor that fired before a restart reports ``cleared`` when the value is back
inside after it, and does not fire again while it is still past (N07.FR.14).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.ocpp.v201.device_model import (
    ABNORMAL,
    MONITORING_BASES,
    DeviceModel,
    Key,
    VariableDef,
    component_json,
    matches,
    variable_json,
)

THRESHOLDS = ("UpperThreshold", "LowerThreshold")
SUPPORTED = (*THRESHOLDS, "Delta")
CRITERIA = {
    "ThresholdMonitoring": THRESHOLDS,
    "DeltaMonitoring": ("Delta",),
    "PeriodicMonitoring": ("Periodic", "PeriodicClockAligned"),
}
NUMERIC = ("integer", "decimal")


def criteria_supported(criteria: Sequence[str]) -> bool:
    """Whether every GetMonitoringReport monitoringCriterion names monitors this station has
    (PeriodicMonitoring does not: N02.FR.02 answers NotSupported)."""
    return all(c in CRITERIA and all(kind in SUPPORTED for kind in CRITERIA[c]) for c in criteria)


# Severity (0 Danger, 1 Hardware Failure, 2 System Failure, 3 Critical, 4 Error, 5 Alert,
# 6 Warning, 7 Notice, 8 Informational, 9 Debug) of the hard-wired notifications.
HARDWIRED_SEVERITY: dict[tuple[str, str], int] = {
    ("RCD", "Tripped"): 0,
    ("RCD", "Problem"): 1,
    ("PowerContactor", "Problem"): 1,
    ("PowerContactor", "Tripped"): 1,
    ("EVSE", "Problem"): 1,
    ("ChargingStation", "Problem"): 2,
    ("OverCurrentProtection", "Operated"): 3,
    ("FiscalMetering", "Problem"): 3,
    ("ConnectorPlugRetentionLock", "Problem"): 3,
    ("CPPWMController", "Problem"): 4,
    ("TokenReader", "Problem"): 4,
}
DEFAULT_SEVERITY = 4


@dataclass
class Monitor:
    id: int
    key: Key
    type: str
    value: float
    severity: int
    transaction: bool = False
    reference: str | None = None  # Delta on a number: the value at the last event (not persisted)
    beyond: bool = False  # Upper/LowerThreshold: the value was past the threshold when last seen


def _beyond(m: Monitor, text: str | None) -> bool | None:
    """Whether ``text`` lies past the threshold of ``m`` (above Upper, below Lower), None if no number."""
    value = None if text is None else _float(text)
    if value is None:
        return None
    sign = 1 if m.type == "UpperThreshold" else -1
    return sign * (value - m.value) > 0


class Refused(Exception):
    def __init__(self, status: str, reason: str, info: str) -> None:
        super().__init__(info)
        self.status, self.reason, self.info = status, reason, info


def _flag(text: str) -> bool:
    return text.strip().lower() == "true"


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a 'Z'; a naive ``moment`` is taken as UTC."""
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


EVENT_ID_BLOCK = 100  # eventIds reserved at a time (one write per block, not per event)


class Monitors:
    """The custom monitors; ``save(json_text)`` persists them after every change.

    Registers the getter of MonitoringCtrlr.ActiveMonitoringBase (``base``). ``next_event_id``
    is the eventId of the next EventData; the caller seeds it with the last reservation
    it stored. eventIds never repeat across restarts: the caller persists the end of the
    ids in use (``reservation``), blocks of ``EVENT_ID_BLOCK`` asked for when half of the
    last one is used, reports each committed write (``reserved``), and sends EventData
    only once ``covers`` says their ids lie below a committed end.
    """

    def __init__(
        self,
        model: DeviceModel,
        stored: str | None,
        save: Callable[[str], None],
        *,
        next_event_id: int = 1,
    ) -> None:
        self.model = model
        self.next_event_id = next_event_id
        self._event_ids_asked = next_event_id  # the end of the last reservation asked for
        self._event_ids_reserved = next_event_id  # ids below this one are stored as used
        self.base = "All"
        self._save = save
        self._next_id = 1
        self._monitors: dict[int, Monitor] = {}
        self._order = {d.key: n for n, d in enumerate(model.defs)}
        if stored:
            self._load(stored)
        base = model.find("MonitoringCtrlr", "ActiveMonitoringBase")
        if base is not None:
            model.live(base.key, lambda: self.base)

    def _load(self, stored: str) -> None:
        try:
            data = json.loads(stored)
            self.base = data["base"] if data["base"] in MONITORING_BASES else "All"
            self._next_id = int(data["nextId"])
            for item in data["monitors"]:
                c, ci, evse, connector, v, vi = item["key"]
                monitor = Monitor(
                    int(item["id"]),
                    (c, ci, evse, connector, v, vi),
                    str(item["type"]),
                    float(item["value"]),
                    int(item["severity"]),
                    bool(item["transaction"]),
                    beyond=bool(item.get("beyond", False)),
                )
                # A monitor of a variable the station no longer has (fewer EVSEs) is dropped.
                if self.model.definition(monitor.key) is not None and monitor.type in SUPPORTED:
                    self._monitors[monitor.id] = monitor
        except (ValueError, KeyError, TypeError):
            self._monitors.clear()  # an unreadable store: start without custom monitors
        self._next_id = max([self._next_id, *(m.id + 1 for m in self._monitors.values())])

    def _persist(self) -> None:
        monitors = [
            {
                "id": m.id,
                "key": list(m.key),
                "type": m.type,
                "value": m.value,
                "severity": m.severity,
                "transaction": m.transaction,
                "beyond": m.beyond,
            }
            for m in sorted(self._monitors.values(), key=lambda m: m.id)
        ]
        self._save(json.dumps({"base": self.base, "nextId": self._next_id, "monitors": monitors}))

    def monitored(self) -> list[Key]:
        """Variables with a custom monitor: the ones whose changes ``changed`` must hear of."""
        return sorted({m.key for m in self._monitors.values()}, key=lambda k: self._order[k])

    # -- N04 SetVariableMonitoring, N06 ClearVariableMonitoring, N03 SetMonitoringBase -----

    def set(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """One SetMonitoringData -> one SetMonitoringResult."""
        result: dict[str, Any] = {
            "type": request["type"],
            "severity": request["severity"],
            "component": dict(request["component"]),
            "variable": dict(request["variable"]),
        }
        if "id" in request:
            result["id"] = request["id"]
        try:
            monitor = self._check(request)
        except Refused as why:
            result["status"] = why.status
            if why.reason:
                result["statusInfo"] = {"reasonCode": why.reason, "additionalInfo": why.info}
            return result
        d = self.model.definition(monitor.key)
        if monitor.type == "Delta" and d is not None:
            monitor.reference = self.model.actual(d.key)
        if monitor.type in THRESHOLDS and d is not None:
            monitor.beyond = bool(_beyond(monitor, self.model.actual(d.key)))
        if monitor.id == self._next_id:
            self._next_id += 1
        self._monitors[monitor.id] = monitor
        self._persist()
        result.update(id=monitor.id, status="Accepted")
        return result

    def _check(self, request: Mapping[str, Any]) -> Monitor:
        status, d = self.model.lookup(request["component"], request["variable"])
        if d is None:
            raise Refused(status, "", "")
        kind, severity, value = request["type"], request["severity"], float(request["value"])
        if kind not in SUPPORTED:
            raise Refused("UnsupportedMonitorType", "UnsupportedParam", f"{kind} monitors are not supported")
        if kind in THRESHOLDS and d.data_type not in NUMERIC:
            raise Refused("UnsupportedMonitorType", "UnsupportedParam", "thresholds need a numeric variable")
        if not d.monitorable:
            raise Refused("Rejected", "UnsupportedParam", "the station reports no changes of this variable")
        if not 0 <= severity <= 9:
            raise Refused("Rejected", "ValueOutOfRange", "severity must be 0 to 9")
        if kind == "Delta" and value < 0:
            raise Refused("Rejected", "ValuePositiveOnly", "a delta cannot be negative")
        low, high = d.min_limit, d.max_limit
        if kind in THRESHOLDS and ((low is not None and value < low) or (high is not None and value > high)):
            raise Refused("Rejected", "ValueOutOfRange", "the threshold is outside the variable's limits")
        given = request.get("id")
        if given is not None and given not in self._monitors:
            raise Refused("Rejected", "NotFound", f"no monitor {given} to replace")
        if given is not None and self._monitors[given].key != d.key:
            # N04.FR.16: a monitor keeps its component and variable; only a new one can move.
            raise Refused("Rejected", "InvalidValue", f"monitor {given} is on another component/variable")
        for other in self._monitors.values():
            if other.key == d.key and other.type == kind and other.severity == severity and other.id != given:
                raise Refused("Duplicate", "", "")
        monitor_id = self._next_id if given is None else int(given)
        return Monitor(monitor_id, d.key, kind, value, severity, bool(request.get("transaction", False)))

    def clear(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        """ClearMonitoringResult items: Accepted or NotFound (the station has no fixed monitors)."""
        results = []
        for monitor_id in ids:
            found = self._monitors.pop(monitor_id, None) is not None
            results.append({"id": monitor_id, "status": "Accepted" if found else "NotFound"})
        if any(r["status"] == "Accepted" for r in results):
            self._persist()
        return results

    def set_base(self, base: str) -> None:
        """SetMonitoringBase: FactoryDefault and HardWiredOnly remove every custom monitor."""
        if base not in MONITORING_BASES:
            raise ValueError(f"unknown monitoring base {base}")
        self.base = base
        if base != "All":
            self._monitors.clear()
        self._persist()

    # -- N02 GetMonitoringReport -----------------------------------------------------------

    def report(
        self, criteria: Sequence[str] = (), component_variables: Sequence[Mapping[str, Any]] = ()
    ) -> list[dict[str, Any]]:
        """MonitoringData items, one per variable, in device model order."""
        kinds = {kind for criterion in criteria for kind in CRITERIA.get(criterion, ())}
        grouped: dict[Key, list[Monitor]] = {}
        for m in sorted(self._monitors.values(), key=lambda m: (self._order[m.key], m.id)):
            grouped.setdefault(m.key, []).append(m)
        items = []
        for key, monitors in grouped.items():
            d = self.model.definition(key)
            chosen = [m for m in monitors if not criteria or m.type in kinds]
            if d is None or not chosen:
                continue
            if component_variables and not any(matches(d, cv) for cv in component_variables):
                continue
            items.append(
                {
                    "component": component_json(d),
                    "variable": variable_json(d),
                    "variableMonitoring": [
                        {
                            "id": m.id,
                            "transaction": m.transaction,
                            "value": m.value,
                            "type": m.type,
                            "severity": m.severity,
                        }
                        for m in chosen
                    ],
                }
            )
        return items

    # -- N07 alerts, N08 hard-wired notifications ------------------------------------------

    def changed(
        self,
        key: Key,
        old: str | None,
        new: str,
        now: datetime,
        *,
        transaction: bool | None = None,
        tech_code: str | None = None,
    ) -> list[dict[str, Any]]:
        """EventData items for a change of ``key`` from ``old`` to ``new``.

        ``old`` None: ``new`` is the first value seen since the start; only threshold monitors
        whose stored state it changes fire (N07.FR.14).
        ``transaction`` False skips the monitors set for transactions only; ``tech_code``
        (e.g. the station's fault name) goes into every event.
        """
        d = self.model.definition(key)
        if d is None:
            return []
        level = self._level()
        abnormal = d.variable in ABNORMAL and d.data_type == "boolean"
        events: list[dict[str, Any]] = []
        if self._enabled():
            for m in sorted(self._monitors.values(), key=lambda m: m.id):
                if m.key != key or m.severity > level or (m.transaction and transaction is False):
                    continue
                fired = self._trigger(m, d, old, new)
                if fired is not None:
                    trigger, cleared = fired
                    events.append(
                        self._event(d, now, new, trigger, "CustomMonitor", cleared, tech_code, m.id)
                    )
        changed = old is not None and _flag(old) != _flag(new)
        if not events and abnormal and changed and self._hardwired(d) <= level:
            events.append(
                self._event(d, now, new, "Delta", "HardWiredNotification", not _flag(new), tech_code)
            )
        self._remember(key, new)
        return events

    def _remember(self, key: Key, new: str) -> None:
        """Keep (and persist, when it changes) which threshold monitors of ``key`` are past."""
        moved = False
        for m in self._monitors.values():
            beyond = _beyond(m, new) if m.key == key and m.type in THRESHOLDS else None
            if beyond is not None and beyond != m.beyond:
                m.beyond, moved = beyond, True
        if moved:
            self._persist()

    def _level(self) -> float:
        """Only events of this severity or lower are reported (SetMonitoringLevel, N05)."""
        d = self.model.find("MonitoringCtrlr", "ActiveMonitoringLevel")
        return 9 if d is None else self.model.number(d.component, d.variable)

    def _enabled(self) -> bool:
        d = self.model.find("MonitoringCtrlr", "Enabled")
        return d is None or _flag(self.model.actual(d.key))

    @staticmethod
    def _hardwired(d: VariableDef) -> int:
        return HARDWIRED_SEVERITY.get((d.component, d.variable), DEFAULT_SEVERITY)

    def _trigger(
        self, m: Monitor, d: VariableDef, old: str | None, new: str
    ) -> tuple[str, bool | None] | None:
        """(trigger, cleared) when ``m`` fires on this change, else None."""
        if m.type in THRESHOLDS:
            was = m.beyond if old is None else _beyond(m, old)
            now = _beyond(m, new)
            if was is None or now is None:
                return None
            return None if was == now else ("Alerting", not now)
        if old is None:
            return None
        cleared = (not _flag(new)) if d.variable in ABNORMAL and d.data_type == "boolean" else None
        if d.data_type not in NUMERIC:
            same = new.strip().lower() == old.strip().lower() if d.data_type == "boolean" else new == old
            return None if same else ("Delta", cleared)
        reference = _float(m.reference if m.reference is not None else old)
        after = _float(new)
        if after is None or (reference is not None and abs(after - reference) <= m.value):
            return None
        m.reference = new
        return "Delta", None

    def _event(
        self,
        d: VariableDef,
        now: datetime,
        actual: str,
        trigger: str,
        kind: str,
        cleared: bool | None,
        tech_code: str | None,
        monitor_id: int | None = None,
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "eventId": self.next_event_id,
            "timestamp": timestamp(now),
            "trigger": trigger,
            "actualValue": actual[: self.model.reporting_size()],
            "eventNotificationType": kind,
            "component": component_json(d),
            "variable": variable_json(d),
        }
        self.next_event_id += 1
        if monitor_id is not None:
            event["variableMonitoringId"] = monitor_id
        if cleared is not None:
            event["cleared"] = cleared
        if tech_code is not None:
            event["techCode"] = tech_code[:50]
        return event

    def reservation(self) -> int | None:
        """The end of the eventIds to store now (ids below it count as used), or None.

        Asked ahead, once half of the last block is handed out, so the NotifyEvents seldom
        wait for the write (``covers``).
        """
        if self.next_event_id + EVENT_ID_BLOCK // 2 <= self._event_ids_asked:
            return None
        self._event_ids_asked = max(self._event_ids_asked, self.next_event_id) + EVENT_ID_BLOCK
        return self._event_ids_asked

    def reserved(self, upto: int) -> None:
        """The write of the reservation ``upto`` committed."""
        self._event_ids_reserved = max(self._event_ids_reserved, upto)

    def reservation_failed(self) -> None:
        """The write of the last reservation failed: ask for it again next time."""
        self._event_ids_asked = self._event_ids_reserved

    def covers(self, data: Sequence[Mapping[str, Any]]) -> bool:
        """Whether every eventId of ``data`` lies below a committed reservation (may be sent)."""
        return all(item["eventId"] < self._event_ids_reserved for item in data)

    def severity(self, event: Mapping[str, Any]) -> int:
        """The severity of an EventData ``changed`` made (for OfflineQueuingSeverity)."""
        monitor = self._monitors.get(event.get("variableMonitoringId", -1))
        if monitor is not None:
            return monitor.severity
        name, variable = event["component"]["name"], event["variable"]["name"]
        return HARDWIRED_SEVERITY.get((name, variable), DEFAULT_SEVERITY)
