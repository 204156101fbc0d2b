"""OCPP 1.6 Core profile end to end: the daemon as a subprocess on simulated hardware,
against the development CSMS on a real websocket.

Each test follows one family of the OCA 1.6 compliance test cases (cold boot, regular
charging session, remote start/stop, reset, unlock, availability, configuration, trigger
message, data transfer) or checks the OCPP-J wire rules (CALLERRORs for bad frames).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hil.csms import CallErrorReply, CsmsThread, Entry, describe
from hil.simrig import SimRig

# The fixtures `bench` and `csms` come from tests/conftest.py (tests.ocpp_harness).
from tests.ocpp_harness import TOKEN, Bench, eventually, make_bench

# -- helpers -----------------------------------------------------------------------------


def since(
    bench: Bench, action: str, after: int, where: Callable[[dict[str, Any]], bool] | None = None
) -> list[dict[str, Any]]:
    """Payloads of the station's CALLs of ``action`` at timeline index ``after`` or later."""
    return [
        e.payload
        for e in bench.csms.timeline[after:]
        if e.kind == "call"
        and e.direction == "in"
        and e.action == action
        and isinstance(e.payload, dict)
        and (where is None or where(e.payload))
    ]


def statuses(bench: Bench, connector: int, after: int = 0) -> list[str]:
    return [p["status"] for p in since(bench, "StatusNotification", after) if p["connectorId"] == connector]


def configure(bench: Bench, key: str, value: str) -> str:
    status: str = bench.call("ChangeConfiguration", {"key": key, "value": value})["status"]
    return status


def config_value(bench: Bench, key: str) -> str | None:
    reply = bench.call("GetConfiguration", {"key": [key]})
    values = {k["key"]: k.get("value") for k in reply["configurationKey"]}
    return values.get(key)


def last_csms_tx(bench: Bench) -> int:
    """The CSMS's id of the transaction it opened last."""
    return max(bench.csms.transactions)


def reconnect_rig(bench: Bench) -> None:
    """After a reset the daemon re-executed itself: connect to its new rig socket."""
    if bench.rig is not None:
        bench.rig.close()
    bench.rig = SimRig.wait_for(bench.dir / "var" / "sim.sock")


def quiet_for(bench: Bench, action: str, after: int, seconds: float) -> None:
    """Assert the station sends no ``action`` for ``seconds``."""
    time.sleep(seconds)
    assert since(bench, action, after) == [], f"unexpected {action}"


def started(tmp_path: Path, csms: CsmsThread, **config: Any) -> Bench:
    running = make_bench(tmp_path, csms, **config)
    running.start()
    return running


@pytest.fixture(autouse=True)
def show_timeline_on_failure(csms: CsmsThread, tmp_path: Path) -> Any:
    """Print the CSMS timeline and the daemon log's tail; pytest shows them when a test fails."""
    yield
    print("\n".join(f"{e.t:10.3f} {describe(e)}" for e in csms.timeline))
    log = tmp_path / "daemon.log"
    if log.exists():
        print("--- daemon.log (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-60:]))


@pytest.fixture
def benches() -> Any:
    """Benches a test starts itself; killed at the end."""
    made: list[Bench] = []
    yield made
    for b in made:
        if b.proc is not None and b.proc.poll() is None:
            b.kill()


# -- cold boot ---------------------------------------------------------------------------


def test_cold_boot_boot_notification_and_statuses(tmp_path: Path, csms: CsmsThread, benches: Any) -> None:
    csms.csms.heartbeat_interval = 2
    b = make_bench(tmp_path, csms)
    benches.append(b)
    b.start()
    boots = b.calls("BootNotification")
    assert len(boots) == 1
    boot = boots[0]
    assert boot["chargePointVendor"] == "Generic"
    assert boot["chargePointModel"] == "PiCharger-Sim"
    assert boot["chargePointSerialNumber"] == "SIM-0001"
    assert isinstance(boot.get("firmwareVersion"), str) and boot["firmwareVersion"]
    b.status(0, "Available")
    b.status(1, "Available")
    # Nothing but the BootNotification comes before the boot is accepted.
    timeline = b.csms.timeline
    first_call = next(e for e in timeline if e.kind == "call" and e.direction == "in")
    assert first_call.action == "BootNotification"


def test_cold_boot_heartbeat_after_interval(tmp_path: Path, csms: CsmsThread, benches: Any) -> None:
    csms.csms.heartbeat_interval = 2
    b = make_bench(tmp_path, csms)
    benches.append(b)
    b.start()
    boot = csms.wait_for("BootNotification", station="CP001")
    first = csms.wait_for("Heartbeat", station="CP001", timeout=6)
    assert 1.5 <= first.t - boot.t <= 4.5, f"first Heartbeat {first.t - boot.t:.1f} s after boot"
    index = csms.timeline.index(first) + 1
    second = csms.wait_for("Heartbeat", station="CP001", timeout=6, after=index)
    assert 1.5 <= second.t - first.t <= 4.5
    assert config_value(b, "HeartbeatInterval") == "2"


def test_cold_boot_pending_then_accepted(tmp_path: Path, csms: CsmsThread, benches: Any) -> None:
    csms.csms.heartbeat_interval = 1
    csms.set_boot_status("Pending")
    b = make_bench(tmp_path, csms, auth_mode="free")
    benches.append(b)
    b.start(wait_boot=False)
    b.wait("BootNotification")
    b.wait("BootNotification", after=b.mark())  # retried after the interval
    # While Pending the CSMS may already read the configuration.
    assert config_value(b, "NumberOfConnectors") == "1"
    # An EV plugs in (free mode): the transaction waits for the registration.
    b.sim().plug(1)
    time.sleep(1.5)
    assert b.calls("StatusNotification") == []
    assert b.calls("StartTransaction") == []
    assert b.calls("MeterValues") == []
    assert len(b.calls("BootNotification")) >= 2
    mark = b.mark()
    csms.set_boot_status("Accepted")
    b.wait("BootNotification", after=mark, timeout=15)
    b.wait("StatusNotification", lambda p: p["connectorId"] == 1, after=mark)
    start = b.wait("StartTransaction", after=mark)
    assert start["idTag"] == "FREE" and start["connectorId"] == 1


def test_cold_boot_rejected_then_accepted(tmp_path: Path, csms: CsmsThread, benches: Any) -> None:
    csms.csms.heartbeat_interval = 1
    csms.set_boot_status("Rejected")
    b = make_bench(tmp_path, csms, auth_mode="free")
    benches.append(b)
    b.start(wait_boot=False)
    b.wait("BootNotification")
    b.wait("BootNotification", after=b.mark())
    b.sim().plug(1)
    time.sleep(1.5)
    for action in ("StatusNotification", "StartTransaction", "Heartbeat", "MeterValues", "Authorize"):
        assert b.calls(action) == [], f"{action} sent while Rejected"
    mark = b.mark()
    csms.set_boot_status("Accepted")
    b.wait("BootNotification", after=mark, timeout=15)
    b.wait("StatusNotification", lambda p: p["connectorId"] == 1, after=mark)
    b.wait("StartTransaction", after=mark)


# -- regular charging session ------------------------------------------------------------


def test_regular_charging_session_plug_in_first(bench: Bench) -> None:
    assert configure(bench, "MeterValueSampleInterval", "1") == "Accepted"
    mark = bench.mark()
    bench.sim().plug(1)
    bench.status(1, "Preparing", after=mark)
    bench.sim().swipe(TOKEN)
    auth = bench.wait("Authorize", after=mark)
    assert auth["idTag"] == TOKEN
    start = bench.wait("StartTransaction", after=mark)
    assert start["connectorId"] == 1
    assert start["idTag"] == TOKEN
    assert isinstance(start["meterStart"], int) and start["meterStart"] >= 0
    bench.sim().charge(1, max_current_a=16)
    bench.status(1, "Charging", after=mark)
    tx_id = last_csms_tx(bench)
    # CONTRACTS section 3: in 1.6 the rig shows the CSMS's transaction id once it is known.
    eventually(lambda: bench.sim().status(1)["transaction_id"] == str(tx_id), timeout=15, what="CSMS id")
    values = bench.wait("MeterValues", lambda p: p.get("transactionId") == tx_id, after=mark, timeout=15)
    assert values["connectorId"] == 1
    sampled = values["meterValue"][0]["sampledValue"]
    assert any(
        s.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"
        for s in sampled
    )
    seen = statuses(bench, 1, mark)
    assert seen.index("Preparing") < seen.index("Charging")
    stop_mark = bench.mark()
    bench.sim().unplug(1)
    stop = bench.wait("StopTransaction", after=stop_mark)
    assert stop["transactionId"] == tx_id
    assert stop["reason"] == "EVDisconnected"
    assert stop["meterStop"] >= start["meterStart"]
    bench.status(1, "Available", after=stop_mark)
    assert bench.sim().status(1)["transaction_id"] is None


def test_regular_charging_session_identification_first(bench: Bench) -> None:
    mark = bench.mark()
    bench.sim().swipe(TOKEN)
    bench.wait("Authorize", after=mark)
    assert since(bench, "StartTransaction", mark) == []
    bench.sim().plug(1)
    start = bench.wait("StartTransaction", after=mark)
    assert start["idTag"] == TOKEN and start["connectorId"] == 1
    bench.sim().charge(1, max_current_a=16)
    bench.status(1, "Charging", after=mark)
    stop_mark = bench.mark()
    bench.sim().unplug(1)
    stop = bench.wait("StopTransaction", after=stop_mark)
    assert stop["reason"] == "EVDisconnected"
    assert stop["meterStop"] >= start["meterStart"]


def test_regular_charging_session_stopped_with_same_token(bench: Bench) -> None:
    start = bench.charge()
    tx_id = last_csms_tx(bench)
    mark = bench.mark()
    bench.sim().swipe(TOKEN)
    stop = bench.wait("StopTransaction", after=mark)
    assert stop["transactionId"] == tx_id
    assert stop["reason"] == "Local"
    assert stop["idTag"] == TOKEN
    assert stop["meterStop"] >= start["meterStart"]
    bench.status(1, "Finishing", after=mark)
    bench.sim().wait_until(lambda s: not s["pwm"] and s["offered_a"] == 0, timeout=15)  # no energy offered
    unplug = bench.mark()
    bench.sim().unplug(1)
    bench.status(1, "Available", after=unplug)
    assert len(bench.calls("StopTransaction")) == 1


def test_regular_charging_session_no_suspended_status_before_start_transaction(bench: Bench) -> None:
    mark = bench.mark()
    bench.sim().plug(1)
    bench.status(1, "Preparing", after=mark)
    bench.sim().swipe(TOKEN)
    bench.wait("StartTransaction", after=mark)
    before_start: list[str] = []
    for e in bench.csms.timeline[mark:]:
        if e.direction == "in" and e.kind == "call" and e.action == "StartTransaction":
            break
        if e.direction == "in" and e.kind == "call" and e.action == "StatusNotification":
            before_start.append(e.payload["status"])  # type: ignore[index]
    # The CSMS knows of no transaction yet: the connector is still Preparing.
    assert before_start == ["Preparing"]


# -- EV side disconnect --------------------------------------------------------------------


def test_ev_side_disconnect_while_charging(bench: Bench) -> None:
    # The station always ends a transaction when the EV goes: only "true" is accepted.
    assert configure(bench, "StopTransactionOnEVSideDisconnect", "false") == "Rejected"
    assert config_value(bench, "StopTransactionOnEVSideDisconnect") == "true"
    start = bench.charge()
    mark = bench.mark()
    bench.sim().suspend(1)  # the EV pauses first: the transaction goes on
    bench.status(1, "SuspendedEV", after=mark)
    assert bench.sim().status(1)["transaction_id"] is not None
    resume = bench.mark()
    bench.sim().charge(1, max_current_a=16)
    bench.status(1, "Charging", after=resume)
    assert since(bench, "StopTransaction", mark) == []
    bench.sim().unplug(1)  # then the cable is pulled at the EV side while charging
    state = bench.sim().wait_until(lambda s: not s["contactor_closed"], timeout=15)
    assert state["cp_state"] == "A"
    stop = bench.wait("StopTransaction", after=mark)
    assert stop["reason"] == "EVDisconnected"
    assert stop["meterStop"] >= start["meterStart"]
    assert "idTag" not in stop
    bench.status(1, "Available", after=mark)


# -- remote start / stop -------------------------------------------------------------------


def test_remote_start_then_plug_in(bench: Bench) -> None:
    mark = bench.mark()
    reply = bench.call("RemoteStartTransaction", {"connectorId": 1, "idTag": TOKEN})
    assert reply == {"status": "Accepted"}
    bench.status(1, "Preparing", after=mark)
    assert since(bench, "StartTransaction", mark) == []
    bench.sim().plug(1)
    start = bench.wait("StartTransaction", after=mark)
    assert start["idTag"] == TOKEN and start["connectorId"] == 1
    bench.sim().charge(1, max_current_a=16)
    bench.status(1, "Charging", after=mark)


def test_remote_start_ev_already_plugged_in(bench: Bench) -> None:
    mark = bench.mark()
    bench.sim().plug(1)
    bench.status(1, "Preparing", after=mark)
    reply = bench.call("RemoteStartTransaction", {"connectorId": 1, "idTag": TOKEN})
    assert reply == {"status": "Accepted"}
    start = bench.wait("StartTransaction", after=mark)
    assert start["idTag"] == TOKEN and start["connectorId"] == 1
    # The station decides without asking the CSMS (AuthorizeRemoteTxRequests is false).
    assert since(bench, "Authorize", mark) == []
    bench.sim().charge(1, max_current_a=16)
    bench.status(1, "Charging", after=mark)


def test_remote_start_timeout(bench: Bench) -> None:
    assert configure(bench, "ConnectionTimeOut", "2") == "Accepted"
    mark = bench.mark()
    assert bench.call("RemoteStartTransaction", {"connectorId": 1, "idTag": TOKEN})["status"] == "Accepted"
    bench.status(1, "Preparing", after=mark)
    bench.status(1, "Available", after=bench.mark(), timeout=15)
    # The authorization has lapsed: an EV plugged in now does not start a transaction.
    late = bench.mark()
    bench.sim().plug(1)
    bench.status(1, "Preparing", after=late)
    quiet_for(bench, "StartTransaction", mark, 1.0)


def test_remote_start_rejected_on_connector_0_unknown_or_occupied(bench: Bench) -> None:
    mark = bench.mark()
    assert bench.call("RemoteStartTransaction", {"connectorId": 0, "idTag": TOKEN})["status"] == "Rejected"
    assert bench.call("RemoteStartTransaction", {"connectorId": 2, "idTag": TOKEN})["status"] == "Rejected"
    bench.sim().plug(1)
    bench.status(1, "Preparing", after=mark)
    quiet_for(bench, "StartTransaction", mark, 1.0)
    # An occupied connector cannot take a second session either.
    bench.sim().swipe(TOKEN)
    bench.wait("StartTransaction", after=mark)
    assert bench.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "OTHER"})["status"] == "Rejected"


def test_remote_start_authorize_remote_tx_requests(bench: Bench) -> None:
    assert configure(bench, "AuthorizeRemoteTxRequests", "true") == "Accepted"
    mark = bench.mark()
    bench.sim().plug(1)
    bench.status(1, "Preparing", after=mark)
    assert bench.call("RemoteStartTransaction", {"connectorId": 1, "idTag": TOKEN})["status"] == "Accepted"
    bench.wait("StartTransaction", after=mark)
    calls = [
        e
        for e in bench.csms.timeline[mark:]
        if e.kind == "call" and e.direction == "in" and e.action in ("Authorize", "StartTransaction")
    ]
    assert [e.action for e in calls] == ["Authorize", "StartTransaction"]
    assert calls[0].payload == {"idTag": TOKEN}


def test_remote_start_authorize_remote_tx_requests_invalid_tag(bench: Bench) -> None:
    assert configure(bench, "AuthorizeRemoteTxRequests", "true") == "Accepted"
    bench.csms.csms.auth["BADTAG"] = "Invalid"
    mark = bench.mark()
    bench.sim().plug(1)
    bench.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "BADTAG"})
    bench.wait("Authorize", lambda p: p["idTag"] == "BADTAG", after=mark)
    quiet_for(bench, "StartTransaction", mark, 1.0)


def test_remote_stop_transaction(bench: Bench) -> None:
    start = bench.charge()
    tx_id = last_csms_tx(bench)
    mark = bench.mark()
    assert bench.call("RemoteStopTransaction", {"transactionId": tx_id}) == {"status": "Accepted"}
    stop = bench.wait("StopTransaction", after=mark)
    assert stop["transactionId"] == tx_id
    assert stop["reason"] == "Remote"
    assert stop["meterStop"] >= start["meterStart"]
    bench.sim().wait_until(lambda s: not s["pwm"] and s["offered_a"] == 0, timeout=15)  # no energy offered
    bench.status(1, "Finishing", after=mark)
    unplug = bench.mark()
    bench.sim().unplug(1)
    bench.status(1, "Available", after=unplug)


def test_remote_stop_unknown_transaction_rejected(bench: Bench) -> None:
    bench.charge()
    tx_id = last_csms_tx(bench)
    mark = bench.mark()
    assert bench.call("RemoteStopTransaction", {"transactionId": tx_id + 1000}) == {"status": "Rejected"}
    quiet_for(bench, "StopTransaction", mark, 0.5)
    assert bench.sim().status(1)["contactor_closed"]


# -- reset ---------------------------------------------------------------------------------


def test_reset_soft_without_transaction(bench: Bench) -> None:
    assert bench.proc is not None
    pid = bench.proc.pid
    mark = bench.mark()
    assert bench.call("Reset", {"type": "Soft"}) == {"status": "Accepted"}
    bench.wait("BootNotification", after=mark, timeout=15)
    bench.status(1, "Available", after=mark)
    assert bench.proc.poll() is None and bench.proc.pid == pid  # re-executed in place
    assert since(bench, "StopTransaction", mark) == []
    reconnect_rig(bench)
    assert bench.sim().status(1)["ocpp_connected"] is True


def test_reset_hard_with_transaction(bench: Bench) -> None:
    assert bench.proc is not None
    start = bench.charge()
    tx_id = last_csms_tx(bench)
    mark = bench.mark()
    assert bench.call("Reset", {"type": "Hard"}) == {"status": "Accepted"}
    stop = bench.wait("StopTransaction", after=mark, timeout=15)
    assert stop["transactionId"] == tx_id
    assert stop["reason"] == "HardReset"
    assert stop["meterStop"] >= start["meterStart"]
    bench.wait("BootNotification", after=mark, timeout=15)
    assert bench.proc.poll() is None
    reconnect_rig(bench)
    state = bench.sim().wait_until(lambda s: s["ocpp_connected"], timeout=15)
    assert state["transaction_id"] is None  # no new transaction without a new authorization
    assert len(bench.csms.transactions[tx_id]["stop"]) and bench.csms.transactions[tx_id]["stop_count"] == 1


def test_reset_soft_with_transaction(bench: Bench) -> None:
    bench.charge()
    tx_id = last_csms_tx(bench)
    mark = bench.mark()
    assert bench.call("Reset", {"type": "Soft"}) == {"status": "Accepted"}
    stop = bench.wait("StopTransaction", after=mark, timeout=15)
    assert stop["transactionId"] == tx_id
    assert stop["reason"] == "SoftReset"
    bench.wait("BootNotification", after=mark, timeout=15)
    reconnect_rig(bench)


# -- unlock connector ----------------------------------------------------------------------


def test_tc_017_2_unlock_connector_no_lock_fitted(bench: Bench) -> None:
    """TC_017_2_CS (fixed cable): UnlockConnector.conf NotSupported."""
    assert bench.call("UnlockConnector", {"connectorId": 1}) == {"status": "NotSupported"}
    assert bench.call("UnlockConnector", {"connectorId": 2}) == {"status": "NotSupported"}


def test_tc_018_2_unlock_connector_no_lock_fitted_with_charging_session(bench: Bench) -> None:
    """TC_018_2_CS (fixed cable, charging session): NotSupported, and the session goes on."""
    bench.charge()
    mark = bench.mark()
    assert bench.call("UnlockConnector", {"connectorId": 1}) == {"status": "NotSupported"}
    quiet_for(bench, "StopTransaction", mark, 1.0)
    assert bench.sim().status(1)["contactor_closed"]


def lock_engaged(bench: Bench) -> bool:
    """Where the simulated connector lock physically is."""
    engaged = bench.sim().timing(1)["lock_engaged"]
    assert isinstance(engaged, bool), "no simulated lock on EVSE 1"
    return engaged


def test_tc_017_1_unlock_connector_no_charging_session(
    tmp_path: Path, csms: CsmsThread, benches: Any
) -> None:
    """TC_017_1_CS: EV plugged in (Preparing), no transaction: Unlocked, and the lock really
    released. "The response PDU SHALL indicate whether the Charge Point was able to unlock
    its connector." (1.6 section 5.18)"""
    b = started(tmp_path, csms, lock="sim")
    benches.append(b)
    mark = b.mark()
    b.sim().plug(1)
    b.status(1, "Preparing", after=mark)
    eventually(lambda: lock_engaged(b), what="the lock engages with the EV connected")
    assert b.call("UnlockConnector", {"connectorId": 1}) == {"status": "Unlocked"}
    assert not lock_engaged(b)
    time.sleep(0.5)
    assert not lock_engaged(b), "the lock engaged again with the EV still connected"
    assert b.sim().status(1)["connector_status"] == "Preparing"
    # The EV leaves and the next one is locked in as before.
    b.sim().unplug(1)
    b.status(1, "Available", after=mark)
    b.sim().plug(1)
    eventually(lambda: lock_engaged(b), what="the lock engages for the next EV")
    # No EV at all: nothing holds the lock.
    b.sim().unplug(1)
    assert b.call("UnlockConnector", {"connectorId": 1}) == {"status": "Unlocked"}


def test_tc_018_1_unlock_connector_with_charging_session(
    tmp_path: Path, csms: CsmsThread, benches: Any
) -> None:
    """TC_018_1_CS: "If there was a transaction in progress on the specific connector, then
    Charge Point SHALL finish the transaction first": StopTransaction with reason
    UnlockCommand, then Unlocked once the contactor opened and the lock released (the
    simulated EV keeps requesting: the contactor opens after the 6 s PWM-off grace)."""
    b = started(tmp_path, csms, lock="sim")
    benches.append(b)
    start = b.charge()
    tx_id = last_csms_tx(b)
    assert lock_engaged(b)
    mark = b.mark()
    assert b.call("UnlockConnector", {"connectorId": 1}, timeout=30) == {"status": "Unlocked"}
    assert not lock_engaged(b)
    assert not b.sim().status(1)["contactor_closed"]
    stop = b.wait("StopTransaction", after=mark)
    assert stop["transactionId"] == tx_id
    assert stop["reason"] == "UnlockCommand"
    assert stop["meterStop"] >= start["meterStart"]
    b.status(1, "Finishing", after=mark)
    b.sim().wait_until(lambda s: not s["pwm"] and s["offered_a"] == 0, timeout=15)


def test_unlock_connector_jammed_lock_fails(tmp_path: Path, csms: CsmsThread, benches: Any) -> None:
    """A lock that does not move: UnlockFailed, the answer coming from its feedback. Freed,
    it follows the release the supervisor still commands, and a new request succeeds."""
    b = started(tmp_path, csms, lock="sim")
    benches.append(b)
    b.sim().plug(1)
    eventually(lambda: lock_engaged(b), what="the lock engages with the EV connected")
    b.sim().fault("lock_jam")
    assert b.call("UnlockConnector", {"connectorId": 1}) == {"status": "UnlockFailed"}
    assert lock_engaged(b)
    b.sim().fault("lock_jam", active=False)
    assert b.call("UnlockConnector", {"connectorId": 1}) == {"status": "Unlocked"}
    assert not lock_engaged(b)


def test_rig_refuses_lock_jam_without_a_simulated_lock(bench: Bench) -> None:
    reply = bench.sim().send_line(b'{"cmd": "fault", "evse": 1, "kind": "lock_jam"}')
    assert not reply["ok"] and "no simulated connector lock" in reply["error"]


# -- change availability -------------------------------------------------------------------


def test_change_availability_idle_inoperative_then_operative(bench: Bench) -> None:
    mark = bench.mark()
    reply = bench.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert reply == {"status": "Accepted"}
    bench.status(1, "Unavailable", after=mark)
    with pytest.raises(CallErrorReply) as error:
        bench.call("ChangeAvailability", {"connectorId": 2, "type": "Inoperative"})
    assert error.value.code == "PropertyConstraintViolation"  # no connector 2
    # Unavailable: no session starts.
    assert bench.call("RemoteStartTransaction", {"connectorId": 1, "idTag": TOKEN})["status"] == "Rejected"
    bench.sim().plug(1)
    quiet_for(bench, "StartTransaction", mark, 1.0)
    assert bench.sim().status(1)["connector_status"] == "Unavailable"
    back = bench.mark()
    assert bench.call("ChangeAvailability", {"connectorId": 1, "type": "Operative"}) == {"status": "Accepted"}
    bench.status(1, "Preparing", after=back)
    unplug = bench.mark()
    bench.sim().unplug(1)
    bench.status(1, "Available", after=unplug)


def test_change_availability_during_transaction_scheduled(bench: Bench) -> None:
    bench.charge()
    mark = bench.mark()
    reply = bench.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert reply == {"status": "Scheduled"}
    time.sleep(1.0)
    assert since(bench, "StopTransaction", mark) == []
    state = bench.sim().status(1)
    assert state["contactor_closed"] and state["connector_status"] == "Charging"
    assert "Unavailable" not in statuses(bench, 1, mark)
    unplug = bench.mark()
    bench.sim().unplug(1)
    stop = bench.wait("StopTransaction", after=unplug)
    assert stop["reason"] == "EVDisconnected"
    bench.status(1, "Unavailable", after=unplug)
    # §5.2: the change happens once the transaction has finished, with no Available between.
    assert statuses(bench, 1, unplug) == ["Unavailable"]
    back = bench.mark()
    assert bench.call("ChangeAvailability", {"connectorId": 1, "type": "Operative"}) == {"status": "Accepted"}
    bench.status(1, "Available", after=back)


def test_change_availability_connector_0(bench: Bench) -> None:
    mark = bench.mark()
    assert bench.call("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}) == {
        "status": "Accepted"
    }
    bench.status(1, "Unavailable", after=mark)
    back = bench.mark()
    assert bench.call("ChangeAvailability", {"connectorId": 0, "type": "Operative"}) == {"status": "Accepted"}
    bench.status(1, "Available", after=back)


def test_change_availability_connector_0_reports_station_unavailable(bench: Bench) -> None:
    mark = bench.mark()
    reply = bench.call("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})
    assert reply == {"status": "Accepted"}
    bench.status(1, "Unavailable", after=mark)
    bench.status(0, "Unavailable", after=mark, timeout=15)


def test_change_availability_persists_across_restart(bench: Bench) -> None:
    mark = bench.mark()
    assert bench.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}) == {
        "status": "Accepted"
    }
    bench.status(1, "Unavailable", after=mark)
    assert bench.stop() == 0
    restart = bench.mark()
    bench.start()
    bench.status(1, "Unavailable", after=restart)
    assert "Available" not in statuses(bench, 1, restart)
    assert bench.sim().status(1)["connector_status"] == "Unavailable"


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


def test_get_configuration_all_keys(bench: Bench) -> None:
    reply = bench.call("GetConfiguration", {})
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


def test_get_configuration_specific_and_unknown_key(bench: Bench) -> None:
    reply = bench.call("GetConfiguration", {"key": ["ConnectionTimeOut", "NoSuchKey", "NumberOfConnectors"]})
    known = {k["key"]: k for k in reply["configurationKey"]}
    assert set(known) == {"ConnectionTimeOut", "NumberOfConnectors"}
    assert known["ConnectionTimeOut"] == {"key": "ConnectionTimeOut", "readonly": False, "value": "60"}
    assert reply["unknownKey"] == ["NoSuchKey"]


def test_change_configuration_statuses(bench: Bench) -> None:
    assert configure(bench, "NoSuchKey", "1") == "NotSupported"
    assert configure(bench, "NumberOfConnectors", "4") == "Rejected"
    assert config_value(bench, "NumberOfConnectors") == "1"
    assert configure(bench, "ConnectionTimeOut", "abc") == "Rejected"
    assert config_value(bench, "ConnectionTimeOut") == "60"
    assert configure(bench, "AuthorizeRemoteTxRequests", "maybe") == "Rejected"
    assert configure(bench, "WebSocketPingInterval", "20") == "RebootRequired"
    assert config_value(bench, "WebSocketPingInterval") == "20"
    assert configure(bench, "ConnectionTimeOut", "45") == "Accepted"
    assert config_value(bench, "ConnectionTimeOut") == "45"
    # Booleans are case-insensitive on the wire.
    assert configure(bench, "LocalPreAuthorize", "TRUE") == "Accepted"
    assert config_value(bench, "LocalPreAuthorize") == "true"


def test_change_configuration_persists_across_restart(bench: Bench) -> None:
    assert configure(bench, "MeterValueSampleInterval", "7") == "Accepted"
    assert configure(bench, "ConnectionTimeOut", "33") == "Accepted"
    assert bench.stop() == 0
    bench.start()
    assert config_value(bench, "MeterValueSampleInterval") == "7"
    assert config_value(bench, "ConnectionTimeOut") == "33"


def test_change_configuration_heartbeat_interval_takes_effect(bench: Bench) -> None:
    mark = bench.mark()
    assert configure(bench, "HeartbeatInterval", "1") == "Accepted"
    bench.wait("Heartbeat", after=mark, timeout=15)


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
def test_trigger_message(bench: Bench, message: str) -> None:
    payload: dict[str, Any] = {"requestedMessage": message}
    if message in ("StatusNotification", "MeterValues"):
        payload["connectorId"] = 1
    mark = bench.mark()
    assert bench.call("TriggerMessage", payload) == {"status": "Accepted"}
    sent = bench.wait(message, after=mark, timeout=15)
    assert TRIGGERED[message](sent), sent
    if message == "MeterValues":
        sampled = sent["meterValue"][0]["sampledValue"]
        assert all(s["context"] == "Trigger" for s in sampled)


def test_trigger_message_meter_values_during_transaction(bench: Bench) -> None:
    bench.charge()
    tx_id = last_csms_tx(bench)
    mark = bench.mark()
    reply = bench.call("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1})
    assert reply == {"status": "Accepted"}
    sent = bench.wait(
        "MeterValues", lambda p: p["meterValue"][0]["sampledValue"][0]["context"] == "Trigger", after=mark
    )
    assert sent["transactionId"] == tx_id


def test_trigger_message_unknown_connector_rejected(bench: Bench) -> None:
    mark = bench.mark()
    reply = bench.call("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 2})
    assert reply == {"status": "Rejected"}
    quiet_for(bench, "StatusNotification", mark, 0.5)


# -- data transfer -------------------------------------------------------------------------


def test_data_transfer_unknown_vendor(bench: Bench) -> None:
    reply = bench.call("DataTransfer", {"vendorId": "com.example.nobody", "messageId": "x", "data": "y"})
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


def error_reply(bench: Bench, unique_id: str) -> Entry | None:
    for entry in bench.csms.timeline:
        if entry.direction == "in" and entry.kind == "error" and entry.unique_id == unique_id:
            return entry
    return None


def assert_link_intact(bench: Bench) -> None:
    """The connection survived: a triggered Heartbeat works and no reconnect happened."""
    mark = bench.mark()
    assert bench.call("TriggerMessage", {"requestedMessage": "Heartbeat"}) == {"status": "Accepted"}
    bench.wait("Heartbeat", after=mark, timeout=15)
    assert len(bench.calls("BootNotification")) == 1
    kinds = [e.kind for e in bench.csms.timeline]
    assert kinds.count("connect") == 1 and "disconnect" not in kinds
    assert bench.proc is not None and bench.proc.poll() is None


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES, ids=[c for _, c in BAD_FRAMES])
def test_strict_wire_call_error(bench: Bench, frame: list[Any], code: str) -> None:
    unique_id = frame[1]
    bench.csms.send_raw("CP001", json.dumps(frame))
    entry = eventually(lambda: error_reply(bench, unique_id), timeout=15, what=f"CALLERROR for {unique_id}")
    assert isinstance(entry.payload, dict)
    assert entry.payload["code"] == code, entry.payload
    assert isinstance(entry.payload["description"], str)
    assert isinstance(entry.payload["details"], dict)
    assert_link_intact(bench)


def test_strict_wire_not_json(bench: Bench) -> None:
    mark = bench.mark()
    bench.csms.send_raw("CP001", "not json")
    time.sleep(0.5)
    replies = [e for e in bench.csms.timeline[mark:] if e.direction == "in" and e.kind in ("error", "raw")]
    # OCPP-J 1.6: without a readable unique id there is nothing to answer; if anything
    # comes back it must be a well-formed CALLERROR.
    for entry in replies:
        assert entry.kind == "error", entry
    assert_link_intact(bench)
