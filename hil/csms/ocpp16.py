"""The CSMS side of an OCPP 1.6 connection: the answers to station-initiated 1.6 actions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ocpp.v16 import ChargePoint as ChargePoint16  # type: ignore[import-untyped]

from hil.csms.answering import OCPP_LOG, Answering, Wire, fixed_handler, on_call

if TYPE_CHECKING:
    from hil.csms.session import StationSession


class Ocpp16(Answering, ChargePoint16):  # type: ignore[misc]
    """The CSMS side of one OCPP 1.6 connection: a handler for each station-initiated action."""

    def __init__(self, session: StationSession) -> None:
        super().__init__(session.id, Wire(session), logger=OCPP_LOG)
        self._session = session
        self._csms = session.csms

    def _id_tag_info(self, id_tag: str) -> dict[str, Any]:
        return {"status": self._csms.auth_status(id_tag)}

    def _start(self, payload: dict[str, Any]) -> dict[str, Any]:
        key = tuple(payload.get(k) for k in ("connectorId", "idTag", "timestamp", "meterStart"))
        tx_id = self._csms._open_transaction(self.id, key, payload)
        return {"transactionId": tx_id, "idTagInfo": self._id_tag_info(payload["idTag"])}

    def _stop(self, payload: dict[str, Any]) -> dict[str, Any]:
        tx = self._csms.transactions.get(payload["transactionId"])
        if tx is not None:
            tx["stop"] = payload
            tx["stop_count"] += 1
        return {"idTagInfo": self._id_tag_info(payload["idTag"])} if "idTag" in payload else {}

    @on_call("BootNotification")
    def on_boot_notification(self, call_unique_id: str, **_: Any) -> Any:
        return self._reply("BootNotification", call_unique_id, self._boot)

    @on_call("Heartbeat")
    def on_heartbeat(self, call_unique_id: str, **_: Any) -> Any:
        return self._reply("Heartbeat", call_unique_id, lambda p: {"currentTime": self._csms.now()})

    @on_call("Authorize")
    def on_authorize(self, call_unique_id: str, **_: Any) -> Any:
        return self._reply(
            "Authorize", call_unique_id, lambda p: {"idTagInfo": self._id_tag_info(p["idTag"])}
        )

    @on_call("StartTransaction")
    def on_start_transaction(self, call_unique_id: str, **_: Any) -> Any:
        return self._reply("StartTransaction", call_unique_id, self._start)

    @on_call("StopTransaction")
    def on_stop_transaction(self, call_unique_id: str, **_: Any) -> Any:
        return self._reply("StopTransaction", call_unique_id, self._stop)


# The default answers of the other station-initiated OCPP 1.6 actions.
_FIXED_16: dict[str, dict[str, Any]] = {
    "MeterValues": {},
    "StatusNotification": {},
    "DataTransfer": {"status": "Accepted"},
    "DiagnosticsStatusNotification": {},
    "FirmwareStatusNotification": {},
    "SecurityEventNotification": {},
    "SignCertificate": {"status": "Accepted"},
    "SignedFirmwareStatusNotification": {},
    "LogStatusNotification": {},
}

for _action, _answer in _FIXED_16.items():
    setattr(Ocpp16, f"on_{_action}", fixed_handler(_action, _answer))
