"""Contactor and residual-current sensor on Raspberry Pi GPIO, through gpiozero.

The relay output starts off (open) and is driven off again on close. Feedback comes from
the contactor's auxiliary contact: ``feedback = "no"`` reads high when closed, ``"nc"``
reads high when open. Without a feedback pin the driver reports the command back, so a
weld cannot be detected: ``evse doctor`` flags that.
"""

from __future__ import annotations

import logging
from typing import Any

from drivers.base import DriverError

log = logging.getLogger(__name__)


def _gpio_error(what: str, pin: int, exc: Exception) -> DriverError:
    return DriverError(
        f"{what} on GPIO {pin}: {exc}; check the pin number and that the evse user is in group gpio"
    )


class GpioContactor:
    def __init__(
        self, pin: int, feedback_pin: int = -1, feedback: str = "no", pin_factory: Any = None
    ) -> None:
        from gpiozero import DigitalInputDevice, OutputDevice

        try:
            self.relay = OutputDevice(pin, active_high=True, initial_value=False, pin_factory=pin_factory)
        except Exception as exc:
            raise _gpio_error("contactor relay", pin, exc) from exc
        self.aux = None
        if feedback_pin >= 0:
            try:
                self.aux = DigitalInputDevice(
                    feedback_pin, pull_up=None, active_state=True, pin_factory=pin_factory
                )
            except Exception as exc:
                self.relay.close()
                raise _gpio_error("contactor feedback", feedback_pin, exc) from exc
        else:
            log.warning(
                "contactor on GPIO %d has no feedback pin: a welded contactor cannot be detected", pin
            )
        self.normally_open = feedback == "no"

    def command(self, closed: bool) -> None:
        self.relay.value = closed

    def feedback_closed(self) -> bool:
        if self.aux is None:
            return bool(self.relay.value)
        return bool(self.aux.value) == self.normally_open

    def close(self) -> None:
        try:
            self.relay.off()
        finally:
            self.relay.close()
            if self.aux is not None:
                self.aux.close()


class GpioResidualCurrent:
    """The trip output of a residual-current sensor (e.g. 6 mA DC), with its test input.

    The self-test's sequence and timing are not here: ``controller.safety.rcd``."""

    def __init__(
        self, pin: int, test_pin: int = -1, active_high: bool = True, pin_factory: Any = None
    ) -> None:
        from gpiozero import DigitalInputDevice, OutputDevice

        try:
            self.trip = DigitalInputDevice(
                pin, pull_up=None, active_state=active_high, pin_factory=pin_factory
            )
            self.test = (
                OutputDevice(test_pin, initial_value=False, pin_factory=pin_factory)
                if test_pin >= 0
                else None
            )
        except Exception as exc:
            raise _gpio_error("residual-current sensor", pin, exc) from exc

    @property
    def has_self_test(self) -> bool:
        return self.test is not None

    def tripped(self) -> bool:
        return bool(self.trip.value)

    def test_on(self) -> None:
        if self.test is not None:
            self.test.on()

    def test_off(self) -> None:
        if self.test is not None:
            self.test.off()

    def close(self) -> None:
        self.trip.close()
        if self.test is not None:
            self.test.close()


class GpioLock:
    """A connector lock: one output that holds it locked, and its position switch."""

    def __init__(self, pin: int, feedback_pin: int, feedback: str = "no", pin_factory: Any = None) -> None:
        from gpiozero import DigitalInputDevice, OutputDevice

        try:
            self.actuator = OutputDevice(pin, initial_value=False, pin_factory=pin_factory)
            self.switch = DigitalInputDevice(
                feedback_pin, pull_up=None, active_state=True, pin_factory=pin_factory
            )
        except Exception as exc:
            raise _gpio_error("connector lock", pin, exc) from exc
        self.normally_open = feedback == "no"

    def command(self, locked: bool) -> None:
        self.actuator.value = locked

    def engaged(self) -> bool:
        return bool(self.switch.value) == self.normally_open

    def close(self) -> None:
        try:
            self.actuator.off()
        finally:
            self.actuator.close()
            self.switch.close()


def build_lock(options: dict[str, Any]) -> GpioLock:
    return GpioLock(int(options["pin"]), int(options["feedback_pin"]), str(options.get("feedback", "no")))


class GpioWatchdog:
    """The line a hardware watchdog on the board watches; it drops the contactor if it stops."""

    def __init__(self, pin: int, pin_factory: Any = None) -> None:
        from gpiozero import OutputDevice

        try:
            self.line = OutputDevice(pin, initial_value=False, pin_factory=pin_factory)
        except Exception as exc:
            raise _gpio_error("hardware watchdog", pin, exc) from exc

    def toggle(self) -> None:
        self.line.toggle()

    def close(self) -> None:
        self.line.close()


def build_watchdog(options: dict[str, Any]) -> GpioWatchdog:
    return GpioWatchdog(int(options["pin"]))


def build_contactor(options: dict[str, Any]) -> GpioContactor:
    return GpioContactor(
        int(options["pin"]), int(options.get("feedback_pin", -1)), str(options.get("feedback", "no"))
    )


def build_rcd(options: dict[str, Any]) -> GpioResidualCurrent:
    return GpioResidualCurrent(
        int(options["pin"]), int(options.get("test_pin", -1)), bool(options.get("active_high", True))
    )
