"""A throw-away PKI for tests and benchmarks: CAs, server, client and signing certificates.

Everything is made at test time with ``cryptography`` and written as PEM files into one folder
(a pytest ``tmp_path``)::

    pki = Pki(tmp_path)
    root = pki.ca()
    cert, key = pki.server(root)
    context = server_context(cert, key, ca_for_clients=root)  # profile 3: client certificates required
    client = client_context(root, pki.client(root, "CP001", "Example CPO"))
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import ssl
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Authority", "Pki", "PrivateKey", "client_context", "server_context"]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
KeyType = Literal["ec", "rsa", "ed25519"]

_DAY = dt.timedelta(days=1)


def _new_key(kind: KeyType) -> PrivateKey:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ed25519.Ed25519PrivateKey.generate()


def _hash_for(key: PrivateKey) -> hashes.SHA256 | None:
    """The digest a signature with this key uses (Ed25519 has its own)."""
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _name(common_name: str, org: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if org is not None:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(parts)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class Authority:
    """A certificate authority: its certificate, key, PEM file and, for an intermediate, its parent."""

    cert: x509.Certificate
    key: PrivateKey
    pem_path: Path
    parent: Authority | None = None

    @property
    def chain(self) -> list[x509.Certificate]:
        """This CA's certificate and those of its parents, the root excluded (what a server sends)."""
        if self.parent is None:
            return []
        return [self.cert, *self.parent.chain]

    @property
    def pem(self) -> str:
        """This CA's certificate in PEM."""
        return _pem(self.cert)


class Pki:
    """Makes certificates and writes each with its key into ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._serial = itertools.count(1)

    def ca(
        self,
        name: str = "Test Root",
        key: Literal["ec", "rsa"] = "ec",
        valid_days: int = 3650,
        not_before: dt.datetime | None = None,
    ) -> Authority:
        """A self-signed root CA."""
        private = _new_key(key)
        start = not_before or dt.datetime.now(dt.UTC) - _DAY
        cert = self._sign(
            _name(name),
            private.public_key(),
            _name(name),
            private,
            start,
            start + dt.timedelta(days=valid_days),
            ca=True,
        )
        return Authority(cert, private, self._write(name, [cert], private))

    def intermediate(
        self, ca: Authority, name: str = "Test Intermediate", valid_days: int = 1825
    ) -> Authority:
        """A sub-CA issued by ``ca``; what it issues is written with it in the chain."""
        private = _new_key("ec")
        start = dt.datetime.now(dt.UTC) - _DAY
        cert = self._sign(
            _name(name),
            private.public_key(),
            ca.cert.subject,
            ca.key,
            start,
            start + dt.timedelta(days=valid_days),
            ca=True,
        )
        return Authority(cert, private, self._write(name, [cert], private), parent=ca)

    def server(
        self,
        ca: Authority,
        hosts: Sequence[str] = ("127.0.0.1", "localhost"),
        expired: bool = False,
        not_yet_valid: bool = False,
        key: Literal["ec", "rsa"] = "ec",
    ) -> tuple[Path, Path]:
        """A CSMS certificate for ``hosts`` (IP addresses or DNS names): ``(chain file, key file)``."""
        private = _new_key(key)
        start, end = self._validity(expired, not_yet_valid, days=365)
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        cert = self._sign(
            _name(hosts[0]),
            private.public_key(),
            ca.cert.subject,
            ca.key,
            start,
            end,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            alt_names=names,
        )
        path = self._write(f"server-{hosts[0]}", [cert, *ca.chain], private)
        return path, path.with_suffix(".key")

    def client(
        self, ca: Authority, common_name: str, org: str = "Test CPO", expired: bool = False
    ) -> tuple[Path, Path]:
        """A station (client) certificate, CN = the station identity, O = the operator: ``(chain, key)``."""
        private = _new_key("ec")
        start, end = self._validity(expired, False, days=365)
        cert = self._sign(
            _name(common_name, org),
            private.public_key(),
            ca.cert.subject,
            ca.key,
            start,
            end,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        path = self._write(f"client-{common_name}", [cert, *ca.chain], private)
        return path, path.with_suffix(".key")

    def sign_csr(self, ca: Authority, csr_pem: str | bytes, days: int = 365) -> str:
        """Sign a station's CSR (as a CSMS answering SignCertificate would): the PEM chain, leaf first."""
        csr = x509.load_pem_x509_csr(csr_pem.encode() if isinstance(csr_pem, str) else csr_pem)
        if not csr.is_signature_valid:
            raise ValueError("the CSR's signature is not valid")
        start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        cert = self._sign(
            csr.subject,
            csr.public_key(),
            ca.cert.subject,
            ca.key,
            start,
            start + dt.timedelta(days=days),
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        return "".join(_pem(c) for c in (cert, *ca.chain))

    def signing_cert(
        self, ca: Authority, key: KeyType = "rsa", expired: bool = False, name: str = "Firmware Signing"
    ) -> tuple[str, PrivateKey]:
        """A firmware (code) signing certificate: ``(certificate PEM, private key)``."""
        private = _new_key(key)
        start, end = self._validity(expired, False, days=365)
        cert = self._sign(
            _name(name),
            private.public_key(),
            ca.cert.subject,
            ca.key,
            start,
            end,
            usage=ExtendedKeyUsageOID.CODE_SIGNING,
        )
        return _pem(cert), private

    def root_signed_by(self, old_root: Authority, name: str = "Test Root 2") -> Authority:
        """A new root (issuer = subject = ``name``, CA, own key) whose signature is made with
        ``old_root``'s key: a CSMS root renewal for AdditionalRootCertificateCheck.

        It carries no authority key identifier, so OpenSSL still takes it for a self-issued
        trust anchor and it can issue server certificates like any root.
        """
        private = _new_key("ec")
        start = dt.datetime.now(dt.UTC) - _DAY
        cert = self._sign(
            _name(name),
            private.public_key(),
            _name(name),
            old_root.key,
            start,
            start + dt.timedelta(days=3650),
            ca=True,
            authority_key_id=False,
        )
        return Authority(cert, private, self._write(name, [cert], private))

    def _validity(self, expired: bool, not_yet_valid: bool, days: int) -> tuple[dt.datetime, dt.datetime]:
        now = dt.datetime.now(dt.UTC)
        if expired:
            return now - dt.timedelta(days=days), now - _DAY
        if not_yet_valid:
            return now + _DAY, now + dt.timedelta(days=days)
        return now - _DAY, now + dt.timedelta(days=days)

    def _sign(
        self,
        subject: x509.Name,
        public: CertificatePublicKeyTypes,
        issuer: x509.Name,
        issuer_key: PrivateKey,
        start: dt.datetime,
        end: dt.datetime,
        ca: bool = False,
        usage: x509.ObjectIdentifier | None = None,
        alt_names: list[x509.GeneralName] | None = None,
        authority_key_id: bool = True,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        )
        if authority_key_id:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
            )
        builder = builder.add_extension(_key_usage(ca, public), critical=True)
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        return builder.sign(issuer_key, _hash_for(issuer_key))

    def _write(self, stem: str, certs: list[x509.Certificate], key: PrivateKey) -> Path:
        """Write ``<stem>-<n>.pem`` (the certificates) and ``.key`` (the key); return the .pem path."""
        safe = "".join(c if c.isalnum() or c in "-." else "_" for c in stem)
        path = self.folder / f"{safe}-{next(self._serial)}.pem"
        path.write_text("".join(_pem(c) for c in certs))
        path.with_suffix(".key").write_bytes(_key_pem(key))
        return path


def _key_usage(ca: bool, public: CertificatePublicKeyTypes) -> x509.KeyUsage:
    # RSA TLS 1.2 key exchange may encipher; EC and Ed25519 keys only sign.
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=not ca and isinstance(public, rsa.RSAPublicKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _set_versions(
    context: ssl.SSLContext, min_version: ssl.TLSVersion | None, max_version: ssl.TLSVersion | None
) -> None:
    """Set the TLS version range; below TLS 1.2 also lower OpenSSL 3's security level, which forbids it."""
    if not any(v is not None and v < ssl.TLSVersion.TLSv1_2 for v in (min_version, max_version)):
        if min_version is not None:
            context.minimum_version = min_version
        if max_version is not None:
            context.maximum_version = max_version
        return
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # the old versions are deprecated: that is the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = min_version or ssl.TLSVersion.TLSv1
        if max_version is not None:
            context.maximum_version = max_version


def server_context(
    cert: Path,
    key: Path,
    ca_for_clients: Path | Authority | None = None,
    max_version: ssl.TLSVersion | None = None,
    min_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """The CSMS side: its certificate and, with ``ca_for_clients``, client certificates required (profile 3).

    ``max_version=TLSVersion.TLSv1_1`` makes "a server that offers only TLS 1.1" (it also needs
    OpenSSL 3's security level 0, which this sets).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _set_versions(context, min_version, max_version)
    context.load_cert_chain(cert, key)
    if ca_for_clients is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        path = ca_for_clients.pem_path if isinstance(ca_for_clients, Authority) else ca_for_clients
        context.load_verify_locations(cafile=path)
    return context


def client_context(
    ca: Path | Authority,
    client: tuple[Path, Path] | None = None,
    max_version: ssl.TLSVersion | None = None,
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
) -> ssl.SSLContext:
    """A station-like client: trusts ``ca``, checks the host name, TLS 1.2 or newer unless told
    otherwise, and presents ``client`` = (chain file, key file) if given."""
    context = ssl.create_default_context(cafile=ca.pem_path if isinstance(ca, Authority) else ca)
    _set_versions(context, min_version, max_version)
    if client is not None:
        context.load_cert_chain(*client)
    return context
