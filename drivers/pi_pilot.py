"""The control pilot on a Raspberry Pi: kernel PWM out, ADS1115 over I2C in.

Out: the board's op-amp turns the 3.3 V PWM into +/-12 V, so a duty of 100 % is a
steady +12 V (no current offered) and 0 % is a steady -12 V (state F). The kernel's
hardware PWM (sysfs, nanosecond duty) generates it; gpiozero's software PWM is an
explicit fallback with 1 % (0.6 A) resolution.

In: an ADS1115 cannot see both halves of one 1 kHz period (a conversion takes over
1 ms), so the reliable wiring is two peak detectors on two channels (``adc_mode =
"peak"``). ``"window"`` reads one channel several times and takes the extremes, which
only approximates the levels. Pilot volts = ADC volts x ``adc_scale`` + ``adc_offset_v``
(the board's divider).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

from controller.safety.pilot import PilotMode, PilotSample
from drivers.base import DriverError

log = logging.getLogger(__name__)

PERIOD_NS = 1_000_000  # 1 kHz
EXPORT_WAIT_S = 1.0  # udev needs a moment to hand a freshly exported channel to group gpio


def output_duty(mode: PilotMode, duty_percent: float, invert: bool = False) -> float:
    """The duty (percent) that puts ``mode`` on the pilot through the board's amplifier."""
    duty = {PilotMode.STEADY: 100.0, PilotMode.NEGATIVE: 0.0}.get(mode, duty_percent)
    return 100.0 - duty if invert else duty


class SysfsPwm:
    """One channel of the kernel PWM under /sys/class/pwm."""

    def __init__(
        self, chip: int, channel: int, root: Path = Path("/sys/class/pwm"), idle_duty: float = 100.0
    ) -> None:
        self._duty_fd = -1
        self.chip_dir = root / f"pwmchip{chip}"
        self.dir = self.chip_dir / f"pwm{channel}"
        if not self.chip_dir.is_dir():
            raise DriverError(
                f"{self.chip_dir} does not exist: enable the kernel PWM (dtoverlay=pwm,pin=18,func=2 "
                "or dtoverlay=pwm-2chan in /boot/firmware/config.txt, then reboot) and check pwm_chip"
            )
        try:
            if not self.dir.is_dir():
                (self.chip_dir / "export").write_text(str(channel))
            self._wait_writable()
            self._duty_fd = os.open(self.dir / "duty_cycle", os.O_WRONLY)
            self.set_duty(0.0)  # a duty longer than the new period would refuse the period
            (self.dir / "period").write_text(str(PERIOD_NS))
            self.set_duty(idle_duty)  # +12 V through the board's amplifier: nothing offered
            (self.dir / "enable").write_text("1")
        except OSError as exc:
            self.close()
            raise DriverError(
                f"cannot drive {self.dir}: {exc.strerror}; the evse user needs group "
                "gpio and the udev rule 90-evse-pwm.rules"
            ) from exc

    def _wait_writable(self) -> None:
        deadline = time.monotonic() + EXPORT_WAIT_S
        while not os.access(self.dir / "duty_cycle", os.W_OK) and time.monotonic() < deadline:
            time.sleep(0.02)

    def set_duty(self, percent: float) -> None:
        if self._duty_fd < 0:  # closed (a safe exit from another thread): never a stale fd
            raise DriverError(f"{self.dir} is closed")
        os.pwrite(self._duty_fd, f"{round(PERIOD_NS * percent / 100)}\n".encode(), 0)

    def close(self) -> None:
        fd, self._duty_fd = self._duty_fd, -1
        if fd >= 0:
            os.close(fd)


class GpiozeroPwm:
    """Software PWM through gpiozero: 1 % steps; only when no hardware PWM is wired."""

    def __init__(self, pin: int, pin_factory: Any = None) -> None:
        from gpiozero import PWMOutputDevice

        log.warning(
            "pilot PWM on GPIO %d through gpiozero: software-timed with 1 %% duty steps "
            '(0.6 A); use the kernel hardware PWM (pwm = "sysfs") on a real charger',
            pin,
        )
        self.device = PWMOutputDevice(pin, frequency=1000, initial_value=1.0, pin_factory=pin_factory)

    def set_duty(self, percent: float) -> None:
        self.device.value = round(percent) / 100

    def close(self) -> None:
        self.device.close()


class I2cBus(Protocol):
    def write_i2c_block_data(self, address: int, register: int, data: list[int]) -> None: ...
    def read_i2c_block_data(self, address: int, register: int, length: int) -> list[int]: ...


class Ads1115:
    """ADS1115 in continuous conversion at 860 SPS, +/-4.096 V full scale."""

    CONVERSION, CONFIG = 0x00, 0x01
    FULL_SCALE_V = 4.096
    CONVERSION_S = 0.0013  # one conversion at 860 SPS, with margin

    def __init__(self, bus: I2cBus, address: int) -> None:
        self.bus, self.address = bus, address
        self.channel: int | None = None

    @staticmethod
    def config_word(channel: int) -> int:
        mux = 0b100 + channel  # AINx against GND
        pga = 0b001  # +/-4.096 V
        return (mux << 12) | (pga << 9) | (0 << 8) | (0b111 << 5) | 0b11  # continuous, 860 SPS, no comparator

    def select(self, channel: int) -> None:
        if channel != self.channel:
            word = self.config_word(channel)
            self.channel = None  # unknown until the write succeeded
            self.bus.write_i2c_block_data(self.address, self.CONFIG, [word >> 8, word & 0xFF])
            self.channel = channel
            time.sleep(2 * self.CONVERSION_S)  # the first conversion after a switch is stale

    def read_volts(self) -> float:
        high, low = self.bus.read_i2c_block_data(self.address, self.CONVERSION, 2)
        raw = int.from_bytes(bytes([high, low]), "big", signed=True)
        return raw * self.FULL_SCALE_V / 32768


class PiPilot:
    """PilotDriver for a Pi board: PWM generator plus ADS1115 level sensing."""

    def __init__(self, pwm: SysfsPwm | GpiozeroPwm, adc: Ads1115, options: dict[str, Any]) -> None:
        self.pwm, self.adc = pwm, adc
        self.invert = bool(options.get("pwm_invert", False))
        self.mode = options.get("adc_mode", "peak")
        self.scale = float(options.get("adc_scale", 7.273))
        self.offset = float(options.get("adc_offset_v", -12.0))
        self.channel = int(options.get("adc_channel", 0))
        self.channel_low = int(options.get("adc_channel_low", 1))
        self.window = int(options.get("adc_window", 8))

    def set_output(self, mode: PilotMode, duty_percent: float) -> None:
        self.pwm.set_duty(output_duty(mode, duty_percent, self.invert))

    def _pilot_volts(self, channel: int) -> float:
        self.adc.select(channel)
        return self.adc.read_volts() * self.scale + self.offset

    def sample(self) -> PilotSample:
        try:
            if self.mode == "peak":
                return PilotSample(self._pilot_volts(self.channel), self._pilot_volts(self.channel_low))
            self.adc.select(self.channel)
            levels = []
            for _ in range(self.window):
                levels.append(self.adc.read_volts() * self.scale + self.offset)
                time.sleep(Ads1115.CONVERSION_S)
            return PilotSample(max(levels), min(levels))
        except OSError as exc:
            raise DriverError(
                f"ADS1115 at 0x{self.adc.address:02X} does not answer: {exc}; check "
                "I2C is enabled, the wiring and adc_address"
            ) from exc

    def close(self) -> None:
        try:
            self.set_output(PilotMode.STEADY, 100.0)  # +12 V: nothing offered
        finally:
            self.pwm.close()


def build_pilot(options: dict[str, Any]) -> PiPilot:
    pwm: SysfsPwm | GpiozeroPwm
    idle = output_duty(PilotMode.STEADY, 100.0, bool(options.get("pwm_invert", False)))
    if options.get("pwm", "sysfs") == "gpiozero":
        pwm = GpiozeroPwm(int(options["pwm_pin"]))
    else:
        pwm = SysfsPwm(
            int(options["pwm_chip"]),
            int(options["pwm_channel"]),
            Path(options.get("pwm_sysfs", "/sys/class/pwm")),
            idle_duty=idle,
        )
    if options.get("adc_mode", "peak") == "window":
        log.warning(
            'adc_mode = "window": an ADS1115 conversion averages over more than one PWM '
            "period, so the levels read are means, not the pilot's high and low; wire two "
            'peak detectors (adc_mode = "peak") on a charger'
        )
    try:
        from smbus2 import SMBus

        bus = SMBus(int(options["i2c_bus"]))
    except (OSError, FileNotFoundError) as exc:
        pwm.close()
        raise DriverError(
            f"cannot open /dev/i2c-{options['i2c_bus']}: {exc}; enable I2C "
            "(raspi-config) and add the evse user to group i2c"
        ) from exc
    return PiPilot(pwm, Ads1115(bus, int(options["adc_address"])), options)
