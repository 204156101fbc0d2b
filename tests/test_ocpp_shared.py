"""What both OCPP adapters share (controller/ocpp/fields.py, controller/ocpp/adapter.py), in-process.

The request field readers are pure; the outbox retry loop runs against a fake link and a
fake record store, with ``asyncio.sleep`` made instant.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from controller.core import schedule
from controller.io.link import CallFailed, NotConnected
from controller.io.storage import OutboxEntry
from controller.ocpp.adapter import Adapter, Retries
from controller.ocpp.fields import optional_times, required_time, tx_profile
from controller.ocpp.ocppj import RpcError


def test_optional_times_reads_present_keys_and_leaves_absent_ones_none() -> None:
    p = {"from": "2026-03-01T12:00:00Z"}
    assert optional_times(p, "from", "to") == [datetime(2026, 3, 1, 12, tzinfo=UTC), None]


def test_an_unreadable_time_is_a_property_constraint_violation() -> None:
    with pytest.raises(RpcError) as caught:
        optional_times({"from": "yesterday"}, "from")
    assert caught.value.kind == "property"
    assert "from" in str(caught.value)
    with pytest.raises(RpcError):
        required_time({}, "expiryDate")


def _profile(purpose: str) -> dict[str, Any]:
    return {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6}],
        },
    }


def test_a_remote_start_takes_only_a_tx_profile() -> None:
    assert tx_profile("RemoteStartTransaction", None, schedule.from_ocpp16, 1) is None
    profile = tx_profile("RemoteStartTransaction", _profile("TxProfile"), schedule.from_ocpp16, 1)
    assert profile is not None and profile.purpose is schedule.Purpose.TX
    with pytest.raises(ValueError):
        tx_profile("RemoteStartTransaction", _profile("TxDefaultProfile"), schedule.from_ocpp16, 1)
    with pytest.raises(ValueError):
        tx_profile("RemoteStartTransaction", {"chargingProfileId": 1}, schedule.from_ocpp16, 1)


class FakeLink:
    """Answers each call with the next of ``outcomes``: a reply, or an exception to raise."""

    def __init__(self, outcomes: list[dict[str, Any] | Exception]) -> None:
        self.outcomes = outcomes
        self.calls: list[str] = []
        self.connected = True
        self.endpoint = SimpleNamespace(url="ws://csms/ocpp/CP1")

    async def call(self, action: str, payload: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        self.calls.append(action)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def _adapter(link: FakeLink) -> tuple[Adapter, list[str]]:
    written: list[str] = []

    class Records:
        async def outbox_attempted(self, entry_id: int) -> None:
            written.append(f"attempted {entry_id}")

    host = SimpleNamespace(records=Records())
    return Adapter(host, link), written  # type: ignore[arg-type]


def _call(adapter: Adapter, retries: Retries, monkeypatch: pytest.MonkeyPatch) -> Any:
    entry = OutboxEntry(7, "T1", "start", {}, 0, None)
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    reply = asyncio.run(adapter._call_entry(entry, "StartTransaction", {}, lambda: retries))
    return reply, waits


def test_the_outbox_retries_with_a_growing_wait_until_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    link = FakeLink([TimeoutError(), CallFailed("InternalError", "busy"), {"transactionId": 5}])
    adapter, written = _adapter(link)
    reply, waits = _call(adapter, Retries(attempts=3, interval_s=10), monkeypatch)
    assert reply == {"transactionId": 5}
    assert waits == [10, 20]  # the interval times the attempts so far
    assert written == ["attempted 7", "attempted 7"]  # each failure counted in the database


def test_the_outbox_gives_the_last_error_once_the_attempts_ran_out(monkeypatch: pytest.MonkeyPatch) -> None:
    link = FakeLink([TimeoutError(), CallFailed("InternalError", "busy")])
    adapter, _ = _adapter(link)
    reply, waits = _call(adapter, Retries(attempts=2, interval_s=1), monkeypatch)
    assert isinstance(reply, CallFailed)
    assert waits == [1]


def test_the_outbox_keeps_the_entry_when_the_connection_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    link = FakeLink([NotConnected()])
    adapter, written = _adapter(link)
    reply, _ = _call(adapter, Retries(attempts=3, interval_s=1), monkeypatch)
    assert reply is None
    assert written == []


@pytest.mark.parametrize("answer_first", [True, False])
def test_an_answer_arriving_as_the_connection_closes_is_not_lost(answer_first: bool) -> None:
    """The CSMS's answer and the close arrive together: the session's end cancels the outbox
    task before it reads the answer. The next session takes that answer instead of sending
    the message again (a 1.6 StopTransaction was once sent twice this way)."""

    async def main() -> tuple[list[str], Any]:
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        class Pending(FakeLink):
            async def call(
                self, action: str, payload: dict[str, Any], timeout: float = 30.0
            ) -> dict[str, Any]:
                self.calls.append(action)
                return await asyncio.wait_for(answer, timeout)  # as the link waits

        link = Pending([])
        adapter, _ = _adapter(link)
        entry = OutboxEntry(7, "T1", "stop", {}, 0, "5")
        task = asyncio.ensure_future(adapter._call_entry(entry, "StopTransaction", {}, lambda: Retries(3, 1)))
        while not link.calls:
            await asyncio.sleep(0)
        # In the same instant: the answer arrives and the close cancels the outbox task.
        if answer_first:
            answer.set_result({"idTagInfo": {"status": "Accepted"}})
            task.cancel()
        else:
            task.cancel()
            answer.set_result({"idTagInfo": {"status": "Accepted"}})
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for _ in range(5):
            await asyncio.sleep(0)  # the call finishes on its own
        reply = await adapter._call_entry(entry, "StopTransaction", {}, lambda: Retries(3, 1))
        return link.calls, reply

    calls, reply = asyncio.run(main())
    assert calls == ["StopTransaction"]  # sent once, not again
    assert reply == {"idTagInfo": {"status": "Accepted"}}


def test_a_call_cut_by_the_close_without_an_answer_is_sent_again() -> None:
    async def main() -> list[str]:
        class Pending(FakeLink):
            async def call(
                self, action: str, payload: dict[str, Any], timeout: float = 30.0
            ) -> dict[str, Any]:
                self.calls.append(action)
                if len(self.calls) == 1:
                    await asyncio.sleep(3600)
                return {}

        link = Pending([])
        adapter, _ = _adapter(link)
        entry = OutboxEntry(7, "T1", "stop", {}, 0, "5")
        task = asyncio.ensure_future(adapter._call_entry(entry, "StopTransaction", {}, lambda: Retries(3, 1)))
        while not link.calls:
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await adapter._call_entry(entry, "StopTransaction", {}, lambda: Retries(3, 1))
        return link.calls

    assert asyncio.run(main()) == ["StopTransaction", "StopTransaction"]
