"""OCPP 1.6 Core profile in-process: the station's daemon, link and adapter on the virtual
clock against the development CSMS (``tests.inproc``), moved from test_ocpp16_core.py.

Each test follows one family of the OCA 1.6 compliance test cases (cold boot, regular
charging session, remote start/stop, unlock, availability, configuration, trigger message,
data transfer) or checks the OCPP-J wire rules (CALLERRORs for bad frames). What only a
process shows (boot, one whole session, the resets that re-execute it, the rig socket)
stays in test_ocpp16_core.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from hil.csms import CallErrorReply
from tests.inproc import TOKEN, Bench, assert_link_intact, station
from tests.ocpp_helpers import error_reply

# -- helpers -----------------------------------------------------------------------------


def statuses(b: Bench, connector: int, after: int = 0) -> list[str]:
    return [p["status"] for p in b.since("StatusNotification", after) if p["connectorId"] == connector]


async def configure(b: Bench, key: str, value: str) -> str:
    status: str = (await b.call("ChangeConfiguration", {"key": key, "value": value}))["status"]
    return status


async def config_value(b: Bench, key: str) -> str | None:
    reply = await b.call("GetConfiguration", {"key": [key]})
    values = {k["key"]: k.get("value") for k in reply["configurationKey"]}
    return values.get(key)


def last_csms_tx(b: Bench) -> int:
    """The CSMS's id of the transaction it opened last."""
    return max(b.csms.transactions)


# -- cold boot ---------------------------------------------------------------------------


@station(csms={"heartbeat_interval": 2}, start=False)
async def test_cold_boot_heartbeat_after_interval(b: Bench) -> None:
    await b.start()
    boot = await b.csms.wait_for("BootNotification", station="CP001")
    first = await b.csms.wait_for("Heartbeat", station="CP001", timeout=6)
    assert 1.5 <= first.t - boot.t <= 4.5, f"first Heartbeat {first.t - boot.t:.1f} s after boot"
    index = b.csms.timeline.index(first) + 1
    second = await b.csms.wait_for("Heartbeat", station="CP001", timeout=6, after=index)
    assert 1.5 <= second.t - first.t <= 4.5
    assert await config_value(b, "HeartbeatInterval") == "2"


@station(csms={"heartbeat_interval": 1, "boot_status": "Pending"}, start=False, auth_mode="free")
async def test_cold_boot_pending_then_accepted(b: Bench) -> None:
    await b.start(wait_boot=False)
    await b.wait("BootNotification")
    await b.wait("BootNotification", after=b.mark())  # retried after the interval
    # While Pending the CSMS may already read the configuration.
    assert await config_value(b, "NumberOfConnectors") == "1"
    # An EV plugs in (free mode): the transaction waits for the registration.
    b.sim.plug(1)
    await asyncio.sleep(1.5)
    assert b.calls("StatusNotification") == []
    assert b.calls("StartTransaction") == []
    assert b.calls("MeterValues") == []
    assert len(b.calls("BootNotification")) >= 2
    mark = b.mark()
    b.csms.boot_status = "Accepted"
    await b.wait("BootNotification", after=mark, timeout=15)
    await b.wait("StatusNotification", lambda p: p["connectorId"] == 1, after=mark)
    start = await b.wait("StartTransaction", after=mark)
    assert start["idTag"] == "FREE" and start["connectorId"] == 1


@station(csms={"heartbeat_interval": 1, "boot_status": "Rejected"}, start=False, auth_mode="free")
async def test_cold_boot_rejected_then_accepted(b: Bench) -> None:
    await b.start(wait_boot=False)
    await b.wait("BootNotification")
    await b.wait("BootNotification", after=b.mark())
    b.sim.plug(1)
    await asyncio.sleep(1.5)
    for action in ("StatusNotification", "StartTransaction", "Heartbeat", "MeterValues", "Authorize"):
        assert b.calls(action) == [], f"{action} sent while Rejected"
    mark = b.mark()
    b.csms.boot_status = "Accepted"
    await b.wait("BootNotification", after=mark, timeout=15)
    await b.wait("StatusNotification", lambda p: p["connectorId"] == 1, after=mark)
    await b.wait("StartTransaction", after=mark)


# -- regular charging session ------------------------------------------------------------


@station()
async def test_regular_charging_session_identification_first(b: Bench) -> None:
    mark = b.mark()
    b.sim.swipe(TOKEN)
    await b.wait("Authorize", after=mark)
    assert b.since("StartTransaction", mark) == []
    b.sim.plug(1)
    start = await b.wait("StartTransaction", after=mark)
    assert start["idTag"] == TOKEN and start["connectorId"] == 1
    b.sim.charge(1, max_current_a=16)
    await b.status(1, "Charging", after=mark)
    stop_mark = b.mark()
    b.sim.unplug(1)
    stop = await b.wait("StopTransaction", after=stop_mark)
    assert stop["reason"] == "EVDisconnected"
    assert stop["meterStop"] >= start["meterStart"]


@station()
async def test_regular_charging_session_stopped_with_same_token(b: Bench) -> None:
    start = await b.charge()
    tx_id = last_csms_tx(b)
    mark = b.mark()
    b.sim.swipe(TOKEN)
    stop = await b.wait("StopTransaction", after=mark)
    assert stop["transactionId"] == tx_id
    assert stop["reason"] == "Local"
    assert stop["idTag"] == TOKEN
    assert stop["meterStop"] >= start["meterStart"]
    await b.status(1, "Finishing", after=mark)
    await b.sim.wait_until(lambda s: not s["pwm"] and s["offered_a"] == 0, timeout=15)  # no energy offered
    unplug = b.mark()
    b.sim.unplug(1)
    await b.status(1, "Available", after=unplug)
    assert len(b.calls("StopTransaction")) == 1


@station()
async def test_regular_charging_session_no_suspended_status_before_start_transaction(b: Bench) -> None:
    mark = b.mark()
    b.sim.plug(1)
    await b.status(1, "Preparing", after=mark)
    b.sim.swipe(TOKEN)
    await b.wait("StartTransaction", after=mark)
    before_start: list[str] = []
    for e in b.csms.timeline[mark:]:
        if e.direction == "in" and e.kind == "call" and e.action == "StartTransaction":
            break
        if e.direction == "in" and e.kind == "call" and e.action == "StatusNotification":
            before_start.append(e.payload["status"])  # type: ignore[index]
    # The CSMS knows of no transaction yet: the connector is still Preparing.
    assert before_start == ["Preparing"]


# -- EV side disconnect --------------------------------------------------------------------


@station()
async def test_ev_side_disconnect_while_charging(b: Bench) -> None:
    # The station always ends a transaction when the EV goes: only "true" is accepted.
    assert await configure(b, "StopTransactionOnEVSideDisconnect", "false") == "Rejected"
    assert await config_value(b, "StopTransactionOnEVSideDisconnect") == "true"
    start = await b.charge()
    mark = b.mark()
    b.sim.suspend(1)  # the EV pauses first: the transaction goes on
    await b.status(1, "SuspendedEV", after=mark)
    assert b.sim.status(1)["transaction_id"] is not None
    resume = b.mark()
    b.sim.charge(1, max_current_a=16)
    await b.status(1, "Charging", after=resume)
    assert b.since("StopTransaction", mark) == []
    b.sim.unplug(1)  # then the cable is pulled at the EV side while charging
    state = await b.sim.wait_until(lambda s: not s["contactor_closed"], timeout=15)
    assert state["cp_state"] == "A"
    stop = await b.wait("StopTransaction", after=mark)
    assert stop["reason"] == "EVDisconnected"
    assert stop["meterStop"] >= start["meterStart"]
    assert "idTag" not in stop
    await b.status(1, "Available", after=mark)


# -- remote start / stop -------------------------------------------------------------------


@station()
async def test_remote_start_then_plug_in(b: Bench) -> None:
    mark = b.mark()
    reply = await b.call("RemoteStartTransaction", {"connectorId": 1, "idTag": TOKEN})
    assert reply == {"status": "Accepted"}
    await b.status(1, "Preparing", after=mark)
    assert b.since("StartTransaction", mark) == []
    b.sim.plug(1)
    start = await b.wait("StartTransaction", after=mark)
    assert start["idTag"] == TOKEN and start["connectorId"] == 1
    b.sim.charge(1, max_current_a=16)
    await b.status(1, "Charging", after=mark)


@station()
async def test_remote_start_ev_already_plugged_in(b: Bench) -> None:
    mark = b.mark()
    b.sim.plug(1)
    await b.status(1, "Preparing", after=mark)
    reply = await b.call("RemoteStartTransaction", {"connectorId": 1, "idTag": TOKEN})
    assert reply == {"status": "Accepted"}
    start = await b.wait("StartTransaction", after=mark)
    assert start["idTag"] == TOKEN and start["connectorId"] == 1
    # The station decides without asking the CSMS (AuthorizeRemoteTxRequests is false).
    assert b.since("Authorize", mark) == []
    b.sim.charge(1, max_current_a=16)
    await b.status(1, "Charging", after=mark)


@station()
async def test_remote_start_timeout(b: Bench) -> None:
    assert await configure(b, "ConnectionTimeOut", "2") == "Accepted"
    mark = b.mark()
    assert (await b.call("RemoteStartTransaction", {"connectorId": 1, "idTag": TOKEN}))[
        "status"
    ] == "Accepted"
    await b.status(1, "Preparing", after=mark)
    await b.status(1, "Available", after=b.mark(), timeout=15)
    # The authorization has lapsed: an EV plugged in now does not start a transaction.
    late = b.mark()
    b.sim.plug(1)
    await b.status(1, "Preparing", after=late)
    await b.quiet_for("StartTransaction", mark, 1.0)


@station()
async def test_remote_start_rejected_on_connector_0_unknown_or_occupied(b: Bench) -> None:
    mark = b.mark()
    assert (await b.call("RemoteStartTransaction", {"connectorId": 0, "idTag": TOKEN}))[
        "status"
    ] == "Rejected"
    assert (await b.call("RemoteStartTransaction", {"connectorId": 2, "idTag": TOKEN}))[
        "status"
    ] == "Rejected"
    b.sim.plug(1)
    await b.status(1, "Preparing", after=mark)
    await b.quiet_for("StartTransaction", mark, 1.0)
    # An occupied connector cannot take a second session either.
    b.sim.swipe(TOKEN)
    await b.wait("StartTransaction", after=mark)
    assert (await b.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "OTHER"}))[
        "status"
    ] == "Rejected"


@station()
async def test_remote_start_authorize_remote_tx_requests(b: Bench) -> None:
    assert await configure(b, "AuthorizeRemoteTxRequests", "true") == "Accepted"
    mark = b.mark()
    b.sim.plug(1)
    await b.status(1, "Preparing", after=mark)
    assert (await b.call("RemoteStartTransaction", {"connectorId": 1, "idTag": TOKEN}))[
        "status"
    ] == "Accepted"
    await b.wait("StartTransaction", after=mark)
    calls = [
        e
        for e in b.csms.timeline[mark:]
        if e.kind == "call" and e.direction == "in" and e.action in ("Authorize", "StartTransaction")
    ]
    assert [e.action for e in calls] == ["Authorize", "StartTransaction"]
    assert calls[0].payload == {"idTag": TOKEN}


@station()
async def test_remote_start_authorize_remote_tx_requests_invalid_tag(b: Bench) -> None:
    assert await configure(b, "AuthorizeRemoteTxRequests", "true") == "Accepted"
    b.csms.auth["BADTAG"] = "Invalid"
    mark = b.mark()
    b.sim.plug(1)
    await b.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "BADTAG"})
    await b.wait("Authorize", lambda p: p["idTag"] == "BADTAG", after=mark)
    await b.quiet_for("StartTransaction", mark, 1.0)


@station()
async def test_remote_stop_transaction(b: Bench) -> None:
    start = await b.charge()
    tx_id = last_csms_tx(b)
    mark = b.mark()
    assert await b.call("RemoteStopTransaction", {"transactionId": tx_id}) == {"status": "Accepted"}
    stop = await b.wait("StopTransaction", after=mark)
    assert stop["transactionId"] == tx_id
    assert stop["reason"] == "Remote"
    assert stop["meterStop"] >= start["meterStart"]
    await b.sim.wait_until(lambda s: not s["pwm"] and s["offered_a"] == 0, timeout=15)  # no energy offered
    await b.status(1, "Finishing", after=mark)
    unplug = b.mark()
    b.sim.unplug(1)
    await b.status(1, "Available", after=unplug)


@station()
async def test_remote_stop_unknown_transaction_rejected(b: Bench) -> None:
    await b.charge()
    tx_id = last_csms_tx(b)
    mark = b.mark()
    assert await b.call("RemoteStopTransaction", {"transactionId": tx_id + 1000}) == {"status": "Rejected"}
    await b.quiet_for("StopTransaction", mark, 0.5)
    assert b.sim.status(1)["contactor_closed"]


# -- reset ---------------------------------------------------------------------------------


# -- unlock connector ----------------------------------------------------------------------


@station()
async def test_tc_017_2_unlock_connector_no_lock_fitted(b: Bench) -> None:
    """TC_017_2_CS (fixed cable): UnlockConnector.conf NotSupported."""
    assert await b.call("UnlockConnector", {"connectorId": 1}) == {"status": "NotSupported"}
    assert await b.call("UnlockConnector", {"connectorId": 2}) == {"status": "NotSupported"}


@station()
async def test_tc_018_2_unlock_connector_no_lock_fitted_with_charging_session(b: Bench) -> None:
    """TC_018_2_CS (fixed cable, charging session): NotSupported, and the session goes on."""
    await b.charge()
    mark = b.mark()
    assert await b.call("UnlockConnector", {"connectorId": 1}) == {"status": "NotSupported"}
    await b.quiet_for("StopTransaction", mark, 1.0)
    assert b.sim.status(1)["contactor_closed"]


async def change_availability(b: Bench, connector: int, kind: str) -> dict[str, Any]:
    """ChangeAvailability of ``connector`` (0: the station) to ``kind``; returns the reply."""
    return await b.call("ChangeAvailability", {"connectorId": connector, "type": kind})


def lock_engaged(b: Bench) -> bool:
    """Where the simulated connector lock physically is."""
    engaged = b.sim.timing(1)["lock_engaged"]
    assert isinstance(engaged, bool), "no simulated lock on EVSE 1"
    return engaged


@station(lock="sim")
async def test_tc_017_1_unlock_connector_no_charging_session(b: Bench) -> None:
    """TC_017_1_CS: EV plugged in (Preparing), no transaction: Unlocked, and the lock really
    released. "The response PDU SHALL indicate whether the Charge Point was able to unlock
    its connector." (1.6 section 5.18)"""
    mark = b.mark()
    b.sim.plug(1)
    await b.status(1, "Preparing", after=mark)
    await b.eventually(lambda: lock_engaged(b), what="the lock engages with the EV connected")
    assert await b.call("UnlockConnector", {"connectorId": 1}) == {"status": "Unlocked"}
    assert not lock_engaged(b)
    await asyncio.sleep(0.5)
    assert not lock_engaged(b), "the lock engaged again with the EV still connected"
    assert b.sim.status(1)["connector_status"] == "Preparing"
    # The EV leaves and the next one is locked in as before.
    b.sim.unplug(1)
    await b.status(1, "Available", after=mark)
    b.sim.plug(1)
    await b.eventually(lambda: lock_engaged(b), what="the lock engages for the next EV")
    # No EV at all: nothing holds the lock.
    b.sim.unplug(1)
    assert await b.call("UnlockConnector", {"connectorId": 1}) == {"status": "Unlocked"}


@station(lock="sim")
async def test_tc_018_1_unlock_connector_with_charging_session(b: Bench) -> None:
    """TC_018_1_CS: "If there was a transaction in progress on the specific connector, then
    Charge Point SHALL finish the transaction first": StopTransaction with reason
    UnlockCommand, then Unlocked once the contactor opened and the lock released (the
    simulated EV keeps requesting: the contactor opens after the 6 s PWM-off grace)."""
    start = await b.charge()
    tx_id = last_csms_tx(b)
    assert lock_engaged(b)
    mark = b.mark()
    assert await b.call("UnlockConnector", {"connectorId": 1}, timeout=30) == {"status": "Unlocked"}
    assert not lock_engaged(b)
    assert not b.sim.status(1)["contactor_closed"]
    stop = await b.wait("StopTransaction", after=mark)
    assert stop["transactionId"] == tx_id
    assert stop["reason"] == "UnlockCommand"
    assert stop["meterStop"] >= start["meterStart"]
    await b.status(1, "Finishing", after=mark)
    await b.sim.wait_until(lambda s: not s["pwm"] and s["offered_a"] == 0, timeout=15)


@station(lock="sim")
async def test_unlock_connector_jammed_lock_fails(b: Bench) -> None:
    """A lock that does not move: UnlockFailed, the answer coming from its feedback. Freed,
    it follows the release the supervisor still commands, and a new request succeeds."""
    b.sim.plug(1)
    await b.eventually(lambda: lock_engaged(b), what="the lock engages with the EV connected")
    b.sim.fault("lock_jam")
    assert await b.call("UnlockConnector", {"connectorId": 1}) == {"status": "UnlockFailed"}
    assert lock_engaged(b)
    b.sim.fault("lock_jam", active=False)
    assert await b.call("UnlockConnector", {"connectorId": 1}) == {"status": "Unlocked"}
    assert not lock_engaged(b)


# -- change availability -------------------------------------------------------------------


@station()
async def test_change_availability_idle_inoperative_then_operative(b: Bench) -> None:
    mark = b.mark()
    reply = await change_availability(b, 1, "Inoperative")
    assert reply == {"status": "Accepted"}
    await b.status(1, "Unavailable", after=mark)
    with pytest.raises(CallErrorReply) as error:
        await change_availability(b, 2, "Inoperative")
    assert error.value.code == "PropertyConstraintViolation"  # no connector 2
    # Unavailable: no session starts.
    assert (await b.call("RemoteStartTransaction", {"connectorId": 1, "idTag": TOKEN}))[
        "status"
    ] == "Rejected"
    b.sim.plug(1)
    await b.quiet_for("StartTransaction", mark, 1.0)
    assert b.sim.status(1)["connector_status"] == "Unavailable"
    back = b.mark()
    assert await change_availability(b, 1, "Operative") == {"status": "Accepted"}
    await b.status(1, "Preparing", after=back)
    unplug = b.mark()
    b.sim.unplug(1)
    await b.status(1, "Available", after=unplug)


@station()
async def test_change_availability_during_transaction_scheduled(b: Bench) -> None:
    await b.charge()
    mark = b.mark()
    reply = await change_availability(b, 1, "Inoperative")
    assert reply == {"status": "Scheduled"}
    await asyncio.sleep(1.0)
    assert b.since("StopTransaction", mark) == []
    state = b.sim.status(1)
    assert state["contactor_closed"] and state["connector_status"] == "Charging"
    assert "Unavailable" not in statuses(b, 1, mark)
    unplug = b.mark()
    b.sim.unplug(1)
    stop = await b.wait("StopTransaction", after=unplug)
    assert stop["reason"] == "EVDisconnected"
    await b.status(1, "Unavailable", after=unplug)
    # §5.2: the change happens once the transaction has finished, with no Available between.
    assert statuses(b, 1, unplug) == ["Unavailable"]
    back = b.mark()
    assert await change_availability(b, 1, "Operative") == {"status": "Accepted"}
    await b.status(1, "Available", after=back)


@station()
async def test_change_availability_connector_0(b: Bench) -> None:
    mark = b.mark()
    assert await change_availability(b, 0, "Inoperative") == {"status": "Accepted"}
    await b.status(1, "Unavailable", after=mark)
    back = b.mark()
    assert await change_availability(b, 0, "Operative") == {"status": "Accepted"}
    await b.status(1, "Available", after=back)


@station()
async def test_change_availability_connector_0_reports_station_unavailable(b: Bench) -> None:
    mark = b.mark()
    reply = await change_availability(b, 0, "Inoperative")
    assert reply == {"status": "Accepted"}
    await b.status(1, "Unavailable", after=mark)
    await b.status(0, "Unavailable", after=mark, timeout=15)


@station()
async def test_change_availability_persists_across_restart(b: Bench) -> None:
    mark = b.mark()
    assert await change_availability(b, 1, "Inoperative") == {"status": "Accepted"}
    await b.status(1, "Unavailable", after=mark)
    assert await b.stop() == 0
    restart = b.mark()
    await b.start()
    await b.status(1, "Unavailable", after=restart)
    assert "Available" not in statuses(b, 1, restart)
    assert b.sim.status(1)["connector_status"] == "Unavailable"


# -- configuration keys --------------------------------------------------------------------

CORE_KEYS = (
    "AuthorizeRemoteTxRequests",
    "ClockAlignedDataInterval",
    "ConnectionTimeOut",
    "ConnectorPhaseRotation",
    "GetConfigurationMaxKeys",
    "HeartbeatInterval",
    "LocalAuthorizeOffline",
    "LocalPreAuthorize",
    "MeterValuesAlignedData",
    "MeterValuesSampledData",
    "MeterValueSampleInterval",
    "NumberOfConnectors",
    "ResetRetries",
    "StopTransactionOnEVSideDisconnect",
    "StopTransactionOnInvalidId",
    "StopTxnAlignedData",
    "StopTxnSampledData",
    "SupportedFeatureProfiles",
    "TransactionMessageAttempts",
    "TransactionMessageRetryInterval",
    "UnlockConnectorOnEVSideDisconnect",
    "WebSocketPingInterval",
)


@station()
async def test_get_configuration_all_keys(b: Bench) -> None:
    reply = await b.call("GetConfiguration", {})
    assert "unknownKey" not in reply or reply["unknownKey"] == []
    keys = {k["key"]: k for k in reply["configurationKey"]}
    missing = [k for k in CORE_KEYS if k not in keys]
    assert missing == []
    for name in ("NumberOfConnectors", "GetConfigurationMaxKeys", "SupportedFeatureProfiles"):
        assert keys[name]["readonly"] is True, name
    for name in ("HeartbeatInterval", "ConnectionTimeOut", "MeterValueSampleInterval"):
        assert keys[name]["readonly"] is False, name
    assert keys["NumberOfConnectors"]["value"] == "1"
    assert keys["HeartbeatInterval"]["value"] == "300"  # from the BootNotification answer
    assert "Core" in keys["SupportedFeatureProfiles"]["value"].split(",")
    assert "Energy.Active.Import.Register" in keys["MeterValuesSampledData"]["value"]


@station()
async def test_get_configuration_specific_and_unknown_key(b: Bench) -> None:
    reply = await b.call(
        "GetConfiguration", {"key": ["ConnectionTimeOut", "NoSuchKey", "NumberOfConnectors"]}
    )
    known = {k["key"]: k for k in reply["configurationKey"]}
    assert set(known) == {"ConnectionTimeOut", "NumberOfConnectors"}
    assert known["ConnectionTimeOut"] == {"key": "ConnectionTimeOut", "readonly": False, "value": "60"}
    assert reply["unknownKey"] == ["NoSuchKey"]


@station()
async def test_change_configuration_statuses(b: Bench) -> None:
    assert await configure(b, "NoSuchKey", "1") == "NotSupported"
    assert await configure(b, "NumberOfConnectors", "4") == "Rejected"
    assert await config_value(b, "NumberOfConnectors") == "1"
    assert await configure(b, "ConnectionTimeOut", "abc") == "Rejected"
    assert await config_value(b, "ConnectionTimeOut") == "60"
    assert await configure(b, "AuthorizeRemoteTxRequests", "maybe") == "Rejected"
    assert await configure(b, "WebSocketPingInterval", "20") == "RebootRequired"
    assert await config_value(b, "WebSocketPingInterval") == "20"
    assert await configure(b, "ConnectionTimeOut", "45") == "Accepted"
    assert await config_value(b, "ConnectionTimeOut") == "45"
    # Booleans are case-insensitive on the wire.
    assert await configure(b, "LocalPreAuthorize", "TRUE") == "Accepted"
    assert await config_value(b, "LocalPreAuthorize") == "true"


@station()
async def test_change_configuration_persists_across_restart(b: Bench) -> None:
    assert await configure(b, "MeterValueSampleInterval", "7") == "Accepted"
    assert await configure(b, "ConnectionTimeOut", "33") == "Accepted"
    assert await b.stop() == 0
    await b.start()
    assert await config_value(b, "MeterValueSampleInterval") == "7"
    assert await config_value(b, "ConnectionTimeOut") == "33"


@station()
async def test_change_configuration_heartbeat_interval_takes_effect(b: Bench) -> None:
    mark = b.mark()
    assert await configure(b, "HeartbeatInterval", "1") == "Accepted"
    await b.wait("Heartbeat", after=mark, timeout=15)


# -- trigger message -----------------------------------------------------------------------

TRIGGERED = {
    "BootNotification": lambda p: p["chargePointSerialNumber"] == "SIM-0001",
    "Heartbeat": lambda p: p == {},
    "StatusNotification": lambda p: p["connectorId"] == 1 and p["status"] == "Available",
    "MeterValues": lambda p: p["connectorId"] == 1 and "transactionId" not in p,
    "FirmwareStatusNotification": lambda p: p["status"] == "Idle",
    "DiagnosticsStatusNotification": lambda p: p["status"] == "Idle",
}


@pytest.mark.parametrize("message", list(TRIGGERED))
@station()
async def test_trigger_message(b: Bench, message: str) -> None:
    payload: dict[str, Any] = {"requestedMessage": message}
    if message in ("StatusNotification", "MeterValues"):
        payload["connectorId"] = 1
    mark = b.mark()
    assert await b.call("TriggerMessage", payload) == {"status": "Accepted"}
    sent = await b.wait(message, after=mark, timeout=15)
    assert TRIGGERED[message](sent), sent
    if message == "MeterValues":
        sampled = sent["meterValue"][0]["sampledValue"]
        assert all(s["context"] == "Trigger" for s in sampled)


@station()
async def test_trigger_message_meter_values_during_transaction(b: Bench) -> None:
    await b.charge()
    tx_id = last_csms_tx(b)
    mark = b.mark()
    reply = await b.call("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1})
    assert reply == {"status": "Accepted"}
    sent = await b.wait(
        "MeterValues", lambda p: p["meterValue"][0]["sampledValue"][0]["context"] == "Trigger", after=mark
    )
    assert sent["transactionId"] == tx_id


@station()
async def test_trigger_message_unknown_connector_rejected(b: Bench) -> None:
    mark = b.mark()
    reply = await b.call("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 2})
    assert reply == {"status": "Rejected"}
    await b.quiet_for("StatusNotification", mark, 0.5)


# -- data transfer -------------------------------------------------------------------------


@station()
async def test_data_transfer_unknown_vendor(b: Bench) -> None:
    reply = await b.call("DataTransfer", {"vendorId": "com.example.nobody", "messageId": "x", "data": "y"})
    assert reply["status"] == "UnknownVendorId"


# -- OCPP-J wire ---------------------------------------------------------------------------

BAD_FRAMES = [
    ([2, "id1", "Reset", {"type": "Sideways"}], "PropertyConstraintViolation"),
    ([2, "id2", "Reset", {}], "OccurenceConstraintViolation"),
    ([2, "id3", "Reset", {"type": 5}], "TypeConstraintViolation"),
    ([2, "id4", "NoSuchAction", {}], "NotImplemented"),
    ([9, "id5", {}], "ProtocolError"),
    ([2, "id6", "Reset", {"type": "Soft", "extra": 1}], "FormationViolation"),
    # OCPP-J 1.6 4.2.3: NotSupported = "Requested Action is recognized but not supported by
    # the receiver"; NotImplemented (id4) = "Requested Action is not known by receiver".
    ([2, "id7", "Heartbeat", {}], "NotSupported"),
    (
        [2, "id8", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}],
        "NotSupported",
    ),
]


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES, ids=[c for _, c in BAD_FRAMES])
@station()
async def test_strict_wire_call_error(b: Bench, frame: list[Any], code: str) -> None:
    unique_id = frame[1]
    await b.send_raw(json.dumps(frame))
    entry = await b.eventually(
        lambda: error_reply(b, unique_id), timeout=15, what=f"CALLERROR for {unique_id}"
    )
    assert isinstance(entry.payload, dict)
    assert entry.payload["code"] == code, entry.payload
    assert isinstance(entry.payload["description"], str)
    assert isinstance(entry.payload["details"], dict)
    await assert_link_intact(b, 15)


@station()
async def test_strict_wire_not_json(b: Bench) -> None:
    mark = b.mark()
    await b.send_raw("not json")
    await asyncio.sleep(0.5)
    replies = [e for e in b.csms.timeline[mark:] if e.direction == "in" and e.kind in ("error", "raw")]
    # OCPP-J 1.6: without a readable unique id there is nothing to answer; if anything
    # comes back it must be a well-formed CALLERROR.
    for entry in replies:
        assert entry.kind == "error", entry
    await assert_link_intact(b, 15)
