"""OCPP 2.0.1 certificate management (A): the client certificate and installed roots."""

from __future__ import annotations

from typing import Any

from controller.io.link import Reply
from controller.ocpp.v201.base import Base201


class Certificates(Base201):
    """CertificateSigned, InstallCertificate, GetInstalledCertificateIds, SignCertificate's settings."""

    def organization(self) -> str:
        return self._value("SecurityCtrlr", "OrganizationName")

    def sign_certificate_payload(self, csr: str) -> dict[str, Any]:
        return {"csr": csr, "certificateType": "ChargingStationCertificate"}

    def cert_signing_wait(self) -> tuple[int, int]:
        return (
            self._number("SecurityCtrlr", "CertSigningWaitMinimum"),
            self._number("SecurityCtrlr", "CertSigningRepeatTimes"),
        )

    async def _certificate_signed(self, p: dict[str, Any]) -> Reply:
        if p.get("certificateType", "ChargingStationCertificate") != "ChargingStationCertificate":
            return Reply({"status": "Rejected", "statusInfo": {"reasonCode": "NotSupported"}})
        return await self._certificate_signed_reply(
            p["certificateChain"], self._number("SecurityCtrlr", "MaxCertificateChainSize")
        )

    async def _install_certificate(self, p: dict[str, Any]) -> Reply:
        return await self._install_certificate_reply(
            p["certificateType"],
            p["certificate"],
            self._flag("SecurityCtrlr", "AdditionalRootCertificateCheck"),
        )

    async def _get_installed_certificate_ids(self, p: dict[str, Any]) -> Reply:
        found = self._installed_certificates(p.get("certificateType") or None)
        if found is None:
            return Reply({"status": "NotFound"})
        chain = [{"certificateType": kind, "certificateHashData": data} for kind, data in found]
        return Reply({"status": "Accepted", "certificateHashDataChain": chain})
