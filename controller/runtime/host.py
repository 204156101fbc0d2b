"""The station as the OCPP adapters see it (``controller.ocpp.host.Host``).

An [ocpp] station has, besides the version-neutral services, certificates, firmware
updates and diagnostics; this facade builds those and the OCPP client, and answers the
adapters by handing each call to the service that owns it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from controller.config import Config, EvseConfig
from controller.core import authorization as auth
from controller.core import schedule
from controller.core import station as station_model
from controller.core.model import AvailabilityChange, ReservationResult, StopReason, UnlockResult
from controller.core.station import Action, Reservation
from controller.io.records import Records
from controller.ocpp.bodies import sample_body
from controller.ocpp.client import OcppClient, make_client
from controller.ocpp.host import Body, Connection, Notify
from controller.runtime.certificates import Certificates
from controller.runtime.diagnostics import Diagnostics, UploadRequest
from controller.runtime.firmware import Firmware, FirmwareRequest
from controller.runtime.services import StationServices
from controller.runtime.startup import OcppFiles

if TYPE_CHECKING:
    from cryptography import x509

log = logging.getLogger(__name__)
T = TypeVar("T")


class OcppHost:
    def __init__(self, config: Config, version: str, services: StationServices, files: OcppFiles) -> None:
        self.config = config  # the running config: a reload replaces it
        self.version = version
        self.services = services
        self.station = services.station
        self.csms_ids = services.stored.csms_ids
        self.local_list = services.stored.local_list
        self.profiles = services.station.profiles
        self.certs = files.certs
        self.credentials = files.credentials
        self.frames = files.frames
        lifecycle = services.lifecycle
        self.lifecycle = lifecycle
        self.restart_settings = lifecycle.restart_settings
        self.stopping = lifecycle.stopping
        now = services.clock.now
        self.certificates = Certificates(
            files.certs, config.station["id"], files.client_files, now, services.events, services.ocpp
        )
        self.firmware = Firmware(
            config.storage_dir,
            config.firmware.get("install_command") or "",
            config.system.get("reboot_command") or "",
            version,
            services.station,
            now,
            services.apply,
            services.hardware.records,
            services.events,
            lifecycle,
            services.spawn,
        )
        self.diagnostics = Diagnostics(
            config.station["id"],
            config.storage_dir,
            files.certs,
            services.hardware.security_log,
            files.frames,
            lambda: services.status(None),
        )
        self.client: OcppClient = make_client(self, services.stored.settings)
        services.ocpp.client = self.client

    # -- state -----------------------------------------------------------------------------

    @property
    def records(self) -> Records:
        return self.services.hardware.records

    @property
    def ocpp(self) -> Connection:
        return self.client

    @property
    def evse_config(self) -> dict[int, EvseConfig]:
        return {e.id: e for e in self.config.evses}

    @property
    def maintenance(self) -> asyncio.Task[None] | None:
        return self.firmware.maintenance

    @property
    def shutdown_reason(self) -> StopReason:
        return self.lifecycle.shutdown_reason

    @property
    def aligned_interval_s(self) -> int:
        return self.services.aligned.interval_s

    @aligned_interval_s.setter
    def aligned_interval_s(self, seconds: int) -> None:
        self.services.aligned.interval_s = seconds

    # -- clock, tasks, settings, events ----------------------------------------------------

    def now(self) -> datetime:
        return self.services.clock.now()

    def set_clock(self, delta: timedelta) -> None:
        self.services.set_clock(delta)

    def spawn(self, work: Coroutine[object, object, T]) -> asyncio.Task[T]:
        return self.services.spawn(work)

    def save_setting(self, key: str, value: str) -> None:
        self.records.save_setting(key, value)

    def security_event(self, event: str, tech_info: str = "") -> None:
        self.services.events.event(event, tech_info)

    def apply(self, actions: list[Action]) -> None:
        self.services.apply(actions)

    async def ocpp_ready(self) -> None:
        """The CSMS accepted us: report what happened while we were away."""
        await self.firmware.after_restart(self.client.firmware_status_notification)

    def status_info(self, evse_id: int) -> str:
        state = self.station.evses[evse_id]
        return self.station.connector_status(state)[2] if state.view is not None else ""

    def sample(self, evse_id: int, context: str) -> Body | None:
        reading = self.station.evses[evse_id].reading
        if reading is None:
            return None
        return sample_body(evse_id, self.now(), context, reading)

    # -- authorization ---------------------------------------------------------------------

    async def authorize_token(self, token: str) -> auth.IdTagInfo | None:
        return await self.services.authorizer.authorize_token(token)

    def id_tag_info(self, tx_id: str, token: str, info: auth.IdTagInfo) -> None:
        self.services.authorizer.id_tag_info(tx_id, token, info)

    async def clear_auth_cache(self) -> None:
        await self.services.authorizer.clear_cache()

    async def update_local_list(
        self, update_type: str, version: int, entries: list[tuple[str, auth.IdTagInfo | None]]
    ) -> str:
        return await self.services.authorizer.update_local_list(update_type, version, entries)

    # -- remote control, availability, reservations ------------------------------------------

    def can_remote_start(self, connector: int | None, token: str) -> bool:
        return self.services.remote.can_remote_start(connector, token)

    def remote_start(
        self, connector: int | None, token: str, parent: str | None, profile: schedule.Profile | None
    ) -> bool:
        return self.services.remote.remote_start(connector, token, parent, profile)

    async def remote_stop(self, csms_id: str) -> bool:
        return await self.services.remote.remote_stop(csms_id)

    def stop_transaction(self, tx_id: str, reason: StopReason) -> bool:
        return self.services.remote.stop_transaction(tx_id, reason)

    def csms_transaction_id(self, evse_id: int) -> str | None:
        return self.services.tx_ids.csms(evse_id)

    async def unlock(self, evse_id: int) -> UnlockResult:
        return await self.services.remote.unlock(evse_id)

    def set_availability(
        self, evse_id: int, operative: bool, levels: tuple[str, ...] = (station_model.EVSE,)
    ) -> AvailabilityChange:
        return self.services.remote.set_availability(evse_id, operative, levels)

    def reset(self, hard: bool, retries: int = 0) -> None:
        """``retries``: how often a failing ``reboot_command`` is run again (ResetRetries)."""
        log.warning("%s reset requested by the CSMS", "hard" if hard else "soft")
        self.lifecycle.reset_retries = retries
        self.security_event("ResetOrReboot", f"{'hard' if hard else 'soft'} reset requested by the CSMS")
        reboot = hard and self.config.system.get("reboot_command")
        self.lifecycle.restart_after_stop(
            StopReason.HARD_RESET if hard else StopReason.SOFT_RESET, "reboot" if reboot else "exec"
        )

    async def reserve(self, reservation: Reservation) -> ReservationResult:
        return await self.services.remote.reserve(reservation)

    async def cancel_reservation(self, reservation_id: int) -> bool:
        return await self.services.remote.cancel_reservation(reservation_id)

    # -- smart charging --------------------------------------------------------------------

    async def install_profile(self, profile: schedule.Profile) -> str:
        return await self.services.charging.install_profile(profile)

    async def clear_profiles(
        self,
        profile_id: int | None,
        evse_id: int | None,
        purpose: schedule.Purpose | None,
        stack_level: int | None,
    ) -> int:
        return await self.services.charging.clear_profiles(profile_id, evse_id, purpose, stack_level)

    def composite(self, evse_id: int, start: datetime, duration_s: int, unit: str) -> list[schedule.Period]:
        return self.services.charging.composite(evse_id, start, duration_s, unit)

    # -- certificates ------------------------------------------------------------------------

    async def install_certificate(self, cert_type: str, pem: str, additional_check: bool) -> str:
        return await self.certificates.install(cert_type, pem, additional_check)

    async def delete_certificate(self, hash_data: dict[str, str]) -> str:
        return await self.certificates.delete(hash_data)

    async def certificate_request(self, organization: str) -> str:
        return await self.certificates.request(organization)

    async def certificate_signed(self, chain: str, max_bytes: int | None) -> bool:
        return await self.certificates.signed(chain, max_bytes)

    def client_certificate(self) -> tuple[Path, Path] | None:
        return self.certificates.client_certificate()

    def client_certificate_expiry(self) -> datetime | None:
        return self.certificates.client_certificate_expiry()

    # -- firmware and diagnostics --------------------------------------------------------------

    def firmware_roots(self) -> list[x509.Certificate]:
        return self.certificates.firmware_roots()

    def check_signing_certificate(self, pem: str) -> x509.Certificate | None:
        return self.certificates.check_signing_certificate(pem)

    def update_firmware(self, request: FirmwareRequest, notify: Notify) -> bool:
        return self.firmware.update(request, notify)

    def diagnostics_name(self) -> str:
        return self.diagnostics.name()

    async def upload_diagnostics(self, request: UploadRequest, notify: Notify) -> None:
        await self.diagnostics.upload(request, notify)
