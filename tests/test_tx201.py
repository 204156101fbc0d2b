"""OCPP 2.0.1 transactions (controller/ocpp/v201/transactions.py), a pure module: Facts in, events out.

Each test feeds ``Transactions`` the sequence of Facts the adapter would derive from the
station for one OCA scenario (E01-E09, F01-F03, E14 triggers, power loss) and checks the
events; every payload is checked against the official 2.0.1 TransactionEventRequest
schema. A property test drives random sessions and checks the sequencing rules.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft4Validator, FormatChecker

from controller.core.station import Station, StopReason
from controller.ocpp.ocppj import is_datetime
from controller.ocpp.v201 import transactions as tx201
from controller.ocpp.v201.transactions import Event, Facts, Settings, Transactions

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TOKEN = "04A1B2C3"
ALL_MEASURANDS = ("Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Voltage")

_FORMATS = FormatChecker(formats=())
_FORMATS.checks("date-time")(is_datetime)
_SCHEMA = json.loads(
    resources.files("ocpp").joinpath("v201", "schemas", "TransactionEventRequest.json").read_text("utf-8")
)
VALIDATOR = Draft4Validator(_SCHEMA, format_checker=_FORMATS)


def assert_valid(payload: dict[str, Any]) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(payload)]
    assert not errors, f"{payload}: {errors}"


def reading(
    energy_wh: float = 1000.0, power_w: float = 11040.0, context: str = "Sample.Periodic"
) -> dict[str, Any]:
    """A stored meter reading as services.sample_body makes it."""
    return {
        "evse_id": 1,
        "timestamp": "2026-03-01T12:00:00.000Z",
        "context": context,
        "energy_wh": energy_wh,
        "power_w": power_w,
        "current_a": [16.0, 16.0, 16.0],
        "voltage_v": [230.0, 230.0, 230.0],
    }


def facts(
    ev: bool = True,
    token: str | None = None,
    tx: str | None = None,
    closed: bool = False,
    state: str | None = None,
    energy: float | None = 1000.0,
    stopping: bool = False,
) -> Facts:
    if state is None:
        state = ("Charging" if closed else "SuspendedEVSE") if tx else ("EVConnected" if ev else "Idle")
    return Facts(ev, token, tx, closed, state, reading(energy) if energy is not None else None, stopping)


class Feed:
    """A Transactions under test with a clock; every event it returns is schema-checked."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.tx = Transactions(settings or Settings())
        self.now = T0
        self.events: list[Event] = []

    def _took(self, events: list[Event]) -> list[dict[str, Any]]:
        for event in events:
            assert_valid(event.payload)
            assert event.payload["seqNo"] == event.seq_no
            assert event.payload["transactionInfo"]["transactionId"] == event.tx_id
            assert event.ended == (event.payload["eventType"] == "Ended")
        self.events += events
        self.now += timedelta(seconds=1)
        return [e.payload for e in events]

    def see(self, f: Facts, evse: int = 1, offline: bool = False) -> list[dict[str, Any]]:
        return self._took(self.tx.observe(self.now, evse, f, offline))

    def ended(self, tx_id: str, reason: StopReason, energy: float, evse: int = 1) -> None:
        self.tx.energy_ended(evse, tx_id, reason, energy)

    def sample(self, tx_id: str, energy: float, clock: bool = False, evse: int = 1) -> list[dict[str, Any]]:
        sample = reading(energy, context="Sample.Clock" if clock else "Sample.Periodic")
        return self._took(self.tx.sampled(self.now, evse, tx_id, sample, False))

    def trigger(self, evse: int = 1) -> list[dict[str, Any]]:
        return self._took(self.tx.triggered(self.now, evse, False))

    def end(self, reason: StopReason, evse: int = 1) -> list[dict[str, Any]]:
        return self._took(self.tx.end(self.now, evse, reason, False))


def one(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(payloads) == 1, payloads
    return payloads[0]


def energy_of(payload: dict[str, Any]) -> tuple[str, float]:
    """(context, value) of the energy register in the event's only meterValue."""
    (value,) = payload["meterValue"]
    (sampled,) = [s for s in value["sampledValue"] if s["measurand"] == "Energy.Active.Import.Register"]
    return sampled["context"], sampled["value"]


def seq_nos(feed: Feed, tx_id: str) -> list[int]:
    return [e.seq_no for e in feed.events if e.tx_id == tx_id]


# -- E01-E03, E09: a regular session, default start and stop points ---------------------------


def test_e01_e09_plug_first_default_start_point_power_path_closed() -> None:
    feed = Feed()
    assert feed.see(facts()) == []  # plugged, not authorized
    assert feed.see(facts(token=TOKEN)) == []  # authorized, no energy yet
    assert feed.see(facts(token=TOKEN, tx="S1", closed=False)) == []  # station tx, contactor open
    started = one(feed.see(facts(token=TOKEN, tx="S1", closed=True, energy=1000.0)))
    assert started["eventType"] == "Started"
    assert started["triggerReason"] == "ChargingStateChanged"
    assert started["seqNo"] == 0
    assert started["transactionInfo"]["transactionId"] == "S1"  # takes the station's id
    assert started["transactionInfo"]["chargingState"] == "Charging"
    assert started["idToken"] == {"idToken": TOKEN, "type": "ISO14443"}
    assert started["evse"] == {"id": 1, "connectorId": 1}
    assert "offline" not in started
    assert energy_of(started) == ("Transaction.Begin", 1000.0)

    periodic = one(feed.sample("S1", 1500.0))
    assert (periodic["eventType"], periodic["triggerReason"]) == ("Updated", "MeterValuePeriodic")
    assert energy_of(periodic) == ("Sample.Periodic", 1500.0)
    assert "idToken" not in periodic
    assert feed.sample("other-tx", 1600.0) == []  # not this transaction's sample

    # The EV suspends: a charging state change.
    suspended = one(feed.see(facts(token=TOKEN, tx="S1", closed=False, state="SuspendedEV", energy=1700.0)))
    assert (suspended["triggerReason"], suspended["transactionInfo"]["chargingState"]) == (
        "ChargingStateChanged",
        "SuspendedEV",
    )
    assert "stoppedReason" not in suspended["transactionInfo"]

    # Unplugged: the station's transaction waits for its final reading, then ends.
    assert feed.see(facts(ev=False, stopping=True, energy=1700.0)) == []
    feed.ended("S1", StopReason.EV_DISCONNECTED, 1750.0)
    ended = one(feed.see(facts(ev=False, energy=1750.0)))
    assert ended["eventType"] == "Ended"
    assert ended["triggerReason"] == "EVCommunicationLost"
    assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert ended["transactionInfo"]["chargingState"] == "Idle"
    assert energy_of(ended) == ("Transaction.End", 1750.0)
    assert seq_nos(feed, "S1") == [0, 1, 2, 3]
    assert feed.tx.open == {}
    assert feed.see(facts(ev=False)) == []


def test_e03_swipe_first_then_plug_default_start_point() -> None:
    feed = Feed()
    assert feed.see(facts(ev=False, energy=None)) == []
    assert feed.see(facts(ev=True, token=TOKEN, tx="S1")) == []  # plugged: station tx at once
    started = one(feed.see(facts(token=TOKEN, tx="S1", closed=True)))
    assert started["triggerReason"] == "ChargingStateChanged"
    assert started["idToken"]["idToken"] == TOKEN


def test_e07_stop_by_the_same_token_ends_local() -> None:
    feed = Feed()
    feed.see(facts(token=TOKEN, tx="S1", closed=True))
    assert feed.see(facts(token=None, tx=None, state="EVConnected", stopping=True)) == []
    feed.ended("S1", StopReason.LOCAL, 2000.0)
    ended = one(feed.see(facts(state="EVConnected", energy=2000.0)))
    assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == ("StopAuthorized", "Local")
    assert ended["transactionInfo"]["chargingState"] == "EVConnected"
    assert energy_of(ended) == ("Transaction.End", 2000.0)
    assert seq_nos(feed, "S1") == [0, 1]


@pytest.mark.parametrize(
    ("reason", "trigger", "stopped"),
    [
        (StopReason.REMOTE, "RemoteStop", "Remote"),
        (StopReason.DEAUTHORIZED, "Deauthorized", "DeAuthorized"),
        (StopReason.EMERGENCY_STOP, "AbnormalCondition", "GroundFault"),
        (StopReason.OTHER, "AbnormalCondition", "Other"),
        (StopReason.HARD_RESET, "ResetCommand", "ImmediateReset"),
        (StopReason.UNLOCK_COMMAND, "UnlockCommand", "Other"),
    ],
)
def test_e_stop_causes_map_to_trigger_and_stopped_reason(
    reason: StopReason, trigger: str, stopped: str
) -> None:
    feed = Feed()
    feed.see(facts(token=TOKEN, tx="S1", closed=True))
    feed.see(facts(tx=None, state="EVConnected", stopping=True))
    feed.ended("S1", reason, 1200.0)
    ended = one(feed.see(facts(state="EVConnected", energy=1200.0)))
    assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == (trigger, stopped)


def test_e06_stop_point_ev_connected_only_ends_at_unplug() -> None:
    feed = Feed(Settings(stop_points=frozenset({"EVConnected"})))
    feed.see(facts(token=TOKEN, tx="S1", closed=True))
    # The swipe ends the energy (and the station's transaction) but not the 2.0.1 one.
    feed.see(facts(tx=None, state="SuspendedEVSE", stopping=True))
    feed.ended("S1", StopReason.LOCAL, 2000.0)
    updated = one(feed.see(facts(state="EVConnected", energy=2000.0)))
    assert updated["eventType"] == "Updated"
    assert updated["triggerReason"] == "StopAuthorized"
    assert updated["transactionInfo"]["chargingState"] == "EVConnected"
    assert feed.sample("S1", 2100.0) == []  # no periodic values once energy ended
    assert feed.see(facts(state="EVConnected", energy=2000.0)) == []
    ended = one(feed.see(facts(ev=False, energy=2000.0)))
    assert ended["eventType"] == "Ended"
    assert ended["transactionInfo"]["stoppedReason"] == "Local"
    assert energy_of(ended) == ("Transaction.End", 2000.0)
    assert seq_nos(feed, "S1") == [0, 1, 2]


def test_e06_stop_point_ev_connected_only_ended_trigger_is_the_unplug() -> None:
    """The Ended event sent at unplug is triggered by the EV leaving (EVCommunicationLost)."""
    feed = Feed(Settings(stop_points=frozenset({"EVConnected"})))
    feed.see(facts(token=TOKEN, tx="S1", closed=True))
    feed.see(facts(tx=None, state="EVConnected", stopping=True))
    feed.ended("S1", StopReason.LOCAL, 2000.0)
    feed.see(facts(state="EVConnected", energy=2000.0))
    ended = one(feed.see(facts(ev=False, energy=2000.0)))
    assert ended["triggerReason"] == "EVCommunicationLost"


def test_e06_stop_point_power_path_closed_ends_when_contactor_opens_and_next_gets_new_id() -> None:
    feed = Feed(Settings(stop_points=frozenset({"PowerPathClosed"})))
    first = one(feed.see(facts(token=TOKEN, tx="S1", closed=True)))["transactionInfo"]["transactionId"]
    ended = one(feed.see(facts(token=TOKEN, tx="S1", closed=False, state="SuspendedEV")))
    assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == (
        "ChargingStateChanged",
        "StoppedByEV",
    )
    # The contactor closes again in the same station transaction: a new 2.0.1 transaction.
    again = one(feed.see(facts(token=TOKEN, tx="S1", closed=True)))
    assert again["eventType"] == "Started"
    assert again["seqNo"] == 0
    second = again["transactionInfo"]["transactionId"]
    assert second != first
    # Its end comes with the station's transaction (the id matches what it covers).
    feed.see(facts(tx=None, state="EVConnected", stopping=True))
    feed.ended("S1", StopReason.LOCAL, 3000.0)
    last = one(feed.see(facts(state="EVConnected", energy=3000.0)))
    assert last["transactionInfo"]["transactionId"] == second
    assert last["eventType"] == "Ended"
    assert seq_nos(feed, first) == [0, 1]
    assert seq_nos(feed, second) == [0, 1]


def test_e06_stop_point_energy_transfer_ev_suspends() -> None:
    feed = Feed(Settings(stop_points=frozenset({"EnergyTransfer"})))
    feed.see(facts(token=TOKEN, tx="S1", closed=True))
    ended = one(feed.see(facts(token=TOKEN, tx="S1", closed=True, state="SuspendedEV")))
    assert ended["eventType"] == "Ended"
    assert ended["transactionInfo"]["stoppedReason"] == "StoppedByEV"


def test_contactor_opening_after_the_station_tx_ended_starts_nothing() -> None:
    feed = Feed()
    assert feed.see(facts(token=None, tx=None, closed=True, state="EVConnected")) == []


# -- E02: TxStartPoint EVConnected ------------------------------------------------------------


def test_e02_start_point_ev_connected_cable_first_then_authorized() -> None:
    feed = Feed(Settings(start_points=frozenset({"EVConnected"})))
    started = one(feed.see(facts()))
    assert started["triggerReason"] == "CablePluggedIn"
    assert "idToken" not in started
    assert started["transactionInfo"]["chargingState"] == "EVConnected"
    tx_id = started["transactionInfo"]["transactionId"]
    authorized = one(feed.see(facts(token=TOKEN)))
    assert (authorized["eventType"], authorized["triggerReason"]) == ("Updated", "Authorized")
    assert authorized["idToken"] == {"idToken": TOKEN, "type": "ISO14443"}
    assert authorized["transactionInfo"]["transactionId"] == tx_id
    # The station's transaction (named after it by the adapter) charges.
    charging = one(feed.see(facts(token=TOKEN, tx=tx_id, closed=True)))
    assert (charging["triggerReason"], charging["transactionInfo"]["chargingState"]) == (
        "ChargingStateChanged",
        "Charging",
    )
    assert "idToken" not in charging
    feed.see(facts(ev=False, stopping=True))
    feed.ended(tx_id, StopReason.EV_DISCONNECTED, 1500.0)
    ended = one(feed.see(facts(ev=False, energy=1500.0)))
    assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert seq_nos(feed, tx_id) == [0, 1, 2, 3]


def test_an_early_transaction_takes_the_id_the_station_chose_and_an_ended_one_is_retired() -> None:
    """The station owns transaction ids: a 2.0.1 transaction that begins before the
    station's takes the id the station will give its next one; ended unused, it is retired."""
    station = Station.create({1: 32.0}, "list", [], "FREE")
    feed = Feed(Settings(start_points=frozenset({"EVConnected"})))
    upcoming = functools.partial(station.upcoming_tx_id, 1)
    started = feed.tx.observe(feed.now, 1, facts(), False, upcoming)
    tx_id = one(feed._took(started))["transactionInfo"]["transactionId"]
    assert station.evses[1].next_tx_id == tx_id == station.upcoming_tx_id(1)
    (ended,) = feed.tx.observe(feed.now, 1, facts(ev=False), False, upcoming)
    assert ended.ended
    station.retire_tx_id(1, ended.tx_id)
    assert station.evses[1].next_tx_id is None
    assert station.upcoming_tx_id(1) != tx_id  # an ended id is never used again


def test_e02_start_point_ev_connected_unplug_before_authorization() -> None:
    feed = Feed(Settings(start_points=frozenset({"EVConnected"})))
    tx_id = one(feed.see(facts()))["transactionInfo"]["transactionId"]
    ended = one(feed.see(facts(ev=False)))
    assert ended["eventType"] == "Ended"
    assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == (
        "EVCommunicationLost",
        "EVDisconnected",
    )
    assert "idToken" not in ended
    assert seq_nos(feed, tx_id) == [0, 1]


def test_e02_start_point_ev_connected_no_new_transaction_while_the_same_ev_stays_plugged() -> None:
    """Stopped by the token, the EV still plugged: the next transaction waits for a new plug-in."""
    feed = Feed(Settings(start_points=frozenset({"EVConnected"})))
    tx_id = one(feed.see(facts()))["transactionInfo"]["transactionId"]
    feed.see(facts(token=TOKEN))
    feed.see(facts(token=TOKEN, tx=tx_id, closed=True))
    feed.see(facts(tx=None, state="EVConnected", stopping=True))
    feed.ended(tx_id, StopReason.LOCAL, 2000.0)
    ended = one(feed.see(facts(state="EVConnected", energy=2000.0)))
    assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == ("StopAuthorized", "Local")
    assert feed.see(facts(state="EVConnected", energy=2000.0)) == []
    assert feed.tx.open == {}
    feed.see(facts(ev=False))
    again = one(feed.see(facts()))
    assert (again["eventType"], again["triggerReason"]) == ("Started", "CablePluggedIn")


def test_e10_start_point_authorized_plug_first_then_swipe() -> None:
    feed = Feed(Settings(start_points=frozenset({"Authorized"})))
    assert feed.see(facts()) == []
    started = one(feed.see(facts(token=TOKEN)))
    assert (started["triggerReason"], started["idToken"]["idToken"]) == ("Authorized", TOKEN)
    assert started["transactionInfo"]["chargingState"] == "EVConnected"
    tx_id = started["transactionInfo"]["transactionId"]
    charging = one(feed.see(facts(token=TOKEN, tx=tx_id, closed=True)))
    assert charging["triggerReason"] == "ChargingStateChanged"


def test_e01_start_point_energy_transfer() -> None:
    feed = Feed(Settings(start_points=frozenset({"EnergyTransfer"})))
    assert feed.see(facts(token=TOKEN, tx="S1", closed=False, state="SuspendedEVSE")) == []
    started = one(feed.see(facts(token=TOKEN, tx="S1", closed=True)))
    assert (started["triggerReason"], started["transactionInfo"]["chargingState"]) == (
        "ChargingStateChanged",
        "Charging",
    )


def test_e02_start_point_ev_connected_with_token_already_authorized() -> None:
    feed = Feed(Settings(start_points=frozenset({"EVConnected"})))
    started = one(feed.see(facts(token=TOKEN, tx="S1")))
    assert started["triggerReason"] == "CablePluggedIn"
    assert started["idToken"]["idToken"] == TOKEN
    assert feed.see(facts(token=TOKEN, tx="S1")) == []  # no second Authorized


# -- F01/F02: remote start, TxStartPoint Authorized ------------------------------------------------


def test_f01_remote_start_authorized_start_point_then_ev_connect_timeout() -> None:
    feed = Feed(Settings(start_points=frozenset({"Authorized"})))
    feed.tx.remote_starts[1] = 42
    started = one(feed.see(facts(ev=False, token=TOKEN, state="Idle")))
    assert started["triggerReason"] == "RemoteStart"
    assert started["transactionInfo"]["remoteStartId"] == 42
    assert started["idToken"]["idToken"] == TOKEN
    assert feed.tx.remote_starts == {}
    # EVConnectionTimeOut: the station forgets the token.
    ended = one(feed.see(facts(ev=False, token=None, state="Idle")))
    assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == (
        "EVConnectTimeout",
        "Timeout",
    )


def test_tc_f_02_cs_remote_start_default_start_point_reports_remote_start() -> None:
    """F02.FR.01: the remoteStartId goes in the next TransactionEvent; F01.FR.19 / F02.FR.21
    (as libocpp and the OCTT read them): its triggerReason is RemoteStart, also when the
    TxStartPoint PowerPathClosed is what opens the transaction."""
    feed = Feed()
    feed.tx.remote_starts[1] = 7
    feed.see(facts(token=TOKEN))
    started = one(feed.see(facts(token=TOKEN, tx="S1", closed=True)))
    assert started["transactionInfo"]["remoteStartId"] == 7
    assert started["triggerReason"] == "RemoteStart"
    assert "remoteStartId" not in one(feed.sample("S1", 1100.0))["transactionInfo"]


def test_tc_f_02_cs_remote_start_ev_connected_start_point_reports_remote_start() -> None:
    feed = Feed(Settings(start_points=frozenset({"EVConnected"})))
    feed.tx.remote_starts[1] = 8
    assert feed.see(facts(ev=False, token=TOKEN, state="Idle")) == []
    started = one(feed.see(facts(token=TOKEN)))
    assert (started["triggerReason"], started["transactionInfo"]["remoteStartId"]) == ("RemoteStart", 8)


def test_a_remote_start_that_timed_out_is_not_reported_by_the_next_session() -> None:
    feed = Feed()
    feed.tx.remote_starts[1] = 9
    feed.see(facts(ev=False, token=TOKEN, state="Idle"))
    feed.see(facts(ev=False, token=None, state="Idle"))  # EVConnectionTimeOut: the token is gone
    feed.see(facts(token=TOKEN))  # a card, later
    started = one(feed.see(facts(token=TOKEN, tx="S1", closed=True)))
    assert started["triggerReason"] == "ChargingStateChanged"
    assert "remoteStartId" not in started["transactionInfo"]


def test_f02_remote_start_on_open_transaction_reports_remote_start() -> None:
    """TxStartPoint EVConnected: the remote start authorizes the running transaction."""
    feed = Feed(Settings(start_points=frozenset({"EVConnected"})))
    tx_id = one(feed.see(facts()))["transactionInfo"]["transactionId"]
    current = feed.tx.by_id(tx_id)
    assert current is not None
    current.remote_start_id = 9  # what the adapter does for RequestStartTransaction
    updated = one(feed.see(facts(token=TOKEN)))
    assert updated["triggerReason"] == "RemoteStart"
    assert updated["transactionInfo"]["remoteStartId"] == 9
    assert updated["idToken"]["idToken"] == TOKEN


def test_f03_remote_stop_before_authorization_ends_remote() -> None:
    feed = Feed(Settings(start_points=frozenset({"EVConnected"})))
    tx_id = one(feed.see(facts()))["transactionInfo"]["transactionId"]
    ended = one(feed.end(StopReason.REMOTE))
    assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == ("RemoteStop", "Remote")
    assert feed.end(StopReason.REMOTE) == []
    assert seq_nos(feed, tx_id) == [0, 1]


def test_end_uses_the_energy_stop_cause_when_known() -> None:
    feed = Feed(Settings(stop_points=frozenset({"EVConnected"})))
    feed.see(facts(token=TOKEN, tx="S1", closed=True))
    feed.see(facts(tx=None, state="EVConnected", stopping=True))
    feed.ended("S1", StopReason.REMOTE, 2000.0)
    feed.see(facts(state="EVConnected", energy=2000.0))
    ended = one(feed.end(StopReason.HARD_RESET))
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"


def test_f03_remote_stop_after_energy_stopped_is_triggered_by_the_remote_stop() -> None:
    feed = Feed(Settings(stop_points=frozenset({"EVConnected"})))
    feed.see(facts(token=TOKEN, tx="S1", closed=True))
    feed.see(facts(tx=None, state="EVConnected", stopping=True))
    feed.ended("S1", StopReason.LOCAL, 2000.0)
    feed.see(facts(state="EVConnected", energy=2000.0))
    ended = one(feed.end(StopReason.REMOTE))
    assert ended["triggerReason"] == "RemoteStop"
    assert ended["transactionInfo"]["stoppedReason"] in ("Local", "Remote")


# -- E14 / F06: triggered and clock-aligned events -----------------------------------------------


def test_f06_trigger_message_transaction_event() -> None:
    feed = Feed()
    assert feed.trigger() == []
    feed.see(facts(token=TOKEN, tx="S1", closed=True, energy=1000.0))
    feed.see(facts(token=TOKEN, tx="S1", closed=True, energy=1300.0))
    triggered = one(feed.trigger())
    assert (triggered["eventType"], triggered["triggerReason"]) == ("Updated", "Trigger")
    assert energy_of(triggered) == ("Trigger", 1300.0)
    assert seq_nos(feed, "S1") == [0, 1]


def test_clock_aligned_sample_uses_aligned_measurands() -> None:
    feed = Feed(Settings(aligned_measurands=("Power.Active.Import",)))
    feed.see(facts(token=TOKEN, tx="S1", closed=True))
    clock = one(feed.sample("S1", 1100.0, clock=True))
    assert clock["triggerReason"] == "MeterValueClock"
    (value,) = clock["meterValue"]
    assert [(s["measurand"], s["context"]) for s in value["sampledValue"]] == [
        ("Power.Active.Import", "Sample.Clock")
    ]


def test_sample_with_no_measurands_sends_nothing() -> None:
    feed = Feed(Settings(updated_measurands=()))
    feed.see(facts(token=TOKEN, tx="S1", closed=True))
    assert feed.sample("S1", 1100.0) == []


def test_offline_events_are_marked() -> None:
    feed = Feed()
    started = one(feed.see(facts(token=TOKEN, tx="S1", closed=True), offline=True))
    assert started["offline"] is True


def test_two_evses_are_independent() -> None:
    feed = Feed()
    a = one(feed.see(facts(token=TOKEN, tx="A", closed=True), evse=1))
    b = one(feed.see(facts(token="0A0B0C0D", tx="B", closed=True), evse=2))
    assert (a["evse"]["id"], b["evse"]["id"]) == (1, 2)
    assert a["seqNo"] == b["seqNo"] == 0
    feed.see(facts(ev=False, stopping=True), evse=1)
    feed.ended("A", StopReason.EV_DISCONNECTED, 1100.0, evse=1)
    ended = one(feed.see(facts(ev=False, energy=1100.0), evse=1))
    assert ended["transactionInfo"]["transactionId"] == "A"
    assert feed.tx.by_id("B") is not None


# -- power loss and meter values -----------------------------------------------------------------


def test_power_loss_continues_the_sequence() -> None:
    payload = tx201.power_loss(T0, "S1", 2, 5, 4321.0)
    assert_valid(payload)
    assert payload["eventType"] == "Ended"
    assert payload["seqNo"] == 6
    assert payload["offline"] is True
    assert (payload["triggerReason"], payload["transactionInfo"]["stoppedReason"]) == (
        "AbnormalCondition",
        "PowerLoss",
    )
    assert payload["evse"] == {"id": 2, "connectorId": 1}
    assert energy_of(payload) == ("Transaction.End", 4321.0)
    unknown = tx201.power_loss(T0, "S2", 1, 0, None)
    assert_valid(unknown)
    assert "meterValue" not in unknown


def test_meter_value_all_measurands_per_phase() -> None:
    value = tx201.meter_value(reading(1234.56, 11040.0), ALL_MEASURANDS)
    rows = [
        (s["measurand"], s.get("phase"), s["unitOfMeasure"]["unit"], s["value"])
        for s in value["sampledValue"]
    ]
    assert rows == [
        ("Energy.Active.Import.Register", None, "Wh", 1234.6),
        ("Power.Active.Import", None, "W", 11040.0),
        ("Current.Import", "L1", "A", 16.0),
        ("Current.Import", "L2", "A", 16.0),
        ("Current.Import", "L3", "A", 16.0),
        ("Voltage", "L1-N", "V", 230.0),
        ("Voltage", "L2-N", "V", 230.0),
        ("Voltage", "L3-N", "V", 230.0),
    ]
    assert value["timestamp"] == "2026-03-01T12:00:00.000Z"
    assert all(s["context"] == "Sample.Periodic" for s in value["sampledValue"])
    assert tx201.meter_value(reading(), ("Unknown.Measurand",))["sampledValue"] == []
    single = {**reading(), "current_a": [10.0], "voltage_v": [231.0]}
    phases = [s.get("phase") for s in tx201.meter_value(single, ALL_MEASURANDS)["sampledValue"]]
    assert phases == [None, None, "L1", "L1-N"]


def test_id_token_is_iso14443() -> None:
    assert tx201.id_token("04A1B2C3") == {"idToken": "04A1B2C3", "type": "ISO14443"}


def test_all_measurands_in_a_session_validate() -> None:
    every = tuple(ALL_MEASURANDS)
    feed = Feed(Settings(started_measurands=every, updated_measurands=every, ended_measurands=every))
    feed.see(facts(token=TOKEN, tx="S1", closed=True))
    feed.sample("S1", 1100.0)
    feed.trigger()
    feed.see(facts(ev=False, stopping=True))
    feed.ended("S1", StopReason.EV_DISCONNECTED, 1200.0)
    ended = one(feed.see(facts(ev=False, energy=1200.0)))
    assert len(ended["meterValue"][0]["sampledValue"]) == 8
    assert seq_nos(feed, "S1") == [0, 1, 2, 3]


# -- the sequencing rules, for random sessions -----------------------------------------------------


@dataclass
class SimEvse:
    """What the station model would show for one EVSE (simplified, but plausible)."""

    ev: bool = False
    requesting: bool = False
    token: str | None = None
    tx: str | None = None
    closed: bool = False
    stopping: tuple[str, StopReason] | None = None  # (station tx, reason) waiting for its final reading
    energy: float = 1000.0

    def facts(self) -> Facts:
        if self.tx is not None:
            suspended = "SuspendedEVSE" if self.requesting else "SuspendedEV"
            state = "Charging" if self.closed else suspended
        else:
            state = "EVConnected" if self.ev else "Idle"
        return Facts(
            self.ev, self.token, self.tx, self.closed, state, reading(self.energy), self.stopping is not None
        )


@dataclass
class Session:
    tx: Transactions
    evses: dict[int, SimEvse] = field(default_factory=lambda: {1: SimEvse(), 2: SimEvse()})
    now: datetime = T0
    counter: int = 0
    events: list[Event] = field(default_factory=list)

    def _stop(self, evse: SimEvse, reason: StopReason) -> None:
        if evse.tx is not None:
            evse.stopping = (evse.tx, reason)
            evse.tx, evse.closed = None, False

    def step(self, action: str, evse_id: int, offline: bool) -> None:
        self.now += timedelta(seconds=1)
        self.counter += 1
        e = self.evses[evse_id]
        tx = self.tx
        if action == "plug":
            e.ev = True
        elif action == "unplug":
            e.ev, e.requesting, e.token = False, False, None
            self._stop(e, StopReason.EV_DISCONNECTED)
        elif action == "charge":
            e.requesting = e.ev
        elif action == "suspend":
            e.requesting, e.closed = False, False
        elif action == "swipe":
            if e.tx is not None:
                self._stop(e, StopReason.LOCAL)
                e.token = None
            elif e.stopping is None:
                e.token = f"T{self.counter}"
        elif action == "start":
            if e.ev and e.token and e.tx is None and e.stopping is None:
                current = tx.open.get(evse_id)
                early = current.id if current is not None and current.station_tx is None else None
                e.tx = early or f"S{self.counter}"  # the id the station chose for it (upcoming_tx_id)
        elif action == "close":
            e.closed = e.tx is not None and e.requesting
        elif action == "open":
            e.closed = False
        elif action == "meter":
            e.energy += 10.0 if e.closed else 0.0
        elif action == "finish":
            if e.stopping is not None:
                tx.energy_ended(evse_id, e.stopping[0], e.stopping[1], e.energy)
                e.stopping = None
        elif action in ("remote_stop", "deauthorize", "fault"):
            reason = {
                "remote_stop": StopReason.REMOTE,
                "deauthorize": StopReason.DEAUTHORIZED,
                "fault": StopReason.OTHER,
            }[action]
            if e.tx is not None:
                self._stop(e, reason)
                e.token = None
            elif action == "remote_stop" and evse_id in tx.open:
                e.token = None
                self.events += tx.end(self.now, evse_id, StopReason.REMOTE, offline)
        elif action == "timeout":
            if e.tx is None:
                e.token = None
        elif action == "remote_start":
            tx.remote_starts[evse_id] = self.counter
        elif action == "sample":
            if e.tx is not None:
                sample = reading(e.energy)
                self.events += tx.sampled(self.now, evse_id, e.tx, sample, offline)
        elif action == "trigger":
            self.events += tx.triggered(self.now, evse_id, offline)
        self.events += tx.observe(self.now, evse_id, e.facts(), offline)


ACTIONS = (
    "plug",
    "unplug",
    "charge",
    "suspend",
    "swipe",
    "start",
    "close",
    "open",
    "meter",
    "finish",
    "remote_stop",
    "deauthorize",
    "fault",
    "timeout",
    "remote_start",
    "sample",
    "trigger",
)
points = st.frozensets(st.sampled_from(tx201.POINTS), min_size=1)
measurands = st.lists(st.sampled_from(ALL_MEASURANDS), unique=True, max_size=4).map(tuple)
steps = st.lists(st.tuples(st.sampled_from(ACTIONS), st.sampled_from((1, 2)), st.booleans()), max_size=60)


def check_sequencing(events: list[Event]) -> None:
    seen: dict[str, list[dict[str, Any]]] = {}
    open_on: dict[int, str] = {}
    for event in events:
        payload = event.payload
        assert_valid(payload)
        tx_id = payload["transactionInfo"]["transactionId"]
        assert (event.tx_id, event.seq_no, event.ended) == (
            tx_id,
            payload["seqNo"],
            payload["eventType"] == "Ended",
        )
        history = seen.setdefault(tx_id, [])
        assert payload["seqNo"] == len(history), f"{tx_id}: seqNo {payload['seqNo']} after {len(history)}"
        if history:
            assert history[-1]["eventType"] != "Ended", f"{tx_id}: {payload} after its Ended"
            assert payload["eventType"] != "Started", f"{tx_id}: a second Started"
        else:
            assert payload["eventType"] == "Started", f"{tx_id} begins with {payload}"
            evse = payload["evse"]["id"]
            assert evse not in open_on, f"EVSE {evse}: {tx_id} started while {open_on.get(evse)} is open"
            open_on[evse] = tx_id
        assert ("stoppedReason" in payload["transactionInfo"]) == (payload["eventType"] == "Ended")
        if payload["eventType"] == "Ended":
            open_on.pop(payload["evse"]["id"], None)
        history.append(payload)


@given(points, points, measurands, measurands, steps)
def test_property_seq_no_gapless_one_started_first_ended_last(
    start: frozenset[str],
    stop: frozenset[str],
    started_measurands: tuple[str, ...],
    updated_measurands: tuple[str, ...],
    actions: list[tuple[str, int, bool]],
) -> None:
    settings = Settings(
        start_points=start,
        stop_points=stop,
        started_measurands=started_measurands,
        updated_measurands=updated_measurands,
        ended_measurands=started_measurands,
    )
    session = Session(Transactions(settings))
    for action, evse_id, offline in actions:
        session.step(action, evse_id, offline)
    check_sequencing(session.events)
    # Whatever happened, an unplugged EV with its final reading taken leaves nothing open.
    for evse_id in (1, 2):
        for action in ("unplug", "finish", "timeout"):
            session.step(action, evse_id, False)
    check_sequencing(session.events)
    assert session.tx.open == {}, f"still open: {session.tx.open}"


@given(points, points, steps)
def test_property_end_closes_every_open_transaction(
    start: frozenset[str], stop: frozenset[str], actions: list[tuple[str, int, bool]]
) -> None:
    """Shutdown (Transactions.end) ends what is open, once, with nothing after it."""
    session = Session(Transactions(Settings(start_points=start, stop_points=stop)))
    for action, evse_id, offline in actions:
        session.step(action, evse_id, offline)
    for evse_id in (1, 2):
        session.events += session.tx.end(session.now, evse_id, StopReason.HARD_RESET, False)
        assert session.tx.end(session.now, evse_id, StopReason.HARD_RESET, False) == []
    assert session.tx.open == {}
    check_sequencing(session.events)


def test_settings_defaults_match_the_device_model() -> None:
    defaults = Settings()
    assert defaults.start_points == frozenset({"PowerPathClosed"})
    assert defaults.stop_points == frozenset({"EVConnected", "Authorized"})
    assert replace(defaults, start_points=frozenset({"EVConnected"})).stop_points == defaults.stop_points


SECOND_SESSION = ("plug", "charge", "swipe", "start", "close", "swipe", "finish", "swipe", "start", "close")
RESUMED = ("plug", "charge", "swipe", "start", "close", "suspend", "charge", "close")


@pytest.mark.parametrize(
    ("start", "stop", "steps_"),
    [
        pytest.param({"PowerPathClosed"}, {"EVConnected", "Authorized"}, SECOND_SESSION, id="ppc-second"),
        pytest.param({"Authorized"}, {"EVConnected", "Authorized"}, SECOND_SESSION, id="auth-second"),
        pytest.param({"EVConnected", "PowerPathClosed"}, {"Authorized"}, SECOND_SESSION, id="evc+ppc-second"),
        pytest.param({"EVConnected"}, {"EVConnected", "Authorized"}, SECOND_SESSION, id="evc-second"),
        pytest.param({"PowerPathClosed"}, {"PowerPathClosed"}, RESUMED, id="ppc-resumed"),
        pytest.param({"EnergyTransfer"}, {"EnergyTransfer"}, RESUMED, id="et-resumed"),
        pytest.param({"EVConnected"}, {"PowerPathClosed"}, RESUMED, id="evc-resumed"),
        pytest.param({"Authorized"}, {"PowerPathClosed"}, RESUMED, id="auth-resumed"),
    ],
)
def test_energy_flows_only_in_an_open_transaction(
    start: set[str], stop: set[str], steps_: tuple[str, ...]
) -> None:
    """While the station's transaction has the contactor closed, a 2.0.1 transaction is open."""
    session = Session(Transactions(Settings(start_points=frozenset(start), stop_points=frozenset(stop))))
    for action in steps_:
        session.step(action, 1, False)
        evse = session.evses[1]
        if evse.tx is not None and evse.closed:
            assert 1 in session.tx.open, f"energy in {evse.tx} with no transaction after {action}"
    check_sequencing(session.events)
    assert session.evses[1].closed and len({e.tx_id for e in session.events}) == 2


def test_e_reservation_id_in_the_first_event_only() -> None:
    feed = Feed()
    reserved = replace(facts(token=TOKEN, tx="S1", closed=True), reservation_id=7)
    started = one(feed.see(reserved))
    assert started["reservationId"] == 7
    assert "reservationId" not in one(feed.sample("S1", 1100.0))


def test_e06_stop_point_ev_connected_a_new_authorization_resumes_the_same_transaction() -> None:
    """After a local stop the transaction goes on; a new card starts the station's next
    session inside it: reported as Authorized, its samples and its end belong to it."""
    feed = Feed(Settings(stop_points=frozenset({"EVConnected"})))
    tx_id = one(feed.see(facts(token=TOKEN, tx="S1", closed=True)))["transactionInfo"]["transactionId"]
    feed.see(facts(tx=None, state="EVConnected", stopping=True))
    feed.ended("S1", StopReason.LOCAL, 2000.0)
    feed.see(facts(state="EVConnected", energy=2000.0))
    authorized = feed.see(facts(token="OTHER", tx="S2", energy=2000.0))[0]
    assert authorized["triggerReason"] == "Authorized"
    assert authorized["idToken"]["idToken"] == "OTHER"
    assert authorized["transactionInfo"]["transactionId"] == tx_id
    assert one(feed.sample("S2", 2500.0))["triggerReason"] == "MeterValuePeriodic"
    feed.see(facts(token="OTHER", tx=None, state="EVConnected", stopping=True, energy=2500.0))
    feed.ended("S2", StopReason.REMOTE, 2600.0)
    feed.see(facts(state="EVConnected", energy=2600.0))
    ended = one(feed.see(facts(ev=False, energy=2600.0)))
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"
    assert energy_of(ended) == ("Transaction.End", 2600.0)
    assert seq_nos(feed, tx_id) == list(range(len(seq_nos(feed, tx_id))))
