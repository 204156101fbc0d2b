"""Real-time scheduling and locked memory for the safety process, each in a child process.

The children are real processes so this test process keeps its own policy and memory.
A child that drops to nobody imports everything first: the interpreter's files may not be
readable by nobody.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from controller.safety import realtime

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="real-time scheduling and mlockall are Linux")


def child(body: str, *, rtprio: int | None = None, memlock: int | None = None, drop: bool = False) -> Any:
    """Run ``body`` in a fresh interpreter; it leaves its findings in ``found``.

    ``rtprio``/``memlock`` set both limits first (lowering only needs no privilege), ``drop``
    then switches to nobody, which clears every capability as an unprivileged service has.
    Returns (found, the log lines).
    """
    prologue = f"""
        import json, logging, os, resource, sys, threading
        import ctypes
        from controller.safety import realtime
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(message)s", stream=sys.stderr)
        if {rtprio!r} is not None:
            resource.setrlimit(resource.RLIMIT_RTPRIO, ({rtprio!r}, {rtprio!r}))
        if {memlock!r} is not None:
            resource.setrlimit(resource.RLIMIT_MEMLOCK, ({memlock!r}, {memlock!r}))
        if {drop!r}:
            os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})
        def status():
            fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
            return {{k: fields[k].strip() for k in ("VmLck", "VmRSS", "CapEff")}}
        def task(name):
            return open(f"/proc/self/task/{{threading.get_native_id()}}/{{name}}").read()
        found = {{}}
    """
    script = textwrap.dedent(prologue) + textwrap.dedent(body) + "\nprint(json.dumps(found))\n"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr.splitlines()


def kib(value: str) -> int:
    return int(value.split()[0])


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CAP_IPC_LOCK, CAP_SYS_NICE)")


@needs_root
def test_as_root_the_memory_is_locked_as_it_is_touched() -> None:
    found, log = child(
        """
        found["locked"] = realtime.lock_memory()
        found["status"] = status()
        """,
        memlock=1 << 20,  # CAP_IPC_LOCK locks whatever the limit says
    )
    assert found["locked"] is True
    assert kib(found["status"]["VmLck"]) > 0
    assert any(line.startswith("INFO safety memory locked") for line in log), log


@needs_root
def test_as_root_the_calling_thread_turns_fifo_and_threads_it_starts_inherit_it() -> None:
    found, log = child(
        """
        started = threading.Event(); done = threading.Event()
        def wait():
            started.set(); done.wait()
        before = threading.Thread(target=wait); before.start(); started.wait()
        found["ok"] = realtime.realtime_thread()
        seen = {}
        after = threading.Thread(target=lambda: seen.update(p=realtime.policy_name()))
        after.start(); after.join()
        found["caller"] = realtime.policy_name()
        found["caller_by_tid"] = realtime.policy_name(threading.get_native_id())
        found["sched_file"] = task("sched")
        found["earlier_thread"] = realtime.policy_name(before.native_id)
        found["later_thread"] = seen["p"]
        done.set(); before.join()
        """
    )
    assert found["ok"] is True
    assert found["caller"] == found["caller_by_tid"] == f"SCHED_FIFO {realtime.SAFETY_PRIORITY}"
    assert ["policy", ":", str(os.SCHED_FIFO)] in [line.split() for line in found["sched_file"].splitlines()]
    assert found["earlier_thread"] == "SCHED_OTHER"  # sched_setscheduler(0) is the calling thread only
    assert found["later_thread"] == f"SCHED_FIFO {realtime.SAFETY_PRIORITY}"
    assert f"INFO safety loop real-time: SCHED_FIFO {realtime.SAFETY_PRIORITY}" in log


@needs_root
def test_without_privileges_and_low_limits_both_fall_back_with_one_line_each() -> None:
    found, log = child(
        """
        found["locked"] = realtime.lock_memory()
        found["rt"] = realtime.realtime_thread()
        found["policy"] = realtime.policy_name()
        found["status"] = status()
        """,
        rtprio=0,
        memlock=8 << 20,
        drop=True,
    )
    assert found == {
        "locked": False,
        "rt": False,
        "policy": "SCHED_OTHER",
        "status": found["status"] | {"VmLck": "0 kB", "CapEff": "0000000000000000"},
    }
    warnings = [line for line in log if line.startswith("WARNING")]
    assert len(warnings) == 2, log
    assert warnings[0].startswith("WARNING safety memory not locked: RLIMIT_MEMLOCK is 8 MiB, this process")
    assert warnings[0].endswith("(set LimitMEMLOCK= in the unit)")
    assert warnings[1] == (
        "WARNING safety loop not real-time (Operation not permitted): RLIMIT_RTPRIO is 0, "
        f"needs {realtime.SAFETY_PRIORITY} (set LimitRTPRIO={realtime.SAFETY_PRIORITY} in the unit)"
    )


def limits_allow(kind: int, needed: int) -> bool:
    hard = resource.getrlimit(kind)[1]
    return hard == resource.RLIM_INFINITY or hard >= needed


@needs_root
@pytest.mark.skipif(
    not limits_allow(resource.RLIMIT_RTPRIO, realtime.SAFETY_PRIORITY)
    or not limits_allow(resource.RLIMIT_MEMLOCK, 128 << 20),
    reason="the hard RLIMIT_RTPRIO / RLIMIT_MEMLOCK here are below what the unit sets (no CAP_SYS_RESOURCE)",
)
def test_without_privileges_the_units_limits_are_enough() -> None:
    found, log = child(
        """
        found["locked"] = realtime.lock_memory()
        found["rt"] = realtime.realtime_thread()
        found["status"] = status()
        """,
        rtprio=realtime.SAFETY_PRIORITY,
        memlock=128 << 20,  # LimitMEMLOCK= in systemd/evse.service
        drop=True,
    )
    assert found["locked"] is True and found["rt"] is True, log
    assert kib(found["status"]["VmLck"]) > 0


def test_a_priority_outside_fifos_range_is_refused_without_trying() -> None:
    found, log = child(
        """
        found["rt"] = realtime.realtime_thread(100)
        found["policy"] = realtime.policy_name()
        """
    )
    assert found == {"rt": False, "policy": "SCHED_OTHER"}
    assert log == ["WARNING safety loop not real-time: priority 100 is outside SCHED_FIFO's range"]


def test_the_process_name_is_cut_to_what_the_kernel_keeps() -> None:
    found, log = child(
        """
        realtime.name_process("evse-safety")
        found["comm"] = open("/proc/self/comm").read().strip()
        t = threading.Thread(target=lambda: found.update(thread=task("comm").strip()))
        t.start(); t.join()
        realtime.name_process("evse-safety-and-more")
        found["long"] = open("/proc/self/comm").read().strip()
        """
    )
    assert found == {"comm": "evse-safety", "thread": "evse-safety", "long": "evse-safety-and"}
    assert log == ["DEBUG process named 'evse-safety'", "DEBUG process named 'evse-safety-and'"]


def test_the_unit_allows_the_priority_and_the_memory_lock_this_module_needs() -> None:
    unit = (ROOT / "systemd/evse.service").read_text().splitlines()
    assert f"LimitRTPRIO={realtime.SAFETY_PRIORITY}" in unit
    memlock = next(line.split("=", 1)[1] for line in unit if line.startswith("LimitMEMLOCK="))
    assert memlock.endswith("M") and int(memlock[:-1]) << 20 >= 20 * (1 << 20) + realtime.MEMLOCK_HEADROOM
    assert "RestrictRealtime=yes" not in unit
    assert "SystemCallFilter=sched_setscheduler" in unit
    assert not any(line.startswith("CPUSchedulingPolicy=") for line in unit)  # not for the OCPP process
    assert "KillMode=control-group" in unit  # mixed would SIGKILL the safety process after a crash


def test_a_process_that_renounces_real_time_keeps_the_hard_limit_for_its_next_safety_process() -> None:
    """The OCPP process drops its soft limit only: a reset re-executes it, and the safety
    process it forks then must still be allowed real time."""
    found, log = child(
        """
        hard = resource.getrlimit(resource.RLIMIT_RTPRIO)[1]
        found["renounced"] = realtime.renounce_realtime()
        found["limit"] = list(resource.getrlimit(resource.RLIMIT_RTPRIO))
        found["hard"] = hard
        found["rt"] = realtime.realtime_thread()
        """
    )
    assert found["renounced"] is True and found["limit"] == [0, found["hard"]]
    assert log[0] == "DEBUG real-time scheduling given up (RLIMIT_RTPRIO soft 0)"
    assert found["rt"] is (found["hard"] == -1 or found["hard"] >= 40 or os.geteuid() == 0)


def has_sys_resource() -> bool:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return bool(int(status["CapEff"], 16) >> 24 & 1)  # CAP_SYS_RESOURCE
