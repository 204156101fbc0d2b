"""Helpers the OCPP tests of both versions share, in-process (``tests.inproc``) and end to
end (``tests.ocpp_harness``): readers of the CSMS timeline and of the station's database,
and timestamps. Sync or async wrappers that talk to a bench stay with their tests.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from hil.csms import Entry

Where = Callable[[dict[str, Any]], bool]


class _Recorder(Protocol):
    @property
    def timeline(self) -> list[Entry]: ...


class Recorded(Protocol):
    """A bench whose CSMS records a timeline: ``tests.inproc.Bench`` or ``tests.ocpp_harness.Bench``."""

    @property
    def csms(self) -> _Recorder: ...


def station_call(e: Entry, action: str, where: Where | None) -> bool:
    """``e`` is a CALL of ``action`` from the station (matching ``where``)."""
    return (
        e.kind == "call"
        and e.direction == "in"
        and e.action == action
        and isinstance(e.payload, dict)
        and (where is None or where(e.payload))
    )


def calls_in(
    timeline: list[Entry], action: str, after: int = 0, where: Where | None = None
) -> list[dict[str, Any]]:
    """Payloads of the station's CALLs of ``action`` at timeline index ``after`` or later, in order."""
    return [
        e.payload for e in timeline[after:] if station_call(e, action, where) and isinstance(e.payload, dict)
    ]


def since(b: Recorded, action: str, after: int = 0, where: Where | None = None) -> list[dict[str, Any]]:
    """Payloads of the station's CALLs of ``action`` at timeline index ``after`` or later, in order."""
    return calls_in(b.csms.timeline, action, after, where)


def index_of(b: Recorded, action: str, after: int = 0, where: Where | None = None) -> int:
    """Timeline index of the first matching CALL from the station at ``after`` or later (-1: none)."""
    for i, e in enumerate(b.csms.timeline[after:], start=after):
        if station_call(e, action, where):
            return i
    return -1


def csms_errors(b: Recorded) -> list[Entry]:
    """CALLERRORs the CSMS sent: its ``ocpp`` library answers a station CALL that breaks the schema so."""
    return [e for e in b.csms.timeline if e.direction == "out" and e.kind == "error"]


def error_reply(b: Recorded, unique_id: str) -> Entry | None:
    """The station's CALLERROR to the CSMS's message ``unique_id``, if it sent one."""
    for entry in b.csms.timeline:
        if entry.direction == "in" and entry.kind == "error" and entry.unique_id == unique_id:
            return entry
    return None


class Stored(Protocol):
    """A bench that reads the station's database: ``tests.inproc.Bench`` or ``tests.ocpp_harness.Bench``."""

    def db(self, sql: str, *params: Any) -> list[tuple[Any, ...]]: ...


def outbox_empty(b: Stored) -> bool:
    return b.db("SELECT count(*) FROM outbox")[0][0] == 0


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso(offset_s: float = 0.0) -> str:
    """The wall clock ``offset_s`` from now (an end-to-end station's time), as a 2.0.1/1.6 timestamp."""
    return iso(datetime.now(UTC) + timedelta(seconds=offset_s))
