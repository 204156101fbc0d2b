"""The station core's words and their translations: every core value has a word in each
OCPP version, and each word is one the version's schema allows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import pytest

from controller.core.model import (
    FAULT_PRIORITY,
    AvailabilityChange,
    ConnectorStatus,
    ReservationResult,
    StopReason,
    UnlockResult,
)
from controller.io.storage import STORED_STOP_REASONS
from controller.ocpp import words as shared_words
from controller.ocpp.v16 import outbox
from controller.ocpp.v16 import words as words16
from controller.ocpp.v201 import words as words201
from controller.safety.supervisor import Fault


def schema(version: str, name: str) -> dict[str, Any]:
    path = resources.files("ocpp").joinpath(version, "schemas", name)
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def enum16(message: str, member: str) -> set[str]:
    return set(schema("v16", f"{message}.json")["properties"][member]["enum"])


def enum201(message: str, definition: str) -> set[str]:
    return set(schema("v201", f"{message}Request.json")["definitions"][definition]["enum"])


def test_every_fault_has_a_priority() -> None:
    assert sorted(FAULT_PRIORITY) == sorted(Fault)
    assert len(set(FAULT_PRIORITY)) == len(FAULT_PRIORITY)


# -- 1.6 ---------------------------------------------------------------------------------


def test_16_every_connector_status_maps_to_a_charge_point_status() -> None:
    assert set(words16.STATUSES) == set(ConnectorStatus)
    assert set(words16.STATUSES.values()) <= enum16("StatusNotification", "status")
    assert len(set(words16.STATUSES.values())) == len(ConnectorStatus)  # 1.6 tells them all apart


def test_16_every_fault_maps_to_an_error_code() -> None:
    assert set(words16.ERROR_CODES) == set(Fault)
    codes = enum16("StatusNotification", "errorCode")
    assert set(words16.ERROR_CODES.values()) | {words16.NO_ERROR, words16.OTHER_ERROR} <= codes


def test_16_every_stop_reason_maps_to_a_stop_transaction_reason() -> None:
    assert set(words16.STOP_REASONS) == set(StopReason)
    assert set(words16.STOP_REASONS.values()) <= enum16("StopTransaction", "reason")
    assert len(set(words16.STOP_REASONS.values())) == len(StopReason)


def test_16_every_unlock_result_maps_to_an_unlock_status() -> None:
    assert set(words16.UNLOCK_STATUSES) == set(UnlockResult)
    assert set(words16.UNLOCK_STATUSES.values()) <= enum16("UnlockConnectorResponse", "status")


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (None, ("Available", "NoError")),  # not evaluated yet
        ((ConnectorStatus.CHARGING, None), ("Charging", "NoError")),
        ((ConnectorStatus.FAULTED, Fault.RCD), ("Faulted", "GroundFailure")),
        ((ConnectorStatus.FAULTED, Fault.METER), ("Faulted", "PowerMeterFailure")),
        ((ConnectorStatus.FAULTED, None), ("Faulted", "OtherError")),  # a shorted pilot
        ((ConnectorStatus.FINISHING, None), ("Finishing", "NoError")),
    ],
)
def test_16_status_words(status: tuple[ConnectorStatus, Fault | None] | None, words: tuple[str, str]) -> None:
    assert words16.status_words(status) == words


# -- 2.0.1 -------------------------------------------------------------------------------


def test_201_every_connector_status_maps_to_a_connector_status_enum() -> None:
    assert set(words201.CONNECTOR_STATUSES) == set(ConnectorStatus)
    assert set(words201.CONNECTOR_STATUSES.values()) == enum201(
        "StatusNotification", "ConnectorStatusEnumType"
    )
    session = {
        ConnectorStatus.PREPARING,
        ConnectorStatus.CHARGING,
        ConnectorStatus.SUSPENDED_EV,
        ConnectorStatus.SUSPENDED_EVSE,
        ConnectorStatus.FINISHING,
    }
    assert {s for s, word in words201.CONNECTOR_STATUSES.items() if word == "Occupied"} == session
    assert words201.connector_status(None) == "Available"


def test_201_charging_states_are_charging_state_enums() -> None:
    states = enum201("TransactionEvent", "ChargingStateEnumType")
    assert set(words201.CHARGING_STATES.values()) | {"EVConnected", "Idle"} == states
    assert set(words201.CHARGING_STATES) == {
        ConnectorStatus.CHARGING,
        ConnectorStatus.SUSPENDED_EV,
        ConnectorStatus.SUSPENDED_EVSE,
    }


def test_201_every_stop_reason_maps_to_a_trigger_and_a_stopped_reason() -> None:
    assert set(words201.STOP_CAUSES) == set(StopReason)
    triggers = enum201("TransactionEvent", "TriggerReasonEnumType")
    reasons = enum201("TransactionEvent", "ReasonEnumType")
    for trigger, stopped in [*words201.STOP_CAUSES.values(), words201.EV_CONNECT_TIMEOUT]:
        assert trigger in triggers
        assert stopped in reasons


def test_201_every_unlock_result_maps_to_an_unlock_status() -> None:
    assert set(words201.UNLOCK_STATUSES) == set(UnlockResult)
    definitions = schema("v201", "UnlockConnectorResponse.json")["definitions"]
    assert set(words201.UNLOCK_STATUSES.values()) <= set(definitions["UnlockStatusEnumType"]["enum"])


# -- what both versions say alike -------------------------------------------------------


def test_every_availability_change_and_reservation_result_has_a_word_in_both_versions() -> None:
    assert set(shared_words.AVAILABILITY_STATUSES) == set(AvailabilityChange)
    assert set(shared_words.RESERVATION_STATUSES) == set(ReservationResult)
    availability = set(shared_words.AVAILABILITY_STATUSES.values())
    reservation = set(shared_words.RESERVATION_STATUSES.values())
    assert availability <= enum16("ChangeAvailabilityResponse", "status")
    assert reservation <= enum16("ReserveNowResponse", "status")
    answers201 = {
        "ChangeAvailabilityResponse.json": ("ChangeAvailabilityStatusEnumType", availability),
        "ReserveNowResponse.json": ("ReserveNowStatusEnumType", reservation),
    }
    for name, (definition, words) in answers201.items():
        assert words <= set(schema("v201", name)["definitions"][definition]["enum"])


# -- what is stored ----------------------------------------------------------------------


def test_stored_stop_reasons_keep_the_words_the_database_has_always_held() -> None:
    # Rows written before the core had words of its own hold these: they must not change.
    stored = {reason.name: word for reason, word in STORED_STOP_REASONS.items()}
    assert stored == dict(
        LOCAL="Local",
        REMOTE="Remote",
        EV_DISCONNECTED="EVDisconnected",
        POWER_LOSS="PowerLoss",
        DEAUTHORIZED="DeAuthorized",
        EMERGENCY_STOP="EmergencyStop",
        HARD_RESET="HardReset",
        SOFT_RESET="SoftReset",
        REBOOT="Reboot",
        UNLOCK_COMMAND="UnlockCommand",
        OTHER="Other",
    )


@pytest.mark.parametrize("reason", list(StopReason))
def test_16_queued_stop_bodies_hold_the_words_they_are_sent_in(reason: StopReason) -> None:
    """A StopTransaction queued before an upgrade (its reason a 1.6 word) and one queued
    after it read alike: the outbox body holds what the message carries."""
    body = outbox.stop_body(1, datetime(2024, 5, 1, tzinfo=UTC), 10.0, reason, None)
    assert body["reason"] == words16.STOP_REASONS[reason] == STORED_STOP_REASONS[reason]
