"""The development CSMS seen the same way for OCPP 1.6 and 2.0.1: what scenarios and the
soak ask of the CSMS (transactions, connector status, remote start and stop, a current
limit), in one vocabulary whatever the station speaks."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controller.ocpp.v16 import words as words16
from controller.ocpp.v201 import words as words201
from hil.csms import CsmsThread

ENERGY = "Energy.Active.Import.Register"
STATUSES_16 = {word: status for status, word in words16.STATUSES.items()}  # 1.6 word -> the station's


@dataclass
class Transaction:
    """One transaction as the CSMS recorded it."""

    id: str
    evse: int | None
    id_token: str | None
    meter_start_wh: float | None
    meter_stop_wh: float | None
    ended: bool
    stop_reason: str | None
    ends: int  # Stop / Ended messages received, redeliveries included
    distinct_ends: int  # different Stop / Ended messages: more than one is a second end, not a redelivery


def _energy(meter_values: Any) -> list[float]:
    """The energy register readings of a 2.0.1 meterValue list, in Wh."""
    values = []
    for meter_value in meter_values or []:
        for sample in meter_value.get("sampledValue", []):
            if sample.get("measurand", ENERGY) == ENERGY and sample.get("phase") is None:
                scale = {"kWh": 1000.0}.get(sample.get("unitOfMeasure", {}).get("unit", "Wh"), 1.0)
                multiplier = 10 ** sample.get("unitOfMeasure", {}).get("multiplier", 0)
                values.append(float(sample["value"]) * scale * multiplier)
    return values


class CsmsView:
    def __init__(self, csms: CsmsThread, version: str, station: str = "CP001") -> None:
        self.csms, self.version, self.station = csms, version, station

    @property
    def v16(self) -> bool:
        return self.version == "1.6"

    def mark(self) -> int:
        return len(self.csms.timeline)

    def call(self, action: str, payload: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        return self.csms.call(self.station, action, payload, timeout=timeout)

    def wait(
        self,
        action: str,
        where: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 10,
        after: int = 0,
    ) -> dict[str, Any]:
        entry = self.csms.wait_for(action, station=self.station, where=where, timeout=timeout, after=after)
        payload: dict[str, Any] = entry.payload  # type: ignore[assignment]
        return payload

    def connected(self) -> bool:
        try:
            return self.csms._sync(lambda: self.csms.csms.stations[self.station].connected)
        except KeyError:
            return False

    # -- what the station reports ------------------------------------------------------

    def booted(self, after: int = 0, timeout: float = 15) -> dict[str, Any]:
        return self.wait("BootNotification", timeout=timeout, after=after)

    def status(self, evse: int, status: str, after: int = 0, timeout: float = 10) -> dict[str, Any]:
        """Wait for a StatusNotification of ``status`` (1.6 words). 2.0.1 says Occupied for
        all the states of a session, so there a charging state is waited for as the
        ``chargingState`` of a TransactionEvent."""
        if self.v16:
            return self.wait(
                "StatusNotification",
                lambda p: p["connectorId"] == evse and p["status"] == status,
                timeout,
                after,
            )
        core = STATUSES_16[status]
        if core in words201.CHARGING_STATES:
            wanted_state = words201.CHARGING_STATES[core]
            return self.wait(
                "TransactionEvent",
                lambda p: (
                    p["transactionInfo"].get("chargingState") == wanted_state
                    and p.get("evse", {}).get("id", evse) == evse
                ),
                timeout,
                after,
            )
        wanted = words201.CONNECTOR_STATUSES[core]
        return self.wait(
            "StatusNotification",
            lambda p: p["evseId"] == evse and p["connectorStatus"] == wanted,
            timeout,
            after,
        )

    def started(self, evse: int = 1, after: int = 0, timeout: float = 10) -> str:
        """Wait for a transaction to start on ``evse``; its id at the CSMS."""
        if self.v16:
            call = self.csms.wait_for(
                "StartTransaction",
                station=self.station,
                where=lambda p: p["connectorId"] == evse,
                timeout=timeout,
                after=after,
            )
            # The id is in the CSMS's reply to that very call.
            deadline = time.monotonic() + timeout
            while True:
                for entry in self.csms.timeline:
                    if (
                        entry.direction == "out"
                        and entry.kind == "result"
                        and entry.unique_id == call.unique_id
                    ):
                        return str(entry.payload["transactionId"])  # type: ignore[index]
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no reply to StartTransaction {call.unique_id}")
                time.sleep(0.02)
        event = self.wait(
            "TransactionEvent",
            lambda p: p["eventType"] == "Started" and p.get("evse", {}).get("id") == evse,
            timeout,
            after,
        )
        return str(event["transactionInfo"]["transactionId"])

    def ended(self, tx_id: str, after: int = 0, timeout: float = 15) -> Transaction:
        """Wait for ``tx_id`` to end; the transaction as recorded."""
        if self.v16:
            self.wait("StopTransaction", lambda p: str(p["transactionId"]) == tx_id, timeout, after)
        else:
            self.wait(
                "TransactionEvent",
                lambda p: p["eventType"] == "Ended" and p["transactionInfo"]["transactionId"] == tx_id,
                timeout,
                after,
            )
        return next(tx for tx in self.transactions() if tx.id == tx_id)

    def transactions(self) -> list[Transaction]:
        """Every transaction of this station the CSMS knows, oldest first."""
        if self.v16:
            stops: dict[int, list[dict[str, Any]]] = {}
            for stop in self.csms.calls("StopTransaction", station=self.station):
                if stop not in stops.setdefault(stop["transactionId"], []):
                    stops[stop["transactionId"]].append(stop)
            return [
                Transaction(
                    id=str(tx_id),
                    evse=tx["start"]["connectorId"],
                    id_token=tx["start"]["idTag"],
                    meter_start_wh=float(tx["start"]["meterStart"]),
                    meter_stop_wh=float(stops[tx_id][0]["meterStop"]) if stops.get(tx_id) else None,
                    ended=bool(stops.get(tx_id)),
                    stop_reason=stops[tx_id][0].get("reason", "Local") if stops.get(tx_id) else None,
                    ends=tx["stop_count"],
                    distinct_ends=len(stops.get(tx_id, [])),
                )
                for tx_id, tx in sorted(self.csms.transactions.items())
                if tx["station"] == self.station
            ]
        found = []
        for tx_id, tx in self.csms.transactions201.items():
            if tx["station"] != self.station:
                continue
            first = tx["started"] or (tx["events"][0] if tx["events"] else {})
            ended = tx["ended"]
            start_energy = _energy(first.get("meterValue"))
            stop_energy = _energy(ended.get("meterValue")) if ended else []
            token = next((e["idToken"]["idToken"] for e in tx["events"] if e.get("idToken")), None)
            found.append(
                Transaction(
                    id=tx_id,
                    evse=first.get("evse", {}).get("id"),
                    id_token=token,
                    meter_start_wh=start_energy[0] if start_energy else None,
                    meter_stop_wh=stop_energy[-1] if stop_energy else None,
                    ended=ended is not None,
                    stop_reason=ended["transactionInfo"].get("stoppedReason", "Local") if ended else None,
                    ends=tx["ended_count"],
                    # events holds each seqNo once: two Ended there are two different messages
                    distinct_ends=sum(e["eventType"] == "Ended" for e in tx["events"]),
                )
            )
        return found

    # -- what the CSMS asks ------------------------------------------------------------

    def remote_start(self, token: str, evse: int = 1) -> str:
        if self.v16:
            reply = self.call("RemoteStartTransaction", {"idTag": token, "connectorId": evse})
        else:
            reply = self.call(
                "RequestStartTransaction",
                {"idToken": {"idToken": token, "type": "ISO14443"}, "evseId": evse, "remoteStartId": 1},
            )
        return str(reply["status"])

    def remote_stop(self, tx_id: str) -> str:
        if self.v16:
            reply = self.call("RemoteStopTransaction", {"transactionId": int(tx_id)})
        else:
            reply = self.call("RequestStopTransaction", {"transactionId": tx_id})
        return str(reply["status"])

    def set_limit(self, amps: float, evse: int = 1) -> str:
        """A TxDefaultProfile limiting ``evse`` to ``amps`` from now on."""
        period = {"startPeriod": 0, "limit": amps}
        if self.v16:
            reply = self.call(
                "SetChargingProfile",
                {
                    "connectorId": evse,
                    "csChargingProfiles": {
                        "chargingProfileId": 100,
                        "stackLevel": 0,
                        "chargingProfilePurpose": "TxDefaultProfile",
                        "chargingProfileKind": "Relative",
                        "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [period]},
                    },
                },
            )
        else:
            reply = self.call(
                "SetChargingProfile",
                {
                    "evseId": evse,
                    "chargingProfile": {
                        "id": 100,
                        "stackLevel": 0,
                        "chargingProfilePurpose": "TxDefaultProfile",
                        "chargingProfileKind": "Relative",
                        "chargingSchedule": [
                            {"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [period]}
                        ],
                    },
                },
            )
        return str(reply["status"])

    def clear_limit(self) -> str:
        payload = {"id": 100} if self.v16 else {"chargingProfileId": 100}
        return str(self.call("ClearChargingProfile", payload)["status"])

    def trigger_heartbeat(self) -> str:
        return str(self.call("TriggerMessage", {"requestedMessage": "Heartbeat"})["status"])
