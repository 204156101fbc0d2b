"""OCPP 2.0.1 core end to end: the daemon as a subprocess on simulated hardware, against
the development CSMS on a real websocket.

The thin layer of what only a process shows: the cold boot (B01), a power cut while the boot
is Pending (B02), the resets that re-execute the daemon (B11/B12), Basic auth against a CSMS
that checks it (B09) and the choice of version with ``ocpp.version = "auto"``. The rest of
the core (B01-B03 boot and heartbeat, B05-B09 variables, reports and network profiles, F06
TriggerMessage, P01 DataTransfer, the OCPP-J wire rules) runs in-process in
test_inproc_ocpp201_core.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hil.csms import CsmsThread, describe
from hil.simrig import SimRig
from tests.ocpp201_helpers import PASSWORD, Z_TIME, assert_station_frames_valid, get_item, network_profile

# The fixtures `bench201` and `csms201` come from tests/conftest.py (tests.ocpp_harness).
from tests.ocpp_harness import ROOT, TOKEN, Bench, make_bench, write_config
from tests.ocpp_helpers import index_of, since

# -- helpers -----------------------------------------------------------------------------


def get_vars(bench: Bench, *items: dict[str, Any]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = bench.call("GetVariables", {"getVariableData": list(items)})[
        "getVariableResult"
    ]
    assert len(results) == len(items)
    return results


def get_value(bench: Bench, comp: str, var: str, **where: Any) -> str:
    result = get_vars(bench, get_item(comp, var, **where))[0]
    assert result["attributeStatus"] == "Accepted", result
    value: str = result["attributeValue"]
    return value


def reconnect_rig(bench: Bench) -> None:
    """After a reset the daemon re-executed itself: connect to its new rig socket."""
    if bench.rig is not None:
        bench.rig.close()
    bench.rig = SimRig.wait_for(bench.dir / "var" / "sim.sock")


def charge201(bench: Bench, evse: int = 1) -> dict[str, Any]:
    """Plug in, swipe, charge until the contactor closes; returns the TransactionEvent Started."""
    mark = bench.mark()
    bench.sim().plug(evse)
    bench.sim().swipe(TOKEN)
    bench.sim().charge(evse, max_current_a=16)
    bench.sim().wait_until(lambda s: s["contactor_closed"], evse=evse, timeout=10)
    return bench.event("Started", lambda p: p["evse"]["id"] == evse, after=mark)


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def show_timeline_on_failure(csms201: CsmsThread, tmp_path: Path) -> Iterator[None]:
    """Print the CSMS timeline and the daemon log's tail; pytest shows them when a test fails."""
    yield
    print_timeline(csms201)
    log = tmp_path / "daemon.log"
    if log.exists():
        print("--- daemon.log (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-80:]))


@pytest.fixture
def benches() -> Iterator[list[Bench]]:
    """Benches a test starts itself; killed at the end."""
    made: list[Bench] = []
    yield made
    for b in made:
        if b.proc is not None and b.proc.poll() is None:
            b.kill()


@pytest.fixture
def servers() -> Iterator[Callable[..., CsmsThread]]:
    """Start extra CSMSs (``servers(versions=("1.6",))``); stopped at the end."""
    made: list[CsmsThread] = []

    def make(**kwargs: Any) -> CsmsThread:
        server = CsmsThread(quiet=True, **kwargs)
        server.start()
        made.append(server)
        return server

    yield make
    for server in made:
        print_timeline(server)
        server.stop()


def print_timeline(server: CsmsThread) -> None:
    print(f"--- CSMS {', '.join(server.csms.versions)}")
    print("\n".join(f"{e.t:10.3f} {describe(e)}" for e in server.timeline))


# -- B01-B03 boot --------------------------------------------------------------------------


def test_b01_cold_boot(tmp_path: Path, csms201: CsmsThread, benches: list[Bench]) -> None:
    csms201.csms.heartbeat_interval = 2
    b = make_bench(tmp_path, csms201, version="2.0.1")
    benches.append(b)
    b.start()
    connect = next(e for e in b.csms.timeline if e.kind == "connect")
    assert isinstance(connect.payload, dict)
    assert connect.payload["subprotocol"] == "ocpp2.0.1"
    assert connect.payload["path"].endswith("/CP001")
    boots = b.calls("BootNotification")
    assert len(boots) == 1
    boot = boots[0]
    assert boot["reason"] == "PowerUp"
    station = boot["chargingStation"]
    assert station["serialNumber"] == "SIM-0001"
    assert station["vendorName"] == "Generic"
    assert station["model"] == "PiCharger-Sim"
    assert isinstance(station.get("firmwareVersion"), str) and station["firmwareVersion"]
    status = b.status201(1, "Available")
    assert set(status) == {"timestamp", "connectorStatus", "evseId", "connectorId"}
    assert status["connectorId"] == 1
    assert Z_TIME.match(status["timestamp"]), status["timestamp"]
    # Nothing comes before the BootNotification; the StatusNotification comes after it.
    calls = [e for e in b.csms.timeline if e.kind == "call" and e.direction == "in"]
    assert calls[0].action == "BootNotification"
    assert [e.action for e in calls].index("StatusNotification") > 0
    # The interval of the answer is the heartbeat interval now.
    assert get_value(b, "OCPPCommCtrlr", "HeartbeatInterval") == "2"
    assert get_value(b, "ChargingStation", "SerialNumber") == "SIM-0001"
    assert_station_frames_valid(b)


def test_b02_pending_holds_back_queued_transaction_events(
    tmp_path: Path, csms201: CsmsThread, benches: list[Bench]
) -> None:
    b = make_bench(tmp_path, csms201, version="2.0.1")
    benches.append(b)
    b.start()
    start = charge201(b)
    tx_id = start["transactionInfo"]["transactionId"]
    b.kill()  # a power cut: the transaction is ended as PowerLoss at the next start
    csms201.csms.heartbeat_interval = 1
    csms201.set_boot_status("Pending")
    mark = b.mark()
    b.start(wait_boot=False)
    b.wait("BootNotification", after=mark)
    b.wait("BootNotification", after=b.mark())
    # Not even messages cached from before may go out while Pending.
    assert since(b, "TransactionEvent", mark) == []
    assert since(b, "StatusNotification", mark) == []
    accepted = b.mark()
    csms201.set_boot_status("Accepted")
    b.wait("BootNotification", after=accepted, timeout=5)
    ended = b.event("Ended", after=accepted)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert ended["transactionInfo"]["stoppedReason"] == "PowerLoss"
    events = csms201.transactions201[tx_id]["events"]
    assert [e["seqNo"] for e in events] == list(range(len(events)))  # no gap across the power cut
    assert index_of(b, "BootNotification", accepted) < index_of(b, "TransactionEvent", accepted)


# -- B11/B12 reset -------------------------------------------------------------------------


def test_b11_reset_immediate_without_transaction(bench201: Bench) -> None:
    assert bench201.proc is not None
    pid = bench201.proc.pid
    mark = bench201.mark()
    assert bench201.call("Reset", {"type": "Immediate"}) == {"status": "Accepted"}
    boot = bench201.wait("BootNotification", after=mark, timeout=15)
    assert boot["reason"] == "RemoteReset"
    bench201.status201(1, "Available", after=mark)
    assert bench201.proc.poll() is None and bench201.proc.pid == pid  # re-executed in place
    assert any(e.kind == "disconnect" for e in bench201.csms.timeline[mark:])
    assert since(bench201, "TransactionEvent", mark) == []
    reconnect_rig(bench201)
    assert bench201.sim().wait_until(lambda s: s["ocpp_connected"], timeout=10)["transaction_id"] is None
    # A later power-up is a PowerUp again, not a RemoteReset.
    assert bench201.stop() == 0
    mark = bench201.mark()
    bench201.start()
    assert since(bench201, "BootNotification", mark)[0]["reason"] == "PowerUp"


def test_b11_reset_on_idle_without_transaction(bench201: Bench) -> None:
    mark = bench201.mark()
    assert bench201.call("Reset", {"type": "OnIdle"}) == {"status": "Accepted"}
    boot = bench201.wait("BootNotification", after=mark, timeout=15)
    assert boot["reason"] == "RemoteReset"
    reconnect_rig(bench201)


def test_b12_reset_on_idle_with_transaction_scheduled(bench201: Bench) -> None:
    start = charge201(bench201)
    tx_id = start["transactionInfo"]["transactionId"]
    mark = bench201.mark()
    assert bench201.call("Reset", {"type": "OnIdle"}) == {"status": "Scheduled"}
    time.sleep(1.5)
    assert since(bench201, "BootNotification", mark) == []
    assert since(bench201, "TransactionEvent", mark, lambda p: p["eventType"] == "Ended") == []
    assert bench201.sim().status(1)["contactor_closed"]
    bench201.sim().unplug(1)
    ended = bench201.event("Ended", after=mark, timeout=15)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    boot = bench201.wait("BootNotification", after=mark, timeout=15)
    assert boot["reason"] == "RemoteReset"
    ended_at = index_of(bench201, "TransactionEvent", mark, lambda p: p["eventType"] == "Ended")
    boot_at = index_of(bench201, "BootNotification", mark)
    assert ended_at < boot_at, "the station reset before it delivered the Ended event"
    reconnect_rig(bench201)
    bench201.status201(1, "Available", after=mark)
    assert bench201.csms.transactions201[tx_id]["ended_count"] == 1


def reset_immediate_during_transaction(bench: Bench) -> tuple[str, int]:
    """Charge, then Reset Immediate; returns the transaction id and the timeline mark before the reset."""
    start = charge201(bench)
    tx_id: str = start["transactionInfo"]["transactionId"]
    mark = bench.mark()
    assert bench.call("Reset", {"type": "Immediate"}) == {"status": "Accepted"}
    ended = bench.event("Ended", after=mark, timeout=15)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert ended["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    assert ended["triggerReason"] == "ResetCommand"
    boot = bench.wait("BootNotification", after=mark, timeout=15)
    assert boot["reason"] == "RemoteReset"
    reconnect_rig(bench)
    bench.sim().wait_until(lambda s: s["ocpp_connected"], timeout=10)
    time.sleep(0.5)  # anything still queued is delivered now
    return tx_id, mark


def test_b12_reset_immediate_with_transaction(bench201: Bench) -> None:
    tx_id, _ = reset_immediate_during_transaction(bench201)
    tx = bench201.csms.transactions201[tx_id]
    assert [e["seqNo"] for e in tx["events"]] == list(range(len(tx["events"])))
    assert tx["ended"] is not None and tx["ended"]["seqNo"] == len(tx["events"]) - 1
    assert bench201.sim().status(1)["transaction_id"] is None


def test_b12_reset_immediate_with_transaction_ended_once_before_reboot(bench201: Bench) -> None:
    tx_id, mark = reset_immediate_during_transaction(bench201)
    ended_at = index_of(bench201, "TransactionEvent", mark, lambda p: p["eventType"] == "Ended")
    boot_at = index_of(bench201, "BootNotification", mark)
    assert ended_at < boot_at, "the Ended event came after the reboot"
    assert bench201.csms.transactions201[tx_id]["ended_count"] == 1, "the Ended event was sent twice"


# -- B09 SetNetworkProfile -----------------------------------------------------------------


def test_b09_set_network_profile_lower_security_profile_rejected(
    tmp_path: Path, servers: Callable[..., CsmsThread], benches: list[Bench]
) -> None:
    server = servers(versions=("2.0.1",), passwords={"CP001": PASSWORD})
    b = make_bench(tmp_path, server, version="2.0.1")
    text = b.config.read_text().replace(
        "[ocpp]\n", f'[ocpp]\nsecurity_profile = 1\npassword = "{PASSWORD}"\n'
    )
    b.config.write_text(text)
    benches.append(b)
    b.start()
    assert get_value(b, "SecurityCtrlr", "SecurityProfile") == "1"
    assert b.call("SetNetworkProfile", network_profile(1, 0))["status"] == "Rejected"
    assert b.call("SetNetworkProfile", network_profile(1, 1))["status"] == "Accepted"


# -- version choice ------------------------------------------------------------------------


def cli_status(bench: Bench) -> dict[str, Any]:
    """``evse status --json`` of the running daemon."""
    result = subprocess.run(
        [sys.executable, "-m", "controller", "status", "--json", "--config", str(bench.config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    reply: dict[str, Any] = json.loads(result.stdout)
    return reply


def test_version_auto_against_ocpp16_only_csms(
    tmp_path: Path, servers: Callable[..., CsmsThread], benches: list[Bench]
) -> None:
    server = servers(versions=("1.6",))
    b = make_bench(tmp_path, server, version="auto")
    benches.append(b)
    b.start()
    connect = next(e for e in server.timeline if e.kind == "connect")
    assert isinstance(connect.payload, dict) and connect.payload["subprotocol"] == "ocpp1.6"
    boot = b.calls("BootNotification")[0]
    assert boot["chargePointSerialNumber"] == "SIM-0001" and "chargingStation" not in boot
    b.status(1, "Available")
    start = b.charge()
    assert start["idTag"] == TOKEN
    b.status(1, "Charging")
    assert b.sim().status(1)["connector_status"] == "Charging"
    status = cli_status(b)
    assert status["evses"][0]["connector_status"] == "Charging"
    assert status["ocpp"]["version"] == "1.6" and status["ocpp"]["connected"] is True
    mark = b.mark()
    b.sim().unplug(1)
    stop = b.wait("StopTransaction", after=mark)
    assert stop["reason"] == "EVDisconnected"
    assert b.calls("TransactionEvent") == []
    assert [e for e in server.timeline if e.direction == "out" and e.kind == "error"] == []


def test_version_auto_against_ocpp201_only_csms(
    tmp_path: Path, csms201: CsmsThread, benches: list[Bench]
) -> None:
    b = make_bench(tmp_path, csms201, version="auto")
    benches.append(b)
    b.start()
    connect = next(e for e in csms201.timeline if e.kind == "connect")
    assert isinstance(connect.payload, dict) and connect.payload["subprotocol"] == "ocpp2.0.1"
    boot = b.calls("BootNotification")[0]
    assert boot["reason"] == "PowerUp" and boot["chargingStation"]["serialNumber"] == "SIM-0001"
    b.status201(1, "Available")
    start = charge201(b)
    assert start["idToken"] == {"idToken": TOKEN, "type": "ISO14443"}
    assert b.sim().status(1)["connector_status"] == "Occupied"
    status = cli_status(b)
    assert status["evses"][0]["connector_status"] == "Occupied"
    assert status["ocpp"]["version"] == "2.0.1" and status["ocpp"]["connected"] is True
    mark = b.mark()
    b.sim().unplug(1)
    ended = b.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == start["transactionInfo"]["transactionId"]
    assert b.calls("StartTransaction") == []
    assert_station_frames_valid(b)


def test_version_auto_switches_from_ocpp16_to_ocpp201_csms(
    tmp_path: Path, servers: Callable[..., CsmsThread], csms201: CsmsThread, benches: list[Bench]
) -> None:
    old = servers(versions=("1.6",))
    b = make_bench(tmp_path, old, version="auto")
    benches.append(b)
    b.start()
    assert "chargePointVendor" in b.calls("BootNotification")[0]
    assert b.stop() == 0
    # The same station, its CSMS replaced by one that speaks 2.0.1 only.
    write_config(b.config, csms201.url, version="auto")
    b.csms = csms201
    b.start()
    boot = b.calls("BootNotification")[0]
    assert boot["reason"] == "PowerUp" and "chargingStation" in boot
    start = charge201(b)
    assert b.sim().status(1)["connector_status"] == "Occupied"
    mark = b.mark()
    b.sim().unplug(1)
    ended = b.event("Ended", after=mark)
    assert ended["transactionInfo"]["transactionId"] == start["transactionInfo"]["transactionId"]
    assert_station_frames_valid(b)


def test_version_auto_switches_from_ocpp201_to_ocpp16_csms(
    tmp_path: Path, servers: Callable[..., CsmsThread], csms201: CsmsThread, benches: list[Bench]
) -> None:
    b = make_bench(tmp_path, csms201, version="auto")
    benches.append(b)
    b.start()
    assert "chargingStation" in b.calls("BootNotification")[0]
    assert b.stop() == 0
    new = servers(versions=("1.6",))
    write_config(b.config, new.url, version="auto")
    b.csms = new
    b.start()
    boot = b.calls("BootNotification")[0]
    assert boot["chargePointSerialNumber"] == "SIM-0001"
    b.status(1, "Available")
    b.charge()
    b.status(1, "Charging")
    assert b.sim().status(1)["connector_status"] == "Charging"
    mark = b.mark()
    b.sim().unplug(1)
    assert b.wait("StopTransaction", after=mark)["reason"] == "EVDisconnected"
    assert [e for e in new.timeline if e.direction == "out" and e.kind == "error"] == []
