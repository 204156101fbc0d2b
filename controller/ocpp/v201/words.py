"""The station core's words in OCPP 2.0.1: connector statuses, charging states, why a
transaction ended and the answer to UnlockConnector."""

from __future__ import annotations

from controller.core.model import ConnectorStatus, StopReason, UnlockResult

CONNECTOR_STATUSES: dict[ConnectorStatus, str] = {  # ConnectorStatusEnumType
    ConnectorStatus.AVAILABLE: "Available",
    ConnectorStatus.PREPARING: "Occupied",
    ConnectorStatus.CHARGING: "Occupied",
    ConnectorStatus.SUSPENDED_EV: "Occupied",
    ConnectorStatus.SUSPENDED_EVSE: "Occupied",
    ConnectorStatus.FINISHING: "Occupied",
    ConnectorStatus.RESERVED: "Reserved",
    ConnectorStatus.UNAVAILABLE: "Unavailable",
    ConnectorStatus.FAULTED: "Faulted",
}
# ChargingStateEnumType where the status decides it; otherwise EVConnected or Idle, by the EV.
CHARGING_STATES: dict[ConnectorStatus, str] = {
    ConnectorStatus.CHARGING: "Charging",
    ConnectorStatus.SUSPENDED_EV: "SuspendedEV",
    ConnectorStatus.SUSPENDED_EVSE: "SuspendedEVSE",
}
# Why a transaction ended -> (TriggerReasonEnumType, ReasonEnumType stoppedReason).
STOP_CAUSES: dict[StopReason, tuple[str, str]] = {
    StopReason.LOCAL: ("StopAuthorized", "Local"),
    StopReason.REMOTE: ("RemoteStop", "Remote"),
    StopReason.DEAUTHORIZED: ("Deauthorized", "DeAuthorized"),
    StopReason.EV_DISCONNECTED: ("EVCommunicationLost", "EVDisconnected"),
    StopReason.EMERGENCY_STOP: ("AbnormalCondition", "GroundFault"),
    StopReason.OTHER: ("AbnormalCondition", "Other"),
    StopReason.POWER_LOSS: ("AbnormalCondition", "PowerLoss"),
    StopReason.REBOOT: ("ResetCommand", "Reboot"),
    StopReason.HARD_RESET: ("ResetCommand", "ImmediateReset"),
    StopReason.SOFT_RESET: ("ResetCommand", "ImmediateReset"),
    StopReason.UNLOCK_COMMAND: ("UnlockCommand", "Other"),
}
EV_CONNECT_TIMEOUT = ("EVConnectTimeout", "Timeout")  # EVConnectionTimeOut ran out before the EV came
UNLOCK_STATUSES: dict[UnlockResult, str] = {  # UnlockStatusEnumType: it has no "no lock"
    UnlockResult.UNLOCKED: "Unlocked",
    UnlockResult.FAILED: "UnlockFailed",
    UnlockResult.NO_LOCK: "UnlockFailed",
}


def connector_status(status: ConnectorStatus | None) -> str:
    """The ConnectorStatusEnumType of a status; one not yet evaluated is Available."""
    return CONNECTOR_STATUSES[status] if status is not None else "Available"
