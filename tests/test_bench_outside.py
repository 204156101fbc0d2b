"""The outside-in bench's helpers (hil.outside) on their own: statistics, the process
tree, the cgroup check, and the rig polling against a stand-in rig socket."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hil.outside import (
    PROBER_PRIORITY,
    CpuCgroups,
    QuarterCore,
    ReadyWatch,
    cpu_cgroups,
    descendants,
    kill_to_open,
    percentile,
    probe_command,
    pss_kb,
    quarter_core,
    running,
    spread,
    tree_pss_mb,
    wait_gone,
)
from hil.simrig import SimRig

ROOT = Path(__file__).resolve().parent.parent


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([3.0, 1.0, 2.0], 0.0) == 1.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_spread_names_and_rounds_the_figures() -> None:
    assert spread("x", [1.04, 2.0, 30.06]) == {"x_p50": 2.0, "x_p99": 30.1, "x_max": 30.1}


# -- the process tree ----------------------------------------------------------------------


def test_descendants_of_this_process_include_children_and_grandchildren() -> None:
    script = (
        "import subprocess, time; subprocess.Popen(['sleep', '30']); print('ok', flush=True); time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ok"
        below = descendants(os.getpid())
        assert child.pid in below
        grandchildren = descendants(child.pid)
        assert len(grandchildren) == 1 and grandchildren[0] in below
        assert os.getpid() not in below
        total = tree_pss_mb(child.pid)
        assert total is not None and total[1] == 2 and total[0] > 0
    finally:
        for pid in descendants(child.pid):
            os.kill(pid, 9)
        child.kill()
        child.wait()


def test_a_zombie_is_not_running_and_is_waited_for() -> None:
    child = subprocess.Popen(["sleep", "30"])
    assert running(child.pid) and wait_gone([child.pid], timeout=0.05) == [child.pid]
    os.kill(child.pid, 9)
    assert wait_gone([child.pid], timeout=5) == []  # gone, though not reaped yet
    child.wait()
    assert not running(child.pid)


def test_pss_of_this_process_and_of_none() -> None:
    own = pss_kb(os.getpid())
    assert own is not None and own > 1000
    assert pss_kb(0) is None and tree_pss_mb(0) is None


# -- the cgroup check: a reason, never an exception -----------------------------------------


def test_cgroup_check_says_why_not(tmp_path: Path) -> None:
    assert cpu_cgroups("", euid=1000) == "creating a cgroup needs root"
    assert "no cgroup hierarchy with the cpu controller" in str(cpu_cgroups("", euid=0))
    (tmp_path / "cgroup.controllers").write_text("memory io\n")
    reason = cpu_cgroups(f"cgroup2 {tmp_path} cgroup2 rw 0 0\n", euid=0)
    assert isinstance(reason, str) and "offers memory io" in reason
    missing = cpu_cgroups(f"cgroup2 {tmp_path / 'gone'} cgroup2 rw 0 0\n", euid=0)
    assert isinstance(missing, str) and "unreadable" in missing
    v1 = tmp_path / "v1"
    v1.mkdir()
    no_quota = cpu_cgroups(f"cgroup {v1} cgroup rw,cpu,cpuacct 0 0\n", euid=0)
    assert isinstance(no_quota, str) and "no CFS quota" in no_quota
    assert isinstance(cpu_cgroups("garbage\n\n", euid=0), str)


def test_cgroup_check_finds_v2_first_then_v1(tmp_path: Path) -> None:
    v2, v1 = tmp_path / "v2", tmp_path / "v1"
    v2.mkdir()
    v1.mkdir()
    (v2 / "cgroup.controllers").write_text("cpu memory\n")
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    mounts = f"cgroup {v1} cgroup rw,cpu 0 0\ncgroup2 {v2} cgroup2 rw 0 0\n"
    assert cpu_cgroups(mounts, euid=0) == CpuCgroups(v2, v2=True)
    (v2 / "cgroup.controllers").write_text("memory\n")
    assert cpu_cgroups(mounts, euid=0) == CpuCgroups(v1, v2=False)


def test_quarter_core_here_is_a_cgroup_or_a_reason() -> None:
    made = quarter_core(f"evse-bench-test-{os.getpid()}")
    if isinstance(made, str):
        assert made
        return
    try:
        assert made.path.is_dir() and made.members() == [] and made.throttled() == 0
    finally:
        made.remove()
    assert not made.path.exists()


def test_quarter_core_writes_the_quota_and_moves_one_process(tmp_path: Path) -> None:
    """On a stand-in v2 hierarchy (plain files): what is written where."""
    (tmp_path / "cgroup.subtree_control").write_text("memory\n")
    cgroup = QuarterCore(CpuCgroups(tmp_path, v2=True), "q")
    cgroup.create()
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu"
    assert (cgroup.path / "cpu.max").read_text() == "1000 4000"
    cgroup.move_in(os.getpid())
    assert cgroup.members() == [os.getpid()]
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    origin = next(line for line in lines if line.startswith("0:"))
    cgroup.move_out(os.getpid())
    back = tmp_path / origin.split(":", 2)[2].lstrip("/") / "cgroup.procs"
    assert back.read_text() == str(os.getpid())


def test_quarter_core_v1_writes_period_then_quota(tmp_path: Path) -> None:
    cgroup = QuarterCore(CpuCgroups(tmp_path, v2=False), "q")
    cgroup.create()
    assert (cgroup.path / "cpu.cfs_period_us").read_text() == "4000"
    assert (cgroup.path / "cpu.cfs_quota_us").read_text() == "1000"


# -- the rig, polled ------------------------------------------------------------------------


class StandInRig(threading.Thread):
    """A rig socket answering ``status`` with ``closed()`` for the contactor, and carrying
    out ``commands``; ``vanish`` stops it answering (the listening socket and every
    connection closed)."""

    def __init__(
        self,
        path: Path,
        closed: Callable[[], bool],
        cp_state: str = "C",
        commands: dict[str, Callable[[], None]] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.path, self.closed, self.cp_state = path, closed, cp_state
        self.commands = commands or {}
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen()
        self.connections: list[socket.socket] = []
        self.gone = threading.Event()

    def run(self) -> None:
        while not self.gone.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                if self.gone.is_set():
                    return
                command = json.loads(line)["cmd"]
                reply: dict[str, object] = {"ok": True}
                if command == "status":
                    reply.update(cp_state=self.cp_state, contactor_closed=self.closed())
                elif command in self.commands:
                    self.commands[command]()
                else:
                    reply = {"ok": False, "error": f"unknown command {command}"}
                conn.sendall(json.dumps(reply).encode() + b"\n")

    def vanish(self) -> None:
        self.gone.set()
        self.server.close()
        self.path.unlink(missing_ok=True)
        for conn in self.connections:
            with contextlib.suppress(OSError):  # closed already by its client
                conn.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "30"])
    yield proc
    proc.kill()
    proc.wait()


def test_kill_to_open_times_the_opening_seen_from_the_rig(
    tmp_path: Path, victim: subprocess.Popen[bytes]
) -> None:
    rig = StandInRig(tmp_path / "sim.sock", closed=lambda: victim.poll() is None)
    rig.start()
    with SimRig(rig.path, timeout=1.0) as poller:
        outcome = kill_to_open(poller, victim.pid, timeout=2.0)
    assert not outcome.rig_gone and outcome.open_ms is not None and 0 < outcome.open_ms < 1000
    rig.vanish()


def test_kill_to_open_reports_a_rig_that_went_away(tmp_path: Path, victim: subprocess.Popen[bytes]) -> None:
    rig = StandInRig(tmp_path / "sim.sock", closed=lambda: True)
    rig.start()

    def reaper() -> None:
        victim.wait()
        rig.vanish()

    threading.Thread(target=reaper, daemon=True).start()
    with SimRig(rig.path, timeout=1.0) as poller:
        outcome = kill_to_open(poller, victim.pid, timeout=0.3)
    assert outcome.rig_gone and outcome.open_ms is None


def test_ready_watch_sees_the_rig_once_it_answers_with_a_safe_status(tmp_path: Path) -> None:
    path = tmp_path / "sim.sock"
    watch = ReadyWatch(path, timeout=5.0)
    watch.start()
    time.sleep(0.05)  # refused / missing first: not ready
    assert watch.ready_at is None
    StandInRig(path, closed=lambda: False, cp_state="A").start()
    watch.join(5)
    assert watch.ready_at is not None


# -- the prober, a process of its own ---------------------------------------------------------


def run_prober(command: list[str]) -> dict[str, object]:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    assert result["prober_policy"] in ("SCHED_OTHER", f"SCHED_FIFO {PROBER_PRIORITY}")
    return result


def test_the_prober_times_openings_and_closes_between_them(tmp_path: Path) -> None:
    contactor = {"closed": True}
    commands = {
        "suspend": lambda: contactor.update(closed=False),
        "charge": lambda: contactor.update(closed=True),
    }
    rig = StandInRig(tmp_path / "sim.sock", closed=lambda: contactor["closed"], commands=commands)
    rig.start()
    result = run_prober(probe_command("openings", rig.path, "--count", "3", "--inside"))
    opened = result["opened_ms"]
    assert isinstance(opened, list) and len(opened) == 3 and all(0 < ms < 1000 for ms in opened)
    assert contactor["closed"]  # each opening closed again
    inside = result["inside"]
    assert isinstance(inside, dict) and "no timing command" in inside["unavailable"]
    rig.vanish()


def test_the_prober_kills_and_times_the_opening(tmp_path: Path, victim: subprocess.Popen[bytes]) -> None:
    rig = StandInRig(tmp_path / "sim.sock", closed=lambda: victim.poll() is None)
    rig.start()
    result = run_prober(probe_command("kill", rig.path, "--pid", str(victim.pid)))
    assert result["rig_gone"] is False
    assert isinstance(result["open_ms"], float) and 0 < result["open_ms"] < 1000
    assert victim.wait(5) == -9
    rig.vanish()


def test_the_ready_prober_polls_before_the_rig_exists(tmp_path: Path) -> None:
    path = tmp_path / "sim.sock"
    command = probe_command("ready", path, "--timeout", "10")
    watch = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert watch.stdout is not None and json.loads(watch.stdout.readline()) == {"polling": True}
    time.sleep(0.05)
    before = time.monotonic()
    StandInRig(path, closed=lambda: False, cp_state="A").start()
    result = json.loads(watch.communicate(timeout=15)[0].splitlines()[-1])
    assert before < result["ready_at"] < time.monotonic()
