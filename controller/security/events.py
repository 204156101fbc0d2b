"""Security events: the security log on disk and their names in each OCPP version.

Every event the station detects is written to the security log (JSON lines, size
capped, served by GetLog ``SecurityLog``) and queued persistently for the CSMS as a
SecurityEventNotification. Names are the OCPP 2.0.1 ones; the 1.6 adapter translates
the few the Security Whitepaper names differently.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path

from controller.core.timestamps import timestamp

log = logging.getLogger(__name__)

SECURITY_LOG = "security.log"
MAX_LOG_BYTES = 512 * 1024  # then the file is rotated once: the older half is dropped
TECH_INFO_MAX = 255

# The events the station can detect (OCPP 2.0.1 Part 2 appendix, Security events).
EVENTS = frozenset(
    {
        "FirmwareUpdated",
        "FailedToAuthenticateAtCsms",
        "SettingSystemTime",
        "StartupOfTheDevice",
        "ResetOrReboot",
        "SecurityLogWasCleared",
        "ReconfigurationOfSecurityParameters",
        "InvalidMessages",
        "InvalidFirmwareSignature",
        "InvalidFirmwareSigningCertificate",
        "InvalidCsmsCertificate",
        "InvalidChargingStationCertificate",
        "InvalidTLSVersion",
        "InvalidTLSCipherSuite",
    }
)
NAMES_16 = {
    "FailedToAuthenticateAtCsms": "FailedToAuthenticateAtCentralSystem",
    "InvalidCsmsCertificate": "InvalidCentralSystemCertificate",
    "InvalidChargingStationCertificate": "InvalidChargePointCertificate",
}


def name_for(version: str, event: str) -> str:
    return NAMES_16.get(event, event) if version == "1.6" else event


def notification(version: str, body: dict[str, str]) -> dict[str, str]:
    """The SecurityEventNotification payload for a queued event body."""
    payload = {"type": name_for(version, body["type"]), "timestamp": body["timestamp"]}
    if body.get("techInfo"):
        payload["techInfo"] = body["techInfo"][:TECH_INFO_MAX]
    return payload


def event_body(event: str, at: datetime, tech_info: str = "") -> dict[str, str]:
    if event not in EVENTS:
        raise ValueError(f"unknown security event {event!r}")
    body = {"type": event, "timestamp": timestamp(at)}
    if tech_info:
        body["techInfo"] = tech_info[:TECH_INFO_MAX]
    return body


class SecurityLog:
    """Append-only JSON lines; past ``max_bytes`` the file moves to ``.1`` (replacing it)."""

    def __init__(self, path: Path, max_bytes: int = MAX_LOG_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes

    def append(self, body: dict[str, str]) -> bool:
        """Write one event; True when older entries had to be dropped to make room."""
        cleared = False
        try:
            if self.path.exists() and self.path.stat().st_size >= self.max_bytes:
                old = self.path.with_name(self.path.name + ".1")
                cleared = old.exists()
                os.replace(self.path, old)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as out:
                out.write(json.dumps(body, separators=(",", ":")) + "\n")
        except OSError as exc:
            log.error("security log %s not written: %s", self.path, exc)
        return cleared

    def files(self) -> list[Path]:
        """Oldest first."""
        return [p for p in (self.path.with_name(self.path.name + ".1"), self.path) if p.exists()]
