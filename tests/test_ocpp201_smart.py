"""OCPP 2.0.1 firmware management and log uploads, end to end.

The daemon runs as a subprocess on simulated hardware against the development CSMS
speaking 2.0.1 only. The tests follow the OCA 2.0.1 compliance test cases of functional
blocks L (firmware management: the download, the install command, the restart) and N01
(log uploads): firmware images and uploads go through a local HTTP server in a thread, on
real time. Availability, reservation, metering, smart charging and monitoring (blocks G,
H, J, K, N) run in-process in test_inproc_ocpp201_smart.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hil.csms import CsmsThread
from hil.simrig import SimRig
from tests import ocpp_harness
from tests.ocpp201_helpers import tx_of
from tests.ocpp_harness import TOKEN, Bench, make_bench
from tests.ocpp_helpers import iso, now_iso, since
from tests.test_ocpp16_smart import FileServer

# The bench's fixtures, under their own names (imported names shadowed by parameters upset ruff).
bench201 = ocpp_harness.bench201
csms201 = ocpp_harness.csms201
timeline201 = ocpp_harness.timeline201  # prints the timeline and daemon log of a failed test
set_variables = ocpp_harness.set_variables

OTHER_TOKEN = "0A0B0C0D"
# The supervisor changes the offered current at most once per 5 s (IEC 61851-1 A.2.3).
DUTY_CHANGE_WAIT_S = 7.5


# -- helpers ---------------------------------------------------------------------------------


def no_call(
    bench: Bench,
    action: str,
    after: int,
    seconds: float,
    where: Callable[[dict[str, Any]], bool] | None = None,
) -> None:
    """Assert that the station sends no (matching) ``action`` for ``seconds``."""
    with pytest.raises(TimeoutError):
        bench.wait(action, where, timeout=seconds, after=after)


def start_session(bench: Bench, token: str = TOKEN, max_current_a: float = 16) -> dict[str, Any]:
    """Plug in, swipe and charge on EVSE 1; returns the Started TransactionEvent."""
    mark = bench.mark()
    bench.sim().plug(1)
    bench.sim().swipe(token)
    bench.sim().charge(1, max_current_a=max_current_a)
    started = bench.event("Started", after=mark)
    bench.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    return started


def reconnect_rig(bench: Bench) -> None:
    """The daemon re-executed itself in place: connect to its new rig socket."""
    if bench.rig is not None:
        bench.rig.close()
    bench.rig = SimRig.wait_for(bench.dir / "var" / "sim.sock")


# -- K: smart charging -------------------------------------------------------------------------


def offered(bench: Bench, amps: float, timeout: float = DUTY_CHANGE_WAIT_S) -> dict[str, Any]:
    """Wait until the PWM offers ``amps``; returns the rig status."""
    return bench.sim().wait_until(
        lambda s: s["pwm"] and s["offered_a"] == pytest.approx(amps, abs=0.1), timeout=timeout
    )


# -- L: firmware management --------------------------------------------------------------------


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
def firmware_station(tmp_path: Path, csms201: CsmsThread) -> Iterator[Callable[..., Bench]]:
    """Starts a 2.0.1 station whose firmware.install_command is a script recording its
    argument (in hook.log) and copying the image (to installed.bin), then exiting with the
    code given."""
    started: list[Bench] = []

    def start(hook_exit: int = 0, evses: int = 1) -> Bench:
        hook = tmp_path / "install.sh"
        record, copy = tmp_path / "hook.log", tmp_path / "installed.bin"
        hook.write_text(INSTALL_HOOK.format(record=record, copy=copy, code=hook_exit))
        hook.chmod(0o755)
        extra = f'[firmware]\ninstall_command = "{hook}"\n'
        station = make_bench(tmp_path, csms201, version="2.0.1", evses=evses, extra=extra)
        started.append(station)
        station.start()
        return station

    yield start
    for station in started:
        if station.proc is not None and station.proc.poll() is None:
            station.kill()


def update_firmware(bench: Bench, request_id: int, location: str, **extra: Any) -> str:
    payload = {
        "requestId": request_id,
        "firmware": {"location": location, "retrieveDateTime": now_iso()},
        **extra,
    }
    status: str = bench.call("UpdateFirmware", payload)["status"]
    return status


def fw_notifications(bench: Bench, after: int) -> list[dict[str, Any]]:
    return since(bench, "FirmwareStatusNotification", after)


def wait_fw(bench: Bench, status: str, after: int, timeout: float = 10) -> dict[str, Any]:
    return bench.wait(
        "FirmwareStatusNotification", lambda p: p["status"] == status, timeout=timeout, after=after
    )


def test_l01_update_firmware_installed(
    tmp_path: Path, files: FileServer, firmware_station: Callable[..., Bench]
) -> None:
    station = firmware_station(0)
    image = bytes(range(256)) * 64
    files.files["/fw/image-2.0.bin"] = image
    pid = station.proc.pid if station.proc else None
    mark = station.mark()
    assert update_firmware(station, 17, f"{files.url}/fw/image-2.0.bin") == "Accepted"
    wait_fw(station, "Installed", mark, timeout=20)
    notes = fw_notifications(station, mark)
    assert [n["status"] for n in notes] == [
        "Downloading",
        "Downloaded",
        "Installing",
        "InstallRebooting",
        "Installed",
    ]
    assert all(n.get("requestId") == 17 for n in notes), notes
    # The daemon re-executed itself in place and booted again, for the firmware update.
    boots = since(station, "BootNotification", mark)
    assert [b["reason"] for b in boots] == ["FirmwareUpdate"]
    timeline = station.csms.timeline
    boot_at = max(i for i, e in enumerate(timeline) if e.action == "BootNotification" and e.kind == "call")
    installed_at = max(i for i, e in enumerate(timeline) if e.action == "FirmwareStatusNotification")
    assert mark < boot_at < installed_at
    assert station.proc is not None and station.proc.poll() is None and station.proc.pid == pid
    reconnect_rig(station)
    assert station.sim().status(1)["ocpp_connected"]
    assert (tmp_path / "hook.log").read_text().split() == [
        str(tmp_path / "var" / "firmware" / "firmware.bin")
    ]
    assert (tmp_path / "installed.bin").read_bytes() == image
    assert files.gets == ["/fw/image-2.0.bin"]
    # A later restart is a plain power-up again.
    mark = station.mark()
    assert station.stop() == 0
    station.start()
    assert [b["reason"] for b in since(station, "BootNotification", mark)] == ["PowerUp"]
    no_call(station, "FirmwareStatusNotification", mark, 0.5)


def test_l01_update_firmware_download_failed(
    tmp_path: Path, files: FileServer, firmware_station: Callable[..., Bench]
) -> None:
    station = firmware_station(0)
    mark = station.mark()
    location = f"{files.url}/fw/missing.bin"
    assert update_firmware(station, 5, location, retries=1, retryInterval=1) == "Accepted"
    wait_fw(station, "DownloadFailed", mark)
    notes = fw_notifications(station, mark)
    assert [n["status"] for n in notes] == ["Downloading", "DownloadFailed"]
    assert all(n.get("requestId") == 5 for n in notes), notes
    assert files.gets == ["/fw/missing.bin"] * 2  # the first attempt and one retry
    assert not (tmp_path / "hook.log").exists()
    assert station.proc is not None and station.proc.poll() is None
    assert not since(station, "BootNotification", mark)


def test_l01_update_firmware_installation_failed(
    tmp_path: Path, files: FileServer, firmware_station: Callable[..., Bench]
) -> None:
    station = firmware_station(1)
    files.files["/fw.bin"] = b"firmware image"
    mark = station.mark()
    assert update_firmware(station, 6, f"{files.url}/fw.bin") == "Accepted"
    wait_fw(station, "InstallationFailed", mark)
    notes = fw_notifications(station, mark)
    assert [n["status"] for n in notes] == ["Downloading", "Downloaded", "Installing", "InstallationFailed"]
    assert all(n.get("requestId") == 6 for n in notes), notes
    assert (tmp_path / "hook.log").read_text().split() == [
        str(tmp_path / "var" / "firmware" / "firmware.bin")
    ]
    # No restart: the station keeps running on its old firmware.
    no_call(station, "BootNotification", mark, 0.5)
    assert station.sim().status(1)["ocpp_connected"]


def test_l01_update_firmware_installs_after_transaction(
    tmp_path: Path, files: FileServer, firmware_station: Callable[..., Bench]
) -> None:
    station = firmware_station(0)
    files.files["/fw.bin"] = b"new firmware"
    tx_id = tx_of(start_session(station))
    mark = station.mark()
    assert update_firmware(station, 8, f"{files.url}/fw.bin") == "Accepted"
    wait_fw(station, "Downloaded", mark)
    # No install while a transaction runs: the session goes on.
    no_call(station, "FirmwareStatusNotification", station.mark(), 1.5, lambda p: p["status"] == "Installing")
    assert station.sim().status(1)["contactor_closed"]
    assert not since(station, "TransactionEvent", mark, lambda p: p["eventType"] == "Ended")
    station.sim().unplug(1)
    ended = station.event("Ended", after=mark)
    assert tx_of(ended) == tx_id
    assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    wait_fw(station, "Installed", mark, timeout=15)
    notes = fw_notifications(station, mark)
    assert [n["status"] for n in notes if n["status"] != "InstallScheduled"] == [
        "Downloading",
        "Downloaded",
        "Installing",
        "InstallRebooting",
        "Installed",
    ]
    assert all(n.get("requestId") == 8 for n in notes), notes
    reconnect_rig(station)
    assert (tmp_path / "installed.bin").read_bytes() == b"new firmware"


def test_l01_update_firmware_while_one_is_scheduled_accepted_canceled(
    files: FileServer, firmware_station: Callable[..., Bench]
) -> None:
    station = firmware_station(0)
    files.files["/fw.bin"] = b"new firmware"
    first = {
        "requestId": 31,
        "firmware": {"location": f"{files.url}/fw.bin", "retrieveDateTime": now_iso(30)},
    }
    assert station.call("UpdateFirmware", first)["status"] == "Accepted"
    mark = station.mark()
    # The first one is cancelled (the station runs one update at a time): it must say so.
    assert update_firmware(station, 32, f"{files.url}/fw.bin") == "AcceptedCanceled"
    wait_fw(station, "Installed", mark, timeout=15)


def test_l01_update_firmware_install_date_time_in_future_install_scheduled(
    files: FileServer, firmware_station: Callable[..., Bench]
) -> None:
    station = firmware_station(0)
    files.files["/fw.bin"] = b"new firmware"
    mark = station.mark()
    install_at = datetime.now(UTC) + timedelta(seconds=4)
    firmware = {
        "location": f"{files.url}/fw.bin",
        "retrieveDateTime": now_iso(),
        "installDateTime": iso(install_at),
    }
    assert station.call("UpdateFirmware", {"requestId": 33, "firmware": firmware})["status"] == "Accepted"
    wait_fw(station, "Installed", mark, timeout=15)
    statuses = [n["status"] for n in fw_notifications(station, mark)]
    assert statuses == [
        "Downloading",
        "Downloaded",
        "InstallScheduled",
        "Installing",
        "InstallRebooting",
        "Installed",
    ], statuses
    notes = [
        e
        for e in station.csms.timeline[mark:]
        if e.kind == "call" and e.action == "FirmwareStatusNotification"
    ]
    installing = next(e for e in notes if isinstance(e.payload, dict) and e.payload["status"] == "Installing")
    assert installing.t - notes[0].t >= 3.0  # not before installDateTime


def test_f06_trigger_message_firmware_status_idle_after_installed(
    files: FileServer, firmware_station: Callable[..., Bench]
) -> None:
    station = firmware_station(0)
    files.files["/fw.bin"] = b"new firmware"
    mark = station.mark()
    assert update_firmware(station, 34, f"{files.url}/fw.bin") == "Accepted"
    wait_fw(station, "Installed", mark, timeout=15)
    mark = station.mark()
    reply = station.call("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
    assert reply["status"] == "Accepted"
    # The update is over: nothing firmware-related goes on any more.
    assert station.wait("FirmwareStatusNotification", after=mark) == {"status": "Idle"}


def test_f06_trigger_message_firmware_status_after_failure_repeats_it(
    files: FileServer, firmware_station: Callable[..., Bench]
) -> None:
    station = firmware_station(0)
    mark = station.mark()
    assert update_firmware(station, 35, f"{files.url}/missing.bin") == "Accepted"
    wait_fw(station, "DownloadFailed", mark)
    mark = station.mark()
    reply = station.call("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
    assert reply["status"] == "Accepted"
    # L01.FR.26: the last status sent, with its request.
    assert station.wait("FirmwareStatusNotification", after=mark) == {
        "status": "DownloadFailed",
        "requestId": 35,
    }


def test_l01_update_firmware_waiting_sets_unused_evses_unavailable(
    files: FileServer, firmware_station: Callable[..., Bench]
) -> None:
    station = firmware_station(0, evses=2)
    files.files["/fw.bin"] = b"new firmware"
    start_session(station)
    mark = station.mark()
    assert update_firmware(station, 9, f"{files.url}/fw.bin") == "Accepted"
    wait_fw(station, "Downloaded", mark)
    # Nobody may start a session the install would cut off.
    station.status201(2, "Unavailable", after=mark, timeout=3)
    station.sim().plug(2)
    station.sim().swipe(OTHER_TOKEN)
    station.sim().charge(2)
    no_call(station, "TransactionEvent", mark, 1.5, lambda p: p["evse"]["id"] == 2)


# -- N: logs -----------------------------------------------------------------------------------


def get_log(bench: Bench, request_id: int, location: str, log_type: str = "DiagnosticsLog") -> dict[str, Any]:
    payload = {"logType": log_type, "requestId": request_id, "log": {"remoteLocation": location}}
    return bench.call("GetLog", payload)


def log_notifications(bench: Bench, after: int) -> list[dict[str, Any]]:
    return since(bench, "LogStatusNotification", after)


def test_n01_get_log_diagnostics_uploaded(bench201: Bench, files: FileServer) -> None:
    mark = bench201.mark()
    reply = get_log(bench201, 3, f"{files.url}/upload/")
    assert reply["status"] == "Accepted"
    name = reply["filename"]
    assert name
    bench201.wait("LogStatusNotification", lambda p: p["status"] == "Uploaded", after=mark, timeout=15)
    assert log_notifications(bench201, mark) == [
        {"status": "Uploading", "requestId": 3},
        {"status": "Uploaded", "requestId": 3},
    ]
    assert [f for f, _ in files.uploads] == [name]
    assert files.uploads[0][1]  # not empty


def test_n01_get_log_security_log_uploaded(bench201: Bench, files: FileServer) -> None:
    mark = bench201.mark()
    reply = get_log(bench201, 4, f"{files.url}/upload/", log_type="SecurityLog")
    assert reply["status"] == "Accepted"
    bench201.wait("LogStatusNotification", lambda p: p["status"] == "Uploaded", after=mark, timeout=15)
    assert [n["requestId"] for n in log_notifications(bench201, mark)] == [4, 4]
    assert [f for f, _ in files.uploads] == [reply["filename"]]


def test_f06_trigger_message_log_status_idle_after_upload(bench201: Bench, files: FileServer) -> None:
    mark = bench201.mark()
    assert get_log(bench201, 6, f"{files.url}/upload/")["status"] == "Accepted"
    bench201.wait("LogStatusNotification", lambda p: p["status"] == "Uploaded", after=mark, timeout=15)
    mark = bench201.mark()
    reply = bench201.call("TriggerMessage", {"requestedMessage": "LogStatusNotification"})
    assert reply["status"] == "Accepted"
    assert bench201.wait("LogStatusNotification", after=mark) == {"status": "Idle"}
