"""OCPP 1.6 boot, configuration keys and reset."""

from __future__ import annotations

import logging
from typing import Any

from controller.io.link import Reply
from controller.ocpp.ocppj import RpcError
from controller.ocpp.v16.base import Base16

log = logging.getLogger(__name__)


class Provisioning(Base16):
    """BootNotification, ChangeConfiguration, GetConfiguration, Reset."""

    def _boot_payload(self) -> dict[str, Any]:
        return self._identity("chargePointVendor", 20, "chargePointModel", "chargePointSerialNumber")

    def _set_heartbeat_interval(self, seconds: int) -> None:
        self.keys.values["HeartbeatInterval"] = str(seconds)

    async def _change_configuration(self, p: dict[str, Any]) -> Reply:
        if p["key"] == "SecurityProfile":
            return self._change_security_profile(p["value"])
        if p["key"] == "AuthorizationKey":
            return self._change_authorization_key(p["value"])
        status = self.keys.change(p["key"], p["value"])
        if status in ("Accepted", "RebootRequired"):
            self.apply_keys()
            if p["key"] == "HeartbeatInterval":
                self._heartbeat_changed.set()
            log.info("configuration key %s set to %s", p["key"], p["value"])
        return Reply({"status": status})

    def _change_security_profile(self, value: str) -> Reply:
        try:
            profile = int(value)
        except ValueError:
            return Reply({"status": "Rejected"})
        current = self.keys.number("SecurityProfile")
        problem = (
            f"the security profile may only be raised (now {current})"
            if not current < profile <= 3
            else self.host.ocpp.profile_problem(profile)
        )
        if problem is not None:
            log.warning("SecurityProfile %s refused: %s", value, problem)
            return Reply({"status": "Rejected"})

        async def reconnect() -> None:
            await self.host.ocpp.raise_profile(profile)

        return Reply({"status": "Accepted"}, reconnect)

    def _change_authorization_key(self, value: str) -> Reply:
        if self.keys.problem("AuthorizationKey", value) is not None:
            return Reply({"status": "Rejected"})
        try:
            self.host.credentials.set_password(value)
        except OSError as exc:
            log.error("AuthorizationKey not stored: %s", exc)
            return Reply({"status": "Rejected"})
        log.info("configuration key AuthorizationKey set")
        self.host.security_event("ReconfigurationOfSecurityParameters", "AuthorizationKey changed")
        return Reply({"status": "Accepted"}, self.host.ocpp.password_changed)

    def security_profile_changed(self, profile: int) -> None:
        self.keys.values["SecurityProfile"] = str(profile)

    async def _get_configuration(self, p: dict[str, Any]) -> Reply:
        names = p.get("key") or None
        if names and len(names) > self.keys.number("GetConfigurationMaxKeys"):
            raise RpcError("occurrence", "more keys than GetConfigurationMaxKeys")
        known, unknown = self.keys.report(names)
        payload: dict[str, Any] = {"configurationKey": known}
        if unknown:
            payload["unknownKey"] = unknown
        return Reply(payload)

    async def _reset(self, p: dict[str, Any]) -> Reply:
        kind = p["type"]

        async def reset() -> None:  # runs once the reply has been sent
            self.host.reset(hard=kind == "Hard", retries=self.keys.number("ResetRetries"))

        return Reply({"status": "Accepted"}, reset)
