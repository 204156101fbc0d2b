"""Firmware updates: download, signature check, install, and the check after the restart."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shlex
import subprocess
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from controller.core import station as station_model
from controller.core.model import StopReason
from controller.core.station import Action, Station
from controller.io.records import Records
from controller.io.transfer import TransferError, download, redact
from controller.lazy import lazy_module
from controller.ocpp.host import Notify
from controller.runtime.certificates import SecurityEvents
from controller.runtime.lifecycle import Lifecycle
from controller.security.certerrors import CertError

if TYPE_CHECKING:
    from cryptography import x509

    from controller.security import certs
else:
    certs = lazy_module("controller.security.certs")

log = logging.getLogger(__name__)

FIRMWARE_DIR = "firmware"
FIRMWARE_VERIFY_S = 600  # the new firmware must reach the CSMS within this after its restart


@dataclasses.dataclass(frozen=True)
class FirmwareRequest:
    location: str
    retrieve: datetime
    retries: int = 0
    interval: int = 30
    install_at: datetime | None = None
    signature: str | None = None  # base64; with it, the signing certificate checked already
    signing_cert: x509.Certificate | None = None


class Firmware:
    def __init__(
        self,
        storage_dir: Path,
        install_command: str,
        reboot_command: str,
        version: str,
        station: Station,
        now: Callable[[], datetime],
        apply: Callable[[list[Action]], None],
        records: Records,
        events: SecurityEvents,
        lifecycle: Lifecycle,
        spawn: Callable[[Coroutine[object, object, None]], asyncio.Task[None]],
    ) -> None:
        self.folder = storage_dir / FIRMWARE_DIR
        self.install_command = install_command
        self.reboot_command = reboot_command
        self.version = version
        self.station = station
        self.now = now
        self.apply = apply
        self.records = records
        self.events = events
        self.lifecycle = lifecycle
        self.spawn = spawn
        self.maintenance: asyncio.Task[None] | None = None  # the update under way

    def update(self, request: FirmwareRequest, notify: Notify) -> bool:
        """Start an update; True when it cancelled one that was still running."""
        running = self.maintenance is not None and not self.maintenance.done()
        if running:
            assert self.maintenance is not None
            log.warning("firmware update cancelled: a new one was requested")
            self.maintenance.cancel()
        self.maintenance = self.spawn(self._update(request, notify))
        return running

    async def _update(self, request: FirmwareRequest, notify: Notify) -> None:
        wait = (request.retrieve - self.now()).total_seconds()
        if wait > 0:
            await notify("DownloadScheduled")
            await asyncio.sleep(wait)
        self.folder.mkdir(exist_ok=True)
        image = self.folder / "firmware.bin"  # never a name from the CSMS: it could point anywhere
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
            assert request.signing_cert is not None  # the adapters check it with the request
            try:
                digest = await asyncio.to_thread(certs.file_digest, image)
                scheme = certs.verify_firmware(request.signing_cert, request.signature, digest)
            except (CertError, OSError) as exc:
                log.error("firmware from %s refused: %s", redact(request.location), exc)
                self.events.event("InvalidFirmwareSignature", str(exc))
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
            while self.station.transacting():  # install only once no transaction runs; no new one starts
                if not scheduled:
                    await notify("InstallScheduled")
                    scheduled = True
                blocked += self._block_idle_evses()
                await asyncio.sleep(1.0)
            await self._install(image, request.location, notify)
            if self.lifecycle.stopping.is_set():
                blocked = []  # restarting: they stay unavailable until then
        finally:
            if blocked:
                now = self.now()
                for evse_id in blocked:
                    self.station.set_available(now, evse_id, True, (station_model.FIRMWARE,))
                self.apply(self.station.drain())

    def _block_idle_evses(self) -> list[int]:
        now, blocked = self.now(), []
        for evse_id, state in self.station.evses.items():
            held = station_model.FIRMWARE in state.inoperative
            if not held and not state.transacting:
                self.station.set_available(now, evse_id, False, (station_model.FIRMWARE,))
                blocked.append(evse_id)
        if blocked:
            log.info("EVSE(s) %s unavailable until the firmware is installed", blocked)
            self.apply(self.station.drain())
        return blocked

    async def _install(self, image: Path, location: str, notify: Notify) -> None:
        command = self.install_command
        await notify("Installing")
        if not command:
            log.error("firmware downloaded to %s but firmware.install_command is not set", image)
            await notify("InstallationFailed")
            return
        code = await run_command([*shlex.split(command), str(image)])
        if code != 0:
            log.error("firmware install command exited %d", code)
            await notify("InstallationFailed")
            return
        log.warning("firmware installed from %s; restarting", redact(location))
        await self.records.set_setting("firmware.installed", "pending")
        await self.records.set_setting("firmware.from_version", self.version)
        await notify("InstallRebooting")
        self.events.event("ResetOrReboot", "restarting into the new firmware")
        self.lifecycle.restart_after_stop(StopReason.REBOOT, "reboot" if self.reboot_command else "exec")

    async def watch(self) -> None:
        """After an install: roll back when the CSMS is not reached in time."""
        if await self.records.get_setting("firmware.installed") != "pending":
            return
        await asyncio.sleep(FIRMWARE_VERIFY_S)
        if await self.records.get_setting("firmware.installed") == "pending":
            log.error("new firmware not connected to the CSMS within %d s: rolling back", FIRMWARE_VERIFY_S)
            await self.records.set_setting("firmware.installed", "failed")
            await self._hook("--rollback")
            if self.reboot_command:
                # On an A/B system the old slot is still the default: a reboot returns to it.
                self.lifecycle.restart_after_stop(StopReason.REBOOT, "reboot")

    async def _hook(self, step: str) -> bool:
        command = self.install_command
        if not command:
            return True
        code = await run_command([*shlex.split(command), step])
        if code != 0:
            log.error("firmware install command %s exited %d", step, code)
        return code == 0

    async def after_restart(self, notify: Notify) -> None:
        """Connected after an install: Installed once the hook confirms the new version."""
        state = await self.records.get_setting("firmware.installed")
        if state == "pending":
            if await self._hook("--commit"):
                await self.records.set_setting("firmware.installed", "reported")
                await notify("Installed")
                self.events.event("FirmwareUpdated", f"now running {self.version}")
                return
            state = "failed"
            await self.records.set_setting("firmware.installed", "failed")
            await self._hook("--rollback")
        if state == "failed":
            await self.records.set_setting("firmware.installed", "reported")
            await notify("InstallVerificationFailed")


async def run_command(argv: list[str]) -> int:
    try:
        process = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL)
    except OSError as exc:
        log.error("cannot run %s: %s", argv[0], exc)
        return 127
    return await process.wait()
