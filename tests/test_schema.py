"""controller.ocpp.schema against jsonschema's Draft4Validator on the OCA schemas: the same
verdict on every payload, and the error reported is one jsonschema finds too."""

from __future__ import annotations

import json
from datetime import UTC
from functools import cache
from importlib import resources
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator, FormatChecker

from controller.ocpp import ocppj
from controller.ocpp.schema import SchemaError, compile_schema

SCHEMA_FILES = sorted(
    (folder, path.name)
    for folder in ("v16", "v201")
    for path in resources.files("ocpp").joinpath(folder, "schemas").iterdir()
    if path.name.endswith(".json")
)
FORMATS = {"date-time": ocppj.is_datetime}


@cache
def load(folder: str, name: str) -> dict[str, Any]:
    text = resources.files("ocpp").joinpath(folder, "schemas", name).read_text(encoding="utf-8")
    return dict(json.loads(text))


def reference(schema: dict[str, Any]) -> Draft4Validator:
    checker = FormatChecker(formats=())
    checker.checks("date-time")(ocppj.is_datetime)
    return Draft4Validator(schema, format_checker=checker)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
any_json = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
date_times = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.sampled_from(["2026-01-01T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00", "yesterday"]),
)


def payloads(schema: dict[str, Any], document: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Mostly valid values for ``schema``, with wrong ones mixed in at every level."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/definitions/")
        return st.deferred(lambda: payloads(document["definitions"][name], document, depth + 1))
    kind = schema.get("type")
    strategy: st.SearchStrategy[Any]
    if "enum" in schema:
        strategy = st.one_of(st.sampled_from(schema["enum"]), st.text(max_size=4))
    elif kind == "string":
        if schema.get("format") == "date-time":
            strategy = date_times
        else:
            limit = schema.get("maxLength", 20)
            at_limit = st.sampled_from([limit, limit + 1]).map(lambda n: "x" * n)
            strategy = st.text(max_size=min(limit, 10)) | at_limit
    elif kind == "integer":
        strategy = st.integers(-5, 10**6) | st.sampled_from([1.0, 2.5, True])
    elif kind == "number":
        edges = st.sampled_from([0.1, 0.3, 1.5, 100.0, 100.1, False, 1e308, -1e308])
        strategy = st.integers(-5, 200) | st.floats(-10, 200) | edges
    elif kind == "boolean":
        strategy = st.booleans() | st.sampled_from([0, 1])
    elif kind == "array":
        low = schema.get("minItems", 0)
        high = schema.get("maxItems", low + 3)
        item = payloads(schema.get("items", {}), document, depth + 1)
        strategy = st.lists(item, min_size=max(0, low - 1), max_size=min(high + 1, low + 3))
    elif kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        if depth > 6:
            return st.fixed_dictionaries({})
        members = {name: payloads(sub, document, depth + 1) for name, sub in properties.items()}
        strategy = st.fixed_dictionaries(
            {name: members[name] for name in required if name in members},
            optional={
                **{name: member for name, member in members.items() if name not in required},
                "unexpectedKey": st.integers(),
            },
        )
    else:
        strategy = any_json
    return st.one_of(strategy, strategy, strategy, any_json)  # wrong values a quarter of the time


@pytest.mark.parametrize("folder, name", SCHEMA_FILES)
def test_every_oca_schema_compiles(folder: str, name: str) -> None:
    compile_schema(load(folder, name), FORMATS)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_same_verdict_as_jsonschema(data: st.DataObject) -> None:
    folder, name = data.draw(st.sampled_from(SCHEMA_FILES))
    schema = load(folder, name)
    payload = data.draw(payloads(schema, schema))
    ours = compile_schema(schema, FORMATS)(payload)
    theirs = list(reference(schema).iter_errors(payload))
    assert (ours is None) == (not theirs), (name, payload, ours, [e.message for e in theirs])
    if ours is not None:
        found = {(str(e.validator), tuple(e.absolute_path)) for e in theirs}
        assert (ours.keyword, tuple(ours.path)) in found, (name, payload, ours, found)


@pytest.mark.parametrize(
    "payload, keyword, path",
    [
        ({}, "required", []),
        ({"type": "Hard", "extra": 1}, "additionalProperties", []),
        ({"type": "Warm"}, "enum", ["type"]),
        ({"type": 3}, "type", ["type"]),
    ],
)
def test_errors_name_keyword_and_place(payload: dict[str, Any], keyword: str, path: list[Any]) -> None:
    error = compile_schema(load("v16", "Reset.json"))(payload)
    assert error is not None and (error.keyword, error.path) == (keyword, path)


def test_an_extra_property_outranks_a_missing_one_as_in_jsonschema() -> None:
    error = compile_schema(load("v16", "BootNotification.json"))({"chargePointVendor": "X", "colour": "red"})
    assert error is not None and error.keyword == "additionalProperties"
    deep = compile_schema(load("v16", "StartTransaction.json"))(
        {"connectorId": "1"}
    )  # wrong type, missing fields
    assert deep is not None and deep.keyword == "required" and deep.path == []  # the shallower error


def test_multiple_of_and_bounds_follow_draft4() -> None:
    schema = {"type": "number", "multipleOf": 0.1, "minimum": 0, "maximum": 100}
    check = compile_schema(schema)
    assert check(1.5) is None and check(100) is None
    assert check(0.3) is not None  # 0.3 / 0.1 is not a whole number in floating point, as in jsonschema
    assert check(float("nan")) is not None and check(float("inf")) is not None
    # Huge values: exact arithmetic instead of an OverflowError (on 10**400 jsonschema raises one).
    assert check(1e308) is not None and check(10**400) is not None
    assert check(-1) is not None and check(100.5) is not None
    assert compile_schema({"type": "integer"})(1.0) is not None
    assert compile_schema({"type": "integer"})(True) is not None


def test_recursive_definitions() -> None:
    schema = {
        "definitions": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/definitions/Node"}}}},
        "$ref": "#/definitions/Node",
    }
    check = compile_schema(schema)
    assert check({"next": {"next": {}}}) is None
    error = check({"next": {"next": 5}})
    assert error is not None and error.path == ["next", "next"]


@pytest.mark.parametrize(
    "schema",
    [
        {"anyOf": [{"type": "string"}]},
        {"type": ["string", "null"]},
        {"items": [{"type": "string"}]},
        {"additionalProperties": {"type": "string"}},
        {"$ref": "other.json#/x"},
        {"enum": [1, 2]},
    ],
)
def test_unsupported_schemas_are_refused(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        compile_schema(schema)
