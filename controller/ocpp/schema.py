"""Fast validation of OCPP payloads against the OCA JSON schemas.

A schema is compiled once into nested checking functions for the keywords the OCA
schemas of 1.6 and 2.0.1 use, with draft-04 meaning (as ``jsonschema``'s
Draft4Validator has it: ``$ref`` overrides its siblings, an integer is an ``int`` and
never a float or a bool). A keyword outside that set makes compiling fail, so nothing is
silently left unchecked.

Why not ``jsonschema`` itself: a general validator spent 3 s on a 1.6 SendLocalList of
50,000 entries (11 s on 2.0.1) on the event loop; these functions take a tenth of that.
The tests hold the two to the same verdicts.

A check returns None when the payload is valid, else the first ``Invalid`` found: the
object's own keywords are checked before its members, so an error nearer the top wins.

A schema compiled with ``repairs`` (format name -> a function giving an acceptable value
for one that fails the format, or None) puts the repaired value in the payload instead of
failing; with ``open_objects`` a member the schema does not name is removed instead of
failing ``additionalProperties: false``. Each such change is reported as a ``Repair`` to
the list given to ``repairing()``. Without them a check never changes the payload.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

# Keywords that only annotate; draft-04 ignores ``additionalItems`` when ``items`` is one
# schema, which it always is in the OCA files (compiling checks that).
ANNOTATIONS = frozenset(
    {
        "description",
        "javaType",
        "$schema",
        "$id",
        "id",
        "comment",
        "title",
        "default",
        "definitions",
        "additionalItems",
    }
)


@dataclass
class Invalid:
    keyword: str  # the schema keyword that failed: "required", "type", ...
    message: str
    path: list[str | int] = field(default_factory=list)  # where in the payload, outermost first


@dataclass
class Repair:
    kind: str  # "format" (a value replaced) or "additionalProperties" (a member removed)
    path: list[str | int]  # the member, within its object
    value: Any  # what the payload had


_sink: ContextVar[list[Repair] | None] = ContextVar("schema_repairs", default=None)


@contextlib.contextmanager
def repairing(repairs: list[Repair]) -> Iterator[list[Repair]]:
    """Collect in ``repairs`` what the checks run inside this block changed."""
    token = _sink.set(repairs)
    try:
        yield repairs
    finally:
        _sink.reset(token)


def _note(repair: Repair) -> None:
    sink = _sink.get()
    if sink is not None:
        sink.append(repair)


class SchemaError(Exception):
    """A schema this module cannot check completely."""


Check = Callable[[Any], Invalid | None]
Format = Callable[[Any], bool]
Repairer = Callable[[Any], Any]  # an acceptable value in place of a failing one, or None

_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


_is_number = _TYPES["number"]


def _inside(error: Invalid, key: str | int) -> Invalid:
    error.path.insert(0, key)
    return error


def _unexpected(extras: list[str]) -> str:
    names = ", ".join(repr(name) for name in sorted(extras))
    return (
        f"Additional properties are not allowed ({names} {'was' if len(extras) == 1 else 'were'} unexpected)"
    )


def _not_multiple(value: Any, step: float) -> bool:
    if isinstance(step, float):
        if isinstance(value, float) and not math.isfinite(value):
            return True
        try:
            quotient = value / step
            return bool(int(quotient) != quotient)
        except OverflowError:  # a huge value: exact arithmetic, as jsonschema falls back to
            return (Fraction(value) / Fraction(step)).denominator != 1
    return bool(value % step)


class Compiler:
    """Compiles one schema document (its ``#/definitions/...`` references included)."""

    def __init__(
        self,
        document: Mapping[str, Any],
        formats: Mapping[str, Format],
        repairs: Mapping[str, Repairer] | None = None,
        open_objects: bool = False,
    ) -> None:
        self.document = document
        self.formats = formats
        self.repairs = repairs or {}
        self.open_objects = open_objects
        self._refs: dict[str, Check] = {}

    def _repairer(self, schema: Mapping[str, Any]) -> Repairer | None:
        """The repair for values of ``schema`` (a member's), if its format has one."""
        for _ in range(10):
            ref = schema.get("$ref")
            if not isinstance(ref, str):
                break
            schema = self.document.get("definitions", {}).get(ref.removeprefix("#/definitions/"), {})
        name = schema.get("format")
        return self.repairs.get(name) if isinstance(name, str) else None

    def compile(self) -> Check:
        return self._node(self.document)

    def _ref(self, ref: str) -> Check:
        if ref in self._refs:
            return self._refs[ref]
        if not ref.startswith("#/definitions/"):
            raise SchemaError(f"reference {ref!r}: only #/definitions/... is supported")
        target = self.document.get("definitions", {}).get(ref.removeprefix("#/definitions/"))
        if not isinstance(target, Mapping):
            raise SchemaError(f"reference {ref!r} names nothing")
        compiled: Check | None = None

        def late(value: Any) -> Invalid | None:  # lets a definition refer to itself
            assert compiled is not None
            return compiled(value)

        self._refs[ref] = late
        compiled = self._node(target)
        self._refs[ref] = compiled
        return compiled

    def _node(self, schema: Mapping[str, Any]) -> Check:
        if "$ref" in schema:
            return self._ref(schema["$ref"])  # draft-04: its siblings are ignored
        unknown = set(schema) - ANNOTATIONS - _KEYWORDS
        if unknown:
            raise SchemaError(f"unsupported keywords {sorted(unknown)}")
        makers = dict.fromkeys(make for keyword, make in _BUILDERS.items() if keyword in schema)  # each once
        checks = [check for check in (make(self, schema) for make in makers) if check is not None]
        if not checks:
            return lambda value: None
        if len(checks) == 1:
            return checks[0]

        def all_of(value: Any) -> Invalid | None:
            for check in checks:
                error = check(value)
                if error is not None:
                    return error
            return None

        return all_of

    # -- keywords ------------------------------------------------------------------------

    def _type(self, schema: Mapping[str, Any]) -> Check:
        name = schema["type"]
        if not isinstance(name, str) or name not in _TYPES:
            raise SchemaError(f"type {name!r} is not supported")
        test = _TYPES[name]

        def check(value: Any) -> Invalid | None:
            return None if test(value) else Invalid("type", f"{value!r} is not of type {name!r}")

        return check

    def _enum(self, schema: Mapping[str, Any]) -> Check:
        values = schema["enum"]
        if not all(isinstance(v, str) for v in values):
            raise SchemaError(f"enum {values!r}: only strings are supported")
        allowed = frozenset(values)

        def check(value: Any) -> Invalid | None:
            if isinstance(value, str) and value in allowed:
                return None
            return Invalid("enum", f"{value!r} is not one of {values!r}")

        return check

    def _max_length(self, schema: Mapping[str, Any]) -> Check:
        limit = schema["maxLength"]

        def check(value: Any) -> Invalid | None:
            if isinstance(value, str) and len(value) > limit:
                return Invalid("maxLength", f"{value!r} is too long (at most {limit} characters)")
            return None

        return check

    def _format(self, schema: Mapping[str, Any]) -> Check | None:
        name = schema["format"]
        test = self.formats.get(name)
        if test is None:
            return None  # as jsonschema does with a format it was not given a checker for

        def check(value: Any) -> Invalid | None:
            return None if test(value) else Invalid("format", f"{value!r} is not a {name!r}")

        return check

    def _bound(self, schema: Mapping[str, Any], keyword: str) -> Check:
        bound = schema[keyword]
        low = keyword == "minimum"
        if schema.get("exclusiveMinimum" if low else "exclusiveMaximum"):
            raise SchemaError(f"exclusive {keyword} is not supported")

        def check(value: Any) -> Invalid | None:
            if _is_number(value) and (value < bound if low else value > bound):
                word = "less than the minimum" if low else "greater than the maximum"
                return Invalid(keyword, f"{value!r} is {word} of {bound!r}")
            return None

        return check

    def _multiple_of(self, schema: Mapping[str, Any]) -> Check:
        step = schema["multipleOf"]

        def check(value: Any) -> Invalid | None:
            if _is_number(value) and _not_multiple(value, step):
                return Invalid("multipleOf", f"{value!r} is not a multiple of {step}")
            return None

        return check

    def _required(self, schema: Mapping[str, Any]) -> Check:
        names = list(schema["required"])

        def check(value: Any) -> Invalid | None:
            if isinstance(value, dict):
                for name in names:
                    if name not in value:
                        return Invalid("required", f"{name!r} is a required property")
            return None

        return check

    def _additional(self, schema: Mapping[str, Any]) -> Check | None:
        allowed = frozenset(schema.get("properties", {}))
        closed = schema["additionalProperties"]
        if closed is True:
            return None
        if closed is not False:
            raise SchemaError("additionalProperties as a schema is not supported")
        if self.open_objects:

            def drop(value: Any) -> Invalid | None:
                if isinstance(value, dict):
                    for key in [key for key in value if key not in allowed]:
                        _note(Repair("additionalProperties", [key], value.pop(key)))
                return None

            return drop

        def check(value: Any) -> Invalid | None:
            if isinstance(value, dict):
                extras = [key for key in value if key not in allowed]
                if extras:
                    return Invalid("additionalProperties", _unexpected(extras))
            return None

        return check

    def _properties(self, schema: Mapping[str, Any]) -> Check:
        members = {name: self._node(sub) for name, sub in schema["properties"].items()}
        repairers = {name: self._repairer(sub) for name, sub in schema["properties"].items()}

        def check(value: Any) -> Invalid | None:
            if isinstance(value, dict):
                for key, member in value.items():
                    sub = members.get(key)
                    if sub is not None:
                        error = sub(member)
                        if error is not None:
                            repair = repairers.get(key)
                            if repair is not None and error.keyword == "format" and not error.path:
                                repaired = repair(member)
                                if repaired is not None and sub(repaired) is None:
                                    value[key] = repaired
                                    _note(Repair("format", [key], member))
                                    continue
                            return _inside(error, key)
            return None

        return check

    def _item_count(self, schema: Mapping[str, Any]) -> Check:
        low, high = schema.get("minItems"), schema.get("maxItems")

        def check(value: Any) -> Invalid | None:
            if isinstance(value, list):
                if low is not None and len(value) < low:
                    return Invalid("minItems", f"{value!r} is too short (at least {low} items)"[:200])
                if high is not None and len(value) > high:
                    return Invalid("maxItems", f"{len(value)} items are too many (at most {high})")
            return None

        return check

    def _items(self, schema: Mapping[str, Any]) -> Check:
        items = schema["items"]
        if not isinstance(items, Mapping):
            raise SchemaError("items as a list of schemas is not supported")
        each = self._node(items)

        def check(value: Any) -> Invalid | None:
            if isinstance(value, list):
                for index, item in enumerate(value):
                    error = each(item)
                    if error is not None:
                        return _inside(error, index)
            return None

        return check


# Keyword -> builder, in checking order: the value's own keywords first (additional
# properties before required ones, as jsonschema's best match ranks them), then its members.
_BUILDERS: dict[str, Callable[[Compiler, Mapping[str, Any]], Check | None]] = {
    "type": Compiler._type,
    "enum": Compiler._enum,
    "maxLength": Compiler._max_length,
    "format": Compiler._format,
    "minimum": lambda c, s: c._bound(s, "minimum"),
    "maximum": lambda c, s: c._bound(s, "maximum"),
    "multipleOf": Compiler._multiple_of,
    "additionalProperties": Compiler._additional,
    "required": Compiler._required,
    "minItems": Compiler._item_count,
    "maxItems": Compiler._item_count,
    "properties": Compiler._properties,
    "items": Compiler._items,
}
_KEYWORDS = frozenset(_BUILDERS)


def compile_schema(
    document: Mapping[str, Any],
    formats: Mapping[str, Format] | None = None,
    repairs: Mapping[str, Repairer] | None = None,
    open_objects: bool = False,
) -> Check:
    """A check for ``document``; ``formats`` maps a format name to its test (others pass).

    ``repairs`` and ``open_objects``: see the module's docstring.
    """
    return Compiler(document, formats or {}, repairs, open_objects).compile()
