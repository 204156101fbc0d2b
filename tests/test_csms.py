"""The bundled development CSMS (hil/csms/), driven by a minimal OCPP 1.6 station and a
hand-made OCPP 2.0.1 one on a plain websocket."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import signal
import threading
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import pytest
from ocpp.exceptions import InternalError, OCPPError  # type: ignore[import-untyped]
from ocpp.messages import Call, CallResult, validate_payload  # type: ignore[import-untyped]
from ocpp.routing import on  # type: ignore[import-untyped]
from ocpp.v16 import ChargePoint, call, call_result  # type: ignore[import-untyped]
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.headers import build_authorization_basic
from websockets.typing import Subprotocol

from hil.csms import CallErrorReply, CsmsThread, DevCsms, Entry, describe, main
from tests.csms_process import banner_urls, csms_process, ended

T = TypeVar("T")
START = "2025-01-01T12:00:00Z"


def fields(entry: Entry) -> dict[str, Any]:
    """The payload of a timeline entry that has fields (not a raw frame)."""
    assert isinstance(entry.payload, dict), entry
    return entry.payload


def run(coro: Awaitable[T], timeout: float = 5) -> T:
    """Run a test coroutine on a fresh loop, with a timeout."""

    async def limited() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(limited())


class Station(ChargePoint):  # type: ignore[misc]
    """A bare OCPP 1.6 station: answers ChangeConfiguration, nothing else."""

    def __init__(self, station_id: str, ws: ClientConnection) -> None:
        super().__init__(station_id, ws)
        self.config: dict[str, str] = {}
        self.ws = ws

    @on("ChangeConfiguration")  # type: ignore[untyped-decorator]
    def on_change_configuration(self, key: str, value: str, **_: Any) -> call_result.ChangeConfiguration:
        self.config[key] = value
        return call_result.ChangeConfiguration(status="Accepted")

    async def boot(self) -> call_result.BootNotification:
        return await self.call(
            call.BootNotification(charge_point_model="PiCharger", charge_point_vendor="ExampleVendor")
        )

    async def start_tx(
        self, id_tag: str = "04A1B2C3", timestamp: str = START
    ) -> call_result.StartTransaction:
        return await self.call(
            call.StartTransaction(connector_id=1, id_tag=id_tag, meter_start=1000, timestamp=timestamp)
        )


@contextlib.asynccontextmanager
async def station(url: str, station_id: str = "CP001", **kwargs: Any) -> AsyncIterator[Station]:
    """A connected station whose receive loop runs in a task."""
    async with connect(f"{url}/{station_id}", subprotocols=[Subprotocol("ocpp1.6")], **kwargs) as ws:
        cp = Station(station_id, ws)
        task = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await task


@contextlib.asynccontextmanager
async def running(**kwargs: Any) -> AsyncIterator[DevCsms]:
    kwargs.setdefault("quiet", True)
    csms = DevCsms(**kwargs)
    await csms.start()
    try:
        yield csms
    finally:
        await csms.stop()


def test_boot_accepted() -> None:
    async def scenario() -> None:
        async with running(heartbeat_interval=60) as csms, station(csms.url) as cp:
            reply = await cp.boot()
            assert reply.status == "Accepted"
            assert reply.interval == 60
            assert reply.current_time.endswith("Z")
            assert csms.calls("BootNotification") == [
                {"chargePointModel": "PiCharger", "chargePointVendor": "ExampleVendor"}
            ]
            kinds = [(e.direction, e.kind, e.action) for e in csms.timeline]
            assert kinds == [
                ("in", "connect", ""),
                ("in", "call", "BootNotification"),
                ("out", "result", "BootNotification"),
            ]
            assert csms.port > 0 and csms.url == f"ws://127.0.0.1:{csms.port}/ocpp"

    run(scenario())


def test_boot_pending_then_accepted() -> None:
    async def scenario() -> None:
        async with running(boot_status="Pending") as csms, station(csms.url) as cp:
            assert (await cp.boot()).status == "Pending"
            csms.boot_status = "Accepted"
            assert (await cp.boot()).status == "Accepted"
            assert len(csms.calls("BootNotification", station="CP001")) == 2

    run(scenario())


def test_start_stop_with_idempotent_start_redelivery() -> None:
    async def scenario() -> None:
        async with running(auth={"BAD": "Blocked"}) as csms:
            async with station(csms.url) as cp:
                first = await cp.start_tx()
                assert first.transaction_id == 1
                assert first.id_tag_info["status"] == "Accepted"
            mark = len(csms.timeline)
            # Reconnect and redeliver the same StartTransaction: same transaction id.
            async with station(csms.url) as cp:
                assert (await cp.start_tx()).transaction_id == 1
                entry = await csms.wait_for("StartTransaction", station="CP001", after=mark, timeout=1)
                assert fields(entry)["meterStart"] == 1000
                other = await cp.start_tx(id_tag="BAD", timestamp="2025-01-01T13:00:00Z")
                assert other.transaction_id == 2
                assert other.id_tag_info["status"] == "Blocked"
                assert csms.transactions[1]["stop"] is None
                stop = call.StopTransaction(
                    meter_stop=5000, timestamp=START, transaction_id=1, reason="Local"
                )
                await cp.call(stop)
                tx = csms.transactions[1]
                assert tx["stop"]["meterStop"] == 5000
                assert tx["stop_count"] == 1
                assert tx["start"]["idTag"] == "04A1B2C3"
                assert tx["station"] == "CP001"
                await cp.call(stop)  # a redelivered stop is counted, so a test can spot it
                assert csms.transactions[1]["stop_count"] == 2
                blocked = await csms.wait_for("StartTransaction", where=lambda p: p["idTag"] == "BAD")
                assert fields(blocked)["timestamp"] == "2025-01-01T13:00:00Z"
            assert sorted(csms.transactions) == [1, 2]
            assert len(csms.calls("StartTransaction")) == 3

    run(scenario())


def test_csms_initiated_call_answered_by_the_station() -> None:
    async def scenario() -> None:
        async with running() as csms, station(csms.url) as cp:
            session = await csms.wait_station("CP001", timeout=1)
            result = await session.call("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "30"})
            assert result == {"status": "Accepted"}
            assert cp.config == {"HeartbeatInterval": "30"}
            out = [e for e in csms.timeline if e.action == "ChangeConfiguration"]
            assert [(e.direction, e.kind) for e in out] == [("out", "call"), ("in", "result")]
            assert out[0].unique_id == out[1].unique_id

    run(scenario())


def test_callerror_from_the_station_raises() -> None:
    async def scenario() -> None:
        async with running() as csms, station(csms.url):
            session = await csms.wait_station("CP001", timeout=1)
            with pytest.raises(CallErrorReply) as caught:
                await session.call("Reset", {"type": "Soft"}, timeout=2)
            assert caught.value.code == "NotImplemented"
            assert csms.timeline[-1].kind == "error"
            # An invalid outgoing payload never leaves the CSMS.
            sent = len(csms.timeline)
            with pytest.raises(OCPPError):
                await session.call("ChangeConfiguration", {"key": 1})
            assert len(csms.timeline) == sent

    run(scenario())


def test_reply_and_error_overrides() -> None:
    async def scenario() -> None:
        async with running() as csms, station(csms.url) as cp:
            csms.errors["Heartbeat"] = ("InternalError", "test")
            with pytest.raises(InternalError):
                await cp.call(call.Heartbeat(), suppress=False)
            del csms.errors["Heartbeat"]
            assert (await cp.call(call.Heartbeat())).current_time.endswith("Z")

            csms.replies["DataTransfer"] = {"status": "Rejected"}
            reply = await cp.call(call.DataTransfer(vendor_id="acme"))
            assert reply.status == "Rejected"
            csms.replies["DataTransfer"] = lambda p: {"status": "Accepted", "data": p["vendorId"]}
            reply = await cp.call(call.DataTransfer(vendor_id="acme"))
            assert (reply.status, reply.data) == ("Accepted", "acme")

    run(scenario())


def test_invalid_payload_from_the_station_gets_a_callerror() -> None:
    async def scenario() -> None:
        async with running() as csms, station(csms.url) as cp:
            await cp.ws.send('[2,"1","BootNotification",{"chargePointVendor":"ExampleVendor"}]')
            entry = await csms.wait_for("BootNotification", timeout=1)
            assert entry.unique_id == "1"
            errors = [e for e in csms.timeline if e.kind == "error" and e.direction == "out"]
            assert errors and errors[0].action == "BootNotification"
            assert isinstance(errors[0].payload, dict) and errors[0].payload["code"] in (
                "ProtocolError",
                "OccurenceConstraintViolation",
            )

    run(scenario())


def test_basic_auth() -> None:
    async def scenario() -> None:
        async with running(passwords={"CP001": "secret"}) as csms:
            good = {"Authorization": build_authorization_basic("CP001", "secret")}
            async with station(csms.url, additional_headers=good) as cp:
                assert (await cp.boot()).status == "Accepted"
            for headers in ({"Authorization": build_authorization_basic("CP001", "wrong")}, {}):
                with pytest.raises(InvalidStatus) as caught:
                    async with station(csms.url, additional_headers=headers):
                        pass
                assert caught.value.response.status_code == 401
            # The right password for another station does not open this one.
            with pytest.raises(InvalidStatus):
                async with station(csms.url, "CP002", additional_headers=good):
                    pass
            assert [fields(e)["status"] for e in csms.timeline if e.kind == "refused"] == [401, 401, 401]

    run(scenario())


def test_wrong_subprotocol_refused() -> None:
    async def scenario() -> None:
        async with running() as csms:
            for subprotocols in ([Subprotocol("ocpp2.0.1")], None):
                with pytest.raises(InvalidStatus) as caught:
                    async with connect(f"{csms.url}/CP001", subprotocols=subprotocols):
                        pass
                assert caught.value.response.status_code == 400
            assert not csms.stations
            assert [e.kind for e in csms.timeline] == ["refused", "refused"]

    run(scenario())


def test_unsupported_version() -> None:
    for versions in (("2.1",), ("1.6", "2.0"), ()):
        with pytest.raises(ValueError):
            DevCsms(versions=versions)
    assert DevCsms(versions=("2.0.1",)).versions == ("2.0.1",)


def test_raw_frames_both_ways() -> None:
    async def scenario() -> None:
        async with running() as csms, station(csms.url) as cp:
            mark = len(csms.timeline)
            await cp.ws.send("not json")
            await cp.boot()  # frames are handled in order: the raw one is recorded by now
            raw_in = [e for e in csms.timeline[mark:] if e.kind == "raw"]
            assert [(e.direction, e.payload) for e in raw_in] == [("in", "not json")]

            session = await csms.wait_station("CP001")
            await session.send_raw("[9, 'garbage'")
            assert (csms.timeline[-1].direction, csms.timeline[-1].kind) == ("out", "raw")
            # The station shrugs it off and the session still works.
            assert await session.call("ChangeConfiguration", {"key": "k", "value": "v"}) == {
                "status": "Accepted"
            }

    run(scenario())


def test_disconnect_and_wait_for_next() -> None:
    async def scenario() -> None:
        async with running() as csms:
            async with station(csms.url) as cp:
                await cp.boot()
                await csms.disconnect("CP001")
                assert "CP001" not in csms.stations
                assert csms.timeline[-1].kind == "disconnect"
                await asyncio.wait_for(cp.ws.wait_closed(), 1)
            with pytest.raises(TimeoutError):
                await csms.wait_for("BootNotification", after=len(csms.timeline), timeout=0.1)
            with pytest.raises(LookupError):
                csms.station("CP001")

    run(scenario())


def test_timeline_lines_printed() -> None:
    out = io.StringIO()

    async def scenario() -> None:
        async with running(quiet=False, out=out) as csms, station(csms.url) as cp:
            await cp.boot()
            await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
            await cp.start_tx()
            sampled = [
                {"value": "3200", "measurand": "Power.Active.Import", "unit": "W"},
                {"value": "1234.5", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            ]
            await cp.call(
                call.MeterValues(
                    connector_id=1,
                    transaction_id=1,
                    meter_value=[{"timestamp": START, "sampled_value": sampled}],
                )
            )
            assert describe(csms.timeline[-1]) == "CP001 <- MeterValues: ok"

    run(scenario())
    text = out.getvalue()
    lines = text.splitlines()
    assert all(line[2] == ":" and line[12:14] == "  " for line in lines), text
    assert "CP001 connected (ocpp1.6, /ocpp/CP001)" in text
    assert "CP001 -> BootNotification  vendor=ExampleVendor model=PiCharger" in text
    assert "CP001 <- BootNotification: Accepted interval=300" in text
    assert "CP001 -> StatusNotification  connector 1: Charging" in text
    assert "CP001 -> StartTransaction  connector 1 idTag 04A1B2C3 meterStart 1000 Wh" in text
    assert "CP001 <- StartTransaction: transaction 1 (Accepted)" in text
    assert "CP001 -> MeterValues  connector 1 tx 1: 3.2 kW, 1234.5 Wh" in text
    assert "CP001 disconnected" in lines[-1]


def test_thread_facade() -> None:
    connected = threading.Event()
    done = threading.Event()

    async def client(url: str) -> None:
        async with station(url) as cp:
            await cp.boot()
            connected.set()
            while not done.is_set():
                await asyncio.sleep(0.01)

    with CsmsThread(quiet=True, boot_status="Pending") as csms:
        worker = threading.Thread(target=run, args=(client(csms.url),), daemon=True)
        worker.start()
        csms.wait_station("CP001", timeout=2)
        assert fields(csms.wait_for("BootNotification", timeout=2))["chargePointVendor"] == "ExampleVendor"
        assert connected.wait(2)
        assert csms.call("CP001", "ChangeConfiguration", {"key": "a", "value": "b"}) == {"status": "Accepted"}
        csms.set_boot_status("Accepted")
        assert csms.csms.boot_status == "Accepted"
        csms.send_raw("CP001", "hello")
        assert csms.timeline[-1].kind == "raw"
        assert csms.calls("BootNotification") and csms.transactions == {}
        assert csms.connected() == ["CP001"]
        csms.disconnect("CP001")
        done.set()
        worker.join(2)
        assert csms.connected() == []
        with pytest.raises(LookupError):
            csms.call("CP001", "Reset", {"type": "Soft"})


def test_command_line_runs_until_interrupted() -> None:
    with csms_process("--port", "0", "--boot-status", "Pending", "--heartbeat", "42") as proc:
        (url,) = banner_urls(proc)

        async def boot() -> call_result.BootNotification:
            async with station(url) as cp:
                return await cp.boot()

        reply = run(boot())
        assert (reply.status, reply.interval) == ("Pending", 42)
        proc.send_signal(signal.SIGINT)
        out, err = ended(proc, 5)
    assert proc.returncode == 0, err
    assert "CP001 <- BootNotification: Pending interval=42" in out


# --- OCPP 2.0.1 ---------------------------------------------------------------------------------

TOKEN = {"idToken": "04A1B2C3", "type": "ISO14443"}
BOOT_201: dict[str, Any] = {
    "reason": "PowerUp",
    "chargingStation": {"vendorName": "ExampleVendor", "model": "PiCharger"},
}


class Station201:
    """A bare OCPP 2.0.1 station: frames built by hand, every frame checked against the 2.0.1 schemas."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def send(self, action: str, payload: dict[str, Any], unique_id: str | None = None) -> list[Any]:
        """Send a (valid) CALL and return the answer frame."""
        uid = unique_id or f"m{next(self._ids)}"
        await validate_payload(Call(uid, action, payload), "2.0.1")
        await self.ws.send(json.dumps([2, uid, action, payload]))
        frame: list[Any] = json.loads(await self.ws.recv())
        assert frame[1] == uid
        return frame

    async def call(
        self, action: str, payload: dict[str, Any] | None = None, unique_id: str | None = None
    ) -> dict[str, Any]:
        """Send a CALL and return the CALLRESULT payload, checked against its schema."""
        frame = await self.send(action, payload or {}, unique_id)
        assert frame[0] == 3, frame
        await validate_payload(CallResult(frame[1], frame[2], action), "2.0.1")
        result: dict[str, Any] = frame[2]
        return result

    async def receive_call(self, action: str) -> tuple[str, dict[str, Any]]:
        """The next frame, which must be a valid CALL of this action: (unique id, payload)."""
        frame = json.loads(await self.ws.recv())
        assert frame[0] == 2 and frame[2] == action, frame
        await validate_payload(Call(frame[1], action, frame[3]), "2.0.1")
        return frame[1], frame[3]


@contextlib.asynccontextmanager
async def station201(
    url: str, station_id: str = "CS001", subprotocols: tuple[str, ...] = ("ocpp2.0.1",), **kwargs: Any
) -> AsyncIterator[Station201]:
    async with connect(
        f"{url}/{station_id}", subprotocols=[Subprotocol(s) for s in subprotocols], **kwargs
    ) as ws:
        yield Station201(ws)


def tx_event(event_type: str, seq: int, trigger: str, tx_id: str = "TX-1", **extra: Any) -> dict[str, Any]:
    """A TransactionEvent payload; ``extra`` goes to the top level, ``info`` into transactionInfo."""
    info = extra.pop("info", {})
    return {
        "eventType": event_type,
        "timestamp": START,
        "triggerReason": trigger,
        "seqNo": seq,
        "transactionInfo": {"transactionId": tx_id, **info},
        **extra,
    }


def energy(wh: float, context: str = "Sample.Periodic") -> list[dict[str, Any]]:
    return [{"timestamp": START, "sampledValue": [{"value": wh, "context": context}]}]


def test_201_boot_authorize_and_transaction_events() -> None:
    async def scenario() -> None:
        async with (
            running(versions=("2.0.1",), heartbeat_interval=60, auth={"BAD": "Blocked"}) as csms,
            station201(csms.url) as cs,
        ):
            boot = await cs.call("BootNotification", BOOT_201)
            assert (boot["status"], boot["interval"]) == ("Accepted", 60)
            assert boot["currentTime"].endswith("Z")
            assert csms.stations["CS001"].version == "2.0.1"
            status = {"timestamp": START, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1}
            assert await cs.call("StatusNotification", status) == {}
            assert await cs.call("Authorize", {"idToken": TOKEN}) == {"idTokenInfo": {"status": "Accepted"}}
            bad = {"idToken": {"idToken": "BAD", "type": "ISO14443"}}
            assert await cs.call("Authorize", bad) == {"idTokenInfo": {"status": "Blocked"}}

            started = tx_event(
                "Started",
                0,
                "Authorized",
                idToken=TOKEN,
                evse={"id": 1, "connectorId": 1},
                meterValue=energy(1000, "Transaction.Begin"),
                info={"chargingState": "EVConnected"},
            )
            updated = tx_event("Updated", 1, "ChargingStateChanged", info={"chargingState": "Charging"})
            ended = tx_event(
                "Ended",
                2,
                "EVDeparted",
                meterValue=energy(5000, "Transaction.End"),
                info={"stoppedReason": "EVDisconnected"},
            )
            assert await cs.call("TransactionEvent", started) == {"idTokenInfo": {"status": "Accepted"}}
            assert await cs.call("TransactionEvent", updated) == {}
            # Redelivered (a lost answer), with the same and with a new message id: answered again.
            assert await cs.call("TransactionEvent", updated, unique_id="m6") == {}
            assert await cs.call("TransactionEvent", ended) == {}
            assert await cs.call("TransactionEvent", ended) == {}

            tx = csms.transactions201["TX-1"]
            assert tx["station"] == "CS001"
            assert [e["seqNo"] for e in tx["events"]] == [0, 1, 2]
            assert tx["started"] == started and tx["ended"] == ended
            assert (tx["ended_count"], tx["duplicates"]) == (2, 2)
            assert csms.transactions == {}

            other = tx_event("Started", 0, "Authorized", "TX-2", idToken={"idToken": "BAD", "type": "Local"})
            assert await cs.call("TransactionEvent", other) == {"idTokenInfo": {"status": "Blocked"}}
            assert sorted(csms.transactions201) == ["TX-1", "TX-2"]
            assert csms.transactions201["TX-2"]["ended"] is None

            report = {
                "requestId": 7,
                "generatedAt": START,
                "seqNo": 0,
                "reportData": [
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                        "variableAttribute": [{"value": "60", "mutability": "ReadWrite"}],
                    }
                ],
            }
            assert await cs.call("NotifyReport", report) == {}

            assert len(csms.calls("TransactionEvent", station="CS001")) == 6
            assert csms.calls("Authorize")[1] == bad
            assert csms.calls("NotifyReport") == [report]
            end = await csms.wait_for(
                "TransactionEvent", where=lambda p: p["eventType"] == "Ended", timeout=1
            )
            assert end.payload == ended and end.station == "CS001"

    run(scenario())


# One valid request of every other station-initiated 2.0.1 action, and its default answer.
OTHER_201: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "Heartbeat": ({}, {}),
    "MeterValues": ({"evseId": 1, "meterValue": energy(1234.5)}, {}),
    "NotifyEvent": (
        {
            "generatedAt": START,
            "seqNo": 0,
            "eventData": [
                {
                    "eventId": 1,
                    "timestamp": START,
                    "trigger": "Delta",
                    "actualValue": "Occupied",
                    "eventNotificationType": "HardWiredNotification",
                    "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                    "variable": {"name": "AvailabilityState"},
                }
            ],
        },
        {},
    ),
    "NotifyMonitoringReport": ({"requestId": 1, "seqNo": 0, "generatedAt": START}, {}),
    "NotifyChargingLimit": ({"chargingLimit": {"chargingLimitSource": "EMS"}}, {}),
    "ClearedChargingLimit": ({"chargingLimitSource": "EMS"}, {}),
    "ReportChargingProfiles": (
        {
            "requestId": 1,
            "chargingLimitSource": "CSO",
            "evseId": 1,
            "chargingProfile": [
                {
                    "id": 1,
                    "stackLevel": 0,
                    "chargingProfilePurpose": "TxDefaultProfile",
                    "chargingProfileKind": "Relative",
                    "chargingSchedule": [
                        {
                            "id": 1,
                            "chargingRateUnit": "A",
                            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
                        }
                    ],
                }
            ],
        },
        {},
    ),
    "ReservationStatusUpdate": ({"reservationId": 3, "reservationUpdateStatus": "Expired"}, {}),
    "FirmwareStatusNotification": ({"status": "Installed", "requestId": 1}, {}),
    "PublishFirmwareStatusNotification": ({"status": "Idle"}, {}),
    "LogStatusNotification": ({"status": "Uploaded", "requestId": 1}, {}),
    "SecurityEventNotification": ({"type": "StartupOfTheDevice", "timestamp": START}, {}),
    "SignCertificate": ({"csr": "-----BEGIN CERTIFICATE REQUEST-----"}, {"status": "Accepted"}),
    "DataTransfer": ({"vendorId": "acme"}, {"status": "Accepted"}),
    "NotifyEVChargingNeeds": (
        {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "AC_three_phase"}},
        {"status": "Accepted"},
    ),
    "NotifyEVChargingSchedule": (
        {
            "timeBase": START,
            "evseId": 1,
            "chargingSchedule": {
                "id": 1,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000.0}],
            },
        },
        {"status": "Accepted"},
    ),
    "NotifyCustomerInformation": ({"data": "none", "seqNo": 0, "generatedAt": START, "requestId": 1}, {}),
    "NotifyDisplayMessages": ({"requestId": 1}, {}),
    "Get15118EVCertificate": (
        {"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install", "exiRequest": "AA=="},
        {"status": "Failed", "exiResponse": ""},
    ),
    "GetCertificateStatus": (
        {
            "ocspRequestData": {
                "hashAlgorithm": "SHA256",
                "issuerNameHash": "00",
                "issuerKeyHash": "00",
                "serialNumber": "01",
                "responderURL": "http://ocsp.example",
            }
        },
        {"status": "Failed"},
    ),
}


def test_201_every_other_station_initiated_action_is_answered() -> None:
    async def scenario() -> None:
        async with running(versions=("2.0.1",)) as csms, station201(csms.url) as cs:
            for action, (payload, expected) in OTHER_201.items():
                reply = await cs.call(action, payload)
                if action == "Heartbeat":
                    assert reply["currentTime"].endswith("Z")
                else:
                    assert reply == expected, action
                assert csms.calls(action) == [payload]

    run(scenario())


def test_201_reply_and_error_overrides() -> None:
    async def scenario() -> None:
        async with running(versions=("2.0.1",)) as csms, station201(csms.url) as cs:
            csms.errors["TransactionEvent"] = ("InternalError", "test")
            frame = await cs.send("TransactionEvent", tx_event("Started", 0, "CablePluggedIn"))
            assert frame[0] == 4 and frame[2:4] == ["InternalError", "test"]
            assert csms.transactions201 == {}  # an error answer records nothing
            del csms.errors["TransactionEvent"]
            assert await cs.call("TransactionEvent", tx_event("Started", 0, "CablePluggedIn")) == {}
            assert csms.transactions201["TX-1"]["duplicates"] == 0

            csms.replies["DataTransfer"] = lambda p: {"status": "Rejected", "data": p["vendorId"]}
            assert await cs.call("DataTransfer", {"vendorId": "acme"}) == {
                "status": "Rejected",
                "data": "acme",
            }
            csms.replies["BootNotification"] = {
                "status": "Pending",
                "currentTime": START,
                "interval": 5,
                "statusInfo": {"reasonCode": "Maintenance"},
            }
            assert (await cs.call("BootNotification", BOOT_201))["statusInfo"] == {
                "reasonCode": "Maintenance"
            }

            # A 1.6 payload is not a 2.0.1 one: a CALLERROR, and the session lives on.
            await cs.ws.send(json.dumps([2, "x1", "BootNotification", {"chargePointVendor": "v"}]))
            frame = json.loads(await cs.ws.recv())
            assert frame[0] == 4 and frame[1] == "x1"
            assert (await cs.call("Heartbeat"))["currentTime"].endswith("Z")

    run(scenario())


def test_201_csms_initiated_calls() -> None:
    async def scenario() -> None:
        async with running(versions=("2.0.1",)) as csms, station201(csms.url) as cs:
            session = await csms.wait_station("CS001", timeout=1)
            heartbeat = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
            task = asyncio.create_task(session.call("GetVariables", {"getVariableData": [heartbeat]}))
            uid, payload = await cs.receive_call("GetVariables")
            assert payload == {"getVariableData": [heartbeat]}
            result = {
                "getVariableResult": [{"attributeStatus": "Accepted", **heartbeat, "attributeValue": "60"}]
            }
            await cs.ws.send(json.dumps([3, uid, result]))
            assert await task == result
            out = [e for e in csms.timeline if e.action == "GetVariables"]
            assert [(e.direction, e.kind, e.unique_id) for e in out] == [
                ("out", "call", uid),
                ("in", "result", uid),
            ]
            assert describe(out[0]) == "CS001 <- GetVariables  OCPPCommCtrlr.HeartbeatInterval"
            assert describe(out[1]) == "CS001 -> GetVariables: OCPPCommCtrlr.HeartbeatInterval=60 Accepted"

            task = asyncio.create_task(session.call("Reset", {"type": "Immediate"}, timeout=2))
            uid, _ = await cs.receive_call("Reset")
            await cs.ws.send(json.dumps([4, uid, "NotSupported", "no reset here", {"why": "test"}]))
            with pytest.raises(CallErrorReply) as caught:
                await task
            assert (caught.value.code, caught.value.description) == ("NotSupported", "no reset here")
            assert caught.value.details == {"why": "test"}
            assert (csms.timeline[-1].kind, csms.timeline[-1].action) == ("error", "Reset")

            # Outgoing payloads are checked against the 2.0.1 schemas: "Soft" is a 1.6 reset type.
            sent = len(csms.timeline)
            with pytest.raises(OCPPError):
                await session.call("Reset", {"type": "Soft"})
            assert len(csms.timeline) == sent
            # And so are the answers.
            task = asyncio.create_task(session.call("GetVariables", {"getVariableData": [heartbeat]}))
            uid, _ = await cs.receive_call("GetVariables")
            await cs.ws.send(json.dumps([3, uid, {}]))
            with pytest.raises(OCPPError):
                await task
            # Unless told not to.
            task = asyncio.create_task(session.call("Reset", {"type": "Soft"}, validate=False))
            uid, _ = json.loads(await cs.ws.recv())[1:3]
            await cs.ws.send(json.dumps([3, uid, {"status": "Whatever"}]))
            assert await task == {"status": "Whatever"}

    run(scenario())


def test_version_negotiation() -> None:
    async def connected(csms: DevCsms, offers: tuple[str, ...]) -> tuple[str | None, str]:
        """Connect offering these subprotocols: (the one chosen, the session's version)."""
        async with station201(csms.url, subprotocols=offers) as cs:
            session = await csms.wait_station("CS001", timeout=1)
            return cs.ws.subprotocol, session.version

    async def refused(csms: DevCsms, offers: tuple[str, ...]) -> int:
        with pytest.raises(InvalidStatus) as caught:
            async with station201(csms.url, subprotocols=offers):
                pass
        return caught.value.response.status_code

    async def scenario() -> None:
        both = ("ocpp2.0.1", "ocpp1.6")
        async with running(versions=("1.6", "2.0.1")) as csms:
            assert await connected(csms, both) == ("ocpp1.6", "1.6")  # the CSMS's order decides
            assert await connected(csms, ("ocpp2.0.1",)) == ("ocpp2.0.1", "2.0.1")
            assert await connected(csms, ("ocpp1.6",)) == ("ocpp1.6", "1.6")
        async with running(versions=("2.0.1", "1.6")) as csms:
            assert await connected(csms, ("ocpp1.6", "ocpp2.0.1")) == ("ocpp2.0.1", "2.0.1")
        async with running(versions=("2.0.1",)) as csms:
            assert await connected(csms, both) == ("ocpp2.0.1", "2.0.1")
            assert await refused(csms, ("ocpp1.6",)) == 400
            reason = next(e.payload for e in csms.timeline if e.kind == "refused")
            assert isinstance(reason, dict) and "ocpp2.0.1" in reason["reason"]
        async with running() as csms:  # 1.6 only, the default
            assert await refused(csms, ("ocpp2.0.1",)) == 400
            assert await connected(csms, both) == ("ocpp1.6", "1.6")

    run(scenario())


def test_201_timeline_lines() -> None:
    out = io.StringIO()

    async def scenario() -> None:
        async with running(versions=("2.0.1",), quiet=False, out=out) as csms, station201(csms.url) as cs:
            await cs.call(
                "BootNotification",
                {**BOOT_201, "chargingStation": {**BOOT_201["chargingStation"], "firmwareVersion": "1.2"}},
            )
            status = {"timestamp": START, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1}
            await cs.call("StatusNotification", status)
            await cs.call("Authorize", {"idToken": TOKEN})
            started = tx_event(
                "Started",
                0,
                "Authorized",
                idToken=TOKEN,
                evse={"id": 1, "connectorId": 1},
                meterValue=energy(1000, "Transaction.Begin"),
                info={"chargingState": "EVConnected"},
            )
            await cs.call("TransactionEvent", started)
            sampled = [
                {
                    "value": 3.2,
                    "measurand": "Power.Active.Import",
                    "unitOfMeasure": {"unit": "W", "multiplier": 3},
                },
                {"value": 1.5, "unitOfMeasure": {"unit": "kWh"}},
                {"value": 230.1, "measurand": "Voltage", "phase": "L1-N", "unitOfMeasure": {"unit": "V"}},
            ]
            meter = [{"timestamp": START, "sampledValue": sampled}]
            await cs.call(
                "TransactionEvent",
                tx_event(
                    "Updated",
                    1,
                    "MeterValuePeriodic",
                    offline=True,
                    meterValue=meter,
                    info={"chargingState": "Charging"},
                ),
            )
            await cs.call(
                "TransactionEvent",
                tx_event("Ended", 2, "EVDeparted", info={"stoppedReason": "EVDisconnected"}),
            )
            await cs.call("MeterValues", {"evseId": 1, "meterValue": meter})
            await cs.call("NotifyEvent", OTHER_201["NotifyEvent"][0])
            report = {
                "requestId": 7,
                "generatedAt": START,
                "seqNo": 0,
                "tbc": True,
                "reportData": [
                    {
                        "component": {"name": "EVSE", "evse": {"id": 1}},
                        "variable": {"name": "Power"},
                        "variableAttribute": [{"value": "11000"}],
                    }
                ],
            }
            await cs.call("NotifyReport", report)
            long = {"type": "StartupOfTheDevice", "timestamp": START, "techInfo": "x" * 200}
            await cs.call("SecurityEventNotification", long)
            # A payload too malformed for its summary still gets a line (and a CALLERROR).
            bad = {"evseId": 1, "meterValue": [{"sampledValue": 3}]}
            await cs.ws.send(json.dumps([2, "bad", "MeterValues", bad]))
            assert json.loads(await cs.ws.recv())[0] == 4

    run(scenario())
    text = out.getvalue()
    assert "CS001 connected (ocpp2.0.1, /ocpp/CS001)" in text
    assert (
        "CS001 -> BootNotification  vendor=ExampleVendor model=PiCharger firmware=1.2 reason=PowerUp" in text
    )
    assert "CS001 <- BootNotification: Accepted interval=300" in text
    assert "CS001 -> StatusNotification  evse 1/1 Occupied" in text
    assert "CS001 -> Authorize  idToken 04A1B2C3 (ISO14443)" in text
    assert "CS001 <- Authorize: Accepted" in text
    assert (
        "CS001 -> TransactionEvent  Started tx=TX-1 seq=0 trigger=Authorized EVConnected 1000.0 Wh"
        " evse=1 idToken=04A1B2C3" in text
    )
    assert "CS001 <- TransactionEvent: Accepted" in text
    updated = "CS001 -> TransactionEvent  Updated tx=TX-1 seq=1 trigger=MeterValuePeriodic Charging offline"
    assert f"{updated} 1500.0 Wh\n" in text
    assert "CS001 -> TransactionEvent  Ended tx=TX-1 seq=2 trigger=EVDeparted reason=EVDisconnected" in text
    assert "CS001 <- TransactionEvent: ok" in text
    assert "CS001 -> MeterValues  evse 1: 3.2 kW, 1500.0 Wh, Voltage 230.1 V L1-N" in text
    assert "CS001 -> NotifyEvent  Connector[1,1].AvailabilityState=Occupied" in text
    assert "CS001 -> NotifyReport  requestId=7 seqNo=0 tbc 1 items" in text
    assert "CS001 -> MeterValues  evseId=1 meterValue=[1]" in text
    assert (
        f"SecurityEventNotification  type=StartupOfTheDevice timestamp={START} techInfo={'x' * 57}...\n"
        in text
    )


def test_201_thread_facade() -> None:
    done = threading.Event()

    async def client(url: str) -> None:
        async with station201(url) as cs:
            await cs.call("BootNotification", BOOT_201)
            await cs.call("TransactionEvent", tx_event("Started", 0, "CablePluggedIn"))
            uid, _ = await cs.receive_call("GetVariables")
            result = {
                "attributeStatus": "UnknownComponent",
                "component": {"name": "X"},
                "variable": {"name": "Y"},
            }
            await cs.ws.send(json.dumps([3, uid, {"getVariableResult": [result]}]))
            frame = await cs.send("DataTransfer", {"vendorId": "acme"})
            assert frame[0] == 4 and frame[2] == "NotImplemented"
            while not done.is_set():
                await asyncio.sleep(0.01)

    with CsmsThread(quiet=True, versions=("2.0.1", "1.6")) as csms:
        csms.set_error("DataTransfer", ("NotImplemented", "not here"))
        worker = threading.Thread(target=run, args=(client(csms.url),), daemon=True)
        worker.start()
        csms.wait_station("CS001", timeout=2)
        entry = csms.wait_for("TransactionEvent", station="CS001", timeout=2)
        assert fields(entry)["eventType"] == "Started"
        assert csms.transactions201["TX-1"]["started"] == entry.payload
        get = {"getVariableData": [{"component": {"name": "X"}, "variable": {"name": "Y"}}]}
        reply = csms.call("CS001", "GetVariables", get)
        assert reply["getVariableResult"][0]["attributeStatus"] == "UnknownComponent"
        csms.wait_for("DataTransfer", timeout=2)
        assert csms.calls("BootNotification", station="CS001") == [BOOT_201]
        done.set()
        worker.join(2)


def test_command_line_versions() -> None:
    with csms_process("--port", "0", "--version", "auto") as proc:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert "OCPP 2.0.1, 1.6" in banner
        url = banner.split("connect stations to ")[1].split("/<station id>")[0]

        async def boot() -> tuple[str | None, dict[str, Any]]:
            async with station201(url, subprotocols=("ocpp1.6", "ocpp2.0.1")) as cs:
                return cs.ws.subprotocol, await cs.call("BootNotification", BOOT_201)

        subprotocol, reply = run(boot())
        assert (subprotocol, reply["status"]) == ("ocpp2.0.1", "Accepted")
        proc.send_signal(signal.SIGINT)
        out, err = ended(proc, 5)
    assert proc.returncode == 0, err
    assert "CS001 -> BootNotification  vendor=ExampleVendor model=PiCharger reason=PowerUp" in out
    with pytest.raises(SystemExit):
        main(["--version", "2.1"])
