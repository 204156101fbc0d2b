"""What the control loop last saw of one EVSE, and how the rig shows it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.safety.pilot import CpState, PilotMode
from controller.safety.supervisor import Fault


@dataclass(frozen=True, slots=True)
class EvseView:
    """One EVSE as the control loop last saw it."""

    cp: CpState
    pilot: PilotMode
    duty_percent: float
    offered_a: float
    contactor_closed: bool
    faults: frozenset[Fault]

    def to_wire(self) -> list[Any]:
        return [
            self.cp.value,
            self.pilot.value,
            self.duty_percent,
            self.offered_a,
            self.contactor_closed,
            sorted(f.value for f in self.faults),
        ]

    @classmethod
    def from_wire(cls, fields: list[Any]) -> EvseView:
        cp, pilot, duty, offered, closed, faults = fields
        return cls(
            CpState(cp),
            PilotMode(pilot),
            float(duty),
            float(offered),
            bool(closed),
            frozenset(map(Fault, faults)),
        )


def physical_status(view: EvseView | None) -> dict[str, Any]:
    """The rig status fields the control loop knows (CONTRACTS.md section 3)."""
    return {
        "cp_state": view.cp.value if view else "A",
        "pwm": bool(view and view.pilot is PilotMode.PWM),
        "duty_percent": view.duty_percent if view else 100.0,
        "offered_a": round(view.offered_a, 1) if view else 0.0,
        "contactor_closed": bool(view and view.contactor_closed),
        "faults": sorted(f.value for f in view.faults) if view else [],
    }
