"""Helpers the OCPP 1.6 tests share, in-process (``tests.inproc``) and end to end
(``tests.ocpp_harness``): payload builders and readers of what the station sent or stored.
Sync or async wrappers that talk to a bench stay with their tests.
"""

from __future__ import annotations

from typing import Any

from tests.ocpp_helpers import Recorded, Stored

STATION = "CP001"
OTHER = "0A0B0C0D"  # a second card, uppercase hex as the reader reports it
TX_ACTIONS = ("StartTransaction", "MeterValues", "StopTransaction")


def authorization(id_tag: str, status: str | None = "Accepted") -> dict[str, Any]:
    """One localAuthorizationList entry; status None deletes the id (Differential)."""
    return {"idTag": id_tag} if status is None else {"idTag": id_tag, "idTagInfo": {"status": status}}


def stored_list(b: Stored) -> dict[str, str]:
    return dict(b.db("SELECT id_tag, status FROM local_list"))


def stopped(b: Stored, tx_id: str) -> bool:
    return bool(b.db("SELECT stopped_at IS NOT NULL FROM transactions WHERE id = ?", tx_id)[0][0])


def tx_messages(b: Recorded, after: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """The transaction messages the CSMS received (action, payload), in arrival order."""
    return [
        (e.action, e.payload)  # type: ignore[misc]
        for e in b.csms.timeline[after:]
        if e.kind == "call" and e.direction == "in" and e.station == STATION and e.action in TX_ACTIONS
    ]


def energy(meter_values: dict[str, Any]) -> float:
    """The Energy.Active.Import.Register of the last meterValue, in Wh."""
    for sample in meter_values["meterValue"][-1]["sampledValue"]:
        if sample.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register":
            assert sample.get("unit", "Wh") == "Wh"
            return float(sample["value"])
    raise AssertionError(f"no energy register in {meter_values}")
