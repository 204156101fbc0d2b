"""`evse doctor`: device checks with their fixes."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockConnectedPin, MockFactory

from controller import doctor
from controller.config import load
from controller.safety.pilot import CpState, PilotMode
from drivers.pi_gpio import GpioContactor
from drivers.pi_pilot import Ads1115, PiPilot, SysfsPwm
from drivers.sim import pilot_levels
from tests.test_pi_drivers import FakeAds1115Bus, adc_volts, fake_pwm_chip, pi_config_without_hardware

ROOT = Path(__file__).resolve().parent.parent


def evse_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_simulated_station_passes(tmp_path: Path) -> None:
    config = tmp_path / "evse.toml"
    config.write_text((ROOT / "config/evse.sim.toml").read_text())
    result = evse_cli("doctor", "--config", str(config))
    assert result.returncode == 0, result.stdout
    assert "FAIL" not in result.stdout and "evse 1 meter" in result.stdout


def test_pi_config_without_pi_hardware_names_each_fix(tmp_path: Path) -> None:
    config = pi_config_without_hardware(tmp_path)
    result = evse_cli("doctor", "--config", str(config))
    assert result.returncode == 1
    table = result.stdout
    assert "storage" in table and "evse 1 pilot" in table and "evse 1 meter" in table
    assert "fix: add dtoverlay=pwm" in table
    assert "rfid" in table and table.count("FAIL") >= 3


@pytest.fixture
def wired_pins() -> Iterator[MockFactory]:
    """GPIO 17 drives the relay; its auxiliary contact (NO) answers on GPIO 27."""
    factory = MockFactory()  # MockPin: a MockConnectedPin (its subclass) is accepted for the relay
    Device.pin_factory = factory
    feedback = factory.pin(27)
    factory.pin(17, pin_class=MockConnectedPin, input_pin=feedback)
    yield factory
    factory.reset()
    Device.pin_factory = None


def fake_pilot(tmp_path: Path, state: CpState) -> Any:
    fake_pwm_chip(tmp_path)
    levels = pilot_levels(state, PilotMode.STEADY)
    bus = FakeAds1115Bus({0: adc_volts(levels.high_v), 1: adc_volts(levels.low_v)})
    return lambda options: PiPilot(SysfsPwm(0, 0, tmp_path), Ads1115(bus, 0x48), options)


CONTACTOR = {"pin": 17, "feedback_pin": 27, "feedback": "no", "feedback_timeout_s": 0.05}


def test_actuate_switches_the_contactor_only_with_no_ev(
    tmp_path: Path, wired_pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(doctor.HARDWARE, ("pilot", "pi"), fake_pilot(tmp_path, CpState.A))
    check, state = doctor.check_pilot("evse 1 pilot", {})
    assert check.ok and state is CpState.A and "+12" in check.detail
    no_ev = partial(doctor.HARDWARE[("pilot", "pi")], {})
    switched = doctor.check_contactor("evse 1 contactor", CONTACTOR, actuate=True, pilot=no_ev)
    assert switched.ok, switched
    assert "feedback followed" in switched.detail
    assert wired_pins.pin(17).state == 0  # left open
    ev = partial(fake_pilot(tmp_path / "ev", CpState.B), {})
    refused = doctor.check_contactor("evse 1 contactor", CONTACTOR, actuate=True, pilot=ev)
    assert refused.ok is None and "unplug" in refused.fix
    unreadable = doctor.check_contactor("evse 1 contactor", CONTACTOR, actuate=True, pilot=None)
    assert unreadable.ok is None and "unplug" in unreadable.fix
    untouched = doctor.check_contactor("evse 1 contactor", CONTACTOR, actuate=False, pilot=no_ev)
    assert untouched.ok and "--actuate" in untouched.detail


def test_feedback_closed_while_the_relay_is_off_is_reported_as_a_weld() -> None:
    factory = MockFactory()  # not connected: the auxiliary contact stays closed whatever the coil does
    Device.pin_factory = factory
    try:
        factory.pin(27).drive_high()
        check = doctor.check_contactor("evse 1 contactor", CONTACTOR, actuate=False, pilot=None)
        assert check.ok is False and "welded" in check.fix
    finally:
        factory.reset()
        Device.pin_factory = None


def test_pilot_out_of_calibration_fails_with_the_calibration_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(doctor.HARDWARE, ("pilot", "pi"), fake_pilot(tmp_path, CpState.E))
    check, _ = doctor.check_pilot("evse 1 pilot", {})
    assert check.ok is False and "adc_scale" in check.fix


class RecordingContactor:
    """The GPIO contactor, recording which thread gives each command."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.driver = GpioContactor(options["pin"], options["feedback_pin"], options["feedback"])
        self.commands: list[tuple[bool, str]] = []
        RecordingContactor.made.append(self)

    made: list[RecordingContactor] = []

    def command(self, closed: bool) -> None:
        self.commands.append((closed, threading.current_thread().name))
        self.driver.command(closed)

    def feedback_closed(self) -> bool:
        return self.driver.feedback_closed()

    def close(self) -> None:
        self.driver.close()


def actuated_doctor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pilot_states: list[CpState]
) -> tuple[doctor.Check, list[tuple[bool, str]]]:
    """`evse doctor --actuate` on the Pi config, the pilot reading one state per opening."""
    config = pi_config_without_hardware(tmp_path)
    config.write_text(
        "\n".join(line for line in config.read_text().splitlines() if not line.startswith("rcd ="))
    )
    pilots = iter(fake_pilot(tmp_path / str(i), state) for i, state in enumerate(pilot_states))
    monkeypatch.setitem(doctor.HARDWARE, ("pilot", "pi"), lambda options: next(pilots)(options))
    monkeypatch.setitem(doctor.HARDWARE, ("contactor", "gpio"), RecordingContactor)
    RecordingContactor.made.clear()
    checks = doctor.run(load(config), actuate=True)
    [contactor] = [c for c in checks if c.device == "evse 1 contactor"]
    return contactor, [c for made in RecordingContactor.made for c in made.commands]


def test_actuate_runs_the_contactor_test_through_the_control_loop(
    tmp_path: Path, wired_pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    check, commands = actuated_doctor(tmp_path, monkeypatch, [CpState.A, CpState.A])
    assert check.ok is True and check.detail == "closed and opened, feedback followed both"
    assert (True, "control-0") in commands and commands[-1][0] is False
    assert {thread for _, thread in commands} == {"control-0"}  # only the control loop commands it
    assert wired_pins.pin(17).state == 0


def test_actuate_refuses_when_an_ev_arrived_after_the_pilot_check(
    tmp_path: Path, wired_pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pilot check reads A; by the time the contactor is tested an EV is connected.
    check, commands = actuated_doctor(tmp_path, monkeypatch, [CpState.A, CpState.B])
    assert check.ok is None and check.detail == "not switched: the pilot does not read A (no EV)"
    assert "unplug" in check.fix
    assert all(closed is False for closed, _ in commands)  # never closed
