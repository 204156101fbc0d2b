"""OCPP 1.6 Core profile end to end: the daemon as a subprocess on simulated hardware,
against the development CSMS on a real websocket.

The thin layer of what only a process shows: the cold boot, one whole charging session, the
resets (the daemon re-executes itself) and the rig socket. The rest of the profile (remote
start/stop, unlock, availability, configuration, trigger message, data transfer, the OCPP-J
wire rules) runs in-process in test_inproc_ocpp16_core.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hil.csms import CsmsThread, describe
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


def last_csms_tx(bench: Bench) -> int:
    """The CSMS's id of the transaction it opened last."""
    return max(bench.csms.transactions)


def configure(bench: Bench, key: str, value: str) -> str:
    status: str = bench.call("ChangeConfiguration", {"key": key, "value": value})["status"]
    return status


def reconnect_rig(bench: Bench) -> None:
    """After a reset the daemon re-executed itself: connect to its new rig socket."""
    if bench.rig is not None:
        bench.rig.close()
    bench.rig = SimRig.wait_for(bench.dir / "var" / "sim.sock")


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


def test_rig_refuses_lock_jam_without_a_simulated_lock(bench: Bench) -> None:
    reply = bench.sim().send_line(b'{"cmd": "fault", "evse": 1, "kind": "lock_jam"}')
    assert not reply["ok"] and "no simulated connector lock" in reply["error"]
