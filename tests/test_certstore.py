"""controller.security.certstore: roots, the station certificate and its key, on disk."""

from __future__ import annotations

import logging
import os
import re
import ssl
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from controller.security import certs, certstore
from controller.security.certs import CertError
from controller.security.certstore import CSMS_ROOT, CertStore
from tests.test_certs import DAY, NOW, Party, ec_key, issue, make_ca, make_cert, pem_of, rsa_key

MANUFACTURER = "ManufacturerRootCertificate"
ROOM = 20  # CertificateStoreMaxLength for tests that do not fill the store


def cross_signed(old: Party, common_name: str = "CSMS Root 2") -> Party:
    """A new root (its own subject and key, CA) whose signature is made with the old root's key."""
    key = ec_key()
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    cert = make_cert(common_name, key.public_key(), None, old.key, ca=True, issuer_name=subject)
    return Party(cert, key)


def sign_csr(
    authority: Party, csr_pem: str, *, days: int = 365, start: datetime = NOW - DAY
) -> x509.Certificate:
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    return (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(authority.cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(NOW + days * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(authority.key, hashes.SHA256())
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "var" / "certs"


@pytest.fixture
def store(folder: Path) -> CertStore:
    return CertStore(folder)


# -- the folder and its files ----------------------------------------------------------------


def test_folder_is_private_even_when_it_existed(tmp_path: Path) -> None:
    folder = tmp_path / "certs"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    CertStore(folder)
    assert mode(folder) == 0o700


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_every_file_is_0600_whatever_the_umask(folder: Path, umask: int) -> None:
    folder.parent.mkdir(parents=True)
    old = os.umask(umask)
    try:
        store = CertStore(folder)
        assert store.install(CSMS_ROOT, certs.pem(make_ca().cert), NOW, ROOM, False) == "Accepted"
        ca = make_ca("Station CA")
        store.accept_signed(certs.pem(sign_csr(ca, store.new_csr("CP001", "CPO"))), NOW)
        store.new_csr("CP001", "CPO")  # a pending key too
    finally:
        os.umask(old)
    written = [path for path in folder.rglob("*") if path.is_file() and not path.is_symlink()]
    assert len(written) == 4  # root, station.pem, station.key, pending.key
    assert {path.name: mode(path) for path in written} == {path.name: 0o600 for path in written}
    assert mode(folder) == 0o700
    assert all(mode(path) == 0o700 for path in folder.iterdir() if path.is_dir() and not path.is_symlink())


def test_write_is_atomic_when_the_disk_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "file"
    certstore._write_atomic(path, b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        certstore._write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert files(tmp_path) == ["file"]  # no temporary file left behind


def test_leftover_temporary_files_are_removed_at_start(folder: Path) -> None:
    CertStore(folder)
    (folder / ".tmp-pending.key-1234").write_bytes(b"half a key")
    (folder / "station.deadbeef").mkdir()  # a generation never made live
    CertStore(folder)
    assert files(folder) == []


# -- InstallCertificate -----------------------------------------------------------------------


def test_installed_root_is_trusted_listed_and_survives_restart(store: CertStore, folder: Path) -> None:
    root = make_ca("CSMS Root", rsa_key())
    assert store.install(CSMS_ROOT, certs.pem(root.cert), NOW, ROOM, False) == "Accepted"
    for current in (store, CertStore(folder)):
        assert current.roots(CSMS_ROOT) == [root.cert]
        assert certs.load_certs(current.roots_pem(CSMS_ROOT)) == [root.cert]
        assert current.installed() == [(CSMS_ROOT, certs.hash_data(root.cert))]
        assert current.count() == 1
    assert store.roots(MANUFACTURER) == []
    assert store.roots_pem(MANUFACTURER) == ""


def test_installing_a_root_twice_keeps_one(store: CertStore, folder: Path) -> None:
    root = make_ca()
    for _ in range(2):
        assert store.install(MANUFACTURER, certs.pem(root.cert), NOW, ROOM, False) == "Accepted"
    assert store.count() == 1
    assert len(files(folder)) == 1


def test_same_root_for_two_uses_is_two_entries(store: CertStore) -> None:
    root = make_ca()
    assert store.install(MANUFACTURER, certs.pem(root.cert), NOW, ROOM, False) == "Accepted"
    assert store.install("V2GRootCertificate", certs.pem(root.cert), NOW, ROOM, False) == "Accepted"
    assert [use for use, _ in store.installed()] == [MANUFACTURER, "V2GRootCertificate"]


def _leaf() -> x509.Certificate:
    return issue(make_ca(), "Leaf").cert


@pytest.mark.parametrize(
    ("cert_type", "text"),
    [
        (CSMS_ROOT, "garbage"),
        (CSMS_ROOT, ""),
        (CSMS_ROOT, certs.pem(_leaf())),
        (CSMS_ROOT, certs.pem(make_ca(not_before=NOW - 9 * DAY, not_after=NOW - DAY).cert)),
        (CSMS_ROOT, certs.pem(make_ca(not_before=NOW + DAY).cert)),
        (CSMS_ROOT, certs.pem(issue(make_ca(), "Sub CA", ca=True).cert)),
        (CSMS_ROOT, pem_of(make_ca("A").cert, make_ca("B").cert)),
        ("CentralSystemRootCertificate", certs.pem(make_ca().cert)),  # the 1.6 name: adapters translate
        ("V2GCertificateChain", certs.pem(make_ca().cert)),
    ],
    ids=[
        "garbage",
        "empty",
        "leaf",
        "expired",
        "not-yet-valid",
        "intermediate",
        "two-roots",
        "1.6-type-name",
        "not-installable-type",
    ],
)
def test_invalid_root_is_rejected(store: CertStore, folder: Path, cert_type: str, text: str) -> None:
    assert store.install(cert_type, text, NOW, ROOM, False) == "Rejected"
    assert store.installed() == []
    assert files(folder) == []


def test_full_store_fails_the_install(store: CertStore) -> None:
    ca = make_ca("Station CA")
    store.accept_signed(certs.pem(sign_csr(ca, store.new_csr("CP001", "CPO"))), NOW)
    assert store.install(MANUFACTURER, certs.pem(make_ca("One").cert), NOW, 3, False) == "Accepted"
    assert store.install(MANUFACTURER, certs.pem(make_ca("Two").cert), NOW, 3, False) == "Accepted"
    assert store.count() == 3  # two roots and the station certificate
    assert store.install(MANUFACTURER, certs.pem(make_ca("Three").cert), NOW, 3, False) == "Failed"
    assert store.count() == 3


def test_disk_error_fails_the_install(store: CertStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(*args: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", read_only)
    assert store.install(CSMS_ROOT, certs.pem(make_ca().cert), NOW, ROOM, False) == "Failed"
    assert store.roots(CSMS_ROOT) == []


def test_concurrent_installs_never_overfill_the_store(store: CertStore) -> None:
    pems = [certs.pem(make_ca(f"Root {n}").cert) for n in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda pem: store.install(MANUFACTURER, pem, NOW, 3, False), pems))
    assert sorted(results) == ["Accepted"] * 3 + ["Failed"] * 5
    assert store.count() == 3


# -- AdditionalRootCertificateCheck -----------------------------------------------------------


def test_new_csms_root_signed_by_the_old_one_replaces_it(store: CertStore, folder: Path) -> None:
    old = make_ca("CSMS Root 1")
    assert store.install(CSMS_ROOT, certs.pem(old.cert), NOW, ROOM, False) == "Accepted"
    new = cross_signed(old)
    assert store.install(CSMS_ROOT, certs.pem(new.cert), NOW, 1, True) == "Accepted"
    assert store.roots(CSMS_ROOT) == [new.cert, old.cert]  # the old one is a fallback until confirmed
    assert store.count() == 1
    assert set(CertStore(folder).roots(CSMS_ROOT)) == {old.cert, new.cert}  # the fallback survives a restart
    store.confirm_csms_root()
    assert store.roots(CSMS_ROOT) == [new.cert]
    assert CertStore(folder).roots(CSMS_ROOT) == [new.cert]
    assert [name for name in files(folder) if "fallback" in name] == []


def test_fallback_that_cannot_be_removed_stays_until_the_next_confirmation(
    store: CertStore, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = make_ca("CSMS Root 1")
    store.install(CSMS_ROOT, certs.pem(old.cert), NOW, ROOM, False)
    new = cross_signed(old)
    assert store.install(CSMS_ROOT, certs.pem(new.cert), NOW, ROOM, True) == "Accepted"

    def read_only(path: Path, missing_ok: bool = False) -> None:
        raise OSError(30, "Read-only file system")

    with monkeypatch.context() as patch:
        patch.setattr(Path, "unlink", read_only)
        store.confirm_csms_root()  # logged, not raised: it runs right after a successful connection
    assert set(CertStore(folder).roots(CSMS_ROOT)) == {old.cert, new.cert}
    store.confirm_csms_root()
    assert store.roots(CSMS_ROOT) == [new.cert]
    assert CertStore(folder).roots(CSMS_ROOT) == [new.cert]


def test_renewed_csms_root_with_the_same_key_replaces_it(store: CertStore) -> None:
    old = make_ca("CSMS Root", not_after=NOW + 10 * DAY)
    assert store.install(CSMS_ROOT, certs.pem(old.cert), NOW, ROOM, False) == "Accepted"
    renewed = make_ca("CSMS Root", old.key, not_after=NOW + 3650 * DAY)
    assert store.install(CSMS_ROOT, certs.pem(renewed.cert), NOW, ROOM, True) == "Accepted"
    store.confirm_csms_root()
    assert store.roots(CSMS_ROOT) == [renewed.cert]


def test_csms_root_not_signed_by_the_old_one_is_rejected(store: CertStore) -> None:
    old = make_ca("CSMS Root 1")
    store.install(CSMS_ROOT, certs.pem(old.cert), NOW, ROOM, False)
    stranger = make_ca("CSMS Root 2")
    assert store.install(CSMS_ROOT, certs.pem(stranger.cert), NOW, ROOM, True) == "Rejected"
    assert store.roots(CSMS_ROOT) == [old.cert]
    # Without the check it is simply added.
    assert store.install(CSMS_ROOT, certs.pem(stranger.cert), NOW, ROOM, False) == "Accepted"
    assert store.roots(CSMS_ROOT) == [old.cert, stranger.cert]


def test_identical_csms_root_passes_the_check(store: CertStore) -> None:
    old = make_ca("CSMS Root 1")
    store.install(CSMS_ROOT, certs.pem(old.cert), NOW, ROOM, False)
    assert store.install(CSMS_ROOT, certs.pem(old.cert), NOW, ROOM, True) == "Accepted"
    assert store.roots(CSMS_ROOT) == [old.cert]


def test_expired_or_non_ca_successor_is_rejected(store: CertStore) -> None:
    old = make_ca("CSMS Root 1")
    store.install(CSMS_ROOT, certs.pem(old.cert), NOW, ROOM, False)
    key = ec_key()
    expired = make_cert(
        "New", key.public_key(), old, old.key, ca=True, not_before=NOW - 9 * DAY, not_after=NOW - DAY
    )
    leaf = make_cert("New", key.public_key(), old, old.key, ca=False)
    assert store.install(CSMS_ROOT, certs.pem(expired), NOW, ROOM, True) == "Rejected"
    assert store.install(CSMS_ROOT, certs.pem(leaf), NOW, ROOM, True) == "Rejected"


def test_csms_root_from_the_config_is_checked_but_kept(tmp_path: Path) -> None:
    old = make_ca("Config CSMS Root")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(certs.pem(old.cert))
    store = CertStore(tmp_path / "certs", {CSMS_ROOT: [ca_file]})
    assert store.install(CSMS_ROOT, certs.pem(make_ca("Stranger").cert), NOW, ROOM, True) == "Rejected"
    new = cross_signed(old)
    assert store.install(CSMS_ROOT, certs.pem(new.cert), NOW, ROOM, True) == "Accepted"
    store.confirm_csms_root()
    assert store.roots(CSMS_ROOT) == [old.cert, new.cert]


def test_no_csms_root_to_check_against_is_rejected(store: CertStore) -> None:
    assert store.install(CSMS_ROOT, certs.pem(make_ca().cert), NOW, ROOM, True) == "Rejected"


def test_check_applies_to_csms_roots_only(store: CertStore) -> None:
    assert store.install(MANUFACTURER, certs.pem(make_ca().cert), NOW, ROOM, True) == "Accepted"


# -- DeleteCertificate ------------------------------------------------------------------------


def test_delete_an_installed_root(store: CertStore, folder: Path) -> None:
    root = make_ca()
    store.install(MANUFACTURER, certs.pem(root.cert), NOW, ROOM, False)
    assert store.delete(certs.hash_data(root.cert)) == "Accepted"
    assert store.installed() == []
    assert files(folder) == []
    assert store.delete(certs.hash_data(root.cert)) == "NotFound"


def test_delete_accepts_upper_case_padded_and_other_algorithms(store: CertStore) -> None:
    first, second = make_ca("One"), make_ca("Two")
    for root in (first, second):
        store.install(MANUFACTURER, certs.pem(root.cert), NOW, ROOM, False)
    shouted = {key: value.upper() for key, value in certs.hash_data(first.cert).items()}
    shouted["serialNumber"] = "00" + shouted["serialNumber"]
    assert store.delete(shouted) == "Accepted"
    assert store.delete(certs.hash_data(second.cert, algorithm="SHA512")) == "Accepted"
    assert store.installed() == []


def test_delete_unknown_or_malformed_is_not_found(store: CertStore) -> None:
    root = make_ca()
    store.install(MANUFACTURER, certs.pem(root.cert), NOW, ROOM, False)
    assert store.delete(certs.hash_data(make_ca().cert)) == "NotFound"
    assert store.delete({**certs.hash_data(root.cert), "hashAlgorithm": "MD5"}) == "NotFound"
    assert store.delete({}) == "NotFound"
    assert len(store.installed()) == 1


def test_last_csms_root_is_kept_while_tls_uses_it(store: CertStore) -> None:
    first, second = make_ca("One"), make_ca("Two")
    for root in (first, second):
        store.install(CSMS_ROOT, certs.pem(root.cert), NOW, ROOM, False)
    assert store.delete(certs.hash_data(first.cert), protect_csms_root=True) == "Accepted"
    assert store.delete(certs.hash_data(second.cert), protect_csms_root=True) == "Failed"
    assert store.roots(CSMS_ROOT) == [second.cert]
    assert store.delete(certs.hash_data(second.cert)) == "Accepted"  # no TLS: it may go


def test_config_roots_are_listed_but_never_deleted(tmp_path: Path) -> None:
    csms_root, manufacturer_a, manufacturer_b = make_ca("CSMS"), make_ca("Maker A"), make_ca("Maker B")
    ca_file, signing_file = tmp_path / "ca.pem", tmp_path / "firmware-ca.pem"
    ca_file.write_text(certs.pem(csms_root.cert))
    signing_file.write_text(pem_of(manufacturer_a.cert, manufacturer_b.cert))
    store = CertStore(tmp_path / "certs", {CSMS_ROOT: [ca_file], MANUFACTURER: [signing_file]})
    assert store.roots(MANUFACTURER) == [manufacturer_a.cert, manufacturer_b.cert]
    assert store.installed([MANUFACTURER]) == [
        (MANUFACTURER, certs.hash_data(manufacturer_a.cert)),
        (MANUFACTURER, certs.hash_data(manufacturer_b.cert)),
    ]
    assert [use for use, _ in store.installed()] == [CSMS_ROOT, MANUFACTURER, MANUFACTURER]
    assert store.installed(["V2GRootCertificate"]) == []
    assert store.count() == 0  # the technician's files are not entries of the store
    assert store.delete(certs.hash_data(manufacturer_b.cert)) == "Failed"
    assert store.delete(certs.hash_data(csms_root.cert)) == "Failed"
    assert store.install(CSMS_ROOT, certs.pem(csms_root.cert), NOW, ROOM, False) == "Accepted"
    assert store.count() == 0  # already trusted: not a second copy


def test_config_intermediate_is_hashed_with_its_issuer(tmp_path: Path) -> None:
    root = make_ca("CSMS Root")
    intermediate = issue(root, "CSMS Sub CA", ca=True)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(pem_of(intermediate.cert, root.cert))
    store = CertStore(tmp_path / "certs", {CSMS_ROOT: [ca_file]})
    assert store.installed() == [
        (CSMS_ROOT, certs.hash_data(intermediate.cert, root.cert)),
        (CSMS_ROOT, certs.hash_data(root.cert)),
    ]


def test_unreadable_config_root_names_its_path(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(CertError, match=re.escape(str(garbage))):
        CertStore(tmp_path / "certs", {CSMS_ROOT: [garbage]})
    with pytest.raises(CertError, match="missing\\.pem"):
        CertStore(tmp_path / "certs", {CSMS_ROOT: [tmp_path / "missing.pem"]})


def test_the_station_certificate_and_its_chain_cannot_be_deleted(store: CertStore) -> None:
    root = make_ca("Station Root")
    intermediate = issue(root, "Station Sub CA", ca=True)
    leaf = sign_csr(intermediate, store.new_csr("CP001", "CPO"))
    store.accept_signed(pem_of(leaf, intermediate.cert), NOW)
    assert store.delete(certs.hash_data(leaf, intermediate.cert)) == "Failed"
    assert (
        store.delete(certs.hash_data(leaf, make_ca().cert, "SHA384")) == "Failed"
    )  # the key hash is not needed
    assert store.delete(certs.hash_data(intermediate.cert, root.cert)) == "Failed"
    assert store.station_certificate() is not None


# -- the station certificate (SignCertificate / CertificateSigned) ----------------------------


def test_csr_signed_by_a_ca_becomes_the_station_certificate(store: CertStore, folder: Path) -> None:
    csr_pem = store.new_csr("CP001", "Example CPO")
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.subject.rfc4514_string() == "O=Example CPO,CN=CP001"
    assert mode(folder / "pending.key") == 0o600
    ca = make_ca("CSMS Sub CA", rsa_key())
    leaf = sign_csr(ca, csr_pem)
    store.accept_signed(pem_of(leaf, ca.cert), NOW, max_bytes=10_000)
    assert not (folder / "pending.key").exists()
    paths = store.station_certificate()
    assert paths is not None
    chain_path, key_path = paths
    assert certs.load_certs(chain_path.read_bytes()) == [leaf, ca.cert]
    assert certs.load_key(key_path.read_bytes()).public_key() == csr.public_key()
    assert mode(chain_path) == mode(key_path) == 0o600
    ssl.create_default_context().load_cert_chain(chain_path, key_path)  # what the TLS code will do
    assert store.station_expiry() == leaf.not_valid_after_utc
    assert store.count() == 1


def test_certificate_for_another_key_is_refused(store: CertStore) -> None:
    store.new_csr("CP001", "CPO")
    other_csr = certs.make_csr(certs.generate_key(), "CP001", "CPO")
    with pytest.raises(CertError, match="not for the station's key"):
        store.accept_signed(certs.pem(sign_csr(make_ca(), other_csr)), NOW)
    assert store.station_certificate() is None


def test_certificate_without_a_pending_csr_is_refused(store: CertStore) -> None:
    with pytest.raises(CertError, match="no certificate signing request is pending"):
        store.accept_signed(certs.pem(_leaf()), NOW)


@pytest.mark.parametrize("chain", ["garbage", "expired", "too-big", "ca-leaf"], ids=lambda value: str(value))
def test_unusable_signed_certificate_is_refused_and_the_csr_stays_pending(
    store: CertStore, folder: Path, chain: str
) -> None:
    csr_pem = store.new_csr("CP001", "CPO")
    ca = make_ca("CA")
    leaf = sign_csr(ca, csr_pem)
    text, max_bytes = certs.pem(leaf), None
    if chain == "garbage":
        text = "not a certificate"
    elif chain == "expired":
        text = certs.pem(sign_csr(ca, csr_pem, days=-1, start=NOW - 9 * DAY))
    elif chain == "too-big":
        max_bytes = len(text) - 1
    else:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        text = certs.pem(make_cert("CP001", csr.public_key(), ca, ca.key, ca=True))  # type: ignore[arg-type]
    with pytest.raises(CertError):
        store.accept_signed(text, NOW, max_bytes)
    assert store.station_certificate() is None
    assert (folder / "pending.key").exists()
    store.accept_signed(certs.pem(leaf), NOW)  # the right answer still works afterwards


def test_renewal_replaces_certificate_and_key_together(store: CertStore, folder: Path) -> None:
    ca = make_ca("CA")
    store.accept_signed(certs.pem(sign_csr(ca, store.new_csr("CP001", "CPO"))), NOW)
    first = store.station_certificate()
    assert first is not None
    renewed = sign_csr(ca, store.new_csr("CP001", "CPO"), days=730)
    store.accept_signed(certs.pem(renewed), NOW)
    second = store.station_certificate()
    assert second is not None and second != first
    assert not first[0].exists() and not first[1].exists()  # the old generation is gone
    assert certs.load_certs(second[0].read_bytes()) == [renewed]
    assert certs.load_key(second[1].read_bytes()).public_key() == renewed.public_key()
    assert sorted(name for name in files(folder) if name.startswith("station")) == [
        "station",
        second[0].parent.name,
    ]


def test_interrupted_renewal_keeps_the_old_pair(
    store: CertStore, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = make_ca("CA")
    first = sign_csr(ca, store.new_csr("CP001", "CPO"))
    store.accept_signed(certs.pem(first), NOW)
    csr_pem = store.new_csr("CP001", "CPO")
    real_symlink = os.symlink

    def power_cut(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "symlink", power_cut)
    with pytest.raises(CertError, match=re.escape(str(folder))):
        store.accept_signed(certs.pem(sign_csr(ca, csr_pem)), NOW)
    monkeypatch.setattr(os, "symlink", real_symlink)
    assert (
        len([name for name in files(folder) if name.startswith("station.")]) == 1
    )  # the half-made one is gone
    for current in (store, CertStore(folder)):
        paths = current.station_certificate()
        assert paths is not None
        assert certs.load_certs(paths[0].read_bytes()) == [first]
        assert certs.load_key(paths[1].read_bytes()).public_key() == first.public_key()


def test_store_certificate_wins_over_the_config_while_valid(store: CertStore, tmp_path: Path) -> None:
    config_pair = (tmp_path / "client.pem", tmp_path / "client.key")
    assert store.station_certificate(*config_pair) == config_pair
    assert store.station_certificate() is None
    assert store.station_expiry() is None
    leaf = sign_csr(make_ca(), store.new_csr("CP001", "CPO"), days=30)
    store.accept_signed(certs.pem(leaf), NOW)
    ours = store.station_certificate()
    assert ours is not None and ours != config_pair
    assert store.station_certificate(*config_pair, now=NOW) == ours
    later = NOW + 31 * DAY
    assert store.station_certificate(*config_pair, now=later) == config_pair
    assert store.station_certificate(now=later) == ours  # nothing better to offer


def test_key_material_is_never_logged(store: CertStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    csr_pem = store.new_csr("CP001", "CPO")
    store.accept_signed(certs.pem(sign_csr(make_ca(), csr_pem)), NOW)
    paths = store.station_certificate()
    assert paths is not None
    key_body = b"".join(paths[1].read_bytes().splitlines()[1:-1]).decode()
    assert "PRIVATE KEY" not in caplog.text
    assert key_body[:40] not in caplog.text
    assert "station certificate installed" in caplog.text


def test_station_certificate_is_an_entry_but_not_a_root(store: CertStore) -> None:
    store.accept_signed(certs.pem(sign_csr(make_ca(), store.new_csr("CP001", "CPO"))), NOW)
    assert store.installed() == []  # GetInstalledCertificateIds lists roots
    assert store.count() == 1


def test_a_tls_connection_needs_no_certificate_parsed(tmp_path: Path, folder: Path) -> None:
    config_root, installed = make_ca("Config CSMS Root"), make_ca("Installed CSMS Root")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("# the CSMS's root\n" + certs.pem(config_root.cert))
    CertStore(folder).install(CSMS_ROOT, certs.pem(installed.cert), NOW, ROOM, False)
    store = CertStore(folder, {CSMS_ROOT: [ca_file]})
    pem = store.roots_pem(CSMS_ROOT)
    assert store.count() == 1
    store.confirm_csms_root()
    assert store._parsed is None  # what a connection uses, without cryptography
    assert {c.fingerprint(hashes.SHA256()) for c in certs.load_certs(pem)} == {
        c.fingerprint(hashes.SHA256()) for c in store.roots(CSMS_ROOT)
    }
    assert store._parsed is not None and store.roots_pem(CSMS_ROOT).count("BEGIN CERTIFICATE") == 2


@pytest.mark.parametrize(
    "text",
    ["", "not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"],
    ids=["empty", "garbage", "bad-body"],
)
def test_a_bad_config_root_stops_the_store_at_once(tmp_path: Path, text: str) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(text)
    with pytest.raises(CertError, match=r"ca\.pem"):
        CertStore(tmp_path / "certs", {CSMS_ROOT: [ca_file]})
    with pytest.raises(CertError, match="No such file"):
        CertStore(tmp_path / "certs", {CSMS_ROOT: [tmp_path / "missing.pem"]})


def test_a_config_root_may_carry_any_text_around_its_certificate(tmp_path: Path, folder: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("# Főtanúsítvány: the CSMS's root\n" + certs.pem(make_ca().cert), encoding="utf-8")
    assert CertStore(folder, {CSMS_ROOT: [ca_file]}).roots_pem(CSMS_ROOT).count("BEGIN CERTIFICATE") == 1


def test_a_corrupt_stored_root_is_skipped_not_fatal_to_tls(folder: Path) -> None:
    good = make_ca("Good")
    CertStore(folder).install(CSMS_ROOT, certs.pem(good.cert), NOW, ROOM, False)
    (folder / f"{CSMS_ROOT}.{'0' * 64}.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    pem = CertStore(folder).roots_pem(CSMS_ROOT)
    ssl.create_default_context(cadata=pem)  # usable as it is
    assert [c.subject for c in certs.load_certs(pem)] == [good.cert.subject]


def test_lazy_modules_import_once_whichever_thread_asks_first() -> None:
    from controller.lazy import lazy_module

    module = lazy_module("controller.security.certerrors")
    with ThreadPoolExecutor(8) as pool:
        found = set(pool.map(lambda _: module.CertError, range(32)))
    assert found == {CertError}
