"""The measurands the station reports, as data: where each is in a stored reading.

A stored reading is the dict ``services.sample_body`` makes. Both OCPP versions format
the same values; only the JSON around them differs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

# measurand -> (field of the reading, unit, phase label per phase or None for a total)
SOURCES: dict[str, tuple[str, str, str | None]] = {
    "Energy.Active.Import.Register": ("energy_wh", "Wh", None),
    "Power.Active.Import": ("power_w", "W", None),
    "Current.Import": ("current_a", "A", "{}"),
    "Voltage": ("voltage_v", "V", "{}-N"),
}
MEASURANDS = tuple(SOURCES)
PHASES = ("L1", "L2", "L3")


def measured(
    sample: dict[str, Any], measurands: Sequence[str]
) -> Iterator[tuple[str, float, str, str | None]]:
    """(measurand, value, unit, phase) for each configured measurand the reading has."""
    for measurand in measurands:
        source = SOURCES.get(measurand)
        if source is None:
            continue
        field, unit, phase_label = source
        if phase_label is None:
            yield measurand, sample[field], unit, None
            continue
        for phase, value in zip(PHASES, sample[field], strict=False):
            yield measurand, value, unit, phase_label.format(phase)
