"""The OCPP 2.0.1 device model of the station, as data, and the rules that read and change it.

``definitions`` builds the table of every component variable the station reports, with
the standardized names of OCPP 2.0.1 Part 2 Appendices. ``DeviceModel`` answers
GetVariables (B06), SetVariables (B05) and builds the report data of GetBaseReport (B07)
and GetReport (B08). No I/O: values the CSMS sets reach storage through ``save``.

Storage keys (``storage_key``):
``<component>[<instance>]@<evse>.<connector>/<variable>[<instance>]/<attribute>``, with the
bracketed, ``@`` and ``.`` parts only when present, e.g.
``OCPPCommCtrlr/HeartbeatInterval/Actual``, ``OCPPCommCtrlr/MessageTimeout[Default]/Actual``,
``EVSE@1/Power/MaxSet``. Only ReadWrite and WriteOnly persistent variables are stored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.core.measurands import MEASURANDS
from controller.ocpp.ocppj import is_datetime
from controller.ocpp.v201.consumers import CONSUMERS as CONSUMERS  # where each writable one is read

Key = tuple[str, str | None, int | None, int | None, str, str | None]

DATA_TYPES = (
    "string",
    "decimal",
    "integer",
    "dateTime",
    "boolean",
    "OptionList",
    "SequenceList",
    "MemberList",
)
LISTS = ("SequenceList", "MemberList")
TX_POINTS = ("EVConnected", "Authorized", "PowerPathClosed", "EnergyTransfer")
AVAILABILITY = ("Available", "Occupied", "Reserved", "Unavailable", "Faulted")
PROTOCOLS = ("HTTP", "HTTPS", "FTP")
MONITORING_BASES = ("All", "FactoryDefault", "HardWiredOnly")
# Variables that say a component is in an abnormal state (SummaryInventory, hard-wired events).
ABNORMAL = ("Problem", "Tripped", "Operated")
VOLTAGE_V = 230.0


@dataclass(frozen=True)
class VariableDef:
    component: str
    variable: str
    data_type: str
    default: str = ""  # value of the Actual attribute
    mutability: str = "ReadWrite"  # "ReadOnly" | "ReadWrite" | "WriteOnly"
    component_instance: str | None = None
    variable_instance: str | None = None
    evse: int | None = None
    connector: int | None = None
    persistent: bool = True
    constant: bool = False
    unit: str | None = None
    values_list: tuple[str, ...] = ()  # allowed values (OptionList) or members (lists)
    min_limit: float | None = None  # numbers: value; strings and lists: length of the (CSV) text
    max_limit: float | None = None
    reboot: bool = False  # a change answers RebootRequired (and is still stored)
    extra: tuple[tuple[str, str], ...] = ()  # other attribute types (Target, MinSet, MaxSet) and values
    live: bool = False  # the Actual value comes from the running station (a registered getter)
    preset: bool = False  # ReadOnly, but a value stored by the manufacturer is restored

    @property
    def key(self) -> Key:
        return (
            self.component,
            self.component_instance,
            self.evse,
            self.connector,
            self.variable,
            self.variable_instance,
        )

    @property
    def attributes(self) -> tuple[str, ...]:
        return ("Actual", *(kind for kind, _ in self.extra))

    @property
    def monitorable(self) -> bool:
        """The station reports changes of it, so a monitor on it can trigger (block N)."""
        return self.live and self.data_type in ("boolean", "integer", "decimal", "OptionList")


@dataclass(frozen=True)
class EvseInfo:
    max_current_a: float
    phases: int
    lock_fitted: bool


@dataclass(frozen=True)
class StationInfo:
    vendor: str
    model: str
    serial: str
    firmware_version: str
    security_profile: int


# The variable of an EVSE that becomes "true" while the station has that fault.
FAULT_VARIABLES: dict[str, tuple[str, str]] = {
    "rcd": ("RCD", "Tripped"),
    "rcd_self_test": ("RCD", "Problem"),
    "contactor_weld": ("PowerContactor", "Problem"),
    "contactor_stuck": ("PowerContactor", "Problem"),
    "diode": ("CPPWMController", "Problem"),
    "meter_offline": ("FiscalMetering", "Problem"),
    # The Appendix gives OverCurrentProtection "Operated" (not "Tripped") for a breaker that acted.
    "overcurrent": ("OverCurrentProtection", "Operated"),
    "connector_lock": ("ConnectorPlugRetentionLock", "Problem"),
    "hardware": ("EVSE", "Problem"),
}


def _ro(component: str, variable: str, data_type: str, default: str = "", **kw: Any) -> VariableDef:
    return VariableDef(component, variable, data_type, default, "ReadOnly", **kw)


def _rw(component: str, variable: str, data_type: str, default: str = "", **kw: Any) -> VariableDef:
    return VariableDef(component, variable, data_type, default, "ReadWrite", **kw)


def _live(
    component: str, variable: str, data_type: str = "boolean", default: str = "false", **kw: Any
) -> VariableDef:
    return VariableDef(component, variable, data_type, default, "ReadOnly", persistent=False, live=True, **kw)


def _seconds(
    component: str, variable: str, default: int, low: int = 0, high: int = 86400, **kw: Any
) -> VariableDef:
    return _rw(component, variable, "integer", str(default), unit="s", min_limit=low, max_limit=high, **kw)


def _measurands(component: str, variable: str, default: str = MEASURANDS[0]) -> VariableDef:
    return _rw(component, variable, "MemberList", default, values_list=MEASURANDS)


def _controllers(station: StationInfo, phases: int) -> list[VariableDef]:
    comm, sec, auth, cache = "OCPPCommCtrlr", "SecurityCtrlr", "AuthCtrlr", "AuthCacheCtrlr"
    lal, tx, sampled, aligned = "LocalAuthListCtrlr", "TxCtrlr", "SampledDataCtrlr", "AlignedDataCtrlr"
    res, smart, mon, ddc = "ReservationCtrlr", "SmartChargingCtrlr", "MonitoringCtrlr", "DeviceDataCtrlr"
    te: dict[str, Any] = {"variable_instance": "TransactionEvent"}
    return [
        _seconds(comm, "HeartbeatInterval", 300, low=1),
        _seconds(comm, "MessageTimeout", 30, low=1, high=3600, variable_instance="Default"),
        _rw(comm, "MessageAttempts", "integer", "3", min_limit=1, max_limit=100, **te),
        _seconds(comm, "MessageAttemptInterval", 60, **te),
        _rw(comm, "NetworkConfigurationPriority", "SequenceList", "0", min_limit=1),
        _rw(comm, "NetworkProfileConnectionAttempts", "integer", "3", min_limit=1, max_limit=100),
        _seconds(comm, "OfflineThreshold", 60),
        _rw(comm, "ResetRetries", "integer", "3", min_limit=0, max_limit=10),
        _seconds(comm, "WebSocketPingInterval", 30, high=3600, reboot=True),
        _ro(comm, "FileTransferProtocols", "MemberList", ",".join(PROTOCOLS), values_list=PROTOCOLS),
        _ro(comm, "UnlockOnEVSideDisconnect", "boolean", "true"),
        # Reconnect back-off (Part 4 5.3): 1-4 s first, at most 2^4 + 3 = 19 s by default.
        _seconds(comm, "RetryBackOffRandomRange", 3, high=3600),
        _rw(comm, "RetryBackOffRepeatTimes", "integer", "4", min_limit=0, max_limit=20),
        _seconds(comm, "RetryBackOffWaitMinimum", 1, high=3600),
        _live(comm, "ActiveNetworkProfile", "integer", "0"),
        _ro(comm, "QueueAllMessages", "boolean", "false"),  # only transaction messages are queued
        _ro(sec, "SecurityProfile", "integer", str(station.security_profile), min_limit=0, max_limit=3),
        _live(sec, "Identity", "string", "", max_limit=48),
        _rw(sec, "OrganizationName", "string", station.vendor, max_limit=64),
        _live(sec, "CertificateEntries", "integer", "0"),
        VariableDef(sec, "BasicAuthPassword", "string", "", "WriteOnly", min_limit=16, max_limit=40),
        _ro(sec, "AdditionalRootCertificateCheck", "boolean", "false", preset=True),
        _ro(sec, "MaxCertificateChainSize", "integer", "10000", unit="B", max_limit=10000),
        _rw(sec, "CertSigningWaitMinimum", "integer", "60", unit="s", min_limit=1, max_limit=86400),
        _rw(sec, "CertSigningRepeatTimes", "integer", "3", min_limit=0, max_limit=100),
        _rw(auth, "Enabled", "boolean", "true"),
        _rw(auth, "AuthorizeRemoteStart", "boolean", "false"),
        _rw(auth, "LocalAuthorizeOffline", "boolean", "true"),
        _rw(auth, "LocalPreAuthorize", "boolean", "false"),
        _rw(auth, "OfflineTxForUnknownIdEnabled", "boolean", "false"),
        _ro(auth, "DisableRemoteAuthorization", "boolean", "false"),
        _rw(cache, "Enabled", "boolean", "true"),
        _ro(cache, "Available", "boolean", "true"),
        _seconds(cache, "LifeTime", 86400, high=31536000),
        _ro(cache, "Storage", "integer", "1048576", unit="B"),
        _ro(cache, "Policy", "OptionList", "LRU", values_list=("LRU",)),
        _rw(lal, "Enabled", "boolean", "true"),
        _ro(lal, "Available", "boolean", "true"),
        _live(lal, "Entries", "integer", "0"),
        _ro(lal, "ItemsPerMessage", "integer", "50000"),
        _ro(lal, "BytesPerMessage", "integer", "16777216", unit="B"),
        _ro(lal, "Storage", "integer", "16777216", unit="B"),
        _seconds(tx, "EVConnectionTimeOut", 60, low=1, high=3600),
        _ro(tx, "StopTxOnEVSideDisconnect", "boolean", "true"),
        _rw(tx, "StopTxOnInvalidId", "boolean", "true"),
        _rw(tx, "MaxEnergyOnInvalidId", "integer", "0", unit="Wh", min_limit=0),
        _rw(tx, "TxStartPoint", "MemberList", "PowerPathClosed", values_list=TX_POINTS, min_limit=1),
        _rw(tx, "TxStopPoint", "MemberList", "EVConnected,Authorized", values_list=TX_POINTS, min_limit=1),
        _ro(tx, "TxBeforeAcceptedEnabled", "boolean", "false"),
        _rw(sampled, "Enabled", "boolean", "true"),
        _measurands(sampled, "TxEndedMeasurands"),
        _seconds(sampled, "TxEndedInterval", 60),
        _measurands(sampled, "TxStartedMeasurands"),
        _measurands(sampled, "TxUpdatedMeasurands"),
        _seconds(sampled, "TxUpdatedInterval", 60),
        _ro(sampled, "RegisterValuesWithoutPhases", "boolean", "true"),  # the register is a total
        _rw(aligned, "Enabled", "boolean", "true"),
        _measurands(aligned, "Measurands"),
        _seconds(aligned, "Interval", 0),  # 0: no clock-aligned meter values
        _measurands(aligned, "TxEndedMeasurands"),
        _seconds(aligned, "TxEndedInterval", 0),
        _rw(aligned, "SendDuringIdle", "boolean", "false"),
        _rw(res, "Enabled", "boolean", "true"),
        _ro(res, "Available", "boolean", "true"),
        _ro(res, "NonEvseSpecific", "boolean", "true"),
        _rw(smart, "Enabled", "boolean", "true"),
        _ro(smart, "Available", "boolean", "true"),
        _live(smart, "Entries", "integer", "0", variable_instance="ChargingProfiles"),
        # No ChargingRateChanged TransactionEvents: a limit change is not reported by itself.
        _ro(smart, "LimitChangeSignificance", "decimal", "10", unit="Percent", min_limit=0, max_limit=100),
        _ro(smart, "PeriodsPerSchedule", "integer", "48"),
        _ro(smart, "ProfileStackLevel", "integer", "8"),
        _ro(smart, "RateUnit", "MemberList", "A,W", values_list=("A", "W")),
        _rw(mon, "Enabled", "boolean", "true"),
        _ro(mon, "Available", "boolean", "true"),
        *(
            _ro(mon, name, "integer", value, variable_instance=instance)
            for instance in ("SetVariableMonitoring", "ClearVariableMonitoring")
            for name, value in (("ItemsPerMessage", "20"), ("BytesPerMessage", "65536"))
        ),
        _rw(mon, "OfflineQueuingSeverity", "integer", "2", min_limit=0, max_limit=9),
        _live(mon, "ActiveMonitoringBase", "OptionList", "All", values_list=MONITORING_BASES),
        _rw(mon, "ActiveMonitoringLevel", "integer", "9", min_limit=0, max_limit=9),
        *(
            _ro(ddc, name, "integer", value, variable_instance=instance)
            for instance, items in (("GetReport", "10"), ("GetVariables", "50"), ("SetVariables", "50"))
            for name, value in (("ItemsPerMessage", items), ("BytesPerMessage", "65536"))
        ),
        _ro(ddc, "ValueSize", "integer", "1000"),
        _ro(ddc, "ReportingValueSize", "integer", "1000"),
        _ro(ddc, "ConfigurationValueSize", "integer", "1000"),
        _live("ClockCtrlr", "DateTime", "dateTime", ""),
        _rw("ClockCtrlr", "TimeSource", "SequenceList", "Heartbeat", values_list=("Heartbeat",), min_limit=1),
        _live("ChargingStation", "AvailabilityState", "OptionList", "Available", values_list=AVAILABILITY),
        _ro("ChargingStation", "Available", "boolean", "true"),
        _ro("ChargingStation", "Model", "string", station.model),
        _ro("ChargingStation", "VendorName", "string", station.vendor),
        _ro("ChargingStation", "SerialNumber", "string", station.serial),
        _ro("ChargingStation", "SupplyPhases", "integer", str(phases)),
        _live("ChargingStation", "Problem"),
        _ro("Controller", "FirmwareVersion", "string", station.firmware_version),
        _ro("TokenReader", "Enabled", "boolean", "true"),
        _live("TokenReader", "Problem"),
    ]


def _evse(n: int, info: EvseInfo) -> list[VariableDef]:
    at: dict[str, Any] = {"evse": n}
    plug: dict[str, Any] = {"evse": n, "connector": 1}
    # A station with a plug retention lock has a socket outlet; without, a captive cable.
    connector_type = "sType2" if info.lock_fitted else "cType2"
    watts = info.max_current_a * VOLTAGE_V * info.phases
    defs = [
        _live("EVSE", "AvailabilityState", "OptionList", "Available", values_list=AVAILABILITY, **at),
        _ro("EVSE", "Available", "boolean", "true", **at),
        _live("EVSE", "Power", "decimal", "0", unit="W", min_limit=0, max_limit=watts, **at),
        _ro("EVSE", "SupplyPhases", "integer", str(info.phases), **at),
        _live("EVSE", "Problem", **at),
        _live("Connector", "AvailabilityState", "OptionList", "Available", values_list=AVAILABILITY, **plug),
        _ro("Connector", "Available", "boolean", "true", **plug),
        _ro("Connector", "ConnectorType", "string", connector_type, **plug),
        _ro("Connector", "SupplyPhases", "integer", str(info.phases), **plug),
        _live("PowerContactor", "Active", **at),
        _live("PowerContactor", "Problem", **at),
        _live("PowerContactor", "Tripped", **at),
        _live("RCD", "Tripped", **at),
        _live("RCD", "Problem", **at),
        _live("CPPWMController", "Active", **at),
        _live("CPPWMController", "Problem", **at),
        _live("FiscalMetering", "Problem", **at),
        _live("OverCurrentProtection", "Operated", **at),
    ]
    if info.lock_fitted:
        defs.append(_live("ConnectorPlugRetentionLock", "Problem", **at))
    return defs


def definitions(evses: Mapping[int, EvseInfo], station: StationInfo) -> list[VariableDef]:
    """Every variable of the station, controllers first, then each EVSE in id order."""
    phases = max((info.phases for info in evses.values()), default=1)
    defs = _controllers(station, phases)
    for n in sorted(evses):
        defs.extend(_evse(n, evses[n]))
    return defs


def storage_key(key: Key, attribute: str = "Actual") -> str:
    component, component_instance, evse, connector, variable, variable_instance = key
    where = f"[{component_instance}]" if component_instance else ""
    where += f"@{evse}" if evse is not None else ""
    where += f".{connector}" if connector is not None else ""
    name = f"{variable}[{variable_instance}]" if variable_instance else variable
    return f"{component}{where}/{name}/{attribute}"


def component_json(d: VariableDef) -> dict[str, Any]:
    out: dict[str, Any] = {"name": d.component}
    if d.component_instance is not None:
        out["instance"] = d.component_instance
    if d.evse is not None:
        out["evse"] = {"id": d.evse} if d.connector is None else {"id": d.evse, "connectorId": d.connector}
    return out


def variable_json(d: VariableDef) -> dict[str, Any]:
    if d.variable_instance is None:
        return {"name": d.variable}
    return {"name": d.variable, "instance": d.variable_instance}


def _fold(text: str | None) -> str | None:
    return None if text is None else text.casefold()


ComponentId = tuple[str, str | None, int | None, int | None]


def _component_id(component: Mapping[str, Any]) -> ComponentId:
    """A ComponentType of a request, in the case-insensitive form the lookups use."""
    evse = component.get("evse")
    return (
        str(component["name"]).casefold(),
        _fold(component.get("instance")),
        None if evse is None else evse["id"],
        None if evse is None else evse.get("connectorId"),
    )


def _own_id(d: VariableDef) -> ComponentId:
    return (d.component.casefold(), _fold(d.component_instance), d.evse, d.connector)


def matches(d: VariableDef, component_variable: Mapping[str, Any]) -> bool:
    """Does a ComponentVariableType of GetReport / GetMonitoringReport select ``d``?

    The component matches as in GetVariables; a variable narrows it to that variable (all
    of its instances when the instance is left out).
    """
    if _own_id(d) != _component_id(component_variable["component"]):
        return False
    variable = component_variable.get("variable")
    if variable is None:
        return True
    instance = variable.get("instance")
    return str(variable["name"]).casefold() == d.variable.casefold() and (
        instance is None or instance.casefold() == _fold(d.variable_instance)
    )


class Invalid(ValueError):
    """A value the variable cannot take; ``reason`` is a StatusInfo reason code."""

    def __init__(self, reason: str, info: str) -> None:
        super().__init__(info)
        self.reason = reason
        self.info = info


_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


def _limits(d: VariableDef, amount: float, what: str) -> None:
    if d.min_limit is not None and amount < d.min_limit:
        raise Invalid("ValueTooLow", f"{what} below the minimum {d.min_limit:g}")
    if d.max_limit is not None and amount > d.max_limit:
        raise Invalid("ValueTooHigh", f"{what} above the maximum {d.max_limit:g}")


def normalize(d: VariableDef, value: str) -> str:
    """The value as stored, or ``Invalid`` saying why ``d`` cannot take it."""
    text = value.strip()
    kind = d.data_type
    if kind not in DATA_TYPES:
        raise Invalid("InvalidValue", f"unknown data type {kind}")
    if kind == "boolean":
        if text.lower() not in ("true", "false"):
            raise Invalid("InvalidValue", "expected true or false")
        return text.lower()
    if kind in ("integer", "decimal"):
        if not (_INTEGER if kind == "integer" else _DECIMAL).fullmatch(text):
            raise Invalid("InvalidValue", f"expected a number of type {kind}")
        amount = float(text)
        if not math.isfinite(amount):
            raise Invalid("InvalidValue", "expected a finite number")
        _limits(d, amount, "value")
        return str(int(text)) if kind == "integer" else text
    if kind == "dateTime":
        if not is_datetime(text):
            raise Invalid("InvalidValue", "expected an RFC 3339 date-time with a time zone")
        return text
    if kind == "OptionList":
        if d.values_list and text not in d.values_list:
            raise Invalid("InvalidValue", f"expected one of {','.join(d.values_list)}")
        return text
    if kind in LISTS:
        items = [item.strip() for item in text.split(",")] if text else []
        unknown = [item for item in items if d.values_list and item not in d.values_list]
        if unknown or "" in items:
            raise Invalid("InvalidValue", f"unsupported members: {','.join(unknown) or '(empty)'}")
        if len(set(items)) != len(items):
            raise Invalid("InvalidValue", "a member appears twice")
        value = ",".join(items)
    _limits(d, len(value), "length")
    return value


class DeviceModel:
    """Current values of the device model; ``save(storage_key, value)`` persists a change."""

    def __init__(
        self, defs: Iterable[VariableDef], stored: Mapping[str, str], save: Callable[[str, str], None]
    ) -> None:
        self.defs: tuple[VariableDef, ...] = tuple(defs)
        self._save = save
        self._by_key: dict[Key, VariableDef] = {}
        self._index: dict[tuple[ComponentId, str, str | None], VariableDef] = {}
        self._components: set[ComponentId] = set()
        self._values: dict[tuple[Key, str], str] = {}
        self._getters: dict[Key, Callable[[], str]] = {}
        for d in self.defs:
            if d.key in self._by_key:
                raise ValueError(f"variable defined twice: {storage_key(d.key)}")
            self._by_key[d.key] = d
            self._index[(_own_id(d), d.variable.casefold(), _fold(d.variable_instance))] = d
            self._components.add(_own_id(d))
            for attribute, default in (("Actual", d.default), *d.extra):
                self._values[(d.key, attribute)] = self._restore(d, attribute, default, stored)

    @staticmethod
    def _restore(d: VariableDef, attribute: str, default: str, stored: Mapping[str, str]) -> str:
        text = stored.get(storage_key(d.key, attribute)) if _persisted(d) or d.preset else None
        if text is None:
            return default
        try:
            return normalize(d, text)
        except Invalid:
            return default  # a value from an older table the variable no longer takes

    # -- the station's own use -------------------------------------------------------------

    def live(self, key: Key, getter: Callable[[], str]) -> None:
        """Register where the Actual value of a live variable comes from."""
        if key not in self._by_key:
            raise KeyError(key)
        self._getters[key] = getter

    def definition(self, key: Key) -> VariableDef | None:
        return self._by_key.get(key)

    def find(
        self,
        component: str,
        variable: str,
        *,
        component_instance: str | None = None,
        variable_instance: str | None = None,
        evse: int | None = None,
        connector: int | None = None,
    ) -> VariableDef | None:
        where = (component.casefold(), _fold(component_instance), evse, connector)
        return self._index.get((where, variable.casefold(), _fold(variable_instance)))

    def actual(self, key: Key, attribute: str = "Actual") -> str:
        """The value of an attribute (KeyError if unknown); a registered getter wins."""
        getter = self._getters.get(key) if attribute == "Actual" else None
        return getter() if getter is not None else self._values[(key, attribute)]

    def value(self, component: str, variable: str, **where: Any) -> str:
        d = self.find(component, variable, **where)
        if d is None:
            raise KeyError((component, variable, where))
        return self.actual(d.key)

    def flag(self, component: str, variable: str, **where: Any) -> bool:
        return self.value(component, variable, **where).strip().lower() == "true"

    def number(self, component: str, variable: str, **where: Any) -> float:
        """An int for an integer variable."""
        d = self.find(component, variable, **where)
        if d is None:
            raise KeyError((component, variable, where))
        amount = float(self.actual(d.key))
        return int(amount) if d.data_type == "integer" else amount

    def items(self, component: str, variable: str, **where: Any) -> list[str]:
        return [item.strip() for item in self.value(component, variable, **where).split(",") if item.strip()]

    def set_actual(self, key: Key, value: str) -> None:
        """The station itself changes a value: no validation; persisted unless live or ReadOnly."""
        d = self._by_key[key]
        self._values[(key, "Actual")] = value
        if _persisted(d) and not d.live:
            self._save(storage_key(key), value)

    def reporting_size(self) -> int:
        """The most characters of a reported value (GetVariableResult, ReportData, EventData)."""
        return self._size("ReportingValueSize")

    def _size(self, which: str) -> int:
        """The most characters a value may have: the smaller of ValueSize and ``which``."""
        names = [name for name in ("ValueSize", which) if self.find("DeviceDataCtrlr", name)]
        sizes = [int(self.number("DeviceDataCtrlr", name)) for name in names]
        return min(sizes, default=2500 if which == "ReportingValueSize" else 1000)

    # -- B06 GetVariables, B05 SetVariables ------------------------------------------------

    def lookup(
        self, component: Mapping[str, Any], variable: Mapping[str, Any]
    ) -> tuple[str, VariableDef | None]:
        """("Accepted", def) or ("UnknownComponent" | "UnknownVariable", None)."""
        where = _component_id(component)
        if where not in self._components:
            return "UnknownComponent", None
        d = self._index.get((where, str(variable["name"]).casefold(), _fold(variable.get("instance"))))
        return ("Accepted", d) if d is not None else ("UnknownVariable", None)

    def get(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """One GetVariableData -> one GetVariableResult."""
        result = _echo(request)
        status, d = self.lookup(request["component"], request["variable"])
        attribute = request.get("attributeType", "Actual")
        result["attributeStatus"] = status
        if d is not None and attribute not in d.attributes:
            result["attributeStatus"] = "NotSupportedAttributeType"
        elif d is not None and d.mutability == "WriteOnly":
            result["attributeStatus"] = "Rejected"
            result["attributeStatusInfo"] = {"reasonCode": "WriteOnly", "additionalInfo": "write-only value"}
        elif d is not None:
            result["attributeValue"] = self.actual(d.key, attribute)[: self.reporting_size()]
        return result

    def set(self, request: Mapping[str, Any]) -> tuple[dict[str, Any], VariableDef | None]:
        """One SetVariableData -> (SetVariableResult, the def that changed or None)."""
        result = _echo(request)
        status, d = self.lookup(request["component"], request["variable"])
        attribute = request.get("attributeType", "Actual")
        result["attributeStatus"] = status
        if d is None:
            return result, None
        if attribute not in d.attributes:
            result["attributeStatus"] = "NotSupportedAttributeType"
            return result, None
        try:
            if d.mutability == "ReadOnly" or d.live:
                raise Invalid("ReadOnly", "the variable is read-only")
            text = str(request["attributeValue"])
            if len(text) > self._size("ConfigurationValueSize"):
                raise Invalid("TooLargeElement", "longer than ConfigurationValueSize")
            value = normalize(d, text)
        except Invalid as why:
            result["attributeStatus"] = "Rejected"
            result["attributeStatusInfo"] = {"reasonCode": why.reason, "additionalInfo": why.info[:512]}
            return result, None
        self._values[(d.key, attribute)] = value
        if _persisted(d):
            self._save(storage_key(d.key, attribute), value)
        result["attributeStatus"] = "RebootRequired" if d.reboot else "Accepted"
        return result, d

    # -- B07 GetBaseReport, B08 GetReport --------------------------------------------------

    def report(
        self,
        base: str | None = None,
        criteria: Sequence[str] = (),
        component_variables: Sequence[Mapping[str, Any]] = (),
    ) -> list[dict[str, Any]]:
        """ReportData items: of a base report, or (base None) of GetReport's filters."""
        chosen = [d for d in self.defs if self._in_base(d, base)]
        if criteria:
            meeting = {
                _own_id(d)
                for d in self.defs
                if d.variable in criteria and d.variable_instance is None and self._true(d)
            }
            chosen = [d for d in chosen if _own_id(d) in meeting]
        if component_variables:
            chosen = [d for d in chosen if any(matches(d, cv) for cv in component_variables)]
        return [self._report_data(d) for d in chosen]

    def _true(self, d: VariableDef) -> bool:
        return d.data_type == "boolean" and self.actual(d.key).strip().lower() == "true"

    def _in_base(self, d: VariableDef, base: str | None) -> bool:
        if base in (None, "FullInventory"):
            return True
        if base == "ConfigurationInventory":
            return d.mutability != "ReadOnly"
        if base == "SummaryInventory":
            if d.variable == "AvailabilityState":
                return True
            if d.variable == "Available":
                return self.find(d.component, "AvailabilityState", **_where(d)) is not None
            return d.variable in ABNORMAL and self._true(d)
        raise ValueError(f"unknown report base {base}")

    def _report_data(self, d: VariableDef) -> dict[str, Any]:
        size = self.reporting_size()
        attributes = []
        for attribute in d.attributes:
            item: dict[str, Any] = {"type": attribute}
            if d.mutability != "WriteOnly":
                item["value"] = self.actual(d.key, attribute)[:size]
            item.update(mutability=d.mutability, persistent=d.persistent, constant=d.constant)
            attributes.append(item)
        characteristics: dict[str, Any] = {"dataType": d.data_type}
        if d.unit is not None:
            characteristics["unit"] = d.unit
        if d.min_limit is not None:
            characteristics["minLimit"] = _number(d.min_limit)
        if d.max_limit is not None:
            characteristics["maxLimit"] = _number(d.max_limit)
        if d.values_list:
            characteristics["valuesList"] = ",".join(d.values_list)
        characteristics["supportsMonitoring"] = d.monitorable
        return {
            "component": component_json(d),
            "variable": variable_json(d),
            "variableAttribute": attributes,
            "variableCharacteristics": characteristics,
        }


def _persisted(d: VariableDef) -> bool:
    return d.persistent and d.mutability != "ReadOnly"


def _where(d: VariableDef) -> dict[str, Any]:
    return {"component_instance": d.component_instance, "evse": d.evse, "connector": d.connector}


def _number(amount: float) -> float:
    return int(amount) if float(amount).is_integer() else amount


def _echo(request: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"component": dict(request["component"]), "variable": dict(request["variable"])}
    if "attributeType" in request:
        result["attributeType"] = request["attributeType"]
    return result


def __getattr__(name: str) -> Any:
    # ``Monitors`` lives in controller.ocpp.v201.monitoring (which imports this module); reachable
    # here too, for callers that use ``device_model.Monitors``.
    if name == "Monitors":
        from controller.ocpp.v201.monitoring import Monitors

        return Monitors
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
