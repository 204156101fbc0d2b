"""The safety process: pilots, contactors, locks, residual-current sensors and watchdog
lines, and the simulated world with its rig socket, away from the OCPP stack.

``evse run`` forks it before it imports asyncio, websockets or cryptography
(``controller.safety.spawn``). Each EVSE's control loop is a thread of its own
(``controller.safety.control``), and so is the rig socket (``rig_server``); this
module's main thread is a ``selectors`` loop over the channel to the OCPP process
(``controller.safety.wire``). It never waits on the OCPP process:

- stopped (SIGSTOP, a debugger: its kernel state, looked at every ``STATE_CHECK_S``) or
  silent for ``wire.SILENCE_S`` (hung, starved): every permit is withdrawn and every
  EVSE's controller lost (``Inputs.controller_lost``): PWM off and the contactor open at
  once; once it runs and answers again, its current permits are asked for and charging
  resumes by the usual rules;
- its end closed (it died): the same, then every loop is stopped (the hardware left
  safe) and the rig socket is given up for the next daemon; the clients already
  connected (a bench polling) are answered for ``ORPHAN_LINGER_S`` more;
- a control loop that stalls (a driver call that never returns) has its hardware made
  safe from here, and the process exits 70: the OCPP process reports the fault and exits
  for systemd to restart the service.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import sys
import time
from typing import Any

from controller.config import Config, EvseConfig
from controller.io import logs
from controller.safety import realtime, wire
from controller.safety.control import ControlLoop, EvseChannel, abandon_stalled, stop_all
from controller.safety.pilot import PilotMode, current_for_duty
from controller.safety.rig_server import RigServer
from controller.safety.supervisor import Supervisor
from controller.safety.view import EvseView, physical_status
from drivers.base import DriverError
from drivers.registry import SafetyDrivers, build_safety, make_bench
from drivers.sim import SimBench
from drivers.sim_rig import Rig, RigError

log = logging.getLogger(__name__)

ORPHAN_LINGER_S = 2.0  # connected rig clients are answered this long after the OCPP process died
SIGNAL_EXIT_S = 3.0  # after SIGTERM or SIGINT, unless the OCPP process says "exit" sooner
STATE_CHECK_S = 0.04  # how often the OCPP process's state and silence are looked at (~0.1 ms a look)
RESYNC_S = 1.0  # a resync not answered by then is asked for again
SWITCH_INTERVAL_S = 0.001  # a busy rig thread hands the GIL on within a millisecond
REPORT_S = 0.25  # a heartbeat to the OCPP process, with the loops' figures
EX_SOFTWARE = 70


def make_channel(evse: EvseConfig, drivers: SafetyDrivers) -> EvseChannel:
    supervisor = Supervisor(
        max_current_a=evse.max_current_a,
        ventilation=evse.ventilation,
        feedback_timeout_s=evse.contactor.options.get("feedback_timeout_s", 0.5),
        min_close_interval_s=evse.contactor.options.get("min_close_interval_s", 0.0),
        lock_fitted=evse.lock.driver != "none",
    )
    return EvseChannel(
        evse.id, supervisor, drivers.pilot, drivers.contactor, drivers.rcd, drivers.watchdog, drivers.lock
    )


def sim_reader(config: Config) -> bool:
    """Whether the station's RFID reader is simulated (the rig's ``swipe`` reaches it)."""
    return config.rfid is not None and config.rfid.driver == "sim"


class SafetyProcess:
    def __init__(self, config: Config, link: socket.socket, signals: list[int] | None = None) -> None:
        self.config = config
        self.link = link
        self.signals = signals if signals is not None else []  # received, not yet acted on
        self.ocpp_state = _ProcessState(os.getppid())
        link.setblocking(False)
        self.bench: SimBench | None = make_bench(config)
        drivers = {e.id: build_safety(e, self.bench) for e in config.evses}
        self.channels = {e.id: make_channel(e, drivers[e.id]) for e in config.evses}
        self.simulated = {
            e.id for e in config.evses if e.contactor.driver == "sim" and e.pilot.driver == "sim"
        }
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.loops = [ControlLoop([c], config.sample_hz, self._published) for c in self.channels.values()]
        self.heard_at = time.monotonic()
        self.silent = False  # the OCPP process stopped or went silent: every controller lost
        self.resync_asked_at = float("-inf")  # heard again: its current permits are asked for
        self.orphaned_at: float | None = None
        self.signalled_at: float | None = None
        self.heard = False  # the silence rule applies once the OCPP process has spoken
        self.stopped = False
        self.exit_code: int | None = None
        self.reported: dict[int, tuple[Any, ...]] = {}
        self.reported_at = self.checked_at = self.state_checked_at = 0.0
        self.dirty = True  # a loop published a view since the last report
        self.ocpp_status: dict[str, Any] = {}
        self.rig: RigServer | None = None
        if config.sim_socket is not None:
            if self.bench is not None:
                self.bench.on_swipe = self._swiped
            rig = Rig(self.bench, self.status, list(self.channels), reader=sim_reader(config))
            try:
                self.rig = RigServer(config.sim_socket, rig.reply_to)
            except (RigError, OSError) as exc:
                raise DriverError(f"sim.socket: cannot listen on {config.sim_socket}: {exc}") from exc
        self.selector.register(link, selectors.EVENT_READ, self._read_link)
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wake)
        signal.set_wakeup_fd(self._wake_w)  # a signal wakes the loop, which acts on it

    # -- running ---------------------------------------------------------------------------

    def run(self) -> int:
        for control in self.loops:
            control.start()
        if self.rig is not None:
            self.rig.start()
        self._send("ready", pid=os.getpid())
        log.info("safety process %d running %d control loop(s)", os.getpid(), len(self.loops))
        try:
            while self.exit_code is None:
                for key, events in self.selector.select(self._timeout()):
                    key.data(events)
                self._housekeeping(time.monotonic())
        finally:
            self._stop_loops()
            self._save()
            if self.rig is not None:
                self.rig.close()
        return self.exit_code

    def _timeout(self) -> float:
        """Until the next thing to do: the next look at the OCPP process, at the latest."""
        if self.orphaned_at is not None or self.signalled_at is not None or not self.heard:
            return REPORT_S / 2
        # Never 0: at real-time priority a loop that does not sleep starves the control loops.
        return max(0.001, self.state_checked_at + self._check_period() - time.monotonic())

    def _check_period(self) -> float:
        """STATE_CHECK_S while a permit stands or a contactor is closed; otherwise a lost
        OCPP process could switch nothing on, and a slower look saves the wake-ups."""
        live = any(
            c.permit[0] or (c.view is not None and c.view.contactor_closed) for c in self.channels.values()
        )
        return STATE_CHECK_S if live or self.silent else REPORT_S

    def _housekeeping(self, now: float) -> None:
        if self.signals and self.signalled_at is None:
            # A signal to the whole group (Ctrl-C; systemd's stop or watchdog with
            # KillMode=control-group) reached the OCPP process too: it still reads the
            # final meter values through here, then says "exit"; alone, this process ends
            # after SIGNAL_EXIT_S.
            log.warning("safety process: signal %d; every contactor opened", self.signals[0])
            self.signalled_at = now
            self._lose_controller()
        if self.signalled_at is not None:
            self._stop_loops()
            if self.orphaned_at is not None or now - self.signalled_at > SIGNAL_EXIT_S:
                self.exit_code = 0
        elif self.orphaned_at is None and self.heard and now - self.state_checked_at >= self._check_period():
            self.state_checked_at = now
            self._read_link(selectors.EVENT_READ)  # what waits counts as heard
            self._report(now)  # the views go before a resync: it is answered after them
            self._watch_ocpp(time.monotonic())
        elif self.orphaned_at is not None and now - self.orphaned_at > ORPHAN_LINGER_S:
            self.exit_code = 0
        self._report(now)
        self._check_loops(now)

    def _watch_ocpp(self, now: float) -> None:
        """Stopped (SIGSTOP, a debugger: the kernel says so) or silent past SILENCE_S:
        every controller lost at once. Heard again: its current permits are asked for,
        and the controllers come back only with them."""
        if self.orphaned_at is not None:
            return
        stopped = self.ocpp_state.stopped()
        quiet = now - self.heard_at > wire.SILENCE_S
        if (stopped or quiet) and not self.silent:
            self.silent, self.resync_asked_at = True, float("-inf")
            for channel in self.channels.values():
                channel.permit = (False, 0.0)  # never reused: fresh ones come with the resync
            self._lose_controller()
            if stopped:
                log.error("the OCPP process is stopped: charging stopped until it runs again")
            else:
                log.error(
                    "the OCPP process has been silent for %.0f ms: charging stopped until it answers",
                    (now - self.heard_at) * 1000,
                )
        elif self.silent and not (stopped or quiet) and now - self.resync_asked_at > RESYNC_S:
            self.resync_asked_at = now if self._send("resync") else self.resync_asked_at

    def _synced(self) -> None:
        """The OCPP process has sent every EVSE's current permit: control is back."""
        if self.silent and self.orphaned_at is None and self.signalled_at is None:
            self.silent = False
            for channel in self.channels.values():
                channel.controller_lost = False
            log.warning("the OCPP process answers again")

    def _lose_controller(self) -> None:
        for channel in self.channels.values():
            channel.controller_lost = True
        for control in self.loops:
            control.wake()

    def _check_loops(self, now: float) -> None:
        if self.stopped or now - self.checked_at < REPORT_S / 2:
            return
        self.checked_at = now
        names = abandon_stalled(self.loops, now)
        if names is None:
            return
        self._send("failed", reason=f"control loop {names} stalled")
        self.exit_code = EX_SOFTWARE

    def _stop_loops(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        stop_all(self.loops)

    def _save(self) -> None:
        if self.bench is not None:
            with contextlib.suppress(OSError):
                self.bench.save()

    # -- the OCPP process --------------------------------------------------------------------

    def _read_link(self, _events: int) -> None:
        if self.orphaned_at is not None:
            return
        datagrams, closed = wire.drain(self.link)
        if datagrams:
            self.heard_at, self.heard = time.monotonic(), True
        for datagram in datagrams:
            if datagram != wire.HEARTBEAT:  # the commonest datagram is never parsed
                wire.dispatch(datagram, self._handle, log)
        if closed:
            self._orphaned()

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["t"]
        if kind == "evse":
            channel = self.channels.get(message.get("evse", 0))
            if channel is not None:
                on, limit = message["permit"]
                ok, current = message["meter"]
                # A permit given before the EV left (the OCPP process has not yet seen it
                # go) is no permit for whatever is plugged in now.
                current_connection = int(message.get("departures", -1)) == channel.departures
                channel.permit = (bool(on), float(limit)) if current_connection else (False, 0.0)
                channel.meter = (bool(ok), None if current is None else float(current))
                channel.max_current_a = float(message["cap"])
                channel.unlock_waiters = int(message["unlock"])
        elif kind == "synced":
            self._synced()
        elif kind == "read":
            self._read_meter(message)
        elif kind == "status":
            self.ocpp_status = message
        elif kind == "logging":  # a reload
            logs.setup(str(message["level"]), dict(message["modules"]))
            log.debug("safety process: log levels of the reload applied")
        elif kind == "safe":
            self._lose_controller()
            self._stop_loops()
            self._save()
            self._send("safe")
        elif kind == "exit":
            self.exit_code = 0

    def _orphaned(self) -> None:
        log.critical("the OCPP process has gone: every contactor opened, the PWM stopped")
        self.selector.unregister(self.link)
        self.link.close()
        self._lose_controller()
        self.orphaned_at = time.monotonic()
        if self.rig is not None:  # new clients wait for the next daemon; those connected stay
            self.rig.stop_listening()
        self._stop_loops()
        self._save()

    def _send(self, kind: str, **fields: Any) -> bool:
        if self.orphaned_at is not None:
            return False
        try:
            return wire.send(self.link, wire.encode(kind, **fields))
        except OSError:
            return False

    def _swiped(self, token: str) -> None:
        self._send("swipe", id=token)

    def _published(self, _evse_id: int, _view: EvseView) -> None:  # on a control thread
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"v")

    def _drain_wake(self, _events: int) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 4096)
        self.dirty = True

    def _report(self, now: float) -> None:
        """Send what changed: at once after a loop published a view; at least every
        REPORT_S for what changes without one (the lock, a contactor test); every wake
        while an unlock request waits for its ticks."""
        due = now - self.reported_at >= REPORT_S
        if not (self.dirty or due or any(c.unlock_waiters for c in self.channels.values())):
            return
        self.dirty = False
        for evse_id, channel in self.channels.items():
            view = channel.view
            state = (
                view,
                channel.lock_state,
                channel.contactor_test,
                channel.departures,
                channel.ticks if channel.unlock_waiters else None,
            )
            if view is None or state == self.reported.get(evse_id):
                continue
            if self._send(
                "view",
                evse=evse_id,
                view=view.to_wire(),
                lock=list(channel.lock_state),
                test=channel.contactor_test.value,
                ticks=channel.ticks,
                departures=channel.departures,
            ):
                self.reported[evse_id] = state
        if due and not self.silent:  # a stopped process's buffer would only fill up
            self.reported_at = now
            self._send("hb")

    def _read_meter(self, message: dict[str, Any]) -> None:
        request, evse_id = message.get("id"), message.get("evse", 0)
        if self.bench is None or evse_id not in self.bench.evses:
            self._send("reading", id=request, error=f"evse {evse_id} has no simulated meter")
            return
        try:
            reading = self.bench.evses[evse_id].meter_reading()
        except DriverError as exc:
            self._send("reading", id=request, error=str(exc))
            return
        self._save()  # before reporting: energy once reported never goes backwards on restart
        self._send(
            "reading",
            id=request,
            energy_wh=reading.energy_wh,
            power_w=reading.power_w,
            current_a=list(reading.current_a),
            voltage_v=list(reading.voltage_v),
        )

    # -- the rig ---------------------------------------------------------------------------

    def status(self, evse_id: int | None) -> dict[str, Any]:
        """The rig's status: what the loops see, plus what the OCPP process last told."""
        if evse_id is None:
            return {
                "evses": [self._evse_status(i) for i in self.channels],
                "ocpp": self._ocpp().get("ocpp", {"connected": False, "version": None, "queued": 0}),
            }
        return self._evse_status(evse_id)

    def _ocpp(self) -> dict[str, Any]:
        if self.orphaned_at is not None:
            return {**self.ocpp_status, "ocpp": {"connected": False, "version": None, "queued": 0}}
        return self.ocpp_status

    def _evse_status(self, evse_id: int) -> dict[str, Any]:
        ocpp = self._ocpp()
        told = ocpp.get("evses", {}).get(str(evse_id), {})
        status = {
            "evse": evse_id,
            **physical_status(self.channels[evse_id].view),
            "power_w": told.get("power_w", 0.0),
            "energy_wh": told.get("energy_wh", 0.0),
            "connector_status": told.get("connector_status", "Unavailable"),
            "error_code": told.get("error_code", "NoError"),
            "ocpp_connected": ocpp.get("ocpp", {}).get("connected", False),
            "transaction_id": told.get("transaction_id"),
        }
        if self.bench is not None and evse_id in self.simulated:  # physically, now
            sim = self.bench.evses[evse_id]
            with sim.lock:
                pwm = sim.pilot_mode is PilotMode.PWM
                status.update(
                    pwm=pwm,
                    duty_percent=sim.duty_percent,
                    offered_a=round(current_for_duty(sim.duty_percent), 1) if pwm else 0.0,
                    contactor_closed=sim.contactor_closed,
                )
        return status


class _ProcessState:
    """Whether a process is stopped, read from /proc/PID/stat through a file kept open."""

    def __init__(self, pid: int) -> None:
        try:
            self.fd: int | None = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
        except OSError:
            self.fd = None  # no /proc: the heartbeat's silence rule alone

    def stopped(self) -> bool:
        if self.fd is None:
            return False
        try:
            stat = os.pread(self.fd, 1024, 0)
        except OSError:
            return False  # gone: the channel's end closing says so
        state = stat.rpartition(b")")[2][1:2]
        return state in (b"T", b"t")


def main(config: Config, link: socket.socket, signals: list[int]) -> int:
    """The safety process's whole life; returns its exit status. ``signals``: what the
    fork's handlers caught so far (they record, the main loop acts)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    realtime.name_process("evse-safety")
    realtime.realtime_thread()  # before the loops start: they inherit it
    try:
        process = SafetyProcess(config, link, signals)
    except DriverError as exc:
        log.error("safety process cannot start: %s", exc)
        with contextlib.suppress(OSError):
            wire.send(link, wire.encode("failed", reason=str(exc)))
        return 1
    return process.run()
