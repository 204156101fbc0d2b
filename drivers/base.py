"""The interfaces every driver implements, real or simulated.

Pilot, contactor and residual-current drivers are synchronous and fast: the control
thread calls them at the pilot sampling rate. Meter and RFID drivers are asynchronous:
they talk over buses with timeouts and run on the event loop, never in the control
thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, TypeGuard

from controller.safety.pilot import PilotMode, PilotSample


class DriverError(Exception):
    """A device did not answer or answered nonsense; the message says which and why."""


class PilotDriver(Protocol):
    def set_output(self, mode: PilotMode, duty_percent: float) -> None: ...
    def sample(self) -> PilotSample: ...
    def close(self) -> None:
        """Leave the pilot safe: steady +12 V or off."""


class ContactorDriver(Protocol):
    def command(self, closed: bool) -> None: ...
    def feedback_closed(self) -> bool: ...
    def close(self) -> None:
        """Open the contactor and release the hardware."""


class WatchdogDriver(Protocol):
    def toggle(self) -> None: ...
    def close(self) -> None: ...


class ResidualCurrentDriver(Protocol):
    def tripped(self) -> bool: ...


class SelfTestingResidualCurrent(ResidualCurrentDriver, Protocol):
    """A sensor with a test input; the control loop times the test across its ticks."""

    def test_on(self) -> None: ...
    def test_off(self) -> None: ...


def self_testing(rcd: ResidualCurrentDriver | None) -> TypeGuard[SelfTestingResidualCurrent]:
    """Whether a residual-current driver has a test input (drivers say so by ``has_self_test``)."""
    return rcd is not None and bool(getattr(rcd, "has_self_test", False))


class LockDriver(Protocol):
    def command(self, locked: bool) -> None: ...
    def engaged(self) -> bool: ...
    def close(self) -> None:
        """Unlock and release the hardware."""


@dataclass(frozen=True, slots=True)
class MeterReading:
    energy_wh: float  # import register, never decreasing
    power_w: float
    current_a: tuple[float, ...]  # per phase
    voltage_v: tuple[float, ...]  # per phase


class MeterDriver(Protocol):
    async def read(self) -> MeterReading:
        """One reading; raises DriverError when the meter does not answer."""
        ...

    async def close(self) -> None: ...


class RfidDriver(Protocol):
    def tokens(self) -> AsyncIterator[str]:
        """Token ids as presented, uppercase hex, repeats already debounced."""
        ...

    async def close(self) -> None: ...
