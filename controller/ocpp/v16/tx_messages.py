"""OCPP 1.6 transaction messages from the persistent outbox (Start/StopTransaction,
MeterValues), in order and at least once, and remote start and stop."""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

from controller.core import authorization as auth
from controller.core import schedule
from controller.io.link import Reply
from controller.io.storage import OutboxEntry
from controller.ocpp.adapter import Retries
from controller.ocpp.fields import tx_profile
from controller.ocpp.v16.base import Base16

log = logging.getLogger(__name__)


def _wh(value: float) -> int:
    return math.floor(value + 1e-9)


class TransactionMessages(Base16):
    """StartTransaction, MeterValues, StopTransaction, RemoteStart/StopTransaction."""

    async def _drop(self, entry: OutboxEntry, why: str) -> None:
        log.error("%s for transaction %s dropped: %s", entry.kind, entry.transaction_id, why)
        if entry.kind == "start":
            self._abandoned.add(entry.transaction_id)
            self._status_wake.set()
        await self.host.records.outbox_delivered(entry.id, entry.transaction_id)

    def _retries(self) -> Retries:
        keys = self.keys
        return Retries(
            keys.number("TransactionMessageAttempts"), keys.number("TransactionMessageRetryInterval")
        )

    async def _deliver(self, entry: OutboxEntry) -> bool:
        """Send one outbox entry until it is answered or its attempts run out.

        False when the connection closed first (the entry stays for the next session).
        """
        csms_id = None
        if entry.kind != "start":
            csms_id = entry.csms_id or self.host.csms_ids.get(entry.transaction_id)
            if csms_id is None:
                await self._drop(entry, "the CSMS never acknowledged its start")
                return True
        if entry.kind == "stop" and (
            self.keys.items("StopTxnSampledData") or self.keys.items("StopTxnAlignedData")
        ):
            samples = await self.host.records.meter_samples(entry.transaction_id)
            entry = dataclasses.replace(entry, body={**entry.body, "samples": samples})
        action, payload = self._message(entry, csms_id)
        reply = await self._call_entry(entry, action, payload, self._retries)
        if reply is None:
            return False
        if not isinstance(reply, dict):
            await self._drop(entry, f"not accepted after its attempts: {reply}")
            return True
        new_id = str(reply["transactionId"]) if action == "StartTransaction" else None
        await self._entry_delivered(entry, entry.kind == "stop", new_id)
        if new_id is not None:
            self.host.csms_ids[entry.transaction_id] = new_id
            self._status_wake.set()
        elif entry.kind == "stop":
            self.host.csms_ids.pop(entry.transaction_id, None)
        if "idTagInfo" in reply:
            self.host.id_tag_info(
                entry.transaction_id,
                entry.body.get("id_tag", ""),
                auth.info_from_ocpp16(reply["idTagInfo"]),
            )
        return True

    def _message(self, entry: OutboxEntry, csms_id: str | None) -> tuple[str, dict[str, Any]]:
        body = entry.body
        if entry.kind == "start":
            payload: dict[str, Any] = {
                "connectorId": body["evse_id"],
                "idTag": body["id_tag"],
                "meterStart": _wh(body["meter_start_wh"]),
                "timestamp": body["timestamp"],
            }
            if body.get("reservation_id") is not None:
                payload["reservationId"] = body["reservation_id"]
            return "StartTransaction", payload
        assert csms_id is not None
        if entry.kind == "meter":
            measurands = self.keys.items(
                "MeterValuesAlignedData" if body["context"] == "Sample.Clock" else "MeterValuesSampledData"
            )
            return "MeterValues", {
                "connectorId": body["evse_id"],
                "transactionId": int(csms_id),
                "meterValue": [self.meter_value(body, measurands)],
            }
        payload = {
            "transactionId": int(csms_id),
            "meterStop": _wh(body["meter_stop_wh"]),
            "timestamp": body["timestamp"],
            "reason": body["reason"],
        }
        if body.get("id_tag"):
            payload["idTag"] = body["id_tag"]
        data = [
            self.meter_value(
                s,
                self.keys.items(
                    "StopTxnAlignedData" if s["context"] == "Sample.Clock" else "StopTxnSampledData"
                ),
            )
            for s in body.get("samples", [])
        ]
        data = [d for d in data if d["sampledValue"]]
        if data:
            payload["transactionData"] = data
        return "StopTransaction", payload

    def _meter_values_payload(self, evse_id: int, sample: dict[str, Any], context: str) -> dict[str, Any]:
        key = "MeterValuesAlignedData" if context == "Sample.Clock" else "MeterValuesSampledData"
        payload: dict[str, Any] = {
            "connectorId": evse_id,
            "meterValue": [self.meter_value(sample, self.keys.items(key))],
        }
        csms_id = self.host.csms_transaction_id(evse_id)
        if csms_id is not None:
            payload["transactionId"] = int(csms_id)
        return payload

    async def _remote_start(self, p: dict[str, Any]) -> Reply:
        connector = p.get("connectorId")
        if connector is not None and not self._known(connector, station=False):
            return Reply({"status": "Rejected"})
        raw = p.get("chargingProfile")
        try:
            profile = tx_profile("RemoteStartTransaction", raw, schedule.from_ocpp16, connector or 0)
        except ValueError:
            return Reply({"status": "Rejected"})
        token = p["idTag"]
        authorize_first = self.keys.flag("AuthorizeRemoteTxRequests")
        if authorize_first and not self.host.can_remote_start(connector, token):
            return Reply({"status": "Rejected"})
        return self._start_remotely(connector, token, profile, {"status": "Accepted"}, authorize_first)

    async def _remote_stop(self, p: dict[str, Any]) -> Reply:
        ok = await self.host.remote_stop(str(p["transactionId"]))
        return Reply({"status": "Accepted" if ok else "Rejected"})
