"""``evse firmware sign`` and ``evse firmware verify``: the manufacturer's tools, run as real
subprocesses (``python -m controller firmware ...``) on keys and certificates made at test time.

``verify`` must judge an image exactly as the station does for SignedUpdateFirmware /
UpdateFirmware (OCPP 1.6 TC_080_CS / TC_081_CS, OCPP 2.0.1 TC_L_01/05/06_CS): signing
certificate first (one certificate, issued directly by a manufacturer root, valid now), then
the signature over SHA-256 of the whole file.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from controller.security import certs
from hil.pki import Authority, Pki, PrivateKey

ROOT = Path(__file__).resolve().parent.parent
IMAGE = b"PiCharger firmware 2.0\n" + bytes(range(256)) * 64


def evse(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", "firmware", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


@dataclass
class Kit:
    """A manufacturer root (PEM file), an image file, and a folder for the rest."""

    dir: Path
    pki: Pki
    root: Authority
    image: Path

    def signer(
        self, ca: Authority | None = None, key: str = "rsa", expired: bool = False
    ) -> tuple[Path, Path]:
        """A new signing certificate issued by ``ca`` (default: the root): (cert file, key file)."""
        cert, private = self.pki.signing_cert(ca or self.root, key=key, expired=expired)  # type: ignore[arg-type]
        stem = f"signer-{len(list(self.dir.glob('signer-*.pem')))}"
        return self.write(f"{stem}.pem", cert), self.key_file(private, f"{stem}.key")

    def key_file(self, private: PrivateKey, name: str) -> Path:
        return self.write(name, certs.key_pem(private).decode())

    def write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(text)
        return path


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    pki = Pki(tmp_path / "pki")
    image = tmp_path / "firmware-2.0.bin"
    image.write_bytes(IMAGE)
    return Kit(tmp_path, pki, pki.ca("Manufacturer Root"), image)


def sign_ok(kit: Kit, key: Path, *extra: str) -> str:
    result = evse("sign", kit.image, "--key", key, *extra)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.strip()


def verify(kit: Kit, signature: str, cert: Path, ca: Path | None = None) -> subprocess.CompletedProcess[str]:
    sig = kit.write("image.sig", signature + "\n")
    return evse("verify", kit.image, "--signature", sig, "--cert", cert, "--ca", ca or kit.root.pem_path)


def assert_refused(result: subprocess.CompletedProcess[str], why: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "REFUSED:" in result.stderr and why in result.stderr, result.stderr


# -- sign then verify: every scheme the station accepts -----------------------------------------


@pytest.mark.parametrize(
    ("key", "scheme", "named"),
    [
        ("rsa", None, "RSA-PSS"),
        ("rsa", "RSA-PSS", "RSA-PSS"),
        ("rsa", "RSA-PKCS1v15", "RSA-PKCS1v15"),
        ("ec", None, "ECDSA"),
        ("ec", "ECDSA", "ECDSA"),
    ],
)
def test_tc_080_tc_l_01_sign_then_verify_valid(kit: Kit, key: str, scheme: str | None, named: str) -> None:
    cert, key_file = kit.signer(key=key)
    signature = sign_ok(kit, key_file, *(["--scheme", scheme] if scheme else []))
    base64.b64decode(signature, validate=True)
    # What the station itself does with it (controller/security/certs.py): same verdict, same scheme.
    signer = certs.check_signing_certificate(
        cert.read_text(), certs.load_certs(kit.root.pem), datetime.now(UTC)
    )
    assert certs.verify_firmware(signer, signature, certs.file_digest(kit.image)) == named
    result = verify(kit, signature, cert)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{kit.image}: signature valid ({named}), signed by CN=Firmware Signing"
    assert result.stderr == ""


def test_sign_output_file_holds_the_printed_signature(kit: Kit) -> None:
    cert, key_file = kit.signer(key="ec")
    out = kit.dir / "out.sig"
    result = evse("sign", kit.image, "--key", key_file, "--output", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    text = out.read_text()
    assert text.endswith("\n") and text.count("\n") == 1
    check = evse("verify", kit.image, "--signature", out, "--cert", cert, "--ca", kit.root.pem_path)
    assert check.returncode == 0, check.stderr


def test_sign_is_over_the_whole_file(kit: Kit) -> None:
    """RSA-PKCS1v15 is deterministic: the same bytes give the same signature, one more byte another."""
    _, key_file = kit.signer()
    first = sign_ok(kit, key_file, "--scheme", "RSA-PKCS1v15")
    assert sign_ok(kit, key_file, "--scheme", "RSA-PKCS1v15") == first
    kit.image.write_bytes(IMAGE + b"\0")
    assert sign_ok(kit, key_file, "--scheme", "RSA-PKCS1v15") != first


def test_verify_accepts_several_roots_in_the_ca_file(kit: Kit) -> None:
    other = kit.pki.ca("Other Manufacturer")
    bundle = kit.write("roots.pem", other.pem + kit.root.pem)
    cert, key_file = kit.signer()
    assert verify(kit, sign_ok(kit, key_file), cert, bundle).returncode == 0


# -- verify refuses what the station refuses ----------------------------------------------------


def test_tc_081_tc_l_06_verify_tampered_image_refused(kit: Kit) -> None:
    cert, key_file = kit.signer()
    signature = sign_ok(kit, key_file)
    kit.image.write_bytes(IMAGE[:-1] + bytes([IMAGE[-1] ^ 1]))
    assert_refused(verify(kit, signature, cert), "does not match the file")


@pytest.mark.parametrize("key", ["rsa", "ec"])
def test_tc_081_tc_l_06_verify_tampered_signature_refused(kit: Kit, key: str) -> None:
    cert, key_file = kit.signer(key=key)
    raw = bytearray(base64.b64decode(sign_ok(kit, key_file)))
    raw[len(raw) // 2] ^= 0x01
    assert_refused(verify(kit, base64.b64encode(bytes(raw)).decode(), cert), "does not match the file")


def test_tc_081_verify_signature_of_another_key_refused(kit: Kit) -> None:
    cert, _ = kit.signer()
    _, other_key = kit.signer()
    assert_refused(verify(kit, sign_ok(kit, other_key), cert), "does not match the file")


def test_tc_081_verify_signature_not_base64_refused(kit: Kit) -> None:
    cert, _ = kit.signer()
    assert_refused(verify(kit, "this is *not* base64!", cert), "not valid base64")


def test_tc_l_05_verify_certificate_from_another_root_refused(kit: Kit) -> None:
    other = kit.pki.ca("Someone Else's Root")
    cert, key_file = kit.signer(other)
    assert_refused(verify(kit, sign_ok(kit, key_file), cert), "not issued by a manufacturer root")


def test_tc_l_05_verify_certificate_issued_by_intermediate_refused(kit: Kit) -> None:
    intermediate = kit.pki.intermediate(kit.root)
    cert, key_file = kit.signer(intermediate)
    assert_refused(verify(kit, sign_ok(kit, key_file), cert), "not issued by a manufacturer root")


def test_tc_l_05_verify_two_certificate_bundle_refused(kit: Kit) -> None:
    intermediate = kit.pki.intermediate(kit.root)
    cert, key_file = kit.signer(intermediate)
    bundle = kit.write("bundle.pem", cert.read_text() + intermediate.pem)
    assert_refused(verify(kit, sign_ok(kit, key_file), bundle), "found 2 certificates")


def test_tc_l_05_verify_expired_signing_certificate_refused(kit: Kit) -> None:
    cert, key_file = kit.signer(expired=True)
    assert_refused(verify(kit, sign_ok(kit, key_file), cert), "expired")


def test_tc_l_05_verify_ca_certificate_as_signing_certificate_refused(kit: Kit) -> None:
    """The root itself (a CA) is no signing certificate, even for a signature its key made."""
    key_file = kit.key_file(kit.root.key, "root.key")
    assert_refused(verify(kit, sign_ok(kit, key_file), kit.root.pem_path), "is a CA certificate")


def test_verify_ed25519_signing_certificate_refused(kit: Kit) -> None:
    """Ed25519 passes the certificate check but not the signature check: RSA or ECDSA only."""
    cert_pem, private = kit.pki.signing_cert(kit.root, key="ed25519")
    cert = kit.write("ed25519.pem", cert_pem)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    signature = base64.b64encode(private.sign(IMAGE)).decode()
    assert_refused(verify(kit, signature, cert), "unsupported key type Ed25519PublicKey")


# -- usage errors --------------------------------------------------------------------------------


def test_sign_ed25519_key_refused(kit: Kit) -> None:
    key_file = kit.key_file(ed25519.Ed25519PrivateKey.generate(), "ed.key")
    result = evse("sign", kit.image, "--key", key_file)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "unsupported private key type" in result.stderr and "RSA or EC" in result.stderr


@pytest.mark.parametrize(("key", "scheme"), [("rsa", "ECDSA"), ("ec", "RSA-PSS"), ("ec", "RSA-PKCS1v15")])
def test_sign_scheme_that_does_not_fit_the_key_refused(kit: Kit, key: str, scheme: str) -> None:
    _, key_file = kit.signer(key=key)
    result = evse("sign", kit.image, "--key", key_file, "--scheme", scheme)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"scheme {scheme!r} cannot be used" in result.stderr


def test_sign_unknown_scheme_is_a_usage_error(kit: Kit) -> None:
    _, key_file = kit.signer()
    result = evse("sign", kit.image, "--key", key_file, "--scheme", "Ed25519")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_sign_key_that_is_not_a_key_refused(kit: Kit) -> None:
    result = evse("sign", kit.image, "--key", kit.root.pem_path)
    assert result.returncode == 1
    assert "not an unencrypted PEM private key" in result.stderr


@pytest.mark.parametrize("missing", ["image", "key"])
def test_sign_missing_file_named(kit: Kit, missing: str) -> None:
    _, key_file = kit.signer()
    gone = kit.dir / "nowhere.bin"
    image, key = (gone, key_file) if missing == "image" else (kit.image, gone)
    result = evse("sign", image, "--key", key)
    assert result.returncode == 1
    assert result.stdout == ""
    assert str(gone) in result.stderr
    assert "Traceback" not in result.stderr


def test_sign_output_unwritable_named(kit: Kit) -> None:
    _, key_file = kit.signer(key="ec")
    out = kit.dir / "no-such-folder" / "image.sig"
    result = evse("sign", kit.image, "--key", key_file, "--output", out)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert f"evse firmware sign: {out}" in result.stderr


@pytest.mark.parametrize("missing", ["image", "signature", "cert", "ca"])
def test_verify_missing_file_named(kit: Kit, missing: str) -> None:
    cert, key_file = kit.signer()
    files = {
        "image": kit.image,
        "signature": kit.write("image.sig", sign_ok(kit, key_file)),
        "cert": cert,
        "ca": kit.root.pem_path,
    }
    gone = kit.dir / "nowhere.pem"
    files[missing] = gone
    result = evse(
        "verify",
        files["image"],
        "--signature",
        files["signature"],
        "--cert",
        files["cert"],
        "--ca",
        files["ca"],
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert str(gone) in result.stderr
    assert "Traceback" not in result.stderr


def test_verify_ca_file_without_certificate_refused(kit: Kit) -> None:
    cert, key_file = kit.signer()
    empty = kit.write("empty.pem", "not a certificate\n")
    assert_refused(verify(kit, sign_ok(kit, key_file), cert, empty), "no readable PEM certificate")


def test_verify_binary_signature_file_refused(kit: Kit) -> None:
    """A raw (not base64) signature file is refused with a message, not a traceback."""
    cert, key_file = kit.signer()
    sig = kit.dir / "raw.sig"
    sig.write_bytes(base64.b64decode(sign_ok(kit, key_file)) + b"\xff\xfe")
    result = evse("verify", kit.image, "--signature", sig, "--cert", cert, "--ca", kit.root.pem_path)
    assert result.returncode == 1
    assert "REFUSED:" in result.stderr
    assert "Traceback" not in result.stderr
