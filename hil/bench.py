"""Benchmarks: footprint, control-loop latency under an OCPP flood, start-up, replay.

    python -m hil.bench [--quick] [--ocpp 1.6|2.0.1] [--dir DIR]

Runs ``evse run`` as a subprocess on simulated hardware against the development CSMS
over TLS (security profile 2), once per OCPP version, and measures:

- ``startup_s``: process start to BootNotification received by the CSMS (median of
  several starts);
- ``rss_mb`` and ``cpu_idle_percent``: after ``idle_s`` connected and idle;
- ``rss_mb_charging`` and ``cpu_charging_percent``: during a session with meter values
  every second;
- ``latency_ms_*``: from a pilot change on the simulated EV to the contactor command,
  timed by the simulation inside the daemon (the rig's ``timing`` command), over
  ``openings`` changes C -> B (each after a B -> C that closes the contactor, timed as
  ``close_latency_ms_max``) while the CSMS floods the station (SendLocalList,
  GetConfiguration or GetBaseReport, TriggerMessage MeterValues);
- ``local_list_apply_s``: a SendLocalList (Full) of ``list_entries`` entries, sent to
  answered (median of ``LIST_SENDS``);
- ``replay_msgs_per_s`` (``hil.replay``) and ``auth_lookup_us`` (in this process).

The top-level figures are the worse of the two versions; ``ocpp`` has each version's.
Prints one JSON object; CPU figures are percent of one core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.core.authorization import AuthCache, AuthSettings, IdTagInfo, LocalList, decide
from hil import replay
from hil.csms import CallErrorReply, CsmsThread
from hil.loop_latency import percentile
from hil.pki import Pki, server_context
from hil.simrig import SimRig
from hil.station import LocalStation

TOKEN = "04A1B2C3D4"
PASSWORD = "bench-password-000001"  # profile 2: 16 to 40 characters
VERSIONS = ("1.6", "2.0.1")
LIST_SENDS = 3  # the local list figure is the median of this many
HIGHER_IS_BETTER = {"meter_messages_per_s"}
TARGETS = {  # issue 9; "max" figures must stay at or below, "min" at or above
    "rss_mb": ("max", 40.0),
    "rss_mb_charging": ("max", 40.0),
    "cpu_idle_percent": ("max", 1.0),
    "startup_s": ("max", 1.0),
    "latency_ms_max": ("max", 50.0),
    "replay_msgs_per_s": ("min", 500.0),
    "local_list_apply_s": ("max", 2.0),
}


@dataclass(frozen=True)
class Plan:
    idle_s: float
    charge_s: float
    openings: int
    flood_entries: int
    list_entries: int
    replay_messages: int
    starts: int
    lookups: int


FULL = Plan(
    idle_s=60, charge_s=30, openings=200, flood_entries=10_000, list_entries=50_000,
    replay_messages=10_000, starts=3, lookups=100_000,
)  # fmt: skip
QUICK = Plan(
    idle_s=6, charge_s=4, openings=40, flood_entries=2_000, list_entries=10_000,
    replay_messages=1_000, starts=1, lookups=20_000,
)  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_percent(pid: int, seconds: float) -> float:
    """CPU use of ``pid`` over the next ``seconds``, in percent of one core."""
    before, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - before) / (time.monotonic() - t0)


def machine() -> dict[str, Any]:
    model = ""
    for name in ("/proc/device-tree/model", "/proc/cpuinfo"):
        try:
            text = Path(name).read_text(errors="replace")
        except OSError:
            continue
        if name.endswith("model"):
            model = text.strip("\0\n")
            break
        for line in text.splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        if model:
            break
    mem_kb = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


# -- the CSMS's messages ----------------------------------------------------------------


def local_list(version: str, list_version: int, entries: int) -> dict[str, Any]:
    ids = [f"{n:08X}" for n in range(entries)]
    if version == "1.6":
        return {
            "listVersion": list_version,
            "updateType": "Full",
            "localAuthorizationList": [{"idTag": i, "idTagInfo": {"status": "Accepted"}} for i in ids],
        }
    return {
        "versionNumber": list_version,
        "updateType": "Full",
        "localAuthorizationList": [
            {"idToken": {"idToken": i, "type": "ISO14443"}, "idTokenInfo": {"status": "Accepted"}}
            for i in ids
        ],
    }


def flood_calls(version: str, entries: int) -> list[tuple[str, Any]]:
    """What the CSMS keeps sending; a callable payload is made afresh for each call."""
    counter = iter(range(1, 1 << 30))
    if version == "1.6":
        return [
            ("SendLocalList", lambda: local_list(version, next(counter), entries)),
            ("GetConfiguration", {}),
            ("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1}),
        ]
    return [
        ("SendLocalList", lambda: local_list(version, next(counter), entries)),
        ("GetBaseReport", lambda: {"requestId": next(counter), "reportBase": "FullInventory"}),
        ("TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 1}}),
    ]


def meter_every_second(csms: CsmsThread, version: str) -> None:
    if version == "1.6":
        reply = csms.call("CP001", "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "1"})
        ok = reply["status"] == "Accepted"
    else:
        reply = csms.call(
            "CP001",
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "attributeValue": "1",
                        "component": {"name": "SampledDataCtrlr"},
                        "variable": {"name": "TxUpdatedInterval"},
                    }
                ]
            },
        )
        ok = reply["setVariableResult"][0]["attributeStatus"] == "Accepted"
    if not ok:
        raise RuntimeError(f"the station refused a 1 s meter interval: {reply}")


class Flood(threading.Thread):
    """Sends the flood's calls one after another, round robin, until stopped."""

    def __init__(self, csms: CsmsThread, version: str, entries: int) -> None:
        super().__init__(name="flood", daemon=True)
        self.csms, self.calls = csms, flood_calls(version, entries)
        self.done: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for action, payload in self.calls:
                if self._halt.is_set():
                    return
                body = payload() if callable(payload) else payload
                try:
                    # Not checked here: the station checks what it receives, and the
                    # bench's own CPU is better left to the station.
                    self.csms.call("CP001", action, body, timeout=60, validate=False)
                    self.done[action] += 1
                except (CallErrorReply, TimeoutError, RuntimeError) as exc:
                    self.errors[f"{action}: {type(exc).__name__}"] += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(90)


# -- one station ------------------------------------------------------------------------


def wait_command(rig: SimRig, closed: bool, after: float, timeout: float = 10.0) -> dict[str, Any]:
    """Poll the rig until the contactor command is ``closed`` and was given after ``after``."""
    deadline = time.monotonic() + timeout
    while True:
        timing = rig.timing()
        if timing["contactor_command"] is closed and timing["contactor_commanded_at"] >= after:
            return timing
        if time.monotonic() > deadline:
            raise TimeoutError(f"contactor not commanded {'closed' if closed else 'open'}: {timing}")
        time.sleep(0.002)


def latency(rig: SimRig, openings: int) -> dict[str, Any]:
    """Time pilot changes to their contactor commands: ``openings`` times C -> B (the
    safety path, timed against the 100 ms budget), each followed by a B -> C that closes."""
    opened: list[float] = []
    closed: list[float] = []
    injected: list[float] = []
    for _ in range(openings):
        for to_open in (True, False):
            time.sleep(random.uniform(0.0, 0.05))  # any phase against the control loop's ticks
            sent = time.monotonic()
            (rig.suspend if to_open else rig.charge)()
            timing = wait_command(rig, not to_open, sent)
            (opened if to_open else closed).append(
                (timing["contactor_commanded_at"] - timing["cp_changed_at"]) * 1000
            )
            injected.append((timing["cp_changed_at"] - sent) * 1000)
    return {
        "latency_ms_p50": round(statistics.median(opened), 1),
        "latency_ms_p99": round(percentile(opened, 0.99), 1),
        "latency_ms_max": round(max(opened), 1),
        "latency_openings": len(opened),
        "close_latency_ms_max": round(max(closed), 1),
        "rig_inject_ms_max": round(max(injected), 1),
    }


def start(station: LocalStation, csms: CsmsThread, after: int) -> tuple[SimRig, float]:
    t0 = time.monotonic()
    rig = station.start()
    boot = csms.wait_for("BootNotification", timeout=30, after=after)
    csms.wait_for("StatusNotification", timeout=30, after=after)
    return rig, boot.t - t0


def run_version(version: str, plan: Plan, work: Path, pki: Pki, log: Any) -> dict[str, Any]:
    ca = pki.ca(f"Bench Root {version}")
    context = server_context(*pki.server(ca))
    result: dict[str, Any] = {}
    with CsmsThread(
        quiet=True, ssl_context=context, passwords={"CP001": PASSWORD}, versions=(version,)
    ) as csms:
        station = LocalStation(
            work / f"station-{version}",
            csms.tls_url,
            version,
            ocpp_extra=f'security_profile = 2\npassword = "{PASSWORD}"\nca_file = "{ca.pem_path}"\n',
        )
        try:
            startups = []
            for n in range(plan.starts):
                if n:
                    station.stop()
                rig, startup = start(station, csms, after=len(csms.timeline))
                startups.append(startup)
            assert station.pid is not None
            result["startup_s"] = round(statistics.median(startups), 3)
            log(f"{version}: started in {result['startup_s']} s; idle {plan.idle_s:.0f} s")

            time.sleep(plan.idle_s / 2)
            result["cpu_idle_percent"] = round(cpu_percent(station.pid, plan.idle_s / 2), 2)
            result["rss_mb"] = round(station.rss_mb() or 0.0, 1)

            meter_every_second(csms, version)
            rig.plug()
            rig.swipe(TOKEN)
            rig.charge()
            wait_command(rig, True, 0.0, timeout=30)
            log(f"{version}: charging {plan.charge_s:.0f} s")
            mark = len(csms.timeline)
            time.sleep(2)  # the session's start-up messages are not the steady state
            result["cpu_charging_percent"] = round(cpu_percent(station.pid, plan.charge_s), 2)
            result["rss_mb_charging"] = round(station.rss_mb() or 0.0, 1)
            meters = [
                e
                for e in csms.timeline[mark:]
                if e.direction == "in" and e.action in ("MeterValues", "TransactionEvent")
            ]
            result["meter_messages_per_s"] = round(len(meters) / (plan.charge_s + 2), 2)

            log(f"{version}: {plan.openings} openings under the flood")
            flood = Flood(csms, version, plan.flood_entries)
            flood.start()
            try:
                time.sleep(1.0)  # the flood under way first
                result.update(latency(rig, plan.openings))
            finally:
                flood.stop()
            result["flood_answered"] = dict(flood.done)
            if flood.errors:
                result["flood_errors"] = dict(flood.errors)
            result["rss_mb_after_flood"] = round(station.rss_mb() or 0.0, 1)
            rig.unplug()

            log(f"{version}: SendLocalList of {plan.list_entries} entries, {LIST_SENDS} times")
            applied = []
            for n in range(LIST_SENDS):
                body = local_list(version, 1_000_000 + n, plan.list_entries)
                t0 = time.monotonic()
                reply = csms.call("CP001", "SendLocalList", body, timeout=120, validate=False)
                applied.append(time.monotonic() - t0)
                if reply.get("status") != "Accepted":
                    raise RuntimeError(f"SendLocalList answered {reply}")
            result["local_list_apply_s"] = round(statistics.median(applied), 3)
            result["rss_mb_with_list"] = round(station.rss_mb() or 0.0, 1)
        finally:
            station.close()
    return result


# -- in this process ----------------------------------------------------------------------


def auth_lookup_us(entries: int, lookups: int) -> float:
    """Mean time of one offline authorization decision against a list of ``entries``."""
    accepted = IdTagInfo("Accepted")
    listed = LocalList(version=1, entries={f"{n:08X}": accepted for n in range(entries)})
    cache = AuthCache()
    settings = AuthSettings()
    now = datetime.now(UTC)
    ids = [f"{random.randrange(entries * 2):08x}" for _ in range(lookups)]  # half of them unknown
    t0 = time.perf_counter()
    for id_tag in ids:
        decide(id_tag, now, False, listed, cache, settings)
    return (time.perf_counter() - t0) / lookups * 1e6


def summary(per_version: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each figure at its worse across the versions: the highest, or for a rate the lowest."""
    out: dict[str, Any] = {}
    for result in per_version.values():
        for key, value in result.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                worse = min if key in HIGHER_IS_BETTER else max
                out[key] = worse(out.get(key, value), value)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts: under a minute")
    parser.add_argument("--ocpp", choices=VERSIONS, action="append", help="one version only (repeatable)")
    parser.add_argument("--dir", type=Path, help="work directory (default: a new temporary one)")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    work = args.dir or Path(tempfile.mkdtemp(prefix="evse-bench-"))
    started = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {text}", file=sys.stderr, flush=True)

    pki = Pki(work / "pki")
    per_version = {v: run_version(v, plan, work, pki, log) for v in args.ocpp or VERSIONS}
    log(f"replay of {plan.replay_messages} queued messages")
    replayed = replay.measure(plan.replay_messages, work / "replay")
    result: dict[str, Any] = {
        **summary(per_version),
        "replay_msgs_per_s": replayed["replay_msgs_per_s"],
        "auth_lookup_us": round(auth_lookup_us(plan.list_entries, plan.lookups), 2),
        "quick": args.quick,
        "plan": vars(plan),
        "ocpp": per_version,
        "replay": replayed,
        "machine": machine(),
        "bench_s": round(time.monotonic() - started, 1),
    }
    missed = []
    for key, (kind, limit) in TARGETS.items():
        value = result.get(key)
        if value is not None and (value > limit if kind == "max" else value < limit):
            missed.append(f"{key} {value} (target {'<=' if kind == 'max' else '>='} {limit})")
    result["targets_missed"] = missed
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
