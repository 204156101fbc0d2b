"""TLS to the CSMS (security profiles 2 and 3) and what a failed connection means.

TLS 1.2 or newer, no compression, AEAD cipher suites only, the server certificate
checked against the CSMS roots (the config's ``ca_file`` plus roots the CSMS installed)
and its host name against the URL. Profile 3 adds the station's client certificate.
HTTPS log uploads (``transfer_context``) trust the operating system's CAs and the CSMS roots.
"""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

from websockets.exceptions import InvalidStatus

# ECDHE with AES-GCM or ChaCha20, plus the RSA-AES-GCM suites OCPP 2.0.1 lists (A00.FR.318).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:AES128-GCM-SHA256:AES256-GCM-SHA384"

_VERSION_REASONS = {
    "UNSUPPORTED_PROTOCOL",
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "WRONG_SSL_VERSION",
    "NO_PROTOCOLS_AVAILABLE",
    "WRONG_VERSION_NUMBER",
}
_CIPHER_REASONS = {"NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE", "NO_SUITABLE_SIGNATURE_ALGORITHM"}
# Alerts a CSMS sends when it refuses (or misses) our client certificate.
_CLIENT_CERT_REASONS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "TLSV1_ALERT_ACCESS_DENIED",
    "SSLV3_ALERT_CERTIFICATE_REVOKED",
}
HANDSHAKE_FAILURE = "SSLV3_ALERT_HANDSHAKE_FAILURE"  # no common cipher, or (TLS 1.2) no client cert
CERTIFICATE_REQUEST = 13  # TLS handshake message type


class TlsSetupError(Exception):
    """The station cannot build its TLS settings (no CSMS root, unreadable certificate)."""


def client_context(ca_pem: str, client_cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    if not ca_pem.strip():
        raise TlsSetupError("no CSMS root certificate: set ocpp.ca_file or install one from the CSMS")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificates and host names
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    context.set_ciphers(CIPHERS)
    try:
        context.load_verify_locations(cadata=ca_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise TlsSetupError(f"the CSMS root certificates cannot be used: {exc}") from exc
    # Which handshake messages came from the CSMS: a handshake failure alert after its
    # CertificateRequest refuses our certificate; before it, nothing was agreed.
    seen: set[int] = set()

    def note(
        conn: object, direction: str, version: object, content: object, kind: object, data: object
    ) -> None:
        if direction == "read":
            seen.add(int(kind))  # type: ignore[call-overload]

    context._msg_callback = note  # type: ignore[attr-defined]
    context.handshake_seen = seen  # type: ignore[attr-defined]
    if client_cert is not None:
        chain, key = client_cert
        try:
            context.load_cert_chain(chain, key)
        except (OSError, ssl.SSLError) as exc:
            raise TlsSetupError(f"the client certificate {chain} cannot be used: {exc}") from exc
    return context


def transfer_context(csms_roots_pem: str) -> ssl.SSLContext:
    """For an HTTPS log upload: the server certificate checked against the CSMS roots the
    station trusts (N01.FR.15) and the operating system's CAs (N01.FR.16: the log store may
    be a cloud service outside the CSMS trust chain), and its host name against the URL."""
    context = ssl.create_default_context()
    if csms_roots_pem.strip():
        # The store hands out only roots it could parse; a bad one leaves the OS CAs alone.
        with contextlib.suppress(ssl.SSLError, ValueError):
            context.load_verify_locations(cadata=csms_roots_pem)
    return context


def failure_event(exc: BaseException, context: ssl.SSLContext | None = None) -> tuple[str, str] | None:
    """(security event, what happened) for a failed connection, or None for a plain one."""
    if isinstance(exc, InvalidStatus) and exc.response.status_code == 401:
        return "FailedToAuthenticateAtCsms", "the CSMS refused our Basic auth credentials (HTTP 401)"
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # the TLS error may be wrapped
        seen.add(id(current))
        found = _classify_ssl(current, getattr(context, "handshake_seen", None))
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


def _classify_ssl(exc: BaseException, seen: set[int] | None) -> tuple[str, str] | None:
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = getattr(exc, "verify_message", None) or exc
        return "InvalidCsmsCertificate", f"server certificate refused: {why}"
    if not isinstance(exc, ssl.SSLError):
        return None
    reason = exc.reason or ""
    if reason in _VERSION_REASONS:
        return "InvalidTLSVersion", f"the CSMS offers no TLS version of 1.2 or newer ({reason})"
    if reason in _CIPHER_REASONS:
        return "InvalidTLSCipherSuite", f"no cipher suite in common with the CSMS ({reason})"
    if reason == HANDSHAKE_FAILURE:
        if seen is not None and CERTIFICATE_REQUEST not in seen:
            return "InvalidTLSCipherSuite", f"the CSMS agreed no cipher suite with us ({reason})"
        return "FailedToAuthenticateAtCsms", f"the CSMS refused our client certificate ({reason})"
    if reason in _CLIENT_CERT_REASONS:
        return "FailedToAuthenticateAtCsms", f"the CSMS refused our client certificate ({reason})"
    return None
