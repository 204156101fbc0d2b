"""controller.security.certs against certificates and keys made at test time."""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
)
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from controller.security import certs
from controller.security.certs import CertError, SignatureError

NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)

# -- a small test PKI -------------------------------------------------------------------------


@functools.cache
def rsa_key(index: int = 0, bits: int = 2048) -> rsa.RSAPrivateKey:
    """RSA keys are slow to make: a few, shared by index."""
    return rsa.generate_private_key(65537, bits)


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def name(common_name: str, organization: str = "Test Org") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )


@dataclass
class Party:
    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes


def make_cert(
    subject: str,
    public_key: CertificateIssuerPublicKeyTypes,
    issuer: Party | None,
    signing_key: CertificateIssuerPrivateKeyTypes,
    *,
    ca: bool = False,
    not_before: datetime = NOW - DAY,
    not_after: datetime = NOW + 365 * DAY,
    serial: int | None = None,
    rsa_padding: padding.PSS | padding.PKCS1v15 | None = None,
    issuer_name: x509.Name | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(issuer_name or (issuer.cert.subject if issuer else name(subject)))
        .public_key(public_key)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    digest = None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    if rsa_padding is not None:
        return builder.sign(signing_key, digest, rsa_padding=rsa_padding)
    return builder.sign(signing_key, digest)


def make_ca(
    common_name: str = "Test Root", key: CertificateIssuerPrivateKeyTypes | None = None, **kwargs: Any
) -> Party:
    key = key or ec_key()
    return Party(make_cert(common_name, key.public_key(), None, key, ca=True, **kwargs), key)


def issue(
    authority: Party, common_name: str, key: CertificateIssuerPrivateKeyTypes | None = None, **kwargs: Any
) -> Party:
    key = key or ec_key()
    return Party(make_cert(common_name, key.public_key(), authority, authority.key, **kwargs), key)


def pem_of(*chain: x509.Certificate) -> str:
    return "".join(certs.pem(cert) for cert in chain)


# -- keys and CSR -----------------------------------------------------------------------------


def test_generated_key_is_p256_and_survives_pem() -> None:
    key = certs.generate_key()
    assert isinstance(key.curve, ec.SECP256R1)
    data = certs.key_pem(key)
    assert data.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8, unencrypted
    loaded = certs.load_key(data)
    assert loaded.private_numbers() == key.private_numbers()


def test_rsa_key_loads() -> None:
    assert isinstance(certs.load_key(certs.key_pem(rsa_key())), rsa.RSAPrivateKey)


@pytest.mark.parametrize(
    "data",
    [
        b"garbage",
        b"",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ec_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        ),
    ],
    ids=["garbage", "empty", "bad-body", "encrypted"],
)
def test_unreadable_key_is_a_cert_error(data: bytes) -> None:
    with pytest.raises(CertError, match="private key"):
        certs.load_key(data)


def test_ed25519_key_is_refused() -> None:
    with pytest.raises(CertError, match="unsupported private key type"):
        certs.load_key(certs.key_pem(ed25519.Ed25519PrivateKey.generate()))


def test_csr_has_subject_sha256_and_the_key() -> None:
    key = certs.generate_key()
    csr = x509.load_pem_x509_csr(certs.make_csr(key, "CP001", "Example CPO").encode())
    assert csr.is_signature_valid
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CP001"
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Example CPO"
    assert csr.public_key() == key.public_key()


# -- parsing ----------------------------------------------------------------------------------


def test_bundle_loads_every_certificate_in_order() -> None:
    root = make_ca("Root A")
    other = make_ca("Root B")
    leaf = issue(root, "Leaf")
    bundle = pem_of(leaf.cert, root.cert, other.cert)
    assert certs.load_certs(bundle) == [leaf.cert, root.cert, other.cert]
    assert certs.load_certs(bundle.encode()) == [leaf.cert, root.cert, other.cert]
    assert certs.pem(root.cert).startswith("-----BEGIN CERTIFICATE-----")


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"],
    ids=["empty", "garbage", "bad-body"],
)
def test_no_certificate_is_a_cert_error(text: str) -> None:
    with pytest.raises(CertError, match="no readable PEM certificate"):
        certs.load_certs(text)


# -- signatures on certificates ---------------------------------------------------------------


@pytest.mark.parametrize(
    "rsa_padding",
    [
        padding.PKCS1v15(),
        padding.PSS(padding.MGF1(hashes.SHA256()), 32),
        padding.PSS(padding.MGF1(hashes.SHA256()), 20),
    ],
    ids=["pkcs1v15", "pss-32", "pss-20"],
)
def test_rsa_signed_certificates_verify(rsa_padding: padding.PSS | padding.PKCS1v15) -> None:
    root = make_ca("RSA Root", rsa_key(), rsa_padding=rsa_padding)
    leaf = Party(make_cert("Leaf", ec_key().public_key(), root, root.key, rsa_padding=rsa_padding), root.key)
    assert certs.signed_by(root.cert, root.cert)
    assert certs.signed_by(leaf.cert, root.cert)


def test_ecdsa_signed_certificate_verifies() -> None:
    root = make_ca("EC Root", ec_key(ec.SECP384R1()))
    assert certs.signed_by(issue(root, "Leaf").cert, root.cert)


def test_same_name_other_key_is_not_the_issuer() -> None:
    root = make_ca("Root")
    impostor = make_ca("Root")  # same subject, different key
    leaf = issue(root, "Leaf")
    assert not certs.signed_by(leaf.cert, impostor.cert)


def test_other_name_same_key_is_not_the_issuer() -> None:
    root = make_ca("Root")
    renamed = make_ca("Other Root", root.key)
    assert not certs.signed_by(issue(root, "Leaf").cert, renamed.cert)
    assert certs.verifies_with(issue(root, "Leaf").cert, renamed.cert.public_key())


def test_key_type_mismatch_is_false_not_an_exception() -> None:
    rsa_root = make_ca("Root", rsa_key())
    ec_root = make_ca("Root")
    assert not certs.signed_by(issue(rsa_root, "Leaf").cert, ec_root.cert)
    assert not certs.signed_by(issue(ec_root, "Leaf").cert, rsa_root.cert)


def test_ed25519_certificate_signature_is_false_not_an_exception() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    root = make_ca("Edwards Root", key)
    assert not certs.signed_by(root.cert, root.cert)


# -- validity and roots -----------------------------------------------------------------------


def test_expired_certificate_says_when() -> None:
    root = make_ca("Old Root", not_before=NOW - 30 * DAY, not_after=NOW - 2 * DAY)
    with pytest.raises(CertError, match="expired on " + (NOW - 2 * DAY).strftime("%Y-%m-%d")):
        certs.check_validity(root.cert, NOW)


def test_not_yet_valid_certificate_says_from_when() -> None:
    root = make_ca("Future Root", not_before=NOW + 3 * DAY)
    with pytest.raises(CertError, match="not valid yet: valid from " + (NOW + 3 * DAY).strftime("%Y-%m-%d")):
        certs.check_validity(root.cert, NOW)


def test_validity_bounds_are_inclusive() -> None:
    root = make_ca("Root", not_before=NOW - DAY, not_after=NOW + DAY)
    certs.check_validity(root.cert, NOW - DAY)
    certs.check_validity(root.cert, NOW + DAY)


def test_roots_pass_check_root() -> None:
    certs.check_root(make_ca("EC Root").cert, NOW)
    certs.check_root(make_ca("RSA Root", rsa_key()).cert, NOW)


def test_leaf_is_not_a_root() -> None:
    key = ec_key()
    self_signed_leaf = make_cert("Leaf", key.public_key(), None, key, ca=False)
    with pytest.raises(CertError, match="not a CA certificate"):
        certs.check_root(self_signed_leaf, NOW)


def test_intermediate_is_not_a_root() -> None:
    intermediate = issue(make_ca("Root"), "Intermediate", ca=True)
    with pytest.raises(CertError, match="not self-signed"):
        certs.check_root(intermediate.cert, NOW)


def test_expired_root_is_not_a_root() -> None:
    root = make_ca("Root", not_after=NOW - DAY, not_before=NOW - 9 * DAY)
    with pytest.raises(CertError, match="expired"):
        certs.check_root(root.cert, NOW)


# -- the station's client chain ---------------------------------------------------------------


def test_client_chain_through_an_intermediate_is_accepted() -> None:
    root = make_ca("Root", rsa_key())
    intermediate = issue(root, "Sub CA", ca=True)
    key = ec_key()
    leaf = issue(intermediate, "CP001", key)
    certs.check_client_chain([leaf.cert, intermediate.cert, root.cert], key, NOW)
    certs.check_client_chain([leaf.cert], key, NOW)


def test_client_chain_for_another_key_is_refused() -> None:
    leaf = issue(make_ca("Root"), "CP001")
    with pytest.raises(CertError, match="not for the station's key"):
        certs.check_client_chain([leaf.cert], certs.generate_key(), NOW)


def test_client_chain_with_a_ca_leaf_is_refused() -> None:
    key = ec_key()
    leaf = issue(make_ca("Root"), "CP001", key, ca=True)
    with pytest.raises(CertError, match="is a CA certificate"):
        certs.check_client_chain([leaf.cert], key, NOW)


def test_client_chain_with_an_expired_intermediate_is_refused() -> None:
    root = make_ca("Root")
    intermediate = issue(root, "Sub CA", ca=True, not_before=NOW - 9 * DAY, not_after=NOW - DAY)
    key = ec_key()
    leaf = issue(intermediate, "CP001", key)
    with pytest.raises(CertError, match=r"Sub CA.*expired"):
        certs.check_client_chain([leaf.cert, intermediate.cert], key, NOW)


def test_client_chain_out_of_order_is_refused() -> None:
    root = make_ca("Root")
    intermediate = issue(root, "Sub CA", ca=True)
    key = ec_key()
    leaf = issue(intermediate, "CP001", key)
    with pytest.raises(CertError, match="not issued by the next one"):
        certs.check_client_chain([leaf.cert, root.cert, intermediate.cert], key, NOW)


def test_client_chain_larger_than_allowed_is_refused() -> None:
    root = make_ca("Root")
    key = ec_key()
    leaf = issue(root, "CP001", key)
    size = len(pem_of(leaf.cert, root.cert))
    certs.check_client_chain([leaf.cert, root.cert], key, NOW, max_bytes=size)
    with pytest.raises(CertError, match=f"{size} bytes"):
        certs.check_client_chain([leaf.cert, root.cert], key, NOW, max_bytes=size - 1)


def test_empty_client_chain_is_refused() -> None:
    with pytest.raises(CertError, match="empty"):
        certs.check_client_chain([], certs.generate_key(), NOW)


# -- CertificateHashData ----------------------------------------------------------------------


def _ocsp_cert_id(
    cert: x509.Certificate, issuer: x509.Certificate, algorithm: hashes.HashAlgorithm
) -> ocsp.OCSPRequest:
    """RFC 6960 CertID as cryptography computes it: an independent reference."""
    return ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm).build()


@pytest.mark.parametrize("issuer_key", ["ec", "rsa"])
def test_hash_data_is_the_ocsp_cert_id(issuer_key: str) -> None:
    root = make_ca("Root", rsa_key() if issuer_key == "rsa" else ec_key())
    leaf = issue(root, "Leaf")
    data = certs.hash_data(leaf.cert, root.cert)
    reference = _ocsp_cert_id(leaf.cert, root.cert, hashes.SHA256())
    assert data == {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": reference.issuer_name_hash.hex(),
        "issuerKeyHash": reference.issuer_key_hash.hex(),
        "serialNumber": f"{leaf.cert.serial_number:x}",
    }
    assert data["issuerNameHash"] == hashlib.sha256(leaf.cert.issuer.public_bytes()).hexdigest()


def test_issuer_key_hash_is_over_the_key_bits_not_the_spki() -> None:
    root = make_ca("Root")
    key = root.cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    assert certs.hash_data(root.cert)["issuerKeyHash"] == hashlib.sha256(point).hexdigest()
    rsa_root = make_ca("RSA Root", rsa_key())
    pkcs1 = rsa_root.cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )
    assert certs.hash_data(rsa_root.cert)["issuerKeyHash"] == hashlib.sha256(pkcs1).hexdigest()


def test_root_hash_data_uses_its_own_key() -> None:
    root = make_ca("Root")
    assert certs.hash_data(root.cert) == certs.hash_data(root.cert, root.cert)


@pytest.mark.parametrize("algorithm", ["SHA384", "SHA512", "sha512"])
def test_other_hash_algorithms(algorithm: str) -> None:
    root = make_ca("Root")
    leaf = issue(root, "Leaf")
    reference = _ocsp_cert_id(
        leaf.cert, root.cert, {"SHA384": hashes.SHA384(), "SHA512": hashes.SHA512()}[algorithm.upper()]
    )
    data = certs.hash_data(leaf.cert, root.cert, algorithm)
    assert data["hashAlgorithm"] == algorithm.upper()
    assert data["issuerKeyHash"] == reference.issuer_key_hash.hex()
    assert len(data["issuerNameHash"]) <= 128  # the schemas' maxLength


def test_unknown_hash_algorithm_is_a_cert_error() -> None:
    with pytest.raises(CertError, match="MD5"):
        certs.hash_data(make_ca().cert, algorithm="MD5")


@pytest.mark.parametrize(
    ("serial", "text"), [(1, "1"), (0x0F, "f"), (0x0100, "100"), (2**159 - 1, "7" + "f" * 39)]
)
def test_serial_is_lowercase_hex_without_leading_zeros(serial: int, text: str) -> None:
    root = make_ca("Root", serial=serial)
    assert certs.hash_data(root.cert)["serialNumber"] == text


def _variant(data: dict[str, str], upper: bool, zeros: int) -> dict[str, str]:
    change = str.upper if upper else str.lower
    return {
        "hashAlgorithm": data["hashAlgorithm"],
        "issuerNameHash": change(data["issuerNameHash"]),
        "issuerKeyHash": change(data["issuerKeyHash"]),
        "serialNumber": "0" * zeros + change(data["serialNumber"]),
    }


ROOT_FOR_HASHES = make_ca("Hash Root")


@given(upper=st.booleans(), zeros=st.integers(0, 4))
def test_same_hash_ignores_case_and_leading_zeros(upper: bool, zeros: int) -> None:
    data = certs.hash_data(ROOT_FOR_HASHES.cert)
    assert certs.same_hash(data, _variant(data, upper, zeros))
    assert certs.hash_matches(ROOT_FOR_HASHES.cert, None, _variant(data, upper, zeros))


def test_same_hash_tells_certificates_apart() -> None:
    data = certs.hash_data(ROOT_FOR_HASHES.cert)
    other = certs.hash_data(make_ca("Hash Root").cert)
    assert not certs.same_hash(data, other)
    assert not certs.same_hash(data, {**data, "serialNumber": data["serialNumber"] + "0"})
    assert not certs.same_hash(data, {**data, "hashAlgorithm": "SHA384"})
    assert not certs.same_hash(data, {k: v for k, v in data.items() if k != "issuerKeyHash"})
    assert not certs.same_hash({**data, "hashAlgorithm": "MD5"}, {**data, "hashAlgorithm": "MD5"})


def test_hash_matches_computes_with_the_requested_algorithm() -> None:
    wanted = certs.hash_data(ROOT_FOR_HASHES.cert, algorithm="SHA384")
    assert certs.hash_matches(ROOT_FOR_HASHES.cert, None, wanted)
    assert not certs.hash_matches(ROOT_FOR_HASHES.cert, None, {**wanted, "hashAlgorithm": "SHA256"})
    assert not certs.hash_matches(ROOT_FOR_HASHES.cert, None, {**wanted, "hashAlgorithm": "MD5"})


# -- firmware signing certificate -------------------------------------------------------------


@pytest.mark.parametrize("root_key", ["rsa", "ec"])
def test_signing_certificate_issued_by_the_manufacturer_root(root_key: str) -> None:
    root = make_ca("Manufacturer Root", rsa_key() if root_key == "rsa" else ec_key())
    signer = issue(root, "Firmware Signer", rsa_key(1))
    other_root = make_ca("Other Root")
    found = certs.check_signing_certificate(certs.pem(signer.cert), [other_root.cert, root.cert], NOW)
    assert found == signer.cert


def test_signing_certificate_from_another_root_is_refused() -> None:
    signer = issue(make_ca("Other Root"), "Firmware Signer")
    with pytest.raises(CertError, match="not issued by a manufacturer root"):
        certs.check_signing_certificate(certs.pem(signer.cert), [make_ca("Manufacturer Root").cert], NOW)


def test_signing_certificate_through_an_intermediate_is_refused() -> None:
    root = make_ca("Manufacturer Root")
    intermediate = issue(root, "Sub CA", ca=True)
    signer = issue(intermediate, "Firmware Signer")
    with pytest.raises(CertError, match="not issued by a manufacturer root"):
        certs.check_signing_certificate(certs.pem(signer.cert), [root.cert], NOW)
    with pytest.raises(CertError, match="found 2 certificates"):
        certs.check_signing_certificate(pem_of(signer.cert, intermediate.cert), [root.cert], NOW)


def test_expired_signing_certificate_is_refused() -> None:
    root = make_ca("Manufacturer Root")
    signer = issue(root, "Firmware Signer", not_before=NOW - 9 * DAY, not_after=NOW - DAY)
    with pytest.raises(CertError, match="expired"):
        certs.check_signing_certificate(certs.pem(signer.cert), [root.cert], NOW)


def test_signing_certificate_under_an_expired_root_is_refused() -> None:
    root = make_ca("Manufacturer Root", not_before=NOW - 90 * DAY, not_after=NOW - DAY)
    signer = issue(root, "Firmware Signer")
    with pytest.raises(CertError, match=r"manufacturer root is unusable.*expired"):
        certs.check_signing_certificate(certs.pem(signer.cert), [root.cert], NOW)


def test_ca_as_signing_certificate_is_refused() -> None:
    root = make_ca("Manufacturer Root")
    signer = issue(root, "Sub CA", ca=True)
    with pytest.raises(CertError, match="is a CA certificate"):
        certs.check_signing_certificate(certs.pem(signer.cert), [root.cert], NOW)


def test_garbage_signing_certificate_is_refused() -> None:
    with pytest.raises(CertError):
        certs.check_signing_certificate("not a certificate", [make_ca().cert], NOW)


# -- firmware signatures ----------------------------------------------------------------------


@pytest.fixture
def firmware(tmp_path: Path) -> Path:
    path = tmp_path / "firmware.bin"
    path.write_bytes(b"\x7fELF" + bytes(range(256)) * 1000)  # several chunks of 64 KiB
    return path


def test_file_digest_streams_the_whole_file(firmware: Path) -> None:
    expected = hashlib.sha256(firmware.read_bytes()).digest()
    assert certs.file_digest(firmware) == expected
    assert certs.file_digest(firmware, chunk=7) == expected


def _signer(key: CertificateIssuerPrivateKeyTypes) -> x509.Certificate:
    return issue(make_ca("Manufacturer Root"), "Firmware Signer", key).cert


def _raw_rsa_signature(path: Path, key: rsa.RSAPrivateKey, pad: padding.AsymmetricPadding) -> str:
    return base64.b64encode(key.sign(path.read_bytes(), pad, hashes.SHA256())).decode()


@pytest.mark.parametrize(
    "salt_length",
    [0, 20, 32, padding.PSS.MAX_LENGTH],
    ids=["salt-0", "salt-20", "salt-32", "salt-max"],
)
def test_rsa_pss_with_any_salt_length_verifies(firmware: Path, salt_length: int) -> None:
    key = rsa_key()
    pss = padding.PSS(padding.MGF1(hashes.SHA256()), salt_length)
    signature = _raw_rsa_signature(firmware, key, pss)
    assert certs.verify_firmware(_signer(key), signature, certs.file_digest(firmware)) == "RSA-PSS"


def test_rsa_pkcs1v15_verifies(firmware: Path) -> None:
    key = rsa_key()
    signature = _raw_rsa_signature(firmware, key, padding.PKCS1v15())
    assert certs.verify_firmware(_signer(key), signature, certs.file_digest(firmware)) == "RSA-PKCS1v15"


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()], ids=["p256", "p384"])
def test_ecdsa_verifies(firmware: Path, curve: ec.EllipticCurve) -> None:
    key = ec_key(curve)
    signature = base64.b64encode(key.sign(firmware.read_bytes(), ec.ECDSA(hashes.SHA256()))).decode()
    assert certs.verify_firmware(_signer(key), signature, certs.file_digest(firmware)) == "ECDSA"


@pytest.mark.parametrize(
    ("key", "scheme", "expected"),
    [
        (rsa_key(), None, "RSA-PSS"),
        (rsa_key(), "RSA-PSS", "RSA-PSS"),
        (rsa_key(), "RSA-PKCS1v15", "RSA-PKCS1v15"),
        (ec_key(), None, "ECDSA"),
        (ec_key(), "ECDSA", "ECDSA"),
    ],
    ids=["rsa-default", "rsa-pss", "rsa-pkcs1v15", "ec-default", "ec-ecdsa"],
)
def test_sign_firmware_round_trip(
    firmware: Path, key: CertificateIssuerPrivateKeyTypes, scheme: str | None, expected: str
) -> None:
    signature = certs.sign_firmware(firmware, key, scheme)
    assert certs.verify_firmware(_signer(key), signature, certs.file_digest(firmware)) == expected


def test_signature_with_line_breaks_verifies(firmware: Path) -> None:
    key = ec_key()
    signature = certs.sign_firmware(firmware, key)
    wrapped = "\n".join(signature[i : i + 20] for i in range(0, len(signature), 20)) + "\n"
    assert certs.verify_firmware(_signer(key), wrapped, certs.file_digest(firmware)) == "ECDSA"


@pytest.mark.parametrize("key", [rsa_key(), ec_key()], ids=["rsa", "ec"])
def test_tampered_file_is_a_signature_error(firmware: Path, key: CertificateIssuerPrivateKeyTypes) -> None:
    signature = certs.sign_firmware(firmware, key)
    data = bytearray(firmware.read_bytes())
    data[100_000] ^= 0x01
    firmware.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match="does not match"):
        certs.verify_firmware(_signer(key), signature, certs.file_digest(firmware))


@pytest.mark.parametrize("key", [rsa_key(), ec_key()], ids=["rsa", "ec"])
def test_tampered_signature_is_a_signature_error(
    firmware: Path, key: CertificateIssuerPrivateKeyTypes
) -> None:
    raw = bytearray(base64.b64decode(certs.sign_firmware(firmware, key)))
    raw[len(raw) // 2] ^= 0x40
    with pytest.raises(SignatureError):
        certs.verify_firmware(_signer(key), base64.b64encode(raw).decode(), certs.file_digest(firmware))


def test_signature_by_another_key_is_a_signature_error(firmware: Path) -> None:
    signature = certs.sign_firmware(firmware, rsa_key(1))
    with pytest.raises(SignatureError):
        certs.verify_firmware(_signer(rsa_key()), signature, certs.file_digest(firmware))


@pytest.mark.parametrize("text", ["not base64!", "QUJD=", ""], ids=["symbols", "bad-padding", "empty"])
def test_malformed_signature_is_a_signature_error(firmware: Path, text: str) -> None:
    with pytest.raises(SignatureError):
        certs.verify_firmware(_signer(ec_key()), text, certs.file_digest(firmware))


def test_ed25519_signing_certificate_is_refused(firmware: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    signature = base64.b64encode(key.sign(firmware.read_bytes())).decode()
    with pytest.raises(CertError, match="unsupported key type") as caught:
        certs.verify_firmware(_signer(key), signature, certs.file_digest(firmware))
    assert not isinstance(caught.value, SignatureError)


@pytest.mark.parametrize(
    ("key", "scheme"),
    [
        (rsa_key(), "ECDSA"),
        (rsa_key(), "RSA-OAEP"),
        (ec_key(), "RSA-PSS"),
        (ed25519.Ed25519PrivateKey.generate(), None),
    ],
    ids=["rsa-ecdsa", "rsa-unknown", "ec-pss", "ed25519"],
)
def test_sign_firmware_refuses_a_scheme_the_key_cannot_make(
    firmware: Path, key: certs.SigningKey, scheme: str | None
) -> None:
    with pytest.raises(ValueError, match="cannot be used"):
        certs.sign_firmware(firmware, key, scheme)
