"""OCPP-J framing and validation, free of I/O.

An OCPP-J frame is a JSON array: ``[2, id, action, payload]`` (CALL), ``[3, id,
payload]`` (CALLRESULT) or ``[4, id, code, description, details]`` (CALLERROR). This
module turns text into those messages and back, validates every payload against the
official OCA JSON schemas shipped with the ``ocpp`` package (date-times included, which
the package leaves unchecked; compiled by ``controller.ocpp.schema``) and names errors in the
words of the version spoken.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from controller.ocpp.schema import Check, Repair, compile_schema, repairing

log = logging.getLogger(__name__)

CALL, CALLRESULT, CALLERROR = 2, 3, 4
SUBPROTOCOLS = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}

# Error codes by meaning, in each version's spelling (1.6 keeps its typos).
_SHARED_NAMES = {
    "property": "PropertyConstraintViolation",
    "type": "TypeConstraintViolation",
    "protocol": "ProtocolError",
    "not_implemented": "NotImplemented",
    "not_supported": "NotSupported",
    "internal": "InternalError",
    "security": "SecurityError",
    "generic": "GenericError",
}
ERROR_NAMES: dict[str, dict[str, str]] = {
    "1.6": {
        **_SHARED_NAMES,
        "format": "FormationViolation",
        "occurrence": "OccurenceConstraintViolation",
        "message_type": "ProtocolError",
    },
    "2.0.1": {
        **_SHARED_NAMES,
        "format": "FormatViolation",
        "occurrence": "OccurrenceConstraintViolation",
        "message_type": "MessageTypeNotSupported",
    },
}

# Which schema keyword failed -> which error.
_KEYWORD_ERRORS = {
    "required": "occurrence",
    "minItems": "occurrence",
    "maxItems": "occurrence",
    "type": "type",
    "additionalProperties": "format",
}

# A frame this long is parsed in pieces (see ``loads``).
LARGE_FRAME = 32 * 1024
_SPLIT_DEPTH = 3  # frame -> payload -> member -> its items: each item parsed whole
_WHITESPACE = json.decoder.WHITESPACE  # type: ignore[attr-defined]
_DECODER = json.JSONDecoder()

_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", re.IGNORECASE)


def is_datetime(value: object) -> bool:
    """RFC 3339 date-time with a timezone, as OCPP requires."""
    if not isinstance(value, str):
        return True  # the "type" keyword reports that
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


_FORMATS = {"date-time": is_datetime}  # "uri" is left unchecked, as the ``ocpp`` package does


def loads(text: str | bytes) -> Any:
    """``json.loads``, but a large text is parsed in pieces.

    ``json.loads`` runs in C without releasing the GIL: a 10,000-entry SendLocalList would
    hold the control thread off for 20 ms here and several times that on a Pi. The
    containers of the first ``_SPLIT_DEPTH`` levels are walked in Python instead, each
    value below them parsed in C, so the interpreter can switch threads between values.
    """
    if len(text) < LARGE_FRAME:
        return json.loads(text)
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    value, end = _value(text, _WHITESPACE.match(text, 0).end(), 0)
    end = _WHITESPACE.match(text, end).end()
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def _value(text: str, at: int, depth: int) -> tuple[Any, int]:
    opening = text[at : at + 1]
    if depth >= _SPLIT_DEPTH or opening not in ("[", "{"):
        return _DECODER.raw_decode(text, at)
    closing = "]" if opening == "[" else "}"
    items: list[Any] = []
    members: dict[str, Any] = {}
    at = _WHITESPACE.match(text, at + 1).end()
    if text[at : at + 1] == closing:
        return (items if opening == "[" else members), at + 1
    while True:
        if opening == "{":
            if text[at : at + 1] != '"':
                raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, at)
            key, at = json.decoder.scanstring(text, at + 1)  # type: ignore[attr-defined]
            at = _WHITESPACE.match(text, at).end()
            if text[at : at + 1] != ":":
                raise json.JSONDecodeError("Expecting ':' delimiter", text, at)
            at = _WHITESPACE.match(text, at + 1).end()
            members[key], at = _value(text, at, depth + 1)
        else:
            item, at = _value(text, at, depth + 1)
            items.append(item)
        at = _WHITESPACE.match(text, at).end()
        separator = text[at : at + 1]
        if separator == closing:
            return (items if opening == "[" else members), at + 1
        if separator != ",":
            raise json.JSONDecodeError(f"Expecting ',' delimiter or {closing!r}", text, at)
        at = _WHITESPACE.match(text, at + 1).end()


class RpcError(Exception):
    """A request we answer with a CALLERROR; ``kind`` is a key of ``ERROR_NAMES``."""

    def __init__(self, kind: str, description: str = "", details: dict[str, Any] | None = None) -> None:
        super().__init__(description or kind)
        self.kind = kind
        self.description = description[:255]
        self.details = details or {}


@dataclass(frozen=True, slots=True)
class Call:
    unique_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallResult:
    unique_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallError:
    unique_id: str
    code: str
    description: str
    details: dict[str, Any] = field(default_factory=dict)


Message = Call | CallResult | CallError


class FrameError(Exception):
    """A frame we cannot use; ``reply`` is the CALLERROR to send back, if any."""

    def __init__(self, reason: str, reply: str | None = None) -> None:
        super().__init__(reason)
        self.reply = reply


def _schema_name(version: str, action: str, response: bool) -> str:
    if version == "1.6":
        return f"{action}Response.json" if response else f"{action}.json"
    return f"{action}{'Response' if response else 'Request'}.json"


def _schemas(version: str) -> Traversable:
    return resources.files("ocpp").joinpath({"1.6": "v16", "2.0.1": "v201"}[version], "schemas")


@cache
def _validator(version: str, action: str, response: bool, lenient: bool = False) -> Check | None:
    path = _schemas(version).joinpath(_schema_name(version, action, response))
    if not path.is_file():
        return None
    schema = json.loads(path.read_text(encoding="utf-8"))
    # The 2.0.1 files say draft-06; nothing in them differs from draft-04 in effect.
    if not lenient:
        return compile_schema(schema, _FORMATS)
    # An answer to our own request may carry members the schema does not name: they are
    # dropped (see ``check``); a CALL with one is still refused, as Part 4 ch. 9 asks.
    return compile_schema(schema, _FORMATS, _REPAIRS, open_objects=response)


def _naive_as_utc(value: Any) -> Any:
    """A date-time without a UTC offset (``datetime.isoformat()`` of a naive time), read as UTC."""
    if isinstance(value, str) and is_datetime(value + "Z"):
        return value + "Z"
    return None


_REPAIRS = {"date-time": _naive_as_utc}
_warned: set[tuple[str, str, str]] = set()
_MAX_WARNED = 1000  # member names come from the CSMS: the memory of warnings is bounded


def _leniency(action: str, repairs: list[Repair]) -> None:
    """One journal warning per action, member and leniency (every Heartbeat would repeat it)."""
    for repair in repairs:
        name = str(repair.path[-1])[:64]
        if (action, name, repair.kind) in _warned or len(_warned) >= _MAX_WARNED:
            continue
        _warned.add((action, name, repair.kind))
        if repair.kind == "additionalProperties":
            log.warning("%s from the CSMS has a member %r the schema does not know; ignored", action, name)
        else:
            log.warning("%s from the CSMS: %s %r has no UTC offset; taken as UTC", action, name, repair.value)


def check(version: str, action: str, payload: Any, response: bool = False, lenient: bool = False) -> None:
    """Raise ``RpcError`` naming what is wrong with ``payload``.

    ``lenient`` (for what the CSMS sends) first repairs the harmless deviations listed in
    docs/ocpp16.md ("Liberal in what it accepts"), in place, with one journal warning each.
    """
    validator = _validator(version, action, response, lenient)
    if validator is None:
        raise RpcError("not_implemented", f"unknown action {action}")
    if lenient:
        repairs: list[Repair] = []
        with repairing(repairs):
            error = validator(payload)
        if repairs:
            _leniency(action, repairs)
    else:
        error = validator(payload)
    if error is None:
        return
    kind = _KEYWORD_ERRORS.get(error.keyword, "property")
    where = "/".join(str(p) for p in error.path) or "payload"
    raise RpcError(kind, f"{where}: {error.message}"[:255])


class Codec:
    """Encode and decode the frames of one OCPP version."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.names = ERROR_NAMES[version]

    def new_id(self) -> str:
        return str(uuid.uuid4())

    def call(self, action: str, payload: dict[str, Any], unique_id: str | None = None) -> tuple[str, str]:
        """(unique id, frame) for a CALL; the payload must validate (a failure is our bug)."""
        check(self.version, action, payload)
        unique_id = unique_id or self.new_id()
        return unique_id, json.dumps([CALL, unique_id, action, payload], separators=(",", ":"))

    def result(self, call: Call, payload: dict[str, Any]) -> str:
        check(self.version, call.action, payload, response=True)
        return json.dumps([CALLRESULT, call.unique_id, payload], separators=(",", ":"))

    def error(self, unique_id: str, kind: str, description: str = "", details: Any = None) -> str:
        code = self.names[kind]
        return json.dumps(
            [CALLERROR, unique_id, code, description[:255], details or {}], separators=(",", ":")
        )

    def decode(self, text: str | bytes) -> Message:
        """Parse one frame; ``FrameError`` for anything unusable (with a reply when one is due)."""
        try:
            frame = loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            reply = self.error("-1", "format", "not JSON") if self.version == "2.0.1" else None
            raise FrameError(f"not JSON: {exc}", reply) from exc
        if not isinstance(frame, list) or len(frame) < 3 or not isinstance(frame[1], str):
            reply = self.error("-1", "format", "not an OCPP-J frame") if self.version == "2.0.1" else None
            raise FrameError("not an OCPP-J message array", reply)
        kind, unique_id = frame[0], frame[1]
        if kind == CALL:
            if len(frame) != 4 or not isinstance(frame[2], str):
                raise FrameError("malformed CALL", self.error(unique_id, "format", "CALL needs 4 elements"))
            if not isinstance(frame[3], dict):
                raise FrameError("CALL payload not an object", self.error(unique_id, "format", "payload"))
            return Call(unique_id, frame[2], frame[3])
        if kind == CALLRESULT:
            if len(frame) != 3 or not isinstance(frame[2], dict):
                raise FrameError("malformed CALLRESULT")
            return CallResult(unique_id, frame[2])
        if kind == CALLERROR:
            if len(frame) < 4:
                raise FrameError("malformed CALLERROR")
            details = frame[4] if len(frame) > 4 and isinstance(frame[4], dict) else {}
            return CallError(unique_id, str(frame[2]), str(frame[3]) if len(frame) > 3 else "", details)
        raise FrameError(
            f"unknown message type {kind!r}",
            self.error(unique_id, "message_type", f"message type {kind!r} unknown"),
        )

    def validate_call(self, call: Call) -> None:
        check(self.version, call.action, call.payload, lenient=True)

    def validate_result(self, action: str, payload: dict[str, Any]) -> None:
        check(self.version, action, payload, response=True, lenient=True)
