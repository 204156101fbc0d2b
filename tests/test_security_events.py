"""Security events: names per version, the security log, TLS failure classes, redaction."""

from __future__ import annotations

import json
import ssl
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.io.logs import redact_frame
from controller.security import events as security
from controller.security import tls
from controller.security.credentials import Credentials

AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_names_translate_for_16_only() -> None:
    body = security.event_body("InvalidCsmsCertificate", AT, "x" * 300)
    assert security.notification("1.6", body)["type"] == "InvalidCentralSystemCertificate"
    assert security.notification("2.0.1", body) == {
        "type": "InvalidCsmsCertificate",
        "timestamp": "2026-11-21T12:00:00.000Z",
        "techInfo": "x" * 255,
    }
    assert security.notification("1.6", security.event_body("StartupOfTheDevice", AT))["type"] == (
        "StartupOfTheDevice"
    )
    with pytest.raises(ValueError):
        security.event_body("NoSuchEvent", AT)


def test_security_log_rotates_once_and_says_when_entries_were_dropped(tmp_path: Path) -> None:
    log = security.SecurityLog(tmp_path / "security.log", max_bytes=200)
    body = security.event_body("StartupOfTheDevice", AT, "started")
    cleared = [log.append(body) for _ in range(12)]
    assert not cleared[0]
    assert any(cleared)  # the .1 file was replaced: older entries are gone
    files = log.files()
    assert [f.name for f in files] == ["security.log.1", "security.log"]
    assert stat.S_IMODE(files[1].stat().st_mode) == 0o600
    for line in files[1].read_text().splitlines():
        assert json.loads(line)["type"] == "StartupOfTheDevice"


def test_security_log_on_a_bad_folder_does_not_raise(tmp_path: Path) -> None:
    log = security.SecurityLog(tmp_path / "missing" / "security.log")
    assert log.append(security.event_body("StartupOfTheDevice", AT)) is False


def _ssl_error(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] alert")
    error.reason = reason
    return error


@pytest.mark.parametrize(
    ("exc", "event"),
    [
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "InvalidCsmsCertificate"),
        (_ssl_error("TLSV1_ALERT_PROTOCOL_VERSION"), "InvalidTLSVersion"),
        (_ssl_error("UNSUPPORTED_PROTOCOL"), "InvalidTLSVersion"),
        (_ssl_error("NO_SHARED_CIPHER"), "InvalidTLSCipherSuite"),
        (_ssl_error("TLSV13_ALERT_CERTIFICATE_REQUIRED"), "FailedToAuthenticateAtCsms"),
        (_ssl_error("TLSV1_ALERT_UNKNOWN_CA"), "FailedToAuthenticateAtCsms"),
        (_ssl_error("SOMETHING_ELSE"), None),
        (ConnectionRefusedError(111, "refused"), None),
    ],
)
def test_failure_event_classifies_tls_errors(exc: BaseException, event: str | None) -> None:
    found = tls.failure_event(exc)
    assert (found[0] if found else None) == event


def test_failure_event_looks_through_wrapping_exceptions() -> None:
    outer = RuntimeError("handshake")
    outer.__cause__ = _ssl_error("TLSV1_ALERT_PROTOCOL_VERSION")
    found = tls.failure_event(outer)
    assert found is not None and found[0] == "InvalidTLSVersion"


def test_client_context_is_tls12_or_newer_with_host_check() -> None:
    with pytest.raises(tls.TlsSetupError):
        tls.client_context("")
    with pytest.raises(tls.TlsSetupError):
        tls.client_context("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")


def test_frames_log_redacts_passwords() -> None:
    change = json.dumps(
        [2, "1", "ChangeConfiguration", {"key": "AuthorizationKey", "value": "s3cret-s3cret-s3cret"}]
    )
    assert "s3cret" not in redact_frame(change)
    assert json.loads(redact_frame(change))[3] == {"key": "AuthorizationKey", "value": "***"}
    item = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}
    setv = json.dumps(
        [2, "2", "SetVariables", {"setVariableData": [{**item, "attributeValue": "pw-pw-pw-pw-pw-pw"}]}]
    )
    assert "pw-pw" not in redact_frame(setv)
    assert "pw-pw" not in redact_frame('[2, "3", "SetVariables", {"BasicAuthPassword": pw-pw-pw')
    plain = json.dumps([2, "4", "Heartbeat", {}])
    assert redact_frame(plain) == plain


def test_credentials_replace_the_config_password_until_it_changes(tmp_path: Path) -> None:
    creds = Credentials(tmp_path, "config-password-1")
    assert creds.password() == "config-password-1"
    creds.set_password("csms-password-0001")
    assert creds.password() == "csms-password-0001"
    assert stat.S_IMODE(creds.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(creds.path.parent.stat().st_mode) == 0o700
    # The technician edits ocpp.password: the config wins again.
    assert Credentials(tmp_path, "config-password-2").password() == "config-password-2"
    creds.path.write_text("{broken")
    assert Credentials(tmp_path, "config-password-1").password() == "config-password-1"
