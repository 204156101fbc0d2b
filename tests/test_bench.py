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
    assert result["replay"]["queued_messages"] == 1000
    assert isinstance(result["targets_missed"], list) and result["machine"]["cores"]
