"""The daemon as a real subprocess on simulated hardware, driven over the rig socket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hil.simrig import RigReplyError, SimRig

ROOT = Path(__file__).resolve().parent.parent
SIM_CONFIG = ROOT / "config" / "evse.sim.toml"


@dataclass
class Station:
    config: Path
    proc: subprocess.Popen[bytes]
    rig: SimRig
    log: Path

    @property
    def state_dir(self) -> Path:
        return self.config.parent / "var"

    def db(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.state_dir / "evse.db") as db:
            return db.execute(sql, params).fetchall()

    def wait_db(self, expected: list[tuple[Any, ...]], sql: str, *params: Any, timeout: float = 5.0) -> None:
        """Wait until ``sql`` returns ``expected``: records are written just after the event."""
        deadline = time.monotonic() + timeout
        while (rows := self.db(sql, *params)) != expected:
            assert time.monotonic() < deadline, f"{sql} gave {rows}, expected {expected}"
            time.sleep(0.05)

    def hardware(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.state_dir / "sim-hardware.json").read_text())
        return state["evses"]["1"]


def start(config: Path) -> Station:
    log = config.parent / "daemon.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        rig = SimRig.wait_for(config.parent / "var" / "sim.sock")
    except OSError:
        proc.kill()
        raise AssertionError(f"daemon did not come up:\n{log.read_text()}") from None
    return Station(config, proc, rig, log)


def stop(station: Station, sig: int = signal.SIGTERM) -> int:
    station.rig.close()
    if station.proc.poll() is None:
        station.proc.send_signal(sig)
    code = station.proc.wait(timeout=10)
    SimRig.wait_released(station.config.parent / "var" / "sim.sock")
    return code


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "evse.toml"
    shutil.copy(SIM_CONFIG, path)
    return path


@pytest.fixture
def station(config: Path) -> Iterator[Station]:
    running = start(config)
    yield running
    if running.proc.poll() is None:
        stop(running, signal.SIGKILL)


def charging(st: Station) -> dict[str, Any]:
    st.rig.plug()
    st.rig.charge(max_current_a=16)
    return st.rig.wait_until(lambda s: s["contactor_closed"] and s["power_w"] > 0, timeout=5)


def test_plug_and_charge_closes_the_contactor_and_delivers_power(station: Station) -> None:
    station.rig.plug()
    plugged = station.rig.wait_until(lambda s: s["cp_state"] == "B" and s["pwm"])
    assert plugged["pwm"] and plugged["offered_a"] == 32.0 and not plugged["contactor_closed"]
    status = charging(station)
    assert status["connector_status"] == "Charging"
    assert status["power_w"] == pytest.approx(16 * 230 * 3)
    energy = station.rig.wait_until(lambda s: s["energy_wh"] > status["energy_wh"])["energy_wh"]
    assert energy > 0
    station.rig.suspend()
    # The rig shows the contactor as it is at once; the station's report follows.
    station.rig.wait_until(lambda s: not s["contactor_closed"])
    station.rig.wait_until(lambda s: s["connector_status"] == "SuspendedEV")
    station.rig.unplug()
    idle = station.rig.wait_until(lambda s: s["connector_status"] == "Available")
    assert idle["transaction_id"] is None
    station.wait_db(
        [("EVDisconnected", 1)], "SELECT stop_reason, meter_stop_wh > meter_start_wh FROM transactions"
    )


def test_pilot_state_e_opens_the_contactor(station: Station) -> None:
    charging(station)
    station.rig.cp("E")
    status = station.rig.wait_until(lambda s: not s["contactor_closed"], timeout=1)
    assert status["cp_state"] == "E" and not status["pwm"]
    station.rig.cp(None)
    station.rig.wait_until(lambda s: s["contactor_closed"], timeout=5)


def test_residual_current_trip_faults_and_latches(station: Station) -> None:
    charging(station)
    station.rig.fault("rcd")
    status = station.rig.wait_until(lambda s: not s["contactor_closed"], timeout=1)
    status = station.rig.wait_until(lambda s: s["connector_status"] == "Faulted")
    assert status["error_code"] == "GroundFailure" and status["transaction_id"] is None
    station.rig.fault("rcd", active=False)
    time.sleep(1.0)
    still = station.rig.status()
    assert still["connector_status"] == "Faulted" and not still["contactor_closed"] and not still["pwm"]
    station.wait_db([("EmergencyStop",)], "SELECT stop_reason FROM transactions")


def test_welded_contactor_is_found_at_the_next_opening(station: Station) -> None:
    charging(station)
    station.rig.fault("contactor_weld")
    station.rig.suspend()  # the controller opens; the contacts stay welded
    status = station.rig.wait_until(lambda s: s["error_code"] == "PowerSwitchFailure", timeout=3)
    assert status["connector_status"] == "Faulted" and status["contactor_closed"]  # physically
    held = station.rig.wait_until(lambda s: s["cp_state"] == "F", timeout=1)  # EVSE not available
    assert not held["pwm"] and held["transaction_id"] is None


def test_missing_diode_faults_without_charging_and_recovers(station: Station) -> None:
    tx = charging(station)["transaction_id"]
    station.rig.fault("diode")
    station.rig.wait_until(lambda s: not s["contactor_closed"], timeout=1)
    status = station.rig.wait_until(lambda s: s["error_code"] == "EVCommunicationError")
    assert status["connector_status"] == "Faulted"
    assert status["transaction_id"] == tx  # the session waits for the EV to recover
    time.sleep(1.0)
    assert station.rig.status()["error_code"] == "EVCommunicationError"  # no flicker, no charging
    assert not station.rig.status()["contactor_closed"]
    station.rig.fault("diode", active=False)
    station.rig.wait_until(lambda s: s["contactor_closed"] and s["connector_status"] == "Charging", timeout=5)


def test_meter_offline_stops_the_transaction_with_the_last_good_reading(station: Station) -> None:
    before = charging(station)
    tx = before["transaction_id"]
    station.rig.fault("meter_offline")
    status = station.rig.wait_until(lambda s: s["error_code"] == "PowerMeterFailure", timeout=8)
    assert status["transaction_id"] is None
    status = station.rig.wait_until(lambda s: not s["contactor_closed"], timeout=1)
    station.wait_db([("Other",)], "SELECT stop_reason FROM transactions WHERE id = ?", tx)
    ((reason, stop_wh),) = station.db("SELECT stop_reason, meter_stop_wh FROM transactions WHERE id = ?", tx)
    assert reason == "Other" and stop_wh == pytest.approx(status["energy_wh"], abs=0.01)
    station.rig.fault("meter_offline", active=False)
    resumed = station.rig.wait_until(lambda s: s["contactor_closed"] and s["transaction_id"], timeout=8)
    assert resumed["transaction_id"] != tx


def test_timing_reports_when_the_pilot_and_the_contactor_command_changed(station: Station) -> None:
    before = time.monotonic()
    charging(station)
    closed = station.rig.timing()
    assert closed["cp_state"] == "C" and closed["contactor_command"] is True
    assert before < closed["cp_changed_at"] < closed["contactor_commanded_at"] < time.monotonic()
    station.rig.suspend()
    station.rig.wait_until(lambda s: not s["contactor_closed"])
    opened = station.rig.timing()
    assert opened["cp_state"] == "B" and opened["contactor_command"] is False
    assert closed["contactor_commanded_at"] < opened["cp_changed_at"] < opened["contactor_commanded_at"]
    assert (
        opened["contactor_commanded_at"] - opened["cp_changed_at"] < 1.0
    )  # a generous bound; hil.bench measures
    assert station.rig.send_line(b'{"cmd": "timing", "evse": 7}')["ok"] is False


def test_malformed_socket_lines_get_error_replies_and_the_daemon_lives(station: Station) -> None:
    bad_lines = [
        b"not json",
        b"[1, 2, 3]",
        b"\xff\xfe\x00garbage",
        b'{"cmd": "fly"}',
        b'{"cmd": "plug"}',
        b'{"cmd": "plug", "evse": 9}',
        b'{"cmd": "plug", "evse": "1"}',
        b'{"cmd": "charge", "evse": 1, "max_current_a": -5}',
        b'{"cmd": "cp", "evse": 1, "state": "Z"}',
        b'{"cmd": "fault", "evse": 1, "kind": "lightning"}',
        b'{"cmd": "swipe", "id": ""}',
        b'{"cmd": "status", "evse": true}',
        b"x" * 100_000,
        b"[" * 60_000,  # nested deeper than the JSON parser recurses
        b'{"cmd": "swipe", "id": "04a1b2c3"}',  # readers report uppercase hex
    ]
    for line in bad_lines:
        reply = station.rig.send_line(line)
        assert reply["ok"] is False and reply["error"], line[:40]
    assert station.rig.status()["ok"] is True
    assert station.proc.poll() is None
    with pytest.raises(RigReplyError):
        station.rig.request("plug", evse=0)


def test_sigterm_opens_the_contactor_ends_the_transaction_and_exits_0(station: Station) -> None:
    tx = charging(station)["transaction_id"]
    started = time.monotonic()
    code = stop(station)
    assert code == 0 and time.monotonic() - started < 2.0
    hardware = station.hardware()
    assert hardware["contactor_closed"] is False and hardware["pilot"] != "pwm"
    assert station.db("SELECT stop_reason FROM transactions WHERE id = ?", tx) == [("Reboot",)]
    assert not (station.state_dir / "sim.sock").exists()


def test_kill_9_loses_no_started_transaction_and_energy_never_decreases(config: Path) -> None:
    first = start(config)
    status = charging(first)
    tx = status["transaction_id"]
    energy = first.rig.wait_until(lambda s: s["energy_wh"] > status["energy_wh"])["energy_wh"]
    assert stop(first, signal.SIGKILL) == -signal.SIGKILL
    assert first.db("SELECT count(*) FROM transactions WHERE id = ? AND stopped_at IS NULL", tx) == [(1,)]

    second = start(config)  # a stale socket is left behind: it must be replaced
    try:
        again = second.rig.wait_until(lambda s: s["transaction_id"] and s["contactor_closed"], timeout=8)
        assert again["energy_wh"] >= energy
        assert again["transaction_id"] != tx
        second.wait_db([("PowerLoss",)], "SELECT stop_reason FROM transactions WHERE id = ?", tx)
        rows = second.db("SELECT stop_reason, meter_stop_wh FROM transactions WHERE id = ?", tx)
        assert rows[0][0] == "PowerLoss" and rows[0][1] >= energy - 0.0005  # status rounds to 1 mWh
    finally:
        assert stop(second) == 0
    third = start(config)  # PowerLoss is recorded exactly once
    stop(third)
    assert third.db("SELECT count(*) FROM transactions WHERE stop_reason = 'PowerLoss'") == [(1,)]


def test_run_with_a_broken_config_exits_78_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "evse.toml"
    path.write_text(SIM_CONFIG.read_text().replace("max_current_a = 32", "max_current_a = 320"))
    result = subprocess.run(
        [sys.executable, "-m", "controller", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 78
    assert "evse 1: max_current_a" in result.stderr


def evse_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", *args], capture_output=True, text=True, timeout=30, cwd=ROOT
    )


def test_status_json_and_sim_cli_follow_the_contract(station: Station) -> None:
    plugged = evse_cli("sim", "--config", str(station.config), "plug", "evse=1")
    assert plugged.returncode == 0 and json.loads(plugged.stdout) == {"ok": True}
    refused = evse_cli("sim", "--config", str(station.config), "plug", "evse=7")
    assert refused.returncode == 1 and json.loads(refused.stdout)["ok"] is False
    station.rig.wait_until(lambda s: s["pwm"])
    status = evse_cli("status", "--config", str(station.config), "--json")
    assert status.returncode == 0
    report = json.loads(status.stdout)
    assert report["ocpp"] == {"connected": False, "version": None, "queued": 0}
    (evse,) = report["evses"]
    for key in (
        "cp_state",
        "pwm",
        "duty_percent",
        "offered_a",
        "contactor_closed",
        "power_w",
        "energy_wh",
        "connector_status",
        "ocpp_connected",
        "transaction_id",
    ):
        assert key in evse
    assert evse["cp_state"] == "B" and evse["connector_status"] == "SuspendedEV"
    table = evse_cli("status", "--config", str(station.config))
    assert table.returncode == 0 and "SuspendedEV" in table.stdout


def test_list_mode_charges_only_for_an_allowed_token_and_stops_on_the_same_token(tmp_path: Path) -> None:
    path = tmp_path / "evse.toml"
    path.write_text(SIM_CONFIG.read_text().replace('mode = "free"', 'mode = "list"'))
    st = start(path)
    try:
        st.rig.charge()
        st.rig.swipe("DEADBEEF")  # not in auth.allow
        time.sleep(0.5)
        assert st.rig.status()["transaction_id"] is None and not st.rig.status()["contactor_closed"]
        assert st.rig.status()["connector_status"] == "Preparing"
        st.rig.swipe("04A1B2C3")
        tx = st.rig.wait_until(lambda s: s["contactor_closed"], timeout=5)["transaction_id"]
        st.rig.swipe("04A1B2C3")  # PWM off; this EV stays in C, so it opens after 6 s (seq. 10.2)
        done = st.rig.wait_until(lambda s: not s["contactor_closed"] and s["transaction_id"] is None, 8)
        assert done["connector_status"] == "Finishing"
        st.wait_db([("04A1B2C3", "Local")], "SELECT id_tag, stop_reason FROM transactions WHERE id = ?", tx)
    finally:
        assert stop(st) == 0


def test_a_second_daemon_on_the_same_socket_refuses_to_start(station: Station) -> None:
    result = evse_cli("run", "--config", str(station.config))
    assert result.returncode == 1  # not a config problem: systemd retries
    assert "already listening" in result.stderr
    assert station.rig.status()["ok"] is True


def test_sigterm_stays_within_2_s_while_another_process_locks_the_database(station: Station) -> None:
    charging(station)
    locker = sqlite3.connect(station.state_dir / "evse.db", timeout=5)
    locker.execute("BEGIN IMMEDIATE")  # a technician's sqlite3 shell in the middle of a write
    try:
        started = time.monotonic()
        assert stop(station) == 0
        assert time.monotonic() - started < 2.0
        assert station.hardware()["contactor_closed"] is False
    finally:
        locker.rollback()
        locker.close()


def test_start_after_a_crash_while_the_database_is_locked(config: Path) -> None:
    first = start(config)
    tx = charging(first)["transaction_id"]
    stop(first, signal.SIGKILL)
    locker = sqlite3.connect(config.parent / "var" / "evse.db", timeout=5)
    locker.execute("BEGIN IMMEDIATE")
    try:
        second = start(config)  # comes up although it cannot record the PowerLoss yet
    finally:
        locker.rollback()
        locker.close()
    try:
        deadline = time.monotonic() + 5
        while second.db("SELECT stop_reason FROM transactions WHERE id = ?", tx) != [("PowerLoss",)]:
            assert time.monotonic() < deadline, "PowerLoss never recorded"
            time.sleep(0.1)
    finally:
        assert stop(second) == 0
