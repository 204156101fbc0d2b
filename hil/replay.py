"""How fast the daemon delivers queued transaction messages after a reconnect.

    python -m hil.replay [--messages 10000]

Fills a fresh station database with transactions whose messages (StartTransaction,
MeterValues, StopTransaction) never reached a CSMS, as after a long outage, then starts
the daemon (a subprocess on simulated hardware) against the development CSMS and times
the delivery of the whole queue, from BootNotification to the last StopTransaction.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controller.io.storage import Storage, timestamp
from hil.csms import CsmsThread
from hil.station import LocalStation

METER_PER_TX = 3  # start, 3 meter values, stop: 5 messages per transaction


def fill(path: Path, messages: int) -> int:
    """Queue ``messages`` transaction messages (rounded to whole transactions)."""
    Storage(path).close()  # creates the schema
    per_tx = METER_PER_TX + 2
    transactions = max(1, messages // per_tx)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    tx_rows, outbox = [], []
    for n in range(transactions):
        tx_id = f"replay-{n:06d}"
        start = t0 + timedelta(hours=n)
        energy = n * 10_000.0
        stop_at = start + timedelta(minutes=30)
        tx_rows.append(
            (tx_id, 1, "04A1B2C3", timestamp(start), energy, timestamp(stop_at), energy + 7000, "Local")
        )
        outbox.append(
            (
                tx_id,
                "start",
                {
                    "evse_id": 1,
                    "id_tag": "04A1B2C3",
                    "timestamp": timestamp(start),
                    "meter_start_wh": energy,
                    "reservation_id": None,
                },
            )
        )
        for m in range(METER_PER_TX):
            at = start + timedelta(minutes=10 * (m + 1))
            outbox.append(
                (
                    tx_id,
                    "meter",
                    {
                        "evse_id": 1,
                        "timestamp": timestamp(at),
                        "context": "Sample.Periodic",
                        "energy_wh": energy + 2000 * (m + 1),
                        "power_w": 11000.0,
                        "current_a": [16.0] * 3,
                        "voltage_v": [230.0] * 3,
                    },
                )
            )
        outbox.append(
            (
                tx_id,
                "stop",
                {
                    "evse_id": 1,
                    "timestamp": timestamp(stop_at),
                    "meter_stop_wh": energy + 7000,
                    "reason": "Local",
                    "id_tag": "04A1B2C3",
                },
            )
        )
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO transactions (id, evse_id, id_tag, started_at, meter_start_wh, stopped_at, "
            "meter_stop_wh, stop_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            tx_rows,
        )
        db.executemany(
            "INSERT INTO outbox (transaction_id, kind, body, created_at) VALUES (?, ?, ?, ?)",
            [(tx, kind, json.dumps(body), body["timestamp"]) for tx, kind, body in outbox],
        )
    return len(outbox)


def measure(messages: int, work: Path) -> dict[str, Any]:
    """Queue ``messages`` in a fresh station under ``work`` and time their delivery."""
    with CsmsThread(quiet=True) as csms:
        station = LocalStation(work, csms.url)
        queued = fill(station.storage / "evse.db", messages)
        expected = queued // (METER_PER_TX + 2)
        try:
            station.start().close()
            boot = csms.wait_for("BootNotification", timeout=30)
            # The CSMS numbers transactions 1, 2, ...: the last stop names the last one.
            try:
                last = csms.wait_for(
                    "StopTransaction", where=lambda p: p["transactionId"] == expected, timeout=600
                ).t
            except TimeoutError:
                raise RuntimeError(f"delivery incomplete; see {station.log}") from None
            stops = len(csms.calls("StopTransaction"))
            if stops != expected:
                raise RuntimeError(f"{stops} StopTransactions for {expected} transactions")
        finally:
            station.stop()
    seconds = last - boot.t
    return {
        "queued_messages": queued,
        "replay_s": round(seconds, 2),
        "replay_msgs_per_s": round(queued / seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    try:
        result = measure(args.messages, Path(tempfile.mkdtemp(prefix="evse-replay-")))
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
