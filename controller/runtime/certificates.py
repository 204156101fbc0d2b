"""Security events and certificates: the security log, the CSMS's certificate requests,
the client certificate for security profile 3 and the firmware signing roots."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from controller.io.database import WriteQueue
from controller.lazy import lazy_module
from controller.runtime.ocpp_ref import OcppRef
from controller.security import events as security
from controller.security.certerrors import CertError
from controller.security.certstore import CertStore
from controller.security.events import SecurityLog

if TYPE_CHECKING:
    from cryptography import x509

    from controller.security import certs
else:
    certs = lazy_module("controller.security.certs")

log = logging.getLogger(__name__)

CERTIFICATE_STORE_MAX = 20  # CertificateStoreMaxLength: installed roots plus the client chain


class SecurityEvents:
    def __init__(
        self, security_log: SecurityLog, now: Callable[[], datetime], writes: WriteQueue, ocpp: OcppRef
    ) -> None:
        self.log = security_log
        self.now = now
        self.writes = writes
        self.ocpp = ocpp

    def event(self, event: str, tech_info: str = "") -> None:
        """Log a security event and queue it for the CSMS (persistently, in order)."""
        body = security.event_body(event, self.now(), tech_info)
        log.warning("security event %s%s", event, f": {tech_info}" if tech_info else "")
        bodies = [body]
        if self.log.append(body):  # a small local file: written at once
            cleared = security.event_body("SecurityLogWasCleared", self.now(), "oldest entries rotated out")
            bodies.append(cleared)
            self.log.append(bodies[-1])
        if self.ocpp.client is None:
            return
        self.writes.put(lambda storage: storage.add_security_events(bodies), then=self.ocpp.outbox_changed)


class Certificates:
    def __init__(
        self,
        certs: CertStore,
        station_id: str,
        client_files: tuple[Path, Path] | None,
        now: Callable[[], datetime],
        events: SecurityEvents,
        ocpp: OcppRef,
    ) -> None:
        self.certs = certs
        self.station_id = station_id
        self.client_files = client_files  # the config's cert_file and key_file
        self.now = now
        self.events = events
        self.ocpp = ocpp

    def _tls_in_use(self) -> bool:
        client = self.ocpp.client
        target = client.target if client is not None else None
        return target is not None and target.profile >= 2

    async def install(self, cert_type: str, pem: str, additional_check: bool) -> str:
        status: str = await asyncio.to_thread(
            self.certs.install, cert_type, pem, self.now(), CERTIFICATE_STORE_MAX, additional_check
        )
        log.info("%s install: %s", cert_type, status)
        if status == "Accepted":
            self.events.event("ReconfigurationOfSecurityParameters", f"{cert_type} installed")
        return status

    async def delete(self, hash_data: dict[str, str]) -> str:
        status: str = await asyncio.to_thread(
            functools.partial(self.certs.delete, hash_data, protect_csms_root=self._tls_in_use())
        )
        log.info("certificate %s delete: %s", hash_data.get("serialNumber"), status)
        if status == "Accepted":
            self.events.event("ReconfigurationOfSecurityParameters", "certificate deleted")
        return status

    async def request(self, organization: str) -> str:
        """A new key pair and its CSR (PEM), for SignCertificate."""
        csr: str = await asyncio.to_thread(self.certs.new_csr, self.station_id, organization)
        return csr

    async def signed(self, chain: str, max_bytes: int | None) -> bool:
        try:
            await asyncio.to_thread(self.certs.accept_signed, chain, self.now(), max_bytes)
        except CertError as exc:
            log.error("CertificateSigned refused: %s", exc)
            self.events.event("InvalidChargingStationCertificate", str(exc))
            return False
        log.warning("new client certificate installed: used from the next connection")
        self.events.event("ReconfigurationOfSecurityParameters", "new client certificate")
        return True

    def client_certificate(self) -> tuple[Path, Path] | None:
        """(chain, key) for profile 3: the one the CSMS signed, else the config's files."""
        return (
            self.certs.station_certificate(*self.client_files)
            if self.client_files
            else self.certs.station_certificate()
        )

    def client_certificate_expiry(self) -> datetime | None:
        files = self.client_certificate()
        if files is None:
            return None
        try:
            expiry: datetime = certs.load_certs(files[0].read_bytes())[0].not_valid_after_utc
        except (OSError, CertError):
            return None
        return expiry

    def firmware_roots(self) -> list[x509.Certificate]:
        """The manufacturer roots firmware signing certificates must be issued by."""
        return list(self.certs.roots("ManufacturerRootCertificate"))

    def check_signing_certificate(self, pem: str) -> x509.Certificate | None:
        """The signing certificate of a firmware request, or None (security event raised)."""
        try:
            return certs.check_signing_certificate(pem, self.firmware_roots(), self.now())
        except CertError as exc:
            log.error("firmware signing certificate refused: %s", exc)
            self.events.event("InvalidFirmwareSigningCertificate", str(exc))
            return None
