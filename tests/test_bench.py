"""hil.bench runs end to end and prints every figure (their values are not asserted:
test machines are shared and noisy; docs/performance.md records a full run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = (
    "rss_mb",
    "rss_mb_charging",
    "cpu_idle_percent",
    "cpu_charging_percent",
    "startup_s",
    "safety_ready_s",
    "pss_mb",
    "rig_open_ms_idle_p50",
    "rig_open_ms_idle_p99",
    "rig_open_ms_idle_max",
    "rig_open_ms_flood_p50",
    "rig_open_ms_flood_p99",
    "rig_open_ms_flood_max",
    "kill_runs",
    "kill_runs_rig_gone",
    "kill_runs_power_loss_wrong",
    "latency_ms_p50",
    "latency_ms_p99",
    "latency_ms_max",
    "replay_msgs_per_s",
    "local_list_apply_s",
    "auth_lookup_us",
)


def test_quick_bench_prints_every_figure(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hil.bench", "--quick", "--ocpp", "1.6", "--dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    for figure in FIGURES:
        assert isinstance(result[figure], (int, float)) and result[figure] >= 0, figure
    version = result["ocpp"]["1.6"]
    assert version["latency_openings"] == 40 and sum(version["flood_answered"].values()) > 0
    assert version["rig_openings"] == 40 and version["kill_runs"] == 3 and "kill_errors" not in version
    # every killed transaction ended once, as PowerLoss, after the restart
    assert version["kill_runs_restart_checked"] == 3 and version["kill_runs_power_loss_wrong"] == 0
    # the quarter core was measured, or the bench said why not
    assert "rig_open_ms_quarter_flood_max" in version or result["skipped"]["1.6: quarter_core"]
    if version["kill_runs_rig_gone"] < 3:  # some run saw the contactor open from the rig
        assert version["kill_open_ms_max"] >= version["kill_open_ms_p50"] > 0
    assert result["replay"]["queued_messages"] == 1000
    assert isinstance(result["targets_missed"], list) and result["machine"]["cores"]


def test_cpu_percents_tell_a_busy_process_from_an_idle_one() -> None:
    from hil.bench import cpu_percents

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen(["sleep", "30"])
    try:
        used = cpu_percents({"busy": [busy.pid], "idle": [idle.pid]}, 0.5)
    finally:
        for proc in (busy, idle):
            proc.kill()
            proc.wait()
    assert used["busy"] > 20 and used["idle"] < 5
