"""Soak: random sessions under random faults, with the invariants checked all along.

    python -m hil.soak --minutes 10 [--ocpp 1.6|2.0.1] [--seed N] [--dir DIR]

Runs ``evse run`` (a subprocess on simulated hardware) against the development CSMS
through the fault proxy. One thread plays EVs (plug, swipe, charge, sometimes a pause,
unplug); another injects a fault every 15-45 s, each kind once before any repeats: the
link dropped, delayed, black-holed or reset, a power loss (SIGKILL and restart), a CSMS
restart, a clock jump, a full disk (the last needs root: the storage is a tmpfs of its
own). A monitor samples the rig 20 times a second. Checked:

- no transaction lost: every transaction the rig saw is in the station's database, and
  every one there reached the CSMS and ended there (on 2.0.1, every one that reached
  TxStartPoint: below it no TransactionEvent is due);
- none duplicated: the CSMS knows no transaction the station does not;
- energy never decreasing, across restarts;
- the contactor never closed outside C/D with PWM for longer than the IEC 61851-1
  budget (100 ms) plus the monitor's sampling slack;
- the daemon alive (but for the power losses) and its memory not growing.

Prints a summary (and one JSON line) and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hil.csms import CsmsThread
from hil.proxy import ProxyThread
from hil.rig import RigError
from hil.simrig import SimRig
from hil.station import LocalStation
from hil.view import CsmsView

TOKEN = "04A1B2C3D4"
OPEN_BUDGET_S = 0.1  # IEC 61851-1: contactor open within 100 ms of leaving C/D
SAMPLE_S = 0.05
SLACK_S = 0.15  # the monitor's own sampling and scheduling, on a shared machine
MEMORY_GROWTH_MB = 8.0  # per daemon lifetime, over its first minute
FAULTS = (
    "down",
    "drop",
    "delay",
    "blackhole",
    "reset",
    "power_loss",
    "csms_restart",
    "clock_jump",
    "disk_full",
)


@dataclass
class Soak:
    station: LocalStation
    csms: CsmsThread
    proxy: ProxyThread
    view: CsmsView
    rng: random.Random
    deadline: float
    violations: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    sessions: int = 0
    seen_tx: set[str] = field(default_factory=set)
    memory: list[tuple[int, float]] = field(default_factory=list)  # (pid, MB)
    worst_closed_s: float = 0.0
    worst_open_s: float = 0.0  # from the rig's unplug / suspend to the contactor reading open
    restarting: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    bag: list[str] = field(default_factory=list)

    def violation(self, text: str) -> None:
        print(f"VIOLATION: {text}", flush=True)
        self.violations.append(text)

    # -- the EV side -------------------------------------------------------------------

    def sessions_loop(self, rig: SimRig) -> None:
        while time.monotonic() < self.deadline and not self.stop.is_set():
            try:
                self.session(rig)
            except (OSError, RigError, ValueError) as exc:
                print(f"  session cut short: {exc}", flush=True)
            finally:
                with contextlib.suppress(OSError, RigError, ValueError):
                    rig.unplug()  # whatever happened, the EV leaves
            time.sleep(self.rng.uniform(0.5, 3))

    def ev_stops(self, rig: SimRig, action: Callable[[], None]) -> None:
        """Do ``action`` (the EV stops asking) and time the contactor's opening from the EV side."""
        was_closed = rig.status()["contactor_closed"]
        asked = time.monotonic()
        action()
        if not was_closed:
            return
        while rig.status()["contactor_closed"]:
            if time.monotonic() - asked > 5:
                break
            time.sleep(0.005)
        took = time.monotonic() - asked
        self.worst_open_s = max(self.worst_open_s, took)
        if took > OPEN_BUDGET_S + SLACK_S:
            self.violation(f"contactor took {took * 1000:.0f} ms to open after the EV stopped asking")

    def session(self, rig: SimRig) -> None:
        self.sessions += 1
        rig.plug()
        if self.rng.random() < 0.5:
            rig.swipe(TOKEN)
            rig.charge(max_current_a=self.rng.choice([10, 16, 32]))
        else:
            rig.charge(max_current_a=self.rng.choice([10, 16, 32]))
            time.sleep(self.rng.uniform(0, 1))
            rig.swipe(TOKEN)
        end = time.monotonic() + self.rng.uniform(4, 20)
        paused = False
        while time.monotonic() < end:
            status = rig.status()
            if status["transaction_id"]:
                self.seen_tx.add(status["transaction_id"])
            if not paused and self.rng.random() < 0.02:
                self.ev_stops(rig, rig.suspend)
                time.sleep(self.rng.uniform(0.5, 2))
                rig.charge()
                paused = True
            time.sleep(0.2)
        status = rig.status()
        if status["transaction_id"]:
            self.seen_tx.add(status["transaction_id"])
        self.ev_stops(rig, rig.unplug)

    # -- faults ------------------------------------------------------------------------

    def faults_loop(self) -> None:
        while not self.stop.wait(self.rng.uniform(15, 45)) and time.monotonic() < self.deadline - 20:
            if not self.bag:  # every kind once, in random order, before any repeats
                self.bag = [k for k in FAULTS if k != "disk_full" or self.station.mounted]
                self.rng.shuffle(self.bag)
            kind = self.bag.pop()
            self.faults[kind] += 1
            hold = self.rng.uniform(3, 25)
            print(f"[{self.elapsed():6.1f}s] fault: {kind}", flush=True)
            try:
                self.inject(kind, hold)
            except Exception as exc:  # a fault that cannot be made or undone is a finding
                self.violation(f"fault {kind} failed: {exc!r}")
                with contextlib.suppress(Exception):
                    self.proxy.command("heal")
                    self.station.free_disk()

    def inject(self, kind: str, hold: float) -> None:
        if kind == "down":
            self.proxy.command("down on")
            self.stop.wait(hold)
            self.proxy.command("down off")
        elif kind == "drop":
            self.proxy.command("drop")
        elif kind == "delay":
            self.proxy.command(f"delay {self.rng.uniform(0.5, 3):.2f}")
            self.stop.wait(hold)
            self.proxy.command("delay 0")
        elif kind == "blackhole":
            self.proxy.command("blackhole on")
            self.stop.wait(hold)
            self.proxy.command("blackhole off")
        elif kind == "reset":
            self.proxy.command("reset")
        elif kind == "power_loss":
            with self.restarting:
                self.station.power_loss(off_s=self.rng.uniform(0.5, 3)).close()  # the rigs reconnect
        elif kind == "csms_restart":
            self.csms.restart(down_s=self.rng.uniform(1, 5))
        elif kind == "clock_jump":
            self.csms.csms.clock_offset_s += self.rng.choice([-1, 1]) * self.rng.uniform(60, 7200)
            if self.view.connected():
                try:
                    self.view.trigger_heartbeat()
                except Exception as exc:  # the link may be down: the next heartbeat carries it
                    print(f"  heartbeat not triggered: {exc}", flush=True)
        elif kind == "disk_full":
            self.station.fill_disk()
            self.stop.wait(hold)
            self.station.free_disk()

    # -- the monitor -------------------------------------------------------------------

    def monitor_loop(self) -> None:
        rig = SimRig.wait_for(self.station.storage / "sim.sock", reconnect_s=30)
        last_energy = 0.0
        closed_since: float | None = None
        pid, pid_since = None, 0.0
        next_memory = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            with self.restarting:
                alive = self.station.pid is not None
            if not alive:
                self.violation(
                    f"the daemon exited (code {self.station.proc.returncode if self.station.proc else None})"
                )
                self.stop.set()
                return
            try:
                status = rig.status()
            except (OSError, ValueError):
                time.sleep(SAMPLE_S)
                continue
            if self.station.pid != pid:
                pid, pid_since = self.station.pid, now
            energy = status["energy_wh"]
            # A daemon just started reports 0 until its first meter reading (within a second).
            if energy < last_energy - 1e-6 and now - pid_since > 3:
                self.violation(f"energy went back from {last_energy:.1f} to {energy:.1f} Wh")
            if now - pid_since > 3:
                last_energy = max(last_energy, energy)
            forbidden = status["contactor_closed"] and not (
                status["cp_state"] in ("C", "D") and status["pwm"]
            )
            if forbidden:
                closed_since = closed_since or now
                lasted = now - closed_since
                self.worst_closed_s = max(self.worst_closed_s, lasted)
                if lasted > OPEN_BUDGET_S + SLACK_S:
                    self.violation(
                        f"contactor closed for {lasted * 1000:.0f} ms in a forbidden state: {status}"
                    )
                    closed_since = None
            else:
                closed_since = None
            if now >= next_memory:
                pid, rss = self.station.pid, self.station.rss_mb()
                if pid is not None and rss is not None:
                    self.memory.append((pid, rss))
                next_memory = now + 5
            time.sleep(SAMPLE_S)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # -- the end -----------------------------------------------------------------------

    def check_transactions(self) -> dict[str, int]:
        with sqlite3.connect(self.station.storage / "evse.db") as db:
            rows = db.execute("SELECT id, csms_id, stopped_at FROM transactions").fetchall()
            # 2.0.1: a transaction that never reached TxStartPoint (the power path never
            # closed: say its start could not be stored while the disk was full, and the EV
            # left) queued no TransactionEvent, and the CSMS rightly never hears of it.
            evented = (
                None if self.view.v16 else {r[0] for r in db.execute("SELECT transaction_id FROM tx_events")}
            )
        below_start = 0
        station_ids = {row[0] for row in rows} | {row[1] for row in rows if row[1]}
        for seen in sorted(self.seen_tx - station_ids):
            self.violation(f"transaction {seen} seen on the rig is not in the station's database")
        known = {tx.id: tx for tx in self.view.transactions()}
        key = 1 if self.view.v16 else 0
        for row in rows:
            tx = known.get(str(row[key])) if row[key] else None
            if tx is not None and tx.distinct_ends > 1:
                self.violation(f"transaction {tx.id} ended {tx.distinct_ends} times with different messages")
            if row[2] is None:
                self.violation(f"transaction {row[0]} never stopped at the station")
            elif evented is not None and row[0] not in evented and tx is None:
                below_start += 1
            elif tx is None or not tx.ended:
                self.violation(f"transaction {row[0]} did not reach the CSMS as ended ({tx})")
            elif (
                tx.meter_stop_wh is not None
                and tx.meter_start_wh is not None
                and tx.meter_stop_wh < tx.meter_start_wh
            ):
                self.violation(f"transaction {tx.id} ends below its start: {tx}")
        extra = set(known) - {str(row[key]) for row in rows}
        for tx_id in sorted(extra):
            self.violation(f"the CSMS has transaction {tx_id}, which the station does not: a duplicate")
        return {
            "station": len(rows),
            "csms": len(known),
            "redelivered_ends": sum(max(0, tx.ends - 1) for tx in known.values()),
            "below_tx_start_point": below_start,
        }

    def check_memory(self) -> dict[str, float | None]:
        by_pid: dict[int, list[float]] = {}
        for pid, mb in self.memory:
            by_pid.setdefault(pid, []).append(mb)
        for pid, samples in by_pid.items():
            if len(samples) >= 12:  # a minute or more of life: compare its end with its first minute
                settled, last = max(samples[:12]), samples[-1]
                if last - settled > MEMORY_GROWTH_MB:
                    self.violation(f"daemon {pid}: memory grew from {settled:.1f} to {last:.1f} MB")
        return {
            "start_mb": round(self.memory[0][1], 1) if self.memory else None,
            "end_mb": round(self.memory[-1][1], 1) if self.memory else None,
            "max_mb": round(max(mb for _, mb in self.memory), 1) if self.memory else None,
        }


def wait_drained(view: CsmsView, station: LocalStation, timeout: float) -> None:
    """Until every transaction in the station's database has ended at the CSMS."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(station.storage / "evse.db") as db:
            open_rows = db.execute("SELECT count(*) FROM transactions WHERE stopped_at IS NULL").fetchone()[0]
            queued = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        if open_rows == 0 and queued == 0:
            return
        time.sleep(1)


def run(minutes: float, version: str, seed: int, work: Path) -> dict[str, Any]:
    rng = random.Random(seed)
    with (
        CsmsThread(quiet=True, versions=(version,), heartbeat_interval=60) as csms,
        ProxyThread(("127.0.0.1", csms.port)) as proxy,
    ):
        station = LocalStation(work / "station", proxy.url("/ocpp"), version, disk_mb=64)
        if not station.mounted:
            print(f"disk_full left out: {station.no_tmpfs_because}", flush=True)
        view = CsmsView(csms, version)
        try:
            rig = station.start()
            csms.wait_for("BootNotification", timeout=30)
            soak = Soak(station, csms, proxy, view, rng, time.monotonic() + minutes * 60)
            threads = [
                threading.Thread(target=soak.monitor_loop, name="monitor", daemon=True),
                threading.Thread(target=soak.faults_loop, name="faults", daemon=True),
            ]
            for thread in threads:
                thread.start()
            soak.sessions_loop(rig)
            soak.stop.set()
            for thread in threads:
                thread.join(60)
            proxy.command("heal")
            memory = soak.check_memory()
            try:
                wait_drained(view, station, timeout=180)
                counts = soak.check_transactions()
            except sqlite3.Error as exc:  # the station's database is gone or broken: a finding
                soak.violation(f"the station's database cannot be read: {exc}")
                counts = {"station": 0, "csms": len(view.transactions()), "redelivered_ends": 0}
        finally:
            station.close()
    return {
        "ocpp": version,
        "minutes": minutes,
        "seed": seed,
        "sessions": soak.sessions,
        "transactions": counts,
        "faults": dict(sorted(soak.faults.items())),
        "faults_total": sum(soak.faults.values()),
        "daemon_starts": station.starts,
        "worst_closed_forbidden_ms": round(soak.worst_closed_s * 1000),
        "worst_opening_ms": round(soak.worst_open_s * 1000),
        "memory": memory,
        "violations": len(soak.violations),
        "violation_list": soak.violations[:20],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--ocpp", choices=("1.6", "2.0.1"), default="1.6")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a new temp dir)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    work = args.dir or Path(tempfile.mkdtemp(prefix="evse-soak-"))
    print(f"soak: {args.minutes} min, OCPP {args.ocpp}, seed {seed}, in {work}", flush=True)
    summary = run(args.minutes, args.ocpp, seed, work)
    memory = summary["memory"]
    print(
        f"\nsessions {summary['sessions']}, transactions station/CSMS "
        f"{summary['transactions']['station']}/{summary['transactions']['csms']} "
        f"({summary['transactions']['below_tx_start_point']} never reached TxStartPoint), "
        f"faults {summary['faults_total']} {summary['faults']}, daemon starts {summary['daemon_starts']}\n"
        f"memory {memory['start_mb']} MB at start, {memory['end_mb']} MB at end (max {memory['max_mb']}); "
        f"contactor: slowest opening after the EV stopped asking {summary['worst_opening_ms']} ms, longest "
        f"closed in a forbidden state seen {summary['worst_closed_forbidden_ms']} ms\n"
        f"violations: {summary['violations']}"
    )
    print(json.dumps(summary))
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
