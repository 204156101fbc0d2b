"""Secure (signed) firmware update end to end, OCPP 1.6 (Security Whitepaper SignedUpdateFirmware)
and OCPP 2.0.1 (UpdateFirmware with a signature, use case L01).

A real daemon subprocess on simulated hardware, the development CSMS, a local HTTP file server
for the image, and a throw-away PKI made at test time (tests/pki.py): the station trusts a
manufacturer root (firmware.signing_ca_file), and firmware.install_command is a shell hook that
records what it was asked to do. The hook's files tell what ran:

- hook.log: one line per install (the image path); installed.bin: a copy of the image;
- hook.steps: one line per ``--commit`` / ``--rollback``.

The OCTT ids are those of the OCPP 1.6 Compliancy Testing Tool (TC_080_CS, TC_081_CS) and of
OCPP 2.0.1 Part 6 (TC_L_xx_CS); most tests run for both versions.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from controller.security import certs
from hil.csms import CallErrorReply, CsmsThread, describe
from hil.pki import Authority, Pki, PrivateKey
from hil.simrig import SimRig
from tests.ocpp_harness import Bench, eventually, make_bench

VERSIONS = pytest.mark.parametrize("version", ["1.6", "2.0.1"])
IMAGE = b"PiCharger firmware 2.0\n" + bytes(range(256)) * 40
# The restart into the new firmware re-executes the daemon: allow it a little time.
INSTALL_TIMEOUT_S = 25
HOOK = """\
#!/bin/sh
case "$1" in
  --*) echo "$1" >> "{steps}"; if [ "$1" = --commit ]; then exit {commit}; fi; exit 0;;
esac
echo "$1" >> "{record}"
cp "$1" "{copy}"
exit {code}
"""


# -- the file server ---------------------------------------------------------------------------


@dataclass
class ImageServer:
    """Serves files from a dict (path -> bytes); the first ``failures`` GETs answer HTTP 500;
    a path in ``stall`` sends half its body, waits that many seconds, then the rest."""

    files: dict[str, bytes] = field(default_factory=dict)
    gets: list[str] = field(default_factory=list)
    failures: int = 0
    stall: dict[str, float] = field(default_factory=dict)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.gets.append(self.path)
                if len(owner.gets) <= owner.failures:
                    self.send_error(500)
                    return
                data = owner.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                half = len(data) // 2 if self.path in owner.stall else len(data)
                try:
                    self.wfile.write(data[:half])
                    self.wfile.flush()
                    time.sleep(owner.stall.get(self.path, 0.0))
                    self.wfile.write(data[half:])
                except OSError:
                    pass  # the station hung up

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[CsmsThread]:
    """A development CSMS for both versions: the station's ocpp.version decides."""
    with CsmsThread(quiet=True, versions=("1.6", "2.0.1")) as running:
        yield running


@pytest.fixture
def files() -> Iterator[ImageServer]:
    running = ImageServer()
    running.start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def show_timeline(server: CsmsThread, tmp_path: Path) -> Iterator[None]:
    """Print the CSMS timeline and the daemon log's tail: pytest shows them for a failed test."""
    yield
    print("\n".join(f"{e.t:10.3f} {describe(e)}" for e in server.timeline))
    log = tmp_path / "daemon.log"
    if log.exists():
        print("--- daemon.log (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-60:]))


@dataclass
class Station:
    """A booted station that trusts ``root`` for firmware, with its hook's record files."""

    bench: Bench
    version: str
    pki: Pki
    root: Authority
    dir: Path

    @property
    def hook_log(self) -> Path:
        return self.dir / "hook.log"

    @property
    def steps(self) -> Path:
        return self.dir / "hook.steps"

    @property
    def installed(self) -> Path:
        return self.dir / "installed.bin"

    @property
    def image(self) -> Path:
        """Where the daemon downloads the image to (never a name from the CSMS)."""
        return self.dir / "var" / "firmware" / "firmware.bin"

    @property
    def notification(self) -> str:
        return "SignedFirmwareStatusNotification" if self.version == "1.6" else "FirmwareStatusNotification"

    def steps_run(self) -> list[str]:
        return self.steps.read_text().split() if self.steps.exists() else []


@pytest.fixture
def station(tmp_path: Path, server: CsmsThread) -> Iterator[Callable[..., Station]]:
    """``station(version, hook_exit=0, commit_exit=0, evses=1, signing_ca=True)`` starts a station
    with the recording hook as firmware.install_command and (unless ``signing_ca`` is False) a
    manufacturer root in firmware.signing_ca_file."""
    started: list[Bench] = []

    def start(
        version: str, hook_exit: int = 0, commit_exit: int = 0, evses: int = 1, signing_ca: bool = True
    ) -> Station:
        pki = Pki(tmp_path / "pki")
        root = pki.ca("Manufacturer Root")
        hook = tmp_path / "install.sh"
        hook.write_text(
            HOOK.format(
                steps=tmp_path / "hook.steps",
                record=tmp_path / "hook.log",
                copy=tmp_path / "installed.bin",
                code=hook_exit,
                commit=commit_exit,
            )
        )
        hook.chmod(0o755)
        extra = f'[firmware]\ninstall_command = "{hook}"\n'
        if signing_ca:
            extra += f'signing_ca_file = "{root.pem_path}"\n'
        bench = make_bench(tmp_path, server, version=version, evses=evses, extra=extra)
        started.append(bench)
        bench.start()
        return Station(bench, version, pki, root, tmp_path)

    yield start
    for bench in started:
        if bench.proc is not None and bench.proc.poll() is None:
            bench.kill()


# -- helpers -----------------------------------------------------------------------------------


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso(offset_s: float = 0.0) -> str:
    return iso(datetime.now(UTC) + timedelta(seconds=offset_s))


def sign(tmp_path: Path, data: bytes, key: PrivateKey, scheme: str | None = None) -> str:
    """The base64 signature of ``data`` as the manufacturer's tool makes it."""
    path = tmp_path / "to-sign.bin"
    path.write_bytes(data)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return base64.b64encode(key.sign(data)).decode("ascii")
    return certs.sign_firmware(path, key, scheme)


def signed_by_root(st: Station, key: str = "rsa", scheme: str | None = None) -> tuple[str, str]:
    """(signing certificate PEM, signature of IMAGE) from a certificate the station's root issued."""
    cert, private = st.pki.signing_cert(st.root, key=key)  # type: ignore[arg-type]
    return cert, sign(st.dir, IMAGE, private, scheme)


def update(
    st: Station,
    request_id: int,
    location: str,
    cert: str | None,
    signature: str | None,
    install_at: str | None = None,
    retrieve_at: str | None = None,
    **top: Any,
) -> dict[str, Any]:
    """SignedUpdateFirmware (1.6) or UpdateFirmware (2.0.1); returns the reply."""
    firmware: dict[str, Any] = {"location": location, "retrieveDateTime": retrieve_at or now_iso()}
    if cert is not None:
        firmware["signingCertificate"] = cert
    if signature is not None:
        firmware["signature"] = signature
    if install_at is not None:
        firmware["installDateTime"] = install_at
    action = "SignedUpdateFirmware" if st.version == "1.6" else "UpdateFirmware"
    return st.bench.call(action, {"requestId": request_id, "firmware": firmware, **top})


def notes(st: Station, after: int) -> list[dict[str, Any]]:
    """The firmware status notifications the station sent since ``after``."""
    return [
        e.payload
        for e in st.bench.csms.timeline[after:]
        if e.kind == "call" and e.direction == "in" and e.action == st.notification
    ]  # type: ignore[misc]


def statuses(st: Station, after: int) -> list[str]:
    return [n["status"] for n in notes(st, after)]


def wait_status(st: Station, status: str, after: int, timeout: float = 10) -> dict[str, Any]:
    return st.bench.wait(st.notification, lambda p: p["status"] == status, timeout=timeout, after=after)


def security_event(st: Station, kind: str, after: int, timeout: float = 10) -> dict[str, Any]:
    return st.bench.wait("SecurityEventNotification", lambda p: p["type"] == kind, timeout, after)


def security_events(st: Station, after: int) -> list[str]:
    return [
        e.payload["type"]  # type: ignore[index]
        for e in st.bench.csms.timeline[after:]
        if e.kind == "call" and e.direction == "in" and e.action == "SecurityEventNotification"
    ]


def security_log(st: Station) -> list[str]:
    path = st.dir / "var" / "security.log"
    return [json.loads(line)["type"] for line in path.read_text().splitlines()] if path.exists() else []


def trigger_firmware_status(st: Station) -> dict[str, Any]:
    """ExtendedTriggerMessage (1.6) / TriggerMessage (2.0.1) FirmwareStatusNotification: the
    notification it brings."""
    action = "ExtendedTriggerMessage" if st.version == "1.6" else "TriggerMessage"
    mark = st.bench.mark()
    reply = st.bench.call(action, {"requestedMessage": "FirmwareStatusNotification"})
    assert reply["status"] == "Accepted", reply
    return st.bench.wait(st.notification, after=mark)


def reconnect_rig(st: Station) -> None:
    """The daemon re-executed itself in place: connect to its new rig socket."""
    if st.bench.rig is not None:
        st.bench.rig.close()
    st.bench.rig = SimRig.wait_for(st.dir / "var" / "sim.sock")


def boots(st: Station, after: int) -> list[dict[str, Any]]:
    return [
        e.payload  # type: ignore[misc]
        for e in st.bench.csms.timeline[after:]
        if e.kind == "call" and e.direction == "in" and e.action == "BootNotification"
    ]


INSTALLED = ["Downloading", "Downloaded", "SignatureVerified", "Installing", "InstallRebooting", "Installed"]


def assert_installed(
    st: Station, request_id: int, mark: int, pid: int | None, sequence: list[str] = INSTALLED
) -> None:
    """The whole good sequence, each with the request's id; the hook ran once, then --commit."""
    assert statuses(st, mark) == sequence
    assert all(n.get("requestId") == request_id for n in notes(st, mark)), notes(st, mark)
    assert st.hook_log.read_text().split() == [str(st.image)]
    assert st.installed.read_bytes() == IMAGE
    assert st.steps_run() == ["--commit"]
    # Restarted in place (same process), booted again, then said Installed.
    bench = st.bench
    assert bench.proc is not None and bench.proc.poll() is None and bench.proc.pid == pid
    assert len(boots(st, mark)) == 1
    if st.version == "2.0.1":
        assert boots(st, mark)[0]["reason"] == "FirmwareUpdate"
    order = [
        "boot" if e.action == "BootNotification" else e.payload["status"]  # type: ignore[index]
        for e in bench.csms.timeline[mark:]
        if e.kind == "call" and e.direction == "in" and e.action in ("BootNotification", st.notification)
    ]
    assert order[-3:] == ["InstallRebooting", "boot", "Installed"], order
    security_event(st, "FirmwareUpdated", mark)
    assert "ResetOrReboot" in security_log(st)
    reconnect_rig(st)
    assert bench.sim().status(1)["ocpp_connected"]


def assert_refused_at_once(st: Station, files: ImageServer, reply: dict[str, Any], mark: int) -> None:
    """InvalidCertificate: the security event, and nothing downloaded, nothing run."""
    assert reply["status"] == "InvalidCertificate", reply
    event = security_event(st, "InvalidFirmwareSigningCertificate", mark)
    assert event["techInfo"]
    assert files.gets == []
    assert notes(st, mark) == []
    assert not st.hook_log.exists()
    assert not st.image.exists()


def assert_invalid_signature(st: Station, files: ImageServer, request_id: int, mark: int) -> dict[str, Any]:
    """Downloaded, then InvalidSignature + InvalidFirmwareSignature; image deleted, hook never ran."""
    wait_status(st, "InvalidSignature", mark)
    event = security_event(st, "InvalidFirmwareSignature", mark)
    assert statuses(st, mark) == ["Downloading", "Downloaded", "InvalidSignature"]
    assert all(n.get("requestId") == request_id for n in notes(st, mark)), notes(st, mark)
    assert files.gets == ["/fw.bin"]
    assert not st.image.exists()
    assert not st.hook_log.exists() and not st.steps.exists()
    assert "InvalidFirmwareSignature" in security_log(st)
    return event


# -- good signatures ---------------------------------------------------------------------------


@VERSIONS
@pytest.mark.parametrize(
    ("key", "scheme"), [("rsa", "RSA-PSS"), ("rsa", "RSA-PKCS1v15"), ("ec", "ECDSA")], ids=str
)
def test_tc_080_tc_l_01_secure_firmware_update_installed(
    station: Callable[..., Station], files: ImageServer, version: str, key: str, scheme: str
) -> None:
    st = station(version)
    files.files["/fw.bin"] = IMAGE
    cert, signature = signed_by_root(st, key, scheme)
    pid = st.bench.proc.pid if st.bench.proc else None
    mark = st.bench.mark()
    assert update(st, 41, f"{files.url}/fw.bin", cert, signature)["status"] == "Accepted"
    wait_status(st, "Installed", mark, timeout=INSTALL_TIMEOUT_S)
    assert_installed(st, 41, mark, pid)
    assert "InvalidFirmwareSignature" not in security_events(st, mark)


# -- bad signatures ----------------------------------------------------------------------------


@VERSIONS
def test_tc_081_tc_l_06_secure_firmware_update_tampered_image_invalid_signature(
    station: Callable[..., Station], files: ImageServer, version: str
) -> None:
    st = station(version)
    cert, signature = signed_by_root(st)
    files.files["/fw.bin"] = IMAGE[:-1] + bytes([IMAGE[-1] ^ 1])  # one bit changed
    mark = st.bench.mark()
    assert update(st, 42, f"{files.url}/fw.bin", cert, signature)["status"] == "Accepted"
    event = assert_invalid_signature(st, files, 42, mark)
    assert "does not match" in event["techInfo"]


@VERSIONS
def test_tc_081_tc_l_06_secure_firmware_update_tampered_signature_invalid_signature(
    station: Callable[..., Station], files: ImageServer, version: str
) -> None:
    st = station(version)
    files.files["/fw.bin"] = IMAGE
    cert, signature = signed_by_root(st)
    raw = bytearray(base64.b64decode(signature))
    raw[len(raw) // 2] ^= 0x40
    mark = st.bench.mark()
    reply = update(st, 43, f"{files.url}/fw.bin", cert, base64.b64encode(bytes(raw)).decode())
    assert reply["status"] == "Accepted"
    assert_invalid_signature(st, files, 43, mark)


@VERSIONS
def test_tc_081_tc_l_06_secure_firmware_update_ed25519_signing_certificate_refused(
    station: Callable[..., Station], files: ImageServer, version: str
) -> None:
    """An Ed25519 certificate issued by the root: nothing it signs could be verified (RSA and
    ECDSA only), so it is refused at once, before any download."""
    st = station(version)
    files.files["/fw.bin"] = IMAGE
    cert, signature = signed_by_root(st, key="ed25519")
    mark = st.bench.mark()
    reply = update(st, 44, f"{files.url}/fw.bin", cert, signature)
    assert_refused_at_once(st, files, reply, mark)
    assert "Ed25519" in security_event(st, "InvalidFirmwareSigningCertificate", mark)["techInfo"]


# -- bad signing certificates: refused before anything is downloaded ---------------------------


@VERSIONS
def test_tc_l_05_secure_firmware_update_certificate_from_other_root_invalid_certificate(
    station: Callable[..., Station], files: ImageServer, version: str
) -> None:
    st = station(version)
    files.files["/fw.bin"] = IMAGE
    other = st.pki.ca("Someone Else's Root")
    cert, private = st.pki.signing_cert(other)
    mark = st.bench.mark()
    reply = update(st, 45, f"{files.url}/fw.bin", cert, sign(st.dir, IMAGE, private))
    assert_refused_at_once(st, files, reply, mark)


@VERSIONS
def test_tc_l_05_secure_firmware_update_certificate_issued_by_intermediate_invalid_certificate(
    station: Callable[..., Station], files: ImageServer, version: str
) -> None:
    st = station(version)
    files.files["/fw.bin"] = IMAGE
    intermediate = st.pki.intermediate(st.root)
    cert, private = st.pki.signing_cert(intermediate)
    mark = st.bench.mark()
    reply = update(st, 46, f"{files.url}/fw.bin", cert, sign(st.dir, IMAGE, private))
    assert_refused_at_once(st, files, reply, mark)


@VERSIONS
def test_tc_l_05_secure_firmware_update_two_certificate_bundle_invalid_certificate(
    station: Callable[..., Station], files: ImageServer, version: str
) -> None:
    """Leaf + intermediate (a chain up to the station's root) is still refused: the signing
    certificate must be one certificate issued directly by a manufacturer root."""
    st = station(version)
    files.files["/fw.bin"] = IMAGE
    intermediate = st.pki.intermediate(st.root)
    cert, private = st.pki.signing_cert(intermediate)
    mark = st.bench.mark()
    reply = update(st, 47, f"{files.url}/fw.bin", cert + intermediate.pem, sign(st.dir, IMAGE, private))
    assert_refused_at_once(st, files, reply, mark)
    assert "2 certificates" in security_event(st, "InvalidFirmwareSigningCertificate", mark)["techInfo"]


@VERSIONS
def test_tc_l_05_secure_firmware_update_expired_signing_certificate_invalid_certificate(
    station: Callable[..., Station], files: ImageServer, version: str
) -> None:
    st = station(version)
    files.files["/fw.bin"] = IMAGE
    cert, private = st.pki.signing_cert(st.root, expired=True)
    mark = st.bench.mark()
    reply = update(st, 48, f"{files.url}/fw.bin", cert, sign(st.dir, IMAGE, private))
    assert_refused_at_once(st, files, reply, mark)
    assert "expired" in security_event(st, "InvalidFirmwareSigningCertificate", mark)["techInfo"]


# -- downloads ---------------------------------------------------------------------------------


@VERSIONS
def test_tc_l_07_secure_firmware_update_download_retried_then_installed(
    station: Callable[..., Station], files: ImageServer, version: str
) -> None:
    st = station(version)
    files.files["/fw.bin"] = IMAGE
    files.failures = 2  # the first attempt and the first retry fail, the second retry succeeds
    cert, signature = signed_by_root(st)
    pid = st.bench.proc.pid if st.bench.proc else None
    mark = st.bench.mark()
    reply = update(st, 49, f"{files.url}/fw.bin", cert, signature, retries=2, retryInterval=1)
    assert reply["status"] == "Accepted"
    wait_status(st, "Installed", mark, timeout=INSTALL_TIMEOUT_S)
    assert files.gets == ["/fw.bin"] * 3
    assert_installed(st, 49, mark, pid)  # one Downloading for all attempts
    # L01.FR.25: after Installed a triggered notification says Idle, without a requestId.
    assert trigger_firmware_status(st) == {"status": "Idle"}


@VERSIONS
def test_tc_l_07_secure_firmware_update_download_failed(
    station: Callable[..., Station], files: ImageServer, version: str
) -> None:
    st = station(version)
    cert, signature = signed_by_root(st)
    mark = st.bench.mark()
    reply = update(st, 50, f"{files.url}/fw.bin", cert, signature, retries=2, retryInterval=1)
    assert reply["status"] == "Accepted"
    wait_status(st, "DownloadFailed", mark)
    assert statuses(st, mark) == ["Downloading", "DownloadFailed"]
    assert all(n.get("requestId") == 50 for n in notes(st, mark)), notes(st, mark)
    assert files.gets == ["/fw.bin"] * 3  # the first attempt and two retries
    assert not st.hook_log.exists() and not st.steps.exists()
    assert boots(st, mark) == []


# -- scheduling --------------------------------------------------------------------------------


@VERSIONS
def test_tc_l_02_secure_firmware_update_install_date_time_in_future_install_scheduled(
    station: Callable[..., Station], files: ImageServer, version: str
) -> None:
    st = station(version)
    files.files["/fw.bin"] = IMAGE
    cert, signature = signed_by_root(st)
    pid = st.bench.proc.pid if st.bench.proc else None
    mark = st.bench.mark()
    install_at = datetime.now(UTC) + timedelta(seconds=3)
    reply = update(st, 51, f"{files.url}/fw.bin", cert, signature, install_at=iso(install_at))
    assert reply["status"] == "Accepted"
    wait_status(st, "Installed", mark, timeout=INSTALL_TIMEOUT_S)
    timeline = st.bench.csms.timeline[mark:]
    sent = {
        e.payload["status"]: e.t  # type: ignore[index]
        for e in timeline
        if e.kind == "call" and e.direction == "in" and e.action == st.notification
    }
    assert sent["Installing"] - sent["Downloading"] >= 2.0  # not before installDateTime
    assert datetime.now(UTC) >= install_at
    scheduled = [*INSTALLED[:3], "InstallScheduled", *INSTALLED[3:]]
    assert_installed(st, 51, mark, pid, scheduled)


@VERSIONS
def test_tc_l_10_secure_firmware_update_while_one_is_scheduled_accepted_canceled(
    station: Callable[..., Station], files: ImageServer, version: str
) -> None:
    st = station(version)
    files.files["/fw.bin"] = IMAGE
    cert, signature = signed_by_root(st)
    pid = st.bench.proc.pid if st.bench.proc else None
    mark = st.bench.mark()
    first = update(st, 52, f"{files.url}/fw.bin", cert, signature, retrieve_at=now_iso(60))
    assert first["status"] == "Accepted"
    assert wait_status(st, "DownloadScheduled", mark) == {"status": "DownloadScheduled", "requestId": 52}
    second_mark = st.bench.mark()
    second = update(st, 53, f"{files.url}/fw.bin", cert, signature)
    assert second["status"] == "AcceptedCanceled"
    wait_status(st, "Installed", second_mark, timeout=INSTALL_TIMEOUT_S)
    # The first one never went on: one download, one install, all for the second request.
    assert files.gets == ["/fw.bin"]
    assert_installed(st, 53, second_mark, pid)
    assert statuses(st, mark) == ["DownloadScheduled", *INSTALLED]


def test_tc_l_10_secure_firmware_update_while_one_downloads_accepted_canceled(
    station: Callable[..., Station], files: ImageServer
) -> None:
    """The first download is cut off mid-file; only the second image is verified and installed,
    and the first one's late bytes never replace it."""
    st = station("2.0.1")
    old = b"older firmware 1.9\n" * 2000
    files.files["/old.bin"] = old
    files.stall["/old.bin"] = 3.0
    files.files["/fw.bin"] = IMAGE
    cert, private = st.pki.signing_cert(st.root)
    pid = st.bench.proc.pid if st.bench.proc else None
    mark = st.bench.mark()
    assert update(st, 64, f"{files.url}/old.bin", cert, sign(st.dir, old, private))["status"] == "Accepted"
    wait_status(st, "Downloading", mark)
    eventually(lambda: files.gets == ["/old.bin"], what="the first download")
    second = st.bench.mark()
    reply = update(st, 65, f"{files.url}/fw.bin", cert, sign(st.dir, IMAGE, private))
    assert reply["status"] == "AcceptedCanceled"
    wait_status(st, "Installed", second, timeout=INSTALL_TIMEOUT_S)
    assert_installed(st, 65, second, pid)
    assert statuses(st, mark) == ["Downloading", *INSTALLED]
    assert notes(st, mark)[0] == {"status": "Downloading", "requestId": 64}
    assert not list(st.image.parent.glob("*.part"))


# -- signed updates only -----------------------------------------------------------------------


def test_tc_l_18_plain_update_firmware_16_not_supported(
    station: Callable[..., Station], files: ImageServer
) -> None:
    st = station("1.6")
    files.files["/fw.bin"] = IMAGE
    mark = st.bench.mark()
    with pytest.raises(CallErrorReply) as error:
        st.bench.call("UpdateFirmware", {"location": f"{files.url}/fw.bin", "retrieveDate": now_iso()})
    assert error.value.code == "NotSupported"
    with pytest.raises(TimeoutError):
        st.bench.wait("FirmwareStatusNotification", timeout=1.0, after=mark)
    assert files.gets == []
    assert not st.hook_log.exists()


def test_tc_l_18_update_firmware_201_without_signature_rejected(
    station: Callable[..., Station], files: ImageServer
) -> None:
    st = station("2.0.1")
    files.files["/fw.bin"] = IMAGE
    mark = st.bench.mark()
    reply = update(st, 54, f"{files.url}/fw.bin", None, None)
    assert reply["status"] == "Rejected"
    with pytest.raises(TimeoutError):
        st.bench.wait("FirmwareStatusNotification", timeout=1.0, after=mark)
    assert files.gets == []
    assert not st.hook_log.exists()


# -- installation failures ---------------------------------------------------------------------


@VERSIONS
def test_tc_l_08_secure_firmware_update_commit_fails_install_verification_failed(
    station: Callable[..., Station], files: ImageServer, version: str
) -> None:
    st = station(version, commit_exit=1)
    files.files["/fw.bin"] = IMAGE
    cert, signature = signed_by_root(st)
    mark = st.bench.mark()
    assert update(st, 55, f"{files.url}/fw.bin", cert, signature)["status"] == "Accepted"
    wait_status(st, "InstallVerificationFailed", mark, timeout=INSTALL_TIMEOUT_S)
    assert statuses(st, mark) == [
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "Installing",
        "InstallRebooting",
        "InstallVerificationFailed",
    ]
    assert all(n.get("requestId") == 55 for n in notes(st, mark)), notes(st, mark)
    assert st.hook_log.read_text().split() == [str(st.image)]
    assert st.steps_run() == ["--commit", "--rollback"]
    assert "FirmwareUpdated" not in security_events(st, mark) + security_log(st)


@VERSIONS
def test_tc_l_08_secure_firmware_update_installation_failed(
    station: Callable[..., Station], files: ImageServer, version: str
) -> None:
    st = station(version, hook_exit=1)
    files.files["/fw.bin"] = IMAGE
    cert, signature = signed_by_root(st)
    mark = st.bench.mark()
    assert update(st, 56, f"{files.url}/fw.bin", cert, signature)["status"] == "Accepted"
    wait_status(st, "InstallationFailed", mark)
    assert statuses(st, mark) == [
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "Installing",
        "InstallationFailed",
    ]
    assert all(n.get("requestId") == 56 for n in notes(st, mark)), notes(st, mark)
    assert st.hook_log.read_text().split() == [str(st.image)]
    # No restart: the station keeps running its old firmware; nothing to commit or roll back.
    with pytest.raises(TimeoutError):
        st.bench.wait("BootNotification", timeout=1.0, after=mark)
    assert not st.steps.exists()
    assert st.bench.sim().status(1)["ocpp_connected"]


# -- a manufacturer root installed by the CSMS; installing after a transaction -------------------


@VERSIONS
def test_tc_l_01_secure_firmware_update_with_manufacturer_root_from_install_certificate(
    station: Callable[..., Station], files: ImageServer, version: str
) -> None:
    """No signing_ca_file: signed updates are refused until the CSMS installs a manufacturer
    root; from then on unsigned updates are refused and signed ones install."""
    st = station(version, signing_ca=False)
    files.files["/fw.bin"] = IMAGE
    cert, signature = signed_by_root(st)
    mark = st.bench.mark()
    assert_refused_at_once(st, files, update(st, 57, f"{files.url}/fw.bin", cert, signature), mark)
    install = {"certificateType": "ManufacturerRootCertificate", "certificate": st.root.pem}
    assert st.bench.call("InstallCertificate", install)["status"] == "Accepted"
    if version == "1.6":
        with pytest.raises(CallErrorReply) as error:
            st.bench.call("UpdateFirmware", {"location": f"{files.url}/fw.bin", "retrieveDate": now_iso()})
        assert error.value.code == "NotSupported"
    else:
        assert update(st, 58, f"{files.url}/fw.bin", None, None)["status"] == "Rejected"
    assert files.gets == []
    pid = st.bench.proc.pid if st.bench.proc else None
    mark = st.bench.mark()
    assert update(st, 59, f"{files.url}/fw.bin", cert, signature)["status"] == "Accepted"
    wait_status(st, "Installed", mark, timeout=INSTALL_TIMEOUT_S)
    assert_installed(st, 59, mark, pid)


def test_tc_080_secure_firmware_update_waits_for_transaction_other_connector_unavailable(
    station: Callable[..., Station], files: ImageServer
) -> None:
    """Whitepaper L01.FR.06/07 (1.6): install only once the transaction has ended; meanwhile
    the unused connector is Unavailable so that nobody starts a session the install would cut."""
    st = station("1.6", evses=2)
    files.files["/fw.bin"] = IMAGE
    cert, signature = signed_by_root(st)
    st.bench.charge(1)
    pid = st.bench.proc.pid if st.bench.proc else None
    mark = st.bench.mark()
    assert update(st, 60, f"{files.url}/fw.bin", cert, signature)["status"] == "Accepted"
    wait_status(st, "InstallScheduled", mark)
    st.bench.status(2, "Unavailable", after=mark)
    with pytest.raises(TimeoutError):
        wait_status(st, "Installing", mark, timeout=1.5)
    assert st.bench.sim().status(1)["contactor_closed"]
    assert not st.hook_log.exists()
    st.bench.sim().unplug(1)
    st.bench.wait("StopTransaction", after=mark)
    wait_status(st, "Installed", mark, timeout=INSTALL_TIMEOUT_S)
    scheduled = [*INSTALLED[:3], "InstallScheduled", *INSTALLED[3:]]
    assert_installed(st, 60, mark, pid, scheduled)
    # Connector 2 was only held for the install: it is back after the restart.
    st.bench.status(2, "Available", after=mark)


# -- triggered status --------------------------------------------------------------------------


@VERSIONS
def test_tc_081_tc_l_06_trigger_firmware_status_after_invalid_signature_repeats_it(
    station: Callable[..., Station], files: ImageServer, version: str
) -> None:
    """L01.FR.26 / whitepaper: a triggered notification repeats the last status, with its request."""
    st = station(version)
    cert, signature = signed_by_root(st)
    files.files["/fw.bin"] = IMAGE + b"appended"
    mark = st.bench.mark()
    assert update(st, 62, f"{files.url}/fw.bin", cert, signature)["status"] == "Accepted"
    wait_status(st, "InvalidSignature", mark)
    assert trigger_firmware_status(st) == {"status": "InvalidSignature", "requestId": 62}


def test_tc_054_core_trigger_message_firmware_status_after_signed_update_is_core_message(
    station: Callable[..., Station], files: ImageServer
) -> None:
    """OCPP 1.6 core TriggerMessage(FirmwareStatusNotification) brings a core
    FirmwareStatusNotification (the whitepaper's ExtendedTriggerMessage is the one that brings
    SignedFirmwareStatusNotification), whatever update ran before."""
    st = station("1.6")
    cert, signature = signed_by_root(st)
    files.files["/fw.bin"] = IMAGE + b"appended"
    mark = st.bench.mark()
    assert update(st, 63, f"{files.url}/fw.bin", cert, signature)["status"] == "Accepted"
    wait_status(st, "InvalidSignature", mark)
    mark = st.bench.mark()
    reply = st.bench.call("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
    assert reply["status"] == "Accepted"
    core = st.bench.wait("FirmwareStatusNotification", after=mark, timeout=3)
    assert core["status"] in {"Idle", "InstallationFailed"}, core
    assert not [e for e in st.bench.csms.timeline[mark:] if e.action == "SignedFirmwareStatusNotification"]
