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
import functools
import io
import json
import logging
import os
import shlex
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.core import authorization as auth
from controller.core import schedule
from controller.core import station as station_model
from controller.core.station import Reservation
from controller.io.storage import Storage, StorageError, parse_timestamp, timestamp
from controller.io.transfer import TransferError, download, redact, upload
from controller.lazy import lazy_module
from controller.safety.supervisor import LOCK_TIMEOUT_S, PWM_OFF_OPEN_S, Fault
from controller.security import events as security
from controller.security import tls
from controller.security.certerrors import CertError

if TYPE_CHECKING:
    from controller.daemon import Daemon
    from controller.security import certs
else:
    certs = lazy_module("controller.security.certs")

log = logging.getLogger(__name__)

FIRMWARE_DIR = "firmware"
CERTIFICATE_STORE_MAX = 20  # CertificateStoreMaxLength: installed roots plus the client chain
FIRMWARE_VERIFY_S = 600  # the new firmware must reach the CSMS within this after its restart
DIAGNOSTICS_DIR = "diagnostics"
UNLOCK_POLL_S = 0.02  # how often UnlockConnector looks at the lock's state
Notify = Callable[[str], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class FirmwareRequest:
    location: str
    retrieve: datetime
    retries: int = 0
    interval: int = 30
    install_at: datetime | None = None
    signature: str | None = None  # base64; with it, the signing certificate checked already
    signing_cert: Any = None


class Services:
    """Mixed into ``Daemon``; ``self`` is the daemon."""

    maintenance: asyncio.Task[Any] | None = None
    restart: str | None  # Daemon.restart

    # -- settings ----------------------------------------------------------------------

    def save_setting(self: Daemon, key: str, value: str) -> None:
        self.writes.put(lambda storage: storage.set_setting(key, value))

    # -- security events ---------------------------------------------------------------

    def security_event(self: Daemon, event: str, tech_info: str = "") -> None:
        """Log a security event and queue it for the CSMS (persistently, in order)."""
        body = security.event_body(event, self.now(), tech_info)
        log.warning("security event %s%s", event, f": {tech_info}" if tech_info else "")
        bodies = [body]
        if self.security_log.append(body):  # a small local file: written at once
            cleared = security.event_body("SecurityLogWasCleared", self.now(), "oldest entries rotated out")
            bodies.append(cleared)
            self.security_log.append(bodies[-1])
        if self.ocpp is None:
            return

        self.writes.put(lambda storage: storage.add_security_events(bodies), then=self._outbox_changed)

    # -- certificates ------------------------------------------------------------------

    def _tls_in_use(self: Daemon) -> bool:
        target = getattr(self.ocpp, "target", None)
        return target is not None and target.profile >= 2

    async def install_certificate(self: Daemon, cert_type: str, pem: str, additional_check: bool) -> str:
        status: str = await asyncio.to_thread(
            self.certs.install, cert_type, pem, self.now(), CERTIFICATE_STORE_MAX, additional_check
        )
        log.info("%s install: %s", cert_type, status)
        if status == "Accepted":
            self.security_event("ReconfigurationOfSecurityParameters", f"{cert_type} installed")
        return status

    async def delete_certificate(self: Daemon, hash_data: dict[str, Any]) -> str:
        status: str = await asyncio.to_thread(
            functools.partial(self.certs.delete, hash_data, protect_csms_root=self._tls_in_use())
        )
        log.info("certificate %s delete: %s", hash_data.get("serialNumber"), status)
        if status == "Accepted":
            self.security_event("ReconfigurationOfSecurityParameters", "certificate deleted")
        return status

    async def certificate_request(self: Daemon, organization: str) -> str:
        """A new key pair and its CSR (PEM), for SignCertificate."""
        csr: str = await asyncio.to_thread(self.certs.new_csr, self.config.station["id"], organization)
        return csr

    async def certificate_signed(self: Daemon, chain: str, max_bytes: int | None) -> bool:
        try:
            await asyncio.to_thread(self.certs.accept_signed, chain, self.now(), max_bytes)
        except CertError as exc:
            log.error("CertificateSigned refused: %s", exc)
            self.security_event("InvalidChargingStationCertificate", str(exc))
            return False
        log.warning("new client certificate installed: used from the next connection")
        self.security_event("ReconfigurationOfSecurityParameters", "new client certificate")
        return True

    def client_certificate(self: Daemon) -> tuple[Path, Path] | None:
        """(chain, key) for profile 3: the one the CSMS signed, else the config's files."""
        return (
            self.certs.station_certificate(*self.client_files)
            if self.client_files
            else self.certs.station_certificate()
        )

    def client_certificate_expiry(self: Daemon) -> datetime | None:
        files = self.client_certificate()
        if files is None:
            return None
        try:
            expiry: datetime = certs.load_certs(files[0].read_bytes())[0].not_valid_after_utc
        except (OSError, CertError):
            return None
        return expiry

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
        if decision.source == auth.SOURCE_CACHE:  # a use: LifeTime starts again, after a restart too
            self.writes.put(lambda storage: auth.touch_cache_entry(storage, token, now))
        if decision.outcome == "accept":
            log.info("token %s accepted locally (%s)", token, decision.source)
            return decision.info or auth.IdTagInfo("Accepted")
        if decision.info is not None:
            return decision.info
        return auth.IdTagInfo("Invalid")

    async def _authorize_presented(self: Daemon, token: str) -> None:
        # The status decides: an expiry date in the CSMS's answer only says when the
        # cache entry lapses (a local entry comes with its expiry already applied).
        info = await self.authorize_token(token)
        accepted = info is not None and info.status == "Accepted"
        reason = f"the CSMS says {info.status if info else 'nothing'}"
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
        if self.station.unidentified(tx_id):
            # E05 is about ids the station asked about: this one it charges without.
            if info.status != "Accepted":
                log.info("transaction %s: the CSMS says %s; it needs no id and goes on", tx_id, info.status)
            return
        if self.ocpp is not None and self.ocpp.auth_settings().auth_cache_enabled and token:
            self.cache_id_tag(token, info)
        if info.status == "Accepted":
            if info.parent is not None:
                self.station.adopt_parent(tx_id, info.parent)
            return
        outcome = self.station.deauthorized(self.now(), tx_id)
        if outcome:
            what = "transaction stopped" if outcome == "stopped" else "energy stops, the transaction goes on"
            log.warning("transaction %s: id tag %s is %s; %s", tx_id, token, info.status, what)
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

    async def unlock(self: Daemon, evse_id: int) -> str:
        """UnlockConnector in the 1.6 words: a transaction on the EVSE ends first, and the
        answer is the lock's own feedback."""
        lock = self.evse_config[evse_id].lock
        if lock.driver == "none":
            return "NotSupported"  # a tethered cable: nothing to unlock, the session goes on
        tx = self.station.evses[evse_id].tx
        if tx is not None:
            self.station.stop_transaction(self.now(), tx.id, "UnlockCommand")
            self._apply(self.station.drain())
        return "Unlocked" if await self.release_lock(evse_id) else "UnlockFailed"

    async def release_lock(self: Daemon, evse_id: int) -> bool:
        """Ask the supervisor to release the connector lock; true once the lock reports it.

        Only the control loop commands the lock: the request goes to its channel, and the
        supervisor releases the lock once nothing is live (an EV that goes on drawing after
        its transaction ended keeps the contactor closed up to PWM_OFF_OPEN_S). False when
        the contacts are welded, or the lock still reports engaged LOCK_TIMEOUT_S after
        the release was commanded (jammed). Requests may overlap (a CSMS that retries after
        its own timeout): the request stays raised until the last of them has its answer."""
        channel = self.channels[evse_id]
        clock = asyncio.get_running_loop().time
        channel.unlock_waiters += 1
        try:
            first = channel.ticks + 1  # a tick in progress may have missed the request
            deadline = clock() + PWM_OFF_OPEN_S + LOCK_TIMEOUT_S + 1.0
            released_at: float | None = None
            while clock() < deadline:
                await asyncio.sleep(UNLOCK_POLL_S)
                if channel.ticks <= first:
                    continue
                locked, engaged = channel.lock_state
                if not locked and not engaged:
                    log.info("EVSE %d: connector unlocked", evse_id, extra={"evse_id": evse_id})
                    return True
                view = channel.view
                if view is not None and Fault.CONTACTOR_WELD in view.faults:
                    break
                if not locked:
                    if released_at is None:
                        released_at = clock()
                    if clock() - released_at > LOCK_TIMEOUT_S:
                        break
            log.warning("EVSE %d: the connector lock did not release", evse_id, extra={"evse_id": evse_id})
            return False
        finally:
            channel.unlock_waiters -= 1

    def set_availability(
        self: Daemon, evse_id: int, operative: bool, levels: tuple[str, ...] = (station_model.EVSE,)
    ) -> str:
        """ChangeAvailability of ``levels`` on one EVSE or, with 0, every EVSE; persisted (G03.FR.08)."""
        status = self.station.set_available(self.now(), evse_id, operative, levels)
        targets = list(self.station.evses) if evse_id == 0 else [evse_id]
        for target in targets:
            value = station_model.availability_setting(self.station.evses[target].inoperative)
            self.save_setting(f"availability.{target}", value)
        self._apply(self.station.drain())
        return status

    def load_availability(self: Daemon, settings: dict[str, str]) -> None:
        """The ChangeAvailability levels persisted by ``set_availability``."""
        for evse_id, state in self.station.evses.items():
            state.inoperative = station_model.parse_availability(settings.get(f"availability.{evse_id}"))

    def reset(self: Daemon, hard: bool, retries: int = 0) -> None:
        """``retries``: how often a failing ``reboot_command`` is run again (ResetRetries)."""
        log.warning("%s reset requested by the CSMS", "hard" if hard else "soft")
        self.reset_retries = retries
        self.security_event("ResetOrReboot", f"{'hard' if hard else 'soft'} reset requested by the CSMS")
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
        """GetCompositeSchedule: the limit the station enforces, from ``start`` on."""
        return self.station.composite(evse_id, start, duration_s, unit)

    def update_limits(self: Daemon) -> None:
        """Apply the limits in force now; profiles, transactions or the clock changed, so the
        limit timer (``Daemon._follow_limits``) learns the next change anew."""
        before = {evse_id: state.limit_a for evse_id, state in self.station.evses.items()}
        self._apply(self.station.limits_changed(self.now()))
        for evse_id, state in self.station.evses.items():
            if state.limit_a != before[evse_id]:
                log.info("EVSE %d: charging limit %.1f A", evse_id, state.limit_a)
        self.limits_wake.set()

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

    def firmware_roots(self: Daemon) -> list[Any]:
        """The manufacturer roots firmware signing certificates must be issued by."""
        return list(self.certs.roots("ManufacturerRootCertificate"))

    def check_signing_certificate(self: Daemon, pem: str) -> Any | None:
        """The signing certificate of a firmware request, or None (security event raised)."""
        try:
            return certs.check_signing_certificate(pem, self.firmware_roots(), self.now())
        except CertError as exc:
            log.error("firmware signing certificate refused: %s", exc)
            self.security_event("InvalidFirmwareSigningCertificate", str(exc))
            return None

    def update_firmware(self: Daemon, request: FirmwareRequest, notify: Notify) -> bool:
        """Start an update; True when it cancelled one that was still running."""
        running = self.maintenance is not None and not self.maintenance.done()
        if running:
            assert self.maintenance is not None
            log.warning("firmware update cancelled: a new one was requested")
            self.maintenance.cancel()
        self.maintenance = self.spawn(self._firmware(request, notify))
        return running

    def _busy(self: Daemon) -> bool:
        return any(e.tx is not None or e.stopping is not None for e in self.station.evses.values())

    async def _firmware(self: Daemon, request: FirmwareRequest, notify: Notify) -> None:
        wait = (request.retrieve - self.now()).total_seconds()
        if wait > 0:
            await notify("DownloadScheduled")
            await asyncio.sleep(wait)
        folder = self.config.storage_dir / FIRMWARE_DIR
        folder.mkdir(exist_ok=True)
        image = folder / "firmware.bin"  # never a name from the CSMS: it could point anywhere
        await notify("Downloading")
        try:
            await download(
                request.location, image, retries=request.retries, retry_interval_s=request.interval
            )
        except TransferError as exc:
            log.error("firmware download failed: %s", exc)
            await notify("DownloadFailed")
            return
        await notify("Downloaded")
        if request.signature is not None:
            try:
                digest = await asyncio.to_thread(certs.file_digest, image)
                scheme = certs.verify_firmware(request.signing_cert, request.signature, digest)
            except (CertError, OSError) as exc:
                log.error("firmware from %s refused: %s", redact(request.location), exc)
                self.security_event("InvalidFirmwareSignature", str(exc))
                with contextlib.suppress(OSError):
                    image.unlink()
                await notify("InvalidSignature")
                return
            log.info("firmware signature verified (%s)", scheme)
            await notify("SignatureVerified")
        scheduled = False
        wait = (request.install_at - self.now()).total_seconds() if request.install_at else 0.0
        if wait > 0:
            await notify("InstallScheduled")
            scheduled = True
            await asyncio.sleep(wait)
        blocked: list[int] = []
        try:
            while self._busy():  # install only once no transaction runs; no new one starts
                if not scheduled:
                    await notify("InstallScheduled")
                    scheduled = True
                blocked += self._block_idle_evses()
                await asyncio.sleep(1.0)
            await self._install(image, request.location, notify)
            if self.stopping.is_set():
                blocked = []  # restarting: they stay unavailable until then
        finally:
            if blocked:
                now = self.now()
                for evse_id in blocked:
                    self.station.set_available(now, evse_id, True, (station_model.FIRMWARE,))
                self._apply(self.station.drain())

    def _block_idle_evses(self: Daemon) -> list[int]:
        now, blocked = self.now(), []
        for evse_id, state in self.station.evses.items():
            held = station_model.FIRMWARE in state.inoperative
            if not held and state.tx is None and state.stopping is None:
                self.station.set_available(now, evse_id, False, (station_model.FIRMWARE,))
                blocked.append(evse_id)
        if blocked:
            log.info("EVSE(s) %s unavailable until the firmware is installed", blocked)
            self._apply(self.station.drain())
        return blocked

    async def _install(self: Daemon, image: Path, location: str, notify: Notify) -> None:
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
        storage = self.database.storage
        await self.database.run(storage.set_setting, "firmware.installed", "pending")
        await self.database.run(storage.set_setting, "firmware.from_version", self.version)
        await notify("InstallRebooting")
        self.security_event("ResetOrReboot", "restarting into the new firmware")
        self.shutdown_reason = "Reboot"
        self.restart = "reboot" if self.config.system.get("reboot_command") else "exec"
        self.stop()

    async def firmware_watch(self: Daemon) -> None:
        """After an install: roll back when the CSMS is not reached in time."""
        storage = self.database.storage
        if await self.database.run(storage.get_setting, "firmware.installed") != "pending":
            return
        await asyncio.sleep(FIRMWARE_VERIFY_S)
        if await self.database.run(storage.get_setting, "firmware.installed") == "pending":
            log.error("new firmware not connected to the CSMS within %d s: rolling back", FIRMWARE_VERIFY_S)
            await self.database.run(storage.set_setting, "firmware.installed", "failed")
            await self._firmware_hook("--rollback")
            if self.config.system.get("reboot_command"):
                # On an A/B system the old slot is still the default: a reboot returns to it.
                self.shutdown_reason = "Reboot"
                self.restart = "reboot"
                self.stop()

    async def _firmware_hook(self: Daemon, step: str) -> bool:
        command = self.config.firmware.get("install_command")
        if not command:
            return True
        code = await _run([*shlex.split(command), step])
        if code != 0:
            log.error("firmware install command %s exited %d", step, code)
        return code == 0

    async def firmware_after_restart(self: Daemon, notify: Notify) -> None:
        """Connected after an install: Installed once the hook confirms the new version."""
        storage = self.database.storage
        state = await self.database.run(storage.get_setting, "firmware.installed")
        if state == "pending":
            if await self._firmware_hook("--commit"):
                await self.database.run(storage.set_setting, "firmware.installed", "reported")
                await notify("Installed")
                self.security_event("FirmwareUpdated", f"now running {self.version}")
                return
            state = "failed"
            await self.database.run(storage.set_setting, "firmware.installed", "failed")
            await self._firmware_hook("--rollback")
        if state == "failed":
            await self.database.run(storage.set_setting, "firmware.installed", "reported")
            await notify("InstallVerificationFailed")

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
        security_log: bool = False,
    ) -> None:
        folder = self.config.storage_dir / DIAGNOSTICS_DIR
        folder.mkdir(exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=folder))  # each request its own: names can repeat
        path = work / name
        await asyncio.to_thread(self._security_extract if security_log else self._bundle, path, start, stop)
        await notify("Uploading")
        try:
            roots = await asyncio.to_thread(self.certs.roots_pem, "CSMSRootCertificate")
            context = tls.transfer_context(roots)
            await upload(location, path, retries=retries, retry_interval_s=interval, ssl_context=context)
        except TransferError as exc:
            log.error("diagnostics upload failed: %s", exc)
            await notify("UploadFailed")
        else:
            log.info("diagnostics %s uploaded to %s", name, redact(location))
            await notify("Uploaded")
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
                work.rmdir()

    def _security_extract(self: Daemon, path: Path, start: datetime | None, stop: datetime | None) -> None:
        """The security log entries of the window asked for, as JSON lines."""
        with path.open("w", encoding="utf-8") as out:
            for source in self.security_log.files():
                with source.open(encoding="utf-8", errors="replace") as lines:
                    for line in lines:
                        try:
                            at = parse_timestamp(json.loads(line)["timestamp"])
                        except (ValueError, KeyError, TypeError):
                            continue
                        if (start is None or at >= start) and (stop is None or at <= stop):
                            out.write(line)

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
