"""The bundled development CSMS (hil/csms.py), driven by a minimal OCPP 1.6 station."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from ocpp.exceptions import InternalError, OCPPError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.headers import build_authorization_basic
from websockets.typing import Subprotocol

from hil.csms import CallErrorReply, CsmsThread, DevCsms, describe

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
START = "2025-01-01T12:00:00Z"


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

    @on("ChangeConfiguration")
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
                assert entry.payload["meterStart"] == 1000
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
                assert blocked.payload["timestamp"] == "2025-01-01T13:00:00Z"
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
            assert [e.payload["status"] for e in csms.timeline if e.kind == "refused"] == [401, 401, 401]

    run(scenario())


def test_wrong_subprotocol_refused() -> None:
    async def scenario() -> None:
        async with running() as csms:
            for subprotocols in (["ocpp2.0.1"], None):
                with pytest.raises(InvalidStatus) as caught:
                    async with connect(f"{csms.url}/CP001", subprotocols=subprotocols):
                        pass
                assert caught.value.response.status_code == 400
            assert not csms.stations
            assert [e.kind for e in csms.timeline] == ["refused", "refused"]

    run(scenario())


def test_unsupported_version() -> None:
    with pytest.raises(ValueError):
        DevCsms(versions=("2.0.1",))


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
        assert csms.wait_for("BootNotification", timeout=2).payload["chargePointVendor"] == "ExampleVendor"
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
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil.csms", "--port", "0", "--boot-status", "Pending", "--heartbeat", "42"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        url = banner.split("connect stations to ")[1].split("/<station id>")[0]

        async def boot() -> call_result.BootNotification:
            async with station(url) as cp:
                return await cp.boot()

        reply = run(boot())
        assert (reply.status, reply.interval) == ("Pending", 42)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=5)
    assert proc.returncode == 0, err
    assert "CP001 <- BootNotification: Pending interval=42" in out
