"""The safety process seen from outside: ``evse run`` as a real subprocess, its safety
child found in /proc, the contactor read through the rig socket the child serves.

Opening times are taken from the simulated contactor's own record of the open command
(the rig's ``timing``, on the system-wide monotonic clock), so a busy test machine
delays the test's polling, not the figure."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from hil.outside import descendants
from hil.simrig import SimRig
from tests.test_end_to_end import Station, charging, start, stop

OPEN_BUDGET_S = 0.100  # IEC 61851-1 Table A.6 seq. 8.1, and issue 19's kill -9 target
FORBIDDEN = ("_ssl", "_asyncio", "_sqlite3", "_rust.abi3", "websockets")


@pytest.fixture
def station(config: Path) -> object:
    running = start(config)
    yield running
    if running.proc.poll() is None:
        stop(running, signal.SIGKILL)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    from tests.test_end_to_end import SIM_CONFIG

    path = tmp_path / "evse.toml"
    path.write_text(SIM_CONFIG.read_text())
    return path


def safety_pid(station: Station) -> int:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        children = descendants(station.proc.pid)
        if children:
            return children[0]
        time.sleep(0.01)
    raise AssertionError("evse run has no safety process")


def opened_after(rig: SimRig, since: float, timeout: float = 2.0) -> float:
    """Seconds from ``since`` to the open command the simulated contactor recorded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        timing = rig.request("timing", evse=1)
        if not timing["contactor_command"]:
            return float(timing["contactor_commanded_at"]) - since
        time.sleep(0.002)
    raise AssertionError("the contactor did not open")


def test_the_safety_process_is_small_named_and_holds_no_ocpp_stack(station: Station) -> None:
    pid = safety_pid(station)
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "evse-safety"
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert not [name for name in FORBIDDEN if name in maps]
    ocpp_maps = Path(f"/proc/{station.proc.pid}/maps").read_text()
    assert "_asyncio" in ocpp_maps  # the check would see one
    assert station.rig.status()["cp_state"] == "A"


def test_kill_9_of_the_ocpp_process_mid_charge_opens_the_contactor_in_budget(station: Station) -> None:
    """Issue 19: kill -9 of the OCPP process while charging -> contactor open <= 100 ms."""
    charging(station)
    child = safety_pid(station)
    killed_at = time.monotonic()
    os.kill(station.proc.pid, signal.SIGKILL)
    assert opened_after(station.rig, killed_at) <= OPEN_BUDGET_S
    status = station.rig.status()  # the connection made before the kill is still answered
    assert status["contactor_closed"] is False and status["pwm"] is False
    assert status["ocpp_connected"] is False
    assert station.proc.wait(timeout=5) == -signal.SIGKILL
    with pytest.raises(OSError):  # no new clients: the socket is free for the next daemon
        SimRig(station.config.parent / "var" / "sim.sock")
    deadline = time.monotonic() + 5
    while child in descendants(1) or Path(f"/proc/{child}").exists():
        assert time.monotonic() < deadline, "the orphaned safety process did not exit"
        time.sleep(0.05)


def test_a_stalled_ocpp_process_opens_the_contactor_in_budget_and_charging_resumes(station: Station) -> None:
    """Issue 19: SIGSTOP of the OCPP process while charging -> contactor open in budget; the
    rig answers meanwhile; after SIGCONT the same transaction charges again."""
    before = charging(station)
    stopped_at = time.monotonic()
    os.kill(station.proc.pid, signal.SIGSTOP)
    try:
        assert opened_after(station.rig, stopped_at) <= OPEN_BUDGET_S
        status = station.rig.status()
        assert status["contactor_closed"] is False and status["pwm"] is False
    finally:
        os.kill(station.proc.pid, signal.SIGCONT)
    again = station.rig.wait_until(lambda s: s["contactor_closed"] and s["power_w"] > 0, timeout=10)
    assert again["transaction_id"] == before["transaction_id"]
    assert "the OCPP process is stopped" in station.log.read_text()


def test_sigterm_to_the_whole_group_still_ends_the_transaction_with_a_final_reading(station: Station) -> None:
    """Ctrl-C or a stop that signals every process: the safety process opens at once and
    stays until the OCPP process has read the meter and stopped."""
    tx = charging(station)["transaction_id"]
    os.killpg(os.getpgid(station.proc.pid), 0)  # the group exists
    os.kill(safety_pid(station), signal.SIGTERM)
    station.proc.send_signal(signal.SIGTERM)
    assert station.proc.wait(timeout=5) == 0
    assert station.db("SELECT stop_reason FROM transactions WHERE id = ?", tx) == [("Reboot",)]
    assert station.hardware()["contactor_closed"] is False


def test_a_dead_safety_process_is_a_fault_and_the_daemon_exits_for_a_restart(station: Station) -> None:
    charging(station)
    os.kill(safety_pid(station), signal.SIGKILL)
    code = station.proc.wait(timeout=10)
    assert code != 0  # systemd's Restart=on-failure starts it again
    log = station.log.read_text()
    assert "the safety process" in log and "Faulted" in log


def test_a_reload_sets_the_safety_process_log_levels_too(station: Station) -> None:
    charging(station)  # the OCPP process is up (the rig answers before it is)
    text = station.config.read_text()
    station.config.write_text(text + '\n[logging]\nmodules = { "controller.safety.process" = "debug" }\n')
    station.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "log levels of the reload applied" not in station.log.read_text():
        assert time.monotonic() < deadline, "the safety process did not take the reload's levels"
        time.sleep(0.05)


def test_signals_during_start_up_neither_kill_nor_hang_the_daemon(config: Path) -> None:
    """The rig answers before the OCPP process is up: a reload then is ignored, a SIGTERM
    then still stops the daemon cleanly (exit 0, CONTRACTS section 1)."""
    early = start(config)
    early.proc.send_signal(signal.SIGHUP)
    early.proc.send_signal(signal.SIGTERM)
    assert stop(early) == 0


def test_an_ev_swapped_while_the_ocpp_process_was_stopped_ends_the_first_session(station: Station) -> None:
    """EV 1 leaves and EV 2 arrives while the OCPP process is stopped: once it runs again,
    the first transaction ends (EV disconnected) and EV 2 gets a session of its own; a
    permit given for EV 1 never closes the contactor for EV 2."""
    first = charging(station)["transaction_id"]
    os.kill(station.proc.pid, signal.SIGSTOP)
    try:
        station.rig.unplug()
        time.sleep(0.3)
        station.rig.charge(max_current_a=16)
        time.sleep(0.3)
        assert station.rig.status()["contactor_closed"] is False
    finally:
        os.kill(station.proc.pid, signal.SIGCONT)
    station.wait_db([("EVDisconnected",)], "SELECT stop_reason FROM transactions WHERE id = ?", first)
    again = station.rig.wait_until(lambda s: s["contactor_closed"] and s["transaction_id"], timeout=10)
    assert again["transaction_id"] != first


def test_an_over_long_rig_line_sent_in_pieces_gets_one_error(station: Station) -> None:
    """CONTRACTS section 3: a bad line gets an error reply and the connection stays."""
    from drivers.sim_rig import MAX_LINE

    line = b'{"cmd": "status", "pad": "' + b"x" * (MAX_LINE + 4000) + b'"}'
    station.rig.sock.sendall(line[: MAX_LINE - 10])
    time.sleep(0.1)
    reply = station.rig.send_line(line[MAX_LINE - 10 :])
    assert reply["ok"] is False and "longer" in reply["error"]
    assert station.rig.status()["ok"] is True
