"""OCPP 1.6 security extension: the client certificate and installed roots."""

from __future__ import annotations

from typing import Any

from controller.io.link import Reply
from controller.ocpp.v16.base import Base16

CERTIFICATE_TYPES = {
    "CentralSystemRootCertificate": "CSMSRootCertificate",
    "ManufacturerRootCertificate": "ManufacturerRootCertificate",
}


class Certificates(Base16):
    """CertificateSigned, InstallCertificate, GetInstalledCertificateIds, SignCertificate's settings."""

    def organization(self) -> str:
        return self.keys.get("CpoName")

    async def _certificate_signed(self, p: dict[str, Any]) -> Reply:
        return await self._certificate_signed_reply(
            p["certificateChain"], self.keys.number("CertificateSignedMaxChainSize")
        )

    async def _install_certificate(self, p: dict[str, Any]) -> Reply:
        return await self._install_certificate_reply(
            CERTIFICATE_TYPES[p["certificateType"]],
            p["certificate"],
            self.keys.flag("AdditionalRootCertificateCheck"),
        )

    async def _get_installed_certificate_ids(self, p: dict[str, Any]) -> Reply:
        found = self._installed_certificates([CERTIFICATE_TYPES[p["certificateType"]]])
        if found is None:
            return Reply({"status": "NotFound"})
        return Reply({"status": "Accepted", "certificateHashData": [data for _, data in found]})
