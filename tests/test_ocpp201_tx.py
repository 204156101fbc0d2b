"""OCPP 2.0.1 transactions, authorization and offline behaviour, end to end.

The daemon runs as a subprocess on simulated hardware against the development CSMS
speaking 2.0.1 only. The tests follow the OCA 2.0.1 compliance test cases of functional
blocks C (authorization), D (local authorization list), E (transactions) and F (remote
control). Every test checks the TransactionEvents it caused: each one is valid against the
official schema, seqNo runs 0, 1, 2, ... per transaction without a gap, one Started first,
at most one Ended last, and the triggerReason / stoppedReason of the events it is about.

"Offline" is a real connection loss: the CSMS refuses every new connection (HTTP 401,
through ``DevCsms.passwords``) and closes the station's websocket.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest
from jsonschema import Draft4Validator, FormatChecker

from controller.io.storage import parse_timestamp
from controller.ocpp.ocppj import is_datetime
from tests import ocpp_harness
from tests.ocpp_harness import TOKEN, Bench, eventually

# The bench's fixtures, under their own names (imported names shadowed by parameters upset ruff).
bench201 = ocpp_harness.bench201
csms201 = ocpp_harness.csms201
timeline201 = ocpp_harness.timeline201  # prints the timeline and daemon log of a failed test
set_variables = ocpp_harness.set_variables

STATION = "CP001"
OTHER = "0A0B0C0D"  # a second card
UNKNOWN = "0BADCAFE"  # a card nobody knows
RECONNECT_TIMEOUT_S = 25.0  # the station's back-off after refused attempts

_FORMATS = FormatChecker(formats=())
_FORMATS.checks("date-time")(is_datetime)
_SCHEMA = json.loads(
    resources.files("ocpp").joinpath("v201", "schemas", "TransactionEventRequest.json").read_text("utf-8")
)
EVENT_SCHEMA = Draft4Validator(_SCHEMA, format_checker=_FORMATS)


# -- helpers ---------------------------------------------------------------------------------


def id_token(token: str = TOKEN) -> dict[str, str]:
    return {"idToken": token, "type": "ISO14443"}


def since(
    bench: Bench, action: str, after: int = 0, where: Callable[[dict[str, Any]], bool] | None = None
) -> list[dict[str, Any]]:
    """Payloads of the station's CALLs of ``action`` at timeline index ``after`` or later, in order."""
    return [
        e.payload
        for e in bench.csms.timeline[after:]
        if e.kind == "call"
        and e.direction == "in"
        and e.action == action
        and isinstance(e.payload, dict)
        and (where is None or where(e.payload))
    ]


def events(bench: Bench, tx_id: str | None = None, after: int = 0) -> list[dict[str, Any]]:
    """The TransactionEvents received (of one transaction), in arrival order."""
    return since(
        bench,
        "TransactionEvent",
        after,
        lambda p: tx_id is None or p["transactionInfo"]["transactionId"] == tx_id,
    )


def no_call(
    bench: Bench,
    action: str,
    after: int,
    seconds: float,
    where: Callable[[dict[str, Any]], bool] | None = None,
) -> None:
    """Assert that the station sends no (matching) ``action`` for ``seconds``."""
    with pytest.raises(TimeoutError):
        bench.wait(action, where, timeout=seconds, after=after)


def check_events(bench: Bench, retries: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Every TransactionEvent so far: schema-valid, and per transaction seqNo 0, 1, 2, ...
    without a gap, one Started first, at most one Ended and nothing after it.

    ``retries``: the same event may arrive again right after itself (a retried delivery).
    Returns the events by transactionId, retries collapsed.
    """
    by_tx: dict[str, list[dict[str, Any]]] = {}
    for payload in events(bench):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in EVENT_SCHEMA.iter_errors(payload)]
        assert not errors, f"invalid TransactionEvent {payload}: {errors}"
        tx_id = payload["transactionInfo"]["transactionId"]
        history = by_tx.setdefault(tx_id, [])
        if retries and history and history[-1] == payload:
            continue
        assert payload["seqNo"] == len(history), f"{tx_id}: seqNo {payload['seqNo']} after {len(history)}"
        if history:
            assert payload["eventType"] != "Started", f"{tx_id}: a second Started {payload}"
            assert history[-1]["eventType"] != "Ended", f"{tx_id}: {payload} after its Ended"
        else:
            assert payload["eventType"] == "Started", f"{tx_id} begins with {payload}"
        assert ("stoppedReason" in payload["transactionInfo"]) == (payload["eventType"] == "Ended"), payload
        if history:
            assert parse_timestamp(payload["timestamp"]) >= parse_timestamp(history[-1]["timestamp"]), payload
        history.append(payload)
    return by_tx


def only_transaction(bench: Bench) -> tuple[str, list[dict[str, Any]]]:
    by_tx = check_events(bench)
    assert len(by_tx) == 1, f"transactions: {list(by_tx)}"
    ((tx_id, history),) = by_tx.items()
    return tx_id, history


def energy(payload: dict[str, Any], context: str | None = None) -> float:
    """The Energy.Active.Import.Register of the event's last meterValue (in Wh)."""
    for sample in payload["meterValue"][-1]["sampledValue"]:
        if sample.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register":
            if context is not None:
                assert sample.get("context") == context, payload
            assert sample.get("unitOfMeasure", {}).get("unit", "Wh") == "Wh"
            return float(sample["value"])
    raise AssertionError(f"no energy register in {payload}")


def reasons(payload: dict[str, Any]) -> tuple[str, str | None]:
    return payload["triggerReason"], payload["transactionInfo"].get("stoppedReason")


def plug_and_swipe(bench: Bench, token: str = TOKEN, charge: bool = True) -> None:
    rig = bench.sim()
    rig.plug(1)
    rig.swipe(token)
    if charge:
        rig.charge(1, max_current_a=16)


def go_offline(bench: Bench) -> None:
    """Take the CSMS away: refuse every connection attempt, close the open one."""
    bench.csms.csms.passwords = {}  # no station has credentials: every attempt gets HTTP 401
    bench.csms.disconnect(STATION)
    bench.sim().wait_until(lambda s: not s["ocpp_connected"], timeout=15)


def go_online(bench: Bench) -> int:
    """Let the station back in; returns the timeline mark taken before it reconnected."""
    mark = bench.mark()
    bench.csms.csms.passwords = None
    # A reconnection is not a boot (no BootNotification): wait for the connection itself.
    eventually(
        lambda: any(e.kind == "connect" for e in bench.csms.timeline[mark:]),
        RECONNECT_TIMEOUT_S,
        "the station to reconnect",
    )
    bench.sim().wait_until(lambda s: s["ocpp_connected"], timeout=RECONNECT_TIMEOUT_S)
    return mark


def outbox_empty(bench: Bench) -> bool:
    return bench.db("SELECT count(*) FROM outbox")[0][0] == 0


# -- E01-E03, E09: a regular session ------------------------------------------------------------


def test_e01_e09_plug_first_then_swipe_power_path_closed_session(bench201: Bench) -> None:
    set_variables(bench201, ("SampledDataCtrlr", "TxUpdatedInterval", "1"))
    mark = bench201.mark()
    plug_and_swipe(bench201)
    bench201.wait("Authorize", lambda p: p["idToken"] == id_token(), after=mark)
    started = bench201.event("Started", after=mark)
    tx_id = started["transactionInfo"]["transactionId"]
    assert started["triggerReason"] == "ChargingStateChanged"
    assert started["idToken"] == id_token()
    assert started["evse"] == {"id": 1, "connectorId": 1}
    begin = energy(started, "Transaction.Begin")
    assert started["transactionInfo"]["chargingState"] == "Charging"
    assert bench201.sim().status(1)["transaction_id"] == tx_id
    # The EV pauses and resumes: the charging state changes are Updated events.
    mark = bench201.mark()
    bench201.sim().suspend(1)
    paused = bench201.event("Updated", lambda p: p["triggerReason"] == "ChargingStateChanged", after=mark)
    assert paused["transactionInfo"]["chargingState"] == "SuspendedEV"
    mark = bench201.mark()
    bench201.sim().charge(1, max_current_a=16)
    resumed = bench201.event("Updated", lambda p: p["triggerReason"] == "ChargingStateChanged", after=mark)
    assert resumed["transactionInfo"]["chargingState"] == "Charging"
    first = bench201.event("Updated", lambda p: p["triggerReason"] == "MeterValuePeriodic", after=mark)
    time.sleep(2.2)
    periodic = [e for e in events(bench201, tx_id) if e["triggerReason"] == "MeterValuePeriodic"]
    assert len(periodic) >= 3, periodic
    values = [energy(e, "Sample.Periodic") for e in periodic]
    assert values == sorted(values) and values[-1] > begin and values[-1] > energy(first)

    mark = bench201.mark()
    bench201.sim().unplug(1)
    ended = bench201.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    assert ended["transactionInfo"]["chargingState"] == "Idle"
    assert energy(ended, "Transaction.End") >= values[-1]
    assert only_transaction(bench201)[0] == tx_id
    recorded = bench201.csms.transactions201
    assert list(recorded) == [tx_id]
    assert recorded[tx_id]["ended_count"] == 1
    assert recorded[tx_id]["duplicates"] == 0


def test_e03_swipe_first_then_plug_power_path_closed(bench201: Bench) -> None:
    mark = bench201.mark()
    bench201.sim().swipe(TOKEN)
    bench201.wait("Authorize", after=mark)
    no_call(bench201, "TransactionEvent", mark, 1.0)  # authorized, but no EV: nothing yet
    bench201.sim().plug(1)
    bench201.sim().charge(1, max_current_a=16)
    started = bench201.event("Started", after=mark)
    assert started["triggerReason"] == "ChargingStateChanged"
    assert started["idToken"] == id_token()
    energy(started, "Transaction.Begin")
    mark = bench201.mark()
    bench201.sim().unplug(1)
    ended = bench201.event("Ended", after=mark)
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(bench201)


# -- E02/E03 with TxStartPoint EVConnected -------------------------------------------------------


def test_e02_tx_start_point_ev_connected_cable_first_then_authorized(bench201: Bench) -> None:
    set_variables(bench201, ("TxCtrlr", "TxStartPoint", "EVConnected"))
    mark = bench201.mark()
    bench201.sim().plug(1)
    started = bench201.event("Started", after=mark)
    assert started["triggerReason"] == "CablePluggedIn"
    assert "idToken" not in started
    assert started["transactionInfo"]["chargingState"] == "EVConnected"
    tx_id = started["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    bench201.sim().swipe(TOKEN)
    authorized = bench201.event("Updated", lambda p: p["triggerReason"] == "Authorized", after=mark)
    assert authorized["idToken"] == id_token()
    assert authorized["transactionInfo"]["transactionId"] == tx_id
    bench201.sim().charge(1, max_current_a=16)
    charging = bench201.event(
        "Updated", lambda p: p["transactionInfo"].get("chargingState") == "Charging", after=mark
    )
    assert charging["triggerReason"] == "ChargingStateChanged"
    assert charging["transactionInfo"]["transactionId"] == tx_id
    status = bench201.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    assert status["transaction_id"] == tx_id  # the station's transaction took the 2.0.1 id
    mark = bench201.mark()
    bench201.sim().unplug(1)
    ended = bench201.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    energy(ended, "Transaction.End")
    assert only_transaction(bench201)[0] == tx_id


def test_e03_tx_start_point_ev_connected_swipe_first_then_plug(bench201: Bench) -> None:
    set_variables(bench201, ("TxCtrlr", "TxStartPoint", "EVConnected"))
    mark = bench201.mark()
    bench201.sim().swipe(TOKEN)
    bench201.wait("Authorize", after=mark)
    no_call(bench201, "TransactionEvent", mark, 1.0)
    bench201.sim().plug(1)
    started = bench201.event("Started", after=mark)
    assert started["triggerReason"] == "CablePluggedIn"
    tx_id = started["transactionInfo"]["transactionId"]
    bench201.sim().charge(1, max_current_a=16)
    bench201.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    mark = bench201.mark()
    bench201.sim().unplug(1)
    ended = bench201.event("Ended", after=mark)
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    history = only_transaction(bench201)[1]
    assert ended["transactionInfo"]["transactionId"] == tx_id
    # The token, authorized before the EV came, is reported once, before the energy.
    with_token = [e for e in history if "idToken" in e]
    assert [e["idToken"] for e in with_token] == [id_token()]
    assert with_token[0]["eventType"] == "Started" or with_token[0]["triggerReason"] == "Authorized"


def test_e02_tx_start_point_ev_connected_unplug_before_authorization(bench201: Bench) -> None:
    set_variables(bench201, ("TxCtrlr", "TxStartPoint", "EVConnected"))
    mark = bench201.mark()
    bench201.sim().plug(1)
    started = bench201.event("Started", after=mark)
    assert started["triggerReason"] == "CablePluggedIn"
    bench201.sim().unplug(1)
    ended = bench201.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == started["transactionInfo"]["transactionId"]
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    assert not any("idToken" in e for e in only_transaction(bench201)[1])


def test_e02_tx_start_point_ev_connected_no_new_transaction_until_replugged(bench201: Bench) -> None:
    set_variables(bench201, ("TxCtrlr", "TxStartPoint", "EVConnected"))
    mark = bench201.mark()
    plug_and_swipe(bench201)
    bench201.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    tx_id = bench201.event("Started", after=mark)["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    bench201.sim().swipe(TOKEN)
    ended = bench201.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("StopAuthorized", "Local")
    # The same EV stays plugged in: no new transaction until it is unplugged and plugged again,
    # whatever else happens meanwhile (here: a card the CSMS blocks is presented).
    bench201.csms.csms.auth[UNKNOWN] = "Blocked"
    mark = bench201.mark()
    bench201.sim().swipe(UNKNOWN)
    bench201.wait("Authorize", after=mark)
    no_call(bench201, "TransactionEvent", mark, 1.5, lambda p: p["eventType"] == "Started")
    check_events(bench201)


def test_e02_tx_start_point_ev_connected_second_session_on_the_same_plug_has_a_transaction(
    bench201: Bench,
) -> None:
    """After a local stop the EV stays plugged in and another card starts charging again:
    the energy of that second session belongs to a (new) 2.0.1 transaction."""
    set_variables(bench201, ("TxCtrlr", "TxStartPoint", "EVConnected"))
    first = start_session(bench201)["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    bench201.sim().swipe(TOKEN)
    assert reasons(bench201.event("Ended", after=mark)) == ("StopAuthorized", "Local")
    mark = bench201.mark()
    bench201.sim().swipe(OTHER)
    status = bench201.sim().wait_until(
        lambda s: s["contactor_closed"] and s["pwm"] and s["transaction_id"] not in (None, first), timeout=10
    )
    second = status["transaction_id"]  # energy flows in a new station transaction
    started = bench201.event("Started", after=mark, timeout=3)
    assert started["transactionInfo"]["transactionId"] == second
    assert started["idToken"] == id_token(OTHER) or any(
        e.get("idToken") == id_token(OTHER) for e in events(bench201, second)
    )
    mark = bench201.mark()
    bench201.sim().unplug(1)
    assert reasons(bench201.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    assert list(check_events(bench201)) == [first, second]


def test_e10_tx_start_point_authorized_plug_first_then_swipe(bench201: Bench) -> None:
    set_variables(bench201, ("TxCtrlr", "TxStartPoint", "Authorized"))
    bench201.sim().plug(1)
    mark = bench201.mark()
    bench201.sim().swipe(TOKEN)
    started = bench201.event("Started", after=mark)
    assert started["triggerReason"] == "Authorized"
    assert started["idToken"] == id_token()
    assert started["transactionInfo"]["chargingState"] in ("EVConnected", "SuspendedEVSE", "SuspendedEV")
    tx_id = started["transactionInfo"]["transactionId"]
    bench201.sim().charge(1, max_current_a=16)
    charging = bench201.event(
        "Updated", lambda p: p["transactionInfo"].get("chargingState") == "Charging", after=mark
    )
    assert charging["triggerReason"] == "ChargingStateChanged"
    mark = bench201.mark()
    bench201.sim().unplug(1)
    assert reasons(bench201.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    assert only_transaction(bench201)[0] == tx_id


def test_e02_tx_start_point_energy_transfer(bench201: Bench) -> None:
    set_variables(bench201, ("TxCtrlr", "TxStartPoint", "EnergyTransfer"))
    mark = bench201.mark()
    plug_and_swipe(bench201, charge=False)
    bench201.wait("Authorize", after=mark)
    no_call(bench201, "TransactionEvent", mark, 1.0)  # authorized, but no energy yet
    bench201.sim().charge(1, max_current_a=16)
    started = bench201.event("Started", after=mark)
    assert reasons(started) == ("ChargingStateChanged", None)
    assert started["transactionInfo"]["chargingState"] == "Charging"
    assert started["idToken"] == id_token()
    mark = bench201.mark()
    bench201.sim().unplug(1)
    assert reasons(bench201.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(bench201)


# -- F01/F02: RequestStartTransaction ------------------------------------------------------------


def request_start(
    bench: Bench, remote_start_id: int, evse: int | None = 1, token: str = TOKEN
) -> dict[str, Any]:
    payload: dict[str, Any] = {"idToken": id_token(token), "remoteStartId": remote_start_id}
    if evse is not None:
        payload["evseId"] = evse
    return bench.call("RequestStartTransaction", payload)


def test_f01_request_start_transaction_cable_plugin_first(bench201: Bench) -> None:
    """OCTT TC_F_01_CS (cable plugin first); F02.FR.01: the remoteStartId goes in the next
    TransactionEvent, and (F01.FR.19 / F02.FR.21) its triggerReason is RemoteStart."""
    bench201.sim().plug(1)
    mark = bench201.mark()
    reply = request_start(bench201, 101)
    assert reply["status"] == "Accepted"
    assert not any(e["eventType"] == "Started" for e in events(bench201))
    bench201.sim().charge(1, max_current_a=16)
    started = bench201.event("Started", after=mark)
    assert started["transactionInfo"]["remoteStartId"] == 101
    assert started["idToken"] == id_token()
    # The default TxStartPoint PowerPathClosed opens it, as the remote start's (F01.FR.19 / F02.FR.21).
    assert started["triggerReason"] == "RemoteStart"
    assert "Authorize" not in [e.action for e in bench201.csms.timeline[mark:]]  # AuthorizeRemoteStart false
    bench201.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    mark = bench201.mark()
    bench201.sim().unplug(1)
    assert reasons(bench201.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(bench201)


def test_f02_request_start_transaction_remote_start_first_without_evse_id(bench201: Bench) -> None:
    """OCTT TC_F_02_CS (remote start first): Started with triggerReason RemoteStart and the remoteStartId."""
    mark = bench201.mark()
    reply = request_start(bench201, 102, evse=None)
    assert reply["status"] == "Accepted"
    bench201.sim().plug(1)
    bench201.sim().charge(1, max_current_a=16)
    started = bench201.event("Started", after=mark)
    assert started["transactionInfo"]["remoteStartId"] == 102
    assert started["evse"]["id"] == 1
    assert started["idToken"] == id_token()
    assert started["triggerReason"] == "RemoteStart"
    bench201.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    tx_id = started["transactionInfo"]["transactionId"]
    assert bench201.sim().status(1)["transaction_id"] == tx_id
    mark = bench201.mark()
    bench201.sim().unplug(1)
    assert reasons(bench201.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    assert only_transaction(bench201)[0] == tx_id


def test_f02_request_start_transaction_with_evse_id_ev_plugged_later(bench201: Bench) -> None:
    mark = bench201.mark()
    assert request_start(bench201, 103, evse=1)["status"] == "Accepted"
    bench201.sim().plug(1)
    bench201.sim().charge(1, max_current_a=16)
    started = bench201.event("Started", after=mark)
    assert started["transactionInfo"]["remoteStartId"] == 103
    assert started["triggerReason"] == "RemoteStart"
    mark = bench201.mark()
    bench201.sim().unplug(1)
    assert reasons(bench201.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(bench201)


def test_f02_request_start_transaction_central_id_token_reported_as_given(bench201: Bench) -> None:
    """A remote start for an idToken of type Central (an app user): the events carry that
    idToken, type included."""
    app_user = {"idToken": "APP-USER-42", "type": "Central"}
    bench201.sim().plug(1)
    mark = bench201.mark()
    reply = bench201.call("RequestStartTransaction", {"idToken": app_user, "remoteStartId": 111, "evseId": 1})
    assert reply["status"] == "Accepted"
    bench201.sim().charge(1, max_current_a=16)
    started = bench201.event("Started", after=mark)
    assert started["transactionInfo"]["remoteStartId"] == 111
    assert started["triggerReason"] == "RemoteStart"
    assert started["idToken"] == app_user
    only_transaction(bench201)


def test_f01_request_start_transaction_unknown_evse_rejected(bench201: Bench) -> None:
    mark = bench201.mark()
    assert request_start(bench201, 104, evse=9)["status"] == "Rejected"
    bench201.sim().plug(1)
    bench201.sim().charge(1, max_current_a=16)
    no_call(bench201, "TransactionEvent", mark, 1.5)
    assert not bench201.sim().status(1)["contactor_closed"]
    assert check_events(bench201) == {}


def test_f01_request_start_transaction_evse_busy_rejected(bench201: Bench) -> None:
    tx_id = start_session(bench201)["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    assert request_start(bench201, 109, token=OTHER)["status"] == "Rejected"
    no_call(bench201, "TransactionEvent", mark, 1.0, lambda p: p["eventType"] != "Updated")
    assert bench201.sim().status(1)["transaction_id"] == tx_id
    mark = bench201.mark()
    bench201.sim().unplug(1)
    assert reasons(bench201.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    assert only_transaction(bench201)[0] == tx_id


def test_f01_request_start_transaction_ev_connected_start_point_names_the_transaction(
    bench201: Bench,
) -> None:
    """TxStartPoint EVConnected, cable first: the transaction runs already; the remote start
    authorizes it, and the response names it."""
    set_variables(bench201, ("TxCtrlr", "TxStartPoint", "EVConnected"))
    mark = bench201.mark()
    bench201.sim().plug(1)
    tx_id = bench201.event("Started", after=mark)["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    reply = request_start(bench201, 110)
    assert reply == {"status": "Accepted", "transactionId": tx_id}
    updated = bench201.event("Updated", lambda p: "idToken" in p, after=mark)
    assert updated["triggerReason"] == "RemoteStart"
    assert updated["transactionInfo"]["remoteStartId"] == 110
    assert updated["idToken"] == id_token()
    bench201.sim().charge(1, max_current_a=16)
    status = bench201.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    assert status["transaction_id"] == tx_id
    mark = bench201.mark()
    bench201.sim().unplug(1)
    assert reasons(bench201.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    assert only_transaction(bench201)[0] == tx_id


def test_f02_request_start_transaction_authorize_remote_start_true(bench201: Bench) -> None:
    set_variables(bench201, ("AuthCtrlr", "AuthorizeRemoteStart", "true"))
    bench201.sim().plug(1)
    bench201.sim().charge(1, max_current_a=16)
    mark = bench201.mark()
    assert request_start(bench201, 105)["status"] == "Accepted"
    authorize = bench201.wait("Authorize", after=mark)
    assert authorize["idToken"] == id_token()
    started = bench201.event("Started", after=mark)
    actions = [e.action for e in bench201.csms.timeline[mark:] if e.kind == "call" and e.direction == "in"]
    assert actions.index("Authorize") < actions.index("TransactionEvent")
    assert started["transactionInfo"]["remoteStartId"] == 105
    assert started["triggerReason"] == "RemoteStart"
    mark = bench201.mark()
    bench201.sim().unplug(1)
    assert reasons(bench201.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(bench201)


def test_f02_request_start_transaction_authorize_remote_start_blocked(bench201: Bench) -> None:
    set_variables(bench201, ("AuthCtrlr", "AuthorizeRemoteStart", "true"))
    bench201.csms.csms.auth[TOKEN] = "Blocked"
    bench201.sim().plug(1)
    bench201.sim().charge(1, max_current_a=16)
    mark = bench201.mark()
    assert request_start(bench201, 106)["status"] == "Accepted"
    bench201.wait("Authorize", after=mark)
    no_call(bench201, "TransactionEvent", mark, 1.5)
    assert not bench201.sim().status(1)["contactor_closed"]
    assert check_events(bench201) == {}


def test_e13_tx_start_point_authorized_remote_start_then_ev_connect_timeout(bench201: Bench) -> None:
    set_variables(
        bench201, ("TxCtrlr", "TxStartPoint", "Authorized"), ("TxCtrlr", "EVConnectionTimeOut", "3")
    )
    mark = bench201.mark()
    assert request_start(bench201, 107)["status"] == "Accepted"
    started = bench201.event("Started", after=mark)
    began = time.monotonic()
    assert started["triggerReason"] == "RemoteStart"
    assert started["transactionInfo"]["remoteStartId"] == 107
    assert started["idToken"] == id_token()
    ended = bench201.event("Ended", after=mark, timeout=10)
    waited = time.monotonic() - began
    assert reasons(ended) == ("EVConnectTimeout", "Timeout")
    assert ended["transactionInfo"]["transactionId"] == started["transactionInfo"]["transactionId"]
    assert 2.0 <= waited <= 6.0, f"ended {waited:.1f} s after the start; EVConnectionTimeOut is 3 s"
    only_transaction(bench201)


def test_f04_remote_start_ev_connection_timeout_default_start_point(bench201: Bench) -> None:
    set_variables(bench201, ("TxCtrlr", "EVConnectionTimeOut", "1"))
    mark = bench201.mark()
    assert request_start(bench201, 108)["status"] == "Accepted"
    # EVConnectionTimeOut runs out: the EVSE is free again and the token forgotten.
    time.sleep(1.2)
    bench201.sim().wait_until(lambda s: s["connector_status"] == "Available", timeout=5)
    bench201.sim().plug(1)
    bench201.sim().charge(1, max_current_a=16)
    no_call(bench201, "TransactionEvent", mark, 1.5)
    status = bench201.sim().status(1)
    assert not status["contactor_closed"] and status["transaction_id"] is None
    assert check_events(bench201) == {}


def start_session(bench: Bench, token: str = TOKEN) -> dict[str, Any]:
    """Plug in, swipe and charge on EVSE 1; returns the Started TransactionEvent once charging."""
    mark = bench.mark()
    plug_and_swipe(bench, token)
    started = bench.event("Started", after=mark)
    bench.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    return started


# -- F03: RequestStopTransaction -----------------------------------------------------------------


def test_f03_request_stop_transaction_accepted(bench201: Bench) -> None:
    tx_id = start_session(bench201)["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    assert bench201.call("RequestStopTransaction", {"transactionId": tx_id})["status"] == "Accepted"
    ended = bench201.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("RemoteStop", "Remote")
    energy(ended, "Transaction.End")
    # The PWM goes off at once; the contactor opens once the EV stops asking (or after 6 s).
    status = bench201.sim().wait_until(lambda s: not s["pwm"], timeout=5)
    assert status["transaction_id"] is None
    assert only_transaction(bench201)[0] == tx_id
    assert bench201.csms.transactions201[tx_id]["ended_count"] == 1


def test_f03_request_stop_transaction_unknown_id_rejected(bench201: Bench) -> None:
    tx_id = start_session(bench201)["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    reply = bench201.call("RequestStopTransaction", {"transactionId": "no-such-transaction"})
    assert reply["status"] == "Rejected"
    no_call(bench201, "TransactionEvent", mark, 1.0, lambda p: p["eventType"] == "Ended")
    assert bench201.sim().status(1)["contactor_closed"]
    mark = bench201.mark()
    bench201.sim().unplug(1)
    assert reasons(bench201.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    assert only_transaction(bench201)[0] == tx_id


def test_f03_request_stop_transaction_before_authorization_ev_connected_start(bench201: Bench) -> None:
    set_variables(bench201, ("TxCtrlr", "TxStartPoint", "EVConnected"))
    mark = bench201.mark()
    bench201.sim().plug(1)
    tx_id = bench201.event("Started", after=mark)["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    assert bench201.call("RequestStopTransaction", {"transactionId": tx_id})["status"] == "Accepted"
    ended = bench201.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("RemoteStop", "Remote")
    assert list(check_events(bench201)) == [tx_id]


# -- E14: GetTransactionStatus ---------------------------------------------------------------


def test_e14_get_transaction_status(bench201: Bench) -> None:
    assert bench201.call("GetTransactionStatus", {}) == {"messagesInQueue": False}
    unknown = bench201.call("GetTransactionStatus", {"transactionId": "no-such-transaction"})
    assert unknown == {"messagesInQueue": False, "ongoingIndicator": False}
    tx_id = start_session(bench201)["transactionInfo"]["transactionId"]
    eventually(lambda: outbox_empty(bench201), 5, "the outbox to drain")
    ongoing = bench201.call("GetTransactionStatus", {"transactionId": tx_id})
    assert ongoing == {"messagesInQueue": False, "ongoingIndicator": True}
    assert bench201.call("GetTransactionStatus", {}) == {"messagesInQueue": False}
    mark = bench201.mark()
    bench201.sim().unplug(1)
    ended = bench201.event("Ended", after=mark)
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    eventually(lambda: outbox_empty(bench201), 5, "the outbox to drain")
    finished = bench201.call("GetTransactionStatus", {"transactionId": tx_id})
    assert finished == {"messagesInQueue": False, "ongoingIndicator": False}
    only_transaction(bench201)


def test_e14_get_transaction_status_with_messages_in_queue(bench201: Bench) -> None:
    set_variables(
        bench201,
        ("OCPPCommCtrlr", "MessageAttempts", "5", "TransactionEvent"),
        ("OCPPCommCtrlr", "MessageAttemptInterval", "2", "TransactionEvent"),
    )
    bench201.csms.set_error("TransactionEvent", ("InternalError", "the CSMS cannot store it now"))
    mark = bench201.mark()
    plug_and_swipe(bench201)
    started = bench201.event("Started", after=mark)  # answered with a CALLERROR: stays queued
    tx_id = started["transactionInfo"]["transactionId"]
    assert bench201.call("GetTransactionStatus", {"transactionId": tx_id}) == {
        "messagesInQueue": True,
        "ongoingIndicator": True,
    }
    assert bench201.call("GetTransactionStatus", {}) == {"messagesInQueue": True}
    bench201.csms.set_error("TransactionEvent", None)
    eventually(lambda: outbox_empty(bench201), 10, "the outbox to drain")
    assert bench201.call("GetTransactionStatus", {"transactionId": tx_id}) == {
        "messagesInQueue": False,
        "ongoingIndicator": True,
    }
    assert bench201.csms.transactions201[tx_id]["started"]["seqNo"] == 0
    assert reasons(started) == ("ChargingStateChanged", None)
    check_events(bench201, retries=True)


def test_e14_get_transaction_status_ended_with_messages_in_queue(bench201: Bench) -> None:
    set_variables(
        bench201,
        ("OCPPCommCtrlr", "MessageAttempts", "5", "TransactionEvent"),
        ("OCPPCommCtrlr", "MessageAttemptInterval", "2", "TransactionEvent"),
    )
    tx_id = start_session(bench201)["transactionInfo"]["transactionId"]
    bench201.csms.set_error("TransactionEvent", ("InternalError", "the CSMS cannot store it now"))
    mark = bench201.mark()
    bench201.sim().unplug(1)
    ended = bench201.event("Ended", after=mark)  # answered with a CALLERROR: stays queued
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    status = bench201.call("GetTransactionStatus", {"transactionId": tx_id})
    assert status == {"messagesInQueue": True, "ongoingIndicator": False}
    bench201.csms.set_error("TransactionEvent", None)
    eventually(lambda: outbox_empty(bench201), 10, "the outbox to drain")
    status = bench201.call("GetTransactionStatus", {"transactionId": tx_id})
    assert status == {"messagesInQueue": False, "ongoingIndicator": False}
    assert bench201.csms.transactions201[tx_id]["ended_count"] == 1
    check_events(bench201, retries=True)


# -- E07, E06: stopping ------------------------------------------------------------------------


def test_e07_local_stop_by_the_same_token(bench201: Bench) -> None:
    tx_id = start_session(bench201)["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    bench201.sim().swipe(TOKEN)
    ended = bench201.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("StopAuthorized", "Local")
    energy(ended, "Transaction.End")
    status = bench201.sim().wait_until(lambda s: not s["pwm"], timeout=5)
    assert status["transaction_id"] is None
    assert only_transaction(bench201)[0] == tx_id
    # A stop by the card that started it needs no Authorize.
    assert since(bench201, "Authorize", mark) == []


def test_e07_fr_02_stop_authorized_ended_carries_the_id_token_that_stopped_it(bench201: Bench) -> None:
    """E07.FR.02 / E07.FR.06: "The field idToken is provided once in the TransactionEventRequest
    that occurs when the authorization of the transaction has been ended": the card that
    stopped it, here another card of the same group (groupIdToken from the local list)."""
    set_variables(bench201, ("AuthCtrlr", "LocalPreAuthorize", "true"))
    group = {"idToken": "FLEET", "type": "Central"}
    entries = [local_entry(TOKEN), local_entry(OTHER)]
    for entry in entries:
        entry["idTokenInfo"]["groupIdToken"] = group
    assert send_local_list(bench201, 1, "Full", entries) == "Accepted"
    tx_id = start_session(bench201)["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    bench201.sim().swipe(OTHER)
    ended = bench201.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("StopAuthorized", "Local")
    assert ended["idToken"] == id_token(OTHER)
    check_events(bench201)


def test_e07_fr_02_stop_authorized_updated_carries_the_id_token_once(bench201: Bench) -> None:
    """E07.FR.02 with TxStopPoint EVConnected: the authorization ends in an Updated event,
    which carries the idToken; the Ended event at the unplug does not repeat it."""
    set_variables(bench201, ("TxCtrlr", "TxStopPoint", "EVConnected"))
    start_session(bench201)
    mark = bench201.mark()
    bench201.sim().swipe(TOKEN)
    stopped = bench201.event("Updated", lambda p: p["triggerReason"] == "StopAuthorized", after=mark)
    assert stopped["idToken"] == id_token()
    bench201.sim().unplug(1)
    ended = bench201.event("Ended", after=mark)
    assert "idToken" not in ended
    assert [e for e in since(bench201, "TransactionEvent", mark) if "idToken" in e] == [stopped]
    check_events(bench201)


def test_e06_tx_stop_point_ev_connected_swipe_stops_energy_only(bench201: Bench) -> None:
    set_variables(bench201, ("TxCtrlr", "TxStopPoint", "EVConnected"))
    tx_id = start_session(bench201)["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    bench201.sim().swipe(TOKEN)
    stopped = bench201.event("Updated", lambda p: p["triggerReason"] == "StopAuthorized", after=mark)
    assert stopped["transactionInfo"]["transactionId"] == tx_id
    assert stopped["transactionInfo"]["chargingState"] in ("EVConnected", "SuspendedEVSE")
    bench201.sim().wait_until(lambda s: not s["pwm"], timeout=5)
    no_call(bench201, "TransactionEvent", mark, 1.5, lambda p: p["eventType"] == "Ended")
    mark = bench201.mark()
    bench201.sim().unplug(1)
    ended = bench201.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert ended["transactionInfo"]["stoppedReason"] == "Local"
    energy(ended, "Transaction.End")
    assert only_transaction(bench201)[0] == tx_id


def test_e06_tx_stop_point_ev_connected_ended_at_unplug_trigger_ev_communication_lost(
    bench201: Bench,
) -> None:
    set_variables(bench201, ("TxCtrlr", "TxStopPoint", "EVConnected"))
    start_session(bench201)
    mark = bench201.mark()
    bench201.sim().swipe(TOKEN)
    bench201.event("Updated", lambda p: p["triggerReason"] == "StopAuthorized", after=mark)
    mark = bench201.mark()
    bench201.sim().unplug(1)
    ended = bench201.event("Ended", after=mark)
    assert ended["triggerReason"] == "EVCommunicationLost"
    assert ended["transactionInfo"]["chargingState"] == "Idle"
    only_transaction(bench201)


def test_e07_tx_stop_point_power_path_closed_local_stop(bench201: Bench) -> None:
    set_variables(bench201, ("TxCtrlr", "TxStopPoint", "PowerPathClosed"))
    tx_id = start_session(bench201)["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    bench201.sim().swipe(TOKEN)
    ended = bench201.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("StopAuthorized", "Local")
    assert only_transaction(bench201)[0] == tx_id


def test_e06_tx_stop_point_power_path_closed_ev_suspends_then_resumes(bench201: Bench) -> None:
    set_variables(bench201, ("TxCtrlr", "TxStopPoint", "PowerPathClosed"))
    first = start_session(bench201)["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    bench201.sim().suspend(1)
    bench201.sim().wait_until(lambda s: not s["contactor_closed"], timeout=2)
    ended = bench201.event("Ended", after=mark, timeout=2)
    assert ended["transactionInfo"]["transactionId"] == first
    assert reasons(ended) == ("ChargingStateChanged", "StoppedByEV")
    # The EV asks again: the contactor closes, and that starts a new transaction.
    mark = bench201.mark()
    bench201.sim().charge(1, max_current_a=16)
    started = bench201.event("Started", after=mark)
    second = started["transactionInfo"]["transactionId"]
    assert second != first
    assert started["triggerReason"] == "ChargingStateChanged"
    mark = bench201.mark()
    assert bench201.call("RequestStopTransaction", {"transactionId": second})["status"] == "Accepted"
    stopped = bench201.event("Ended", after=mark)
    assert stopped["transactionInfo"]["transactionId"] == second
    assert reasons(stopped) == ("RemoteStop", "Remote")
    assert list(check_events(bench201)) == [first, second]


def test_e22_tx_stop_point_energy_transfer_ev_suspends(bench201: Bench) -> None:
    set_variables(bench201, ("TxCtrlr", "TxStopPoint", "EnergyTransfer"))
    tx_id = start_session(bench201)["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    bench201.sim().suspend(1)
    ended = bench201.event("Ended", after=mark, timeout=3)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("ChargingStateChanged", "StoppedByEV")
    assert ended["transactionInfo"]["chargingState"] in ("EVConnected", "SuspendedEV")
    energy(ended, "Transaction.End")
    assert only_transaction(bench201)[0] == tx_id


def test_e06_tx_stop_point_ev_connected_request_stop_after_local_stop(bench201: Bench) -> None:
    """Energy stopped by the card, the EV still plugged in: RequestStopTransaction ends it now."""
    set_variables(bench201, ("TxCtrlr", "TxStopPoint", "EVConnected"))
    tx_id = start_session(bench201)["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    bench201.sim().swipe(TOKEN)
    bench201.event("Updated", lambda p: p["triggerReason"] == "StopAuthorized", after=mark)
    mark = bench201.mark()
    assert bench201.call("RequestStopTransaction", {"transactionId": tx_id})["status"] == "Accepted"
    ended = bench201.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert ended["triggerReason"] == "RemoteStop"
    assert ended["transactionInfo"]["stoppedReason"] in ("Local", "Remote")
    only_transaction(bench201)


# -- E05: StopTxOnInvalidId --------------------------------------------------------------------


def deauthorize_after_authorize(bench: Bench) -> str:
    """Authorize says Accepted; the Started event's answer says Invalid. Returns the tx id."""
    mark = bench.mark()
    plug_and_swipe(bench, charge=False)
    bench.wait("Authorize", after=mark)
    bench.csms.csms.auth[TOKEN] = "Invalid"
    bench.sim().charge(1, max_current_a=16)
    started = bench.event("Started", after=mark)
    assert started["idToken"] == id_token()
    return str(started["transactionInfo"]["transactionId"])


def ended_deauthorized(bench: Bench, mark: int, tx_id: str) -> None:
    """The transaction ended as deauthorized, with its final reading, and the PWM withdrawn."""
    ended = bench.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("Deauthorized", "DeAuthorized")
    energy(ended, "Transaction.End")
    bench.sim().wait_until(lambda s: not s["pwm"] and s["transaction_id"] is None, timeout=5)


def test_e05_stop_tx_on_invalid_id_true_deauthorizes(bench201: Bench) -> None:
    mark = bench201.mark()
    tx_id = deauthorize_after_authorize(bench201)
    ended_deauthorized(bench201, mark, tx_id)
    assert only_transaction(bench201)[0] == tx_id


def test_tc_e_16_invalid_id_token_with_authorized_stop_point_ends_the_transaction(bench201: Bench) -> None:
    """E06.FR.04 / TC_E_16_CS: "TxStopPoint contains: Authorized AND CSMS returns a non-valid
    idTokenInfo in a TransactionEventResponse. The Charging Station SHALL stop the transaction
    and send a TransactionEventRequest (eventType = Ended)". With the default TxStopPoint
    (EVConnected, Authorized) that holds even with StopTxOnInvalidId false."""
    set_variables(
        bench201, ("TxCtrlr", "StopTxOnInvalidId", "false"), ("TxCtrlr", "MaxEnergyOnInvalidId", "1000000")
    )
    mark = bench201.mark()
    tx_id = deauthorize_after_authorize(bench201)
    ended_deauthorized(bench201, mark, tx_id)
    bench201.sim().suspend(1)  # the EV answers the withdrawn PWM, still plugged in
    bench201.sim().wait_until(lambda s: not s["contactor_closed"], timeout=5)
    assert only_transaction(bench201)[0] == tx_id


def test_e05_stop_tx_on_invalid_id_false_suspends_energy_until_the_ev_leaves(bench201: Bench) -> None:
    """StopTxOnInvalidId false, MaxEnergyOnInvalidId 0: the transaction goes on but no
    energy is delivered (chargingState SuspendedEVSE) until the EV leaves. Only without
    Authorized among the TxStopPoints: with it, E06.FR.04 ends the transaction at once
    (test_tc_e_16_invalid_id_token_with_authorized_stop_point_ends_the_transaction)."""
    set_variables(
        bench201, ("TxCtrlr", "TxStopPoint", "EVConnected"), ("TxCtrlr", "StopTxOnInvalidId", "false")
    )
    mark = bench201.mark()
    tx_id = deauthorize_after_authorize(bench201)
    suspended = bench201.event(
        "Updated", lambda p: p["transactionInfo"].get("chargingState") == "SuspendedEVSE", after=mark
    )
    assert suspended["transactionInfo"]["transactionId"] == tx_id
    status = bench201.sim().wait_until(lambda s: not s["pwm"] and s["offered_a"] == 0, timeout=10)
    assert status["transaction_id"] == tx_id
    no_call(bench201, "TransactionEvent", mark, 1.5, lambda p: p["eventType"] == "Ended")
    mark = bench201.mark()
    bench201.sim().unplug(1)
    assert reasons(bench201.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(bench201)


def test_e05_fr_03_max_energy_on_invalid_id_keeps_charging_until_delivered(bench201: Bench) -> None:
    """E05.FR.03: energy delivery is allowed until MaxEnergyOnInvalidId has been reached.
    TxStopPoint EVConnected: with Authorized among the stop points E06.FR.04 would end the
    transaction at the non-valid idTokenInfo instead."""
    set_variables(
        bench201,
        ("TxCtrlr", "TxStopPoint", "EVConnected"),
        ("TxCtrlr", "StopTxOnInvalidId", "false"),
        ("TxCtrlr", "MaxEnergyOnInvalidId", "1000000"),
    )
    mark = bench201.mark()
    tx_id = deauthorize_after_authorize(bench201)
    bench201.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    no_call(bench201, "TransactionEvent", mark, 1.5, lambda p: p["eventType"] == "Ended")
    assert bench201.sim().status(1)["transaction_id"] == tx_id
    mark = bench201.mark()
    bench201.sim().unplug(1)
    assert reasons(bench201.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(bench201)


def test_e05_ev_connected_start_id_token_invalid_in_updated_response(bench201: Bench) -> None:
    """TxStartPoint EVConnected: the idToken goes with an Updated event; the CSMS answers it
    Invalid, so the transaction is deauthorized."""
    set_variables(bench201, ("TxCtrlr", "TxStartPoint", "EVConnected"))

    def answer(payload: dict[str, Any]) -> dict[str, Any]:
        return {"idTokenInfo": {"status": "Invalid"}} if "idToken" in payload else {}

    bench201.csms.set_reply("TransactionEvent", answer)
    mark = bench201.mark()
    bench201.sim().plug(1)
    bench201.sim().charge(1, max_current_a=16)
    tx_id = bench201.event("Started", after=mark)["transactionInfo"]["transactionId"]
    bench201.sim().swipe(TOKEN)
    authorized = bench201.event("Updated", lambda p: p["triggerReason"] == "Authorized", after=mark)
    assert authorized["idToken"] == id_token()
    ended = bench201.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("Deauthorized", "DeAuthorized")
    status = bench201.sim().wait_until(lambda s: not s["pwm"], timeout=5)
    assert status["transaction_id"] is None
    only_transaction(bench201)


def _answer_invalid(payload: dict[str, Any]) -> dict[str, Any]:
    return {"idTokenInfo": {"status": "Invalid"}} if "idToken" in payload else {}


def _charges_on_despite_invalid(bench: Bench, mark: int, reported: dict[str, str]) -> None:
    """The session starts without a card, is reported under ``reported``, the CSMS says
    Invalid, and it charges on until the EV leaves (EVDisconnected, not DeAuthorized)."""
    bench.sim().plug(1)
    bench.sim().charge(1, max_current_a=16)
    started = bench.event("Started", after=mark)
    assert started["idToken"] == reported
    bench.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    no_call(bench, "TransactionEvent", mark, 2.0, lambda p: p["eventType"] == "Ended")
    assert bench.sim().status(1)["contactor_closed"]
    assert since(bench, "Authorize", mark) == []
    bench.sim().unplug(1)
    assert reasons(bench.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(bench)


def test_e06_fr_04_auth_ctrlr_disabled_reports_no_authorization_and_invalid_does_not_stop(
    bench201: Bench,
) -> None:
    """AuthCtrlr.Enabled false: no authorization is done before a transaction, so it is
    reported with IdTokenEnumType NoAuthorization ("no authorization possible/needed", empty
    idToken), not under auth.free_id that no CSMS knows. A non-valid idTokenInfo in the
    answer does not deauthorize it (E05/E06.FR.04 are about ids the station asked about),
    with the default TxStopPoint (EVConnected, Authorized)."""
    set_variables(bench201, ("AuthCtrlr", "Enabled", "false"))
    bench201.csms.set_reply("TransactionEvent", _answer_invalid)
    _charges_on_despite_invalid(bench201, bench201.mark(), {"idToken": "", "type": "NoAuthorization"})


def running201(tmp_path: Any, csms: Any, **options: Any) -> Iterator[Bench]:
    """A booted 2.0.1 station with ``options`` (see ``make_bench``), killed at the end."""
    running = ocpp_harness.make_bench(tmp_path, csms, version="2.0.1", **options)
    running.start()
    yield running
    if running.proc is not None and running.proc.poll() is None:
        running.kill()


@pytest.fixture
def free201(tmp_path: Any, csms201: Any) -> Iterator[Bench]:
    """A 2.0.1 station configured with auth mode "free"."""
    yield from running201(tmp_path, csms201, auth_mode="free")


def test_e06_fr_04_configured_free_mode_invalid_answer_does_not_stop(free201: Bench) -> None:
    """[auth] mode = "free" with 2.0.1: the sessions are reported under auth.free_id as
    ISO14443 (CONTRACTS section 2); a CSMS answering Invalid for it does not end them:
    the station decided to charge without identification."""
    free201.csms.set_reply("TransactionEvent", _answer_invalid)
    _charges_on_despite_invalid(free201, free201.mark(), id_token("FREE"))


def test_c_local_pre_authorize_from_local_list(bench201: Bench) -> None:
    set_variables(bench201, ("AuthCtrlr", "LocalPreAuthorize", "true"))
    assert send_local_list(bench201, 1, "Full", [local_entry(OTHER)]) == "Accepted"
    mark = bench201.mark()
    plug_and_swipe(bench201, OTHER)
    started = bench201.event("Started", after=mark)
    assert started["idToken"] == id_token(OTHER)
    assert reasons(started) == ("ChargingStateChanged", None)
    assert "offline" not in started
    assert since(bench201, "Authorize", mark) == []  # the local list answered
    mark = bench201.mark()
    bench201.sim().unplug(1)
    assert reasons(bench201.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(bench201)


# -- F05: UnlockConnector ----------------------------------------------------------------------


def test_f05_unlock_connector_no_lock_fitted(bench201: Bench) -> None:
    """TC_F_10_CS / F05.FR.03: an unknown EVSE or connector is UnknownConnector. Without a
    lock (a fixed cable) there is nothing to unlock: UnlockFailed (2.0.1 has no NotSupported)."""
    reply = bench201.call("UnlockConnector", {"evseId": 1, "connectorId": 1})
    assert reply["status"] == "UnlockFailed"
    assert bench201.call("UnlockConnector", {"evseId": 9, "connectorId": 1})["status"] == "UnknownConnector"
    assert bench201.call("UnlockConnector", {"evseId": 1, "connectorId": 2})["status"] == "UnknownConnector"
    assert check_events(bench201) == {}


@pytest.fixture
def locked201(tmp_path: Any, csms201: Any) -> Iterator[Bench]:
    """A 2.0.1 station whose EVSE 1 has a simulated connector lock."""
    yield from running201(tmp_path, csms201, lock="sim")


def lock_engaged(bench: Bench) -> bool:
    """Where the simulated connector lock physically is."""
    engaged = bench.sim().timing(1)["lock_engaged"]
    assert isinstance(engaged, bool), "no simulated lock on EVSE 1"
    return engaged


def test_tc_f_05_unlock_connector_during_transaction(locked201: Bench) -> None:
    """TC_F_05_CS / F05.FR.02: during an authorized transaction the answer is
    OngoingAuthorizedTransaction, and the lock stays engaged."""
    tx_id = start_session(locked201)["transactionInfo"]["transactionId"]
    mark = locked201.mark()
    reply = locked201.call("UnlockConnector", {"evseId": 1, "connectorId": 1})
    assert reply["status"] == "OngoingAuthorizedTransaction"
    # The session goes on.
    no_call(locked201, "TransactionEvent", mark, 1.0, lambda p: p["eventType"] == "Ended")
    status = locked201.sim().status(1)
    assert status["contactor_closed"] and status["transaction_id"] == tx_id
    assert lock_engaged(locked201)
    mark = locked201.mark()
    locked201.sim().unplug(1)
    assert reasons(locked201.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(locked201)


def test_tc_f_06_unlock_connector_ev_connected_without_transaction(locked201: Bench) -> None:
    """TC_F_06_CS: cable plugged in, no authorized transaction: Unlocked, and only once the
    lock reports released."""
    mark = locked201.mark()
    locked201.sim().plug(1)
    locked201.status201(1, "Occupied", after=mark)
    eventually(lambda: lock_engaged(locked201), what="the lock engages with the EV connected")
    assert locked201.call("UnlockConnector", {"evseId": 1, "connectorId": 1}) == {"status": "Unlocked"}
    assert not lock_engaged(locked201)
    time.sleep(0.5)
    assert not lock_engaged(locked201), "the lock engaged again with the EV still connected"


def test_tc_f_07_unlock_connector_no_cable_connected(locked201: Bench) -> None:
    """TC_F_07_CS: no cable connected: Unlocked."""
    assert locked201.call("UnlockConnector", {"evseId": 1, "connectorId": 1}) == {"status": "Unlocked"}
    assert not lock_engaged(locked201)


def test_f05_unlock_connector_jammed_lock_fails(locked201: Bench) -> None:
    """The answer comes from the lock's feedback: a jammed lock is UnlockFailed."""
    locked201.sim().plug(1)
    eventually(lambda: lock_engaged(locked201), what="the lock engages with the EV connected")
    locked201.sim().fault("lock_jam")
    reply = locked201.call("UnlockConnector", {"evseId": 1, "connectorId": 1})
    assert reply == {"status": "UnlockFailed"}
    assert lock_engaged(locked201)


# -- C01, C11: authorization and the cache -------------------------------------------------------


def test_c01_authorize_accepted_starts(bench201: Bench) -> None:
    mark = bench201.mark()
    plug_and_swipe(bench201)
    authorize = bench201.wait("Authorize", after=mark)
    assert authorize == {"idToken": id_token()}
    started = bench201.event("Started", after=mark)
    assert reasons(started) == ("ChargingStateChanged", None)
    assert started["idToken"] == id_token()
    mark = bench201.mark()
    bench201.sim().unplug(1)
    assert reasons(bench201.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(bench201)


def test_c01_authorize_blocked_no_transaction(bench201: Bench) -> None:
    bench201.csms.csms.auth[TOKEN] = "Blocked"
    mark = bench201.mark()
    plug_and_swipe(bench201)
    bench201.wait("Authorize", after=mark)
    no_call(bench201, "TransactionEvent", mark, 2.0)
    status = bench201.sim().status(1)
    assert not status["contactor_closed"] and not status["pwm"]
    assert status["transaction_id"] is None
    assert check_events(bench201) == {}


def test_c01_authorize_accepted_with_cache_expiry_now_is_accepted(bench201: Bench) -> None:
    """The status decides: cacheExpiryDateTime only says when the cache entry lapses."""
    now = datetime.now(UTC) - timedelta(seconds=1)
    expiry = now.isoformat(timespec="seconds").replace("+00:00", "Z")
    info = {"status": "Accepted", "cacheExpiryDateTime": expiry}
    bench201.csms.set_reply("Authorize", {"idTokenInfo": info})
    mark = bench201.mark()
    plug_and_swipe(bench201)
    started = bench201.event("Started", after=mark)
    assert started["idToken"] == id_token()
    bench201.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)


def test_card_before_plug_connector_stays_available(bench201: Bench) -> None:
    """2.0.1 has no Preparing (1.6 TC_004_1's status): Occupied means an EV or a cable is
    there, so an authorized card alone leaves the connector Available."""
    mark = bench201.mark()
    bench201.sim().swipe(TOKEN)
    bench201.wait("Authorize", after=mark)
    no_call(bench201, "StatusNotification", mark, 1.5)
    assert bench201.sim().status(1)["connector_status"] == "Available"
    bench201.sim().plug(1)
    bench201.status201(1, "Occupied", after=mark)
    bench201.sim().charge(1, max_current_a=16)
    assert bench201.event("Started", after=mark)["idToken"] == id_token()


def test_c11_clear_authorization_cache(bench201: Bench) -> None:
    assert bench201.call("ClearCache", {})["status"] == "Accepted"
    set_variables(bench201, ("AuthCacheCtrlr", "Enabled", "false"))
    assert bench201.call("ClearCache", {})["status"] == "Rejected"
    assert check_events(bench201) == {}


def test_c12_authorization_cache_used_offline(bench201: Bench) -> None:
    # Online: the CSMS accepts the card, the station caches that.
    tx_id = start_session(bench201)["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    bench201.sim().unplug(1)
    assert reasons(bench201.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    # The Ended event can come before the contactor has opened (it has 100 ms): a contactor
    # still closed from the first session must not pass for the offline one.
    bench201.sim().wait_until(lambda s: not s["contactor_closed"], timeout=5)
    eventually(lambda: outbox_empty(bench201), 5, "the outbox to drain")
    go_offline(bench201)
    plug_and_swipe(bench201)
    status = bench201.sim().wait_until(lambda s: s["contactor_closed"] and s["transaction_id"], timeout=10)
    offline_tx = status["transaction_id"]
    assert offline_tx and offline_tx != tx_id
    bench201.sim().unplug(1)
    bench201.sim().wait_until(lambda s: s["transaction_id"] is None and not s["contactor_closed"], timeout=10)
    go_online(bench201)
    ended = bench201.event("Ended", lambda p: p["transactionInfo"]["transactionId"] == offline_tx, timeout=15)
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    history = check_events(bench201)[offline_tx]
    assert history[0]["eventType"] == "Started"
    assert all(e.get("offline") is True for e in history), history
    assert history[0]["idToken"] == id_token()


def test_c12_cleared_cache_unknown_offline_refused(bench201: Bench) -> None:
    start_session(bench201)
    mark = bench201.mark()
    bench201.sim().unplug(1)
    bench201.event("Ended", after=mark)
    eventually(lambda: outbox_empty(bench201), 5, "the outbox to drain")
    assert bench201.call("ClearCache", {})["status"] == "Accepted"
    go_offline(bench201)
    plug_and_swipe(bench201)
    time.sleep(2.0)
    status = bench201.sim().status(1)
    assert not status["contactor_closed"] and status["transaction_id"] is None
    go_online(bench201)
    time.sleep(1.0)
    assert len(check_events(bench201)) == 1  # only the online session


# -- D01, D02, D08: the local authorization list, offline start ----------------------------------


def local_entry(token: str, status: str | None = "Accepted") -> dict[str, Any]:
    entry: dict[str, Any] = {"idToken": id_token(token)}
    if status is not None:
        entry["idTokenInfo"] = {"status": status}
    return entry


def send_local_list(bench: Bench, version: int, update_type: str, entries: list[dict[str, Any]]) -> str:
    payload: dict[str, Any] = {"versionNumber": version, "updateType": update_type}
    if entries:
        payload["localAuthorizationList"] = entries
    status: str = bench.call("SendLocalList", payload)["status"]
    return status


def list_version(bench: Bench) -> int:
    version: int = bench.call("GetLocalListVersion", {})["versionNumber"]
    return version


def test_d01_d02_send_local_list_full_and_differential(bench201: Bench) -> None:
    assert list_version(bench201) == 0
    assert (
        send_local_list(bench201, 1, "Full", [local_entry(TOKEN), local_entry(OTHER, "Blocked")])
        == "Accepted"
    )
    assert list_version(bench201) == 1
    assert send_local_list(bench201, 2, "Differential", [local_entry(OTHER), local_entry(TOKEN, None)]) == (
        "Accepted"
    )
    assert list_version(bench201) == 2
    assert send_local_list(bench201, 2, "Differential", [local_entry(UNKNOWN)]) == "VersionMismatch"
    assert list_version(bench201) == 2
    assert send_local_list(bench201, 5, "Full", []) == "Accepted"
    assert list_version(bench201) == 0  # empty: no list installed (D01.FR.18), as 1.6 section 5.10
    assert check_events(bench201) == {}


def test_d01_fr_18_send_local_list_version_0_is_failed(bench201: Bench) -> None:
    """D01.FR.18: "versionNumber in a SendLocalListRequest SHALL be greater than 0. In
    GetLocalListVersionResponse the versionNumber = 0 has a special meaning: No Local List
    installed. So the value 0 should never be used." """
    assert send_local_list(bench201, 0, "Full", [local_entry(TOKEN)]) == "Failed"
    assert send_local_list(bench201, 0, "Differential", [local_entry(TOKEN)]) == "Failed"
    assert list_version(bench201) == 0
    assert bench201.db("SELECT count(*) FROM local_list") == [(0,)]
    assert send_local_list(bench201, 1, "Full", [local_entry(TOKEN)]) == "Accepted"
    assert list_version(bench201) == 1


def test_d02_fr_03_get_local_list_version_0_while_disabled(bench201: Bench) -> None:
    """D02.FR.03: with LocalAuthListCtrlr.Enabled false the version reported is 0."""
    assert send_local_list(bench201, 3, "Full", [local_entry(TOKEN)]) == "Accepted"
    set_variables(bench201, ("LocalAuthListCtrlr", "Enabled", "false"))
    assert list_version(bench201) == 0
    set_variables(bench201, ("LocalAuthListCtrlr", "Enabled", "true"))
    assert list_version(bench201) == 3


def test_e04_offline_start_from_local_list_events_delivered_after_reconnect(bench201: Bench) -> None:
    set_variables(bench201, ("SampledDataCtrlr", "TxUpdatedInterval", "1"))
    assert send_local_list(bench201, 1, "Full", [local_entry(OTHER)]) == "Accepted"
    go_offline(bench201)
    plug_and_swipe(bench201, OTHER)
    status = bench201.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    tx_id = status["transaction_id"]
    assert tx_id
    time.sleep(3.5)  # periodic meter values, queued
    bench201.sim().unplug(1)
    bench201.sim().wait_until(lambda s: s["transaction_id"] is None, timeout=10)
    mark = go_online(bench201)
    ended = bench201.event("Ended", after=mark, timeout=15)
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    history = check_events(bench201)[tx_id]  # in order, seqNo 0.. without a gap
    kinds = [e["triggerReason"] for e in history]
    assert kinds[0] == "ChargingStateChanged" and kinds.count("MeterValuePeriodic") >= 2, kinds
    assert all(e.get("offline") is True for e in history), history
    assert history[0]["idToken"] == id_token(OTHER)
    assert since(bench201, "Authorize", 0, lambda p: p["idToken"]["idToken"] == OTHER) == []
    values = [energy(e) for e in history if "meterValue" in e]
    assert values == sorted(values)
    eventually(lambda: outbox_empty(bench201), 10, "the outbox to drain")
    assert bench201.csms.transactions201[tx_id]["ended_count"] == 1


def test_d_offline_local_list_blocked_token_refused(bench201: Bench) -> None:
    assert send_local_list(bench201, 1, "Full", [local_entry(OTHER, "Blocked")]) == "Accepted"
    go_offline(bench201)
    plug_and_swipe(bench201, OTHER)
    time.sleep(2.0)
    status = bench201.sim().status(1)
    assert not status["contactor_closed"] and status["transaction_id"] is None
    bench201.sim().unplug(1)
    go_online(bench201)
    time.sleep(1.0)
    assert check_events(bench201) == {}


def test_c15_offline_unknown_token_refused(bench201: Bench) -> None:
    go_offline(bench201)
    plug_and_swipe(bench201, UNKNOWN)
    time.sleep(2.0)
    status = bench201.sim().status(1)
    assert not status["contactor_closed"] and status["transaction_id"] is None
    bench201.sim().unplug(1)
    go_online(bench201)
    time.sleep(1.0)
    assert check_events(bench201) == {}


def test_c15_offline_tx_for_unknown_id_enabled(bench201: Bench) -> None:
    set_variables(bench201, ("AuthCtrlr", "OfflineTxForUnknownIdEnabled", "true"))
    go_offline(bench201)
    plug_and_swipe(bench201, UNKNOWN)
    status = bench201.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    tx_id = status["transaction_id"]
    bench201.sim().unplug(1)
    bench201.sim().wait_until(lambda s: s["transaction_id"] is None, timeout=10)
    mark = go_online(bench201)
    ended = bench201.event("Ended", after=mark, timeout=15)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    history = check_events(bench201)[tx_id]
    assert all(e.get("offline") is True for e in history)
    assert history[0]["idToken"] == id_token(UNKNOWN)


# -- E05 connection loss during a transaction, message attempts ---------------------------------


def test_e05_connection_loss_during_transaction_events_queued_and_delivered(bench201: Bench) -> None:
    set_variables(bench201, ("SampledDataCtrlr", "TxUpdatedInterval", "1"))
    started = start_session(bench201)
    tx_id = started["transactionInfo"]["transactionId"]
    assert "offline" not in started
    bench201.event("Updated", lambda p: p["triggerReason"] == "MeterValuePeriodic")
    go_offline(bench201)
    received = len(events(bench201, tx_id))
    time.sleep(2.5)  # periodic meter values, queued
    bench201.sim().unplug(1)
    bench201.sim().wait_until(lambda s: s["transaction_id"] is None, timeout=10)
    assert len(events(bench201, tx_id)) == received  # nothing got through
    mark = go_online(bench201)
    ended = bench201.event("Ended", after=mark, timeout=15)
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    assert ended["offline"] is True
    history = check_events(bench201)[tx_id]  # delivered in order, seqNo without a gap
    queued = history[received:]
    assert len(queued) >= 3, queued
    assert all(e.get("offline") is True for e in queued), queued
    assert not any(e.get("offline") for e in history[:received]), history[:received]
    values = [energy(e) for e in history if "meterValue" in e]
    assert values == sorted(values)
    # Delivered after the BootNotification of the new connection, in seqNo order.
    after = [p["seqNo"] for p in events(bench201, tx_id, mark)]
    assert after == list(range(received, len(history)))
    eventually(lambda: outbox_empty(bench201), 10, "the outbox to drain")
    assert bench201.csms.transactions201[tx_id]["ended_count"] == 1


def test_e05_message_attempts_callerror_retried_then_dropped(bench201: Bench) -> None:
    set_variables(
        bench201,
        ("OCPPCommCtrlr", "MessageAttempts", "2", "TransactionEvent"),
        ("OCPPCommCtrlr", "MessageAttemptInterval", "1", "TransactionEvent"),
    )
    bench201.csms.set_error("TransactionEvent", ("InternalError", "the CSMS cannot store it now"))
    mark = bench201.mark()
    plug_and_swipe(bench201)
    first = bench201.event("Started", after=mark)
    tx_id = first["transactionInfo"]["transactionId"]
    time.sleep(3.0)  # one retry after 1 s, then no more
    attempts = events(bench201, tx_id)
    assert attempts == [first, first], attempts
    errors = [
        e for e in bench201.csms.timeline[mark:] if e.kind == "error" and e.action == "TransactionEvent"
    ]
    assert len(errors) == 2
    eventually(lambda: outbox_empty(bench201), 5, "the dropped event to leave the outbox")
    # The CSMS recovers: later events of the transaction are delivered and accepted.
    bench201.csms.set_error("TransactionEvent", None)
    mark = bench201.mark()
    bench201.sim().unplug(1)
    ended = bench201.event("Ended", after=mark)
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    assert ended["seqNo"] == 1  # numbering goes on: the dropped Started kept seqNo 0
    history = check_events(bench201, retries=True)[tx_id]
    assert [e["eventType"] for e in history] == ["Started", "Ended"]
    assert bench201.csms.transactions201[tx_id]["ended_count"] == 1


def test_e05_message_attempts_retry_succeeds(bench201: Bench) -> None:
    set_variables(
        bench201,
        ("OCPPCommCtrlr", "MessageAttempts", "3", "TransactionEvent"),
        ("OCPPCommCtrlr", "MessageAttemptInterval", "1", "TransactionEvent"),
    )
    bench201.csms.set_error("TransactionEvent", ("InternalError", "busy"))
    mark = bench201.mark()
    plug_and_swipe(bench201)
    started = bench201.event("Started", after=mark)
    tx_id = started["transactionInfo"]["transactionId"]
    bench201.csms.set_error("TransactionEvent", None)
    eventually(lambda: bench201.csms.transactions201.get(tx_id), 5, "the retried Started")
    assert events(bench201, tx_id) == [started, started]
    recorded = bench201.csms.transactions201[tx_id]
    assert recorded["started"] == started and recorded["duplicates"] == 0
    assert reasons(started) == ("ChargingStateChanged", None)
    check_events(bench201, retries=True)


# -- power loss ----------------------------------------------------------------------------------


def test_e_power_loss_during_transaction_ended_once_as_power_loss(bench201: Bench) -> None:
    set_variables(bench201, ("SampledDataCtrlr", "TxUpdatedInterval", "1"))
    tx_id = start_session(bench201)["transactionInfo"]["transactionId"]
    bench201.event("Updated", lambda p: p["triggerReason"] == "MeterValuePeriodic")
    bench201.kill()
    before = check_events(bench201)[tx_id]
    last_energy = max(energy(e) for e in before if "meterValue" in e)
    mark = bench201.mark()
    bench201.start()
    ended = bench201.event("Ended", lambda p: p["transactionInfo"]["transactionId"] == tx_id, after=mark)
    assert reasons(ended) == ("AbnormalCondition", "PowerLoss")
    assert ended["offline"] is True
    assert energy(ended, "Transaction.End") >= last_energy
    time.sleep(2.0)
    # An event answered just before the kill may come again (its removal from the outbox
    # was not committed yet): at least once, same seqNo, same body.
    history = check_events(bench201, retries=True)[tx_id]  # seqNo goes on without a gap
    assert history[: len(before)] == before
    assert history[-1] == ended
    assert ended["seqNo"] == len(history) - 1 >= len(before)
    recorded = bench201.csms.transactions201[tx_id]
    assert recorded["ended_count"] == 1 and recorded["duplicates"] <= 1
    # The EV is still there, nobody presented a card: nothing new starts.
    assert [t for t in check_events(bench201, retries=True) if t != tx_id] == []
    assert not bench201.sim().status(1)["contactor_closed"]
    # Exactly once: another crash and start sends nothing more for it.
    eventually(lambda: outbox_empty(bench201), 5, "the outbox to drain")
    bench201.kill()
    mark = bench201.mark()
    bench201.start()
    no_call(bench201, "TransactionEvent", mark, 1.5)
    assert bench201.csms.transactions201[tx_id]["ended_count"] == 1


def test_e_power_loss_before_authorization_ev_connected_start_point(bench201: Bench) -> None:
    """A transaction that began at plug-in (no station transaction yet) is ended as PowerLoss too."""
    set_variables(bench201, ("TxCtrlr", "TxStartPoint", "EVConnected"))
    mark = bench201.mark()
    bench201.sim().plug(1)
    tx_id = bench201.event("Started", after=mark)["transactionInfo"]["transactionId"]
    eventually(lambda: outbox_empty(bench201), 5, "the outbox to drain")
    bench201.kill()
    mark = bench201.mark()
    bench201.start()
    ended = bench201.event("Ended", lambda p: p["transactionInfo"]["transactionId"] == tx_id, after=mark)
    assert reasons(ended) == ("AbnormalCondition", "PowerLoss")
    assert ended["seqNo"] == 1 and ended["offline"] is True
    time.sleep(1.0)
    history = check_events(bench201)
    assert [e["eventType"] for e in history[tx_id]] == ["Started", "Ended"]
    assert bench201.csms.transactions201[tx_id]["ended_count"] == 1


def test_e05_offline_started_transaction_invalid_after_reconnect_deauthorized(bench201: Bench) -> None:
    """Started offline from the local list; after reconnect the CSMS says the token is Invalid."""
    assert send_local_list(bench201, 1, "Full", [local_entry(OTHER)]) == "Accepted"
    bench201.csms.csms.auth[OTHER] = "Invalid"
    go_offline(bench201)
    plug_and_swipe(bench201, OTHER)
    status = bench201.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    tx_id = status["transaction_id"]
    mark = go_online(bench201)
    ended = bench201.event("Ended", after=mark, timeout=15)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("Deauthorized", "DeAuthorized")
    assert "offline" not in ended
    bench201.sim().wait_until(lambda s: s["transaction_id"] is None and not s["pwm"], timeout=5)
    history = check_events(bench201)[tx_id]
    assert history[0]["offline"] is True


def test_e_power_loss_ended_carries_the_last_meter_reading(bench201: Bench) -> None:
    """The energy charged since the last TransactionEvent is not lost: the PowerLoss Ended
    reports the meter as the station finds it at restart (as its own record does)."""
    tx_id = start_session(bench201)["transactionInfo"]["transactionId"]
    time.sleep(3.0)  # about 10 Wh, no event meanwhile (TxUpdatedInterval is 60 s)
    charged = bench201.sim().status(1)["energy_wh"]
    assert charged > 5.0
    bench201.kill()
    mark = bench201.mark()
    bench201.start()
    ended = bench201.event("Ended", lambda p: p["transactionInfo"]["transactionId"] == tx_id, after=mark)
    assert reasons(ended) == ("AbnormalCondition", "PowerLoss")
    meter_now = bench201.sim().status(1)["energy_wh"]
    stored = bench201.db("SELECT meter_stop_wh FROM transactions WHERE id = ?", tx_id)
    assert stored and stored[0][0] == pytest.approx(meter_now, abs=0.2)
    assert energy(ended, "Transaction.End") == pytest.approx(meter_now, abs=0.2)
    check_events(bench201)
