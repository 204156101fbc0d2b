"""A meter sample as both adapters take it: a JSON object each version turns into its MeterValue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from controller.core.timestamps import timestamp
from drivers.base import MeterReading


def sample_body(evse_id: int, at: datetime, context: str, reading: MeterReading) -> dict[str, Any]:
    return {
        "evse_id": evse_id,
        "timestamp": timestamp(at),
        "context": context,
        "energy_wh": reading.energy_wh,
        "power_w": reading.power_w,
        "current_a": list(reading.current_a),
        "voltage_v": list(reading.voltage_v),
    }
