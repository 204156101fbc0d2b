"""OCPP 1.6 configuration keys, as data.

Every standard key of the profiles the station implements: its type, whether the CSMS
may change it, whether a change needs a reboot, and its limits. Values the CSMS sets are
persisted (``settings`` table, ``ocpp16.<key>``) and survive restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controller.core.measurands import MEASURANDS

PROFILES = "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger"


@dataclass(frozen=True)
class KeyDef:
    kind: str  # "bool" | "int" | "csl" | "str"
    default: str
    writable: bool = True
    reboot: bool = False
    min: int = 0
    max: int = 2**31 - 1
    members: tuple[str, ...] = ()  # allowed members of a comma separated list
    max_items: int = 0
    choices: tuple[str, ...] = ()  # allowed values (a bool key the station supports one way only)
    write_only: bool = False  # never reported (a password)
    min_len: int = 0
    max_len: int = 500


def _measurands(default: str) -> KeyDef:
    return KeyDef("csl", default, members=MEASURANDS, max_items=len(MEASURANDS))


KEYS: dict[str, KeyDef] = {
    # Core
    "AllowOfflineTxForUnknownId": KeyDef("bool", "false"),
    "AuthorizationCacheEnabled": KeyDef("bool", "true"),
    "AuthorizeRemoteTxRequests": KeyDef("bool", "false"),
    "ClockAlignedDataInterval": KeyDef("int", "0", max=86400),
    "ConnectionTimeOut": KeyDef("int", "60", min=1, max=3600),
    "ConnectorPhaseRotation": KeyDef("csl", "0.Unknown"),
    "GetConfigurationMaxKeys": KeyDef("int", "100", writable=False),
    "HeartbeatInterval": KeyDef("int", "300", max=86400),
    "LocalAuthorizeOffline": KeyDef("bool", "true"),
    "LocalPreAuthorize": KeyDef("bool", "false"),
    "MeterValuesAlignedData": _measurands("Energy.Active.Import.Register"),
    "MeterValuesAlignedDataMaxLength": KeyDef("int", str(len(MEASURANDS)), writable=False),
    "MeterValuesSampledData": _measurands("Energy.Active.Import.Register"),
    "MeterValuesSampledDataMaxLength": KeyDef("int", str(len(MEASURANDS)), writable=False),
    "MeterValueSampleInterval": KeyDef("int", "60", max=86400),
    "MinimumStatusDuration": KeyDef("int", "0", max=3600),
    "NumberOfConnectors": KeyDef("int", "1", writable=False),
    "ResetRetries": KeyDef("int", "3", max=10),
    # The station always ends the transaction when the EV disconnects (IEC 61851: no
    # energy without an EV), so only "true" is accepted.
    "StopTransactionOnEVSideDisconnect": KeyDef("bool", "true", choices=("true",)),
    "StopTransactionOnInvalidId": KeyDef("bool", "true"),
    "StopTxnAlignedData": _measurands(""),
    "StopTxnAlignedDataMaxLength": KeyDef("int", str(len(MEASURANDS)), writable=False),
    "StopTxnSampledData": _measurands(""),
    "StopTxnSampledDataMaxLength": KeyDef("int", str(len(MEASURANDS)), writable=False),
    "SupportedFeatureProfiles": KeyDef("csl", PROFILES, writable=False),
    "TransactionMessageAttempts": KeyDef("int", "3", min=1, max=100),
    "TransactionMessageRetryInterval": KeyDef("int", "60", max=86400),
    # Unplugging at the EV ends the session, and the lock opens with it: "true" only.
    "UnlockConnectorOnEVSideDisconnect": KeyDef("bool", "true", choices=("true",)),
    "WebSocketPingInterval": KeyDef("int", "30", max=3600, reboot=True),
    # Local Auth List Management
    "LocalAuthListEnabled": KeyDef("bool", "true"),
    "LocalAuthListMaxLength": KeyDef("int", "100000", writable=False),
    "SendLocalListMaxLength": KeyDef("int", "50000", writable=False),
    # Reservation
    "ReserveConnectorZeroSupported": KeyDef("bool", "true", writable=False),
    # Smart Charging
    "ChargeProfileMaxStackLevel": KeyDef("int", "8", writable=False),
    "ChargingScheduleAllowedChargingRateUnit": KeyDef("csl", "Current,Power", writable=False),
    "ChargingScheduleMaxPeriods": KeyDef("int", "48", writable=False),
    "ConnectorSwitch3to1PhaseSupported": KeyDef("bool", "false", writable=False),
    "MaxChargingProfilesInstalled": KeyDef("int", "32", writable=False),
    # Security Whitepaper (edition 3)
    "AdditionalRootCertificateCheck": KeyDef("bool", "false", writable=False),
    "AuthorizationKey": KeyDef("str", "", write_only=True, min_len=16, max_len=40),
    "CertificateSignedMaxChainSize": KeyDef("int", "10000", writable=False),
    "CertificateStoreMaxLength": KeyDef("int", "20", writable=False),
    "CpoName": KeyDef("str", "", max_len=64),
    "SecurityProfile": KeyDef("int", "0", max=3),
}


# Where each key the CSMS may write takes effect: "module:function" that reads it.
# tests/test_writable_keys.py holds every writable key (other than one with a single
# allowed value) to an entry here, and the function to reading it: a writable key that
# nothing uses fails the tests. Make a key read-only rather than leave it unused.
CONSUMERS: dict[str, str] = {
    "AllowOfflineTxForUnknownId": "controller.ocpp.v16.adapter:Ocpp16.auth_settings",
    "AuthorizationCacheEnabled": "controller.ocpp.v16.adapter:Ocpp16.auth_settings",
    "AuthorizeRemoteTxRequests": "controller.ocpp.v16.adapter:Ocpp16._remote_start",
    "ClockAlignedDataInterval": "controller.ocpp.v16.adapter:Ocpp16.apply_keys",
    "ConnectionTimeOut": "controller.ocpp.v16.adapter:Ocpp16.apply_keys",
    # the CSMS's record, reported back
    "ConnectorPhaseRotation": "controller.ocpp.v16.adapter:Ocpp16.__init__",
    "HeartbeatInterval": "controller.ocpp.v16.adapter:Ocpp16.heartbeat_interval",
    "LocalAuthorizeOffline": "controller.ocpp.v16.adapter:Ocpp16.auth_settings",
    "LocalPreAuthorize": "controller.ocpp.v16.adapter:Ocpp16.auth_settings",
    "MeterValuesAlignedData": "controller.ocpp.v16.adapter:Ocpp16._message",
    "MeterValuesSampledData": "controller.ocpp.v16.adapter:Ocpp16._message",
    "MeterValueSampleInterval": "controller.ocpp.v16.adapter:Ocpp16.apply_keys",
    "MinimumStatusDuration": "controller.ocpp.v16.adapter:Ocpp16._send_statuses",
    "ResetRetries": "controller.ocpp.v16.adapter:Ocpp16._reset",
    "StopTransactionOnInvalidId": "controller.ocpp.v16.adapter:Ocpp16.apply_keys",
    "StopTxnAlignedData": "controller.ocpp.v16.adapter:Ocpp16._message",
    "StopTxnSampledData": "controller.ocpp.v16.adapter:Ocpp16._message",
    "TransactionMessageAttempts": "controller.ocpp.v16.adapter:Ocpp16._retries",
    "TransactionMessageRetryInterval": "controller.ocpp.v16.adapter:Ocpp16._retries",
    "WebSocketPingInterval": "controller.ocpp.client:make_client",
    "LocalAuthListEnabled": "controller.ocpp.v16.adapter:Ocpp16.auth_settings",
    "AuthorizationKey": "controller.ocpp.v16.adapter:Ocpp16._change_authorization_key",
    "CpoName": "controller.ocpp.v16.adapter:Ocpp16.organization",
    "SecurityProfile": "controller.ocpp.v16.adapter:Ocpp16._change_security_profile",
}


def _problem(definition: KeyDef, value: str) -> str | None:
    """Why ``value`` is not acceptable for the key, or None."""
    if definition.choices and value.lower() not in definition.choices:
        return f"only {', '.join(definition.choices)} is supported"
    if definition.kind == "bool":
        return None if value.lower() in ("true", "false") else "must be true or false"
    if definition.kind == "str" and not definition.min_len <= len(value) <= definition.max_len:
        return f"must be {definition.min_len} to {definition.max_len} characters"
    if definition.kind == "int":
        try:
            number = int(value)
        except ValueError:
            return "must be a whole number"
        return None if definition.min <= number <= definition.max else "out of range"
    if definition.kind == "csl" and definition.members:
        items = [v.strip() for v in value.split(",") if v.strip()]
        unknown = [v for v in items if v not in definition.members]
        if unknown:
            return f"unsupported: {', '.join(unknown)}"
        if len(items) > definition.max_items:
            return "too many items"
    return None


class KeyStore:
    """Current values; ``save`` persists a change, ``changed`` applies it to the station."""

    def __init__(
        self,
        stored: dict[str, str],
        overrides: dict[str, str],
        save: Callable[[str, str], None],
    ) -> None:
        self.values = {name: d.default for name, d in KEYS.items()}
        self.values.update(overrides)
        self.values.update({k: v for k, v in stored.items() if k in KEYS and _problem(KEYS[k], v) is None})
        self.save = save

    def get(self, name: str) -> str:
        return self.values[name]

    def flag(self, name: str) -> bool:
        return self.values[name].lower() == "true"

    def number(self, name: str) -> int:
        return int(self.values[name])

    def items(self, name: str) -> list[str]:
        return [v.strip() for v in self.values[name].split(",") if v.strip()]

    def change(self, name: str, value: str) -> str:
        """ChangeConfiguration: Accepted, Rejected, RebootRequired or NotSupported."""
        definition = KEYS.get(name)
        if definition is None:
            return "NotSupported"
        if not definition.writable or _problem(definition, value) is not None:
            return "Rejected"
        if definition.kind == "bool":
            value = value.lower()
        self.values[name] = value
        self.save(name, value)
        return "RebootRequired" if definition.reboot else "Accepted"

    def report(self, names: list[str] | None) -> tuple[list[dict[str, object]], list[str]]:
        """GetConfiguration: (configurationKey, unknownKey)."""
        wanted = names if names else list(KEYS)
        known: list[dict[str, object]] = [
            {"key": n, "readonly": not KEYS[n].writable}
            if KEYS[n].write_only
            else {"key": n, "readonly": not KEYS[n].writable, "value": self.values[n][:500]}
            for n in wanted
            if n in KEYS
        ]
        return known, [n for n in wanted if n not in KEYS]

    def problem(self, name: str, value: str) -> str | None:
        definition = KEYS.get(name)
        return "unknown key" if definition is None else _problem(definition, value)
