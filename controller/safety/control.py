"""The control loop: samples every pilot, steps its supervisor and drives the hardware.

Each EVSE has its own OS thread, not the event loop, so nothing the event loop does
(OCPP traffic, TLS, JSON, SQLite) can delay it, and a driver that hangs on one EVSE
cannot delay another. The event loop only hands it permits, meter states and the
hardware cap (a reload changes it) through plain attribute writes, which the thread
takes at its next tick; it hands back ``EvseView``s through ``call_soon_threadsafe``.
The daemon shortens the interpreter's GIL switch interval so a busy event loop yields
the GIL to this thread within about a millisecond. Nothing but this thread writes to a
supervisor.

Only this module commands contactors, and only as its supervisor says (``evse doctor
--actuate`` too runs its contactor test through a loop of this module). An open command
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
from typing import TypeVar

from controller.safety.pilot import CONNECTED, CpState, PilotMode, PilotSample
from controller.safety.rcd import RcdSelfTest
from controller.safety.supervisor import (
    CONTACTOR_BREAK_S,
    ContactorTest,
    Fault,
    Inputs,
    Output,
    RcdTest,
    Supervisor,
)
from controller.safety.view import EvseView
from drivers.base import (
    ContactorDriver,
    LockDriver,
    PilotDriver,
    ResidualCurrentDriver,
    WatchdogDriver,
    self_testing,
)

log = logging.getLogger(__name__)

BROKEN_PILOT = PilotSample(0.0, 0.0)  # a pilot we cannot read is treated as shorted (E)
RCD_RECHECK_S = 0.001  # a residual-current trip is read twice this far apart
MAKE_SAFE_FEEDBACK_S = 0.3  # how long a safe exit waits for the contactor to report open
# A sample that may confirm an opening is followed by the next this soon: a pilot must stay
# outside C/D this long to open the contactor (a shorter glitch does not interrupt charging).
RECHECK_S = 0.005
REST_HZ = 10  # sampling rate while every EVSE is at rest (no EV, nothing live)
T = TypeVar("T")


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
        self.rcd_tester = rcd if self_testing(rcd) else None  # the same sensor, with a test input
        self.rcd_test = RcdTest.PENDING if self.rcd_tester is not None else RcdTest.NONE
        self._self_test = RcdSelfTest()
        self._feedback = False
        # written by the event loop, read here: whole-object assignments are atomic
        self.permit: tuple[bool, float] = (False, 0.0)
        self.meter: tuple[bool, float | None] = (True, None)
        self.max_current_a = supervisor.max_current_a  # the hardware cap; a reload changes it
        self.test_contactor = False  # maintenance only (evse doctor --actuate), never the daemon
        self.controller_lost = False  # the OCPP process died or went silent (the safety process)
        self.unlock_waiters = 0  # UnlockConnector requests waiting for the lock (see unlock_request)
        # written here, read by the event loop: the lock as commanded and as its switch reports
        # it in the last tick, and how many ticks have run (an answer must come from a later one)
        self.lock_state: tuple[bool, bool] = (False, False)
        self.contactor_test = ContactorTest.IDLE
        self.ticks = 0
        # How many times the EV has left (the pilot confirmed in A from another state): a
        # permit given for one connection is never applied to the next (the safety process
        # checks the count the OCPP process echoes).
        self.departures = 0
        self._last_cp = CpState.A
        self.view: EvseView | None = None
        self._applied_pilot: tuple[PilotMode, float] | None = None
        self._applied_contactor: bool | None = None
        self._hardware_ok = True
        self._driver_error = ""
        # After each tick: whether the loop may slow down, and whether it must sample again at once.
        self.at_rest = False
        self.recheck = False

    @property
    def lock_fitted(self) -> bool:
        return self.lock is not None

    @property
    def unlock_request(self) -> bool:
        """Whether the supervisor is asked to release the lock: while any request waits."""
        return self.unlock_waiters > 0

    def tick(self, now: float) -> EvseView:
        read_ok = True

        def read(what: Callable[[], T], fallback: T) -> T:
            # Each input on its own: one failing driver must not blind the others.
            nonlocal read_ok
            try:
                return what()
            except Exception as exc:  # a driver failing is a fault, never the end of the loop
                self._report_driver_error(exc)
                read_ok = False
                return fallback

        sample = read(self.pilot.sample, BROKEN_PILOT)
        feedback = self._feedback = read(self.contactor.feedback_closed, self._feedback)
        tripped = read(self._rcd_tripped, False)
        engaged = read(self.lock.engaged, False) if self.lock is not None else False
        testing = self._self_test_step(now, tripped)
        authorized, limit = self.permit
        meter_ok, current = self.meter
        self.supervisor.max_current_a = self.max_current_a
        out = self.supervisor.step(
            now,
            Inputs(
                sample=sample,
                feedback_closed=feedback,
                rcd_tripped=tripped and not testing,  # the self-test's own trip is no fault
                meter_ok=meter_ok,
                hardware_ok=read_ok and self._hardware_ok,
                current_a=current,
                authorized=authorized,
                limit_a=limit,
                lock_engaged=engaged,
                unlock_requested=self.unlock_request,
                rcd_test=self.rcd_test,
                test_contactor=self.test_contactor,
                controller_lost=self.controller_lost,
            ),
        )
        self._hardware_ok = self._apply(out)
        self.lock_state = (out.lock, engaged)
        self.contactor_test = out.contactor_test
        self.ticks += 1
        if out.cp is CpState.A and self._last_cp is not CpState.A:
            self.departures += 1
        self._last_cp = out.cp
        if self.watchdog is not None and read_ok and self._hardware_ok:
            # Fed only after a tick that read and drove everything: a hung, dead or
            # failing loop stops it and the board drops the contactor in hardware.
            try:
                self.watchdog.toggle()
            except Exception as exc:
                self._report_driver_error(exc)
        if read_ok and self._hardware_ok:
            self._driver_error = ""
        self.view = EvseView(out.cp, out.pilot, out.duty_percent, out.offered_a, feedback, out.faults)
        # A board's hardware watchdog may want its toggle at the full rate whatever the state.
        self.at_rest = (
            self.watchdog is None
            and self.supervisor.at_rest(now)
            and not feedback
            and not engaged
            and not self._self_test.running
            and read_ok
        )
        self.recheck = self.supervisor.open_pending()
        return self.view

    def _rcd_tripped(self) -> bool:
        if self.rcd is None or not self.rcd.tripped():
            return False
        time.sleep(RCD_RECHECK_S)  # a trip is confirmed by a second read, not one glitch
        return self.rcd.tripped()

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

    def _self_test_step(self, now: float, tripped: bool) -> bool:
        """Self-test the residual-current sensor once per connection, across ticks (the
        sequence and its timing: ``controller.safety.rcd``). The contactor is open
        meanwhile (no closing before PASSED), and the trip the test causes is masked.
        Returns whether a test is running."""
        rcd, test = self.rcd_tester, self._self_test
        if self.rcd_test is RcdTest.NONE or rcd is None:
            return False
        if self.supervisor.cp is CpState.A:
            if test.running:
                rcd.test_off()
            test.abort()
            self.rcd_test = RcdTest.PENDING
            return False
        if not test.running:
            if self.rcd_test is RcdTest.PENDING and self.supervisor.cp in CONNECTED:
                rcd.test_on()
                test.start(now)
                return True
            return False
        was_on = test.test_input
        passed = test.step(now, tripped)
        if was_on and not test.test_input:
            rcd.test_off()
        if passed is None:
            return True
        self.rcd_test = RcdTest.PASSED if passed else RcdTest.FAILED
        if not passed:
            log.error(
                "EVSE %d: residual-current sensor failed its self-test (%s); no charging "
                "until the EV reconnects",
                self.evse_id,
                "it did not trip" if test.did_not_trip else "it did not release",
                extra={"evse_id": self.evse_id},
            )
        return False

    def _report_driver_error(self, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if message != self._driver_error:
            log.error(
                "EVSE %d: hardware driver failed: %s", self.evse_id, message, extra={"evse_id": self.evse_id}
            )
            self._driver_error = message

    def make_safe(self) -> None:
        """Open the contactor, then (only once it reports open and CONTACTOR_BREAK_S has
        passed) unlock; PWM and watchdog off."""
        opened = self._try(partial(self.contactor.command, False))
        commanded_open = time.monotonic()
        deadline = commanded_open + MAKE_SAFE_FEEDBACK_S
        while opened and self._safe_read(self.contactor.feedback_closed, True):
            if time.monotonic() > deadline:
                opened = False  # still closed: welded, keep the connector locked
                break
            time.sleep(0.005)
        if self.lock is not None and opened and Fault.CONTACTOR_WELD not in self.supervisor.faults:
            if self._applied_lock is not False:  # engaged or unknown: wait for the arc to be out
                time.sleep(max(0.0, commanded_open + CONTACTOR_BREAK_S - time.monotonic()))
            self._try(self.lock.close)
        if self.rcd_tester is not None and self._self_test.running:
            self._try(self.rcd_tester.test_off)
        for step in (self.contactor.close, self.pilot.close):
            self._try(step)
        if self.watchdog is not None:
            self._try(self.watchdog.close)  # released, it stops toggling: the board drops too

    def _try(self, step: Callable[[], object]) -> bool:
        try:
            step()
            return True
        except Exception as exc:
            log.critical(
                "EVSE %d: could not make the hardware safe: %s",
                self.evse_id,
                exc,
                extra={"evse_id": self.evse_id},
            )
            return False

    @staticmethod
    def _safe_read(what: Callable[[], bool], fallback: bool) -> bool:
        try:
            return what()
        except Exception:
            return fallback


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
        self.rest_period = max(self.period, 1.0 / REST_HZ)
        self.publish = publish
        self.clock = clock
        self.stats = LoopStats()
        self._halt = threading.Event()
        self._wake = threading.Event()

    def run(self) -> None:
        """Tick every ``period``; every ``rest_period`` while all EVSEs are at rest; and
        ``RECHECK_S`` after a tick whose sample may confirm an opening (such an extra
        tick leaves the schedule as it was)."""
        published: dict[int, EvseView] = {}
        due = self.stats.last_tick = self.clock()  # a slow first tick is not a stall
        period, scheduled = self.period, True
        try:
            while not self._halt.is_set():
                now = self.clock()
                if scheduled:
                    lateness = now - due
                    if lateness > period:
                        self.stats.late_ticks += 1
                    self.stats.max_lateness_s = max(self.stats.max_lateness_s, lateness)
                for channel in self.channels:
                    view = channel.tick(now)
                    if published.get(channel.evse_id) != view:
                        published[channel.evse_id] = view
                        self.publish(channel.evse_id, view)
                self.stats.ticks += 1
                self.stats.last_tick = now
                if scheduled:
                    period = self.rest_period if all(c.at_rest for c in self.channels) else self.period
                    due += period
                recheck_at = now + RECHECK_S
                scheduled = not (any(c.recheck for c in self.channels) and recheck_at < due)
                delay = (due if scheduled else recheck_at) - self.clock()
                if delay < -period:  # far behind (a stall): do not try to catch up
                    due = self.clock()
                elif delay > 0:
                    self._wake.wait(delay)
                    self._wake.clear()
        except BaseException:
            log.critical("control loop crashed; opening every contactor", exc_info=True)
            raise
        finally:
            for channel in self.channels:
                channel.make_safe()

    def start(self) -> None:
        self.stats.last_tick = self.clock()  # not a stall while the new thread waits its turn
        super().start()

    def wake(self) -> None:
        """Tick now rather than at the next period (a permit was withdrawn)."""
        self._wake.set()

    def halt(self) -> None:
        """Ask the thread to end: its ``finally`` opens the contactor and stops the PWM."""
        self._halt.set()
        self._wake.set()

    def stop(self, timeout: float = 0.5) -> None:
        self.halt()
        if self.is_alive():
            self.join(timeout)
        if self.is_alive():  # stuck in a driver call: its finally will not run in time
            log.critical("control loop %s did not stop; making its hardware safe from here", self.name)
            for channel in self.channels:
                channel.make_safe()


STALL_S = 1.0  # a control loop silent this long is stalled
STOP_S = 0.5  # every control loop of a process together, at an orderly stop


def stop_all(loops: list[ControlLoop], within_s: float = STOP_S) -> None:
    """Stop every loop (each opens its contactors, stops its PWM): all asked at once and
    waited for against one deadline, so several EVSEs or one hung driver cost it once."""
    for control in loops:
        control.halt()
    deadline = time.monotonic() + within_s
    for control in loops:
        control.stop(max(0.0, deadline - time.monotonic()))


def abandon_stalled(loops: list[ControlLoop], now: float) -> str | None:
    """Loops that died or have not ticked for STALL_S cannot open their contactors: that
    is done from the calling thread, and they are told to stop should they resume. Their
    names, or None when every loop ticks."""
    stalled = [c for c in loops if not c.is_alive() or now - c.stats.last_tick > STALL_S]
    if not stalled:
        return None
    for control in stalled:
        control.halt()
        for channel in control.channels:
            channel.make_safe()
    names = ", ".join(c.name for c in stalled)
    log.critical(
        "control loop %s stalled for over %.1f s; contactor opened from another thread", names, STALL_S
    )
    return names
