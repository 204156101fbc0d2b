# The methods take ``self: Daemon``: this class only splits the daemon's OCPP-facing
# services into their own module, which mypy reports as an unusual self type.
# mypy: disable-error-code="misc"
"""Version-neutral station services the OCPP adapters call.

Authorization (local list, cache, offline rules), remote start and stop, availability,
reservations, charging profiles, resets, firmware and diagnostics. The daemon mixes
this in; the 1.6 adapter (and the 2.0.1 one) translate messages into these calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import logging
import os
import shlex
import subprocess
import tarfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller import authorization as auth
from controller import schedule
from controller.station import Reservation
from controller.storage import Storage, StorageError, timestamp
from controller.transfer import TransferError, download, redact, upload

if TYPE_CHECKING:
    from controller.daemon import Daemon

log = logging.getLogger(__name__)

FIRMWARE_DIR = "firmware"
DIAGNOSTICS_DIR = "diagnostics"
Notify = Callable[[str], Awaitable[None]]


class Services:
    """Mixed into ``Daemon``; ``self`` is the daemon."""

    maintenance: asyncio.Task[Any] | None = None

    # -- settings ----------------------------------------------------------------------

    def save_setting(self: Daemon, key: str, value: str) -> None:
        self.writes.put(lambda storage: storage.set_setting(key, value))

    # -- authorization -----------------------------------------------------------------

    async def authorize_token(self: Daemon, token: str) -> auth.IdTagInfo | None:
        """Decide for ``token``: local list and cache, the CSMS, or the offline rules."""
        client = self.ocpp
        settings = client.auth_settings() if client else auth.AuthSettings()
        now = self.now()
        online = client is not None and client.online
        decision = auth.decide(token, now, online, self.local_list, self.auth_cache, settings)
        if decision.outcome == "ask" and client is not None:
            info: auth.IdTagInfo | None = await client.authorize(token)
            if info is not None:
                if settings.auth_cache_enabled:
                    self.cache_id_tag(token, info)
                return info
            decision = auth.decide(token, now, False, self.local_list, self.auth_cache, settings)
        if decision.outcome == "accept":
            log.info("token %s accepted locally (%s)", token, decision.source)
            return decision.info or auth.IdTagInfo("Accepted")
        if decision.info is not None:
            return decision.info
        return auth.IdTagInfo("Invalid")

    async def _authorize_presented(self: Daemon, token: str) -> None:
        info = await self.authorize_token(token)
        accepted = info is not None and info.effective(self.now()) == "Accepted"
        reason = f"the CSMS says {info.effective(self.now()) if info else 'nothing'}"
        self._apply(
            self.station.token_authorized(self.now(), token, accepted, info.parent if info else None, reason)
        )

    def cache_id_tag(self: Daemon, token: str, info: auth.IdTagInfo) -> None:
        now = self.now()
        self.auth_cache.update(token, info, now)
        self.writes.put(
            lambda storage: auth.save_cache_entry(storage, token, info, now, self.auth_cache.capacity)
        )

    def id_tag_info(self: Daemon, tx_id: str, token: str, info: auth.IdTagInfo) -> None:
        """The CSMS's verdict on a transaction's id tag (StartTransaction answer)."""
        if self.ocpp is not None and self.ocpp.auth_settings().auth_cache_enabled and token:
            self.cache_id_tag(token, info)
        if info.effective(self.now()) != "Accepted" and self.station.deauthorized(self.now(), tx_id):
            log.warning("transaction %s: id tag %s is %s; transaction stopped", tx_id, token, info.status)
            self._apply(self.station.drain())

    async def clear_auth_cache(self: Daemon) -> None:
        self.auth_cache.clear()
        await self.database.run(auth.clear_cache, self.database.storage)

    async def update_local_list(
        self: Daemon, update_type: str, version: int, entries: list[tuple[str, auth.IdTagInfo | None]]
    ) -> str:
        status = self.local_list.check(update_type, version, entries)
        if status != "Accepted":
            return status
        try:
            await self.database.run(
                auth.save_local_list, self.database.storage, update_type, version, entries
            )
        except StorageError as exc:
            log.error("local authorization list not saved: %s", exc)
            return "Failed"
        return self.local_list.apply(update_type, version, entries)

    # -- remote control ----------------------------------------------------------------

    def can_remote_start(self: Daemon, connector: int | None, token: str) -> bool:
        """Whether a remote start could go ahead once ``token`` is authorized."""
        return self.station.remote_start_target(connector, token, parent_unknown=True) is not None

    def remote_start(
        self: Daemon, connector: int | None, token: str, parent: str | None, profile: schedule.Profile | None
    ) -> bool:
        evse_id = self.station.remote_start(self.now(), connector, token, parent)
        if evse_id is not None and profile is not None:
            # Installed when this token's transaction starts there (maybe at once, below).
            self.pending_profiles[evse_id] = (token, profile)
        self._apply(self.station.drain())
        log.info(
            "remote start for %s on %s: %s",
            token,
            connector or "any EVSE",
            "rejected" if evse_id is None else f"accepted on EVSE {evse_id}",
        )
        return evse_id is not None

    async def local_transaction_id(self: Daemon, csms_id: str) -> str | None:
        for evse in self.station.evses.values():
            tx = evse.tx
            if tx is not None and csms_id in (tx.id, self.csms_ids.get(tx.id)):
                return tx.id  # 2.0.1: the station names its transactions itself
        return await self.database.run(self.database.storage.transaction_by_csms_id, csms_id)

    async def remote_stop(self: Daemon, csms_id: str) -> bool:
        tx_id = await self.local_transaction_id(csms_id)
        if tx_id is None:
            return False
        ok = self.station.stop_transaction(self.now(), tx_id, "Remote")
        self._apply(self.station.drain())
        return ok

    def csms_transaction_id(self: Daemon, evse_id: int) -> str | None:
        tx = self.station.evses[evse_id].tx
        return self.csms_ids.get(tx.id) if tx is not None else None

    def unlock(self: Daemon, evse_id: int) -> str:
        lock = self.evse_config[evse_id].lock
        if lock.driver == "none":
            return "NotSupported"  # a tethered cable: nothing to unlock, the session goes on
        tx = self.station.evses[evse_id].tx
        if tx is not None:
            self.station.stop_transaction(self.now(), tx.id, "UnlockCommand")
            self._apply(self.station.drain())
        # Without a permit the supervisor releases the lock by itself.
        return "Unlocked"

    def set_availability(self: Daemon, connector: int, operative: bool) -> str:
        status = self.station.set_available(self.now(), connector, operative)
        targets = list(self.station.evses) if connector == 0 else [connector]
        for evse_id in targets:
            self.save_setting(f"availability.{evse_id}", "operative" if operative else "inoperative")
        self._apply(self.station.drain())
        return status

    def reset(self: Daemon, hard: bool) -> None:
        log.warning("%s reset requested by the CSMS", "hard" if hard else "soft")
        self.shutdown_reason = "HardReset" if hard else "SoftReset"
        self.restart = "reboot" if hard and self.config.system.get("reboot_command") else "exec"
        self.stop()

    # -- reservations ------------------------------------------------------------------

    async def reserve(self: Daemon, reservation: Reservation) -> str:
        if reservation.evse_id == 0:
            # Connector 0: the station keeps one EVSE for the holder; it picks the first free one.
            free = [
                e.id for e in self.station.evses.values() if e.idle() and e.available and not e.reservation
            ]
            if not free:
                return "Occupied"
            reservation = Reservation(
                reservation.id, free[0], reservation.id_tag, reservation.expiry, reservation.parent
            )
        status = self.station.reserve(self.now(), reservation)
        self._apply(self.station.drain())
        if status == "Accepted":
            row = (
                reservation.id,
                reservation.evse_id,
                reservation.id_tag,
                reservation.parent,
                timestamp(reservation.expiry),
            )
            self.writes.put(
                lambda s: s._write(
                    "INSERT OR REPLACE INTO reservations (id, evse_id, id_tag, parent, expiry) "
                    "VALUES (?, ?, ?, ?, ?)",
                    row,
                )
            )
        return status

    async def cancel_reservation(self: Daemon, reservation_id: int) -> bool:
        ok = self.station.cancel_reservation(self.now(), reservation_id)
        self._apply(self.station.drain())
        return ok

    def _forget_reservation(self: Daemon, reservation_id: int) -> None:
        self.writes.put(lambda s: s._write("DELETE FROM reservations WHERE id = ?", (reservation_id,)))

    # -- smart charging ----------------------------------------------------------------

    async def install_profile(self: Daemon, profile: schedule.Profile) -> str:
        local = None if profile.tx_id is None else await self.local_transaction_id(profile.tx_id)
        active = None  # read after the await: the transaction may have ended meanwhile
        if profile.evse_id:
            tx = self.station.evses[profile.evse_id].tx
            active = tx.id if tx is not None else None
        if profile.tx_id is not None:
            if local is None or local != active:
                return "Rejected"
            profile = dataclasses.replace(profile, tx_id=local)
        status = self.profiles.install(profile, active)
        if status == "Accepted":
            self._save_profiles()
            self.update_limits()
        return status

    async def clear_profiles(
        self: Daemon,
        profile_id: int | None,
        evse_id: int | None,
        purpose: schedule.Purpose | None,
        stack_level: int | None,
    ) -> int:
        count = self.profiles.clear(profile_id, evse_id, purpose, stack_level)
        if count:
            self._save_profiles()
            self.update_limits()
        return count

    def _save_profiles(self: Daemon) -> None:
        rows = [(p.id, p.evse_id, json.dumps(schedule.to_ocpp16(p))) for p in self.profiles.all()]

        def write(storage: Storage) -> None:
            def replace() -> None:
                storage.db.execute("DELETE FROM charging_profiles")
                storage.db.executemany(
                    "INSERT INTO charging_profiles (id, evse_id, body) VALUES (?, ?, ?)", rows
                )

            storage._atomic(replace)

        self.writes.put(write)

    def composite(
        self: Daemon, evse_id: int, start: datetime, duration_s: int, unit: str
    ) -> list[schedule.Period]:
        tx = self.station.evses[evse_id].tx if evse_id else None
        phases = self.evse_config[evse_id].phases if evse_id else 3
        hardware = self.station.evses[evse_id].max_current_a if evse_id else None
        periods = self.profiles.composite(
            evse_id,
            start,
            duration_s,
            unit,
            tx.started_at if tx else None,
            tx.id if tx else None,
            phases=phases,
        )
        if hardware is None:  # the station as a whole: the sum of its EVSEs
            hardware = sum(e.max_current_a for e in self.station.evses.values())
        cap = hardware if unit == "A" else hardware * 230.0 * phases
        return [schedule.Period(p.start_s, min(p.limit, cap), p.phases) for p in periods]

    def update_limits(self: Daemon) -> None:
        now = self.now()
        # The station maximum is for the whole station: the EVSEs in a transaction share it.
        charging = sum(1 for e in self.station.evses.values() if e.tx is not None)
        station_cap = self.profiles.limit_a(0, now, None, None) / max(1, charging)
        for evse_id, state in self.station.evses.items():
            tx = state.tx
            limit = self.profiles.limit_a(
                evse_id,
                now,
                tx.started_at if tx else None,
                tx.id if tx else None,
                phases=self.evse_config[evse_id].phases,
            )
            limit = min(limit, station_cap)
            if limit != state.limit_a:
                log.info(
                    "EVSE %d: charging limit %s",
                    evse_id,
                    "none" if limit == float("inf") else f"{limit:.1f} A",
                )
                self._apply(self.station.set_limit(now, evse_id, limit))

    def _transaction_started(self: Daemon, evse_id: int, tx_id: str, token: str) -> None:
        pending = self.pending_profiles.pop(evse_id, None)
        if pending is not None and pending[0] == token:
            profile = pending[1]
            status = self.profiles.install(dataclasses.replace(profile, evse_id=evse_id, tx_id=tx_id), tx_id)
            log.info("remote start charging profile %d: %s", profile.id, status)
            self._save_profiles()
        self.update_limits()

    def _transaction_ended(self: Daemon, tx_id: str) -> None:
        if self.profiles.transaction_ended(tx_id):
            self._save_profiles()
        self.update_limits()

    # -- meter values ------------------------------------------------------------------

    def sample(self: Daemon, evse_id: int, context: str) -> dict[str, Any] | None:
        reading = self.station.evses[evse_id].reading
        if reading is None:
            return None
        return sample_body(evse_id, self.now(), context, reading)

    # -- firmware ----------------------------------------------------------------------

    def update_firmware(
        self: Daemon, location: str, retrieve: datetime, retries: int, interval: int, notify: Notify
    ) -> None:
        if self.maintenance is not None and not self.maintenance.done():
            self.maintenance.cancel()
        self.maintenance = self.spawn(self._firmware(location, retrieve, retries, interval, notify))

    async def _firmware(
        self: Daemon, location: str, retrieve: datetime, retries: int, interval: int, notify: Notify
    ) -> None:
        wait = (retrieve - self.now()).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)
        folder = self.config.storage_dir / FIRMWARE_DIR
        folder.mkdir(exist_ok=True)
        image = folder / "firmware.bin"  # never a name from the CSMS: it could point anywhere
        await notify("Downloading")
        try:
            await download(location, image, retries=retries, retry_interval_s=interval)
        except TransferError as exc:
            log.error("firmware download failed: %s", exc)
            await notify("DownloadFailed")
            return
        await notify("Downloaded")
        while any(e.tx is not None or e.stopping is not None for e in self.station.evses.values()):
            await asyncio.sleep(1.0)  # install only once no transaction runs
        command = self.config.firmware.get("install_command")
        await notify("Installing")
        if not command:
            log.error("firmware downloaded to %s but firmware.install_command is not set", image)
            await notify("InstallationFailed")
            return
        code = await _run([*shlex.split(command), str(image)])
        if code != 0:
            log.error("firmware install command exited %d", code)
            await notify("InstallationFailed")
            return
        log.warning("firmware installed from %s; restarting", redact(location))
        await self.database.run(self.database.storage.set_setting, "firmware.installed", "pending")
        self.shutdown_reason = "Reboot"
        self.restart = "reboot" if self.config.system.get("reboot_command") else "exec"
        self.stop()

    async def firmware_after_restart(self: Daemon, notify: Notify) -> None:
        if await self.database.run(self.database.storage.get_setting, "firmware.installed") == "pending":
            await notify("Installed")
            await self.database.run(self.database.storage.set_setting, "firmware.installed", "reported")

    # -- diagnostics -------------------------------------------------------------------

    def diagnostics_name(self: Daemon) -> str:
        return f"{self.config.station['id']}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.tar.gz"

    async def upload_diagnostics(
        self: Daemon,
        location: str,
        name: str,
        start: datetime | None,
        stop: datetime | None,
        retries: int,
        interval: int,
        notify: Notify,
    ) -> None:
        folder = self.config.storage_dir / DIAGNOSTICS_DIR
        folder.mkdir(exist_ok=True)
        path = folder / name
        await asyncio.to_thread(self._bundle, path, start, stop)
        await notify("Uploading")
        try:
            await upload(location, path, retries=retries, retry_interval_s=interval)
        except TransferError as exc:
            log.error("diagnostics upload failed: %s", exc)
            await notify("UploadFailed")
        else:
            log.info("diagnostics %s uploaded to %s", name, redact(location))
            await notify("Uploaded")
        finally:
            with contextlib.suppress(OSError):
                path.unlink()

    def _bundle(self: Daemon, path: Path, start: datetime | None, stop: datetime | None) -> None:
        """A tar.gz with the status, the journal of the window asked for and the OCPP frames."""
        with tarfile.open(path, "w:gz") as tar:

            def add(name: str, data: bytes) -> None:
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), int(time.time())
                tar.addfile(info, io.BytesIO(data))

            add("status.json", json.dumps(self.status(None), indent=2, default=str).encode())
            journal = _journal(start, stop)
            if journal:
                add("journal.txt", journal)
            for frames in self.frames.files() if self.frames else []:
                tar.add(frames, arcname=f"frames/{frames.name}")


def sample_body(evse_id: int, at: datetime, context: str, reading: Any) -> dict[str, Any]:
    return {
        "evse_id": evse_id,
        "timestamp": timestamp(at),
        "context": context,
        "energy_wh": reading.energy_wh,
        "power_w": reading.power_w,
        "current_a": list(reading.current_a),
        "voltage_v": list(reading.voltage_v),
    }


async def _run(argv: list[str]) -> int:
    try:
        process = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL)
    except OSError as exc:
        log.error("cannot run %s: %s", argv[0], exc)
        return 127
    return await process.wait()


def _journal(start: datetime | None, stop: datetime | None) -> bytes:
    argv = ["journalctl", "--no-pager", "-o", "short-iso-precise"]
    if os.environ.get("INVOCATION_ID"):
        argv += ["-u", "evse"]
    else:
        argv += [f"_PID={os.getpid()}"]
    if start:
        argv += ["--since", f"@{int(start.timestamp())}"]
    if stop:
        argv += ["--until", f"@{int(stop.timestamp())}"]
    try:
        return subprocess.run(argv, capture_output=True, timeout=10, check=False).stdout[-20_000_000:]
    except (OSError, subprocess.SubprocessError):
        return b""
