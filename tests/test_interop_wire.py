"""Liberal in what the station accepts: the deviations real CSMSs and test tools send.

Interop finding (shared reference, 2026-12): CSMSs built on Python send date-times without
a UTC offset (``datetime.now().isoformat()``), BootNotification ``currentTime`` among them;
a station that refuses them never registers. The station reads them as UTC, warns once,
and still sends only strictly valid frames. A naive CALL from the development CSMS and a
refused NotifyEvent run in-process in test_inproc_interop_wire.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.server import Server, ServerConnection, serve

from controller.ocpp import ocppj
from controller.ocpp.ocppj import Codec, RpcError, check
from hil.station import config_text
from tests.ocpp_harness import ROOT, Bench, eventually

NAIVE = "2026-12-07T08:00:00.123456"  # datetime.now().isoformat()


# -- the one place: the schema check of what the CSMS sends ------------------------------


def test_naive_date_time_in_a_call_is_read_as_utc() -> None:
    """1.6 SetChargingProfile validFrom, nested two levels down."""
    payload = {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "validFrom": NAIVE,
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6}],
            },
        },
    }
    check("1.6", "SetChargingProfile", payload, lenient=True)
    assert payload["csChargingProfiles"]["validFrom"] == NAIVE + "Z"  # type: ignore[index]


def test_naive_date_time_in_a_list_of_a_call_is_read_as_utc() -> None:
    """SendLocalList idTagInfo expiryDate, inside the array."""
    payload = {
        "listVersion": 1,
        "updateType": "Full",
        "localAuthorizationList": [{"idTag": "A", "idTagInfo": {"status": "Accepted", "expiryDate": NAIVE}}],
    }
    check("1.6", "SendLocalList", payload, lenient=True)
    assert payload["localAuthorizationList"][0]["idTagInfo"]["expiryDate"] == NAIVE + "Z"  # type: ignore[index]


def test_naive_date_time_and_unknown_member_in_a_callresult_are_accepted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """BootNotification currentTime (2.0.1) and 1.6 Authorize idTagInfo expiryDate; an extra
    member of an answer is dropped with one warning, however often it comes."""
    ocppj._warned.clear()
    for _ in range(3):
        boot = {"status": "Accepted", "currentTime": NAIVE, "interval": 300, "vendorTimezone": "CET"}
        check("2.0.1", "BootNotification", boot, response=True, lenient=True)
        assert boot == {"status": "Accepted", "currentTime": NAIVE + "Z", "interval": 300}
    authorize = {"idTagInfo": {"status": "Accepted", "expiryDate": "2026-12-07T08:00:00"}}
    check("1.6", "Authorize", authorize, response=True, lenient=True)
    assert authorize["idTagInfo"]["expiryDate"] == "2026-12-07T08:00:00Z"
    warnings = [r.getMessage() for r in caplog.records if r.name == "controller.ocpp.ocppj"]
    assert len(warnings) == 3, warnings  # currentTime, vendorTimezone, expiryDate: once each


@pytest.mark.parametrize(
    "bad",
    [
        "2026-13-07T08:00:00",  # no such month: still a TypeConstraint/Property error
        "2026-12-07 08:00:00",  # not ISO 8601 with a T
        "yesterday",
    ],
)
def test_other_bad_date_times_are_still_refused(bad: str) -> None:
    with pytest.raises(RpcError) as caught:
        check(
            "1.6",
            "ReserveNow",
            {"connectorId": 1, "expiryDate": bad, "idTag": "A", "reservationId": 1},
            lenient=True,
        )
    assert caught.value.kind == "property"


def test_unknown_member_in_a_call_is_still_a_format_violation() -> None:
    """OCPP 2.0.1 Part 4 ch. 9 / OCPP-J 1.6 errata 3.2: classes have additionalProperties
    false and a receiver does not accept other members in a request: the CSMS is told."""
    with pytest.raises(RpcError) as caught:
        check("2.0.1", "ClearCache", {"surprise": 1}, lenient=True)
    assert caught.value.kind == "format"


def test_what_the_station_sends_stays_strict() -> None:
    with pytest.raises(RpcError):
        Codec("2.0.1").call("Heartbeat", {"extra": 1})
    with pytest.raises(RpcError):
        Codec("1.6").call(
            "StartTransaction", {"connectorId": 1, "idTag": "X", "meterStart": 0, "timestamp": NAIVE}
        )


# -- end to end: a CSMS whose answers carry naive times and extra members ----------------


class SloppyCsms:
    """A CSMS that answers every request, with naive date-times and an unknown member."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.server: Server = serve(self._serve, "127.0.0.1", 0, subprotocols=[ocppj.SUBPROTOCOLS[version]])  # type: ignore[list-item]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}/ocpp"

    def _answer(self, action: str) -> dict[str, Any]:
        naive = datetime.now(UTC).replace(tzinfo=None).isoformat()
        if action == "BootNotification":
            return {"status": "Accepted", "currentTime": naive, "interval": 300, "vendorNote": "hello"}
        if action == "Heartbeat":
            return {"currentTime": naive}
        if action in ("Authorize", "StartTransaction", "StopTransaction"):
            return {"idTagInfo": {"status": "Accepted", "expiryDate": naive}, "transactionId": 1}
        return {}

    def _serve(self, ws: ServerConnection) -> None:
        for text in ws:
            frame = json.loads(text)
            if frame[0] != 2:
                continue
            self.calls.append((frame[2], frame[3]))
            ws.send(json.dumps([3, frame[1], self._answer(frame[2])]))

    def actions(self) -> list[str]:
        return [action for action, _ in self.calls]

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(params=["1.6", "2.0.1"])
def sloppy(request: pytest.FixtureRequest) -> Iterator[SloppyCsms]:
    server = SloppyCsms(request.param)
    yield server
    server.close()


def test_station_registers_with_a_csms_that_sends_naive_current_time(
    tmp_path: Path, sloppy: SloppyCsms
) -> None:
    """BootNotification currentTime without offset: the station registers (StatusNotification
    follows, no second BootNotification) and warns once."""
    (tmp_path / "evse.toml").write_text(config_text(sloppy.url, version=sloppy.version))
    log = tmp_path / "daemon.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller", "run", "--config", str(tmp_path / "evse.toml")],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=dict(os.environ),
        )
    try:
        eventually(lambda: "StatusNotification" in sloppy.actions(), timeout=20, what="StatusNotification")
        time.sleep(0.5)
        assert sloppy.actions().count("BootNotification") == 1, sloppy.actions()
        text = log.read_text()
        assert text.count("BootNotification from the CSMS: currentTime") == 1, text
        assert "member 'vendorNote' the schema does not know" in text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- NotifyEvent eventIds (2.0.1) ---------------------------------------------------------


def event_ids(bench: Bench, after: int = 0) -> list[int]:
    return [item["eventId"] for entry in bench.calls("NotifyEvent")[after:] for item in entry["eventData"]]


def rcd_trip(bench: Bench) -> None:
    """One RCD trip and its NotifyEvent (N07 HardWiredNotification)."""
    mark = bench.mark()
    bench.sim().fault("rcd")
    bench.wait("NotifyEvent", lambda p: p["eventData"][0]["component"]["name"] == "RCD", after=mark)
    bench.sim().fault("rcd", False)  # latched until the restart


def test_n07_event_ids_never_repeat_across_restarts(bench201: Bench) -> None:
    """CitrineOS stores each eventId once per station and refuses a repeat with InternalError:
    an eventId (EventDataType: "Identifies the event") is never used twice, restarts included,
    a kill -9 too."""
    rcd_trip(bench201)
    first = event_ids(bench201)
    bench201.stop()
    bench201.start()
    rcd_trip(bench201)
    bench201.kill()
    bench201.start()
    rcd_trip(bench201)
    ids = event_ids(bench201)
    assert len(ids) == len(set(ids)) >= 3, ids
    assert ids[: len(first)] == first and min(ids[len(first) :]) > max(first)
