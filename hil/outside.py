"""The station measured from the outside, the way a test bench sees it: the rig socket
polled every 2 ms, the daemon's process tree read from /proc, and a cgroup that holds the
OCPP process to a quarter of one core.

Times are ``time.perf_counter`` of this process: a rig command sent, the first status
reply that shows what was waited for.

The rig-side measurements run in a prober process of their own, so that nothing else
(the bench's CSMS encoding a flood, say) holds the GIL while it polls:

    python -m hil.outside openings --socket PATH --count N [--evse 1] [--inside]
    python -m hil.outside kill --socket PATH --pid PID [--evse 1]
    python -m hil.outside ready --socket PATH

Each prints its result as one JSON line (``ready`` prints ``{"polling": true}`` first, once
it polls). ``--realtime`` asks for SCHED_FIFO ``PROBER_PRIORITY`` for the prober, below the
safety loop's priority; where that is not allowed it runs at normal priority.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.safety.realtime import SAFETY_PRIORITY, policy_name, realtime_thread
from hil.rig import RigError
from hil.simrig import RigReplyError, SimRig

POLL_S = 0.002  # how often a bench asks the rig for its status
# Above every normal process (the daemon's OCPP process, the bench's CSMS), below the
# safety loop: the prober must never be what delays the loop it measures.
PROBER_PRIORITY = SAFETY_PRIORITY - 10
Status = dict[str, Any]


def percentile(values: list[float], fraction: float) -> float:
    """The value ``fraction`` of the way up the sorted values (nearest rank)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def spread(prefix: str, values_ms: list[float]) -> dict[str, float]:
    """``prefix_p50``, ``prefix_p99`` and ``prefix_max`` of some milliseconds, rounded."""
    return {
        f"{prefix}_p50": round(percentile(values_ms, 0.5), 1),
        f"{prefix}_p99": round(percentile(values_ms, 0.99), 1),
        f"{prefix}_max": round(max(values_ms), 1),
    }


def contactor_open(status: Status) -> bool:
    return status["contactor_closed"] is False


def contactor_closed(status: Status) -> bool:
    return status["contactor_closed"] is True


def safety_ready(status: Status) -> bool:
    """Pilot at state A levels and the contactor open: what a fresh start must reach first."""
    return status["cp_state"] == "A" and status["contactor_closed"] is False


# -- polling the rig ---------------------------------------------------------------------


def poll(rig: SimRig, check: Callable[[Status], bool], timeout: float, evse: int = 1) -> float:
    """Ask for the status every 2 ms until ``check`` passes; when that reply arrived.
    Raises TimeoutError after ``timeout`` s; OSError if the rig goes away."""
    deadline = time.perf_counter() + timeout
    next_at = time.perf_counter()
    while True:
        status = rig.status(evse)
        now = time.perf_counter()
        if check(status):
            return now
        if now > deadline:
            raise TimeoutError(f"not seen within {timeout} s; last status {status}")
        next_at += POLL_S
        if next_at > now:
            time.sleep(next_at - now)
        else:  # a slow reply: the next request at once, no burst to catch up
            next_at = now


@dataclass(frozen=True)
class KillOutcome:
    open_ms: float | None  # kill to the first status showing the contactor open; None: never seen
    rig_gone: bool  # the rig stopped answering before any status showed the contactor open


def kill_to_open(rig: SimRig, pid: int, timeout: float = 1.0, evse: int = 1) -> KillOutcome:
    """SIGKILL ``pid``, then ask the rig for its status every 2 ms (reconnecting when the
    connection breaks) until it shows the contactor open or ``timeout`` s pass."""
    killed = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    answering = True
    while (now := time.perf_counter()) - killed < timeout:
        try:
            status = rig.status(evse)  # after a failure, SimRig connects afresh first
        except (OSError, RigError, ValueError):
            answering = False
        else:
            answering = True
            if contactor_open(status):
                return KillOutcome((time.perf_counter() - killed) * 1000, rig_gone=False)
        time.sleep(max(0.0, now + POLL_S - time.perf_counter()))
    return KillOutcome(None, rig_gone=not answering)


def answers(path: Path) -> bool:
    """Whether something accepts connections on the rig socket ``path`` now."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


class ReadyWatch(threading.Thread):
    """Polls the rig socket every 2 ms from before the daemon is spawned (refused or
    missing: not ready) and notes when a status reply first passes ``check``."""

    def __init__(
        self, path: Path, check: Callable[[Status], bool] = safety_ready, timeout: float = 30.0
    ) -> None:
        super().__init__(name="ready-watch", daemon=True)
        self.path, self.check, self.timeout = path, check, timeout
        self.ready_at: float | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        deadline = time.perf_counter() + self.timeout
        rig: SimRig | None = None
        try:
            while not self._halt.is_set() and time.perf_counter() < deadline:
                try:
                    rig = rig or SimRig(self.path, timeout=1.0)
                    if self.check(rig.status()):
                        self.ready_at = time.perf_counter()
                        return
                except (OSError, RigError, ValueError):
                    if rig is not None:
                        rig.close()
                    rig = None
                time.sleep(POLL_S)
        finally:
            if rig is not None:
                rig.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


# -- the process tree --------------------------------------------------------------------


def _children_files(pid: int, proc: Path) -> list[int] | None:
    """Children from /proc/PID/task/*/children; None where the kernel has no such files."""
    tasks = list((proc / str(pid) / "task").glob("*/children"))
    if not tasks:
        return None
    found: list[int] = []
    for path in tasks:
        with contextlib.suppress(OSError):
            found.extend(int(word) for word in path.read_text().split())
    return found


def _parents(proc: Path) -> dict[int, list[int]]:
    """Every process's children, from the parent PID in each /proc/PID/stat."""
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """Every process below ``pid`` (children, their children...), found through
    /proc/PID/task/*/children, or through each process's parent where the kernel lacks those."""
    table: dict[int, list[int]] | None = None
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        kids = _children_files(parent, proc) if table is None else None
        if kids is None:
            table = table if table is not None else _parents(proc)
            kids = table.get(parent, [])
        for kid in kids:
            if kid not in found and kid != pid:
                found.append(kid)
                pending.append(kid)
    return found


def running(pid: int, proc: Path = Path("/proc")) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        state = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` runs any more; those still running after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while (left := [pid for pid in pids if running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left


def pss_kb(pid: int, proc: Path = Path("/proc")) -> int | None:
    """The proportional set size of a process, from its smaps_rollup; None if unreadable."""
    try:
        text = (proc / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


def tree_pss_mb(pid: int, proc: Path = Path("/proc")) -> tuple[float, int] | None:
    """The PSS of ``pid`` and all its descendants together, in MB, and how many processes
    that is; None if ``pid`` itself cannot be read."""
    own = pss_kb(pid, proc)
    if own is None:
        return None
    total, counted = own, 1
    for kid in descendants(pid, proc):
        kb = pss_kb(kid, proc)
        if kb is not None:
            total, counted = total + kb, counted + 1
    return total / 1024, counted


# -- a quarter of one core -------------------------------------------------------------


@dataclass(frozen=True)
class CpuCgroups:
    """A mounted cgroup hierarchy with the cpu controller: cgroup v2 (``cpu.max``) or v1
    (``cpu.cfs_quota_us``)."""

    root: Path
    v2: bool


def _mounts() -> str:
    try:
        return Path("/proc/self/mounts").read_text()
    except OSError:
        return ""


def cpu_cgroups(mounts: str | None = None, euid: int | None = None) -> CpuCgroups | str:
    """Where a cgroup limiting one process's CPU can be made here, or why it cannot.
    Never raises: the reason is for a report."""
    if (os.geteuid() if euid is None else euid) != 0:
        return "creating a cgroup needs root"
    v2_offers = ""
    v1_root: Path | None = None
    for line in (_mounts() if mounts is None else mounts).splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        where, kind, options = Path(fields[1]), fields[2], fields[3].split(",")
        if kind == "cgroup2":
            try:
                offered = (where / "cgroup.controllers").read_text().split()
            except OSError as exc:
                v2_offers = f"cgroup v2 at {where} unreadable ({exc.strerror})"
                continue
            if "cpu" in offered:
                return CpuCgroups(where, v2=True)
            v2_offers = f"cgroup v2 at {where} offers {' '.join(offered) or 'no controllers'}"
        elif kind == "cgroup" and "cpu" in options and v1_root is None:
            v1_root = where
    if v1_root is not None:
        if (v1_root / "cpu.cfs_quota_us").exists():
            return CpuCgroups(v1_root, v2=False)
        return f"cgroup v1 cpu at {v1_root} has no CFS quota (kernel without CFS bandwidth control)"
    return "no cgroup hierarchy with the cpu controller" + (f"; {v2_offers}" if v2_offers else "")


def _cgroup_of(pid: int, cgroups: CpuCgroups) -> str:
    """The cgroup (path inside the hierarchy) ``pid`` is in now."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        number, controllers, path = line.split(":", 2)
        if (cgroups.v2 and number == "0") or (not cgroups.v2 and "cpu" in controllers.split(",")):
            return path
    return "/"


class QuarterCore:
    """A cgroup that allows 1 ms of CPU in every 4 ms. ``move_in`` moves one process (with
    its threads, not its children) in, ``move_out`` back where it was; ``remove`` deletes
    the cgroup."""

    QUOTA_US, PERIOD_US = 1000, 4000

    def __init__(self, cgroups: CpuCgroups, name: str) -> None:
        self.cgroups = cgroups
        self.path = cgroups.root / name
        self._origins: dict[int, str] = {}

    def create(self) -> None:
        root = self.cgroups.root
        if self.cgroups.v2 and "cpu" not in (root / "cgroup.subtree_control").read_text().split():
            # Left enabled afterwards: turning it off could take it from other cgroups.
            (root / "cgroup.subtree_control").write_text("+cpu")
        self.path.mkdir()
        try:
            if self.cgroups.v2:
                (self.path / "cpu.max").write_text(f"{self.QUOTA_US} {self.PERIOD_US}")
            else:
                (self.path / "cpu.cfs_period_us").write_text(str(self.PERIOD_US))
                (self.path / "cpu.cfs_quota_us").write_text(str(self.QUOTA_US))
        except OSError:
            self.path.rmdir()
            raise

    def move_in(self, pid: int) -> None:
        self._origins[pid] = _cgroup_of(pid, self.cgroups)
        (self.path / "cgroup.procs").write_text(str(pid))

    def move_out(self, pid: int) -> None:
        """Back to the cgroup it came from (once; a process gone has left already)."""
        if pid in self._origins:
            self._move(pid, self.cgroups.root / self._origins.pop(pid).lstrip("/"))

    @staticmethod
    def _move(pid: int, cgroup: Path) -> None:
        try:
            (cgroup / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                raise

    def members(self) -> list[int]:
        return [int(word) for word in (self.path / "cgroup.procs").read_text().split()]

    def throttled(self) -> int:
        """How many periods the cgroup's processes were held back for want of quota."""
        for line in (self.path / "cpu.stat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "nr_throttled":
                return int(value)
        return 0

    def remove(self, timeout: float = 2.0) -> None:
        """Move whatever is still inside out, then delete the cgroup."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                for pid in self.members():
                    self._move(pid, self.cgroups.root)
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def quarter_core(name: str) -> QuarterCore | str:
    """A new quarter-core cgroup, or why none could be made here (never raises)."""
    found = cpu_cgroups()
    if isinstance(found, str):
        return found
    cgroup = QuarterCore(found, name)
    try:
        cgroup.create()
    except OSError as exc:
        return f"cannot create {cgroup.path}: {exc.strerror or exc}"
    return cgroup


# -- openings, timed from the rig ----------------------------------------------------------


@dataclass
class Inside:
    """The same openings as the simulation inside the daemon timed them (the rig's
    ``timing`` command: ``time.monotonic`` of this host), while the rig has that command."""

    opened: list[float] = field(default_factory=list)
    closed: list[float] = field(default_factory=list)
    injected: list[float] = field(default_factory=list)
    unavailable: str = ""

    def note(self, rig: SimRig, sent: float, to_open: bool) -> None:
        """``sent``: ``time.monotonic`` when the command went out."""
        if self.unavailable:
            return
        try:
            timing = rig.timing()
            commanded = (timing["contactor_commanded_at"] - timing["cp_changed_at"]) * 1000
        except (RigReplyError, KeyError, TypeError) as exc:
            self.unavailable = f"the rig has no timing command: {exc!r}"
            return
        (self.opened if to_open else self.closed).append(commanded)
        self.injected.append((timing["cp_changed_at"] - sent) * 1000)

    def figures(self) -> dict[str, Any]:
        if not self.opened:
            return {"latency_skipped": self.unavailable or "no openings"}
        return {
            "latency_ms_p50": round(percentile(self.opened, 0.5), 1),
            "latency_ms_p99": round(percentile(self.opened, 0.99), 1),
            "latency_ms_max": round(max(self.opened), 1),
            "latency_openings": len(self.opened),
            "close_latency_ms_max": round(max(self.closed), 1),
            "rig_inject_ms_max": round(max(self.injected), 1),
        }


def openings(rig: SimRig, count: int, inside: Inside | None = None, evse: int = 1) -> list[float]:
    """``count`` openings timed from the rig, in ms: a ``suspend`` (the EV leaves state C)
    sent, to the first status showing the contactor open; each followed by a ``charge``
    and the contactor closed again."""
    opened: list[float] = []
    for _ in range(count):
        for to_open in (True, False):
            time.sleep(random.uniform(0.0, 0.05))  # any phase against the control loop's ticks
            sent_mono, sent = time.monotonic(), time.perf_counter()
            if to_open:
                rig.suspend(evse)
                opened.append((poll(rig, contactor_open, 30, evse) - sent) * 1000)
            else:
                rig.charge(evse)
                poll(rig, contactor_closed, 30, evse)
            if inside is not None:
                inside.note(rig, sent_mono, to_open)
    return opened


# -- the prober process ----------------------------------------------------------------------


def probe_command(command: str, socket_path: Path, *options: str) -> list[str]:
    """The command line that runs the prober ``command`` in a new process, real-time
    where allowed."""
    return [
        sys.executable,
        "-m",
        "hil.outside",
        command,
        "--socket",
        str(socket_path),
        "--realtime",
        *options,
    ]


def _emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def _probe_openings(args: argparse.Namespace) -> dict[str, Any]:
    inside = Inside() if args.inside else None
    with SimRig(args.socket, timeout=5.0) as rig:
        opened = openings(rig, args.count, inside, args.evse)
    result: dict[str, Any] = {"opened_ms": opened}
    if inside is not None:
        result["inside"] = {
            "opened": inside.opened,
            "closed": inside.closed,
            "injected": inside.injected,
            "unavailable": inside.unavailable,
        }
    return result


def _probe_kill(args: argparse.Namespace) -> dict[str, Any]:
    """Wait for the contactor closed, a random moment more (any phase against the loop),
    then the kill and the polling, both here."""
    with SimRig(args.socket, timeout=1.0) as rig:
        poll(rig, contactor_closed, 30, args.evse)
        time.sleep(random.uniform(0.1, 0.3))
        outcome = kill_to_open(rig, args.pid, args.timeout, args.evse)
    return {"open_ms": outcome.open_ms, "rig_gone": outcome.rig_gone}


def _probe_ready(args: argparse.Namespace) -> dict[str, Any]:
    """``ready_at``: ``time.monotonic`` (one clock for every process on the host) of the
    first status with the pilot at A and the contactor open; None if none within the timeout."""
    watch = ReadyWatch(args.socket, timeout=args.timeout)
    watch.start()
    _emit({"polling": True})
    watch.join()
    if watch.ready_at is None:
        return {"ready_at": None}
    return {"ready_at": time.monotonic() - (time.perf_counter() - watch.ready_at)}


def probe(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.outside", description="The bench's rig prober.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("openings", "kill", "ready"):
        sub = commands.add_parser(name)
        sub.add_argument("--socket", type=Path, required=True, help="the daemon's rig socket")
        sub.add_argument("--evse", type=int, default=1)
        sub.add_argument(
            "--realtime", action="store_true", help=f"SCHED_FIFO {PROBER_PRIORITY} where allowed"
        )
        if name == "openings":
            sub.add_argument("--count", type=int, required=True)
            sub.add_argument("--inside", action="store_true", help="also the rig's timing of each")
        elif name == "kill":
            sub.add_argument("--pid", type=int, required=True)
            sub.add_argument("--timeout", type=float, default=1.0)
        else:
            sub.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.realtime:
        realtime_thread(PROBER_PRIORITY)  # before ReadyWatch starts: the thread inherits it
    run = {"openings": _probe_openings, "kill": _probe_kill, "ready": _probe_ready}[args.command]
    result = run(args)
    result["prober_policy"] = policy_name()
    _emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(probe())
