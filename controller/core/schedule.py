"""Smart charging: the installed charging profiles and the limits they impose per EVSE.

Pure and version neutral: no I/O, every instant comes in as a timezone-aware datetime. The rules
are those of OCPP 1.6 §3.13 and OCPP 2.0.1 part K; ``from_ocpp16``/``to_ocpp16`` convert 1.6
``csChargingProfiles`` JSON objects, ``from_ocpp201``/``to_ocpp201`` 2.0.1 ChargingProfileType
ones. What profiles allow is piecewise constant in time and changes only at a profile's "edges"
(validity bounds, schedule start, period starts, schedule end). The limit an EVSE gets, which
also weighs the hardware and the other EVSEs, is ``controller.core.limits.effective_limit``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from controller.core.timestamps import parse_timestamp, timestamp

ACCEPTED = "Accepted"
REJECTED = "Rejected"
UNITS = ("A", "W")
# A period without numberPhases: 3 phases (2.0.1 K01.FR.49 for AC; 1.6 ChargingSchedulePeriod),
# whatever the EVSE has; K01.FR.50 converts W and A with it.
DEFAULT_PHASES = 3
# Longer than a weekly recurrence, so every recurring profile has an edge inside it.
_HORIZON = timedelta(days=8)
_NUMBER = (int, float)
# The 2.0.1 chargingLimitSource of profiles the CSMS sets: the only kind this store holds.
SOURCE_CSO = "CSO"
# The 2.0.1 purpose a CSMS may not set: such limits come from an energy manager on the station's side.
EXTERNAL_CONSTRAINTS = "ChargingStationExternalConstraints"


class Purpose(enum.Enum):
    STATION_MAX = "ChargePointMaxProfile"
    TX_DEFAULT = "TxDefaultProfile"
    TX = "TxProfile"

    @classmethod
    def _missing_(cls, value: object) -> Purpose | None:
        return cls.STATION_MAX if value == "ChargingStationMaxProfile" else None  # the 2.0.1 spelling


_PURPOSES_201 = {
    "ChargingStationMaxProfile": Purpose.STATION_MAX,
    "TxDefaultProfile": Purpose.TX_DEFAULT,
    "TxProfile": Purpose.TX,
}
_PURPOSE_NAMES_201 = {purpose: name for name, purpose in _PURPOSES_201.items()}


def purpose_from_ocpp201(name: str) -> Purpose | None:
    """The purpose of a 2.0.1 chargingProfilePurpose; None for one no stored profile can have
    (ChargingStationExternalConstraints: the CSMS may not set it, K01.FR.22)."""
    return _PURPOSES_201.get(name)


class Kind(enum.Enum):
    ABSOLUTE = "Absolute"
    RECURRING = "Recurring"
    RELATIVE = "Relative"


class Recurrency(enum.Enum):
    DAILY = "Daily"
    WEEKLY = "Weekly"


@dataclass(frozen=True)
class Period:
    """A limit in force from ``start_s`` seconds after the schedule start until the next period."""

    start_s: int
    limit: float
    phases: int | None = None


@dataclass(frozen=True)
class Schedule:
    periods: tuple[Period, ...]
    unit: str  # "A" or "W"
    start: datetime | None = None
    duration_s: int | None = None
    min_rate: float | None = None
    schedule_id: int | None = None  # the 2.0.1 ChargingScheduleType id; 1.6 schedules have none


class InForce(NamedTuple):
    """What the profiles alone allow one EVSE at an instant, in one unit (math.inf: no limit)."""

    own: float  # its TxProfile, or else its TxDefaultProfile
    station: float  # the station maximum, for the whole station
    phases: int | None  # the fewest phases a period in force names


@dataclass(frozen=True)
class Profile:
    id: int
    evse_id: int  # 0 = the whole station
    stack_level: int
    purpose: Purpose
    kind: Kind
    schedule: Schedule
    recurrency: Recurrency | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    tx_id: str | None = None


class Profiles:
    """The installed charging profiles of a station (mutable, not thread safe)."""

    def __init__(self) -> None:
        self._items: list[Profile] = []

    def install(self, profile: Profile, active_tx: str | None) -> str:
        """Install by the OCPP 1.6 rules; ``active_tx`` is the transaction on the profile's EVSE."""
        try:
            _validate(profile)
        except ValueError:
            return REJECTED
        if profile.purpose is Purpose.STATION_MAX and profile.evse_id != 0:
            return REJECTED
        if profile.purpose is Purpose.TX:
            if profile.evse_id == 0 or active_tx is None or profile.tx_id not in (None, active_tx):
                return REJECTED
            profile = replace(profile, tx_id=active_tx)
        self._remove(lambda old: _replaces(profile, old))
        self._items.append(profile)
        return ACCEPTED

    def clear(
        self,
        id: int | None = None,
        evse_id: int | None = None,
        purpose: Purpose | None = None,
        stack_level: int | None = None,
    ) -> int:
        """Remove by ClearChargingProfile rules (an id alone decides); return how many went.

        The rules of 1.6 and of 2.0.1 (chargingProfileId, else chargingProfileCriteria) are the same.
        """

        def matches(p: Profile) -> bool:
            if id is not None:
                return p.id == id
            return (
                evse_id in (None, p.evse_id)
                and purpose in (None, p.purpose)
                and stack_level in (None, p.stack_level)
            )

        return self._remove(matches)

    def matching(
        self,
        ids: Sequence[int] | None = None,
        evse_id: int | None = None,
        purpose: Purpose | None = None,
        stack_level: int | None = None,
        sources: Sequence[str] | None = None,
    ) -> list[Profile]:
        """The profiles a 2.0.1 GetChargingProfiles asks for, in installation order.

        Every criterion given must hold (K09 makes them filters of equal weight); ``evse_id`` 0
        selects the station-wide profiles, None those of every EVSE. ``sources`` are
        chargingLimitSource values: every profile here was set by the CSMS (``SOURCE_CSO``).
        """
        if sources is not None and SOURCE_CSO not in sources:
            return []
        return [
            p
            for p in self._items
            if (ids is None or p.id in ids)
            and evse_id in (None, p.evse_id)
            and purpose in (None, p.purpose)
            and stack_level in (None, p.stack_level)
        ]

    def transaction_ended(self, tx_id: str) -> int:
        """Drop the TxProfiles bound to ``tx_id``; return how many went."""
        return self._remove(lambda p: p.purpose is Purpose.TX and p.tx_id == tx_id)

    def all(self) -> list[Profile]:
        """Every installed profile, in installation order (for persistence)."""
        return list(self._items)

    def load(self, profiles: Iterable[Profile]) -> None:
        """Replace the store with ``profiles`` (as returned by ``all``)."""
        self._items = list(profiles)

    def in_force(
        self,
        evse_id: int,
        at: datetime,
        unit: str,
        tx_id: str | None,
        tx_started_at: datetime | None,
        voltage: float,
    ) -> InForce:
        """What the profiles alone allow ``evse_id`` (0: the station as a whole) at ``at`` in ``unit``.

        ``tx_id`` and ``tx_started_at`` are those of the transaction on the EVSE, if any: its
        TxProfiles apply, and Relative schedules start with it.
        """
        relevant = self._relevant(evse_id, tx_id)
        own = [p for p in relevant if p.purpose is not Purpose.STATION_MAX]
        station = [p for p in relevant if p.purpose is Purpose.STATION_MAX]
        own_limit, own_phases = _limit_at(own, evse_id, at, unit, tx_started_at, voltage)
        station_limit, station_phases = _limit_at(station, evse_id, at, unit, tx_started_at, voltage)
        phases = [n for n in (own_phases, station_phases) if n is not None]
        return InForce(own_limit, station_limit, min(phases, default=None))

    def edges(
        self,
        evse_id: int,
        tx_id: str | None,
        tx_started_at: datetime | None,
        after: datetime,
        before: datetime,
    ) -> set[datetime]:
        """The instants strictly between ``after`` and ``before`` where the profiles that may
        apply to ``evse_id`` may change what they allow."""
        return {
            edge
            for p in self._relevant(evse_id, tx_id)
            for edge in _edges(p, tx_started_at, after, before)
            if after < edge < before
        }

    def next_change(
        self, evse_id: int, now: datetime, tx_started_at: datetime | None, tx_id: str | None
    ) -> datetime | None:
        """The next edge after ``now`` of any profile that may apply: the limit may change there."""
        edges = (
            edge
            for p in self._relevant(evse_id, tx_id)
            for edge in _edges(p, tx_started_at, now, now + _HORIZON)
            if edge > now
        )
        return min(edges, default=None)

    def _relevant(self, evse_id: int, tx_id: str | None) -> list[Profile]:
        """The profiles that may limit ``evse_id`` (evse 0: only the station maximum)."""

        def applies(p: Profile) -> bool:
            if p.purpose is Purpose.STATION_MAX:
                return True
            if p.purpose is Purpose.TX_DEFAULT:
                return evse_id != 0 and p.evse_id in (0, evse_id)
            return evse_id != 0 and p.evse_id == evse_id and tx_id is not None and p.tx_id == tx_id

        return [p for p in self._items if applies(p)]

    def _remove(self, predicate: Callable[[Profile], bool]) -> int:
        kept = [p for p in self._items if not predicate(p)]
        removed = len(self._items) - len(kept)
        self._items = kept
        return removed


def _replaces(new: Profile, old: Profile) -> bool:
    if old.id == new.id:
        return True
    same_slot = (old.evse_id, old.purpose, old.stack_level) == (new.evse_id, new.purpose, new.stack_level)
    return same_slot and (new.purpose is not Purpose.TX or old.tx_id == new.tx_id)


def _limit_at(
    relevant: list[Profile],
    evse_id: int,
    at: datetime,
    unit: str,
    tx_start: datetime | None,
    voltage: float,
) -> tuple[float, int | None]:
    """min(station max, TxProfile or else TxDefaultProfile) among ``relevant`` at ``at`` in
    ``unit``, and the fewest phases their periods name."""
    best: dict[Purpose, tuple[tuple[int, bool], Profile, Period]] = {}
    for p in relevant:
        period = _period_at(p, at, tx_start)
        rank = (p.stack_level, p.evse_id == evse_id)  # an EVSE's own TxDefault wins a tie with evse 0's
        if period is not None and (p.purpose not in best or rank > best[p.purpose][0]):
            best[p.purpose] = (rank, p, period)
    if Purpose.TX in best:
        best.pop(Purpose.TX_DEFAULT, None)
    limit, used = math.inf, None
    for _, p, period in best.values():
        factor = voltage * (period.phases or DEFAULT_PHASES)
        limit = min(limit, convert(period.limit, p.schedule.unit, unit, factor))
        if period.phases is not None:
            used = period.phases if used is None else min(used, period.phases)
    return limit, used


def convert(limit: float, unit_from: str, unit_to: str, volts_times_phases: float) -> float:
    if unit_from == unit_to:
        return limit
    return limit * volts_times_phases if unit_to == "W" else limit / volts_times_phases


def _step(p: Profile) -> timedelta:
    return timedelta(weeks=1) if p.recurrency is Recurrency.WEEKLY else timedelta(days=1)


def _base(p: Profile, tx_start: datetime | None) -> datetime | None:
    """Where the schedule (its first recurrence) starts; None if it cannot be placed."""
    # 1.6: an Absolute schedule without startSchedule "will be relative to start of charging".
    if p.kind is Kind.RELATIVE or p.schedule.start is None:
        return tx_start
    return p.schedule.start


def _period_at(p: Profile, at: datetime, tx_start: datetime | None) -> Period | None:
    """The period of ``p`` in force at ``at``, if ``p`` is in force then."""
    if (p.valid_from is not None and at < p.valid_from) or (p.valid_to is not None and at >= p.valid_to):
        return None
    base = _base(p, tx_start)
    if base is None or at < base:
        return None
    if p.kind is Kind.RECURRING:
        base += (at - base) // _step(p) * _step(p)
    offset = (at - base).total_seconds()
    if p.schedule.duration_s is not None and offset >= p.schedule.duration_s:
        return None
    return [q for q in p.schedule.periods if q.start_s <= offset][-1]


def _edges(p: Profile, tx_start: datetime | None, lo: datetime, hi: datetime) -> list[datetime]:
    """Instants where ``p`` may change; recurrences from the one in force at ``lo`` up to ``hi``."""
    edges = [d for d in (p.valid_from, p.valid_to) if d is not None]
    base = _base(p, tx_start)
    if base is None:
        return edges
    anchors = [base]
    if p.kind is Kind.RECURRING:
        step = _step(p)
        k = max(1, (lo - base) // step)
        while (anchor := base + k * step) < hi:
            anchors.append(anchor)
            k += 1
    schedule = p.schedule
    for anchor in anchors:
        edges += [anchor + timedelta(seconds=q.start_s) for q in schedule.periods]
        if schedule.duration_s is not None:
            edges.append(anchor + timedelta(seconds=schedule.duration_s))
    return edges


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _validate(p: Profile) -> None:
    """Raise ValueError if ``p`` is inconsistent on its own (whatever else is installed)."""
    s = p.schedule
    for name, value in (("validFrom", p.valid_from), ("validTo", p.valid_to), ("startSchedule", s.start)):
        _require(value is None or value.tzinfo is not None, f"{name} has no timezone")
    _require(p.evse_id >= 0, f"evse id must not be negative, not {p.evse_id}")
    _require(p.stack_level >= 0, f"stackLevel must not be negative, not {p.stack_level}")
    _require(s.unit in UNITS, f"chargingRateUnit must be A or W, not {s.unit!r}")
    _require(bool(s.periods) and s.periods[0].start_s == 0, "the first period must start at 0")
    starts = [q.start_s for q in s.periods]
    _require(starts == sorted(set(starts)), f"period starts must increase: {starts}")
    _require(all(math.isfinite(q.limit) and q.limit >= 0 for q in s.periods), "limits must be finite, >= 0")
    _require(all(q.phases in (None, 1, 2, 3) for q in s.periods), "numberPhases must be 1, 2 or 3")
    _require(s.duration_s is None or s.duration_s >= 0, "duration must not be negative")
    _require(s.min_rate is None or s.min_rate >= 0, "minChargingRate must not be negative")
    if p.valid_from is not None and p.valid_to is not None:
        _require(p.valid_from < p.valid_to, "validFrom must be before validTo")
    _require(p.kind is not Kind.RELATIVE or s.start is None, "a Relative profile has no startSchedule")
    if p.kind is Kind.RECURRING:
        _require(s.start is not None, "a Recurring profile needs a startSchedule")
        _require(p.recurrency is not None, "a Recurring profile needs a recurrencyKind")
    else:
        _require(p.recurrency is None, "recurrencyKind is only for a Recurring profile")
    _require(p.tx_id is None or p.purpose is Purpose.TX, "transactionId is only for a TxProfile")


def require_phases_supplied(p: Profile, supply_phases: int) -> None:
    """2.0.1 K01.FR.45: ValueError if a period asks for more phases than the EVSE (for EVSE 0:
    the station) is supplied with."""
    asked = max((q.phases for q in p.schedule.periods if q.phases is not None), default=0)
    if asked > supply_phases:
        raise ValueError(f"numberPhases {asked} is more than the {supply_phases} phase(s) supplied")


def parse_datetime(text: str) -> datetime:
    """An RFC 3339 date-time with ``Z`` or an offset, in UTC; ValueError if naive or malformed."""
    try:
        value = parse_timestamp(text)
    except (AttributeError, TypeError, ValueError):
        raise ValueError(f"not an RFC 3339 date-time: {text!r}") from None
    _require(value.tzinfo is not None, f"date-time without a timezone: {text!r}")
    return value.astimezone(UTC)


def format_datetime(value: datetime) -> str:
    """``2026-11-21T10:00:00.000Z``: UTC, milliseconds (finer precision is dropped)."""
    _require(value.tzinfo is not None, f"date-time without a timezone: {value!r}")
    return timestamp(value)


def from_ocpp16(data: dict[str, Any], evse_id: int) -> Profile:
    """A profile from a 1.6 ``csChargingProfiles`` object set on ``evse_id``; ValueError if invalid.

    Also reads the ``chargingSchedule.id`` that ``to_ocpp16`` stores for a 2.0.1 profile.
    """
    schedule = _get(data, "chargingSchedule", dict)
    periods = _periods(schedule)
    tx = _get(data, "transactionId", (int, str), False)
    return _profile(
        data,
        evse_id,
        id=_get(data, "chargingProfileId", int),
        purpose=Purpose(_get(data, "chargingProfilePurpose", str)),
        schedule=_schedule(schedule, periods, _get(schedule, "id", int, False)),
        tx_id=None if tx is None else str(tx),
    )


def from_ocpp201(data: dict[str, Any], evse_id: int) -> Profile:
    """A profile from a 2.0.1 ChargingProfileType set on ``evse_id``; ValueError if invalid.

    The model holds one schedule, so a profile with more (ISO 15118 offers up to three) is
    refused; a salesTariff is ignored.
    """
    name = _get(data, "chargingProfilePurpose", str)
    _require(name != EXTERNAL_CONSTRAINTS, f"a CSMS may not set a {EXTERNAL_CONSTRAINTS} profile")
    _require(name in _PURPOSES_201, f"unknown chargingProfilePurpose {name!r}")
    schedules = _get(data, "chargingSchedule", list)
    _require(
        len(schedules) == 1,
        f"chargingSchedule holds {len(schedules)} schedules; this station supports exactly one",
    )
    schedule = schedules[0]
    periods = _periods(schedule)
    for row in _get(schedule, "chargingSchedulePeriod", list):
        # 2.0.1 allows it only where ACPhaseSwitchingSupported is true; this station cannot switch.
        phase = _get(row, "phaseToUse", int, False)
        _require(phase is None, "phaseToUse needs AC phase switching, which this station does not have")
    return _profile(
        data,
        evse_id,
        id=_get(data, "id", int),
        purpose=_PURPOSES_201[name],
        schedule=_schedule(schedule, periods, _get(schedule, "id", int)),
        tx_id=_get(data, "transactionId", str, False),
    )


def _periods(schedule: Any) -> tuple[Period, ...]:
    rows = _get(schedule, "chargingSchedulePeriod", list)
    return tuple(
        Period(
            _get(r, "startPeriod", int), float(_get(r, "limit", _NUMBER)), _get(r, "numberPhases", int, False)
        )
        for r in rows
    )


def _schedule(data: dict[str, Any], periods: tuple[Period, ...], schedule_id: int | None) -> Schedule:
    """The schedule fields 1.6 and 2.0.1 share, read from ``data``."""
    return Schedule(
        periods=periods,
        unit=_get(data, "chargingRateUnit", str),
        start=_get_datetime(data, "startSchedule"),
        duration_s=_get(data, "duration", int, False),
        min_rate=_get(data, "minChargingRate", _NUMBER, False),
        schedule_id=schedule_id,
    )


def _profile(
    data: dict[str, Any], evse_id: int, id: int, purpose: Purpose, schedule: Schedule, tx_id: str | None
) -> Profile:
    """The validated profile from the fields 1.6 and 2.0.1 share and those read by version."""
    recurrency = _get(data, "recurrencyKind", str, False)
    profile = Profile(
        id=id,
        evse_id=evse_id,
        stack_level=_get(data, "stackLevel", int),
        purpose=purpose,
        kind=Kind(_get(data, "chargingProfileKind", str)),
        schedule=schedule,
        recurrency=None if recurrency is None else Recurrency(recurrency),
        valid_from=_get_datetime(data, "validFrom"),
        valid_to=_get_datetime(data, "validTo"),
        tx_id=tx_id,
    )
    _validate(profile)
    return profile


def to_ocpp16(profile: Profile) -> dict[str, Any]:
    """The 1.6 ``csChargingProfiles`` object for ``profile`` (the EVSE id is not part of it).

    A 2.0.1 schedule id is kept as ``chargingSchedule.id``, which the 1.6 schema does not allow:
    this form goes to storage only (no 1.6 message sends a profile to the CSMS), and a profile
    from 1.6 has no schedule id, so its form stays valid 1.6.
    """
    return _compact(
        {
            "chargingProfileId": profile.id,
            "transactionId": None if profile.tx_id is None else _tx_json(profile.tx_id),
            **_profile_json(profile, profile.purpose.value),
            "chargingSchedule": _schedule_json(profile.schedule, profile.schedule.schedule_id),
        }
    )


def to_ocpp201(profile: Profile) -> dict[str, Any]:
    """The 2.0.1 ChargingProfileType for ``profile``; the schedule id is the profile's if unknown."""
    schedule_id = profile.schedule.schedule_id
    return _compact(
        {
            "id": profile.id,
            "transactionId": profile.tx_id,
            **_profile_json(profile, _PURPOSE_NAMES_201[profile.purpose]),
            "chargingSchedule": [
                _schedule_json(profile.schedule, profile.id if schedule_id is None else schedule_id)
            ],
        }
    )


def _profile_json(profile: Profile, purpose: str) -> dict[str, Any]:
    return {
        "stackLevel": profile.stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": profile.kind.value,
        "recurrencyKind": None if profile.recurrency is None else profile.recurrency.value,
        "validFrom": _format_optional(profile.valid_from),
        "validTo": _format_optional(profile.valid_to),
    }


def _schedule_json(s: Schedule, schedule_id: int | None) -> dict[str, Any]:
    return _compact(
        {
            "id": schedule_id,
            "duration": s.duration_s,
            "startSchedule": _format_optional(s.start),
            "chargingRateUnit": s.unit,
            "chargingSchedulePeriod": [_period_json(q.start_s, q.limit, q.phases) for q in s.periods],
            "minChargingRate": s.min_rate,
        }
    )


def composite_to_ocpp16(periods: list[Period], start: datetime, duration_s: int, unit: str) -> dict[str, Any]:
    """A 1.6 ``chargingSchedule`` for GetCompositeSchedule.conf; limits rounded to 0.1, then re-merged."""
    return {
        "duration": duration_s,
        "startSchedule": format_datetime(start),
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": _composite_rows(periods, "1.6"),
    }


def composite_to_ocpp201(
    periods: list[Period], start: datetime, duration_s: int, unit: str, evse_id: int
) -> dict[str, Any]:
    """The 2.0.1 CompositeScheduleType of GetCompositeScheduleResponse; rounded like the 1.6 form."""
    return {
        "evseId": evse_id,
        "duration": duration_s,
        "scheduleStart": format_datetime(start),
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": _composite_rows(periods, "2.0.1"),
    }


def _composite_rows(periods: list[Period], version: str) -> list[dict[str, Any]]:
    """Periods with limits rounded to 0.1 (as both versions ask), then re-merged."""
    rows: list[dict[str, Any]] = []
    for q in periods:
        _require(math.isfinite(q.limit), f"an unlimited period has no {version} form: pass a finite no_limit")
        limit = round(q.limit, 1)
        if not rows or (rows[-1]["limit"], rows[-1].get("numberPhases")) != (limit, q.phases):
            rows.append(_period_json(q.start_s, limit, q.phases))
    return rows


def _period_json(start_s: int, limit: float, phases: int | None) -> dict[str, Any]:
    return _compact({"startPeriod": start_s, "limit": limit, "numberPhases": phases})


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}


def _format_optional(value: datetime | None) -> str | None:
    return None if value is None else format_datetime(value)


def _tx_json(tx_id: str) -> int | str:
    """1.6 transaction ids are integers; a local id that is not one stays a string."""
    try:
        number = int(tx_id)
    except ValueError:
        return tx_id
    return number if str(number) == tx_id else tx_id


def _get(data: Any, key: str, kinds: type | tuple[type, ...], required: bool = True) -> Any:
    """``data[key]`` checked against ``kinds`` (JSON booleans are no numbers); None if absent."""
    _require(isinstance(data, dict), f"expected a JSON object holding {key}")
    value = data.get(key)
    _require(value is not None or not required, f"missing {key}")
    ok = value is None or (isinstance(value, kinds) and not isinstance(value, bool))
    _require(ok, f"{key} has the wrong JSON type: {value!r}")
    return value


def _get_datetime(data: dict[str, Any], key: str) -> datetime | None:
    text = _get(data, key, str, False)
    return None if text is None else parse_datetime(text)
