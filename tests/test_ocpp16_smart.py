"""OCPP 1.6 Firmware Management and diagnostics, end to end.

The daemon runs as a subprocess on simulated hardware against the development CSMS;
the tests follow the OCA compliance test case families of those feature profiles
(UpdateFirmware, whose install command and restart need the process, and GetDiagnostics).
Firmware images and diagnostics uploads go through a local HTTP server in a thread.
Smart Charging and Reservation run in-process in test_inproc_ocpp16_smart.py.
"""

from __future__ import annotations

import email
import email.policy
import http.server
import io
import json
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hil.csms import CsmsThread, describe
from hil.simrig import SimRig
from tests import ocpp_harness
from tests.ocpp_harness import Bench, make_bench
from tests.ocpp_helpers import now_iso

# The bench's fixtures, under their own names (imported names shadowed by parameters upset ruff).
bench = ocpp_harness.bench
csms = ocpp_harness.csms


# -- helpers ---------------------------------------------------------------------------------


def no_call(bench: Bench, action: str, after: int, seconds: float) -> None:
    """Assert that the station sends no ``action`` for ``seconds``."""
    with pytest.raises(TimeoutError):
        bench.wait(action, timeout=seconds, after=after)


def statuses(bench: Bench, action: str, after: int = 0) -> list[str]:
    return [
        e.payload["status"]  # type: ignore[index]
        for e in bench.csms.timeline[after:]
        if e.kind == "call" and e.action == action and e.direction == "in"
    ]


# -- local HTTP servers for firmware and diagnostics ----------------------------------------


@dataclass
class FileServer:
    """Serves files from a dict (path -> bytes) and accepts multipart POST uploads."""

    files: dict[str, bytes] = field(default_factory=dict)
    gets: list[str] = field(default_factory=list)
    uploads: list[tuple[str, bytes]] = field(default_factory=list)  # (filename, content)
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
                data = owner.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                message = email.message_from_bytes(head + body, policy=email.policy.HTTP)
                for part in message.iter_parts():  # type: ignore[attr-defined]
                    if part.get_filename():
                        owner.uploads.append((part.get_filename(), part.get_payload(decode=True)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def files() -> Iterator[FileServer]:
    server = FileServer()
    server.start()
    yield server
    server.stop()


INSTALL_HOOK = """\
#!/bin/sh
case "$1" in --*) echo "$1" >> "{record}.steps"; exit 0;; esac
echo "$1" >> "{record}"
cp "$1" "{copy}"
exit {code}
"""


@pytest.fixture
def firmware_station(tmp_path: Path, csms: CsmsThread) -> Iterator[Callable[[int], Bench]]:
    """Starts a station whose firmware.install_command is a script recording its argument
    (in hook.log) and copying the image (to installed.bin), then exiting with the code given."""
    started: list[Bench] = []

    def start(hook_exit: int = 0) -> Bench:
        hook = tmp_path / "install.sh"
        record, copy = tmp_path / "hook.log", tmp_path / "installed.bin"
        hook.write_text(INSTALL_HOOK.format(record=record, copy=copy, code=hook_exit))
        hook.chmod(0o755)
        station = make_bench(tmp_path, csms, extra=f'[firmware]\ninstall_command = "{hook}"\n')
        started.append(station)
        station.start()
        return station

    yield start
    for station in started:
        if station.proc is not None and station.proc.poll() is None:
            station.kill()


@pytest.fixture(autouse=True)
def timeline(csms: CsmsThread) -> Iterator[None]:
    """Print the CSMS timeline at teardown: pytest shows it for a failed test."""
    yield
    for entry in csms.timeline:
        print(f"{entry.t:.3f} {describe(entry)}")


# -- Firmware Management -----------------------------------------------------------------------


def fw_statuses(bench: Bench, after: int) -> list[str]:
    return statuses(bench, "FirmwareStatusNotification", after)


def wait_fw(bench: Bench, status: str, after: int, timeout: float = 10) -> None:
    bench.wait("FirmwareStatusNotification", lambda p: p["status"] == status, timeout=timeout, after=after)


def test_update_firmware_installed(
    tmp_path: Path, files: FileServer, firmware_station: Callable[[int], Bench]
) -> None:
    station = firmware_station(0)
    image = bytes(range(256)) * 64
    files.files["/fw/image-2.0.bin"] = image
    pid = station.proc.pid if station.proc else None
    boots = len(station.calls("BootNotification"))
    mark = station.mark()
    reply = station.call(
        "UpdateFirmware", {"location": f"{files.url}/fw/image-2.0.bin", "retrieveDate": now_iso()}
    )
    assert reply == {}
    wait_fw(station, "Installed", mark, timeout=20)
    assert fw_statuses(station, mark) == ["Downloading", "Downloaded", "Installing", "Installed"]
    # The daemon re-executed itself in place and booted again before reporting Installed.
    assert len(station.calls("BootNotification")) == boots + 1
    installed_at = next(
        i
        for i, e in enumerate(station.csms.timeline)
        if i >= mark
        and e.action == "FirmwareStatusNotification"
        and e.kind == "call"
        and e.payload["status"] == "Installed"  # type: ignore[index]
    )
    boot_at = max(
        i for i, e in enumerate(station.csms.timeline) if e.action == "BootNotification" and e.kind == "call"
    )
    assert mark < boot_at < installed_at
    assert station.proc is not None and station.proc.poll() is None and station.proc.pid == pid
    station.rig = SimRig.wait_for(station.dir / "var" / "sim.sock")
    assert station.sim().status(1)["ocpp_connected"]
    hook_log = (tmp_path / "hook.log").read_text().split()
    assert hook_log == [str(tmp_path / "var" / "firmware" / "firmware.bin")]
    assert (tmp_path / "installed.bin").read_bytes() == image
    assert files.gets == ["/fw/image-2.0.bin"]


def test_update_firmware_installs_after_transaction(
    tmp_path: Path, files: FileServer, firmware_station: Callable[[int], Bench]
) -> None:
    station = firmware_station(0)
    files.files["/fw.bin"] = b"new firmware"
    station.charge()
    mark = station.mark()
    assert (
        station.call("UpdateFirmware", {"location": f"{files.url}/fw.bin", "retrieveDate": now_iso()}) == {}
    )
    wait_fw(station, "Downloaded", mark)
    # No install while a transaction runs: the session goes on.
    no_call(station, "FirmwareStatusNotification", station.mark(), 1.5)
    assert station.sim().status(1)["contactor_closed"]
    assert not station.calls("StopTransaction")
    station.sim().unplug(1)
    stop = station.wait("StopTransaction", after=mark)
    assert stop["reason"] == "EVDisconnected"
    wait_fw(station, "Installed", mark, timeout=15)
    assert fw_statuses(station, mark) == ["Downloading", "Downloaded", "Installing", "Installed"]
    station.rig = SimRig.wait_for(station.dir / "var" / "sim.sock")
    assert (tmp_path / "installed.bin").read_bytes() == b"new firmware"


def test_update_firmware_download_failed(
    tmp_path: Path, files: FileServer, firmware_station: Callable[[int], Bench]
) -> None:
    station = firmware_station(0)
    mark = station.mark()
    payload = {
        "location": f"{files.url}/fw/missing.bin",
        "retrieveDate": now_iso(),
        "retries": 1,
        "retryInterval": 1,
    }
    assert station.call("UpdateFirmware", payload) == {}
    wait_fw(station, "DownloadFailed", mark)
    assert fw_statuses(station, mark) == ["Downloading", "DownloadFailed"]
    assert files.gets == ["/fw/missing.bin"] * 2  # the first attempt and one retry
    assert not (tmp_path / "hook.log").exists()
    assert station.proc is not None and station.proc.poll() is None


def test_update_firmware_installation_failed(
    tmp_path: Path, files: FileServer, firmware_station: Callable[[int], Bench]
) -> None:
    station = firmware_station(1)
    files.files["/fw.bin"] = b"firmware image"
    boots = len(station.calls("BootNotification"))
    mark = station.mark()
    assert (
        station.call("UpdateFirmware", {"location": f"{files.url}/fw.bin", "retrieveDate": now_iso()}) == {}
    )
    wait_fw(station, "InstallationFailed", mark)
    assert fw_statuses(station, mark) == ["Downloading", "Downloaded", "Installing", "InstallationFailed"]
    assert (tmp_path / "hook.log").read_text().split() == [
        str(tmp_path / "var" / "firmware" / "firmware.bin")
    ]
    # No restart: the station keeps running on its old firmware.
    assert len(station.calls("BootNotification")) == boots
    assert station.sim().status(1)["ocpp_connected"]


# -- Diagnostics -------------------------------------------------------------------------------


def test_get_diagnostics_uploaded(bench: Bench, files: FileServer) -> None:
    mark = bench.mark()
    reply = bench.call("GetDiagnostics", {"location": f"{files.url}/upload/"})
    name = reply["fileName"]
    assert name.endswith(".tar.gz")
    bench.wait("DiagnosticsStatusNotification", lambda p: p["status"] == "Uploaded", after=mark, timeout=15)
    assert statuses(bench, "DiagnosticsStatusNotification", mark) == ["Uploading", "Uploaded"]
    assert len(files.uploads) == 1
    filename, content = files.uploads[0]
    assert filename == name
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
        assert "status.json" in tar.getnames()
        member = tar.extractfile("status.json")
        assert member is not None
        status = json.loads(member.read())
    assert status["evses"][0]["evse"] == 1
    assert status["ocpp"]["connected"] is True


def test_get_diagnostics_upload_failed(bench: Bench) -> None:
    mark = bench.mark()
    reply = bench.call("GetDiagnostics", {"location": "http://127.0.0.1:1/", "retries": 0})
    assert reply["fileName"].endswith(".tar.gz")
    bench.wait("DiagnosticsStatusNotification", lambda p: p["status"] == "UploadFailed", after=mark)
    assert statuses(bench, "DiagnosticsStatusNotification", mark) == ["Uploading", "UploadFailed"]
