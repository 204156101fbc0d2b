"""Raspberry Pi pilot, contactor and residual-current drivers at the hardware edge.

GPIO runs on gpiozero's MockFactory; the kernel PWM is a sysfs tree in a temp dir; the
ADS1115 sits behind a fake SMBus that answers like the chip.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockConnectedPin, MockFactory, MockPWMPin

from controller.doctor import rcd_self_test
from controller.safety.pilot import CpState, PilotDetector, PilotMode
from controller.safety.supervisor import Inputs, Supervisor
from drivers.base import DriverError
from drivers.pi_gpio import GpioContactor, GpioResidualCurrent
from drivers.pi_pilot import Ads1115, GpiozeroPwm, PiPilot, SysfsPwm, output_duty
from drivers.sim import pilot_levels

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    factory = MockFactory(pin_class=MockPWMPin)
    Device.pin_factory = factory
    yield factory
    factory.reset()
    Device.pin_factory = None


def pi_config_without_hardware(tmp_path: Path) -> Path:
    """config/evse.pi.toml with its state and PWM tree moved into tmp_path (no PWM there)."""
    config = tmp_path / "evse.toml"
    config.write_text(
        (ROOT / "config/evse.pi.toml")
        .read_text()
        .replace('dir = "/var/lib/evse"', f'dir = "{tmp_path / "state"}"')
        .replace("pwm_chip = 0,", f'pwm_chip = 0, pwm_sysfs = "{tmp_path / "nopwm"}",')
    )
    return config


def fake_pwm_chip(root: Path, exported: bool = True) -> Path:
    chip = root / "pwmchip0"
    chip.mkdir(parents=True)
    (chip / "export").write_text("")
    if exported:
        channel = chip / "pwm0"
        channel.mkdir()
        for name in ("period", "duty_cycle", "enable"):
            (channel / name).write_text("0")
    return chip


def duty_ns(chip: Path) -> int:
    return int((chip / "pwm0" / "duty_cycle").read_text().splitlines()[0])  # sysfs keeps one value


def test_sysfs_pwm_sets_1_khz_and_nanosecond_duty(tmp_path: Path) -> None:
    chip = fake_pwm_chip(tmp_path)
    pwm = SysfsPwm(0, 0, tmp_path)
    assert (chip / "pwm0" / "period").read_text() == "1000000"
    assert (chip / "pwm0" / "enable").read_text() == "1"
    assert duty_ns(chip) == 1_000_000  # starts at +12 V: nothing offered
    pwm.set_duty(output_duty(PilotMode.PWM, 53.33))
    assert duty_ns(chip) == 533_300
    pwm.set_duty(output_duty(PilotMode.NEGATIVE, 0.0))
    assert duty_ns(chip) == 0  # -12 V: state F
    pwm.close()


def test_sysfs_pwm_exports_the_channel_and_waits_for_it(tmp_path: Path) -> None:
    chip = fake_pwm_chip(tmp_path, exported=False)

    def kernel() -> None:  # the kernel creates pwm0 once "0" is written to export
        while (chip / "export").read_text() != "0":
            time.sleep(0.005)
        channel = chip / "pwm0"
        channel.mkdir()
        for name in ("period", "duty_cycle", "enable"):
            (channel / name).write_text("0")

    threading.Thread(target=kernel, daemon=True).start()
    SysfsPwm(0, 0, tmp_path).close()
    assert (chip / "pwm0" / "enable").read_text() == "1"


def test_missing_pwm_chip_says_which_overlay_to_enable(tmp_path: Path) -> None:
    with pytest.raises(DriverError, match="dtoverlay=pwm"):
        SysfsPwm(0, 0, tmp_path)


def test_inverting_boards_get_the_complement() -> None:
    assert output_duty(PilotMode.STEADY, 100.0, invert=True) == 0.0
    assert output_duty(PilotMode.PWM, 26.66, invert=True) == pytest.approx(73.34)


class FakeAds1115Bus:
    """Answers like an ADS1115: the conversion register holds the selected channel's level."""

    def __init__(self, volts: dict[int, float]) -> None:
        self.volts = volts
        self.writes: list[tuple[int, int, list[int]]] = []
        self.fail = False

    def write_i2c_block_data(self, address: int, register: int, data: list[int]) -> None:
        self.writes.append((address, register, data))

    def read_i2c_block_data(self, address: int, register: int, length: int) -> list[int]:
        if self.fail:
            raise OSError(121, "Remote I/O error")
        config = (self.writes[-1][2][0] << 8) | self.writes[-1][2][1]
        channel = ((config >> 12) & 0b111) - 0b100
        raw = round(self.volts[channel] / 4.096 * 32768)
        return list(raw.to_bytes(2, "big", signed=True))


def adc_volts(pilot_v: float, scale: float = 7.273, offset: float = -12.0) -> float:
    return (pilot_v - offset) / scale


def test_ads1115_config_word_selects_the_channel_continuous_860_sps() -> None:
    assert Ads1115.config_word(0) == 0x42E3  # AIN0, +/-4.096 V, continuous, 860 SPS, no comparator
    assert Ads1115.config_word(1) == 0x52E3


@pytest.mark.parametrize("state", [CpState.A, CpState.B, CpState.C, CpState.D])
def test_peak_detector_wiring_reads_pilot_states_and_the_diode(state: CpState, tmp_path: Path) -> None:
    fake_pwm_chip(tmp_path)
    levels = pilot_levels(state, PilotMode.PWM, diode=True)
    bus = FakeAds1115Bus({0: adc_volts(levels.high_v), 1: adc_volts(levels.low_v)})
    pilot = PiPilot(SysfsPwm(0, 0, tmp_path), Ads1115(bus, 0x48), {"adc_mode": "peak"})
    detector = PilotDetector()
    for _ in range(2):
        sample = pilot.sample()
    assert sample.high_v == pytest.approx(levels.high_v, abs=0.01)
    assert sample.low_v == pytest.approx(-12.0, abs=0.01)
    assert [detector.feed(sample) for _ in range(2)][-1] is state
    pilot.close()


def test_an_adc_that_stops_answering_is_a_driver_error(tmp_path: Path) -> None:
    fake_pwm_chip(tmp_path)
    bus = FakeAds1115Bus({0: 2.0, 1: 0.0})
    pilot = PiPilot(SysfsPwm(0, 0, tmp_path), Ads1115(bus, 0x49), {})
    bus.fail = True
    with pytest.raises(DriverError, match="0x49 does not answer"):
        pilot.sample()
    pilot.close()


def test_closing_the_pilot_leaves_plus_12_volts(tmp_path: Path) -> None:
    chip = fake_pwm_chip(tmp_path)
    pilot = PiPilot(SysfsPwm(0, 0, tmp_path), Ads1115(FakeAds1115Bus({0: 0.0}), 0x48), {})
    pilot.set_output(PilotMode.PWM, 26.66)
    pilot.close()
    assert duty_ns(chip) == 1_000_000


def test_gpiozero_pwm_fallback_warns_about_its_resolution(
    pins: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        pwm = GpiozeroPwm(18)
    assert "1 % duty steps" in caplog.text
    pwm.set_duty(53.33)
    assert pins.pin(18).state == pytest.approx(0.53)
    assert pins.pin(18).frequency == 1000
    pwm.close()


def test_contactor_relay_and_normally_open_feedback(pins: MockFactory) -> None:
    contactor = GpioContactor(17, feedback_pin=27, feedback="no")
    assert pins.pin(17).state == 0  # starts open
    contactor.command(True)
    assert pins.pin(17).state == 1
    pins.pin(27).drive_high()
    assert contactor.feedback_closed()
    contactor.command(False)
    pins.pin(27).drive_low()
    assert not contactor.feedback_closed()
    contactor.close()
    assert pins.pin(17).state == 0


def test_normally_closed_feedback_is_inverted(pins: MockFactory) -> None:
    contactor = GpioContactor(17, feedback_pin=27, feedback="nc")
    pins.pin(27).drive_high()  # NC contact closed: main contacts open
    assert not contactor.feedback_closed()
    pins.pin(27).drive_low()
    assert contactor.feedback_closed()  # e.g. welded while the relay is off
    contactor.close()


def test_contactor_without_feedback_echoes_the_command_and_warns(
    pins: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        contactor = GpioContactor(17)
    assert "cannot be detected" in caplog.text
    contactor.command(True)
    assert contactor.feedback_closed()
    contactor.close()


def test_residual_current_trip_input_and_self_test() -> None:
    """The trip input and the test output as doctor's self-test (controller.safety.rcd) drives them."""
    factory = MockFactory()  # MockPin, so the connected test pin below is accepted
    Device.pin_factory = factory
    try:
        broken = GpioResidualCurrent(22, test_pin=23)
        assert broken.has_self_test and not broken.tripped()
        assert not rcd_self_test(broken)  # nothing answers the test input: the sensor is broken
        assert factory.pin(23).state == 0  # test input released
        factory.pin(22).drive_high()
        assert broken.tripped()
        assert not rcd_self_test(broken)  # stuck tripped: it never releases
        broken.close()
        factory.reset()
        # A working sensor: its trip output follows the test current.
        factory.pin(25, pin_class=MockConnectedPin, input_pin=factory.pin(22))
        rcd = GpioResidualCurrent(22, test_pin=25)
        assert rcd_self_test(rcd) and not rcd.tripped()
        rcd.close()
    finally:
        factory.reset()
        Device.pin_factory = None


def test_contactor_rests_its_minimum_interval_before_closing_again() -> None:
    sup = Supervisor(max_current_a=32, min_close_interval_s=1.0)
    now, closed, events = 0.0, False, []
    ev = CpState.C
    for step in range(200):
        now += 0.02
        if step == 50:
            ev = CpState.B  # the EV pauses
        if step == 60:
            ev = CpState.C  # and asks again at once
        out = sup.step(
            now,
            Inputs(
                sample=pilot_levels(ev, sup.pilot, True), feedback_closed=closed, authorized=True, limit_a=32
            ),
        )
        if out.contactor != closed:
            events.append((round(now, 2), out.contactor))
        closed = out.contactor
    (_, first), (opened_at, second), (reclosed_at, third) = events
    assert (first, second, third) == (True, False, True)
    assert reclosed_at - opened_at >= 1.0


def test_run_on_the_pi_config_without_pi_hardware_exits_1_for_a_retry_with_the_fix(tmp_path: Path) -> None:
    config = pi_config_without_hardware(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "controller", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 1  # missing hardware, not a bad file: systemd retries, result.stderr
    assert "evse 1: pilot:" in result.stderr and "dtoverlay=pwm" in result.stderr


def test_an_inverting_board_starts_at_plus_12_volts_too(tmp_path: Path) -> None:
    from drivers.pi_pilot import build_pilot

    chip = fake_pwm_chip(tmp_path)
    (chip / "pwm0" / "duty_cycle").write_text("2000000")  # left longer than 1 kHz by another tool
    with pytest.raises(DriverError, match="i2c"):  # no I2C bus here: the PWM is released again
        build_pilot(
            {
                "pwm_chip": 0,
                "pwm_channel": 0,
                "pwm_sysfs": str(tmp_path),
                "pwm_invert": True,
                "i2c_bus": 99,
                "adc_address": 0x48,
            }
        )
    assert duty_ns(chip) == 0  # inverted: 0 % is +12 V on this board


def test_a_closed_pwm_refuses_writes_instead_of_hitting_a_reused_fd(tmp_path: Path) -> None:
    fake_pwm_chip(tmp_path)
    pwm = SysfsPwm(0, 0, tmp_path)
    pwm.close()
    with pytest.raises(DriverError, match="closed"):
        pwm.set_duty(50.0)


def test_the_sampling_rate_must_fit_an_ads1115_sample(tmp_path: Path) -> None:
    from controller.config import ConfigError, load

    text = (
        (ROOT / "config/evse.pi.toml")
        .read_text()
        .replace("# [control]\n# sample_hz = 50", "[control]\nsample_hz = 500")
    )
    config = tmp_path / "evse.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=r"control\.sample_hz: at most 150"):
        load(config)
