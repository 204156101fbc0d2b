"""The smart-charging schedule engine (controller/core/schedule.py): stacking, purposes, kinds, units,
profile management and the OCPP 1.6 and 2.0.1 JSON forms; and the limit each EVSE gets from it
(controller/core/limits.py), enforced and reported alike."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from importlib.resources import files
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft4Validator

from controller.core.limits import Load, composite_schedule, effective_limit, next_limit_change
from controller.core.schedule import (
    UNITS,
    Kind,
    Period,
    Profile,
    Profiles,
    Purpose,
    Recurrency,
    Schedule,
    composite_to_ocpp16,
    composite_to_ocpp201,
    format_datetime,
    from_ocpp16,
    from_ocpp201,
    parse_datetime,
    require_phases_supplied,
    to_ocpp16,
    to_ocpp201,
)

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)  # a Saturday
HOUR = 3600


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make(
    id: int = 1,
    evse: int = 1,
    stack: int = 0,
    purpose: Purpose = Purpose.TX_DEFAULT,
    kind: Kind = Kind.ABSOLUTE,
    periods: tuple[tuple[int, float], ...] = ((0, 16.0),),
    unit: str = "A",
    start: datetime | None = T0,
    duration: int | None = None,
    **extra: Any,
) -> Profile:
    schedule = Schedule(tuple(Period(s, limit) for s, limit in periods), unit, start, duration)
    return Profile(id, evse, stack, purpose, kind, schedule, **extra)


def store(*profiles: Profile, active_tx: str | None = "tx1") -> Profiles:
    result = Profiles()
    for profile in profiles:
        assert result.install(profile, active_tx) == "Accepted", profile
    return result


def alone(evse: int, tx: str | None = None, tx_start: datetime | None = None) -> dict[int, Load]:
    """``evse`` as the only EVSE, with no hardware limit: its limit is what the profiles allow."""
    return {max(evse, 1): Load(math.inf, 3, tx, tx_start)}


def limit_a(
    store_: Profiles,
    evse: int,
    now: datetime,
    tx_start: datetime | None,
    tx: str | None,
    voltage: float = 230.0,
) -> float:
    """The ``effective_limit`` in A of ``evse`` alone."""
    return effective_limit(store_, evse, now, "A", alone(evse, tx, tx_start), voltage).value


def composite(
    store_: Profiles,
    evse: int,
    start: datetime,
    duration_s: int,
    unit: str,
    tx_start: datetime | None,
    tx: str | None,
) -> list[Period]:
    """The ``composite_schedule`` of ``evse`` alone."""
    return composite_schedule(store_, evse, start, duration_s, unit, alone(evse, tx, tx_start))


def limits(
    store_: Profiles, evse: int = 1, tx_start: datetime | None = None, tx: str | None = None
) -> list[tuple[int, float]]:
    """The composite over two hours from T0 as (start_s, limit) pairs."""
    return [(p.start_s, p.limit) for p in composite(store_, evse, T0, 2 * HOUR, "A", tx_start, tx)]


# --- stacking and purposes


def test_higher_stack_wins_and_the_lower_shows_through_when_it_ends() -> None:
    profiles = store(make(id=1, stack=0), make(id=2, stack=1, periods=((0, 10.0),), duration=HOUR))
    assert limits(profiles) == [(0, 10.0), (HOUR, 16.0)]
    assert limit_a(profiles, 1, at(HOUR - 1), None, None) == 10.0
    assert limit_a(profiles, 1, at(HOUR), None, None) == 16.0


def test_a_tx_profile_overrides_tx_default_whatever_the_stack_levels() -> None:
    tx = make(id=2, stack=0, purpose=Purpose.TX, periods=((0, 20.0),))
    profiles = store(make(id=1, stack=9, periods=((0, 6.0),)), tx)
    assert limit_a(profiles, 1, T0, None, "tx1") == 20.0
    assert limit_a(profiles, 1, T0, None, None) == 6.0  # bound to tx1: no effect outside it
    assert limit_a(profiles, 1, T0, None, "tx2") == 6.0


def test_station_max_caps_everything() -> None:
    station = make(id=1, evse=0, purpose=Purpose.STATION_MAX, periods=((0, 10.0), (HOUR, 32.0)))
    tx = make(id=2, purpose=Purpose.TX, periods=((0, 20.0), (HOUR + 600, 6.0)))
    profiles = store(station, tx)
    assert limits(profiles, tx="tx1") == [(0, 10.0), (HOUR, 20.0), (HOUR + 600, 6.0)]
    assert limit_a(profiles, 2, T0, None, None) == 10.0  # every EVSE
    assert limits(profiles, evse=0) == [(0, 10.0), (HOUR, 32.0)]  # evse 0: the station max alone


def test_evse0_tx_default_applies_to_every_evse_and_competes_by_stack_level() -> None:
    profiles = store(make(id=1, evse=0, stack=1, periods=((0, 8.0),)))
    assert [limit_a(profiles, evse, T0, None, None) for evse in (1, 2, 3)] == [8.0, 8.0, 8.0]
    assert limit_a(profiles, 0, T0, None, None) == math.inf  # no station-wide limit though
    profiles.install(make(id=2, evse=2, stack=0, periods=((0, 12.0),)), None)
    assert limit_a(profiles, 2, T0, None, None) == 8.0  # the lower EVSE-specific one loses
    profiles.install(make(id=3, evse=2, stack=1, periods=((0, 13.0),)), None)
    assert limit_a(profiles, 2, T0, None, None) == 13.0  # a tie goes to the EVSE's own
    assert limit_a(profiles, 1, T0, None, None) == 8.0


def test_nothing_installed_means_no_limit() -> None:
    profiles = Profiles()
    assert limit_a(profiles, 1, T0, T0, "tx1") == math.inf
    assert composite(profiles, 1, T0, HOUR, "A", None, None) == [Period(0, math.inf)]
    # What the hardware allows then: 32 A on 3 phases.
    assert composite_schedule(profiles, 1, T0, HOUR, "W", {1: Load(32.0)}) == [Period(0, 22080.0)]
    assert profiles.next_change(1, T0, None, None) is None
    assert next_limit_change(profiles, T0, {1: Load(32.0, 3, "tx1", T0)}) is None


# --- kinds, validity and duration


def test_absolute_schedule_starts_at_its_start() -> None:
    profiles = store(make(start=at(HOUR), periods=((0, 16.0), (600, 10.0))))
    assert limits(profiles) == [(0, math.inf), (HOUR, 16.0), (HOUR + 600, 10.0)]


def test_absolute_without_start_is_relative_to_the_start_of_charging() -> None:
    profiles = store(make(start=None, periods=((0, 16.0), (600, 10.0))))
    assert limit_a(profiles, 1, T0, None, None) == math.inf
    assert limits(profiles, tx_start=at(-300)) == [(0, 16.0), (300, 10.0)]


def test_relative_schedule_starts_with_the_transaction() -> None:
    profiles = store(make(kind=Kind.RELATIVE, start=None, periods=((0, 6.0), (HOUR, 16.0)), duration=5400))
    assert limits(profiles, tx_start=at(-1800)) == [(0, 6.0), (1800, 16.0), (3600, math.inf)]
    assert limits(profiles) == [(0, math.inf)]  # no transaction: no effect


def test_daily_recurring_schedule_repeats_every_day() -> None:
    night = make(
        kind=Kind.RECURRING,
        recurrency=Recurrency.DAILY,
        start=datetime(2026, 11, 1, 22, 0, tzinfo=UTC),
        periods=((0, 32.0), (8 * HOUR, 10.0)),
    )
    profiles = store(night)
    got = [(p.start_s, p.limit) for p in composite(profiles, 1, T0, 24 * HOUR, "A", None, None)]
    assert got == [(0, 10.0), (12 * HOUR, 32.0), (20 * HOUR, 10.0)]
    assert limit_a(profiles, 1, datetime(2026, 12, 24, 3, 0, tzinfo=UTC), None, None) == 32.0
    assert limit_a(profiles, 1, datetime(2026, 10, 31, 23, 0, tzinfo=UTC), None, None) == math.inf  # before


def test_weekly_recurring_schedule_repeats_every_week() -> None:
    monday = make(
        kind=Kind.RECURRING,
        recurrency=Recurrency.WEEKLY,
        start=datetime(2026, 11, 2, 0, 0, tzinfo=UTC),
        periods=((0, 6.0),),
        duration=24 * HOUR,
    )
    profiles = store(monday)
    assert limit_a(profiles, 1, datetime(2026, 11, 23, 12, 0, tzinfo=UTC), None, None) == 6.0  # Monday
    assert limit_a(profiles, 1, datetime(2026, 11, 24, 12, 0, tzinfo=UTC), None, None) == math.inf
    assert profiles.next_change(1, T0, None, None) == datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    got = composite(profiles, 1, T0, 7 * 24 * HOUR, "A", None, None)
    assert [(p.start_s, p.limit) for p in got] == [(0, math.inf), (38 * HOUR, 6.0), (62 * HOUR, math.inf)]


def test_valid_from_and_valid_to_bound_a_profile() -> None:
    profiles = store(make(valid_from=at(600), valid_to=at(HOUR)))
    assert limits(profiles) == [(0, math.inf), (600, 16.0), (HOUR, math.inf)]
    assert profiles.next_change(1, T0, None, None) == at(600)
    assert profiles.next_change(1, at(600), None, None) == at(HOUR)
    assert profiles.next_change(1, at(HOUR), None, None) is None


def test_a_schedule_ends_after_its_duration() -> None:
    profiles = store(make(periods=((0, 16.0), (600, 12.0)), duration=900))
    assert limits(profiles) == [(0, 16.0), (600, 12.0), (900, math.inf)]


# --- units and phases


def test_watts_and_amps_convert_with_the_period_phases() -> None:
    station = Schedule((Period(0, 11040.0), Period(HOUR, 7360.0, phases=1)), "W", T0)
    profiles = store(Profile(1, 0, 0, Purpose.STATION_MAX, Kind.ABSOLUTE, station))
    amps = composite(profiles, 1, T0, 2 * HOUR, "A", None, None)
    assert amps == [Period(0, 16.0), Period(HOUR, 32.0, phases=1)]
    # A period without numberPhases is on 3 (K01.FR.49), whatever the EVSE is wired for.
    assert limit_a(profiles, 1, T0, None, None, voltage=240.0) == 11040.0 / (240.0 * 3)
    one_phase = {1: Load(math.inf, 1)}
    assert effective_limit(profiles, 1, at(HOUR), "A", one_phase, voltage=240.0).value == 7360.0 / 240.0
    profiles.install(make(id=2, periods=((0, 10.0),)), None)
    watts = composite(profiles, 1, T0, 2 * HOUR, "W", None, None)
    assert watts == [Period(0, 6900.0), Period(HOUR, 6900.0, phases=1)]  # 10 A on 3 phases vs 7360 W


def test_the_fewest_phases_of_the_applicable_profiles_apply() -> None:
    station = Schedule((Period(0, 32.0, phases=3),), "A", T0)
    tx = Schedule((Period(0, 20.0, phases=1),), "A", T0)
    profiles = store(
        Profile(1, 0, 0, Purpose.STATION_MAX, Kind.ABSOLUTE, station),
        Profile(2, 1, 0, Purpose.TX, Kind.ABSOLUTE, tx),
    )
    assert composite(profiles, 1, T0, HOUR, "A", None, "tx1") == [Period(0, 20.0, phases=1)]


# --- installing, replacing and clearing


def test_install_rejects_what_ocpp_16_forbids() -> None:
    profiles = Profiles()
    rejected = [
        make(evse=1, purpose=Purpose.STATION_MAX),
        make(evse=0, purpose=Purpose.TX),
        make(kind=Kind.RELATIVE, start=T0),
        make(kind=Kind.RECURRING, recurrency=Recurrency.DAILY, start=None),
        make(kind=Kind.RECURRING, start=T0),
        make(periods=((60, 16.0),)),
        make(periods=((0, 16.0), (0, 8.0))),
        make(unit="kW"),
        make(start=datetime(2026, 11, 21, 10, 0)),  # naive
        make(valid_from=at(HOUR), valid_to=T0),
        make(tx_id="tx1"),  # a TxDefault bound to a transaction
    ]
    assert [profiles.install(p, "tx1") for p in rejected] == ["Rejected"] * len(rejected)
    assert profiles.all() == []


def test_tx_profile_needs_a_transaction_and_goes_when_it_ends() -> None:
    profiles = Profiles()
    assert profiles.install(make(purpose=Purpose.TX), None) == "Rejected"
    assert profiles.install(make(purpose=Purpose.TX, tx_id="tx9"), "tx1") == "Rejected"
    assert profiles.install(make(purpose=Purpose.TX), "tx1") == "Accepted"
    assert profiles.all()[0].tx_id == "tx1"
    profiles.install(make(id=2, periods=((0, 6.0),)), None)
    assert profiles.transaction_ended("tx2") == 0
    assert profiles.transaction_ended("tx1") == 1
    assert [p.id for p in profiles.all()] == [2]


def test_same_id_or_same_evse_purpose_and_stack_level_replaces() -> None:
    profiles = store(make(id=1, stack=0), make(id=2, stack=1), make(id=3, evse=2, stack=1))
    profiles.install(make(id=1, stack=5, periods=((0, 7.0),)), None)
    assert sorted((p.id, p.stack_level) for p in profiles.all()) == [(1, 5), (2, 1), (3, 1)]
    profiles.install(make(id=4, stack=1), None)
    assert sorted(p.id for p in profiles.all()) == [1, 3, 4]


def test_tx_profiles_replace_by_stack_level_only_within_their_transaction() -> None:
    profiles = store(make(id=1, purpose=Purpose.TX), active_tx="tx1")
    profiles.install(make(id=2, purpose=Purpose.TX), "tx2")
    assert sorted(p.id for p in profiles.all()) == [1, 2]
    profiles.install(make(id=3, purpose=Purpose.TX), "tx2")
    assert sorted(p.id for p in profiles.all()) == [1, 3]


def clearable() -> Profiles:
    return store(
        make(id=1, evse=0, purpose=Purpose.STATION_MAX, stack=0),
        make(id=2, evse=0, stack=1),
        make(id=3, evse=1, stack=1),
        make(id=4, evse=1, stack=2, purpose=Purpose.TX),
        make(id=5, evse=2, stack=2),
    )


@pytest.mark.parametrize(
    ("criteria", "left"),
    [
        ({"id": 3}, [1, 2, 4, 5]),
        ({"id": 3, "evse_id": 2}, [1, 2, 4, 5]),  # an id alone decides
        ({"id": 99}, [1, 2, 3, 4, 5]),
        ({"evse_id": 0}, [3, 4, 5]),
        ({"purpose": Purpose.TX_DEFAULT}, [1, 4]),
        ({"stack_level": 2}, [1, 2, 3]),
        ({"evse_id": 1, "stack_level": 1}, [1, 2, 4, 5]),
        ({"purpose": Purpose.TX_DEFAULT, "stack_level": 2}, [1, 2, 3, 4]),
        ({}, []),
    ],
)
def test_clear_removes_what_matches_every_criterion(criteria: dict[str, Any], left: list[int]) -> None:
    profiles = clearable()
    assert profiles.clear(**criteria) == 5 - len(left)
    assert sorted(p.id for p in profiles.all()) == left


def test_all_and_load_restore_a_store() -> None:
    profiles = clearable()
    restored = Profiles()
    restored.load(profiles.all())
    assert restored.all() == profiles.all()
    assert limit_a(restored, 1, T0, None, "tx1") == limit_a(profiles, 1, T0, None, "tx1")


@pytest.mark.parametrize(
    ("criteria", "found"),
    [
        ({}, [1, 2, 3, 4, 5]),
        ({"ids": [3, 5, 99]}, [3, 5]),
        ({"ids": [3], "evse_id": 2}, []),  # every criterion given must hold
        ({"evse_id": 0}, [1, 2]),  # the station-wide profiles only
        ({"evse_id": 1}, [3, 4]),
        ({"purpose": Purpose("ChargingStationMaxProfile")}, [1]),
        ({"evse_id": 1, "stack_level": 2}, [4]),
        ({"purpose": Purpose.TX_DEFAULT, "stack_level": 1}, [2, 3]),
        ({"sources": ["CSO"]}, [1, 2, 3, 4, 5]),
        ({"sources": ["EMS", "CSO"], "evse_id": 2}, [5]),
        ({"sources": ["EMS", "SO", "Other"]}, []),  # every profile here came from the CSMS
    ],
)
def test_matching_selects_by_get_charging_profiles_criteria(
    criteria: dict[str, Any], found: list[int]
) -> None:
    profiles = clearable()
    assert [p.id for p in profiles.matching(**criteria)] == found
    assert len(profiles.all()) == 5


def test_clear_by_201_criteria() -> None:
    profiles = clearable()
    assert profiles.clear(evse_id=0, purpose=Purpose("ChargingStationMaxProfile")) == 1
    assert profiles.clear(evse_id=1, purpose=Purpose("TxProfile"), stack_level=2) == 1
    assert sorted(p.id for p in profiles.all()) == [2, 3, 5]


# --- composite


def test_composite_merges_equal_neighbours_and_is_relative_to_its_start() -> None:
    profiles = store(
        make(id=1, stack=0, periods=((0, 16.0), (600, 16.0), (1200, 10.0))),
        make(id=2, stack=1, start=at(1200), periods=((0, 10.0),), duration=600),
    )
    got = composite(profiles, 1, at(300), HOUR, "A", None, None)
    assert got == [Period(0, 16.0), Period(900, 10.0)]


def test_composite_rounds_sub_second_edges_up() -> None:
    profiles = store(make(start=T0 + timedelta(milliseconds=1500), periods=((0, 16.0),)))
    assert composite(profiles, 1, T0, 10, "A", None, None) == [Period(0, math.inf), Period(2, 16.0)]


def test_composite_rejects_an_unknown_unit() -> None:
    with pytest.raises(ValueError, match="unit"):
        composite(Profiles(), 1, T0, 60, "kW", None, None)


# --- the limit enforced and reported (limits.effective_limit / composite_schedule)

TWO_CHARGING = {1: Load(32.0, 3, "tx1", T0), 2: Load(32.0, 3, "tx2", T0)}


def test_k08_two_evses_share_the_station_maximum_as_reported_and_enforced() -> None:
    """K08 / 1.6 §5.7 GetCompositeSchedule: the schedule reported is the one in force. Two EVSEs
    charging under a 32 A ChargePointMaxProfile get 16 A each, and the composite says 16 A."""
    profiles = store(make(evse=0, purpose=Purpose.STATION_MAX, periods=((0, 32.0),)))
    for evse in (1, 2):
        assert effective_limit(profiles, evse, at(60), "A", TWO_CHARGING) == (16.0, None)
        assert composite_schedule(profiles, evse, at(60), HOUR, "A", TWO_CHARGING) == [Period(0, 16.0)]
    assert composite_schedule(profiles, 0, at(60), HOUR, "A", TWO_CHARGING) == [Period(0, 32.0)]
    one_charging = {**TWO_CHARGING, 2: Load(32.0)}
    assert composite_schedule(profiles, 1, at(60), HOUR, "A", one_charging) == [Period(0, 32.0)]
    watts = composite_schedule(profiles, 1, at(60), HOUR, "W", TWO_CHARGING)
    assert watts == [Period(0, 16.0 * 230 * 3)]


def test_the_effective_limit_is_capped_by_the_hardware() -> None:
    loads = {1: Load(16.0, 1), 2: Load(32.0, 3)}
    assert effective_limit(Profiles(), 1, T0, "A", loads) == (16.0, None)
    assert effective_limit(Profiles(), 1, T0, "W", loads) == (16.0 * 230, None)
    assert effective_limit(Profiles(), 0, T0, "A", loads) == (48.0, None)
    assert effective_limit(Profiles(), 0, T0, "W", loads) == (16.0 * 230 + 32.0 * 230 * 3, None)


def test_k01_fr_49_no_number_phases_means_three_also_on_a_single_phase_evse() -> None:
    """K01.FR.49 (2.0.1) / ChargingSchedulePeriod (1.6): a period without numberPhases is on
    3 phases whatever the EVSE is wired for, in the W <-> A conversion (K01.FR.50) of the limit
    enforced and of the one reported; the hardware limit keeps the EVSE's own phases."""
    single = {1: Load(32.0, 1)}
    watts = store(make(unit="W", periods=((0, 6900.0),)))
    assert effective_limit(watts, 1, T0, "A", single) == (10.0, None)
    assert composite_schedule(watts, 1, T0, HOUR, "A", single) == [Period(0, 10.0)]
    amps = store(make(periods=((0, 10.0),)))
    assert effective_limit(amps, 1, T0, "W", single) == (6900.0, None)
    assert effective_limit(amps, 1, T0, "W", {1: Load(6.0, 1)}) == (6.0 * 230, None)  # the hardware
    schedule = Schedule((Period(0, 6900.0, phases=1),), "W", T0)
    one_phase = store(Profile(1, 1, 0, Purpose.TX_DEFAULT, Kind.ABSOLUTE, schedule))
    assert effective_limit(one_phase, 1, T0, "A", single) == (30.0, 1)


def test_k01_fr_45_number_phases_above_the_supply_is_refused() -> None:
    """K01.FR.45 (as libocpp reads it): more numberPhases than the EVSE is supplied with."""
    schedule = Schedule((Period(0, 16.0), Period(60, 8.0, phases=3)), "A", T0)
    three = Profile(1, 1, 0, Purpose.TX_DEFAULT, Kind.ABSOLUTE, schedule)
    require_phases_supplied(three, 3)
    require_phases_supplied(make(), 1)  # no numberPhases: nothing to refuse
    with pytest.raises(ValueError, match="numberPhases 3 is more than the 1 phase"):
        require_phases_supplied(three, 1)


def test_k08_composite_starts_at_the_request_instant_without_a_phantom_period() -> None:
    """The schedule starts at the instant of the request (sub-second part kept): a profile that
    began earlier in the same second is in force from its first period."""
    begun = T0 + timedelta(milliseconds=400)
    profiles = store(make(start=begun, periods=((0, 10.0),)))
    request = T0 + timedelta(milliseconds=700)
    loads = {1: Load(32.0)}
    assert composite_schedule(profiles, 1, request, 60, "A", loads) == [Period(0, 10.0)]


# --- OCPP 1.6 JSON

SAMPLE: dict[str, Any] = {
    "chargingProfileId": 7,
    "transactionId": 1234,
    "stackLevel": 2,
    "chargingProfilePurpose": "TxProfile",
    "chargingProfileKind": "Recurring",
    "recurrencyKind": "Daily",
    "validFrom": "2026-11-01T00:00:00.000Z",
    "validTo": "2026-12-01T00:00:00.000Z",
    "chargingSchedule": {
        "duration": 86400,
        "startSchedule": "2026-11-01T22:00:00.000Z",
        "chargingRateUnit": "W",
        "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 11000.0, "numberPhases": 3},
            {"startPeriod": 28800, "limit": 3680.5, "numberPhases": 1},
        ],
        "minChargingRate": 1380.0,
    },
}


def test_from_ocpp16_reads_every_field() -> None:
    profile = from_ocpp16(SAMPLE, 2)
    assert profile == Profile(
        id=7,
        evse_id=2,
        stack_level=2,
        purpose=Purpose.TX,
        kind=Kind.RECURRING,
        schedule=Schedule(
            (Period(0, 11000.0, 3), Period(28800, 3680.5, 1)),
            "W",
            datetime(2026, 11, 1, 22, tzinfo=UTC),
            86400,
            1380.0,
        ),
        recurrency=Recurrency.DAILY,
        valid_from=datetime(2026, 11, 1, tzinfo=UTC),
        valid_to=datetime(2026, 12, 1, tzinfo=UTC),
        tx_id="1234",
    )
    assert to_ocpp16(profile) == SAMPLE


def test_from_ocpp16_accepts_the_201_name_of_the_station_maximum() -> None:
    data = {**SAMPLE, "chargingProfilePurpose": "ChargingStationMaxProfile"}
    del data["transactionId"]
    profile = from_ocpp16(data, 0)
    assert profile.purpose is Purpose.STATION_MAX
    assert to_ocpp16(profile)["chargingProfilePurpose"] == "ChargePointMaxProfile"


def test_a_local_transaction_id_survives_the_json_round_trip() -> None:
    profile = make(purpose=Purpose.TX, tx_id="7f3a-local")
    assert from_ocpp16(json.loads(json.dumps(to_ocpp16(profile))), 1) == profile


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in SAMPLE.items() if k != key}


def with_schedule(**changes: Any) -> dict[str, Any]:
    return {**SAMPLE, "chargingSchedule": {**SAMPLE["chargingSchedule"], **changes}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (without("stackLevel"), "missing stackLevel"),
        (without("chargingSchedule"), "missing chargingSchedule"),
        ({**SAMPLE, "stackLevel": "2"}, "stackLevel"),
        ({**SAMPLE, "stackLevel": True}, "stackLevel"),
        ({**SAMPLE, "chargingProfileKind": "Sometimes"}, "Sometimes"),
        ({**SAMPLE, "chargingProfilePurpose": "ChargingStationExternalConstraints"}, "ExternalConstraints"),
        ({**SAMPLE, "recurrencyKind": None}, "recurrencyKind"),
        ({**SAMPLE, "validFrom": "2026-11-01T00:00:00"}, "timezone"),
        ({**SAMPLE, "validTo": "yesterday"}, "RFC 3339"),
        ({**SAMPLE, "validTo": "2026-10-01T00:00:00Z"}, "validFrom must be before validTo"),
        ({**SAMPLE, "chargingProfilePurpose": "TxDefaultProfile"}, "transactionId"),
        (with_schedule(chargingRateUnit="kW"), "chargingRateUnit"),
        (with_schedule(chargingSchedulePeriod=[]), "first period"),
        (with_schedule(chargingSchedulePeriod=[{"startPeriod": 0}]), "missing limit"),
        (with_schedule(chargingSchedulePeriod=[{"startPeriod": 0, "limit": -1}]), "limits"),
        (with_schedule(chargingSchedulePeriod=[{"startPeriod": 0, "limit": 6, "numberPhases": 4}]), "Phases"),
        (with_schedule(chargingSchedulePeriod={"startPeriod": 0}), "chargingSchedulePeriod"),
        (with_schedule(startSchedule=None), "startSchedule"),
        ({**SAMPLE, "chargingProfileKind": "Relative"}, "Relative"),
    ],
)
def test_from_ocpp16_rejects_inconsistent_profiles(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_ocpp16(data, 1)


def test_composite_to_ocpp16_rounds_merges_and_names_phases_only_when_known() -> None:
    periods = [Period(0, 16.04), Period(60, 15.96), Period(120, 6.0, phases=1), Period(180, 6.0)]
    assert composite_to_ocpp16(periods, T0 + timedelta(milliseconds=250), 300, "A") == {
        "duration": 300,
        "startSchedule": "2026-11-21T10:00:00.250Z",
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 16.0},
            {"startPeriod": 120, "limit": 6.0, "numberPhases": 1},
            {"startPeriod": 180, "limit": 6.0},
        ],
    }
    with pytest.raises(ValueError, match="no_limit"):
        composite_to_ocpp16([Period(0, math.inf)], T0, 60, "A")


def test_date_times_parse_with_z_or_an_offset_and_never_naive() -> None:
    assert parse_datetime("2026-11-21T10:00:00Z") == T0
    assert parse_datetime("2026-11-21T11:30:00.5+01:30") == T0 + timedelta(milliseconds=500)
    assert parse_datetime("2026-11-21T11:00:00+01:00").tzinfo is UTC
    assert parse_datetime("2026-11-21t10:00:00z") == T0  # RFC 3339 allows lowercase t and z
    for bad in ("2026-11-21T10:00:00", "2026-11-21", "soon", ""):
        with pytest.raises(ValueError):
            parse_datetime(bad)
    assert format_datetime(datetime(2026, 11, 21, 11, tzinfo=timezone(timedelta(hours=1)))) == (
        "2026-11-21T10:00:00.000Z"
    )
    with pytest.raises(ValueError):
        format_datetime(datetime(2026, 11, 21, 10))


# --- OCPP 2.0.1 JSON


def v201_validator(message: str) -> Draft4Validator:
    text = (files("ocpp") / "v201" / "schemas" / f"{message}.json").read_text()
    return Draft4Validator(json.loads(text))


SET_201 = v201_validator("SetChargingProfileRequest")
REPORT_201 = v201_validator("ReportChargingProfilesRequest")
COMPOSITE_201 = v201_validator("GetCompositeScheduleResponse")
SET_16 = Draft4Validator(
    json.loads((files("ocpp") / "v16" / "schemas" / "SetChargingProfile.json").read_text())
)


def report(*profiles: dict[str, Any]) -> dict[str, Any]:
    return {"requestId": 1, "chargingLimitSource": "CSO", "evseId": 2, "chargingProfile": list(profiles)}


SAMPLE_201: dict[str, Any] = {
    "id": 7,
    "transactionId": "c0ffee00-1234-4d2a-9b1e-000000000042",
    "stackLevel": 2,
    "chargingProfilePurpose": "TxProfile",
    "chargingProfileKind": "Recurring",
    "recurrencyKind": "Daily",
    "validFrom": "2026-11-01T00:00:00.000Z",
    "validTo": "2026-12-01T00:00:00.000Z",
    "chargingSchedule": [
        {
            "id": 70,
            "duration": 86400,
            "startSchedule": "2026-11-01T22:00:00.000Z",
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 11000.0, "numberPhases": 3},
                {"startPeriod": 28800, "limit": 3680.5, "numberPhases": 1},
            ],
            "minChargingRate": 1380.0,
        }
    ],
}
PROFILE_201 = Profile(
    id=7,
    evse_id=2,
    stack_level=2,
    purpose=Purpose.TX,
    kind=Kind.RECURRING,
    schedule=Schedule(
        (Period(0, 11000.0, 3), Period(28800, 3680.5, 1)),
        "W",
        datetime(2026, 11, 1, 22, tzinfo=UTC),
        86400,
        1380.0,
        schedule_id=70,
    ),
    recurrency=Recurrency.DAILY,
    valid_from=datetime(2026, 11, 1, tzinfo=UTC),
    valid_to=datetime(2026, 12, 1, tzinfo=UTC),
    tx_id="c0ffee00-1234-4d2a-9b1e-000000000042",
)
TARIFF = {"id": 1, "salesTariffEntry": [{"relativeTimeInterval": {"start": 0}}]}


def schedule_201(**changes: Any) -> dict[str, Any]:
    return {**SAMPLE_201, "chargingSchedule": [{**SAMPLE_201["chargingSchedule"][0], **changes}]}


def test_from_ocpp201_reads_every_field_and_to_ocpp201_writes_them_back() -> None:
    SET_201.validate({"evseId": 2, "chargingProfile": SAMPLE_201})
    assert from_ocpp201(SAMPLE_201, 2) == PROFILE_201
    assert to_ocpp201(PROFILE_201) == SAMPLE_201
    REPORT_201.validate(report(to_ocpp201(PROFILE_201)))


def test_from_ocpp201_ignores_a_sales_tariff() -> None:
    data = schedule_201(salesTariff=TARIFF)
    SET_201.validate({"evseId": 2, "chargingProfile": data})
    assert from_ocpp201(data, 2) == PROFILE_201


def test_the_201_station_maximum_keeps_its_201_name() -> None:
    data = {k: v for k, v in SAMPLE_201.items() if k != "transactionId"}
    profile = from_ocpp201({**data, "chargingProfilePurpose": "ChargingStationMaxProfile"}, 0)
    assert profile.purpose is Purpose.STATION_MAX
    assert to_ocpp201(profile)["chargingProfilePurpose"] == "ChargingStationMaxProfile"
    assert to_ocpp16(profile)["chargingProfilePurpose"] == "ChargePointMaxProfile"


def test_to_ocpp201_gives_a_16_profile_its_own_id_as_schedule_id() -> None:
    for profile in (from_ocpp16(SAMPLE, 2), make(id=12, kind=Kind.RELATIVE, start=None, duration=600)):
        data = to_ocpp201(profile)
        assert data["chargingSchedule"][0]["id"] == profile.id
        REPORT_201.validate(report(data))
    assert to_ocpp201(from_ocpp16(SAMPLE, 2))["transactionId"] == "1234"


@pytest.mark.parametrize(
    "profile",
    [
        PROFILE_201,
        replace(PROFILE_201, tx_id="1234"),
        replace(PROFILE_201, tx_id="0042"),
        replace(PROFILE_201, purpose=Purpose.STATION_MAX, evse_id=0, tx_id=None),
        replace(PROFILE_201, schedule=replace(PROFILE_201.schedule, schedule_id=0)),
    ],
)
def test_a_201_profile_survives_storage_in_the_16_form(profile: Profile) -> None:
    """The daemon stores ``to_ocpp16`` JSON and reloads it with ``from_ocpp16``."""
    stored = json.dumps(to_ocpp16(profile))
    assert from_ocpp16(json.loads(stored), profile.evse_id) == profile
    assert to_ocpp201(from_ocpp16(json.loads(stored), profile.evse_id)) == to_ocpp201(profile)


def test_the_16_form_of_a_16_profile_stays_valid_16() -> None:
    profile = from_ocpp16(SAMPLE, 2)
    assert "id" not in to_ocpp16(profile)["chargingSchedule"]
    SET_16.validate({"connectorId": 2, "csChargingProfiles": to_ocpp16(profile)})
    # The stored form of a 2.0.1 profile carries the schedule id 1.6 has no field for.
    assert to_ocpp16(PROFILE_201)["chargingSchedule"]["id"] == 70


def without_201(key: str) -> dict[str, Any]:
    return {k: v for k, v in SAMPLE_201.items() if k != key}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**SAMPLE_201, "chargingProfilePurpose": "ChargingStationExternalConstraints"}, "may not set"),
        ({**SAMPLE_201, "chargingProfilePurpose": "ChargePointMaxProfile"}, "ChargePointMaxProfile"),
        ({**SAMPLE_201, "chargingSchedule": SAMPLE_201["chargingSchedule"] * 2}, "holds 2 schedules"),
        ({**SAMPLE_201, "chargingSchedule": []}, "holds 0 schedules"),
        ({**SAMPLE_201, "chargingSchedule": SAMPLE_201["chargingSchedule"][0]}, "chargingSchedule"),
        (without_201("id"), "missing id"),
        (without_201("stackLevel"), "missing stackLevel"),
        (without_201("chargingProfileKind"), "missing chargingProfileKind"),
        (schedule_201(id=None), "missing id"),
        (schedule_201(id="70"), "id"),
        ({**SAMPLE_201, "transactionId": 1234}, "transactionId"),
        ({**SAMPLE_201, "chargingProfilePurpose": "TxDefaultProfile"}, "transactionId"),
        ({**SAMPLE_201, "recurrencyKind": "Monthly"}, "Monthly"),
        ({**SAMPLE_201, "validFrom": "2026-11-01T00:00:00"}, "timezone"),
        ({**SAMPLE_201, "validTo": "2026-10-01T00:00:00Z"}, "validFrom must be before validTo"),
        ({**without_201("transactionId"), "chargingProfileKind": "Relative"}, "Relative"),
        (schedule_201(chargingRateUnit="kW"), "chargingRateUnit"),
        (schedule_201(chargingSchedulePeriod=[{"startPeriod": 60, "limit": 6}]), "first period"),
        (schedule_201(chargingSchedulePeriod=[{"startPeriod": 0, "limit": -1}]), "limits"),
        (schedule_201(chargingSchedulePeriod=[{"startPeriod": 0, "limit": 6, "numberPhases": 0}]), "Phases"),
        (
            schedule_201(
                chargingSchedulePeriod=[{"startPeriod": 0, "limit": 6, "numberPhases": 1, "phaseToUse": 2}]
            ),
            "phaseToUse",
        ),
        (schedule_201(minChargingRate=-1), "minChargingRate"),
        (schedule_201(duration=-1), "duration"),
    ],
)
def test_from_ocpp201_rejects_inconsistent_profiles(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_ocpp201(data, 2)


def test_composite_to_ocpp201_is_the_16_schedule_with_an_evse() -> None:
    periods = [Period(0, 16.04), Period(60, 15.96), Period(120, 6.0, phases=1), Period(180, 6.0)]
    start = T0 + timedelta(milliseconds=250)
    composite = composite_to_ocpp201(periods, start, 300, "A", 1)
    assert composite == {
        "evseId": 1,
        "duration": 300,
        "scheduleStart": "2026-11-21T10:00:00.250Z",
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": composite_to_ocpp16(periods, start, 300, "A")["chargingSchedulePeriod"],
    }
    assert len(composite["chargingSchedulePeriod"]) == 3
    COMPOSITE_201.validate({"status": "Accepted", "schedule": composite})
    station = composite_to_ocpp201([Period(0, 22000.0)], T0, 60, "W", 0)
    COMPOSITE_201.validate({"status": "Accepted", "schedule": station})
    with pytest.raises(ValueError, match="no_limit"):
        composite_to_ocpp201([Period(0, math.inf)], T0, 60, "A", 1)


# --- properties

offsets = st.integers(-2 * 86400, 2 * 86400)


@st.composite
def profiles(draw: st.DrawFn) -> Profile:
    """Any consistent profile around T0, on whole seconds (not necessarily installable)."""
    purpose = draw(st.sampled_from(Purpose))
    kind = draw(st.sampled_from(Kind))
    unit = draw(st.sampled_from(["A", "W"]))
    top = 64 if unit == "A" else 44000
    starts = sorted(draw(st.sets(st.integers(1, 3 * HOUR), max_size=3)))
    periods = tuple(
        Period(s, float(draw(st.integers(0, top))), draw(st.sampled_from([None, 1, 3]))) for s in [0, *starts]
    )
    if kind is Kind.RELATIVE:
        start = None
    elif kind is Kind.RECURRING:
        start = at(draw(offsets))
    else:
        start = draw(st.none() | offsets.map(at))
    valid_from = draw(st.none() | offsets.map(at))
    valid_to = draw(
        st.none() | st.integers(1, 86400).map(lambda d: (valid_from or T0) + timedelta(seconds=d))
    )
    return Profile(
        id=draw(st.integers(1, 12)),
        evse_id=0 if purpose is Purpose.STATION_MAX else draw(st.integers(0, 2)),
        stack_level=draw(st.integers(0, 3)),
        purpose=purpose,
        kind=kind,
        schedule=Schedule(
            periods,
            unit,
            start,
            draw(st.none() | st.integers(1, 2 * 86400)),
            draw(st.none() | st.integers(0, 10).map(float)),
            draw(st.none() | st.integers(0, 99)),
        ),
        recurrency=draw(st.sampled_from(Recurrency)) if kind is Kind.RECURRING else None,
        valid_from=valid_from,
        valid_to=valid_to,
        tx_id=draw(st.none() | st.sampled_from(["tx1", "42"])) if purpose is Purpose.TX else None,
    )


@given(profiles())
def test_json_round_trip(profile: Profile) -> None:
    assert from_ocpp16(json.loads(json.dumps(to_ocpp16(profile))), profile.evse_id) == profile


@given(profiles())
def test_201_json_round_trip_valid_against_the_schema(profile: Profile) -> None:
    data = json.loads(json.dumps(to_ocpp201(profile)))
    REPORT_201.validate(report(data))
    schedule = profile.schedule
    filled = replace(
        schedule, schedule_id=profile.id if schedule.schedule_id is None else schedule.schedule_id
    )
    assert from_ocpp201(data, profile.evse_id) == replace(profile, schedule=filled)


@given(profiles(), st.text(min_size=1, max_size=36))
def test_any_201_transaction_id_survives_storage(profile: Profile, tx_id: str) -> None:
    profile = replace(profile, purpose=Purpose.TX, evse_id=1, tx_id=tx_id)
    from_wire = from_ocpp201(to_ocpp201(profile), 1)
    assert from_ocpp16(json.loads(json.dumps(to_ocpp16(from_wire))), 1) == from_wire


@given(
    installed=st.lists(profiles(), max_size=6),
    evse=st.integers(0, 2),
    start=offsets.map(at),
    duration=st.integers(1, 3 * 86400),
    tx=st.sampled_from([None, "tx1", "tx2"]),
    tx_start=st.none() | offsets.map(at),
    probes=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=20),
)
def test_the_composite_limit_at_any_instant_equals_limit_a(
    installed: list[Profile],
    evse: int,
    start: datetime,
    duration: int,
    tx: str | None,
    tx_start: datetime | None,
    probes: list[float],
) -> None:
    store_ = Profiles()
    for profile in installed:
        store_.install(profile, "tx1")
    periods = composite(store_, evse, start, duration, "A", tx_start, tx)
    assert periods[0].start_s == 0
    for a, b in itertools.pairwise(periods):
        assert a.start_s < b.start_s and (a.limit, a.phases) != (b.limit, b.phases)
    instants = {int(p * duration) for p in probes} | {
        s for q in periods for s in (q.start_s - 1, q.start_s) if s >= 0
    }
    for s in instants:
        in_force = [q for q in periods if q.start_s <= s][-1]
        assert in_force.limit == limit_a(store_, evse, start + timedelta(seconds=s), tx_start, tx)


@given(installed=st.lists(profiles(), max_size=6), now=offsets.map(at), tx_start=st.none() | offsets.map(at))
def test_the_limit_holds_until_next_change(
    installed: list[Profile], now: datetime, tx_start: datetime | None
) -> None:
    store_ = Profiles()
    for profile in installed:
        store_.install(profile, "tx1")
    change = next_limit_change(store_, now, alone(1, "tx1", tx_start))
    assert change == store_.next_change(1, now, tx_start, "tx1")
    assert change is None or change > now
    until = change if change is not None else now + timedelta(days=8)
    span = int((until - now).total_seconds()) - 1
    if span > 0:
        later = now + timedelta(seconds=min(span, 86400))
        assert limit_a(store_, 1, later, tx_start, "tx1") == limit_a(store_, 1, now, tx_start, "tx1")


@st.composite
def loads(draw: st.DrawFn) -> dict[int, Load]:
    """1 to 4 EVSEs, each idle or in a transaction (tx1 is the one TxProfiles are bound to)."""
    count = draw(st.integers(1, 4))
    return {
        evse: Load(
            float(draw(st.sampled_from([10, 16, 32, 63]))),
            draw(st.sampled_from([1, 3])),
            tx := draw(st.sampled_from([None, "tx1", f"other{evse}"])),
            draw(offsets.map(at)) if tx else None,
        )
        for evse in range(1, count + 1)
    }


@given(
    installed=st.lists(profiles(), max_size=6),
    loads_=loads(),
    start=offsets.map(at),
    fraction_ms=st.integers(0, 999),
    duration=st.integers(1, 2 * 86400),
    unit=st.sampled_from(UNITS),
    probes=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=10),
)
def test_the_composite_reported_is_the_limit_enforced_at_every_instant(
    installed: list[Profile],
    loads_: dict[int, Load],
    start: datetime,
    fraction_ms: int,
    duration: int,
    unit: str,
    probes: list[float],
) -> None:
    """GetCompositeSchedule (Station.composite -> composite_schedule) and the limit the station
    enforces (its permits: Station._update_limits -> effective_limit) agree for any profiles and
    any number of EVSEs; the EVSEs in a transaction together stay within the station maximum."""
    store_ = Profiles()
    for profile in installed:
        store_.install(profile, "tx1")
    start += timedelta(milliseconds=fraction_ms)
    for evse in [0, *loads_]:
        composite = composite_schedule(store_, evse, start, duration, unit, loads_)
        assert composite[0].start_s == 0
        instants = {int(p * duration) for p in probes} | {
            s for q in composite for s in (q.start_s - 1, q.start_s) if s >= 0
        }
        for s in instants:
            in_force = [q for q in composite if q.start_s <= s][-1]
            enforced = effective_limit(store_, evse, start + timedelta(seconds=s), unit, loads_)
            assert (in_force.limit, in_force.phases) == enforced
    at_start = [effective_limit(store_, e, start, "A", loads_)[0] for e, load in loads_.items() if load.tx_id]
    cap, _ = effective_limit(store_, 0, start, "A", {e: Load(math.inf, 3) for e in loads_})
    if at_start and all(p.schedule.unit == "A" and p.purpose is Purpose.STATION_MAX for p in store_.all()):
        assert sum(at_start) <= cap + 1e-9


@given(installed=st.lists(profiles(), max_size=6), loads_=loads(), now=offsets.map(at), probe=st.floats(0, 1))
def test_no_limit_changes_before_the_next_limit_change(
    installed: list[Profile], loads_: dict[int, Load], now: datetime, probe: float
) -> None:
    """The limit timer sleeps until ``next_limit_change``: no EVSE's limit may change before."""
    store_ = Profiles()
    for profile in installed:
        store_.install(profile, "tx1")
    change = next_limit_change(store_, now, loads_)
    assert change is None or change > now
    until = change if change is not None else now + timedelta(days=8)
    later = now + (until - now - timedelta(microseconds=1)) * probe
    for evse in [0, *loads_]:
        assert effective_limit(store_, evse, later, "A", loads_) == effective_limit(
            store_, evse, now, "A", loads_
        )
