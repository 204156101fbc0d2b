"""The daemon: binds drivers, the control loop, the station model and storage.

Threads: the control loop (``controller.safety.control``) owns pilots and contactors; SQLite
runs on its own thread; everything else (rig socket, meters, RFID, the station model)
runs on the asyncio event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import json
import logging
import math
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from controller.aio import wait_event
from controller.config import Config, ConfigError, EvseConfig, load
from controller.core import authorization as auth
from controller.core import schedule
from controller.core.station import (
    Action,
    AuthorizeWanted,
    EvseView,
    MeterReadWanted,
    MeterSampled,
    Permit,
    Reservation,
    ReservationEnded,
    Station,
    StatusChanged,
    TokenRejected,
    TransactionStarted,
    TransactionStopped,
)
from controller.io import logs
from controller.io.notify import Notifier
from controller.io.rig import Rig, RigError, serve
from controller.io.storage import Database, Storage, StorageError, WriteQueue, parse_timestamp, timestamp
from controller.reload import plan as reload_plan
from controller.safety.control import ControlLoop, EvseChannel
from controller.safety.pilot import PilotMode
from controller.safety.supervisor import Supervisor
from controller.security.certerrors import CertError
from controller.security.certstore import CertStore
from controller.security.credentials import Credentials
from controller.security.events import SECURITY_LOG, SecurityLog
from controller.services import Services, sample_body
from drivers.base import DriverError, MeterDriver, MeterReading, RfidDriver
from drivers.registry import EvseDrivers, build_evse, build_rfid, make_bench
from drivers.sim import SimBench

log = logging.getLogger(__name__)

DB_FILE = "evse.db"
FRAME_LOG = "ocpp-frames.log"
METER_INTERVAL_S = 1.0
METER_TIMEOUT_S = 2.0
METER_FAILURES_FOR_FAULT = 3
# The 2 s stop budget: control threads 0.5 s at most, a final meter reading 0.2 s,
# flushing records 0.8 s; then a database call still waiting is interrupted.
SHUTDOWN_FLUSH_S = 0.8
DRIVER_CLOSE_S = 0.3
TASK_CANCEL_S = 0.5
OUTBOX_DRAIN_S = 0.5  # with the flush and the link close, SIGTERM still exits within 2 s
FINAL_READING_TIMEOUT_S = 0.2
STALL_S = 1.0  # a control loop silent this long is stalled: make safe, exit, restart
SUPERVISE_INTERVAL_S = 0.25
GIL_SWITCH_INTERVAL_S = 0.001  # default 5 ms; the control thread must get the GIL quickly
SHUTDOWN_REASON = "Reboot"


class StartupError(Exception):
    """The daemon cannot start; the message says what to fix."""


def _finite(reading: MeterReading) -> bool:
    values = (reading.energy_wh, reading.power_w, *reading.current_a, *reading.voltage_v)
    return all(math.isfinite(v) for v in values)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Daemon(Services):
    def __init__(
        self, config: Config, now: Callable[[], datetime] = utcnow, version: str = "unknown"
    ) -> None:
        self.config = config
        self._clock = now
        self.clock_offset = timedelta(0)  # the CSMS's time minus ours
        self.version = version
        self.stopping = asyncio.Event()
        self.exit_code = 0
        self.notifier = Notifier()
        self.tasks: list[asyncio.Task[Any]] = []
        self.shutdown_reason = SHUTDOWN_REASON
        self._restart: str | None = None  # see the restart property
        self.reset_retries = 0  # a failing reboot command is run again this often, then "exec"
        self.terminated = False  # SIGTERM/SIGINT: no restart, whatever was planned
        # Stored at exit only if the restart planned still happens (2.0.1 boot reason RemoteReset).
        self.restart_settings: dict[str, str] = {}
        self.ocpp: Any = None  # the OCPP adapter of the version spoken, when [ocpp] is set
        self.frames: logs.FrameLog | None = None
        self.local_list = auth.LocalList()
        self.auth_cache = auth.AuthCache()
        self.profiles = schedule.Profiles()
        self.limits_wake = asyncio.Event()  # the next change of a charging limit may have moved
        self.pending_profiles: dict[int, tuple[str, schedule.Profile]] = {}  # remote start: token, TxProfile
        self.csms_ids: dict[str, str] = {}  # local transaction id -> the CSMS's
        self.aligned_interval_s = 0
        self.outbox_count = 0  # transaction messages the CSMS has not answered, for status
        self._counting: asyncio.Task[Any] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    def now(self) -> datetime:
        return self._clock() + self.clock_offset

    def set_clock(self, delta: timedelta) -> None:
        """Move our notion of now by ``delta`` (the CSMS's time), timers included."""
        self.clock_offset += delta
        self.station.shift(delta)
        self.limits_wake.set()  # the next change of a limit is elsewhere on the new clock

    @property
    def evse_config(self) -> dict[int, EvseConfig]:
        return {e.id: e for e in self.config.evses}

    # -- start-up ----------------------------------------------------------------------

    def _open(self) -> None:
        config = self.config
        try:
            config.storage_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"storage.dir: cannot create {config.storage_dir}: {exc.strerror}") from exc
        try:
            self.database = Database(Storage(config.storage_dir / DB_FILE))
        except StorageError as exc:
            raise StartupError(str(exc)) from exc
        with contextlib.suppress(OSError):
            (config.storage_dir / DB_FILE).chmod(0o600)  # it holds tokens and transactions
        self.writes = WriteQueue(self.database)
        self.security_log = SecurityLog(config.storage_dir / SECURITY_LOG)
        try:
            self.bench: SimBench | None = make_bench(config)
            self.drivers: dict[int, EvseDrivers] = {e.id: build_evse(e, self.bench) for e in config.evses}
            self.rfid: RfidDriver | None = build_rfid(config, self.bench)
        except DriverError as exc:
            raise StartupError(str(exc)) from exc
        self.station = Station.create(
            {e.id: e.max_current_a for e in config.evses},
            config.auth["mode"],
            config.auth["allow"],
            config.auth["free_id"],
            {e.id: e.phases for e in config.evses},
            self.profiles,
        )
        self.read_now = {e.id: asyncio.Event() for e in config.evses}
        if config.ocpp is not None:
            self._load_ocpp_state()
        self.channels = {
            e.id: EvseChannel(
                e.id,
                Supervisor(
                    max_current_a=e.max_current_a,
                    ventilation=e.ventilation,
                    feedback_timeout_s=e.contactor.options.get("feedback_timeout_s", 0.5),
                    min_close_interval_s=e.contactor.options.get("min_close_interval_s", 0.0),
                    lock_fitted=e.lock.driver != "none",
                ),
                self.drivers[e.id].pilot,
                self.drivers[e.id].contactor,
                self.drivers[e.id].rcd,
                self.drivers[e.id].watchdog,
                self.drivers[e.id].lock,
            )
            for e in config.evses
        }

    def _load_ocpp_state(self) -> None:
        """Local list, cache, profiles, reservations, availability and keys from storage."""
        storage = self.database.storage
        config = self.config
        try:
            self.local_list = auth.load_local_list(storage)
            self.auth_cache = auth.load_cache(storage)
            rows = storage.db.execute("SELECT evse_id, body FROM charging_profiles").fetchall()
            self.profiles.load(schedule.from_ocpp16(json.loads(body), evse_id) for evse_id, body in rows)
            settings = dict(storage.db.execute("SELECT key, value FROM settings").fetchall())
            now = self.now()
            for rid, evse_id, id_tag, parent, expiry in storage.db.execute(
                "SELECT id, evse_id, id_tag, parent, expiry FROM reservations"
            ).fetchall():
                until = parse_timestamp(expiry)
                if evse_id in self.station.evses and until > now:
                    self.station.evses[evse_id].reservation = Reservation(rid, evse_id, id_tag, until, parent)
                else:
                    self._forget_reservation(rid)
            for row in storage.db.execute(
                "SELECT id, csms_id FROM transactions WHERE csms_id IS NOT NULL AND stopped_at IS NULL"
            ).fetchall():
                self.csms_ids[row[0]] = row[1]
        except Exception as exc:  # StorageError, sqlite3.Error, a profile that no longer parses
            raise StartupError(f"cannot read the OCPP state in {storage.path}: {exc}") from exc
        self.load_availability(settings)
        self.station.drain()
        logging_cfg = config.logging
        try:
            self.frames = logs.FrameLog(
                config.storage_dir / FRAME_LOG,
                logging_cfg.get("frame_log_kib", 1024) * 1024,
                logging_cfg.get("frame_log_files", 5),
            )
        except OSError as exc:
            log.error("OCPP frame log disabled: %s", exc)
        ocpp = config.ocpp
        assert ocpp is not None
        roots: dict[str, list[Path]] = {}
        if ocpp.get("ca_file"):
            roots["CSMSRootCertificate"] = [config.file(ocpp["ca_file"])]
        if config.firmware.get("signing_ca_file"):
            roots["ManufacturerRootCertificate"] = [config.file(config.firmware["signing_ca_file"])]
        try:
            self.certs = CertStore(config.storage_dir / "certs", roots)
        except CertError as exc:
            raise StartupError(f"certificates: {exc}") from exc
        self.client_files = (
            (config.file(ocpp["cert_file"]), config.file(ocpp["key_file"]))
            if ocpp.get("cert_file") and ocpp.get("key_file")
            else None
        )
        if (
            ocpp.get("security_profile", 0) >= 3
            or self.client_files
            or config.firmware.get("signing_ca_file")
        ):
            # Certificates will be parsed: import cryptography now, before the control threads
            # run, rather than hold them off on first use (controller.lazy).
            importlib.import_module("controller.security.certs")
        self.credentials = Credentials(config.storage_dir, ocpp.get("password") or "")
        from controller.ocpp.client import make_client

        self.ocpp = make_client(self, settings)

    async def _recover(self) -> None:
        """End transactions a crash or power cut left open, exactly once, as PowerLoss.

        The stops go through the write queue: a locked or full database delays them but
        neither loses them nor keeps the station from starting.
        """
        for evse_id, drivers in self.drivers.items():
            with contextlib.suppress(DriverError, TimeoutError, OSError):
                reading = await asyncio.wait_for(drivers.meter.read(), METER_TIMEOUT_S)
                if _finite(reading):
                    self._apply(self.station.meter_read(self.now(), evse_id, reading))
        if self.ocpp is not None:
            try:
                await self.ocpp.recover()
            except StorageError as exc:
                log.error("cannot look for interrupted OCPP 2.0.1 transactions now: %s", exc)
        storage = self.database.storage
        try:
            interrupted = await self.database.run(storage.transactions, True)
        except StorageError as exc:
            log.error(
                "cannot look for interrupted transactions now (%s); they will be ended "
                "as PowerLoss at the next start",
                exc,
            )
            return
        for record in interrupted:
            state = self.station.evses.get(record.evse_id)
            energy = record.last_energy_wh
            if state is not None and state.reading is not None:
                energy = max(energy, state.reading.energy_wh)
            self.writes.put(
                partial(
                    Storage.stop_transaction,
                    tx_id=record.id,
                    stopped_at=self.now(),
                    meter_stop_wh=energy,
                    reason="PowerLoss",
                    outbox=self._stop_body(record.evse_id, self.now(), energy, "PowerLoss", None),
                )
            )
            log.warning(
                "EVSE %d: transaction %s was interrupted (power loss or crash); ended "
                "with reason PowerLoss at %.1f Wh",
                record.evse_id,
                record.id,
                energy,
                extra={"evse_id": record.evse_id, "transaction_id": record.id},
            )

    # -- running -----------------------------------------------------------------------

    async def run(self) -> int:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self._open()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.terminate)

        def publish(evse_id: int, view: EvseView) -> None:  # called on the control thread
            loop.call_soon_threadsafe(self._on_view, evse_id, view)

        self.loops = [
            ControlLoop([channel], self.config.sample_hz, publish) for channel in self.channels.values()
        ]
        tasks: list[asyncio.Task[Any]] = []
        server: asyncio.AbstractServer | None = None
        try:
            await self._recover()
            self.security_event("StartupOfTheDevice", f"evse {self.version} started")
            # What start-up built lives as long as the daemon: out of the collector's way. A
            # full collection holds the GIL, and walking the modules alone took 20 ms of the
            # control thread's budget while the CSMS flooded the station. (Done before the
            # control threads start, so this one collection delays none of them.)
            gc.collect()
            gc.freeze()
            for control in self.loops:
                control.start()
            tasks.append(asyncio.create_task(self.writes.run(), name="writes"))
            tasks += [
                asyncio.create_task(self._poll_meter(i, d.meter), name=f"meter {i}")
                for i, d in self.drivers.items()
            ]
            if self.rfid is not None:
                tasks.append(asyncio.create_task(self._read_tokens(self.rfid), name="rfid"))
            tasks.append(asyncio.create_task(self._tick(), name="tick"))
            if self.ocpp is not None:
                tasks.append(asyncio.create_task(self.ocpp.run(), name="ocpp"))
                tasks.append(asyncio.create_task(self._follow_limits(), name="limits"))
                self.spawn(self.firmware_watch())
                tasks.append(asyncio.create_task(self._aligned_meter_values(), name="aligned meter values"))
            tasks.append(asyncio.create_task(self._supervise(), name="supervise"))
            if self.config.sim_socket is not None:
                rig = Rig(self.bench, self.status, list(self.channels), reader=self.rfid is not None)
                try:
                    server = await serve(rig, self.config.sim_socket)
                except (RigError, OSError) as exc:
                    raise StartupError(
                        f"sim.socket: cannot listen on {self.config.sim_socket}: {exc}"
                    ) from exc
            log.info(
                "station %s running: %d EVSE(s), auth mode %s, %s",
                self.config.station["id"],
                len(self.channels),
                self.config.auth["mode"],
                f"rig socket {self.config.sim_socket}" if server else "no rig socket",
            )
            self.tasks = tasks
            loop.add_signal_handler(signal.SIGHUP, self.reload)  # a reload before this would say READY
            self.notifier.send(READY="1", STATUS=self._status_line())
            await self.stopping.wait()
        finally:
            await self._shutdown(tasks, server)
        return self.exit_code

    @property
    def restart(self) -> str | None:
        """After stopping: "exec" (re-execute in place), "reboot", or None. SIGTERM/SIGINT
        cancel it, whether a reset or an install asked for it before or after them."""
        return None if self.terminated else self._restart

    @restart.setter
    def restart(self, how: str | None) -> None:
        self._restart = how

    @property
    def restart_retries(self) -> int:
        """ResetRetries for the restart planned: only a CSMS Reset has them (not a firmware restart)."""
        return self.reset_retries if self.shutdown_reason in ("HardReset", "SoftReset") else 0

    def terminate(self) -> None:
        """SIGTERM or SIGINT: stop and exit, even while a reset or firmware restart is under way."""
        if self.restart is not None:
            log.warning(
                "terminated: the %s planned is not done", "reboot" if self.restart == "reboot" else "restart"
            )
        self.terminated = True
        self.stop()

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: opening contactors and ending transactions")
            self.notifier.send(STOPPING="1", STATUS="stopping: opening contactors")
        self.stopping.set()

    def reload(self) -> None:
        """SIGHUP: apply what can change live; an invalid file keeps the running config."""
        self.notifier.send(RELOADING="1", MONOTONIC_USEC=str(time.monotonic_ns() // 1000))
        try:
            new = load(self.config.path)
        except ConfigError as exc:
            log.error(
                "reload: %s is invalid; keeping the running config:\n  %s",
                self.config.path,
                "\n  ".join(exc.problems),
            )
        else:
            self.config, live, restart = reload_plan(self.config, new)
            self._apply_config()
            if live:
                log.info("reload: applied %s", ", ".join(live))
            if restart:
                log.warning(
                    "reload: %s changed; takes effect after a restart (systemctl restart evse)",
                    ", ".join(restart),
                )
            if not live and not restart:
                log.info("reload: %s unchanged", self.config.path)
        self.notifier.send(READY="1", STATUS=self._status_line())

    def _apply_config(self) -> None:
        config = self.config
        logs.setup(config.logging.get("level", "info"), config.logging.get("modules"))
        self.station.auth_mode = config.auth["mode"]
        self.station.allow = frozenset(config.auth["allow"])
        self.station.free_id = config.auth["free_id"]
        if self.ocpp is not None:
            self.ocpp.current.apply_keys()  # what the CSMS set (AuthCtrlr.Enabled) stays in force
        for evse in config.evses:
            self.station.evses[evse.id].max_current_a = evse.max_current_a
            self.channels[evse.id].max_current_a = evse.max_current_a  # the control thread takes it
        self._apply(self.station.tick(self.now()))

    async def _shutdown(self, tasks: list[asyncio.Task[Any]], server: asyncio.AbstractServer | None) -> None:
        # Safety first: the control thread opens every contactor and stops the PWM.
        for control in getattr(self, "loops", []):
            control.stop()
        if hasattr(self, "station"):
            await self._final_readings()
            self._apply(self.station.shutdown(self.now(), self.shutdown_reason))
        if server is not None:
            server.close()
        if hasattr(self, "writes") and any(t.get_name() == "writes" for t in tasks):
            try:
                await asyncio.wait_for(self.writes.flush(), SHUTDOWN_FLUSH_S)
            except TimeoutError:
                log.error(
                    "%d record(s) could not be written before exit (storage failing); "
                    "open transactions will be ended as PowerLoss at the next start",
                    self.writes.pending(),
                )
                self.database.storage.db.interrupt()  # a call waiting on a lock gives up now
        if self.ocpp is not None:
            with contextlib.suppress(Exception):
                # The transaction ends just queued reach the CSMS now rather than after the restart.
                await self.ocpp.drain(OUTBOX_DRAIN_S)
            with contextlib.suppress(Exception):
                await self.ocpp.close()
        pending = [*tasks, *self._background]
        for task in pending:
            task.cancel()
        if pending:
            # A driver call that swallows cancellation (a Modbus client busy reconnecting)
            # must not hold up the exit: the contactors are already open.
            await asyncio.wait(pending, timeout=TASK_CANCEL_S)
        if self.frames is not None:
            self.frames.close()
        # A driver that hangs while closing (a serial port, a meter's socket) must not
        # keep the service from exiting: the contactors are already open.
        for drivers in getattr(self, "drivers", {}).values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(drivers.meter.close(), DRIVER_CLOSE_S)
        if getattr(self, "rfid", None) is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.rfid.close(), DRIVER_CLOSE_S)  # type: ignore[union-attr]
        if getattr(self, "bench", None) is not None:
            with contextlib.suppress(OSError):
                self.bench.save()  # type: ignore[union-attr]
        if self.config.sim_socket is not None and server is not None:
            with contextlib.suppress(OSError):
                self.config.sim_socket.unlink()
        if hasattr(self, "database"):
            if self.restart is not None and self.restart_settings:
                await self._store_restart_settings()
            self.database.close()

    async def _store_restart_settings(self) -> None:
        storage = self.database.storage
        for key, value in self.restart_settings.items():
            try:
                await asyncio.wait_for(self.database.run(storage.set_setting, key, value), SHUTDOWN_FLUSH_S)
            except (StorageError, TimeoutError) as exc:
                log.error("setting %s not stored before the restart: %s", key, exc)

    async def _final_readings(self) -> None:
        """One meter reading per EVSE after the contactors opened, for meterStop."""

        async def read(evse_id: int, meter: MeterDriver) -> None:
            task = asyncio.ensure_future(meter.read())
            # Not wait_for: it waits for a cancelled read to finish, and a driver busy
            # reconnecting may take seconds to notice.
            done, _ = await asyncio.wait({task}, timeout=FINAL_READING_TIMEOUT_S)
            if task not in done:
                task.cancel()
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
                return
            with contextlib.suppress(DriverError, TimeoutError, OSError):
                self._apply(self.station.meter_read(self.now(), evse_id, task.result()))

        await asyncio.gather(*(read(i, d.meter) for i, d in self.drivers.items()))

    # -- event sources -----------------------------------------------------------------

    def _on_view(self, evse_id: int, view: EvseView) -> None:
        if not self.stopping.is_set():
            before = self.station.evses[evse_id].view
            self._apply(self.station.evse_seen(self.now(), evse_id, view))
            if self.ocpp is not None and (before is None or before.contactor_closed != view.contactor_closed):
                self.ocpp.station_changed([])  # 2.0.1: PowerPathClosed is a transaction point

    async def _poll_meter(self, evse_id: int, meter: MeterDriver) -> None:
        channel = self.channels[evse_id]
        failures = 0
        while True:
            try:
                reading = await asyncio.wait_for(meter.read(), METER_TIMEOUT_S)
                if not _finite(reading):
                    raise DriverError(f"meter returned non-finite values: {reading}")
            except (DriverError, TimeoutError, OSError) as exc:
                failures += 1
                if failures == METER_FAILURES_FOR_FAULT:
                    log.error(
                        "EVSE %d: meter not answering (%d tries): %s",
                        evse_id,
                        failures,
                        exc or "timeout",
                        extra={"evse_id": evse_id},
                    )
                    channel.meter = (False, None)
            else:
                if failures >= METER_FAILURES_FOR_FAULT:
                    log.warning("EVSE %d: meter answering again", evse_id, extra={"evse_id": evse_id})
                failures = 0
                channel.meter = (True, max(reading.current_a, default=0.0))
                self._apply(self.station.meter_read(self.now(), evse_id, reading))
            await wait_event(self.read_now[evse_id], METER_INTERVAL_S)
            self.read_now[evse_id].clear()

    async def _read_tokens(self, rfid: RfidDriver) -> None:
        async for token in rfid.tokens():
            log.info("token %s presented", token)
            self._apply(self.station.token_presented(self.now(), token))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._apply(self.station.tick(self.now()))
            if self.ocpp is not None:
                self.ocpp.tick()
                if self._counting is None or self._counting.done():  # never wait on SQLite here
                    self._counting = self.spawn(self._count_outbox())

    async def _follow_limits(self) -> None:
        """Apply the charging limits at the instant the profiles change them (the station core
        says when); ``update_limits`` wakes this when that instant may have moved."""
        while True:
            due = self.station.next_limit_change(self.now())
            if due is None:
                await self.limits_wake.wait()
            else:
                await wait_event(self.limits_wake, max(0.0, (due - self.now()).total_seconds()))
            if not self.limits_wake.is_set():
                self.update_limits()  # woken a little early, this changes nothing: sleep the rest
            self.limits_wake.clear()

    async def _aligned_meter_values(self) -> None:
        """Clock-aligned meter values (ClockAlignedDataInterval), in or out of a transaction."""
        while True:
            interval = self.aligned_interval_s
            if interval <= 0:
                await asyncio.sleep(1.0)
                continue
            now = self.now().timestamp()
            await asyncio.sleep(interval - now % interval)
            at = self.now()
            for evse_id, state in self.station.evses.items():
                tx = state.tx
                if tx is not None and tx.persisted and state.reading is not None:
                    body = sample_body(evse_id, at, "Sample.Clock", state.reading) if self._queues else None
                    self.writes.put(
                        partial(
                            Storage.add_meter_sample,
                            tx_id=tx.id,
                            taken_at=at,
                            context="Sample.Clock",
                            reading=state.reading,
                            outbox=body,
                        ),
                        then=self._outbox_changed,
                    )
                    self.ocpp.station_changed(
                        [MeterSampled(tx.id, at, state.reading, evse_id, "Sample.Clock")]
                    )
                else:
                    self.spawn(self.ocpp.meter_values_now(evse_id, "Sample.Clock"))

    async def _count_outbox(self) -> None:
        with contextlib.suppress(StorageError):
            self.outbox_count = await self.database.run(self.database.storage.outbox_size)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """A background task that shutdown cancels and whose failure is logged."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("background task failed", exc_info=t.exception())

        task.add_done_callback(done)
        return task

    def _outbox_changed(self) -> None:
        if self.ocpp is not None:
            self.ocpp.outbox_changed()

    async def ocpp_ready(self) -> None:
        """The CSMS accepted us: report what happened while we were away."""
        if self.ocpp is not None:
            await self.firmware_after_restart(self.ocpp.firmware_status_notification)

    def status_info(self, evse_id: int) -> str:
        state = self.station.evses[evse_id]
        return Station.connector_status(state)[2] if state.view is not None else ""

    @property
    def _queues(self) -> bool:
        """Whether transaction records carry a 1.6 outbox body (2.0.1 queues its own events)."""
        return self.ocpp is not None and self.ocpp.queues_records

    def _stop_body(
        self, evse_id: int, at: datetime, meter_stop: float, reason: str, id_tag: str | None
    ) -> dict[str, Any] | None:
        if not self._queues:
            return None
        return {
            "evse_id": evse_id,
            "timestamp": timestamp(at),
            "meter_stop_wh": meter_stop,
            "reason": reason,
            "id_tag": id_tag,
        }

    async def _supervise(self) -> None:
        """Ping the systemd watchdog only while every control loop ticks; act on a stall."""
        watchdog = self.notifier.watchdog_s
        last_ping, last_status = float("-inf"), ""
        while True:
            await asyncio.sleep(SUPERVISE_INTERVAL_S)
            if self.stopping.is_set():
                return  # shutdown stops the loops itself
            now = time.monotonic()
            stalled = [c for c in self.loops if not c.is_alive() or now - c.stats.last_tick > STALL_S]
            if stalled:
                self._stalled(stalled)
                return
            dead = [t for t in self.tasks if t.done()]
            if dead:
                self._task_died(dead)
                return
            if watchdog and now - last_ping >= watchdog / 4:
                self.notifier.send(WATCHDOG="1")
                last_ping = now
            line = self._status_line()
            if line != last_status:
                self.notifier.send(STATUS=line)
                last_status = line

    def _stalled(self, loops: list[ControlLoop]) -> None:
        # The stalled thread cannot open its contactor: do it from here, then exit so
        # systemd restarts the service (Restart=on-failure); the watchdog pings stop.
        for control in loops:
            for channel in control.channels:
                channel.make_safe()
        names = ", ".join(c.name for c in loops)
        log.critical(
            "control loop %s stalled for over %.1f s; contactor opened from the event loop; "
            "exiting for a restart",
            names,
            STALL_S,
        )
        self.notifier.send(STATUS=f"FAULT: control loop {names} stalled; restarting")
        self.exit_code = 1
        self.stop()

    def _task_died(self, dead: list[asyncio.Task[Any]]) -> None:
        for task in dead:
            error = None if task.cancelled() else task.exception()
            log.critical(
                "task %s ended unexpectedly: %r; exiting for a restart",
                task.get_name(),
                error,
                exc_info=error,
            )
        self.notifier.send(STATUS=f"FAULT: {dead[0].get_name()} ended; restarting")
        self.exit_code = 1
        self.stop()

    def _status_line(self) -> str:
        parts = []
        for evse_id, state in self.station.evses.items():
            status, code = state.status[0] or "Available", state.status[1]
            text = f"EVSE {evse_id} {status}"
            if status == "Charging" and state.reading is not None:
                text += f" {state.reading.power_w / 1000:.1f} kW"
            if code not in ("", "NoError"):
                text += f" ({code})"
            parts.append(text)
        if self.config.ocpp is None:
            link = "standalone"
        elif self.ocpp is not None and self.ocpp.online:
            link = f"OCPP {self.ocpp.link.version} connected"
        else:
            link = "OCPP not connected"
        return f"{link}; " + ", ".join(parts)

    # -- actions -----------------------------------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case TransactionStarted(tx):
                    log.info(
                        "EVSE %d: transaction %s started for %s at %.1f Wh",
                        tx.evse_id,
                        tx.id,
                        tx.id_tag,
                        tx.meter_start_wh,
                        extra={"evse_id": tx.evse_id, "transaction_id": tx.id},
                    )
                    body = None
                    if self._queues:
                        body = {
                            "evse_id": tx.evse_id,
                            "id_tag": tx.id_tag,
                            "timestamp": timestamp(tx.started_at),
                            "meter_start_wh": tx.meter_start_wh,
                            "reservation_id": tx.reservation_id,
                        }
                    self.writes.put(
                        partial(
                            Storage.start_transaction,
                            tx_id=tx.id,
                            evse_id=tx.evse_id,
                            id_tag=tx.id_tag,
                            started_at=tx.started_at,
                            meter_start_wh=tx.meter_start_wh,
                            outbox=body,
                        ),
                        then=partial(self._persisted, tx.id),
                    )
                    if self.ocpp is not None:
                        self._transaction_started(tx.evse_id, tx.id, tx.id_tag)
                case TransactionStopped(tx_id, evse_id, stopped_at, meter_stop, reason, id_tag):
                    log.info(
                        "EVSE %d: transaction %s stopped (%s) at %.1f Wh",
                        evse_id,
                        tx_id,
                        reason,
                        meter_stop,
                        extra={"evse_id": evse_id, "transaction_id": tx_id},
                    )
                    self.writes.put(
                        partial(
                            Storage.stop_transaction,
                            tx_id=tx_id,
                            stopped_at=stopped_at,
                            meter_stop_wh=meter_stop,
                            reason=reason,
                            outbox=self._stop_body(evse_id, stopped_at, meter_stop, reason, id_tag),
                        ),
                        then=self._outbox_changed,
                    )
                    if self.ocpp is not None:
                        self._transaction_ended(tx_id)
                case MeterSampled(tx_id, taken_at, reading, evse_id):
                    body = None
                    if self._queues:
                        body = sample_body(evse_id, taken_at, "Sample.Periodic", reading)
                    self.writes.put(
                        partial(
                            Storage.add_meter_sample,
                            tx_id=tx_id,
                            taken_at=taken_at,
                            context="Sample.Periodic",
                            reading=reading,
                            outbox=body,
                        ),
                        then=self._outbox_changed,
                    )
                case MeterReadWanted(evse_id):
                    self.read_now[evse_id].set()
                case Permit(evse_id, authorized, limit_a):
                    self.channels[evse_id].permit = (authorized, limit_a)
                case StatusChanged(evse_id, status, code, info):
                    level = logging.WARNING if status == "Faulted" else logging.INFO
                    detail = f" ({code}: {info})" if code != "NoError" else ""
                    log.log(level, "EVSE %d: %s%s", evse_id, status, detail, extra={"evse_id": evse_id})
                    if self.ocpp is not None:
                        self.ocpp.status_changed()
                case TokenRejected(token, reason):
                    log.warning("token %s rejected: %s", token, reason)
                case AuthorizeWanted(token):
                    self.spawn(self._authorize_presented(token))
                case ReservationEnded(reservation_id, evse_id, reason):
                    log.info("EVSE %d: reservation %d ended (%s)", evse_id, reservation_id, reason)
                    self._forget_reservation(reservation_id)
        if actions and self.ocpp is not None:
            self.ocpp.station_changed(actions)

    def _persisted(self, tx_id: str) -> None:
        self._apply(self.station.transaction_persisted(self.now(), tx_id))
        self._outbox_changed()

    # -- status ------------------------------------------------------------------------

    def status(self, evse_id: int | None) -> dict[str, Any]:
        if evse_id is None:
            return {
                "evses": [self._evse_status(i) for i in self.channels],
                "ocpp": {
                    "connected": bool(self.ocpp and self.ocpp.online),
                    "version": self.ocpp.link.version if self.ocpp and self.ocpp.link.connected else None,
                    "queued": self.outbox_count,
                },
            }
        return self._evse_status(evse_id)

    def _reported_status(self, status: str) -> str:
        return self.ocpp.reported_status(status) if self.ocpp is not None else status

    def _evse_status(self, evse_id: int) -> dict[str, Any]:
        view = self.channels[evse_id].view
        state = self.station.evses[evse_id]
        reading: MeterReading | None = state.reading
        tx = state.tx
        return {
            "evse": evse_id,
            "cp_state": view.cp.value if view else "A",
            "pwm": bool(view and view.pilot is PilotMode.PWM),
            "duty_percent": view.duty_percent if view else 100.0,
            "offered_a": round(view.offered_a, 1) if view else 0.0,
            "contactor_closed": bool(view and view.contactor_closed),
            "power_w": round(reading.power_w, 1) if reading else 0.0,
            "energy_wh": round(reading.energy_wh, 3) if reading else 0.0,
            "connector_status": self._reported_status(state.status[0] or "Available"),
            "error_code": state.status[1] or "NoError",
            "faults": sorted(f.value for f in view.faults) if view else [],
            "ocpp_connected": bool(self.ocpp and self.ocpp.online),
            "transaction_id": (self.csms_ids.get(tx.id, tx.id)) if tx and tx.persisted else None,
        }
