"""Persistent state: one SQLite database under ``storage.dir``.

The schema grows by appending to ``MIGRATIONS``; ``PRAGMA user_version`` records how
many have run. Every write commits before it returns, in WAL mode with
``synchronous=FULL``, so a record reported as written survives a ``kill -9`` and a power
cut alike.

``Storage`` is synchronous and owned by one thread (``controller.io.database`` runs it
for the event loop). Every SQL statement of the station is in this module: the functions
at the end keep the local authorization list and cache of ``controller.core.authorization``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.core.authorization import (
    ACCEPTED,
    DEFAULT_CACHE_CAPACITY,
    DIFFERENTIAL,
    FULL,
    LOCAL_LIST_VERSION_KEY,
    AuthCache,
    IdTagInfo,
    LocalList,
    normalize_id,
    parse_expiry,
    sharing,
)
from controller.core.model import StopReason
from controller.core.timestamps import parse_timestamp as parse_timestamp
from controller.core.timestamps import timestamp as timestamp
from drivers.base import MeterReading

log = logging.getLogger(__name__)

# transactions.stop_reason: the words the column has always held (OCPP 1.6's, as the station
# spoke them before it had words of its own). Fixed: old and new rows read alike.
STORED_STOP_REASONS: dict[StopReason, str] = {
    StopReason.LOCAL: "Local",
    StopReason.REMOTE: "Remote",
    StopReason.EV_DISCONNECTED: "EVDisconnected",
    StopReason.POWER_LOSS: "PowerLoss",
    StopReason.DEAUTHORIZED: "DeAuthorized",
    StopReason.EMERGENCY_STOP: "EmergencyStop",
    StopReason.HARD_RESET: "HardReset",
    StopReason.SOFT_RESET: "SoftReset",
    StopReason.REBOOT: "Reboot",
    StopReason.UNLOCK_COMMAND: "UnlockCommand",
    StopReason.OTHER: "Other",
}

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE transactions (
        id TEXT PRIMARY KEY,
        evse_id INTEGER NOT NULL,
        id_tag TEXT NOT NULL,
        started_at TEXT NOT NULL,
        meter_start_wh REAL NOT NULL,
        stopped_at TEXT,
        meter_stop_wh REAL,
        stop_reason TEXT
    );
    CREATE INDEX transactions_open ON transactions (stopped_at) WHERE stopped_at IS NULL;
    CREATE TABLE meter_samples (
        id INTEGER PRIMARY KEY,
        transaction_id TEXT NOT NULL REFERENCES transactions (id),
        taken_at TEXT NOT NULL,
        context TEXT NOT NULL,
        energy_wh REAL NOT NULL,
        power_w REAL NOT NULL,
        current_a TEXT NOT NULL,
        voltage_v TEXT NOT NULL
    );
    CREATE INDEX meter_samples_tx ON meter_samples (transaction_id);
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # OCPP: the CSMS's transaction id, the outbox of transaction messages, the local
    # authorization list and cache, charging profiles and reservations.
    """
    ALTER TABLE transactions ADD COLUMN csms_id TEXT;
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        transaction_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE local_list (
        id_tag TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        expiry TEXT,
        parent TEXT
    );
    CREATE TABLE auth_cache (
        id_tag TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        expiry TEXT,
        parent TEXT,
        used_at TEXT NOT NULL
    );
    CREATE TABLE charging_profiles (
        id INTEGER PRIMARY KEY,
        evse_id INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE reservations (
        id INTEGER PRIMARY KEY,
        evse_id INTEGER NOT NULL,
        id_tag TEXT NOT NULL,
        parent TEXT,
        expiry TEXT NOT NULL
    );
    """,
    # OCPP 2.0.1: each transaction's last TransactionEvent seqNo, so that events go on
    # without gaps after a restart and an interrupted transaction is ended exactly once.
    """
    CREATE TABLE tx_events (
        transaction_id TEXT PRIMARY KEY,
        evse_id INTEGER NOT NULL,
        seq_no INTEGER NOT NULL,
        ended INTEGER NOT NULL DEFAULT 0,
        energy_wh REAL
    );
    """,
)


BUSY_TIMEOUT_S = 0.5


class StorageError(Exception):
    """The database cannot be opened or written; the message says what to do.

    ``retry`` is true for conditions that pass (disk full, read-only, locked, I/O error)
    and false for a record the database will never take (a constraint it violates).
    """

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class TransactionRecord:
    id: str
    evse_id: int
    id_tag: str
    started_at: datetime
    meter_start_wh: float
    stopped_at: datetime | None
    meter_stop_wh: float | None
    stop_reason: str | None
    last_energy_wh: float  # the highest energy recorded for it


@dataclass(frozen=True)
class OutboxEntry:
    """A transaction message waiting for the CSMS, version neutral."""

    id: int
    transaction_id: str
    kind: str  # 1.6: "start", "meter", "stop"; 2.0.1: "event" (a whole TransactionEvent); "security"
    body: dict[str, Any]
    attempts: int
    csms_id: str | None  # the CSMS's id for the transaction, once it gave one


class Storage:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A short busy timeout: a technician's sqlite3 shell holding a lock must not
            # stall shutdown; the write queue retries instead.
            self.db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(
                f"cannot open database {path}: {exc}; check that storage.dir "
                "exists, is writable by the evse user and the disk is not full"
            ) from exc
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except StorageError:
            self.db.close()
            raise
        except sqlite3.Error as exc:
            self.db.close()
            raise StorageError(
                f"cannot open database {path}: {exc}; check that storage.dir "
                "exists, is writable by the evse user and the disk is not full"
            ) from exc

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StorageError(
                f"database {self.path} has schema version {version}, newer than "
                f"this program knows ({len(MIGRATIONS)}); run the newer version"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self._transaction():
                for statement in filter(str.strip, script.split(";")):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number}")
            log.info("database %s migrated to schema version %d", self.path, number)

    def _transaction(self) -> Any:
        return _Tx(self.db)

    def close(self) -> None:
        self.db.close()

    # -- transactions ------------------------------------------------------------------

    # Each record and its outbox message (when the station speaks OCPP) commit together:
    # a transaction the station knows about is always one the CSMS will hear about.

    def start_transaction(
        self,
        tx_id: str,
        evse_id: int,
        id_tag: str,
        started_at: datetime,
        meter_start_wh: float,
        outbox: dict[str, Any] | None = None,
    ) -> None:
        def write() -> None:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO transactions (id, evse_id, id_tag, started_at, meter_start_wh) "
                "VALUES (?, ?, ?, ?, ?)",
                (tx_id, evse_id, id_tag, timestamp(started_at), meter_start_wh),
            )
            if cursor.rowcount == 1 and outbox is not None:
                self._queue(tx_id, "start", outbox, started_at)

        self._atomic(write)

    def stop_transaction(
        self,
        tx_id: str,
        stopped_at: datetime,
        meter_stop_wh: float,
        reason: StopReason,
        outbox: dict[str, Any] | None = None,
    ) -> None:
        def write() -> None:
            cursor = self.db.execute(
                "UPDATE transactions SET stopped_at = ?, meter_stop_wh = ?, stop_reason = ? "
                "WHERE id = ? AND stopped_at IS NULL",
                (timestamp(stopped_at), meter_stop_wh, STORED_STOP_REASONS[reason], tx_id),
            )
            if cursor.rowcount == 1 and outbox is not None:
                self._queue(tx_id, "stop", outbox, stopped_at)

        self._atomic(write)

    def add_meter_sample(
        self,
        tx_id: str,
        taken_at: datetime,
        context: str,
        reading: MeterReading,
        outbox: dict[str, Any] | None = None,
    ) -> None:
        def write() -> None:
            self.db.execute(
                "INSERT INTO meter_samples (transaction_id, taken_at, context, energy_wh, power_w, "
                "current_a, voltage_v) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    tx_id,
                    timestamp(taken_at),
                    context,
                    reading.energy_wh,
                    reading.power_w,
                    json.dumps(reading.current_a),
                    json.dumps(reading.voltage_v),
                ),
            )
            if outbox is not None:
                self._queue(tx_id, "meter", outbox, taken_at)

        self._atomic(write)

    # -- the outbox of transaction messages --------------------------------------------

    def _queue(self, tx_id: str, kind: str, body: dict[str, Any], at: datetime) -> None:
        self.db.execute(
            "INSERT INTO outbox (transaction_id, kind, body, created_at) VALUES (?, ?, ?, ?)",
            (tx_id, kind, json.dumps(body), timestamp(at)),
        )

    def outbox(self, limit: int = 100, kinds: tuple[str, ...] = ()) -> list[OutboxEntry]:
        where = f"WHERE o.kind IN ({','.join('?' * len(kinds))}) " if kinds else ""
        try:
            rows = self.db.execute(
                "SELECT o.id, o.transaction_id, o.kind, o.body, o.attempts, t.csms_id FROM outbox o "
                f"LEFT JOIN transactions t ON t.id = o.transaction_id {where}ORDER BY o.id LIMIT ?",
                (*kinds, limit),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read {self.path}: {exc}") from exc
        return [OutboxEntry(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]

    def outbox_size(self) -> int:
        """Transaction messages not yet answered by the CSMS."""
        try:
            count: int = self.db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read {self.path}: {exc}") from exc
        return count

    def outbox_delivered(self, entry_id: int, tx_id: str, csms_id: str | None = None) -> None:
        def write() -> None:
            if csms_id is not None:
                self.db.execute("UPDATE transactions SET csms_id = ? WHERE id = ?", (csms_id, tx_id))
            self.db.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))

        self._atomic(write)

    def add_tx_event(
        self,
        tx_id: str,
        evse_id: int,
        seq_no: int,
        ended: bool,
        energy_wh: float | None,
        body: dict[str, Any],
    ) -> None:
        """Queue one 2.0.1 TransactionEvent and record its seqNo, in one commit."""

        def write() -> None:
            self.db.execute(
                "INSERT INTO tx_events (transaction_id, evse_id, seq_no, ended, energy_wh) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (transaction_id) DO UPDATE SET "
                "seq_no = excluded.seq_no, ended = excluded.ended, "
                "energy_wh = coalesce(excluded.energy_wh, energy_wh)",
                (tx_id, evse_id, seq_no, int(ended), energy_wh),
            )
            self._queue(tx_id, "event", body, datetime.now(UTC))

        self._atomic(write)

    def open_tx_events(self) -> list[tuple[str, int, int, float | None]]:
        """2.0.1 transactions not ended: (id, evse id, last seqNo, last energy in Wh)."""
        try:
            rows = self.db.execute(
                "SELECT transaction_id, evse_id, seq_no, energy_wh FROM tx_events WHERE ended = 0"
            ).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read {self.path}: {exc}") from exc
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def add_security_events(self, bodies: list[dict[str, Any]]) -> None:
        """Queue SecurityEventNotifications (either version; not tied to a transaction)."""

        def write() -> None:
            for body in bodies:
                self._queue("", "security", body, datetime.now(UTC))

        self._atomic(write)

    def drop_outbox(self, kinds: tuple[str, ...]) -> int:
        """Forget queued messages of another OCPP version (``ocpp.version = "auto"``)."""
        marks = ",".join("?" * len(kinds))
        cursor = self.db.execute(f"SELECT count(*) FROM outbox WHERE kind IN ({marks})", kinds)
        count: int = cursor.fetchone()[0]
        if count:
            self._write(f"DELETE FROM outbox WHERE kind IN ({marks})", kinds)
        return count

    def outbox_attempted(self, entry_id: int) -> None:
        self._write("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", (entry_id,))

    def transaction_by_csms_id(self, csms_id: str) -> str | None:
        row = self.db.execute("SELECT id FROM transactions WHERE csms_id = ?", (csms_id,)).fetchone()
        return str(row[0]) if row else None

    def transactions(
        self, open_only: bool = False, limit: int = 1000, unreported: bool = False
    ) -> list[TransactionRecord]:
        """Recorded transactions; ``unreported``: open ones no 2.0.1 event was written for."""
        where = "WHERE t.stopped_at IS NULL" if open_only or unreported else ""
        if unreported:
            where += " AND t.id NOT IN (SELECT transaction_id FROM tx_events)"
        try:
            rows = self._transactions(where, limit)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read {self.path}: {exc}") from exc
        return [
            TransactionRecord(
                r[0],
                r[1],
                r[2],
                parse_timestamp(r[3]),
                r[4],
                parse_timestamp(r[5]) if r[5] else None,
                r[6],
                r[7],
                r[8],
            )
            for r in rows
        ]

    def _transactions(self, where: str, limit: int) -> list[Any]:
        return self.db.execute(
            "SELECT t.id, t.evse_id, t.id_tag, t.started_at, t.meter_start_wh, t.stopped_at, "
            "t.meter_stop_wh, t.stop_reason, "
            "max(t.meter_start_wh, coalesce((SELECT max(energy_wh) FROM meter_samples m "
            "WHERE m.transaction_id = t.id), 0)) "
            f"FROM transactions t {where} ORDER BY t.started_at, t.rowid LIMIT ?",
            (limit,),
        ).fetchall()

    def meter_samples(self, tx_id: str) -> list[dict[str, Any]]:
        """A transaction's readings in order: timestamp, context, energy_wh, power_w, current_a, voltage_v."""
        try:
            rows = self.db.execute(
                "SELECT taken_at, context, energy_wh, power_w, current_a, voltage_v FROM meter_samples "
                "WHERE transaction_id = ? ORDER BY id",
                (tx_id,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read {self.path}: {exc}") from exc
        return [
            {
                "timestamp": r[0],
                "context": r[1],
                "energy_wh": r[2],
                "power_w": r[3],
                "current_a": json.loads(r[4]),
                "voltage_v": json.loads(r[5]),
            }
            for r in rows
        ]

    # -- settings ----------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_setting(self, key: str, value: str) -> None:
        self._write(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def settings(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM settings").fetchall())

    # -- OCPP state: charging profiles, reservations, the CSMS's transaction ids ---------

    def charging_profiles(self) -> list[tuple[int, dict[str, Any]]]:
        """(EVSE id, the profile as 1.6 JSON) of every installed profile."""
        rows = self.db.execute("SELECT evse_id, body FROM charging_profiles").fetchall()
        return [(evse_id, json.loads(body)) for evse_id, body in rows]

    def replace_charging_profiles(self, profiles: list[tuple[int, int, dict[str, Any]]]) -> None:
        """Store exactly ``profiles``: (profile id, EVSE id, the profile as 1.6 JSON)."""
        rows = [(pid, evse_id, json.dumps(body)) for pid, evse_id, body in profiles]

        def write() -> None:
            self.db.execute("DELETE FROM charging_profiles")
            self.db.executemany("INSERT INTO charging_profiles (id, evse_id, body) VALUES (?, ?, ?)", rows)

        self._atomic(write)

    def reservations(self) -> list[tuple[int, int, str, str | None, datetime]]:
        """(id, EVSE id, id tag, parent id tag, expiry) of every stored reservation."""
        rows = self.db.execute("SELECT id, evse_id, id_tag, parent, expiry FROM reservations").fetchall()
        return [(r[0], r[1], r[2], r[3], parse_timestamp(r[4])) for r in rows]

    def save_reservation(
        self, reservation_id: int, evse_id: int, id_tag: str, parent: str | None, expiry: datetime
    ) -> None:
        self._write(
            "INSERT OR REPLACE INTO reservations (id, evse_id, id_tag, parent, expiry) "
            "VALUES (?, ?, ?, ?, ?)",
            (reservation_id, evse_id, id_tag, parent, timestamp(expiry)),
        )

    def delete_reservation(self, reservation_id: int) -> None:
        self._write("DELETE FROM reservations WHERE id = ?", (reservation_id,))

    def open_csms_ids(self) -> dict[str, str]:
        """Open transactions the CSMS has named: local id -> the CSMS's."""
        rows = self.db.execute(
            "SELECT id, csms_id FROM transactions WHERE csms_id IS NOT NULL AND stopped_at IS NULL"
        ).fetchall()
        return {row[0]: row[1] for row in rows}

    def interrupt(self) -> None:
        """Make a call waiting on a lock give up now (shutdown)."""
        self.db.interrupt()

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        self._atomic(lambda: self.db.execute(sql, params))

    def _atomic(self, write: Callable[[], Any]) -> None:
        """Run ``write`` in one SQLite transaction, with errors that say what to do."""
        with _writing(self, "a record (it is kept and retried)"):
            write()


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: Any, *_: Any) -> None:
        try:
            if kind is None:
                self.db.execute("COMMIT")
        finally:
            # SQLite may have rolled back by itself (disk full); never leave one open.
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")


# -- the local authorization list and the authorization cache (controller.core.authorization) --


@contextlib.contextmanager
def _writing(storage: Storage, what: str) -> Iterator[sqlite3.Connection]:
    """One transaction on ``storage``; SQLite errors become StorageError."""
    try:
        with storage._transaction():
            yield storage.db
    except sqlite3.OperationalError as exc:
        raise StorageError(
            f"cannot write {what} to {storage.path}: {exc}; free space or fix permissions on storage.dir"
        ) from exc
    except sqlite3.Error as exc:
        raise StorageError(f"database {storage.path} refused {what}: {exc}", retry=False) from exc


def _read(storage: Storage, what: str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    try:
        return storage.db.execute(sql, params).fetchall()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read {what} from {storage.path}: {exc}") from exc


@functools.lru_cache(maxsize=1024)
def _expiry_text(expiry: datetime) -> str:
    return timestamp(expiry)


def _columns(info: IdTagInfo) -> tuple[str, str | None, str | None]:
    return info.status, _expiry_text(info.expiry) if info.expiry is not None else None, info.parent


def _info(status: str, expiry: str | None, parent: str | None) -> IdTagInfo:
    return IdTagInfo(status, parse_expiry(expiry) if expiry is not None else None, parent)


def save_local_list(
    storage: Storage, update_type: str, version: int, entries: Sequence[tuple[str, IdTagInfo | None]]
) -> None:
    """Write a SendLocalList update and the new version in one transaction.

    The update must be one ``LocalList.check`` accepts; StorageError if it cannot be written.
    """
    if update_type not in (FULL, DIFFERENTIAL):
        raise ValueError(f"unknown update type {update_type!r}")
    rows = [(normalize_id(id_tag), *_columns(info)) for id_tag, info in entries if info is not None]
    deleted = [(normalize_id(id_tag),) for id_tag, info in entries if info is None]
    if update_type == FULL and deleted:
        raise ValueError("a Full update needs idTagInfo for every entry")
    with _writing(storage, "the local authorization list") as db:
        if update_type == FULL:
            db.execute("DELETE FROM local_list")
            db.executemany(
                "INSERT INTO local_list (id_tag, status, expiry, parent) VALUES (?, ?, ?, ?)", rows
            )
        else:
            db.executemany("DELETE FROM local_list WHERE id_tag = ?", deleted)
            db.executemany(
                "INSERT INTO local_list (id_tag, status, expiry, parent) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id_tag) DO UPDATE SET status = excluded.status, "
                "expiry = excluded.expiry, parent = excluded.parent",
                rows,
            )
        db.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (LOCAL_LIST_VERSION_KEY, str(version)),
        )


def load_local_list(storage: Storage) -> LocalList:
    """The stored Local Authorization List (version 0 and empty if none was ever saved)."""
    what = "the local authorization list"
    rows = _read(storage, what, "SELECT id_tag, status, expiry, parent FROM local_list")
    versions = _read(storage, what, "SELECT value FROM settings WHERE key = ?", (LOCAL_LIST_VERSION_KEY,))
    try:
        share = sharing()
        entries = {normalize_id(row[0]): share(_info(*row[1:])) for row in rows}
        version = int(versions[0][0]) if versions and entries else 0
    except ValueError as exc:
        # Refuse rather than skip: a dropped Blocked entry would turn into an unknown id.
        raise StorageError(f"{what} in {storage.path} is corrupt: {exc}", retry=False) from exc
    return LocalList(version=version, entries=entries)


def save_cache_entry(
    storage: Storage, id_tag: str, info: IdTagInfo, used_at: datetime, capacity: int | None = None
) -> None:
    """Store the CSMS's answer for ``id_tag``, last used at ``used_at``.

    With ``capacity``, the table is trimmed to that many rows by the rule ``AuthCache``
    evicts by, so it cannot grow without bound.
    """
    with _writing(storage, "an authorization cache entry") as db:
        key = normalize_id(id_tag)
        now = timestamp(used_at)
        db.execute(
            "INSERT INTO auth_cache (id_tag, status, expiry, parent, used_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id_tag) DO UPDATE SET status = excluded.status, expiry = excluded.expiry, "
            "parent = excluded.parent, used_at = excluded.used_at",
            (key, *_columns(info), now),
        )
        if capacity is None:
            return
        excess = db.execute("SELECT count(*) FROM auth_cache").fetchone()[0] - capacity
        if excess > 0:
            # Expiry strings all come from ``timestamp``, so they compare as text.
            db.execute(
                "DELETE FROM auth_cache WHERE id_tag IN (SELECT id_tag FROM auth_cache WHERE id_tag != ? "
                "ORDER BY (status = ? AND (expiry IS NULL OR expiry > ?)), used_at, rowid LIMIT ?)",
                (key, ACCEPTED, now, excess),
            )


def touch_cache_entry(storage: Storage, id_tag: str, used_at: datetime) -> None:
    """Record that the cache entry of ``id_tag`` decided at ``used_at`` (AuthCacheCtrlr.LifeTime
    counts from the last use, restarts included)."""
    with _writing(storage, "an authorization cache entry's use") as db:
        db.execute(
            "UPDATE auth_cache SET used_at = ? WHERE id_tag = ? AND used_at < ?",
            (timestamp(used_at), normalize_id(id_tag), timestamp(used_at)),
        )


def clear_cache(storage: Storage) -> None:
    """Delete every stored cache entry (ClearCache)."""
    with _writing(storage, "the cleared authorization cache") as db:
        db.execute("DELETE FROM auth_cache")


def load_cache(storage: Storage, capacity: int = DEFAULT_CACHE_CAPACITY) -> AuthCache:
    """The stored Authorization Cache, in order of use; unreadable rows are skipped."""
    cache = AuthCache(capacity)
    rows = _read(
        storage,
        "the authorization cache",
        "SELECT id_tag, status, expiry, parent, used_at FROM auth_cache ORDER BY used_at, rowid",
    )
    for id_tag, status, expiry, parent, used_at in rows:
        try:
            cache.update(id_tag, _info(status, expiry, parent), parse_timestamp(used_at))
        except (ValueError, TypeError) as exc:
            # The cache only saves a round trip to the CSMS; a bad row is not worth failing for.
            log.warning(
                "skipping unreadable authorization cache entry %r in %s: %s", id_tag, storage.path, exc
            )
    return cache
