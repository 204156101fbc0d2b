"""The seam between the OCPP process's services and the safety side: the control loops,
their drivers and the simulated world, in the safety process (``SafetyLink``) or, for
the in-process test bench, in this process (``LocalSafety``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from controller.safety.supervisor import ContactorTest
from controller.safety.view import EvseView
from drivers.base import MeterDriver, RfidDriver

if TYPE_CHECKING:
    from controller.runtime.status import StatusReport

Publish = Callable[[int, EvseView], None]


class ChannelPort(Protocol):
    """One EVSE's control loop as the services see it: what they give it, what it saw."""

    evse_id: int
    permit: tuple[bool, float]  # (energy authorized, limit in A)
    meter: tuple[bool, float | None]  # (meter answering, highest phase current)
    max_current_a: float  # the hardware cap; a reload changes it
    unlock_waiters: int  # UnlockConnector requests waiting (see runtime.remote.release_lock)
    view: EvseView | None
    lock_state: tuple[bool, bool]  # the lock as commanded, and as its switch reports it
    contactor_test: ContactorTest
    ticks: int  # grows with the loop's ticks; an answer must come from a later one

    @property
    def lock_fitted(self) -> bool: ...


class SafetySide(Protocol):
    @property
    def channels(self) -> Mapping[int, ChannelPort]: ...

    def sim_meter(self, evse_id: int) -> MeterDriver: ...

    def sim_rfid(self) -> RfidDriver: ...

    async def open(self) -> None:
        """Before anything reads a meter: the safety side answers (or StartupError)."""

    async def start(self, publish: Publish, report: StatusReport) -> None:
        """Views go to ``publish`` from now on; the rig's status comes from ``report``."""

    def set_logging(self, level: str, modules: Mapping[str, str]) -> None:
        """A reload's log levels, for the safety side too."""

    def push_status(self) -> None:
        """Where the rig is in another process: send it the station's status now."""

    def failure(self) -> str | None:
        """Why the safety side can no longer keep the station safe, if it cannot."""

    async def make_safe(self) -> None:
        """At the stop: every contactor open, the PWM off (meters still answer)."""

    async def close(self) -> None:
        """The last step of the stop: the simulated world saved, the safety side ended."""
