"""OCPP 1.6 Smart Charging, Reservation, Firmware Management and diagnostics, end to end.

The daemon runs as a subprocess on simulated hardware against the development CSMS;
the tests follow the OCA compliance test case families of those feature profiles
(SetChargingProfile / GetCompositeSchedule / ClearChargingProfile, RemoteStartTransaction
with a charging profile, ReserveNow / CancelReservation, UpdateFirmware, GetDiagnostics).
Firmware images and diagnostics uploads go through a local HTTP server in a thread.
"""

from __future__ import annotations

import email
import email.policy
import http.server
import io
import json
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hil.csms import CsmsThread, describe
from hil.simrig import SimRig
from tests import ocpp_harness
from tests.ocpp_harness import TOKEN, Bench, eventually, make_bench

# The bench's fixtures, under their own names (imported names shadowed by parameters upset ruff).
bench = ocpp_harness.bench
csms = ocpp_harness.csms

# The supervisor changes the offered current at most once per 5 s (IEC 61851-1 A.2.3).
DUTY_CHANGE_WAIT_S = 7.5
OTHER_TOKEN = "0A0B0C0D"


# -- helpers ---------------------------------------------------------------------------------


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso(offset_s: float = 0.0) -> str:
    return iso(datetime.now(UTC) + timedelta(seconds=offset_s))


def profile(
    profile_id: int,
    purpose: str,
    limit: float = 10,
    stack_level: int = 0,
    kind: str = "Relative",
    unit: str = "A",
    start: str | None = None,
    periods: list[tuple[int, float]] | None = None,
    duration: int | None = None,
    tx_id: int | None = None,
) -> dict[str, Any]:
    """A 1.6 csChargingProfiles object."""
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": lim} for s, lim in (periods or [(0, limit)])],
    }
    if start is not None:
        schedule["startSchedule"] = start
    if duration is not None:
        schedule["duration"] = duration
    body: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
    }
    if tx_id is not None:
        body["transactionId"] = tx_id
    return body


def set_profile(bench: Bench, connector: int, body: dict[str, Any]) -> str:
    reply = bench.call("SetChargingProfile", {"connectorId": connector, "csChargingProfiles": body})
    status: str = reply["status"]
    return status


def composite(bench: Bench, unit: str = "A", connector: int = 1, duration: int = 3600) -> dict[str, Any]:
    return bench.call(
        "GetCompositeSchedule",
        {"connectorId": connector, "duration": duration, "chargingRateUnit": unit},
    )


def limits(reply: dict[str, Any]) -> list[tuple[int, float]]:
    return [(p["startPeriod"], p["limit"]) for p in reply["chargingSchedule"]["chargingSchedulePeriod"]]


def offered(bench: Bench, amps: float, timeout: float = DUTY_CHANGE_WAIT_S) -> dict[str, Any]:
    """Wait until the PWM offers ``amps``; returns the rig status."""
    return bench.sim().wait_until(lambda s: s["pwm"] and s["offered_a"] == amps, timeout=timeout)


def csms_tx_id(bench: Bench) -> int:
    """The CSMS's id of the running transaction, once the station has stored it."""
    tx_id = eventually(
        lambda: max((i for i, t in bench.csms.transactions.items() if t["stop"] is None), default=None),
        what="a transaction at the CSMS",
    )
    eventually(
        lambda: bench.db("SELECT id FROM transactions WHERE csms_id = ?", str(tx_id)),
        what="the station to store the CSMS's transaction id",
    )
    return int(tx_id)


def reserve(bench: Bench, reservation_id: int, id_tag: str, connector: int = 1, **extra: Any) -> str:
    payload = {
        "connectorId": connector,
        "expiryDate": now_iso(extra.pop("expires_in", 600)),
        "idTag": id_tag,
        "reservationId": reservation_id,
        **extra,
    }
    status: str = bench.call("ReserveNow", payload)["status"]
    return status


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


# -- Smart Charging ----------------------------------------------------------------------------


def test_set_charging_profile_tx_default_absolute_limits_offered_current(bench: Bench) -> None:
    start = now_iso(-60)
    body = profile(1, "TxDefaultProfile", 10, kind="Absolute", start=start)
    assert set_profile(bench, 0, body) == "Accepted"
    bench.charge()
    status = offered(bench, 10)
    assert status["duty_percent"] == pytest.approx(16.67, abs=0.02)
    assert status["contactor_closed"]
    # The EV draws no more than offered: 10 A on 3 phases at 230 V.
    bench.sim().wait_until(lambda s: 0 < s["power_w"] <= 6900 * 1.02, timeout=15)


def test_set_charging_profile_tx_default_relative_while_charging(bench: Bench) -> None:
    bench.charge()
    offered(bench, 32)
    assert set_profile(bench, 0, profile(1, "TxDefaultProfile", 10)) == "Accepted"
    status = offered(bench, 10)
    assert status["duty_percent"] == pytest.approx(16.67, abs=0.02)
    assert status["contactor_closed"]
    assert status["connector_status"] == "Charging"


def test_set_charging_profile_tx_profile_overrides_tx_default(bench: Bench) -> None:
    assert set_profile(bench, 0, profile(1, "TxDefaultProfile", 10)) == "Accepted"
    bench.charge()
    offered(bench, 10)
    tx_id = csms_tx_id(bench)
    # Only for its own transaction.
    assert set_profile(bench, 1, profile(2, "TxProfile", 14, tx_id=tx_id + 100)) == "Rejected"
    # Higher than the default: a TxProfile replaces the TxDefaultProfile, it is not combined.
    assert set_profile(bench, 1, profile(2, "TxProfile", 14, tx_id=tx_id)) == "Accepted"
    assert limits(composite(bench)) == [(0, 14.0)]
    offered(bench, 14)


def test_set_charging_profile_tx_profile_without_transaction_rejected(bench: Bench) -> None:
    assert set_profile(bench, 1, profile(1, "TxProfile", 8)) == "Rejected"
    assert set_profile(bench, 1, profile(2, "TxProfile", 8, tx_id=4711)) == "Rejected"
    assert limits(composite(bench)) == [(0, 32.0)]


def test_set_charging_profile_stack_level_higher_wins(bench: Bench) -> None:
    start = now_iso(-60)
    low = profile(1, "TxDefaultProfile", 12, stack_level=0, kind="Absolute", start=start)
    high = profile(2, "TxDefaultProfile", 8, stack_level=1, kind="Absolute", start=start)
    assert set_profile(bench, 0, low) == "Accepted"
    assert set_profile(bench, 0, high) == "Accepted"
    assert limits(composite(bench)) == [(0, 8.0)]
    bench.charge()
    offered(bench, 8, timeout=15)
    # The higher stack level wins even when it allows more.
    higher = profile(3, "TxDefaultProfile", 20, stack_level=2, kind="Absolute", start=start)
    assert set_profile(bench, 0, higher) == "Accepted"
    assert limits(composite(bench)) == [(0, 20.0)]


def test_set_charging_profile_charge_point_max_caps_tx_profile(bench: Bench) -> None:
    cap = profile(1, "ChargePointMaxProfile", 12, kind="Absolute", start=now_iso(-60))
    assert set_profile(bench, 0, cap) == "Accepted"
    # A ChargePointMaxProfile belongs on connector 0 only.
    misplaced = profile(9, "ChargePointMaxProfile", 12, kind="Absolute", start=now_iso(-60))
    assert set_profile(bench, 1, misplaced) == "Rejected"
    bench.charge()
    tx_id = csms_tx_id(bench)
    assert set_profile(bench, 1, profile(2, "TxProfile", 20, tx_id=tx_id)) == "Accepted"
    assert limits(composite(bench)) == [(0, 12.0)]
    status = offered(bench, 12, timeout=15)
    assert status["contactor_closed"]


def _schedule_with_edges(bench: Bench) -> None:
    """TxDefault: 10 A now, 16 A from 1800 s from now, none from 2800 s (hardware 32 A)."""
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=100)
    body = profile(
        1,
        "TxDefaultProfile",
        kind="Absolute",
        start=iso(base),
        periods=[(0, 10), (1900, 16)],
        duration=2900,
    )
    assert set_profile(bench, 1, body) == "Accepted"


def _near(reply: dict[str, Any], expected: list[tuple[int, float]]) -> None:
    got = limits(reply)
    assert [lim for _, lim in got] == [lim for _, lim in expected], got
    for (start, _), (want, _) in zip(got, expected, strict=True):
        assert want - 1 <= start <= want, got  # edges round up to whole seconds from the request


def test_get_composite_schedule_amps(bench: Bench) -> None:
    _schedule_with_edges(bench)
    reply = composite(bench, "A")
    assert reply["status"] == "Accepted"
    assert reply["connectorId"] == 1
    schedule = reply["chargingSchedule"]
    assert schedule["chargingRateUnit"] == "A"
    assert schedule["duration"] == 3600
    assert abs(datetime.fromisoformat(schedule["startSchedule"]) - datetime.now(UTC)) < timedelta(seconds=5)
    _near(reply, [(0, 10.0), (1800, 16.0), (2800, 32.0)])


def test_get_composite_schedule_watts(bench: Bench) -> None:
    _schedule_with_edges(bench)
    reply = composite(bench, "W")
    assert reply["status"] == "Accepted"
    assert reply["chargingSchedule"]["chargingRateUnit"] == "W"
    # 3 phases at 230 V.
    _near(reply, [(0, 6900.0), (1800, 11040.0), (2800, 22080.0)])


def test_number_phases_absent_means_three_on_a_single_phase_connector(
    tmp_path: Path, csms: CsmsThread
) -> None:
    """1.6 section 7.13 ChargingSchedulePeriod numberPhases: "If a number of phases is needed,
    numberPhases=3 will be assumed unless another number is given", also on a connector wired
    single phase: 6900 W is 10 A (230 V x 3), enforced and reported alike; numberPhases 1
    makes it 30 A."""
    station = make_bench(tmp_path, csms)
    station.config.write_text(station.config.read_text().replace("phases = 3", "phases = 1"))
    station.start()
    try:
        body = profile(1, "TxDefaultProfile", 6900, unit="W", kind="Absolute", start=now_iso(-60))
        assert set_profile(station, 1, body) == "Accepted"
        assert limits(composite(station)) == [(0, 10.0)]
        station.charge()
        offered(station, 10)
        body["chargingSchedule"]["chargingSchedulePeriod"][0]["numberPhases"] = 1
        assert set_profile(station, 1, body) == "Accepted"
        periods = composite(station)["chargingSchedule"]["chargingSchedulePeriod"]
        assert periods == [{"startPeriod": 0, "limit": 30.0, "numberPhases": 1}]
        offered(station, 30)
    finally:
        station.kill()


def test_get_composite_schedule_station_wide(bench: Bench) -> None:
    cap = profile(1, "ChargePointMaxProfile", 20, kind="Absolute", start=now_iso(-60))
    assert set_profile(bench, 0, cap) == "Accepted"
    reply = composite(bench, "A", connector=0)
    assert reply["status"] == "Accepted"
    assert reply["connectorId"] == 0
    assert limits(reply) == [(0, 20.0)]
    # A connector the station does not have.
    assert composite(bench, "A", connector=5)["status"] == "Rejected"


def test_get_composite_schedule_starts_at_the_request_instant(bench: Bench) -> None:
    """1.6 §5.7 / K08: the schedule runs from the request's own instant. A profile that began
    earlier in that same second is in force from period 0 (no first period at the hardware
    limit, as a start truncated to the second gave)."""
    now = datetime.now(UTC)
    if now.microsecond > 300_000:  # leave most of a second for the two calls
        time.sleep(1.05 - now.microsecond / 1e6)
        now = datetime.now(UTC)
    begun = now.replace(microsecond=0) + timedelta(milliseconds=400)
    time.sleep(max(0.0, (begun - datetime.now(UTC)).total_seconds()) + 0.05)
    body = profile(1, "TxDefaultProfile", 10, kind="Absolute", start=iso(begun))
    assert set_profile(bench, 1, body) == "Accepted"
    reply = composite(bench)
    start = datetime.fromisoformat(reply["chargingSchedule"]["startSchedule"])
    assert start > begun  # the request's instant, milliseconds kept
    assert limits(reply) == [(0, 10.0)]


def test_get_composite_schedule_two_connectors_share_the_charge_point_max(
    tmp_path: Path, csms: CsmsThread
) -> None:
    """K08 / 1.6 §5.7: the composite is the limit in force, local limits included: two
    connectors charging under a 20 A ChargePointMaxProfile each get and report 10 A."""
    station = make_bench(tmp_path, csms, evses=2)
    station.start()
    try:
        cap = profile(1, "ChargePointMaxProfile", 20, kind="Absolute", start=now_iso(-60))
        assert set_profile(station, 0, cap) == "Accepted"
        station.charge(1, max_current_a=32)
        station.charge(2, token=OTHER_TOKEN, max_current_a=32)
        for connector in (1, 2):
            assert limits(composite(station, connector=connector)) == [(0, 10.0)]
            station.sim().wait_until(lambda s: s["pwm"] and s["offered_a"] == 10, evse=connector, timeout=15)
        assert limits(composite(station, connector=0)) == [(0, 20.0)]
    finally:
        station.kill()


def test_get_composite_schedule_station_wide_without_profiles(bench: Bench) -> None:
    reply = composite(bench, "A", connector=0)
    assert reply["status"] == "Accepted"
    assert reply["connectorId"] == 0
    assert all(0 < lim <= 32 for _, lim in limits(reply))


def test_clear_charging_profile_by_id_restores_limit(bench: Bench) -> None:
    assert set_profile(bench, 0, profile(7, "TxDefaultProfile", 10)) == "Accepted"
    bench.charge()
    offered(bench, 10, timeout=15)
    reply = bench.call("ClearChargingProfile", {"id": 7})
    assert reply["status"] == "Accepted"
    assert limits(composite(bench)) == [(0, 32.0)]
    offered(bench, 32)


def test_clear_charging_profile_unknown_id(bench: Bench) -> None:
    assert set_profile(bench, 0, profile(7, "TxDefaultProfile", 10)) == "Accepted"
    assert bench.call("ClearChargingProfile", {"id": 99})["status"] == "Unknown"
    cleared = {"connectorId": 0, "chargingProfilePurpose": "TxProfile"}
    assert bench.call("ClearChargingProfile", cleared)["status"] == "Unknown"
    # The installed profile is untouched.
    bench.charge()
    offered(bench, 10, timeout=15)
    # Cleared by its purpose and stack level instead of its id.
    cleared = {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 0}
    assert bench.call("ClearChargingProfile", cleared)["status"] == "Accepted"
    assert limits(composite(bench)) == [(0, 32.0)]


def test_set_charging_profile_below_minimum_suspends_evse(bench: Bench) -> None:
    bench.charge()
    mark = bench.mark()
    assert set_profile(bench, 0, profile(1, "TxDefaultProfile", 4)) == "Accepted"
    # The PWM stops at once; the simulated EV stays in C, so the contactor opens under load
    # once the EV has had its 6 s to react (IEC 61851-1 Table A.6, seq. 10.2).
    status = bench.sim().wait_until(lambda s: not s["pwm"], timeout=15)
    assert status["duty_percent"] == 100
    assert status["offered_a"] == 0
    status = bench.sim().wait_until(lambda s: not s["contactor_closed"], timeout=15)
    assert status["duty_percent"] == 100
    assert status["offered_a"] == 0
    bench.status(1, "SuspendedEVSE", after=mark)
    assert status["transaction_id"] is not None  # the transaction goes on
    # Raising the limit (same id: the profile is replaced) resumes by itself.
    mark = bench.mark()
    assert set_profile(bench, 0, profile(1, "TxDefaultProfile", 10)) == "Accepted"
    status = offered(bench, 10)
    bench.sim().wait_until(lambda s: s["contactor_closed"], timeout=15)
    bench.status(1, "Charging", after=mark)
    assert len(bench.calls("StartTransaction")) == 1
    assert not bench.calls("StopTransaction")


def test_set_charging_profile_persists_across_restart(bench: Bench) -> None:
    body = profile(3, "TxDefaultProfile", 10, kind="Absolute", start=now_iso(-60))
    assert set_profile(bench, 0, body) == "Accepted"
    assert limits(composite(bench)) == [(0, 10.0)]
    assert bench.stop() == 0
    bench.start()
    assert limits(composite(bench)) == [(0, 10.0)]
    bench.charge()
    offered(bench, 10, timeout=15)


def test_remote_start_transaction_with_charging_profile(bench: Bench) -> None:
    bench.sim().plug(1)
    # Only a TxProfile may come with a remote start.
    wrong = {"connectorId": 1, "idTag": TOKEN, "chargingProfile": profile(5, "TxDefaultProfile", 8)}
    assert bench.call("RemoteStartTransaction", wrong)["status"] == "Rejected"
    mark = bench.mark()
    reply = bench.call(
        "RemoteStartTransaction",
        {"connectorId": 1, "idTag": TOKEN, "chargingProfile": profile(5, "TxProfile", 8)},
    )
    assert reply["status"] == "Accepted"
    bench.wait("StartTransaction", after=mark)
    bench.sim().charge(1, max_current_a=16)
    status = offered(bench, 8, timeout=15)
    bench.sim().wait_until(lambda s: s["contactor_closed"], timeout=15)
    assert status["duty_percent"] == pytest.approx(13.33, abs=0.02)
    assert limits(composite(bench)) == [(0, 8.0)]


def test_remote_start_transaction_with_charging_profile_ends_with_transaction(bench: Bench) -> None:
    bench.sim().plug(1)
    mark = bench.mark()
    body = {"connectorId": 1, "idTag": TOKEN, "chargingProfile": profile(5, "TxProfile", 8)}
    assert bench.call("RemoteStartTransaction", body)["status"] == "Accepted"
    bench.wait("StartTransaction", after=mark)
    tx_id = csms_tx_id(bench)
    assert limits(composite(bench)) == [(0, 8.0)]
    mark = bench.mark()
    assert bench.call("RemoteStopTransaction", {"transactionId": tx_id})["status"] == "Accepted"
    bench.wait("StopTransaction", after=mark)
    # A TxProfile lives only as long as its transaction.
    eventually(lambda: limits(composite(bench)) == [(0, 32.0)], timeout=15, what="TxProfile removed")


def test_set_charging_profile_tx_profile_station_reports_csms_transaction_id(bench: Bench) -> None:
    bench.charge()
    tx_id = csms_tx_id(bench)
    assert set_profile(bench, 1, profile(2, "TxProfile", 14, tx_id=tx_id)) == "Accepted"
    bench.sim().wait_until(lambda s: s["transaction_id"] == str(tx_id), timeout=15)


# -- Reservation -------------------------------------------------------------------------------


def test_reserve_now_accepted_and_reserved(bench: Bench) -> None:
    mark = bench.mark()
    assert reserve(bench, 1, TOKEN) == "Accepted"
    bench.status(1, "Reserved", after=mark)
    assert bench.sim().status(1)["connector_status"] == "Reserved"


def test_reserve_now_other_id_tag_refused(bench: Bench) -> None:
    assert reserve(bench, 1, OTHER_TOKEN) == "Accepted"
    mark = bench.mark()
    bench.sim().plug(1)
    bench.sim().swipe(TOKEN)
    no_call(bench, "StartTransaction", mark, 2.0)
    assert bench.sim().status(1)["transaction_id"] is None


def test_reserve_now_reserved_id_tag_starts_transaction(bench: Bench) -> None:
    mark = bench.mark()
    assert reserve(bench, 42, TOKEN) == "Accepted"
    bench.status(1, "Reserved", after=mark)
    start = bench.charge()
    assert start["idTag"] == TOKEN
    assert start["reservationId"] == 42
    # The reservation is used up: cancelling it now finds nothing.
    assert bench.call("CancelReservation", {"reservationId": 42})["status"] == "Rejected"


def test_reserve_now_remote_start_other_id_tag_rejected(bench: Bench) -> None:
    assert reserve(bench, 12, OTHER_TOKEN) == "Accepted"
    bench.sim().plug(1)
    reply = bench.call("RemoteStartTransaction", {"connectorId": 1, "idTag": TOKEN})
    assert reply["status"] == "Rejected"
    mark = bench.mark()
    reply = bench.call("RemoteStartTransaction", {"connectorId": 1, "idTag": OTHER_TOKEN})
    assert reply["status"] == "Accepted"
    start = bench.wait("StartTransaction", after=mark)
    assert start["idTag"] == OTHER_TOKEN
    assert start["reservationId"] == 12


def test_reserve_now_remote_start_other_id_tag_rejected_when_authorizing(bench: Bench) -> None:
    change = {"key": "AuthorizeRemoteTxRequests", "value": "true"}
    assert bench.call("ChangeConfiguration", change)["status"] == "Accepted"
    assert reserve(bench, 13, OTHER_TOKEN) == "Accepted"
    bench.sim().plug(1)
    mark = bench.mark()
    reply = bench.call("RemoteStartTransaction", {"connectorId": 1, "idTag": TOKEN})
    assert reply["status"] == "Rejected"
    no_call(bench, "StartTransaction", mark, 1.5)


def test_reserve_now_expiry_returns_to_available(bench: Bench) -> None:
    mark = bench.mark()
    assert reserve(bench, 3, TOKEN, expires_in=2) == "Accepted"
    bench.status(1, "Reserved", after=mark)
    bench.status(1, "Available", after=mark, timeout=15)
    assert bench.call("CancelReservation", {"reservationId": 3})["status"] == "Rejected"


def test_cancel_reservation_accepted(bench: Bench) -> None:
    mark = bench.mark()
    assert reserve(bench, 4, OTHER_TOKEN) == "Accepted"
    bench.status(1, "Reserved", after=mark)
    mark = bench.mark()
    assert bench.call("CancelReservation", {"reservationId": 4})["status"] == "Accepted"
    bench.status(1, "Available", after=mark)
    # Anyone may charge again.
    assert bench.charge()["idTag"] == TOKEN


def test_reserve_now_persists_across_restart(bench: Bench) -> None:
    mark = bench.mark()
    assert reserve(bench, 11, OTHER_TOKEN) == "Accepted"
    bench.status(1, "Reserved", after=mark)
    assert bench.stop() == 0
    mark = bench.mark()
    bench.start()
    assert bench.wait("StatusNotification", lambda p: p["connectorId"] == 1, after=mark)["status"] == (
        "Reserved"
    )
    assert bench.call("CancelReservation", {"reservationId": 11})["status"] == "Accepted"


def test_cancel_reservation_unknown_rejected(bench: Bench) -> None:
    assert bench.call("CancelReservation", {"reservationId": 12345})["status"] == "Rejected"


def test_reserve_now_occupied(bench: Bench) -> None:
    bench.sim().plug(1)
    bench.sim().wait_until(lambda s: s["cp_state"] == "B")
    assert reserve(bench, 5, OTHER_TOKEN) == "Occupied"
    bench.sim().swipe(TOKEN)
    bench.wait("StartTransaction")
    csms_tx_id(bench)
    assert reserve(bench, 6, OTHER_TOKEN) == "Occupied"


def test_reserve_now_second_reservation_on_reserved_connector_occupied(bench: Bench) -> None:
    assert reserve(bench, 1, TOKEN) == "Accepted"
    assert reserve(bench, 2, OTHER_TOKEN) == "Occupied"
    # The same reservation id replaces the reservation.
    assert reserve(bench, 1, OTHER_TOKEN) == "Accepted"


def test_reserve_now_faulted(bench: Bench) -> None:
    mark = bench.mark()
    bench.sim().fault("rcd")
    bench.status(1, "Faulted", after=mark)
    assert reserve(bench, 7, TOKEN) == "Faulted"


def test_reserve_now_unavailable(bench: Bench) -> None:
    mark = bench.mark()
    reply = bench.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert reply["status"] == "Accepted"
    bench.status(1, "Unavailable", after=mark)
    assert reserve(bench, 8, TOKEN) == "Unavailable"


def test_reserve_now_connector_faulted_terminates_reservation(bench: Bench) -> None:
    """1.6 section 5.13: "A reservation SHALL be terminated on the Charge Point when ... (3)
    when the Charge Point or connector are set to Faulted or Unavailable." 1.6 has no message
    for it: the CSMS sees the Faulted status, and CancelReservation then finds nothing."""
    mark = bench.mark()
    assert reserve(bench, 14, OTHER_TOKEN) == "Accepted"
    bench.status(1, "Reserved", after=mark)
    mark = bench.mark()
    bench.sim().fault("rcd")
    bench.status(1, "Faulted", after=mark)
    assert bench.call("CancelReservation", {"reservationId": 14})["status"] == "Rejected"
    eventually(lambda: bench.db("SELECT id FROM reservations") == [], what="reservation row deleted")


def test_reserve_now_connector_unavailable_terminates_reservation(bench: Bench) -> None:
    """1.6 section 5.13 (3): a connector set Unavailable loses its reservation; it is not
    Reserved again when it becomes Operative."""
    mark = bench.mark()
    assert reserve(bench, 15, OTHER_TOKEN) == "Accepted"
    bench.status(1, "Reserved", after=mark)
    mark = bench.mark()
    reply = bench.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert reply["status"] == "Accepted"
    bench.status(1, "Unavailable", after=mark)
    mark = bench.mark()
    reply = bench.call("ChangeAvailability", {"connectorId": 1, "type": "Operative"})
    assert reply["status"] == "Accepted"
    bench.status(1, "Available", after=mark)
    assert bench.call("CancelReservation", {"reservationId": 15})["status"] == "Rejected"
    # Anyone may charge again.
    assert bench.charge()["idTag"] == TOKEN


def test_reserve_now_connector_zero(bench: Bench) -> None:
    reply = bench.call("GetConfiguration", {"key": ["ReserveConnectorZeroSupported"]})
    assert reply["configurationKey"][0]["value"] == "true"
    assert reserve(bench, 9, TOKEN, connector=0) == "Accepted"
    start = bench.charge()
    assert start["reservationId"] == 9


def test_reserve_now_parent_id_tag(bench: Bench) -> None:
    def authorize(p: dict[str, Any]) -> dict[str, Any]:
        return {"idTagInfo": {"status": "Accepted", "parentIdTag": "GROUP-1"}}

    bench.csms.set_reply("Authorize", authorize)
    assert reserve(bench, 10, OTHER_TOKEN, parentIdTag="GROUP-1") == "Accepted"
    start = bench.charge()  # TOKEN, whose Authorize answer names the same parent
    assert start["idTag"] == TOKEN
    assert start["reservationId"] == 10


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
