"""The CSMS side of an OCPP 2.0.1 connection: the answers to station-initiated 2.0.1 actions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ocpp.v201 import ChargePoint as ChargePoint201  # type: ignore[import-untyped]

from hil.csms.answering import OCPP_LOG, Answering, Wire, fixed_handler, on_call

if TYPE_CHECKING:
    from hil.csms.session import StationSession


class Ocpp201(Answering, ChargePoint201):  # type: ignore[misc]
    """The CSMS side of one OCPP 2.0.1 connection.

    Boot, Heartbeat, Authorize and TransactionEvent have handlers here; every other
    station-initiated action gets its fixed answer from ``_FIXED_201``.
    """

    def __init__(self, session: StationSession) -> None:
        super().__init__(session.id, Wire(session), logger=OCPP_LOG)
        self._session = session
        self._csms = session.csms

    def _id_token_info(self, id_token: dict[str, Any]) -> dict[str, Any]:
        return {"status": self._csms.auth_status(str(id_token.get("idToken")))}

    def _transaction_event(self, payload: dict[str, Any]) -> dict[str, Any]:
        self._csms._transaction_event(self.id, payload)
        token = payload.get("idToken")
        return {"idTokenInfo": self._id_token_info(token)} if isinstance(token, dict) else {}

    @on_call("BootNotification")
    def on_boot_notification(self, call_unique_id: str, **_: Any) -> Any:
        return self._reply("BootNotification", call_unique_id, self._boot)

    @on_call("Heartbeat")
    def on_heartbeat(self, call_unique_id: str, **_: Any) -> Any:
        return self._reply("Heartbeat", call_unique_id, lambda p: {"currentTime": self._csms.now()})

    @on_call("Authorize")
    def on_authorize(self, call_unique_id: str, **_: Any) -> Any:
        return self._reply(
            "Authorize", call_unique_id, lambda p: {"idTokenInfo": self._id_token_info(p["idToken"])}
        )

    @on_call("TransactionEvent")
    def on_transaction_event(self, call_unique_id: str, **_: Any) -> Any:
        return self._reply("TransactionEvent", call_unique_id, self._transaction_event)


# The default answers of the other station-initiated OCPP 2.0.1 actions.
_FIXED_201: dict[str, dict[str, Any]] = {
    "StatusNotification": {},
    "MeterValues": {},
    "NotifyReport": {},
    "NotifyEvent": {},
    "NotifyMonitoringReport": {},
    "NotifyChargingLimit": {},
    "ClearedChargingLimit": {},
    "ReportChargingProfiles": {},
    "ReservationStatusUpdate": {},
    "FirmwareStatusNotification": {},
    "PublishFirmwareStatusNotification": {},
    "LogStatusNotification": {},
    "SecurityEventNotification": {},
    "NotifyCustomerInformation": {},
    "NotifyDisplayMessages": {},
    "SignCertificate": {"status": "Accepted"},
    "DataTransfer": {"status": "Accepted"},
    # Accepted = processed; the CSMS sends no schedule unless a test does.
    "NotifyEVChargingNeeds": {"status": "Accepted"},
    "NotifyEVChargingSchedule": {"status": "Accepted"},
    # There is no certificate service behind this CSMS.
    "Get15118EVCertificate": {"status": "Failed", "exiResponse": ""},
    "GetCertificateStatus": {"status": "Failed"},
}

for _action, _answer in _FIXED_201.items():
    setattr(Ocpp201, f"on_{_action}", fixed_handler(_action, _answer))
