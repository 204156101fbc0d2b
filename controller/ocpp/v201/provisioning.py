"""OCPP 2.0.1 provisioning (B): boot, device model variables and reports, reset, network
profiles, and TriggerMessage."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from controller.io.link import Reply
from controller.ocpp.ocppj import RpcError
from controller.ocpp.v201.base import PREFIX, Base201

log = logging.getLogger(__name__)

NETWORK_VARIABLES = ("NetworkConfigurationPriority", "NetworkProfileConnectionAttempts")


class Provisioning(Base201):
    """Boot, GetVariables/SetVariables, reports, Reset, SetNetworkProfile, TriggerMessage."""

    def _boot_payload(self) -> dict[str, Any]:
        charging_station = self._identity("vendorName", 50, "model", "serialNumber")
        return {"reason": self.boot_reason, "chargingStation": charging_station}

    def _set_heartbeat_interval(self, seconds: int) -> None:
        key = self.model.find("OCPPCommCtrlr", "HeartbeatInterval")
        assert key is not None
        self.model.set_actual(key.key, str(seconds))

    def _boot_accepted(self) -> None:
        if self.boot_reason not in ("PowerUp", "Triggered"):
            self.host.save_setting(PREFIX + "boot_reason", "")
        self.boot_reason = "PowerUp"

    def _check_per_message(self, instance: str, p: dict[str, Any], key: str) -> None:
        """B06.FR.16/17, B08.FR.17/18: a request with more ``key`` entries than
        DeviceDataCtrlr.ItemsPerMessage[instance] is refused with OccurrenceConstraintViolation,
        one longer than BytesPerMessage[instance] with FormatViolation."""
        limit = self._items_per_message(instance)
        if len(p.get(key, ())) > limit:
            raise RpcError("occurrence", f"more {key} than ItemsPerMessage {instance} ({limit})")
        limit = self._number("DeviceDataCtrlr", "BytesPerMessage", variable_instance=instance)
        # The payload as compact JSON: the frame's envelope and any whitespace are not counted.
        size = len(json.dumps(p, separators=(",", ":"), ensure_ascii=False).encode())
        if size > limit:
            raise RpcError(
                "format", f"{instance}Request of {size} bytes, over BytesPerMessage {instance} ({limit})"
            )

    async def _get_variables(self, p: dict[str, Any]) -> Reply:
        self._check_per_message("GetVariables", p, "getVariableData")
        return Reply({"getVariableResult": [self.model.get(item) for item in p["getVariableData"]]})

    async def _set_variables(self, p: dict[str, Any]) -> Reply:
        items = p["setVariableData"]
        if len(items) > self._items_per_message("SetVariables"):
            raise RpcError("occurrence", "more setVariableData than ItemsPerMessage SetVariables")
        results, changed = [], []
        for item in items:
            result, definition = self.model.set(item)
            results.append(result)
            if definition is not None:
                changed.append(definition)
                log.info(
                    "%s.%s set to %s",
                    definition.component,
                    definition.variable,
                    "***" if definition.mutability == "WriteOnly" else item["attributeValue"],
                )
        if changed:
            self.apply_keys()
            if any(d.variable in NETWORK_VARIABLES for d in changed):
                self.host.ocpp.network_changed()  # from the next connection on
            if any(d.variable == "HeartbeatInterval" for d in changed):
                self._heartbeat_changed.set()
            if any(d.variable == "BasicAuthPassword" for d in changed):
                return Reply({"setVariableResult": results}, self.host.ocpp.password_changed)  # A01
        return Reply({"setVariableResult": results})

    async def _get_base_report(self, p: dict[str, Any]) -> Reply:
        data = self.model.report(base=p["reportBase"])
        return self._report_reply(p["requestId"], data)

    async def _get_report(self, p: dict[str, Any]) -> Reply:
        self._check_per_message("GetReport", p, "componentVariable")
        data = self.model.report(
            criteria=p.get("componentCriteria", ()), component_variables=p.get("componentVariable", ())
        )
        return self._report_reply(p["requestId"], data)

    async def _reset(self, p: dict[str, Any]) -> Reply:
        if "evseId" in p:
            # One EVSE cannot restart on its own: the whole station is one process.
            return Reply({"status": "Rejected"})
        on_idle = p["type"] == "OnIdle"
        scheduled = on_idle and self.host.station.transacting()

        async def reset() -> None:
            while on_idle and self.host.station.transacting():
                await asyncio.sleep(1.0)
            if self.host.stopping.is_set():
                return  # SIGTERM came first: no restart
            # Stored at exit, and only if no SIGTERM cancels the restart meanwhile.
            self.host.restart_settings[PREFIX + "boot_reason"] = "RemoteReset"
            self.host.reset(hard=True, retries=self._number("OCPPCommCtrlr", "ResetRetries"))

        return Reply({"status": "Scheduled" if scheduled else "Accepted"}, reset)

    async def _set_network_profile(self, p: dict[str, Any]) -> Reply:
        data, slot = p["connectionData"], p["configurationSlot"]
        profile, url = data["securityProfile"], data["ocppCsmsUrl"]
        problem = None
        if data["ocppVersion"] != "OCPP20":
            problem = f"OCPP version {data['ocppVersion']} is not spoken here"
        elif slot < 0 or data["ocppTransport"] != "JSON":
            problem = "only JSON over websockets, slots from 0"
        elif profile < self._number("SecurityCtrlr", "SecurityProfile"):
            problem = "the security profile may only be raised"
        elif not url.startswith("wss://" if profile >= 2 else "ws://"):
            problem = f"security profile {profile} needs a {'wss' if profile >= 2 else 'ws'}:// URL"
        else:
            problem = self.host.ocpp.profile_problem(profile)
        if problem is not None:
            log.warning("SetNetworkProfile slot %d refused: %s", slot, problem)
            info = {"reasonCode": "InvalidNetworkConf", "additionalInfo": problem[:512]}
            return Reply({"status": "Rejected", "statusInfo": info})
        self.host.ocpp.save(f"{PREFIX}network.{slot}", json.dumps(data))
        self.host.ocpp.network_changed()
        self.host.security_event("ReconfigurationOfSecurityParameters", f"network profile slot {slot} set")
        return Reply({"status": "Accepted"})

    def security_profile_changed(self, profile: int) -> None:
        key = self.model.find("SecurityCtrlr", "SecurityProfile")
        if key is not None:
            self.model.set_actual(key.key, str(profile))

    async def _trigger_message(self, p: dict[str, Any]) -> Reply:
        message = p["requestedMessage"]
        evse = p.get("evse", {}).get("id")
        if evse is not None and not self._evse(evse):
            return Reply({"status": "Rejected"})
        evses = [evse] if evse else list(self.host.station.evses)
        follow_up: Callable[[], Awaitable[None]]
        if message == "BootNotification":
            if self.registration == "Accepted":
                return Reply({"status": "Rejected"})

            async def follow_up() -> None:
                self.boot_reason = "Triggered"
                self._boot_wake.set()  # the boot loop, waiting while Pending, sends it now
        elif message == "Heartbeat":
            follow_up = self.heartbeat
        elif message == "StatusNotification":

            async def follow_up() -> None:
                for evse_id in evses:
                    await self._status(evse_id, self._evse_state(evse_id))
        elif message == "MeterValues":
            follow_up = self._meter_values_trigger(evses)
        elif message == "TransactionEvent":
            if not any(e in self.tx.open for e in evses):
                return Reply({"status": "Rejected"})

            async def follow_up() -> None:
                for evse_id in evses:
                    for event in self.tx.triggered(self.host.now(), evse_id, not self.online):
                        self._queue(event)
        else:
            shared = self._shared_trigger(message)
            if shared is None:
                return Reply({"status": "NotImplemented"})
            follow_up = shared
        return Reply({"status": "Accepted"}, follow_up)
