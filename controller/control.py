"""The control loop: samples every pilot, steps its supervisor and drives the hardware.

Each EVSE has its own OS thread, not the event loop, so nothing the event loop does
(OCPP traffic, TLS, JSON, SQLite) can delay it: the event loop only hands it permits
and meter states through plain attribute writes, and it hands back ``EvseView``s through
``call_soon_threadsafe``. The daemon shortens the interpreter's GIL switch interval so
a busy event loop yields the GIL to this thread within about a millisecond.

and a driver that hangs on one EVSE cannot delay another.

Only this module commands contactors, and only as its supervisor says. An open command
is repeated every tick, so a command that failed or a contactor that moved by itself is
corrected at once. When the thread ends (stop, an exception) its ``finally`` opens the
contactor and takes the PWM off; when it cannot end because a driver hangs, ``stop()``
does that from the calling thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from controller.pilot import CONNECTED, CpState, PilotMode, PilotSample
from controller.safety import Fault, Inputs, Output, RcdTest, Supervisor
from controller.station import EvseView
from drivers.base import (
    ContactorDriver,
    LockDriver,
    PilotDriver,
    ResidualCurrentDriver,
    WatchdogDriver,
)

log = logging.getLogger(__name__)

BROKEN_PILOT = PilotSample(0.0, 0.0)  # a pilot we cannot read is treated as shorted (E)


@dataclass
class LoopStats:
    ticks: int = 0
    late_ticks: int = 0  # started more than one period after they were due
    max_lateness_s: float = 0.0
    last_tick: float = 0.0


class EvseChannel:
    """One EVSE as the control thread sees it."""

    def __init__(
        self,
        evse_id: int,
        supervisor: Supervisor,
        pilot: PilotDriver,
        contactor: ContactorDriver,
        rcd: ResidualCurrentDriver | None,
        watchdog: WatchdogDriver | None = None,
        lock: LockDriver | None = None,
    ) -> None:
        self.evse_id = evse_id
        self.supervisor = supervisor
        self.pilot, self.contactor, self.rcd, self.watchdog = pilot, contactor, rcd, watchdog
        self.lock = lock
        self._applied_lock: bool | None = None
        testable = rcd is not None and getattr(rcd, "has_self_test", False)
        self.rcd_test = RcdTest.PENDING if testable else RcdTest.NONE
        # written by the event loop, read here: whole-object assignments are atomic
        self.permit: tuple[bool, float] = (False, 0.0)
        self.meter: tuple[bool, float | None] = (True, None)
        self.view: EvseView | None = None
        self._applied_pilot: tuple[PilotMode, float] | None = None
        self._applied_contactor: bool | None = None
        self._hardware_ok = True
        self._driver_error = ""

    def tick(self, now: float) -> EvseView:
        try:
            self._self_test_rcd()
            sample = self.pilot.sample()
            feedback = self.contactor.feedback_closed()
            rcd = self.rcd.tripped() if self.rcd is not None else False
            engaged = self.lock.engaged() if self.lock is not None else False
            read_ok = True
        except Exception as exc:  # a driver failing is a fault, never the end of the loop
            self._report_driver_error(exc)
            sample, feedback, rcd, engaged = BROKEN_PILOT, self.supervisor.contactor, False, False
            read_ok = False
        authorized, limit = self.permit
        meter_ok, current = self.meter
        out = self.supervisor.step(
            now,
            Inputs(
                sample=sample,
                feedback_closed=feedback,
                rcd_tripped=rcd,
                meter_ok=meter_ok,
                hardware_ok=read_ok and self._hardware_ok,
                current_a=current,
                authorized=authorized,
                limit_a=limit,
                lock_engaged=engaged,
                rcd_test=self.rcd_test,
            ),
        )
        self._hardware_ok = self._apply(out)
        if self.watchdog is not None:
            # Fed once per completed tick: a hung or dead loop stops it and the board drops
            # the contactor in hardware.
            try:
                self.watchdog.toggle()
            except Exception as exc:
                self._report_driver_error(exc)
        if read_ok and self._hardware_ok:
            self._driver_error = ""
        self.view = EvseView(out.cp, out.pilot, out.duty_percent, out.offered_a, feedback, out.faults)
        return self.view

    def _apply(self, out: Output) -> bool:
        ok = True
        # Open before anything else: the contactor matters more than the pilot.
        if out.contactor != self._applied_contactor or not out.contactor:
            try:
                self.contactor.command(out.contactor)
                self._applied_contactor = out.contactor
            except Exception as exc:
                self._applied_contactor = None  # state unknown: command again next tick
                self._report_driver_error(exc)
                ok = False
        if self.lock is not None and out.lock != self._applied_lock:
            try:
                self.lock.command(out.lock)
                self._applied_lock = out.lock
            except Exception as exc:
                self._applied_lock = None
                self._report_driver_error(exc)
                ok = False
        pilot = (out.pilot, out.duty_percent)
        if pilot != self._applied_pilot:
            try:
                self.pilot.set_output(*pilot)
                self._applied_pilot = pilot
            except Exception as exc:
                self._applied_pilot = None  # state unknown: command again next tick
                self._report_driver_error(exc)
                ok = False
        return ok

    def _self_test_rcd(self) -> None:
        """Once per connection, before any closing: pulse the sensor's test input.

        It runs inside the tick, so the trip it causes is never seen as a residual
        current; the contactor is open while an EV has only just connected.
        """
        if self.rcd_test is RcdTest.NONE:
            return
        if self.supervisor.cp is CpState.A:
            self.rcd_test = RcdTest.PENDING
        elif self.rcd_test is RcdTest.PENDING and self.supervisor.cp in CONNECTED:
            passed = self.rcd.self_test()  # type: ignore[union-attr]
            self.rcd_test = RcdTest.PASSED if passed else RcdTest.FAILED
            if not passed:
                log.error(
                    "EVSE %d: residual-current sensor failed its self-test; no charging until "
                    "the EV reconnects",
                    self.evse_id,
                    extra={"evse_id": self.evse_id},
                )

    def _report_driver_error(self, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if message != self._driver_error:
            log.error(
                "EVSE %d: hardware driver failed: %s", self.evse_id, message, extra={"evse_id": self.evse_id}
            )
            self._driver_error = message

    def make_safe(self) -> None:
        steps: list[Callable[[], None]] = [
            partial(self.contactor.command, False),
            self.contactor.close,
            self.pilot.close,
        ]
        if self.lock is not None and Fault.CONTACTOR_WELD not in self.supervisor.faults:
            steps.append(self.lock.close)  # unlocks after opening; never with live welded contacts
        if self.watchdog is not None:
            steps.append(self.watchdog.close)  # released, it stops toggling: the board drops too
        for step in steps:
            try:
                step()
            except Exception as exc:
                log.critical(
                    "EVSE %d: could not make the hardware safe: %s",
                    self.evse_id,
                    exc,
                    extra={"evse_id": self.evse_id},
                )


class ControlLoop(threading.Thread):
    def __init__(
        self,
        channels: list[EvseChannel],
        sample_hz: int,
        publish: Callable[[int, EvseView], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name=f"control-{'-'.join(str(c.evse_id) for c in channels)}", daemon=True)
        self.channels = channels
        self.period = 1.0 / sample_hz
        self.publish = publish
        self.clock = clock
        self.stats = LoopStats()
        self._halt = threading.Event()

    def run(self) -> None:
        published: dict[int, EvseView] = {}
        due = self.stats.last_tick = self.clock()  # a slow first tick is not a stall
        try:
            while not self._halt.is_set():
                now = self.clock()
                lateness = now - due
                if lateness > self.period:
                    self.stats.late_ticks += 1
                self.stats.max_lateness_s = max(self.stats.max_lateness_s, lateness)
                for channel in self.channels:
                    view = channel.tick(now)
                    if published.get(channel.evse_id) != view:
                        published[channel.evse_id] = view
                        self.publish(channel.evse_id, view)
                self.stats.ticks += 1
                self.stats.last_tick = now
                due += self.period
                delay = due - self.clock()
                if delay < -self.period:  # far behind (a stall): do not try to catch up
                    due = self.clock()
                elif delay > 0:
                    self._halt.wait(delay)
        except BaseException:
            log.critical("control loop crashed; opening every contactor", exc_info=True)
            raise
        finally:
            for channel in self.channels:
                channel.make_safe()

    def stop(self, timeout: float = 0.5) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout)
        if self.is_alive():  # stuck in a driver call: its finally will not run in time
            log.critical("control loop %s did not stop; making its hardware safe from here", self.name)
            for channel in self.channels:
                channel.make_safe()
