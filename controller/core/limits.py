"""The charging limit of each EVSE: one rule for what the station enforces and what
GetCompositeSchedule reports.

``effective_limit`` is that rule; the station's permits (``Station``) and the composite
schedules (``composite_schedule``) both read it, so the two cannot disagree. It is the one
place where the hardware limit of an EVSE and the 6 A minimum of IEC 61851-1 meet the
charging profiles. (The safety supervisor clamps the PWM duty to the hardware limit and to
6 A again, as the last line of defence; that clamp is not a rule of this layer.)

What the profiles allow changes only at their edges, so the limit is piecewise constant:
``next_limit_change`` says when it may next change, and a composite is the limit sampled at
``start`` and at every edge after it. Pure: no I/O, time passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from controller.core.schedule import UNITS, Period, Profiles, convert
from controller.safety.pilot import MIN_CURRENT_A

VOLTAGE_V = 230.0  # phase to neutral: converts a limit in W to A and back
_SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class Load:
    """What the limit of one EVSE depends on besides the profiles."""

    max_current_a: float  # the hardware limit (cable, breaker)
    phases: int = 3  # the phases it is wired for: its hardware limit in W (not a period's default)
    tx_id: str | None = None  # the transaction it runs, if any
    tx_started_at: datetime | None = None


class Limit(NamedTuple):
    value: float  # in the unit asked for
    phases: int | None  # the fewest phases a period in force names; None: as wired


def effective_limit(
    profiles: Profiles,
    evse_id: int,
    at: datetime,
    unit: str,
    loads: Mapping[int, Load],
    voltage: float = VOLTAGE_V,
) -> Limit:
    """The limit on ``evse_id`` at ``at`` in ``unit``: what the station enforces and reports.

    An EVSE gets min(its hardware limit, its TxProfile or else TxDefaultProfile, an equal share
    of the station maximum among the EVSEs running a transaction), and nothing if that is
    under the 6 A an EV can be offered (IEC 61851-1 Annex A: the PWM stops). ``evse_id`` 0,
    the station as a whole, gets min(the sum of the hardware limits, the station maximum).
    """
    if evse_id == 0:
        allowed = profiles.in_force(0, at, unit, None, None, voltage)
        hardware = sum(_hardware(load, unit, voltage, None) for load in loads.values())
        return Limit(min(allowed.station, hardware), allowed.phases)
    amps = _evse_limit(profiles, evse_id, at, "A", loads, voltage)
    if not amps.value >= MIN_CURRENT_A:
        return Limit(0.0, amps.phases)
    return amps if unit == "A" else _evse_limit(profiles, evse_id, at, unit, loads, voltage)


def composite_schedule(
    profiles: Profiles,
    evse_id: int,
    start: datetime,
    duration_s: int,
    unit: str,
    loads: Mapping[int, Load],
    voltage: float = VOLTAGE_V,
) -> list[Period]:
    """``effective_limit`` from ``start`` for ``duration_s`` seconds, as merged periods.

    ``start`` is kept as given (the instant of the request, sub-second part included); the
    later edges are rounded up to whole seconds from it.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be A or W, not {unit!r}")
    load = loads.get(evse_id)
    tx_id, tx_started_at = (load.tx_id, load.tx_started_at) if load is not None else (None, None)
    end = start + timedelta(seconds=duration_s)
    edges = profiles.edges(evse_id, tx_id, tx_started_at, start, end)
    offsets = {0} | {-((start - edge) // _SECOND) for edge in edges}  # ceil to a whole second
    periods: list[Period] = []
    for offset in sorted(o for o in offsets if o < duration_s):
        limit, phases = effective_limit(
            profiles, evse_id, start + timedelta(seconds=offset), unit, loads, voltage
        )
        if not periods or (periods[-1].limit, periods[-1].phases) != (limit, phases):
            periods.append(Period(offset, limit, phases))
    return periods


def next_limit_change(profiles: Profiles, now: datetime, loads: Mapping[int, Load]) -> datetime | None:
    """The first instant after ``now`` where the limit of some EVSE may change, while the
    loads stay as they are; None if no profile will ever change it."""
    changes = (
        profiles.next_change(evse_id, now, load.tx_started_at, load.tx_id) for evse_id, load in loads.items()
    )
    return min((change for change in changes if change is not None), default=None)


def _evse_limit(
    profiles: Profiles, evse_id: int, at: datetime, unit: str, loads: Mapping[int, Load], voltage: float
) -> Limit:
    load = loads[evse_id]
    allowed = profiles.in_force(evse_id, at, unit, load.tx_id, load.tx_started_at, voltage)
    sharing = max(1, sum(1 for other in loads.values() if other.tx_id is not None))
    hardware = _hardware(load, unit, voltage, allowed.phases)
    return Limit(min(hardware, allowed.own, allowed.station / sharing), allowed.phases)


def _hardware(load: Load, unit: str, voltage: float, phases: int | None) -> float:
    """The hardware limit of ``load`` in ``unit``, on ``phases`` if a period names them."""
    return convert(load.max_current_a, "A", unit, voltage * (phases or load.phases))
