"""Persistent state (controller/io/storage.py) against real SQLite files in ``tmp_path``.

A full disk is simulated with ``PRAGMA max_page_count``: capped at the current page count
and with the last pages filled, every write that needs room fails with SQLite's
"database or disk is full", exactly as on a full SD card.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from pathlib import Path

import pytest

from controller.core.model import StopReason
from controller.io.database import Database, WriteQueue
from controller.io.storage import (
    MIGRATIONS,
    Storage,
    StorageError,
    TransactionRecord,
)
from drivers.base import MeterReading


@contextlib.asynccontextmanager
async def running_queue(storage: Storage) -> AsyncIterator[tuple[Database, WriteQueue]]:
    """A WriteQueue running over ``storage`` for the duration of the block."""
    database = Database(storage)
    queue = WriteQueue(database, retry_s=0.05)
    runner = asyncio.create_task(queue.run())
    try:
        yield database, queue
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        database.close()


T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[1]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def reading(energy_wh: float) -> MeterReading:
    return MeterReading(energy_wh, 7200.0, (10.0, 10.5, 10.2), (230.1, 229.8, 231.0))


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return Storage(tmp_path / "evse.db")


def by_id(storage: Storage) -> dict[str, TransactionRecord]:
    return {r.id: r for r in storage.transactions()}


# -- schema ------------------------------------------------------------------------------


def test_new_database_is_migrated_to_the_latest_schema(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "evse.db"  # storage.dir created on demand
    Storage(path).close()
    assert user_version(path) == len(MIGRATIONS)


def test_reopening_does_not_rerun_migrations(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "evse.db"
    with caplog.at_level(logging.INFO, logger="controller.io.storage"):
        first = Storage(path)
        first.set_setting("kept", "yes")
        first.close()
        assert any("migrated" in r.getMessage() for r in caplog.records)
        caplog.clear()

        again = Storage(path)
    assert not any("migrated" in r.getMessage() for r in caplog.records)
    assert again.get_setting("kept") == "yes"
    assert user_version(path) == len(MIGRATIONS)
    again.close()


def test_database_from_a_newer_program_is_refused_with_a_readable_message(tmp_path: Path) -> None:
    path = tmp_path / "evse.db"
    Storage(path).close()
    newer = len(MIGRATIONS) + 1
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {newer}")

    with pytest.raises(StorageError) as info:
        Storage(path)

    message = str(info.value)
    assert str(path) in message
    assert f"schema version {newer}" in message
    assert "newer" in message
    assert user_version(path) == newer  # left alone


def test_unopenable_database_path_raises_storage_error_saying_what_to_check(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where storage.dir should be")
    with pytest.raises(StorageError, match=r"storage\.dir"):
        Storage(blocker / "evse.db")


# -- transactions ------------------------------------------------------------------------


def test_start_sample_stop_round_trip(storage: Storage) -> None:
    plus_two = timezone(timedelta(hours=2))
    storage.start_transaction("tx-1", 1, "04A1B2C3", T0.astimezone(plus_two), 1000.0)
    storage.add_meter_sample("tx-1", at(60), "Sample.Periodic", reading(1100.0))
    storage.add_meter_sample("tx-1", at(120), "Sample.Periodic", reading(1250.5))
    storage.stop_transaction("tx-1", at(150), 1300.0, StopReason.EV_DISCONNECTED)

    (record,) = storage.transactions()
    assert record == TransactionRecord(
        id="tx-1",
        evse_id=1,
        id_tag="04A1B2C3",
        started_at=T0,
        meter_start_wh=1000.0,
        stopped_at=at(150),
        meter_stop_wh=1300.0,
        stop_reason="EVDisconnected",
        last_energy_wh=1250.5,
    )
    assert record.started_at.utcoffset() == timedelta(0)
    assert [(m["timestamp"], m["context"], m["energy_wh"]) for m in storage.meter_samples("tx-1")] == [
        ("2024-05-01T12:01:00.000Z", "Sample.Periodic", 1100.0),
        ("2024-05-01T12:02:00.000Z", "Sample.Periodic", 1250.5),
    ]


def test_open_only_lists_only_transactions_not_stopped(storage: Storage) -> None:
    storage.start_transaction("tx-a", 1, "FREE", at(0), 0.0)
    storage.start_transaction("tx-b", 2, "FREE", at(1), 0.0)
    storage.start_transaction("tx-c", 1, "FREE", at(2), 10.0)
    storage.stop_transaction("tx-a", at(3), 5.0, StopReason.LOCAL)

    assert [r.id for r in storage.transactions(open_only=True)] == ["tx-b", "tx-c"]
    assert [r.id for r in storage.transactions()] == ["tx-a", "tx-b", "tx-c"]
    assert all(r.stopped_at is None and r.stop_reason is None for r in storage.transactions(True))


def test_last_energy_is_the_highest_of_meter_start_and_samples(storage: Storage) -> None:
    storage.start_transaction("no-samples", 1, "FREE", at(0), 500.0)
    storage.start_transaction("samples", 2, "FREE", at(1), 500.0)
    for energy in (600.0, 750.0, 700.0):
        storage.add_meter_sample("samples", at(60), "Sample.Periodic", reading(energy))
    storage.start_transaction("low-samples", 3, "FREE", at(2), 900.0)
    storage.add_meter_sample("low-samples", at(60), "Sample.Periodic", reading(850.0))

    records = by_id(storage)
    assert records["no-samples"].last_energy_wh == 500.0
    assert records["samples"].last_energy_wh == 750.0
    assert records["low-samples"].last_energy_wh == 900.0


def test_stopping_an_already_stopped_transaction_changes_nothing(storage: Storage) -> None:
    storage.start_transaction("tx-1", 1, "FREE", at(0), 0.0)
    storage.stop_transaction("tx-1", at(10), 100.0, StopReason.LOCAL)

    storage.stop_transaction("tx-1", at(999), 0.0, StopReason.POWER_LOSS)

    record = by_id(storage)["tx-1"]
    assert (record.stopped_at, record.meter_stop_wh, record.stop_reason) == (at(10), 100.0, "Local")


def test_starting_the_same_transaction_twice_does_not_duplicate_it(storage: Storage) -> None:
    storage.start_transaction("tx-1", 1, "04A1B2C3", at(0), 100.0)
    storage.start_transaction("tx-1", 2, "OTHER", at(5), 999.0)  # a retried write

    (record,) = storage.transactions()
    assert (record.evse_id, record.id_tag, record.started_at, record.meter_start_wh) == (
        1,
        "04A1B2C3",
        at(0),
        100.0,
    )


# -- settings ----------------------------------------------------------------------------


def test_settings_get_set_and_overwrite(storage: Storage) -> None:
    assert storage.get_setting("HeartbeatInterval") is None
    storage.set_setting("HeartbeatInterval", "300")
    storage.set_setting("MeterValueSampleInterval", "60")
    assert storage.get_setting("HeartbeatInterval") == "300"

    storage.set_setting("HeartbeatInterval", "60")

    assert storage.get_setting("HeartbeatInterval") == "60"
    assert storage.get_setting("MeterValueSampleInterval") == "60"
    assert storage.db.execute("SELECT count(*) FROM settings").fetchone()[0] == 2


# -- durability --------------------------------------------------------------------------


def test_record_written_is_visible_to_another_connection_without_clean_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "evse.db"
    writer = Storage(path)
    writer.start_transaction("tx-1", 1, "FREE", at(0), 42.0)
    writer.add_meter_sample("tx-1", at(60), "Sample.Periodic", reading(84.0))
    # no close(), no checkpoint: as if the process had died here

    reader = Storage(path)
    (record,) = reader.transactions(open_only=True)
    assert (record.id, record.meter_start_wh, record.last_energy_wh) == ("tx-1", 42.0, 84.0)
    reader.close()
    writer.close()


def test_record_written_survives_kill_9_of_the_writing_process(tmp_path: Path) -> None:
    path = tmp_path / "evse.db"
    script = textwrap.dedent(
        f"""
        import os, signal
        from datetime import UTC, datetime
        from pathlib import Path
        from controller.io.storage import Storage
        from drivers.base import MeterReading
        storage = Storage(Path({str(path)!r}))
        storage.start_transaction("tx-killed", 1, "FREE", datetime(2024, 5, 1, tzinfo=UTC), 10.0)
        storage.add_meter_sample(
            "tx-killed", datetime(2024, 5, 1, 0, 1, tzinfo=UTC), "Sample.Periodic",
            MeterReading(20.0, 0.0, (0.0,), (230.0,)),
        )
        storage.set_setting("written", "before the kill")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()

    storage = Storage(path)
    (record,) = storage.transactions(open_only=True)
    assert (record.id, record.last_energy_wh) == ("tx-killed", 20.0)
    assert storage.get_setting("written") == "before the kill"
    storage.close()


# -- disk full ---------------------------------------------------------------------------


def fill_disk(storage: Storage) -> None:
    """Cap the file at its current size and fill the last free bytes of every table.

    Keys grow monotonically, so each insert goes to the rightmost leaf of its tree; once
    an insert of a given size fails, every later insert at least as large fails too.
    """
    pages = storage.db.execute("PRAGMA page_count").fetchone()[0]
    storage.db.execute(f"PRAGMA max_page_count = {pages}")
    assert storage.db.execute("PRAGMA freelist_count").fetchone()[0] == 0

    def until_full(write: Callable[[int], None]) -> None:
        for n in range(100_000):
            try:
                write(n)
            except StorageError:
                return
        raise AssertionError("the capped database never filled up")

    last_tx = ["fill-00000"]

    def start(n: int) -> None:
        storage.start_transaction(f"fill-{n:05d}", 1, "04A1B2C3", at(n), float(n))
        last_tx[0] = f"fill-{n:05d}"

    until_full(start)
    until_full(lambda n: storage.add_meter_sample(last_tx[0], at(n), "Sample.Periodic", reading(n)))
    until_full(lambda n: storage.set_setting(f"fill-{n:05d}", "x"))


def make_room(storage: Storage) -> None:
    storage.db.execute("PRAGMA max_page_count = 1000000")


def test_disk_full_raises_storage_error_saying_what_to_do(storage: Storage) -> None:
    storage.start_transaction("tx-open", 1, "FREE", at(0), 0.0)
    fill_disk(storage)
    before = len(storage.transactions())

    with pytest.raises(StorageError) as info:
        storage.start_transaction("tx-new-while-full", 1, "04A1B2C3", at(10), 100.0)

    message = str(info.value)
    assert str(storage.path) in message
    assert "free space" in message
    assert "storage.dir" in message
    assert len(storage.transactions()) == before  # nothing half-written

    # Once there is room again the same connection writes: nothing is wedged.
    make_room(storage)
    storage.start_transaction("tx-new-while-full", 1, "04A1B2C3", at(10), 100.0)
    assert "tx-new-while-full" in by_id(storage)


def test_disk_full_error_message_names_the_cause(storage: Storage) -> None:
    fill_disk(storage)
    with pytest.raises(StorageError, match="database or disk is full"):
        storage.start_transaction("tx-new-while-full", 1, "04A1B2C3", at(10), 100.0)


def test_a_write_whose_commit_fails_does_not_block_later_writes(storage: Storage) -> None:
    storage.db.execute("PRAGMA defer_foreign_keys = ON")  # the FK check now fails at COMMIT
    with pytest.raises(StorageError):
        storage.add_meter_sample("no-such-transaction", at(0), "Sample.Periodic", reading(1.0))
    storage.db.execute("PRAGMA defer_foreign_keys = OFF")

    storage.set_setting("after", "ok")
    assert storage.get_setting("after") == "ok"


def queue_while_full(storage: Storage, done: list[str]) -> Callable[[WriteQueue], int]:
    """The records a session produces while the disk is full; returns how many."""

    def put(queue: WriteQueue) -> int:
        writes: list[tuple[str, Callable[[Storage], None]]] = [
            ("start", partial(Storage.start_transaction, tx_id="tx-late", evse_id=1,
                              id_tag="04A1B2C3", started_at=at(100), meter_start_wh=1000.0)),
            ("sample-1", partial(Storage.add_meter_sample, tx_id="tx-late", taken_at=at(160),
                                 context="Sample.Periodic", reading=reading(1100.0))),
            ("sample-2", partial(Storage.add_meter_sample, tx_id="tx-late", taken_at=at(220),
                                 context="Sample.Periodic", reading=reading(1200.0))),
            ("stop", partial(Storage.stop_transaction, tx_id="tx-late", stopped_at=at(250),
                             meter_stop_wh=1250.0, reason=StopReason.EV_DISCONNECTED)),
            ("setting", partial(Storage.set_setting, key="zz-after-the-session", value="1")),
        ]  # fmt: skip
        for name, write in writes:
            queue.put(write, then=partial(done.append, name))
        return len(writes)

    return put


def test_write_queue_keeps_writes_in_order_while_disk_full_and_writes_all_when_space_returns(
    storage: Storage,
) -> None:
    fill_disk(storage)
    with pytest.raises(StorageError):  # the precondition: the first record cannot be written
        storage.start_transaction("tx-late", 1, "04A1B2C3", at(100), 1000.0)
    done: list[str] = []

    async def scenario() -> None:
        async with running_queue(storage) as (database, queue):
            count = queue_while_full(storage, done)(queue)

            await asyncio.sleep(0.4)  # several retries of the head
            assert queue.failing
            assert done == []
            assert queue.pending() >= count - 1  # the head is being retried, the rest wait
            assert "tx-late" not in await database.run(by_id, storage)
            assert await database.run(Storage.get_setting, storage, "zz-after-the-session") is None

            await database.run(make_room, storage)
            await asyncio.wait_for(queue.flush(), timeout=5)

            assert done == ["start", "sample-1", "sample-2", "stop", "setting"]
            assert not queue.failing
            assert queue.pending() == 0
            record = (await database.run(by_id, storage))["tx-late"]
            assert (record.meter_stop_wh, record.stop_reason, record.last_energy_wh) == (
                1250.0,
                "EVDisconnected",
                1200.0,
            )
            samples = await database.run(Storage.meter_samples, storage, "tx-late")
            assert [m["energy_wh"] for m in samples] == [1100.0, 1200.0]
            assert await database.run(Storage.get_setting, storage, "zz-after-the-session") == "1"

    asyncio.run(scenario())


def test_write_queue_pending_counts_the_record_being_retried(storage: Storage) -> None:
    fill_disk(storage)
    done: list[str] = []

    async def scenario() -> None:
        async with running_queue(storage) as (_database, queue):
            count = queue_while_full(storage, done)(queue)
            await asyncio.sleep(0.2)
            assert queue.pending() == count

    asyncio.run(scenario())


def test_write_queue_flush_returns_at_once_when_nothing_is_queued(storage: Storage) -> None:
    async def scenario() -> None:
        async with running_queue(storage) as (database, queue):
            await asyncio.wait_for(queue.flush(), timeout=1)
            queue.put(partial(Storage.set_setting, key="k", value="v"))
            await asyncio.wait_for(queue.flush(), timeout=5)
            assert await database.run(Storage.get_setting, storage, "k") == "v"

    asyncio.run(scenario())
