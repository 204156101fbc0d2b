"""X.509 and signature checks for OCPP security: no file I/O except ``file_digest``.

Keys the station makes are EC P-256. Certificates the CSMS or a manufacturer sends may be
RSA or EC; their signatures are checked with the padding the certificate itself names
(PKCS#1 v1.5 or PSS), or ECDSA.

Firmware signatures cover SHA-256 of the whole file. The spec names RSA-PSS; deployed
CSMSs also produce RSA PKCS#1 v1.5 and ECDSA, which are accepted deliberately. Anything
else (Ed25519, DSA, ...) is refused.

``hash_data`` is OCPP's CertificateHashData, the OCSP CertID of RFC 6960: hashes of the
issuer's DER name and of the issuer's public key bits, and the serial number in hex.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID

from controller.security.certerrors import (
    CertError as CertError,  # re-exported: callers name it certs.CertError
)
from controller.security.certerrors import SignatureError as SignatureError

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# CertificateHashData.hashAlgorithm -> hashlib name.
HASH_ALGORITHMS = {"SHA256": "sha256", "SHA384": "sha384", "SHA512": "sha512"}
HASH_FIELDS = ("hashAlgorithm", "issuerNameHash", "issuerKeyHash", "serialNumber")

_DER_BIT_STRING = 0x03


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_key(pem: bytes) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertError("the private key is not an unencrypted PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CertError(f"unsupported private key type {type(key).__name__}: use RSA or EC")
    return key


def make_csr(key: SigningKey, common_name: str, organization: str) -> str:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_certs(pem: str | bytes) -> list[x509.Certificate]:
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CertError("no readable PEM certificate (expected -----BEGIN CERTIFICATE-----)") from exc


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lowercase hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def describe(cert: x509.Certificate) -> str:
    """The subject as a technician reads it (RFC 4514: 'O=Example,CN=Test Root')."""
    return cert.subject.rfc4514_string() or f"serial {cert.serial_number:x}"


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """The issuer's name is cert's issuer name and its key made cert's signature."""
    return cert.issuer == issuer.subject and verifies_with(cert, issuer.public_key())


def verifies_with(cert: x509.Certificate, public_key: CertificatePublicKeyTypes) -> bool:
    """cert's signature was made by the private half of public_key (names not compared)."""
    try:
        params = cert.signature_algorithm_parameters
        digest = cert.signature_hash_algorithm
        if digest is None:
            return False
        if isinstance(public_key, rsa.RSAPublicKey) and isinstance(params, padding.PKCS1v15 | padding.PSS):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, params, digest)
            return True
        if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(params, ec.ECDSA):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, params)
            return True
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        pass
    return False


def check_validity(cert: x509.Certificate, now: datetime) -> None:
    now = _aware(now)
    if now < cert.not_valid_before_utc:
        raise CertError(
            f"certificate {describe(cert)} is not valid yet: valid from {_when(cert.not_valid_before_utc)}"
            " (check the station clock)"
        )
    if now > cert.not_valid_after_utc:
        raise CertError(f"certificate {describe(cert)} expired on {_when(cert.not_valid_after_utc)}")


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def check_root(cert: x509.Certificate, now: datetime) -> None:
    if not is_ca(cert):
        raise CertError(f"certificate {describe(cert)} is not a CA certificate (basicConstraints CA:TRUE)")
    if not signed_by(cert, cert):
        raise CertError(f"certificate {describe(cert)} is not a root: it is not self-signed")
    check_validity(cert, now)


def check_client_chain(
    chain: list[x509.Certificate], key: SigningKey, now: datetime, max_bytes: int | None = None
) -> None:
    """The station's own chain, leaf first, for the key it holds."""
    if not chain:
        raise CertError("the certificate chain is empty")
    leaf = chain[0]
    if _spki(leaf.public_key()) != _spki(key.public_key()):
        raise CertError(f"certificate {describe(leaf)} is not for the station's key (CSR)")
    if is_ca(leaf):
        raise CertError(f"certificate {describe(leaf)} is a CA certificate, not a station certificate")
    for cert in chain:
        check_validity(cert, now)
    for cert, issuer in itertools.pairwise(chain):
        if not signed_by(cert, issuer):
            raise CertError(f"certificate {describe(cert)} is not issued by the next one, {describe(issuer)}")
    size = sum(len(pem(cert)) for cert in chain)
    if max_bytes is not None and size > max_bytes:
        raise CertError(f"the certificate chain is {size} bytes of PEM, more than the {max_bytes} allowed")


def hash_data(
    cert: x509.Certificate, issuer: x509.Certificate | None = None, algorithm: str = "SHA256"
) -> dict[str, str]:
    """OCPP CertificateHashData; issuer None means cert is its own issuer (a root)."""
    name = HASH_ALGORITHMS.get(algorithm.upper())
    if name is None:
        raise CertError(f"unsupported hash algorithm {algorithm!r}: use one of {', '.join(HASH_ALGORITHMS)}")
    key_bits = _public_key_bits((issuer or cert).public_key())
    return {
        "hashAlgorithm": algorithm.upper(),
        "issuerNameHash": hashlib.new(name, cert.issuer.public_bytes()).hexdigest(),
        "issuerKeyHash": hashlib.new(name, key_bits).hexdigest(),
        "serialNumber": f"{cert.serial_number:x}",
    }


def same_hash(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Same certificate: hex case and a serial's leading zeros do not matter."""
    try:
        first, second = _normal_hash(a), _normal_hash(b)
    except (KeyError, AttributeError, TypeError):
        return False
    return first[0] in HASH_ALGORITHMS and first == second


def hash_matches(cert: x509.Certificate, issuer: x509.Certificate | None, wanted: Mapping[str, Any]) -> bool:
    """cert is the certificate wanted names, hashed with wanted's algorithm."""
    algorithm = wanted.get("hashAlgorithm")
    if not isinstance(algorithm, str) or algorithm.upper() not in HASH_ALGORITHMS:
        return False
    return same_hash(hash_data(cert, issuer, algorithm), wanted)


def check_signing_certificate(
    cert_pem: str, roots: list[x509.Certificate], now: datetime
) -> x509.Certificate:
    """The firmware signing certificate: issued directly by a manufacturer root, valid now."""
    certs = load_certs(cert_pem)
    if len(certs) != 1:
        raise CertError(
            f"the signing certificate must be one certificate issued directly by the manufacturer root,"
            f" found {len(certs)} certificates"
        )
    cert = certs[0]
    check_validity(cert, now)
    if not isinstance(cert.public_key(), rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        # Nothing it signs could be verified: refuse it before downloading anything.
        raise CertError(
            f"signing certificate {describe(cert)} has an unsupported key type "
            f"{type(cert.public_key()).__name__}: RSA or EC only"
        )
    if is_ca(cert):
        raise CertError(f"signing certificate {describe(cert)} is a CA certificate")
    issuers = [root for root in roots if signed_by(cert, root)]
    if not issuers:
        raise CertError(
            f"signing certificate {describe(cert)} is not issued by a manufacturer root"
            f" (issuer {cert.issuer.rfc4514_string()}; {len(roots)} root(s) installed)"
        )
    problems: list[str] = []
    for root in issuers:
        try:
            check_validity(root, now)
            return cert
        except CertError as exc:
            problems.append(str(exc))
    raise CertError(f"the manufacturer root is unusable: {'; '.join(problems)}")


def file_digest(path: Path, chunk: int = 65536) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(chunk):
            digest.update(block)
    return digest.digest()


def verify_firmware(cert: x509.Certificate, signature_b64: str, digest: bytes) -> str:
    """The scheme that verifies: "RSA-PSS", "RSA-PKCS1v15" or "ECDSA"; SignatureError otherwise."""
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise CertError(
            f"unsupported key type {type(key).__name__} in signing certificate {describe(cert)}:"
            " firmware must be signed with RSA or ECDSA"
        )
    try:
        signature = base64.b64decode("".join(signature_b64.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("the firmware signature is not valid base64") from exc
    prehashed = Prehashed(hashes.SHA256())
    for scheme, check in _verifiers(key, prehashed):
        try:
            check(signature, digest)
            return scheme
        except InvalidSignature:
            continue
    raise SignatureError(
        f"the firmware signature does not match the file and signing certificate {describe(cert)}"
    )


def sign_firmware(path: Path, key: PrivateKeyTypes, scheme: str | None = None) -> str:
    """Base64 signature of the file, as a manufacturer's signing tool makes it."""
    digest = file_digest(path)
    prehashed = Prehashed(hashes.SHA256())
    if isinstance(key, rsa.RSAPrivateKey) and scheme in (None, "RSA-PSS"):
        pss = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH)
        signature = key.sign(digest, pss, prehashed)
    elif isinstance(key, rsa.RSAPrivateKey) and scheme == "RSA-PKCS1v15":
        signature = key.sign(digest, padding.PKCS1v15(), prehashed)
    elif isinstance(key, ec.EllipticCurvePrivateKey) and scheme in (None, "ECDSA"):
        signature = key.sign(digest, ec.ECDSA(prehashed))
    else:
        raise ValueError(f"scheme {scheme!r} cannot be used with a {type(key).__name__}")
    return base64.b64encode(signature).decode("ascii")


def _verifiers(
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, prehashed: Prehashed
) -> list[tuple[str, Callable[[bytes, bytes], None]]]:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return [("ECDSA", lambda sig, digest: key.verify(sig, digest, ec.ECDSA(prehashed)))]
    pss = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO)
    return [
        ("RSA-PSS", lambda sig, digest: key.verify(sig, digest, pss, prehashed)),
        ("RSA-PKCS1v15", lambda sig, digest: key.verify(sig, digest, padding.PKCS1v15(), prehashed)),
    ]


def _normal_hash(data: Mapping[str, Any]) -> tuple[str, str, str, str]:
    algorithm, name, key, serial = (str(data[field]).lower() for field in HASH_FIELDS)
    return algorithm.upper(), name, key, serial.lstrip("0") or "0"


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _public_key_bits(key: CertificatePublicKeyTypes) -> bytes:
    """The subjectPublicKey BIT STRING's bits (RFC 6960 issuerKeyHash), not the whole SPKI."""
    spki = _spki(key)
    _, start, _ = _der_element(spki, 0)  # SubjectPublicKeyInfo SEQUENCE
    _, _, algorithm_end = _der_element(spki, start)  # AlgorithmIdentifier
    tag, bits_start, bits_end = _der_element(spki, algorithm_end)
    if tag != _DER_BIT_STRING:
        raise CertError("malformed public key: no BIT STRING in SubjectPublicKeyInfo")
    return spki[bits_start + 1 : bits_end]  # the first content octet counts unused bits


def _der_element(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start, end) of the contents of the DER element at pos."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    return tag, pos, pos + length


def _aware(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
