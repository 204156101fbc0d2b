"""The station core's words in OCPP 1.6: connector statuses, error codes, stop reasons and
the answer to UnlockConnector.

Standalone, the rig, `evse status` and the journal use these words too (CONTRACTS.md
section 3), so they are the station's words wherever no 2.0.1 CSMS listens.
"""

from __future__ import annotations

from controller.core.model import ConnectorStatus, StopReason, UnlockResult
from controller.safety.supervisor import Fault

STATUSES: dict[ConnectorStatus, str] = {  # ChargePointStatus
    ConnectorStatus.AVAILABLE: "Available",
    ConnectorStatus.PREPARING: "Preparing",
    ConnectorStatus.CHARGING: "Charging",
    ConnectorStatus.SUSPENDED_EV: "SuspendedEV",
    ConnectorStatus.SUSPENDED_EVSE: "SuspendedEVSE",
    ConnectorStatus.FINISHING: "Finishing",
    ConnectorStatus.RESERVED: "Reserved",
    ConnectorStatus.UNAVAILABLE: "Unavailable",
    ConnectorStatus.FAULTED: "Faulted",
}
NO_ERROR = "NoError"
OTHER_ERROR = "OtherError"  # Faulted without a fault of the table below: a shorted pilot
ERROR_CODES: dict[Fault, str] = {  # ChargePointErrorCode
    Fault.RCD: "GroundFailure",
    Fault.CONTACTOR_WELD: "PowerSwitchFailure",
    Fault.CONTACTOR_STUCK: "PowerSwitchFailure",
    Fault.OVERCURRENT: "OverCurrentFailure",
    Fault.METER: "PowerMeterFailure",
    Fault.DIODE: "EVCommunicationError",
    Fault.LOCK: "ConnectorLockFailure",
    Fault.RCD_TEST: "OtherError",
    Fault.HARDWARE: "OtherError",
}
STOP_REASONS: dict[StopReason, str] = {  # StopTransaction.req reason
    StopReason.LOCAL: "Local",
    StopReason.REMOTE: "Remote",
    StopReason.EV_DISCONNECTED: "EVDisconnected",
    StopReason.POWER_LOSS: "PowerLoss",
    StopReason.DEAUTHORIZED: "DeAuthorized",
    StopReason.EMERGENCY_STOP: "EmergencyStop",
    StopReason.HARD_RESET: "HardReset",
    StopReason.SOFT_RESET: "SoftReset",
    StopReason.REBOOT: "Reboot",
    StopReason.UNLOCK_COMMAND: "UnlockCommand",
    StopReason.OTHER: "Other",
}
UNLOCK_STATUSES: dict[UnlockResult, str] = {  # UnlockStatus
    UnlockResult.UNLOCKED: "Unlocked",
    UnlockResult.FAILED: "UnlockFailed",
    UnlockResult.NO_LOCK: "NotSupported",
}


def error_code(status: ConnectorStatus, fault: Fault | None) -> str:
    """The errorCode of a StatusNotification for ``status`` caused by ``fault``."""
    if fault is not None:
        return ERROR_CODES[fault]
    return OTHER_ERROR if status is ConnectorStatus.FAULTED else NO_ERROR


def status_words(status: tuple[ConnectorStatus, Fault | None] | None) -> tuple[str, str]:
    """(status, errorCode) of an ``EvseState.status``; one not yet evaluated is Available."""
    if status is None:
        return STATUSES[ConnectorStatus.AVAILABLE], NO_ERROR
    return STATUSES[status[0]], error_code(*status)
