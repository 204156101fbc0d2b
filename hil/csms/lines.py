"""One human-friendly line per timeline entry (what ``python -m hil.csms`` prints)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hil.csms.timeline import Entry


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _sampled(sample: dict[str, Any]) -> str:
    """One sampled value: 1.6 has a ``unit``, 2.0.1 a ``unitOfMeasure`` with a power-of-ten multiplier."""
    measurand = sample.get("measurand", "Energy.Active.Import.Register")
    unit_of_measure = _dict(sample.get("unitOfMeasure"))
    unit = sample.get("unit", unit_of_measure.get("unit", "Wh"))
    value = _number(sample.get("value"))
    if value is not None:
        value *= 10 ** (_number(unit_of_measure.get("multiplier")) or 0)
    phase = f" {sample['phase']}" if "phase" in sample else ""
    if value is not None and measurand == "Power.Active.Import" and unit in ("W", "kW"):
        return f"{value / 1000 if unit == 'W' else value:.1f} kW{phase}"
    if value is not None and measurand == "Energy.Active.Import.Register" and unit in ("Wh", "kWh"):
        return f"{value * 1000 if unit == 'kWh' else value:.1f} Wh{phase}"
    return f"{measurand} {sample.get('value')} {unit}{phase}"


def _last_samples(meter_values: Any) -> list[dict[str, Any]]:
    """The sampled values of the last meter value of a list."""
    last = _dict(meter_values[-1]) if isinstance(meter_values, list) and meter_values else {}
    return [s for s in last.get("sampledValue", []) if isinstance(s, dict)]


def _variable(item: dict[str, Any]) -> str:
    """A 2.0.1 component and variable: ``Component[evse,connector]:instance.Variable:instance``."""
    component, variable = _dict(item.get("component")), _dict(item.get("variable"))
    evse = _dict(component.get("evse"))
    where = ",".join(str(evse[k]) for k in ("id", "connectorId") if k in evse)
    text = str(component.get("name")) + (f"[{where}]" if where else "")
    text += f":{component['instance']}" if "instance" in component else ""
    text += f".{variable.get('name')}"
    return text + (f":{variable['instance']}" if "instance" in variable else "")


def _items(p: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [item for item in p.get(key) or [] if isinstance(item, dict)]


def _brief(payload: dict[str, Any]) -> str:
    """Top-level fields as ``key=value``, status first and shortened (a CSR or an EXI blob is long)."""
    parts = [str(payload["status"])] if isinstance(payload.get("status"), str) else []
    for key, value in payload.items():
        if key == "status" and parts:
            continue
        if isinstance(value, dict):
            value = value.get("status", value.get("idToken", "{...}"))
        elif isinstance(value, list):
            value = f"[{len(value)}]"
        text = str(value)
        parts.append(f"{key}={text if len(text) <= 60 else text[:57] + '...'}")
    return " ".join(parts)


def _boot_line(p: dict[str, Any]) -> str:
    station = p.get("chargingStation")
    if isinstance(station, dict):  # 2.0.1
        line = f"vendor={station.get('vendorName')} model={station.get('model')}"
        firmware, reason = station.get("firmwareVersion"), f" reason={p.get('reason')}"
    else:
        line = f"vendor={p.get('chargePointVendor')} model={p.get('chargePointModel')}"
        firmware, reason = p.get("firmwareVersion"), ""
    return line + (f" firmware={firmware}" if firmware else "") + reason


def _status_line(p: dict[str, Any]) -> str:
    if "connectorStatus" in p:  # 2.0.1
        return f"evse {p.get('evseId')}/{p.get('connectorId')} {p.get('connectorStatus')}"
    error = f" ({p.get('errorCode')})" if p.get("errorCode", "NoError") != "NoError" else ""
    return f"connector {p.get('connectorId')}: {p.get('status')}{error}"


def _meter_line(p: dict[str, Any]) -> str:
    values = ", ".join(_sampled(s) for s in _last_samples(p.get("meterValue")))
    if "evseId" in p:  # 2.0.1
        return f"evse {p['evseId']}: {values}"
    tx = f" tx {p['transactionId']}" if "transactionId" in p else ""
    return f"connector {p.get('connectorId')}{tx}: {values}"


def _authorize_line(p: dict[str, Any]) -> str:
    token = p.get("idToken")
    if isinstance(token, dict):  # 2.0.1
        return f"idToken {token.get('idToken')} ({token.get('type')})"
    return f"idTag {p.get('idTag')}"


def _transaction_line(p: dict[str, Any]) -> str:
    """``Started tx=<id> seq=<n> trigger=<reason> <chargingState> [offline] <energy>``, then extras."""
    info = _dict(p.get("transactionInfo"))
    parts = [
        str(p.get("eventType")),
        f"tx={info.get('transactionId')}",
        f"seq={p.get('seqNo')}",
        f"trigger={p.get('triggerReason')}",
    ]
    parts += [str(info["chargingState"])] if "chargingState" in info else []
    parts += ["offline"] if p.get("offline") else []
    parts += [
        _sampled(s)
        for s in _last_samples(p.get("meterValue"))
        if s.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"
        and "phase" not in s
    ]
    evse = _dict(p.get("evse"))
    parts += [f"evse={evse['id']}"] if "id" in evse else []
    token = _dict(p.get("idToken"))
    parts += [f"idToken={token['idToken']}"] if "idToken" in token else []
    parts += [f"reason={info['stoppedReason']}"] if "stoppedReason" in info else []
    return " ".join(parts)


def _report_line(p: dict[str, Any], key: str, noun: str) -> str:
    tbc = " tbc" if p.get("tbc") else ""
    return f"requestId={p.get('requestId')} seqNo={p.get('seqNo')}{tbc} {len(_items(p, key))} {noun}"


def _token_status(p: dict[str, Any]) -> Any:
    """The status of a 1.6 idTagInfo or a 2.0.1 idTokenInfo, or None."""
    return _dict(p.get("idTagInfo", p.get("idTokenInfo"))).get("status")


def _status_or_brief(p: dict[str, Any]) -> str:
    status = _token_status(p)
    return str(status) if status else _brief(p) or "ok"


# action -> the one-line summary of a CALL, of both versions (told apart by their fields).
_CALL_LINES: dict[str, Callable[[dict[str, Any]], str]] = {
    "BootNotification": _boot_line,
    "StatusNotification": _status_line,
    "MeterValues": _meter_line,
    "Authorize": _authorize_line,
    "StartTransaction": lambda p: (
        f"connector {p.get('connectorId')} idTag {p.get('idTag')} meterStart {p.get('meterStart')} Wh"
    ),
    "StopTransaction": lambda p: (
        f"transaction {p.get('transactionId')} meterStop {p.get('meterStop')} Wh"
        + (f" reason {p['reason']}" if "reason" in p else "")
    ),
    "TransactionEvent": _transaction_line,
    "NotifyEvent": lambda p: ", ".join(
        f"{_variable(e)}={e.get('actualValue')}" for e in _items(p, "eventData")
    ),
    "NotifyReport": lambda p: _report_line(p, "reportData", "items"),
    "NotifyMonitoringReport": lambda p: _report_line(p, "monitor", "monitors"),
    "GetVariables": lambda p: ", ".join(_variable(i) for i in _items(p, "getVariableData")),
    "SetVariables": lambda p: ", ".join(
        f"{_variable(i)}={i.get('attributeValue')}" for i in _items(p, "setVariableData")
    ),
}

# action -> the one-line summary of a CALLRESULT.
_RESULT_LINES: dict[str, Callable[[dict[str, Any]], str]] = {
    "BootNotification": lambda p: f"{p.get('status')} interval={p.get('interval')}",
    "Heartbeat": lambda p: str(p.get("currentTime")),
    "StartTransaction": lambda p: f"transaction {p.get('transactionId')} ({_token_status(p)})",
    "Authorize": _status_or_brief,
    "StopTransaction": _status_or_brief,
    "TransactionEvent": _status_or_brief,
    "GetVariables": lambda p: ", ".join(
        _variable(r)
        + (f"={r['attributeValue']}" if "attributeValue" in r else "")
        + f" {r.get('attributeStatus')}"
        for r in _items(p, "getVariableResult")
    ),
    "SetVariables": lambda p: ", ".join(
        f"{_variable(r)} {r.get('attributeStatus')}" for r in _items(p, "setVariableResult")
    ),
}


def _call_summary(action: str, p: dict[str, Any]) -> str:
    line = _CALL_LINES.get(action)
    return line(p) if line is not None else _brief(p)


def _result_summary(action: str, p: dict[str, Any]) -> str:
    line = _RESULT_LINES.get(action)
    return line(p) if line is not None else _brief(p) or "ok"


def _summary(line: Callable[[str, dict[str, Any]], str], action: str, p: dict[str, Any]) -> str:
    """A summary line; a payload too malformed for it (it may not be validated yet) gets the brief one."""
    try:
        return line(action, p)
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return _brief(p)


def describe(entry: Entry) -> str:
    """A one-line, human-friendly description of a timeline entry."""
    p = entry.payload
    arrow = "->" if entry.direction == "in" else "<-"
    head = f"{entry.station} {arrow} {entry.action or '?'}"
    if isinstance(p, str):
        text = p if len(p) <= 100 else p[:97] + "..."
        return f"{entry.station} {arrow} raw frame: {text!r}"
    if entry.kind == "call":
        summary = _summary(_call_summary, entry.action, p)
        return f"{head}  {summary}" if summary else head
    if entry.kind == "result":
        return f"{head}: {_summary(_result_summary, entry.action, p) or 'ok'}"
    if entry.kind == "error":
        return f"{head}: CALLERROR {p.get('code')} {p.get('description')!r}"
    if entry.kind == "connect":
        tls = _dict(p.get("tls"))
        cert = _dict(tls.get("client_cert"))
        extra = f", {tls.get('version')}" if tls else ""
        extra += f", client certificate {cert.get('commonName')}" if cert else ""
        return f"{entry.station} connected ({p.get('subprotocol')}, {p.get('path')}{extra})"
    if entry.kind == "disconnect":
        reason = f" {p['reason']}" if p.get("reason") else ""
        return f"{entry.station} disconnected (code {p.get('code')}{reason})"
    if "status" not in p:
        return f"{entry.station or '?'} refused: TLS handshake failed ({p.get('error')}): {p.get('reason')}"
    return f"{entry.station or '?'} refused: HTTP {p.get('status')} {p.get('reason')}"
