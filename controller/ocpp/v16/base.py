"""What every part of the OCPP 1.6 adapter builds on: the configuration keys, connector
checks and StatusNotification."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from controller.core import authorization as auth
from controller.core.measurands import measured
from controller.core.model import ConnectorStatus
from controller.io.storage import timestamp
from controller.ocpp.adapter import Adapter
from controller.ocpp.ocppj import RpcError
from controller.ocpp.v16 import words
from controller.ocpp.v16.keys import KeyStore


class Base16(Adapter):
    """The 1.6 adapter's state and the helpers its parts share; ``Ocpp16`` sets the state."""

    VERSION = "1.6"
    SIGN_CERTIFICATE_TRIGGER = "SignChargePointCertificate"
    OUTBOX_KINDS = ("start", "meter", "stop", "security")
    keys: KeyStore
    firmware_request: int | None  # a signed update's requestId
    diagnostics_status: str
    _abandoned: set[str]  # transactions whose StartTransaction was dropped
    _status_sent: dict[int, tuple[str, str]]  # connector -> (status, errorCode) the CSMS last got

    def _save_key(self, name: str, value: str) -> None:
        self.host.save_setting(f"ocpp16.{name}", value)

    def apply_keys(self) -> None:
        """Hand the keys that steer version-neutral behaviour to the station."""
        keys, station = self.keys, self.host.station
        station.connection_timeout = timedelta(seconds=keys.number("ConnectionTimeOut"))
        station.stop_on_invalid_id = keys.flag("StopTransactionOnInvalidId")
        station.max_energy_on_invalid_id_wh = 0.0  # 1.6: energy stops at once
        station.end_on_deauthorize = False  # 1.6: StopTransactionOnInvalidId alone decides
        station.preparing_for_token = True
        station.auth_mode = self.host.config.auth["mode"]  # 2.0.1 AuthCtrlr.Enabled may have changed it
        station.sample_interval = timedelta(seconds=keys.number("MeterValueSampleInterval"))
        self.host.aligned_interval_s = keys.number("ClockAlignedDataInterval")

    def heartbeat_interval(self) -> int:
        return self.keys.number("HeartbeatInterval")

    def auth_settings(self) -> auth.AuthSettings:
        keys = self.keys
        return auth.AuthSettings(
            local_auth_list_enabled=keys.flag("LocalAuthListEnabled"),
            auth_cache_enabled=keys.flag("AuthorizationCacheEnabled"),
            local_pre_authorize=keys.flag("LocalPreAuthorize"),
            local_authorize_offline=keys.flag("LocalAuthorizeOffline"),
            allow_offline_tx_for_unknown_id=keys.flag("AllowOfflineTxForUnknownId"),
        )

    def _known(self, connector: int | None, station: bool = True) -> bool:
        """An EVSE of this station or, with ``station``, 0 for the station as a whole."""
        return self._evse(connector) or (station and connector == 0)

    def _require(self, connector: int) -> None:
        if not self._known(connector):
            raise RpcError("property", f"connectorId {connector} does not exist")

    def _station_status(self) -> tuple[str, str]:
        """Connector 0: Unavailable when every EVSE is inoperative."""
        operative = any(e.available for e in self.host.station.evses.values())
        return words.status_words(
            (ConnectorStatus.AVAILABLE if operative else ConnectorStatus.UNAVAILABLE, None)
        )

    async def _status(self, connector: int, status: str, code: str, info: str) -> bool:
        payload: dict[str, Any] = {
            "connectorId": connector,
            "errorCode": code,
            "status": status,
            "timestamp": timestamp(self.host.now()),
        }
        if info:
            payload["info"] = info[:50]
        return await self._status_call(payload, f"connector {connector}")

    @staticmethod
    def meter_value(sample: dict[str, Any], measurands: list[str]) -> dict[str, Any]:
        """One 1.6 meterValue from a stored reading, with the configured measurands."""
        values = []
        for measurand, value, unit, phase in measured(sample, measurands):
            item = {
                "value": f"{value:.1f}",
                "context": sample["context"],
                "measurand": measurand,
                "location": "Outlet",
                "unit": unit,
            }
            if phase:
                item["phase"] = phase
            values.append(item)
        return {"timestamp": sample["timestamp"], "sampledValue": values}

    @staticmethod
    def reported_status(status: ConnectorStatus) -> str:
        return words.STATUSES[status]
