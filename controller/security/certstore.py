"""The station's certificate store: root certificates the CSMS installed, the station's own
client certificate and key, and the key of a pending certificate signing request.

Everything lives in one folder (mode 0700); every file is written to a temporary file with
mode 0600, fsynced and renamed into place, so a power cut leaves the old file or the new
one. Layout:

    <Type>.<sha256>.pem            a root the CSMS installed (Type: a 2.0.1 certificate use)
    <Type>.<sha256>.fallback.pem   a CSMS root replaced under AdditionalRootCertificateCheck,
                                   still trusted until ``confirm_csms_root()``
    pending.key                    the key of the last CSR, until CertificateSigned arrives
    station -> station.<random>/   symlink to the live generation: station.pem (chain, leaf
                                   first) and station.key; swapping the link replaces
                                   certificate and key together

Roots named by the config (``ocpp.ca_file``, ``firmware.signing_ca_file``) are trusted too
but belong to the technician: they are read, never written or deleted.

Certificates are parsed (with ``cryptography``) only when something needs one parsed: a
TLS connection only needs the roots' PEM text, so a station that never handles a
certificate never loads ``cryptography`` (9 MB). The config's roots are checked with the
``ssl`` module at start, so a bad ``ca_file`` still stops the daemon with a clear error.

Key material is never logged.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import secrets
import shutil
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from controller.lazy import lazy_module
from controller.security.certerrors import CertError

if TYPE_CHECKING:
    from cryptography import x509

    from controller.security import certs
else:
    certs = lazy_module("controller.security.certs")

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

CSMS_ROOT = "CSMSRootCertificate"
CERT_TYPES = (CSMS_ROOT, "ManufacturerRootCertificate", "V2GRootCertificate", "MORootCertificate")

_FALLBACK = "fallback"
_PENDING_KEY = "pending.key"
_STATION = "station"
_CHAIN = "station.pem"
_KEY = "station.key"
_TMP = ".tmp-"
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]*-----END CERTIFICATE-----")


@dataclass(frozen=True)
class RootFile:
    """A file of trusted roots, not parsed yet."""

    cert_type: str
    path: Path
    origin: str  # "config", "store" or "fallback"


@dataclass(frozen=True)
class Root:
    cert_type: str
    cert: x509.Certificate
    path: Path
    origin: str  # "config", "store" or "fallback"


def _serialized(method: Callable[Concatenate[CertStore, P], T]) -> Callable[Concatenate[CertStore, P], T]:
    """One change at a time: the daemon calls the store from worker threads."""

    @functools.wraps(method)
    def run(self: CertStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self._lock:
            return method(self, *args, **kwargs)

    return run


class CertStore:
    def __init__(self, folder: Path, config_roots: Mapping[str, list[Path]] | None = None) -> None:
        self.folder = folder
        self._lock = threading.RLock()
        _guard(folder, _make_private_dir, folder)
        self._config_files = [
            RootFile(cert_type, path, "config")
            for cert_type, paths in (config_roots or {}).items()
            for path in paths
        ]
        for root_file in self._config_files:
            _check_pem_file(root_file.path)
        self._stored_files = self._scan()
        self._parsed: tuple[list[Root], list[Root]] | None = None

    @property
    def _config(self) -> list[Root]:
        return self._roots()[0]

    @property
    def _stored(self) -> list[Root]:
        """The roots on disk, parsed; changes to it are the store's record from then on."""
        return self._roots()[1]

    def _roots(self) -> tuple[list[Root], list[Root]]:
        with self._lock:
            if self._parsed is None:
                parsed: tuple[list[Root], list[Root]] = ([], [])
                for files, roots in ((self._config_files, parsed[0]), (self._stored_files, parsed[1])):
                    for f in files:
                        try:
                            roots += [
                                Root(f.cert_type, cert, f.path, f.origin) for cert in _read_certs(f.path)
                            ]
                        except CertError as exc:  # a config root was checked with ssl at start only
                            log.error("skipped an unreadable %s certificate: %s", f.origin, exc)
                self._parsed = parsed
            return self._parsed

    # -- roots -----------------------------------------------------------------------------

    @_serialized
    def install(
        self, cert_type: str, pem: str, now: datetime, max_entries: int, additional_root_check: bool
    ) -> str:
        """InstallCertificate: "Accepted", "Rejected" or "Failed" (store full, disk error)."""
        if cert_type not in CERT_TYPES:
            log.warning("certificate of unknown type %r rejected", cert_type)
            return "Rejected"
        try:
            found = certs.load_certs(pem)
        except CertError as exc:
            log.warning("%s rejected: %s", cert_type, exc)
            return "Rejected"
        if len(found) != 1:
            log.warning("%s rejected: %d certificates sent, one expected", cert_type, len(found))
            return "Rejected"
        cert = found[0]
        if any(root.cert == cert for root in self._current(cert_type)):
            return "Accepted"
        replaced: list[Root] = []
        try:
            if additional_root_check and cert_type == CSMS_ROOT:
                replaced = [root for root in self._stored if root.cert_type == CSMS_ROOT]
                self._check_successor(cert, replaced or self._of(self._config, CSMS_ROOT), now)
            else:
                certs.check_root(cert, now)
        except CertError as exc:
            log.warning("%s %s rejected: %s", cert_type, certs.describe(cert), exc)
            return "Rejected"
        if len(replaced) == 0 and self.count() >= max_entries:
            log.warning(
                "%s %s: certificate store full (%d entries)", cert_type, certs.describe(cert), max_entries
            )
            return "Failed"
        path = self.folder / f"{cert_type}.{certs.fingerprint(cert)}.pem"
        try:
            _guard(path, _write_atomic, path, certs.pem(cert).encode("ascii"))
        except CertError as exc:
            log.error("%s %s not installed: %s", cert_type, certs.describe(cert), exc)
            return "Failed"
        self._stored.append(Root(cert_type, cert, path, "store"))
        log.info("%s installed: %s (%s)", cert_type, certs.describe(cert), certs.fingerprint(cert)[:16])
        for old in replaced:
            self._keep_as_fallback(old)
        return "Accepted"

    @_serialized
    def confirm_csms_root(self) -> None:
        """The new CSMS root worked (a TLS connection succeeded): drop the fallback roots.

        A disk error leaves a fallback in place (logged): it goes at the next confirmation.
        """
        if self._parsed is None and not any(f.origin == _FALLBACK for f in self._stored_files):
            return  # nothing to drop, and nothing that needs parsing
        for root in [root for root in self._stored if root.origin == _FALLBACK]:
            try:
                _guard(root.path, _unlink, root.path)
            except CertError as exc:
                log.error("fallback %s not removed: %s", root.cert_type, exc)
                continue
            self._stored.remove(root)
            log.info("fallback %s removed: %s", root.cert_type, certs.describe(root.cert))

    @_serialized
    def delete(self, hash_data: Mapping[str, Any], protect_csms_root: bool = False) -> str:
        """DeleteCertificate: "Accepted", "Failed" or "NotFound".

        Failed for the station's own chain, a root from the config, and (with
        protect_csms_root, while TLS depends on it) the last CSMS root.
        """
        if self._is_station_certificate(hash_data):
            log.warning("refused to delete the station's own certificate")
            return "Failed"
        if any(certs.hash_matches(root.cert, self._issuer(root.cert), hash_data) for root in self._config):
            log.warning("refused to delete a root certificate named by the config file")
            return "Failed"
        doomed = [
            root for root in self._stored if certs.hash_matches(root.cert, self._issuer(root.cert), hash_data)
        ]
        if not doomed:
            return "NotFound"
        left = [root for root in self._all(CSMS_ROOT) if root not in doomed]
        if protect_csms_root and not left and any(root.cert_type == CSMS_ROOT for root in doomed):
            log.warning("refused to delete the last CSMS root certificate while TLS uses it")
            return "Failed"
        for root in doomed:
            try:
                _guard(root.path, _unlink, root.path)
            except CertError as exc:
                log.error("certificate not deleted: %s", exc)
                return "Failed"
            self._stored.remove(root)
            log.info("%s deleted: %s", root.cert_type, certs.describe(root.cert))
        return "Accepted"

    def installed(self, types: list[str] | None = None) -> list[tuple[str, dict[str, str]]]:
        """(type, CertificateHashData) of every root, the config's included."""
        seen: set[tuple[str, str]] = set()
        result = []
        for root in self._config + self._stored:
            key = (root.cert_type, certs.fingerprint(root.cert))
            if (types is None or root.cert_type in types) and key not in seen:
                seen.add(key)
                result.append((root.cert_type, certs.hash_data(root.cert, self._issuer(root.cert))))
        return result

    def roots(self, cert_type: str) -> list[x509.Certificate]:
        """Every trusted root of a type: config, installed and fallback."""
        unique: dict[str, x509.Certificate] = {}
        for root in self._all(cert_type):
            unique.setdefault(certs.fingerprint(root.cert), root.cert)
        return list(unique.values())

    def roots_pem(self, cert_type: str) -> str:
        """The PEM text of every trusted root of a type (for an ``ssl`` context)."""
        with self._lock:
            if self._parsed is not None:
                return "".join(certs.pem(cert) for cert in self.roots(cert_type))
            files = [f for f in self._config_files + self._stored_files if f.cert_type == cert_type]
            blocks = [block for f in files for block in _usable_pem(f.path)]
            return "".join(block + "\n" for block in dict.fromkeys(blocks))

    def count(self) -> int:
        """Installed entries for CertificateStoreMaxLength: roots the CSMS installed + station certificate."""
        with self._lock:
            if self._parsed is None:
                stored = sum(1 for f in self._stored_files if f.origin == "store")
            else:
                stored = sum(1 for root in self._stored if root.origin == "store")
        return stored + (1 if self._station_dir() is not None else 0)

    # -- the station's own certificate ------------------------------------------------------

    @_serialized
    def new_csr(self, common_name: str, organization: str) -> str:
        """A fresh key (kept as the pending key) and its PEM CSR for SignCertificate."""
        key = certs.generate_key()
        path = self.folder / _PENDING_KEY
        _guard(path, _write_atomic, path, certs.key_pem(key))
        return certs.make_csr(key, common_name, organization)

    @_serialized
    def accept_signed(self, chain_pem: str, now: datetime, max_bytes: int | None = None) -> None:
        """CertificateSigned: check the chain against the pending key, then make it live."""
        chain = certs.load_certs(chain_pem)
        path = self.folder / _PENDING_KEY
        try:
            key_pem = path.read_bytes()
        except FileNotFoundError:
            raise CertError(
                "no certificate signing request is pending (no key waits for a certificate)"
            ) from None
        except OSError as exc:
            raise CertError(f"{path}: {exc.strerror or exc}") from exc
        certs.check_client_chain(chain, certs.load_key(key_pem), now, max_bytes)
        chain_bytes = "".join(certs.pem(cert) for cert in chain).encode("ascii")
        _guard(self.folder, self._make_live, chain_bytes, key_pem)
        _guard(path, _unlink, path)
        log.info(
            "station certificate installed: %s, valid until %s",
            certs.describe(chain[0]),
            chain[0].not_valid_after_utc.isoformat(),
        )

    def station_certificate(
        self, config_cert: Path | None = None, config_key: Path | None = None, now: datetime | None = None
    ) -> tuple[Path, Path] | None:
        """(chain, key) for TLS: the store's certificate when valid, else the config's files.

        An expired store certificate is still returned when the config names none: the
        CSMS then refuses it, which tells the technician more than no certificate at all.
        """
        live = self._station_dir()
        stored = (live / _CHAIN, live / _KEY) if live is not None else None
        chain = self._station_chain()
        if stored is not None and chain:
            try:
                certs.check_validity(chain[0], now or datetime.now(UTC))
                return stored
            except CertError as exc:
                log.warning("station certificate from the CSMS not used: %s", exc)
        if config_cert is not None and config_key is not None:
            return config_cert, config_key
        return stored

    def station_expiry(self) -> datetime | None:
        chain = self._station_chain()
        return chain[0].not_valid_after_utc if chain else None

    # -- internals --------------------------------------------------------------------------

    def _check_successor(self, cert: x509.Certificate, old_roots: list[Root], now: datetime) -> None:
        """AdditionalRootCertificateCheck: the new CSMS root is signed with an old root's key."""
        if not old_roots:
            raise CertError("no CSMS root installed to check the new one against (set ocpp.ca_file)")
        if not certs.is_ca(cert):
            raise CertError(f"certificate {certs.describe(cert)} is not a CA certificate")
        certs.check_validity(cert, now)
        if not any(certs.verifies_with(cert, old.cert.public_key()) for old in old_roots):
            raise CertError(f"certificate {certs.describe(cert)} is not signed by the installed CSMS root")

    def _keep_as_fallback(self, root: Root) -> None:
        path = root.path.with_name(f"{root.cert_type}.{certs.fingerprint(root.cert)}.{_FALLBACK}.pem")
        try:
            _guard(path, os.replace, root.path, path)
            _guard(self.folder, _fsync_dir, self.folder)
        except CertError as exc:
            log.error("old CSMS root kept as an installed root: %s", exc)
            return
        self._stored.remove(root)
        self._stored.append(Root(root.cert_type, root.cert, path, _FALLBACK))

    def _current(self, cert_type: str) -> list[Root]:
        return [root for root in self._all(cert_type) if root.origin != _FALLBACK]

    def _all(self, cert_type: str) -> list[Root]:
        return self._of(self._config + self._stored, cert_type)

    @staticmethod
    def _of(roots: list[Root], cert_type: str) -> list[Root]:
        return [root for root in roots if root.cert_type == cert_type]

    def _issuer(self, cert: x509.Certificate) -> x509.Certificate | None:
        """The issuer for hash data: None (itself) for a root, else a known root that signed it."""
        if cert.issuer == cert.subject:
            return None
        pool = [root.cert for root in self._config + self._stored]
        return next((issuer for issuer in pool if certs.signed_by(cert, issuer)), None)

    def _is_station_certificate(self, wanted: Mapping[str, Any]) -> bool:
        # The issuer name and serial identify a certificate (RFC 5280 4.1.2.2); the issuer of
        # the station's top certificate may be unknown here, so its key hash is not compared.
        algorithm = wanted.get("hashAlgorithm")
        if not isinstance(algorithm, str) or algorithm.upper() not in certs.HASH_ALGORITHMS:
            return False
        for cert in self._station_chain():
            ours = certs.hash_data(cert, None, algorithm)
            if certs.same_hash(ours, {**wanted, "issuerKeyHash": ours["issuerKeyHash"]}):
                return True
        return False

    def _station_dir(self) -> Path | None:
        link = self.folder / _STATION
        if not link.is_symlink():
            return None
        live = Path(os.path.realpath(link))
        return live if (live / _CHAIN).is_file() and (live / _KEY).is_file() else None

    def _station_chain(self) -> list[x509.Certificate]:
        live = self._station_dir()
        if live is None:
            return []
        try:
            return _read_certs(live / _CHAIN)
        except CertError as exc:
            log.error("station certificate unreadable: %s", exc)
            return []

    def _make_live(self, chain: bytes, key: bytes) -> None:
        old = self._station_dir()
        generation = self.folder / f"{_STATION}.{secrets.token_hex(8)}"
        link = self.folder / f"{_TMP}{_STATION}-{secrets.token_hex(4)}"
        try:
            _make_private_dir(generation)
            _write_atomic(generation / _CHAIN, chain)
            _write_atomic(generation / _KEY, key)
            os.symlink(generation.name, link)
            os.replace(link, self.folder / _STATION)
        except BaseException:
            _remove(link)
            _remove(generation)
            raise
        _fsync_dir(self.folder)
        if old is not None and old != generation:
            shutil.rmtree(old, ignore_errors=True)

    def _scan(self) -> list[RootFile]:
        """The root files on disk; leftovers of an interrupted write are removed."""
        live = self._station_dir()
        found: list[RootFile] = []
        for path in sorted(_guard(self.folder, list, self.folder.iterdir())):
            name = path.name
            if name.startswith(_TMP) or (
                name.startswith(f"{_STATION}.") and path.is_dir() and not path.is_symlink() and path != live
            ):
                _remove(path)
                continue
            parts = name.split(".")
            if len(parts) not in (3, 4) or parts[0] not in CERT_TYPES or parts[-1] != "pem":
                continue
            origin = _FALLBACK if len(parts) == 4 and parts[2] == _FALLBACK else "store"
            found.append(RootFile(parts[0], path, origin))
        return found


def _check_pem_file(path: Path) -> None:
    """A readable file of PEM certificates OpenSSL accepts, else CertError naming it."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")  # comments may be any text
    except OSError as exc:
        raise CertError(f"{path}: {exc.strerror or exc}") from exc
    if not _PEM_CERT.search(text):
        raise CertError(f"{path}: no PEM certificate in it")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except (ssl.SSLError, ValueError) as exc:
        raise CertError(f"{path}: not a usable certificate: {exc}") from exc


def _usable_pem(path: Path) -> list[str]:
    """The PEM certificate blocks of a root file, if OpenSSL accepts them; none (logged) if not."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        log.error("root certificate unreadable: %s: %s", path, exc.strerror or exc)
        return []
    blocks = _PEM_CERT.findall(text)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata="\n".join(blocks))
    except (ssl.SSLError, ValueError) as exc:
        log.error("skipped an unusable root certificate file %s: %s", path, exc)
        return []
    return blocks


def _read_certs(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CertError(f"{path}: {exc.strerror or exc}") from exc
    try:
        return certs.load_certs(data)
    except CertError as exc:
        raise CertError(f"{path}: {exc}") from exc


def _guard(path: Path, action: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a disk action; an OSError becomes a CertError naming the path."""
    try:
        return action(*args, **kwargs)
    except OSError as exc:
        raise CertError(f"{path}: {exc.strerror or exc}") from exc


def _make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # mkdir's mode is masked by the umask, and the folder may predate us


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{_TMP}{path.name}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
