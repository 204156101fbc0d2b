"""Helpers the OCPP 2.0.1 tests share, in-process (``tests.inproc``) and end to end
(``tests.ocpp_harness``): payload builders, timeline readers and the checks of what the
station sent. Only the pure part lives here; the thin sync or async wrappers that talk to
a bench stay with their tests.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from controller.io.storage import parse_timestamp
from controller.ocpp.ocppj import is_datetime
from tests.ocpp_harness import TOKEN
from tests.ocpp_helpers import Recorded, csms_errors, since

PASSWORD = "S3cret-Basic-Auth-Pw42"  # 16..40 characters: a valid BasicAuthPassword
Z_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

# -- payloads --------------------------------------------------------------------------------


def id_token(token: str = TOKEN) -> dict[str, str]:
    return {"idToken": token, "type": "ISO14443"}


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


def padded(payload: dict[str, Any], size: int) -> dict[str, Any]:
    """``payload`` with a customData member that makes its compact JSON exactly ``size`` bytes."""
    padded = {**payload, "customData": {"vendorId": "org.example.pad", "pad": ""}}
    short = size - len(json.dumps(padded, separators=(",", ":")))
    assert short >= 0
    padded["customData"]["pad"] = "x" * short
    return padded


def network_profile(slot: int, security_profile: int, url: str = "ws://127.0.0.1:9/ocpp") -> dict[str, Any]:
    """A SetNetworkProfile request for ``slot``."""
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


# -- the station's frames against the schemas ---------------------------------------------------


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


def assert_station_frames_valid(b: Recorded) -> None:
    """Every CALL and CALLRESULT the station sent validates against the OCA 2.0.1 schema,
    date-times included; and the CSMS's library refused none of the station's CALLs."""
    checked = 0
    for e in b.csms.timeline:
        if e.direction != "in" or e.kind not in ("call", "result") or not isinstance(e.payload, dict):
            continue
        if not e.action:
            continue
        errors = list(_schema_validator(e.action, e.kind == "result").iter_errors(e.payload))
        assert errors == [], f"{e.action} ({e.kind}) breaks the schema: {errors[0].message}: {e.payload}"
        checked += 1
    assert checked > 0
    assert csms_errors(b) == []


# -- TransactionEvents -----------------------------------------------------------------------------

_FORMATS = jsonschema.FormatChecker(formats=())
_FORMATS.checks("date-time")(is_datetime)
_SCHEMA = json.loads(
    resources.files("ocpp").joinpath("v201", "schemas", "TransactionEventRequest.json").read_text("utf-8")
)
EVENT_SCHEMA = jsonschema.Draft4Validator(_SCHEMA, format_checker=_FORMATS)


def events(b: Recorded, tx_id: str | None = None, after: int = 0) -> list[dict[str, Any]]:
    """The TransactionEvents received (of one transaction), in arrival order."""
    return since(
        b,
        "TransactionEvent",
        after,
        lambda p: tx_id is None or p["transactionInfo"]["transactionId"] == tx_id,
    )


def check_events(b: Recorded, retries: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Every TransactionEvent so far: schema-valid, and per transaction seqNo 0, 1, 2, ...
    without a gap, one Started first, at most one Ended and nothing after it.

    ``retries``: the same event may arrive again right after itself (a retried delivery).
    Returns the events by transactionId, retries collapsed.
    """
    by_tx: dict[str, list[dict[str, Any]]] = {}
    for payload in events(b):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in EVENT_SCHEMA.iter_errors(payload)]
        assert not errors, f"invalid TransactionEvent {payload}: {errors}"
        tx_id = payload["transactionInfo"]["transactionId"]
        history = by_tx.setdefault(tx_id, [])
        if retries and history and history[-1] == payload:
            continue
        assert payload["seqNo"] == len(history), f"{tx_id}: seqNo {payload['seqNo']} after {len(history)}"
        if history:
            assert payload["eventType"] != "Started", f"{tx_id}: a second Started {payload}"
            assert history[-1]["eventType"] != "Ended", f"{tx_id}: {payload} after its Ended"
        else:
            assert payload["eventType"] == "Started", f"{tx_id} begins with {payload}"
        assert ("stoppedReason" in payload["transactionInfo"]) == (payload["eventType"] == "Ended"), payload
        if history:
            assert parse_timestamp(payload["timestamp"]) >= parse_timestamp(history[-1]["timestamp"]), payload
        history.append(payload)
    return by_tx


def energy(payload: dict[str, Any], context: str | None = None) -> float:
    """The Energy.Active.Import.Register of the event's last meterValue (in Wh)."""
    for sample in payload["meterValue"][-1]["sampledValue"]:
        if sample.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register":
            if context is not None:
                assert sample.get("context") == context, payload
            assert sample.get("unitOfMeasure", {}).get("unit", "Wh") == "Wh"
            return float(sample["value"])
    raise AssertionError(f"no energy register in {payload}")


def tx_of(event: dict[str, Any]) -> str:
    tx_id: str = event["transactionInfo"]["transactionId"]
    return tx_id


def reasons(payload: dict[str, Any]) -> tuple[str, str | None]:
    return payload["triggerReason"], payload["transactionInfo"].get("stoppedReason")
