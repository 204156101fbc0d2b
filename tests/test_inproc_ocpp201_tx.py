"""OCPP 2.0.1 transactions, authorization and offline behaviour in-process (``tests.inproc``),
moved from test_ocpp201_tx.py.

The station's daemon, link and adapter run on the virtual clock against the development
CSMS speaking 2.0.1 only. The tests follow the OCA 2.0.1 compliance test cases of functional
blocks C (authorization), D (local authorization list), E (transactions) and F (remote
control). Every test checks the TransactionEvents it caused: each one is valid against the
official schema, seqNo runs 0, 1, 2, ... per transaction without a gap, one Started first,
at most one Ended last, and the triggerReason / stoppedReason of the events it is about.

"Offline" is a connection loss: the CSMS refuses every new connection (HTTP 401, through
``DevCsms.passwords``) and closes the station's websocket. Power cuts (a killed process)
stay in test_ocpp201_tx.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.inproc import TOKEN, Bench, go_offline, go_online, no_call, set_variables, station
from tests.ocpp201_helpers import check_events, energy, events, id_token, reasons
from tests.ocpp_helpers import outbox_empty, since

STATION = "CP001"
OTHER = "0A0B0C0D"  # a second card
UNKNOWN = "0BADCAFE"  # a card nobody knows
RECONNECT_TIMEOUT_S = 25.0  # the station's back-off after refused attempts


# -- helpers ---------------------------------------------------------------------------------


def only_transaction(b: Bench) -> tuple[str, list[dict[str, Any]]]:
    by_tx = check_events(b)
    assert len(by_tx) == 1, f"transactions: {list(by_tx)}"
    ((tx_id, history),) = by_tx.items()
    return tx_id, history


async def plug_and_swipe(b: Bench, token: str = TOKEN, charge: bool = True) -> None:
    rig = b.sim
    rig.plug(1)
    rig.swipe(token)
    if charge:
        rig.charge(1, max_current_a=16)


async def event_attempts(b: Bench, attempts: int, interval_s: int) -> None:
    """Send a TransactionEvent the CSMS refuses ``attempts`` times in all, ``interval_s`` apart."""
    await set_variables(
        b,
        ("OCPPCommCtrlr", "MessageAttempts", str(attempts), "TransactionEvent"),
        ("OCPPCommCtrlr", "MessageAttemptInterval", str(interval_s), "TransactionEvent"),
    )


async def started_refused(b: Bench, error: tuple[str, str]) -> tuple[int, dict[str, Any], str]:
    """The CSMS answers every TransactionEvent with the CALLERROR ``error``; plug in and swipe.
    Returns the mark taken before, the (first) Started and its transaction id."""
    b.csms.set_error("TransactionEvent", error)
    mark = b.mark()
    await plug_and_swipe(b)
    started = await b.event("Started", after=mark)
    return mark, started, started["transactionInfo"]["transactionId"]


# -- E01-E03, E09: a regular session ------------------------------------------------------------


@station(version="2.0.1")
async def test_e01_e09_plug_first_then_swipe_power_path_closed_session(b: Bench) -> None:
    await set_variables(b, ("SampledDataCtrlr", "TxUpdatedInterval", "1"))
    mark = b.mark()
    await plug_and_swipe(b)
    await b.wait("Authorize", lambda p: p["idToken"] == id_token(), after=mark)
    started = await b.event("Started", after=mark)
    tx_id = started["transactionInfo"]["transactionId"]
    assert started["triggerReason"] == "ChargingStateChanged"
    assert started["idToken"] == id_token()
    assert started["evse"] == {"id": 1, "connectorId": 1}
    begin = energy(started, "Transaction.Begin")
    assert started["transactionInfo"]["chargingState"] == "Charging"
    assert b.sim.status(1)["transaction_id"] == tx_id
    # The EV pauses and resumes: the charging state changes are Updated events.
    mark = b.mark()
    b.sim.suspend(1)
    paused = await b.event("Updated", lambda p: p["triggerReason"] == "ChargingStateChanged", after=mark)
    assert paused["transactionInfo"]["chargingState"] == "SuspendedEV"
    mark = b.mark()
    b.sim.charge(1, max_current_a=16)
    resumed = await b.event("Updated", lambda p: p["triggerReason"] == "ChargingStateChanged", after=mark)
    assert resumed["transactionInfo"]["chargingState"] == "Charging"
    first = await b.event("Updated", lambda p: p["triggerReason"] == "MeterValuePeriodic", after=mark)
    await asyncio.sleep(2.2)
    periodic = [e for e in events(b, tx_id) if e["triggerReason"] == "MeterValuePeriodic"]
    assert len(periodic) >= 3, periodic
    values = [energy(e, "Sample.Periodic") for e in periodic]
    assert values == sorted(values) and values[-1] > begin and values[-1] > energy(first)

    mark = b.mark()
    b.sim.unplug(1)
    ended = await b.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    assert ended["transactionInfo"]["chargingState"] == "Idle"
    assert energy(ended, "Transaction.End") >= values[-1]
    assert only_transaction(b)[0] == tx_id
    recorded = b.csms.transactions201
    assert list(recorded) == [tx_id]
    assert recorded[tx_id]["ended_count"] == 1
    assert recorded[tx_id]["duplicates"] == 0


@station(version="2.0.1")
async def test_e03_swipe_first_then_plug_power_path_closed(b: Bench) -> None:
    mark = b.mark()
    b.sim.swipe(TOKEN)
    await b.wait("Authorize", after=mark)
    await no_call(b, "TransactionEvent", mark, 1.0)  # authorized, but no EV: nothing yet
    b.sim.plug(1)
    b.sim.charge(1, max_current_a=16)
    started = await b.event("Started", after=mark)
    assert started["triggerReason"] == "ChargingStateChanged"
    assert started["idToken"] == id_token()
    energy(started, "Transaction.Begin")
    mark = b.mark()
    b.sim.unplug(1)
    ended = await b.event("Ended", after=mark)
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(b)


# -- E02/E03 with TxStartPoint EVConnected -------------------------------------------------------


@station(version="2.0.1")
async def test_e02_tx_start_point_ev_connected_cable_first_then_authorized(b: Bench) -> None:
    await set_variables(b, ("TxCtrlr", "TxStartPoint", "EVConnected"))
    mark = b.mark()
    b.sim.plug(1)
    started = await b.event("Started", after=mark)
    assert started["triggerReason"] == "CablePluggedIn"
    assert "idToken" not in started
    assert started["transactionInfo"]["chargingState"] == "EVConnected"
    tx_id = started["transactionInfo"]["transactionId"]
    mark = b.mark()
    b.sim.swipe(TOKEN)
    authorized = await b.event("Updated", lambda p: p["triggerReason"] == "Authorized", after=mark)
    assert authorized["idToken"] == id_token()
    assert authorized["transactionInfo"]["transactionId"] == tx_id
    b.sim.charge(1, max_current_a=16)
    charging = await b.event(
        "Updated", lambda p: p["transactionInfo"].get("chargingState") == "Charging", after=mark
    )
    assert charging["triggerReason"] == "ChargingStateChanged"
    assert charging["transactionInfo"]["transactionId"] == tx_id
    status = await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=10)
    assert status["transaction_id"] == tx_id  # the station's transaction took the 2.0.1 id
    mark = b.mark()
    b.sim.unplug(1)
    ended = await b.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    energy(ended, "Transaction.End")
    assert only_transaction(b)[0] == tx_id


@station(version="2.0.1")
async def test_e03_tx_start_point_ev_connected_swipe_first_then_plug(b: Bench) -> None:
    await set_variables(b, ("TxCtrlr", "TxStartPoint", "EVConnected"))
    mark = b.mark()
    b.sim.swipe(TOKEN)
    await b.wait("Authorize", after=mark)
    await no_call(b, "TransactionEvent", mark, 1.0)
    b.sim.plug(1)
    started = await b.event("Started", after=mark)
    assert started["triggerReason"] == "CablePluggedIn"
    tx_id = started["transactionInfo"]["transactionId"]
    b.sim.charge(1, max_current_a=16)
    await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=10)
    mark = b.mark()
    b.sim.unplug(1)
    ended = await b.event("Ended", after=mark)
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    history = only_transaction(b)[1]
    assert ended["transactionInfo"]["transactionId"] == tx_id
    # The token, authorized before the EV came, is reported once, before the energy.
    with_token = [e for e in history if "idToken" in e]
    assert [e["idToken"] for e in with_token] == [id_token()]
    assert with_token[0]["eventType"] == "Started" or with_token[0]["triggerReason"] == "Authorized"


@station(version="2.0.1")
async def test_e02_tx_start_point_ev_connected_unplug_before_authorization(b: Bench) -> None:
    await set_variables(b, ("TxCtrlr", "TxStartPoint", "EVConnected"))
    mark = b.mark()
    b.sim.plug(1)
    started = await b.event("Started", after=mark)
    assert started["triggerReason"] == "CablePluggedIn"
    b.sim.unplug(1)
    ended = await b.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == started["transactionInfo"]["transactionId"]
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    assert not any("idToken" in e for e in only_transaction(b)[1])


@station(version="2.0.1")
async def test_e02_tx_start_point_ev_connected_no_new_transaction_until_replugged(b: Bench) -> None:
    await set_variables(b, ("TxCtrlr", "TxStartPoint", "EVConnected"))
    mark = b.mark()
    await plug_and_swipe(b)
    await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=10)
    tx_id = (await b.event("Started", after=mark))["transactionInfo"]["transactionId"]
    mark = b.mark()
    b.sim.swipe(TOKEN)
    ended = await b.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("StopAuthorized", "Local")
    # The same EV stays plugged in: no new transaction until it is unplugged and plugged again,
    # whatever else happens meanwhile (here: a card the CSMS blocks is presented).
    b.csms.auth[UNKNOWN] = "Blocked"
    mark = b.mark()
    b.sim.swipe(UNKNOWN)
    await b.wait("Authorize", after=mark)
    await no_call(b, "TransactionEvent", mark, 1.5, lambda p: p["eventType"] == "Started")
    check_events(b)


@station(version="2.0.1")
async def test_e02_tx_start_point_ev_connected_second_session_on_the_same_plug_has_a_transaction(
    b: Bench,
) -> None:
    """After a local stop the EV stays plugged in and another card starts charging again:
    the energy of that second session belongs to a (new) 2.0.1 transaction."""
    await set_variables(b, ("TxCtrlr", "TxStartPoint", "EVConnected"))
    first = (await start_session(b))["transactionInfo"]["transactionId"]
    mark = b.mark()
    b.sim.swipe(TOKEN)
    assert reasons(await b.event("Ended", after=mark)) == ("StopAuthorized", "Local")
    mark = b.mark()
    b.sim.swipe(OTHER)
    status = await b.sim.wait_until(
        lambda s: s["contactor_closed"] and s["pwm"] and s["transaction_id"] not in (None, first), timeout=10
    )
    second = status["transaction_id"]  # energy flows in a new station transaction
    started = await b.event("Started", after=mark, timeout=3)
    assert started["transactionInfo"]["transactionId"] == second
    assert started["idToken"] == id_token(OTHER) or any(
        e.get("idToken") == id_token(OTHER) for e in events(b, second)
    )
    mark = b.mark()
    b.sim.unplug(1)
    assert reasons(await b.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    assert list(check_events(b)) == [first, second]


@station(version="2.0.1")
async def test_e10_tx_start_point_authorized_plug_first_then_swipe(b: Bench) -> None:
    await set_variables(b, ("TxCtrlr", "TxStartPoint", "Authorized"))
    b.sim.plug(1)
    mark = b.mark()
    b.sim.swipe(TOKEN)
    started = await b.event("Started", after=mark)
    assert started["triggerReason"] == "Authorized"
    assert started["idToken"] == id_token()
    assert started["transactionInfo"]["chargingState"] in ("EVConnected", "SuspendedEVSE", "SuspendedEV")
    tx_id = started["transactionInfo"]["transactionId"]
    b.sim.charge(1, max_current_a=16)
    charging = await b.event(
        "Updated", lambda p: p["transactionInfo"].get("chargingState") == "Charging", after=mark
    )
    assert charging["triggerReason"] == "ChargingStateChanged"
    mark = b.mark()
    b.sim.unplug(1)
    assert reasons(await b.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    assert only_transaction(b)[0] == tx_id


@station(version="2.0.1")
async def test_e02_tx_start_point_energy_transfer(b: Bench) -> None:
    await set_variables(b, ("TxCtrlr", "TxStartPoint", "EnergyTransfer"))
    mark = b.mark()
    await plug_and_swipe(b, charge=False)
    await b.wait("Authorize", after=mark)
    await no_call(b, "TransactionEvent", mark, 1.0)  # authorized, but no energy yet
    b.sim.charge(1, max_current_a=16)
    started = await b.event("Started", after=mark)
    assert reasons(started) == ("ChargingStateChanged", None)
    assert started["transactionInfo"]["chargingState"] == "Charging"
    assert started["idToken"] == id_token()
    mark = b.mark()
    b.sim.unplug(1)
    assert reasons(await b.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(b)


# -- F01/F02: RequestStartTransaction ------------------------------------------------------------


async def request_start(
    b: Bench, remote_start_id: int, evse: int | None = 1, token: str = TOKEN
) -> dict[str, Any]:
    payload: dict[str, Any] = {"idToken": id_token(token), "remoteStartId": remote_start_id}
    if evse is not None:
        payload["evseId"] = evse
    return await b.call("RequestStartTransaction", payload)


@station(version="2.0.1")
async def test_f01_request_start_transaction_cable_plugin_first(b: Bench) -> None:
    """OCTT TC_F_01_CS (cable plugin first); F02.FR.01: the remoteStartId goes in the next
    TransactionEvent, and (F01.FR.19 / F02.FR.21) its triggerReason is RemoteStart."""
    b.sim.plug(1)
    mark = b.mark()
    reply = await request_start(b, 101)
    assert reply["status"] == "Accepted"
    assert not any(e["eventType"] == "Started" for e in events(b))
    b.sim.charge(1, max_current_a=16)
    started = await b.event("Started", after=mark)
    assert started["transactionInfo"]["remoteStartId"] == 101
    assert started["idToken"] == id_token()
    # The default TxStartPoint PowerPathClosed opens it, as the remote start's (F01.FR.19 / F02.FR.21).
    assert started["triggerReason"] == "RemoteStart"
    assert "Authorize" not in [e.action for e in b.csms.timeline[mark:]]  # AuthorizeRemoteStart false
    await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=10)
    mark = b.mark()
    b.sim.unplug(1)
    assert reasons(await b.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(b)


@station(version="2.0.1")
async def test_f02_request_start_transaction_remote_start_first_without_evse_id(b: Bench) -> None:
    """OCTT TC_F_02_CS (remote start first): Started with triggerReason RemoteStart and the remoteStartId."""
    mark = b.mark()
    reply = await request_start(b, 102, evse=None)
    assert reply["status"] == "Accepted"
    b.sim.plug(1)
    b.sim.charge(1, max_current_a=16)
    started = await b.event("Started", after=mark)
    assert started["transactionInfo"]["remoteStartId"] == 102
    assert started["evse"]["id"] == 1
    assert started["idToken"] == id_token()
    assert started["triggerReason"] == "RemoteStart"
    await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=10)
    tx_id = started["transactionInfo"]["transactionId"]
    assert b.sim.status(1)["transaction_id"] == tx_id
    mark = b.mark()
    b.sim.unplug(1)
    assert reasons(await b.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    assert only_transaction(b)[0] == tx_id


@station(version="2.0.1")
async def test_f02_request_start_transaction_with_evse_id_ev_plugged_later(b: Bench) -> None:
    mark = b.mark()
    assert (await request_start(b, 103, evse=1))["status"] == "Accepted"
    b.sim.plug(1)
    b.sim.charge(1, max_current_a=16)
    started = await b.event("Started", after=mark)
    assert started["transactionInfo"]["remoteStartId"] == 103
    assert started["triggerReason"] == "RemoteStart"
    mark = b.mark()
    b.sim.unplug(1)
    assert reasons(await b.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(b)


@station(version="2.0.1")
async def test_f02_request_start_transaction_central_id_token_reported_as_given(b: Bench) -> None:
    """A remote start for an idToken of type Central (an app user): the events carry that
    idToken, type included."""
    app_user = {"idToken": "APP-USER-42", "type": "Central"}
    b.sim.plug(1)
    mark = b.mark()
    reply = await b.call("RequestStartTransaction", {"idToken": app_user, "remoteStartId": 111, "evseId": 1})
    assert reply["status"] == "Accepted"
    b.sim.charge(1, max_current_a=16)
    started = await b.event("Started", after=mark)
    assert started["transactionInfo"]["remoteStartId"] == 111
    assert started["triggerReason"] == "RemoteStart"
    assert started["idToken"] == app_user
    only_transaction(b)


@station(version="2.0.1")
async def test_f01_request_start_transaction_unknown_evse_rejected(b: Bench) -> None:
    mark = b.mark()
    assert (await request_start(b, 104, evse=9))["status"] == "Rejected"
    b.sim.plug(1)
    b.sim.charge(1, max_current_a=16)
    await no_call(b, "TransactionEvent", mark, 1.5)
    assert not b.sim.status(1)["contactor_closed"]
    assert check_events(b) == {}


@station(version="2.0.1")
async def test_f01_request_start_transaction_evse_busy_rejected(b: Bench) -> None:
    tx_id = (await start_session(b))["transactionInfo"]["transactionId"]
    mark = b.mark()
    assert (await request_start(b, 109, token=OTHER))["status"] == "Rejected"
    await no_call(b, "TransactionEvent", mark, 1.0, lambda p: p["eventType"] != "Updated")
    assert b.sim.status(1)["transaction_id"] == tx_id
    mark = b.mark()
    b.sim.unplug(1)
    assert reasons(await b.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    assert only_transaction(b)[0] == tx_id


@station(version="2.0.1")
async def test_f01_request_start_transaction_ev_connected_start_point_names_the_transaction(
    b: Bench,
) -> None:
    """TxStartPoint EVConnected, cable first: the transaction runs already; the remote start
    authorizes it, and the response names it."""
    await set_variables(b, ("TxCtrlr", "TxStartPoint", "EVConnected"))
    mark = b.mark()
    b.sim.plug(1)
    tx_id = (await b.event("Started", after=mark))["transactionInfo"]["transactionId"]
    mark = b.mark()
    reply = await request_start(b, 110)
    assert reply == {"status": "Accepted", "transactionId": tx_id}
    updated = await b.event("Updated", lambda p: "idToken" in p, after=mark)
    assert updated["triggerReason"] == "RemoteStart"
    assert updated["transactionInfo"]["remoteStartId"] == 110
    assert updated["idToken"] == id_token()
    b.sim.charge(1, max_current_a=16)
    status = await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=10)
    assert status["transaction_id"] == tx_id
    mark = b.mark()
    b.sim.unplug(1)
    assert reasons(await b.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    assert only_transaction(b)[0] == tx_id


@station(version="2.0.1")
async def test_f02_request_start_transaction_authorize_remote_start_true(b: Bench) -> None:
    await set_variables(b, ("AuthCtrlr", "AuthorizeRemoteStart", "true"))
    b.sim.plug(1)
    b.sim.charge(1, max_current_a=16)
    mark = b.mark()
    assert (await request_start(b, 105))["status"] == "Accepted"
    authorize = await b.wait("Authorize", after=mark)
    assert authorize["idToken"] == id_token()
    started = await b.event("Started", after=mark)
    actions = [e.action for e in b.csms.timeline[mark:] if e.kind == "call" and e.direction == "in"]
    assert actions.index("Authorize") < actions.index("TransactionEvent")
    assert started["transactionInfo"]["remoteStartId"] == 105
    assert started["triggerReason"] == "RemoteStart"
    mark = b.mark()
    b.sim.unplug(1)
    assert reasons(await b.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(b)


@station(version="2.0.1")
async def test_f02_request_start_transaction_authorize_remote_start_blocked(b: Bench) -> None:
    await set_variables(b, ("AuthCtrlr", "AuthorizeRemoteStart", "true"))
    b.csms.auth[TOKEN] = "Blocked"
    b.sim.plug(1)
    b.sim.charge(1, max_current_a=16)
    mark = b.mark()
    assert (await request_start(b, 106))["status"] == "Accepted"
    await b.wait("Authorize", after=mark)
    await no_call(b, "TransactionEvent", mark, 1.5)
    assert not b.sim.status(1)["contactor_closed"]
    assert check_events(b) == {}


@station(version="2.0.1")
async def test_e13_tx_start_point_authorized_remote_start_then_ev_connect_timeout(b: Bench) -> None:
    await set_variables(b, ("TxCtrlr", "TxStartPoint", "Authorized"), ("TxCtrlr", "EVConnectionTimeOut", "3"))
    mark = b.mark()
    assert (await request_start(b, 107))["status"] == "Accepted"
    started = await b.event("Started", after=mark)
    began = asyncio.get_running_loop().time()
    assert started["triggerReason"] == "RemoteStart"
    assert started["transactionInfo"]["remoteStartId"] == 107
    assert started["idToken"] == id_token()
    ended = await b.event("Ended", after=mark, timeout=10)
    waited = asyncio.get_running_loop().time() - began
    assert reasons(ended) == ("EVConnectTimeout", "Timeout")
    assert ended["transactionInfo"]["transactionId"] == started["transactionInfo"]["transactionId"]
    assert 2.0 <= waited <= 6.0, f"ended {waited:.1f} s after the start; EVConnectionTimeOut is 3 s"
    only_transaction(b)


@station(version="2.0.1")
async def test_f04_remote_start_ev_connection_timeout_default_start_point(b: Bench) -> None:
    await set_variables(b, ("TxCtrlr", "EVConnectionTimeOut", "1"))
    mark = b.mark()
    assert (await request_start(b, 108))["status"] == "Accepted"
    # EVConnectionTimeOut runs out: the EVSE is free again and the token forgotten.
    await asyncio.sleep(1.2)
    await b.sim.wait_until(lambda s: s["connector_status"] == "Available", timeout=5)
    b.sim.plug(1)
    b.sim.charge(1, max_current_a=16)
    await no_call(b, "TransactionEvent", mark, 1.5)
    status = b.sim.status(1)
    assert not status["contactor_closed"] and status["transaction_id"] is None
    assert check_events(b) == {}


async def start_session(b: Bench, token: str = TOKEN) -> dict[str, Any]:
    """Plug in, swipe and charge on EVSE 1; returns the Started TransactionEvent once charging."""
    mark = b.mark()
    await plug_and_swipe(b, token)
    started = await b.event("Started", after=mark)
    await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=10)
    return started


# -- F03: RequestStopTransaction -----------------------------------------------------------------


@station(version="2.0.1")
async def test_f03_request_stop_transaction_accepted(b: Bench) -> None:
    tx_id = (await start_session(b))["transactionInfo"]["transactionId"]
    mark = b.mark()
    assert (await b.call("RequestStopTransaction", {"transactionId": tx_id}))["status"] == "Accepted"
    ended = await b.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("RemoteStop", "Remote")
    energy(ended, "Transaction.End")
    # The PWM goes off at once; the contactor opens once the EV stops asking (or after 6 s).
    status = await b.sim.wait_until(lambda s: not s["pwm"], timeout=5)
    assert status["transaction_id"] is None
    assert only_transaction(b)[0] == tx_id
    assert b.csms.transactions201[tx_id]["ended_count"] == 1


@station(version="2.0.1")
async def test_f03_request_stop_transaction_unknown_id_rejected(b: Bench) -> None:
    tx_id = (await start_session(b))["transactionInfo"]["transactionId"]
    mark = b.mark()
    reply = await b.call("RequestStopTransaction", {"transactionId": "no-such-transaction"})
    assert reply["status"] == "Rejected"
    await no_call(b, "TransactionEvent", mark, 1.0, lambda p: p["eventType"] == "Ended")
    assert b.sim.status(1)["contactor_closed"]
    mark = b.mark()
    b.sim.unplug(1)
    assert reasons(await b.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    assert only_transaction(b)[0] == tx_id


@station(version="2.0.1")
async def test_f03_request_stop_transaction_before_authorization_ev_connected_start(b: Bench) -> None:
    await set_variables(b, ("TxCtrlr", "TxStartPoint", "EVConnected"))
    mark = b.mark()
    b.sim.plug(1)
    tx_id = (await b.event("Started", after=mark))["transactionInfo"]["transactionId"]
    mark = b.mark()
    assert (await b.call("RequestStopTransaction", {"transactionId": tx_id}))["status"] == "Accepted"
    ended = await b.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("RemoteStop", "Remote")
    assert list(check_events(b)) == [tx_id]


# -- E14: GetTransactionStatus ---------------------------------------------------------------


@station(version="2.0.1")
async def test_e14_get_transaction_status(b: Bench) -> None:
    assert await b.call("GetTransactionStatus", {}) == {"messagesInQueue": False}
    unknown = await b.call("GetTransactionStatus", {"transactionId": "no-such-transaction"})
    assert unknown == {"messagesInQueue": False, "ongoingIndicator": False}
    tx_id = (await start_session(b))["transactionInfo"]["transactionId"]
    await b.eventually(lambda: outbox_empty(b), 5, "the outbox to drain")
    ongoing = await b.call("GetTransactionStatus", {"transactionId": tx_id})
    assert ongoing == {"messagesInQueue": False, "ongoingIndicator": True}
    assert await b.call("GetTransactionStatus", {}) == {"messagesInQueue": False}
    mark = b.mark()
    b.sim.unplug(1)
    ended = await b.event("Ended", after=mark)
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    await b.eventually(lambda: outbox_empty(b), 5, "the outbox to drain")
    finished = await b.call("GetTransactionStatus", {"transactionId": tx_id})
    assert finished == {"messagesInQueue": False, "ongoingIndicator": False}
    only_transaction(b)


@station(version="2.0.1")
async def test_e14_get_transaction_status_with_messages_in_queue(b: Bench) -> None:
    await event_attempts(b, 5, interval_s=2)
    # The Started is answered with a CALLERROR: it stays queued.
    _, started, tx_id = await started_refused(b, ("InternalError", "the CSMS cannot store it now"))
    assert await b.call("GetTransactionStatus", {"transactionId": tx_id}) == {
        "messagesInQueue": True,
        "ongoingIndicator": True,
    }
    assert await b.call("GetTransactionStatus", {}) == {"messagesInQueue": True}
    b.csms.set_error("TransactionEvent", None)
    await b.eventually(lambda: outbox_empty(b), 10, "the outbox to drain")
    assert await b.call("GetTransactionStatus", {"transactionId": tx_id}) == {
        "messagesInQueue": False,
        "ongoingIndicator": True,
    }
    assert b.csms.transactions201[tx_id]["started"]["seqNo"] == 0
    assert reasons(started) == ("ChargingStateChanged", None)
    check_events(b, retries=True)


@station(version="2.0.1")
async def test_e14_get_transaction_status_ended_with_messages_in_queue(b: Bench) -> None:
    await event_attempts(b, 5, interval_s=2)
    tx_id = (await start_session(b))["transactionInfo"]["transactionId"]
    b.csms.set_error("TransactionEvent", ("InternalError", "the CSMS cannot store it now"))
    mark = b.mark()
    b.sim.unplug(1)
    ended = await b.event("Ended", after=mark)  # answered with a CALLERROR: stays queued
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    status = await b.call("GetTransactionStatus", {"transactionId": tx_id})
    assert status == {"messagesInQueue": True, "ongoingIndicator": False}
    b.csms.set_error("TransactionEvent", None)
    await b.eventually(lambda: outbox_empty(b), 10, "the outbox to drain")
    status = await b.call("GetTransactionStatus", {"transactionId": tx_id})
    assert status == {"messagesInQueue": False, "ongoingIndicator": False}
    assert b.csms.transactions201[tx_id]["ended_count"] == 1
    check_events(b, retries=True)


# -- E07, E06: stopping ------------------------------------------------------------------------


@station(version="2.0.1")
async def test_e07_local_stop_by_the_same_token(b: Bench) -> None:
    tx_id = (await start_session(b))["transactionInfo"]["transactionId"]
    mark = b.mark()
    b.sim.swipe(TOKEN)
    ended = await b.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("StopAuthorized", "Local")
    energy(ended, "Transaction.End")
    status = await b.sim.wait_until(lambda s: not s["pwm"], timeout=5)
    assert status["transaction_id"] is None
    assert only_transaction(b)[0] == tx_id
    # A stop by the card that started it needs no Authorize.
    assert since(b, "Authorize", mark) == []


@station(version="2.0.1")
async def test_e07_fr_02_stop_authorized_ended_carries_the_id_token_that_stopped_it(b: Bench) -> None:
    """E07.FR.02 / E07.FR.06: "The field idToken is provided once in the TransactionEventRequest
    that occurs when the authorization of the transaction has been ended": the card that
    stopped it, here another card of the same group (groupIdToken from the local list)."""
    await set_variables(b, ("AuthCtrlr", "LocalPreAuthorize", "true"))
    group = {"idToken": "FLEET", "type": "Central"}
    entries = [local_entry(TOKEN), local_entry(OTHER)]
    for entry in entries:
        entry["idTokenInfo"]["groupIdToken"] = group
    assert await send_local_list(b, 1, "Full", entries) == "Accepted"
    tx_id = (await start_session(b))["transactionInfo"]["transactionId"]
    mark = b.mark()
    b.sim.swipe(OTHER)
    ended = await b.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("StopAuthorized", "Local")
    assert ended["idToken"] == id_token(OTHER)
    check_events(b)


@station(version="2.0.1")
async def test_e07_fr_02_stop_authorized_updated_carries_the_id_token_once(b: Bench) -> None:
    """E07.FR.02 with TxStopPoint EVConnected: the authorization ends in an Updated event,
    which carries the idToken; the Ended event at the unplug does not repeat it."""
    await set_variables(b, ("TxCtrlr", "TxStopPoint", "EVConnected"))
    await start_session(b)
    mark = b.mark()
    b.sim.swipe(TOKEN)
    stopped = await b.event("Updated", lambda p: p["triggerReason"] == "StopAuthorized", after=mark)
    assert stopped["idToken"] == id_token()
    b.sim.unplug(1)
    ended = await b.event("Ended", after=mark)
    assert "idToken" not in ended
    assert [e for e in since(b, "TransactionEvent", mark) if "idToken" in e] == [stopped]
    check_events(b)


@station(version="2.0.1")
async def test_e06_tx_stop_point_ev_connected_swipe_stops_energy_only(b: Bench) -> None:
    await set_variables(b, ("TxCtrlr", "TxStopPoint", "EVConnected"))
    tx_id = (await start_session(b))["transactionInfo"]["transactionId"]
    mark = b.mark()
    b.sim.swipe(TOKEN)
    stopped = await b.event("Updated", lambda p: p["triggerReason"] == "StopAuthorized", after=mark)
    assert stopped["transactionInfo"]["transactionId"] == tx_id
    assert stopped["transactionInfo"]["chargingState"] in ("EVConnected", "SuspendedEVSE")
    await b.sim.wait_until(lambda s: not s["pwm"], timeout=5)
    await no_call(b, "TransactionEvent", mark, 1.5, lambda p: p["eventType"] == "Ended")
    mark = b.mark()
    b.sim.unplug(1)
    ended = await b.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert ended["transactionInfo"]["stoppedReason"] == "Local"
    energy(ended, "Transaction.End")
    assert only_transaction(b)[0] == tx_id


@station(version="2.0.1")
async def test_e06_tx_stop_point_ev_connected_ended_at_unplug_trigger_ev_communication_lost(
    b: Bench,
) -> None:
    await set_variables(b, ("TxCtrlr", "TxStopPoint", "EVConnected"))
    await start_session(b)
    mark = b.mark()
    b.sim.swipe(TOKEN)
    await b.event("Updated", lambda p: p["triggerReason"] == "StopAuthorized", after=mark)
    mark = b.mark()
    b.sim.unplug(1)
    ended = await b.event("Ended", after=mark)
    assert ended["triggerReason"] == "EVCommunicationLost"
    assert ended["transactionInfo"]["chargingState"] == "Idle"
    only_transaction(b)


@station(version="2.0.1")
async def test_e07_tx_stop_point_power_path_closed_local_stop(b: Bench) -> None:
    await set_variables(b, ("TxCtrlr", "TxStopPoint", "PowerPathClosed"))
    tx_id = (await start_session(b))["transactionInfo"]["transactionId"]
    mark = b.mark()
    b.sim.swipe(TOKEN)
    ended = await b.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("StopAuthorized", "Local")
    assert only_transaction(b)[0] == tx_id


@station(version="2.0.1")
async def test_e06_tx_stop_point_power_path_closed_ev_suspends_then_resumes(b: Bench) -> None:
    await set_variables(b, ("TxCtrlr", "TxStopPoint", "PowerPathClosed"))
    first = (await start_session(b))["transactionInfo"]["transactionId"]
    mark = b.mark()
    b.sim.suspend(1)
    await b.sim.wait_until(lambda s: not s["contactor_closed"], timeout=2)
    ended = await b.event("Ended", after=mark, timeout=2)
    assert ended["transactionInfo"]["transactionId"] == first
    assert reasons(ended) == ("ChargingStateChanged", "StoppedByEV")
    # The EV asks again: the contactor closes, and that starts a new transaction.
    mark = b.mark()
    b.sim.charge(1, max_current_a=16)
    started = await b.event("Started", after=mark)
    second = started["transactionInfo"]["transactionId"]
    assert second != first
    assert started["triggerReason"] == "ChargingStateChanged"
    mark = b.mark()
    assert (await b.call("RequestStopTransaction", {"transactionId": second}))["status"] == "Accepted"
    stopped = await b.event("Ended", after=mark)
    assert stopped["transactionInfo"]["transactionId"] == second
    assert reasons(stopped) == ("RemoteStop", "Remote")
    assert list(check_events(b)) == [first, second]


@station(version="2.0.1")
async def test_e22_tx_stop_point_energy_transfer_ev_suspends(b: Bench) -> None:
    await set_variables(b, ("TxCtrlr", "TxStopPoint", "EnergyTransfer"))
    tx_id = (await start_session(b))["transactionInfo"]["transactionId"]
    mark = b.mark()
    b.sim.suspend(1)
    ended = await b.event("Ended", after=mark, timeout=3)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("ChargingStateChanged", "StoppedByEV")
    assert ended["transactionInfo"]["chargingState"] in ("EVConnected", "SuspendedEV")
    energy(ended, "Transaction.End")
    assert only_transaction(b)[0] == tx_id


@station(version="2.0.1")
async def test_e06_tx_stop_point_ev_connected_request_stop_after_local_stop(b: Bench) -> None:
    """Energy stopped by the card, the EV still plugged in: RequestStopTransaction ends it now."""
    await set_variables(b, ("TxCtrlr", "TxStopPoint", "EVConnected"))
    tx_id = (await start_session(b))["transactionInfo"]["transactionId"]
    mark = b.mark()
    b.sim.swipe(TOKEN)
    await b.event("Updated", lambda p: p["triggerReason"] == "StopAuthorized", after=mark)
    mark = b.mark()
    assert (await b.call("RequestStopTransaction", {"transactionId": tx_id}))["status"] == "Accepted"
    ended = await b.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert ended["triggerReason"] == "RemoteStop"
    assert ended["transactionInfo"]["stoppedReason"] in ("Local", "Remote")
    only_transaction(b)


# -- E05: StopTxOnInvalidId --------------------------------------------------------------------


async def deauthorize_after_authorize(b: Bench) -> str:
    """Authorize says Accepted; the Started event's answer says Invalid. Returns the tx id."""
    mark = b.mark()
    await plug_and_swipe(b, charge=False)
    await b.wait("Authorize", after=mark)
    b.csms.auth[TOKEN] = "Invalid"
    b.sim.charge(1, max_current_a=16)
    started = await b.event("Started", after=mark)
    assert started["idToken"] == id_token()
    return str(started["transactionInfo"]["transactionId"])


async def ended_deauthorized(b: Bench, mark: int, tx_id: str) -> None:
    """The transaction ended as deauthorized, with its final reading, and the PWM withdrawn."""
    ended = await b.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("Deauthorized", "DeAuthorized")
    energy(ended, "Transaction.End")
    await b.sim.wait_until(lambda s: not s["pwm"] and s["transaction_id"] is None, timeout=5)


@station(version="2.0.1")
async def test_e05_stop_tx_on_invalid_id_true_deauthorizes(b: Bench) -> None:
    mark = b.mark()
    tx_id = await deauthorize_after_authorize(b)
    await ended_deauthorized(b, mark, tx_id)
    assert only_transaction(b)[0] == tx_id


@station(version="2.0.1")
async def test_tc_e_16_invalid_id_token_with_authorized_stop_point_ends_the_transaction(b: Bench) -> None:
    """E06.FR.04 / TC_E_16_CS: "TxStopPoint contains: Authorized AND CSMS returns a non-valid
    idTokenInfo in a TransactionEventResponse. The Charging Station SHALL stop the transaction
    and send a TransactionEventRequest (eventType = Ended)". With the default TxStopPoint
    (EVConnected, Authorized) that holds even with StopTxOnInvalidId false."""
    await set_variables(
        b, ("TxCtrlr", "StopTxOnInvalidId", "false"), ("TxCtrlr", "MaxEnergyOnInvalidId", "1000000")
    )
    mark = b.mark()
    tx_id = await deauthorize_after_authorize(b)
    await ended_deauthorized(b, mark, tx_id)
    b.sim.suspend(1)  # the EV answers the withdrawn PWM, still plugged in
    await b.sim.wait_until(lambda s: not s["contactor_closed"], timeout=5)
    assert only_transaction(b)[0] == tx_id


@station(version="2.0.1")
async def test_e05_stop_tx_on_invalid_id_false_suspends_energy_until_the_ev_leaves(b: Bench) -> None:
    """StopTxOnInvalidId false, MaxEnergyOnInvalidId 0: the transaction goes on but no
    energy is delivered (chargingState SuspendedEVSE) until the EV leaves. Only without
    Authorized among the TxStopPoints: with it, E06.FR.04 ends the transaction at once
    (test_tc_e_16_invalid_id_token_with_authorized_stop_point_ends_the_transaction)."""
    await set_variables(
        b, ("TxCtrlr", "TxStopPoint", "EVConnected"), ("TxCtrlr", "StopTxOnInvalidId", "false")
    )
    mark = b.mark()
    tx_id = await deauthorize_after_authorize(b)
    suspended = await b.event(
        "Updated", lambda p: p["transactionInfo"].get("chargingState") == "SuspendedEVSE", after=mark
    )
    assert suspended["transactionInfo"]["transactionId"] == tx_id
    status = await b.sim.wait_until(lambda s: not s["pwm"] and s["offered_a"] == 0, timeout=10)
    assert status["transaction_id"] == tx_id
    await no_call(b, "TransactionEvent", mark, 1.5, lambda p: p["eventType"] == "Ended")
    mark = b.mark()
    b.sim.unplug(1)
    assert reasons(await b.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(b)


@station(version="2.0.1")
async def test_e05_fr_03_max_energy_on_invalid_id_keeps_charging_until_delivered(b: Bench) -> None:
    """E05.FR.03: energy delivery is allowed until MaxEnergyOnInvalidId has been reached.
    TxStopPoint EVConnected: with Authorized among the stop points E06.FR.04 would end the
    transaction at the non-valid idTokenInfo instead."""
    await set_variables(
        b,
        ("TxCtrlr", "TxStopPoint", "EVConnected"),
        ("TxCtrlr", "StopTxOnInvalidId", "false"),
        ("TxCtrlr", "MaxEnergyOnInvalidId", "1000000"),
    )
    mark = b.mark()
    tx_id = await deauthorize_after_authorize(b)
    await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=10)
    await no_call(b, "TransactionEvent", mark, 1.5, lambda p: p["eventType"] == "Ended")
    assert b.sim.status(1)["transaction_id"] == tx_id
    mark = b.mark()
    b.sim.unplug(1)
    assert reasons(await b.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(b)


@station(version="2.0.1")
async def test_e05_ev_connected_start_id_token_invalid_in_updated_response(b: Bench) -> None:
    """TxStartPoint EVConnected: the idToken goes with an Updated event; the CSMS answers it
    Invalid, so the transaction is deauthorized."""
    await set_variables(b, ("TxCtrlr", "TxStartPoint", "EVConnected"))

    def answer(payload: dict[str, Any]) -> dict[str, Any]:
        return {"idTokenInfo": {"status": "Invalid"}} if "idToken" in payload else {}

    b.csms.set_reply("TransactionEvent", answer)
    mark = b.mark()
    b.sim.plug(1)
    b.sim.charge(1, max_current_a=16)
    tx_id = (await b.event("Started", after=mark))["transactionInfo"]["transactionId"]
    b.sim.swipe(TOKEN)
    authorized = await b.event("Updated", lambda p: p["triggerReason"] == "Authorized", after=mark)
    assert authorized["idToken"] == id_token()
    ended = await b.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("Deauthorized", "DeAuthorized")
    status = await b.sim.wait_until(lambda s: not s["pwm"], timeout=5)
    assert status["transaction_id"] is None
    only_transaction(b)


def _answer_invalid(payload: dict[str, Any]) -> dict[str, Any]:
    return {"idTokenInfo": {"status": "Invalid"}} if "idToken" in payload else {}


async def _charges_on_despite_invalid(b: Bench, mark: int, reported: dict[str, str]) -> None:
    """The session starts without a card, is reported under ``reported``, the CSMS says
    Invalid, and it charges on until the EV leaves (EVDisconnected, not DeAuthorized)."""
    b.sim.plug(1)
    b.sim.charge(1, max_current_a=16)
    started = await b.event("Started", after=mark)
    assert started["idToken"] == reported
    await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=10)
    await no_call(b, "TransactionEvent", mark, 2.0, lambda p: p["eventType"] == "Ended")
    assert b.sim.status(1)["contactor_closed"]
    assert since(b, "Authorize", mark) == []
    b.sim.unplug(1)
    assert reasons(await b.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(b)


@station(version="2.0.1")
async def test_e06_fr_04_auth_ctrlr_disabled_reports_no_authorization_and_invalid_does_not_stop(
    b: Bench,
) -> None:
    """AuthCtrlr.Enabled false: no authorization is done before a transaction, so it is
    reported with IdTokenEnumType NoAuthorization ("no authorization possible/needed", empty
    idToken), not under auth.free_id that no CSMS knows. A non-valid idTokenInfo in the
    answer does not deauthorize it (E05/E06.FR.04 are about ids the station asked about),
    with the default TxStopPoint (EVConnected, Authorized)."""
    await set_variables(b, ("AuthCtrlr", "Enabled", "false"))
    b.csms.set_reply("TransactionEvent", _answer_invalid)
    await _charges_on_despite_invalid(b, b.mark(), {"idToken": "", "type": "NoAuthorization"})


@station(version="2.0.1", auth_mode="free")
async def test_e06_fr_04_configured_free_mode_invalid_answer_does_not_stop(b: Bench) -> None:
    """[auth] mode = "free" with 2.0.1: the sessions are reported under auth.free_id as
    ISO14443 (CONTRACTS section 2); a CSMS answering Invalid for it does not end them:
    the station decided to charge without identification."""
    b.csms.set_reply("TransactionEvent", _answer_invalid)
    await _charges_on_despite_invalid(b, b.mark(), id_token("FREE"))


@station(version="2.0.1")
async def test_c_local_pre_authorize_from_local_list(b: Bench) -> None:
    await set_variables(b, ("AuthCtrlr", "LocalPreAuthorize", "true"))
    assert await send_local_list(b, 1, "Full", [local_entry(OTHER)]) == "Accepted"
    mark = b.mark()
    await plug_and_swipe(b, OTHER)
    started = await b.event("Started", after=mark)
    assert started["idToken"] == id_token(OTHER)
    assert reasons(started) == ("ChargingStateChanged", None)
    assert "offline" not in started
    assert since(b, "Authorize", mark) == []  # the local list answered
    mark = b.mark()
    b.sim.unplug(1)
    assert reasons(await b.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(b)


# -- F05: UnlockConnector ----------------------------------------------------------------------


@station(version="2.0.1")
async def test_f05_unlock_connector_no_lock_fitted(b: Bench) -> None:
    """TC_F_10_CS / F05.FR.03: an unknown EVSE or connector is UnknownConnector. Without a
    lock (a fixed cable) there is nothing to unlock: UnlockFailed (2.0.1 has no NotSupported)."""
    reply = await b.call("UnlockConnector", {"evseId": 1, "connectorId": 1})
    assert reply["status"] == "UnlockFailed"
    assert (await b.call("UnlockConnector", {"evseId": 9, "connectorId": 1}))["status"] == "UnknownConnector"
    assert (await b.call("UnlockConnector", {"evseId": 1, "connectorId": 2}))["status"] == "UnknownConnector"
    assert check_events(b) == {}


def lock_engaged(b: Bench) -> bool:
    """Where the simulated connector lock physically is."""
    engaged = b.sim.timing(1)["lock_engaged"]
    assert isinstance(engaged, bool), "no simulated lock on EVSE 1"
    return engaged


@station(version="2.0.1", lock="sim")
async def test_tc_f_05_unlock_connector_during_transaction(b: Bench) -> None:
    """TC_F_05_CS / F05.FR.02: during an authorized transaction the answer is
    OngoingAuthorizedTransaction, and the lock stays engaged."""
    tx_id = (await start_session(b))["transactionInfo"]["transactionId"]
    mark = b.mark()
    reply = await b.call("UnlockConnector", {"evseId": 1, "connectorId": 1})
    assert reply["status"] == "OngoingAuthorizedTransaction"
    # The session goes on.
    await no_call(b, "TransactionEvent", mark, 1.0, lambda p: p["eventType"] == "Ended")
    status = b.sim.status(1)
    assert status["contactor_closed"] and status["transaction_id"] == tx_id
    assert lock_engaged(b)
    mark = b.mark()
    b.sim.unplug(1)
    assert reasons(await b.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(b)


@station(version="2.0.1", lock="sim")
async def test_tc_f_06_unlock_connector_ev_connected_without_transaction(b: Bench) -> None:
    """TC_F_06_CS: cable plugged in, no authorized transaction: Unlocked, and only once the
    lock reports released."""
    mark = b.mark()
    b.sim.plug(1)
    await b.status201(1, "Occupied", after=mark)
    await b.eventually(lambda: lock_engaged(b), what="the lock engages with the EV connected")
    assert await b.call("UnlockConnector", {"evseId": 1, "connectorId": 1}) == {"status": "Unlocked"}
    assert not lock_engaged(b)
    await asyncio.sleep(0.5)
    assert not lock_engaged(b), "the lock engaged again with the EV still connected"


@station(version="2.0.1", lock="sim")
async def test_tc_f_07_unlock_connector_no_cable_connected(b: Bench) -> None:
    """TC_F_07_CS: no cable connected: Unlocked."""
    assert await b.call("UnlockConnector", {"evseId": 1, "connectorId": 1}) == {"status": "Unlocked"}
    assert not lock_engaged(b)


@station(version="2.0.1", lock="sim")
async def test_f05_unlock_connector_jammed_lock_fails(b: Bench) -> None:
    """The answer comes from the lock's feedback: a jammed lock is UnlockFailed."""
    b.sim.plug(1)
    await b.eventually(lambda: lock_engaged(b), what="the lock engages with the EV connected")
    b.sim.fault("lock_jam")
    reply = await b.call("UnlockConnector", {"evseId": 1, "connectorId": 1})
    assert reply == {"status": "UnlockFailed"}
    assert lock_engaged(b)


# -- C01, C11: authorization and the cache -------------------------------------------------------


@station(version="2.0.1")
async def test_c01_authorize_accepted_starts(b: Bench) -> None:
    mark = b.mark()
    await plug_and_swipe(b)
    authorize = await b.wait("Authorize", after=mark)
    assert authorize == {"idToken": id_token()}
    started = await b.event("Started", after=mark)
    assert reasons(started) == ("ChargingStateChanged", None)
    assert started["idToken"] == id_token()
    mark = b.mark()
    b.sim.unplug(1)
    assert reasons(await b.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    only_transaction(b)


@station(version="2.0.1")
async def test_c01_authorize_blocked_no_transaction(b: Bench) -> None:
    b.csms.auth[TOKEN] = "Blocked"
    mark = b.mark()
    await plug_and_swipe(b)
    await b.wait("Authorize", after=mark)
    await no_call(b, "TransactionEvent", mark, 2.0)
    status = b.sim.status(1)
    assert not status["contactor_closed"] and not status["pwm"]
    assert status["transaction_id"] is None
    assert check_events(b) == {}


@station(version="2.0.1")
async def test_c01_authorize_accepted_with_cache_expiry_now_is_accepted(b: Bench) -> None:
    """The status decides: cacheExpiryDateTime only says when the cache entry lapses."""
    now = datetime.now(UTC) - timedelta(seconds=1)
    expiry = now.isoformat(timespec="seconds").replace("+00:00", "Z")
    info = {"status": "Accepted", "cacheExpiryDateTime": expiry}
    b.csms.set_reply("Authorize", {"idTokenInfo": info})
    mark = b.mark()
    await plug_and_swipe(b)
    started = await b.event("Started", after=mark)
    assert started["idToken"] == id_token()
    await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=10)


@station(version="2.0.1")
async def test_card_before_plug_connector_stays_available(b: Bench) -> None:
    """2.0.1 has no Preparing (1.6 TC_004_1's status): Occupied means an EV or a cable is
    there, so an authorized card alone leaves the connector Available."""
    mark = b.mark()
    b.sim.swipe(TOKEN)
    await b.wait("Authorize", after=mark)
    await no_call(b, "StatusNotification", mark, 1.5)
    assert b.sim.status(1)["connector_status"] == "Available"
    b.sim.plug(1)
    await b.status201(1, "Occupied", after=mark)
    b.sim.charge(1, max_current_a=16)
    assert (await b.event("Started", after=mark))["idToken"] == id_token()


@station(version="2.0.1")
async def test_c11_clear_authorization_cache(b: Bench) -> None:
    assert (await b.call("ClearCache", {}))["status"] == "Accepted"
    await set_variables(b, ("AuthCacheCtrlr", "Enabled", "false"))
    assert (await b.call("ClearCache", {}))["status"] == "Rejected"
    assert check_events(b) == {}


@station(version="2.0.1")
async def test_c12_authorization_cache_used_offline(b: Bench) -> None:
    # Online: the CSMS accepts the card, the station caches that.
    tx_id = (await start_session(b))["transactionInfo"]["transactionId"]
    mark = b.mark()
    b.sim.unplug(1)
    assert reasons(await b.event("Ended", after=mark)) == ("EVCommunicationLost", "EVDisconnected")
    # The Ended event can come before the contactor has opened (it has 100 ms): a contactor
    # still closed from the first session must not pass for the offline one.
    await b.sim.wait_until(lambda s: not s["contactor_closed"], timeout=5)
    await b.eventually(lambda: outbox_empty(b), 5, "the outbox to drain")
    await go_offline(b)
    await plug_and_swipe(b)
    status = await b.sim.wait_until(lambda s: s["contactor_closed"] and s["transaction_id"], timeout=10)
    offline_tx = status["transaction_id"]
    assert offline_tx and offline_tx != tx_id
    b.sim.unplug(1)
    await b.sim.wait_until(lambda s: s["transaction_id"] is None and not s["contactor_closed"], timeout=10)
    await go_online(b, RECONNECT_TIMEOUT_S)
    ended = await b.event("Ended", lambda p: p["transactionInfo"]["transactionId"] == offline_tx, timeout=15)
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    history = check_events(b)[offline_tx]
    assert history[0]["eventType"] == "Started"
    assert all(e.get("offline") is True for e in history), history
    assert history[0]["idToken"] == id_token()


@station(version="2.0.1")
async def test_c12_cleared_cache_unknown_offline_refused(b: Bench) -> None:
    await start_session(b)
    mark = b.mark()
    b.sim.unplug(1)
    await b.event("Ended", after=mark)
    await b.eventually(lambda: outbox_empty(b), 5, "the outbox to drain")
    assert (await b.call("ClearCache", {}))["status"] == "Accepted"
    await go_offline(b)
    await plug_and_swipe(b)
    await asyncio.sleep(2.0)
    status = b.sim.status(1)
    assert not status["contactor_closed"] and status["transaction_id"] is None
    await go_online(b, RECONNECT_TIMEOUT_S)
    await asyncio.sleep(1.0)
    assert len(check_events(b)) == 1  # only the online session


# -- D01, D02, D08: the local authorization list, offline start ----------------------------------


def local_entry(token: str, status: str | None = "Accepted") -> dict[str, Any]:
    entry: dict[str, Any] = {"idToken": id_token(token)}
    if status is not None:
        entry["idTokenInfo"] = {"status": status}
    return entry


async def send_local_list(b: Bench, version: int, update_type: str, entries: list[dict[str, Any]]) -> str:
    payload: dict[str, Any] = {"versionNumber": version, "updateType": update_type}
    if entries:
        payload["localAuthorizationList"] = entries
    status: str = (await b.call("SendLocalList", payload))["status"]
    return status


async def list_version(b: Bench) -> int:
    version: int = (await b.call("GetLocalListVersion", {}))["versionNumber"]
    return version


@station(version="2.0.1")
async def test_d01_d02_send_local_list_full_and_differential(b: Bench) -> None:
    assert await list_version(b) == 0
    assert (
        await send_local_list(b, 1, "Full", [local_entry(TOKEN), local_entry(OTHER, "Blocked")]) == "Accepted"
    )
    assert await list_version(b) == 1
    assert await send_local_list(b, 2, "Differential", [local_entry(OTHER), local_entry(TOKEN, None)]) == (
        "Accepted"
    )
    assert await list_version(b) == 2
    assert await send_local_list(b, 2, "Differential", [local_entry(UNKNOWN)]) == "VersionMismatch"
    assert await list_version(b) == 2
    assert await send_local_list(b, 5, "Full", []) == "Accepted"
    assert await list_version(b) == 0  # empty: no list installed (D01.FR.18), as 1.6 section 5.10
    assert check_events(b) == {}


@station(version="2.0.1")
async def test_d01_fr_18_send_local_list_version_0_is_failed(b: Bench) -> None:
    """D01.FR.18: "versionNumber in a SendLocalListRequest SHALL be greater than 0. In
    GetLocalListVersionResponse the versionNumber = 0 has a special meaning: No Local List
    installed. So the value 0 should never be used." """
    assert await send_local_list(b, 0, "Full", [local_entry(TOKEN)]) == "Failed"
    assert await send_local_list(b, 0, "Differential", [local_entry(TOKEN)]) == "Failed"
    assert await list_version(b) == 0
    assert b.db("SELECT count(*) FROM local_list") == [(0,)]
    assert await send_local_list(b, 1, "Full", [local_entry(TOKEN)]) == "Accepted"
    assert await list_version(b) == 1


@station(version="2.0.1")
async def test_d02_fr_03_get_local_list_version_0_while_disabled(b: Bench) -> None:
    """D02.FR.03: with LocalAuthListCtrlr.Enabled false the version reported is 0."""
    assert await send_local_list(b, 3, "Full", [local_entry(TOKEN)]) == "Accepted"
    await set_variables(b, ("LocalAuthListCtrlr", "Enabled", "false"))
    assert await list_version(b) == 0
    await set_variables(b, ("LocalAuthListCtrlr", "Enabled", "true"))
    assert await list_version(b) == 3


@station(version="2.0.1")
async def test_e04_offline_start_from_local_list_events_delivered_after_reconnect(b: Bench) -> None:
    await set_variables(b, ("SampledDataCtrlr", "TxUpdatedInterval", "1"))
    assert await send_local_list(b, 1, "Full", [local_entry(OTHER)]) == "Accepted"
    await go_offline(b)
    await plug_and_swipe(b, OTHER)
    status = await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=10)
    tx_id = status["transaction_id"]
    assert tx_id
    await asyncio.sleep(3.5)  # periodic meter values, queued
    b.sim.unplug(1)
    await b.sim.wait_until(lambda s: s["transaction_id"] is None, timeout=10)
    mark = await go_online(b, RECONNECT_TIMEOUT_S)
    ended = await b.event("Ended", after=mark, timeout=15)
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    history = check_events(b)[tx_id]  # in order, seqNo 0.. without a gap
    kinds = [e["triggerReason"] for e in history]
    assert kinds[0] == "ChargingStateChanged" and kinds.count("MeterValuePeriodic") >= 2, kinds
    assert all(e.get("offline") is True for e in history), history
    assert history[0]["idToken"] == id_token(OTHER)
    assert since(b, "Authorize", 0, lambda p: p["idToken"]["idToken"] == OTHER) == []
    values = [energy(e) for e in history if "meterValue" in e]
    assert values == sorted(values)
    await b.eventually(lambda: outbox_empty(b), 10, "the outbox to drain")
    assert b.csms.transactions201[tx_id]["ended_count"] == 1


async def refused_offline(b: Bench, token: str) -> None:
    """Offline, ``token`` starts no transaction; back online, no TransactionEvent follows."""
    await go_offline(b)
    await plug_and_swipe(b, token)
    await asyncio.sleep(2.0)
    status = b.sim.status(1)
    assert not status["contactor_closed"] and status["transaction_id"] is None
    b.sim.unplug(1)
    await go_online(b, RECONNECT_TIMEOUT_S)
    await asyncio.sleep(1.0)
    assert check_events(b) == {}


@station(version="2.0.1")
async def test_d_offline_local_list_blocked_token_refused(b: Bench) -> None:
    assert await send_local_list(b, 1, "Full", [local_entry(OTHER, "Blocked")]) == "Accepted"
    await refused_offline(b, OTHER)


@station(version="2.0.1")
async def test_c15_offline_unknown_token_refused(b: Bench) -> None:
    await refused_offline(b, UNKNOWN)


@station(version="2.0.1")
async def test_c15_offline_tx_for_unknown_id_enabled(b: Bench) -> None:
    await set_variables(b, ("AuthCtrlr", "OfflineTxForUnknownIdEnabled", "true"))
    await go_offline(b)
    await plug_and_swipe(b, UNKNOWN)
    status = await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=10)
    tx_id = status["transaction_id"]
    b.sim.unplug(1)
    await b.sim.wait_until(lambda s: s["transaction_id"] is None, timeout=10)
    mark = await go_online(b, RECONNECT_TIMEOUT_S)
    ended = await b.event("Ended", after=mark, timeout=15)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    history = check_events(b)[tx_id]
    assert all(e.get("offline") is True for e in history)
    assert history[0]["idToken"] == id_token(UNKNOWN)


# -- E05 connection loss during a transaction, message attempts ---------------------------------


@station(version="2.0.1")
async def test_e05_connection_loss_during_transaction_events_queued_and_delivered(b: Bench) -> None:
    await set_variables(b, ("SampledDataCtrlr", "TxUpdatedInterval", "1"))
    started = await start_session(b)
    tx_id = started["transactionInfo"]["transactionId"]
    assert "offline" not in started
    await b.event("Updated", lambda p: p["triggerReason"] == "MeterValuePeriodic")
    await go_offline(b)
    received = len(events(b, tx_id))
    await asyncio.sleep(2.5)  # periodic meter values, queued
    b.sim.unplug(1)
    await b.sim.wait_until(lambda s: s["transaction_id"] is None, timeout=10)
    assert len(events(b, tx_id)) == received  # nothing got through
    mark = await go_online(b, RECONNECT_TIMEOUT_S)
    ended = await b.event("Ended", after=mark, timeout=15)
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    assert ended["offline"] is True
    history = check_events(b)[tx_id]  # delivered in order, seqNo without a gap
    queued = history[received:]
    assert len(queued) >= 3, queued
    assert all(e.get("offline") is True for e in queued), queued
    assert not any(e.get("offline") for e in history[:received]), history[:received]
    values = [energy(e) for e in history if "meterValue" in e]
    assert values == sorted(values)
    # Delivered after the BootNotification of the new connection, in seqNo order.
    after = [p["seqNo"] for p in events(b, tx_id, mark)]
    assert after == list(range(received, len(history)))
    await b.eventually(lambda: outbox_empty(b), 10, "the outbox to drain")
    assert b.csms.transactions201[tx_id]["ended_count"] == 1


@station(version="2.0.1")
async def test_e05_message_attempts_callerror_retried_then_dropped(b: Bench) -> None:
    await event_attempts(b, 2, interval_s=1)
    mark, first, tx_id = await started_refused(b, ("InternalError", "the CSMS cannot store it now"))
    await asyncio.sleep(3.0)  # one retry after 1 s, then no more
    attempts = events(b, tx_id)
    assert attempts == [first, first], attempts
    errors = [e for e in b.csms.timeline[mark:] if e.kind == "error" and e.action == "TransactionEvent"]
    assert len(errors) == 2
    await b.eventually(lambda: outbox_empty(b), 5, "the dropped event to leave the outbox")
    # The CSMS recovers: later events of the transaction are delivered and accepted.
    b.csms.set_error("TransactionEvent", None)
    mark = b.mark()
    b.sim.unplug(1)
    ended = await b.event("Ended", after=mark)
    assert reasons(ended) == ("EVCommunicationLost", "EVDisconnected")
    assert ended["seqNo"] == 1  # numbering goes on: the dropped Started kept seqNo 0
    history = check_events(b, retries=True)[tx_id]
    assert [e["eventType"] for e in history] == ["Started", "Ended"]
    assert b.csms.transactions201[tx_id]["ended_count"] == 1


@station(version="2.0.1")
async def test_e05_message_attempts_retry_succeeds(b: Bench) -> None:
    await event_attempts(b, 3, interval_s=1)
    _, started, tx_id = await started_refused(b, ("InternalError", "busy"))
    b.csms.set_error("TransactionEvent", None)
    await b.eventually(lambda: b.csms.transactions201.get(tx_id), 5, "the retried Started")
    assert events(b, tx_id) == [started, started]
    recorded = b.csms.transactions201[tx_id]
    assert recorded["started"] == started and recorded["duplicates"] == 0
    assert reasons(started) == ("ChargingStateChanged", None)
    check_events(b, retries=True)


@station(version="2.0.1")
async def test_e05_offline_started_transaction_invalid_after_reconnect_deauthorized(b: Bench) -> None:
    """Started offline from the local list; after reconnect the CSMS says the token is Invalid."""
    assert await send_local_list(b, 1, "Full", [local_entry(OTHER)]) == "Accepted"
    b.csms.auth[OTHER] = "Invalid"
    await go_offline(b)
    await plug_and_swipe(b, OTHER)
    status = await b.sim.wait_until(lambda s: s["contactor_closed"], timeout=10)
    tx_id = status["transaction_id"]
    mark = await go_online(b, RECONNECT_TIMEOUT_S)
    ended = await b.event("Ended", after=mark, timeout=15)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert reasons(ended) == ("Deauthorized", "DeAuthorized")
    assert "offline" not in ended
    await b.sim.wait_until(lambda s: s["transaction_id"] is None and not s["pwm"], timeout=5)
    history = check_events(b)[tx_id]
    assert history[0]["offline"] is True
