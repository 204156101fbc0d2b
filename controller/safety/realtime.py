"""Real-time scheduling, locked memory and a process name for the safety process.

Each function asks the kernel for one thing, never raises, and logs one line: what it got,
or why not and what to change (the unit's ``LimitRTPRIO=`` / ``LimitMEMLOCK=``). A
process that is not allowed keeps running at normal priority with pageable memory.
Linux only; elsewhere each falls back the same way. Stdlib only, so the safety process
imports nothing else for it.

Call order in the safety process, before it starts any thread: ``name_process``,
``lock_memory``, ``realtime_thread``. Threads inherit the name and the scheduling policy
from the thread that starts them, and starting them after ``lock_memory`` keeps them
within one malloc arena (see there).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource

log = logging.getLogger(__name__)

# Below the kernel's threaded interrupt handlers, which PREEMPT_RT (and `threadirqs`) run at
# SCHED_FIFO 50: the loop waits on I2C, SPI and serial transfers whose completion those
# threads deliver, so preempting them would only delay the loop itself. Above every
# SCHED_OTHER task and the low-priority kernel RT threads (ktimers, rcuc at 1).
# The unit's LimitRTPRIO= must be at least this.
SAFETY_PRIORITY = 40
# Room for what the process maps after locking (thread stacks of 8 MiB each, interpreter
# arenas): RLIMIT_MEMLOCK counts mapped, not resident, memory, and once it is reached every
# new mapping fails, which in Python is a MemoryError anywhere. The unit's LimitMEMLOCK=
# covers the process's size when it locks (about 20 MiB) plus this.
MEMLOCK_HEADROOM = 64 << 20

MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT = 1, 2, 4
PR_SET_NAME = 15
M_ARENA_MAX = -8
CAP_IPC_LOCK, CAP_SYS_NICE = 14, 23
NAME_MAX = 15  # bytes the kernel keeps of a thread name
_POLICIES = ("SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH", "SCHED_IDLE")


def lock_memory() -> bool:
    """Keep every page of this process in RAM, now and later (mlockall).

    MCL_ONFAULT (Linux 4.4+) locks pages as they are first touched rather than faulting
    in the whole address space at once: plain MCL_CURRENT | MCL_FUTURE makes every
    thread's 8 MiB stack and every malloc arena resident (the safety modules imported and
    three threads: PSS 15 MB unlocked or with ONFAULT, 42 MB without). The pages the loop
    uses are touched on its first ticks and stay locked from then on.
    """
    locked_anyway = _has_capability(CAP_IPC_LOCK)
    limit = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    size = _status_field("VmSize", 10) << 10
    if not locked_anyway and limit != resource.RLIM_INFINITY and limit < size + MEMLOCK_HEADROOM:
        needed = (size + MEMLOCK_HEADROOM + (1 << 20) - 1) >> 20
        log.warning(
            "safety memory not locked: RLIMIT_MEMLOCK is %d MiB, this process needs %d MiB "
            "(set LimitMEMLOCK= in the unit)",
            limit >> 20,
            needed,
        )
        return False
    libc = _libc()
    if libc is None:
        log.warning("safety memory not locked: no C library to call mlockall (not Linux?)")
        return False
    # glibc gives every thread that mallocs its own 64 MiB arena reservation, which counts
    # against RLIMIT_MEMLOCK like real memory (three threads: 235 MiB locked instead of 43);
    # under the GIL one arena is all a Python process needs.
    libc.mallopt(M_ARENA_MAX, 1)
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0:
        log.warning(
            "safety memory not locked: mlockall failed: %s (set LimitMEMLOCK= in the unit, "
            "and check that SystemCallFilter= allows @memlock)",
            os.strerror(ctypes.get_errno()),
        )
        return False
    log.info("safety memory locked (%d MiB mapped, locked as touched)", size >> 20)
    return True


def realtime_thread(priority: int = SAFETY_PRIORITY) -> bool:
    """Run the calling thread, and the threads it starts later, at SCHED_FIFO ``priority``.

    Only the calling thread changes: Linux applies sched_setscheduler(0) to the caller's
    thread id, not to the whole process.
    """
    if not hasattr(os, "sched_setscheduler"):
        log.warning("safety loop not real-time: this system has no sched_setscheduler")
        return False
    if not os.sched_get_priority_min(os.SCHED_FIFO) <= priority <= os.sched_get_priority_max(os.SCHED_FIFO):
        log.warning("safety loop not real-time: priority %d is outside SCHED_FIFO's range", priority)
        return False
    with contextlib.suppress(OSError, ValueError):  # after renounce_realtime() in a parent
        soft, hard = resource.getrlimit(resource.RLIMIT_RTPRIO)
        if soft != resource.RLIM_INFINITY and soft < priority:
            resource.setrlimit(resource.RLIMIT_RTPRIO, (hard, hard))
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        log.warning("safety loop not real-time (%s): %s", exc.strerror, _rt_refusal(priority))
        return False
    log.info("safety loop real-time: %s", policy_name())
    return True


def renounce_realtime() -> bool:
    """Leave the calling process without real-time scheduling rights (RLIMIT_RTPRIO soft 0).

    For the OCPP process once it has forked the safety process: the unit's LimitRTPRIO= is
    meant for the safety loop alone. Only the soft limit drops: a reset re-executes the
    daemon in place, and the safety process it forks then takes the right back
    (``realtime_thread`` raises its soft limit to the hard one).
    """
    try:
        _soft, hard = resource.getrlimit(resource.RLIMIT_RTPRIO)
        resource.setrlimit(resource.RLIMIT_RTPRIO, (0, hard))
    except (OSError, ValueError) as exc:
        log.warning("could not give up real-time scheduling: %s", exc)
        return False
    log.debug("real-time scheduling given up (RLIMIT_RTPRIO soft 0)")
    return True


def policy_name(tid: int = 0) -> str:
    """The scheduling policy of a thread (0: the calling one), e.g. "SCHED_FIFO 40"."""
    try:
        policy = os.sched_getscheduler(tid)
        priority = os.sched_getparam(tid).sched_priority
    except (OSError, AttributeError):
        return "unknown"
    name = next((n for n in _POLICIES if getattr(os, n, None) == policy), f"policy {policy}")
    return f"{name} {priority}" if priority else name


def name_process(name: str) -> None:
    """Name the calling thread (and the threads it starts) for ps, top and the journal's _COMM.

    The main thread's name is the process's (/proc/PID/comm). The kernel keeps 15 bytes.
    """
    libc = _libc()
    raw = name.encode()[:NAME_MAX]
    if libc is None or libc.prctl(PR_SET_NAME, ctypes.c_char_p(raw), 0, 0, 0) != 0:
        log.warning("process not named %r: prctl(PR_SET_NAME) unavailable", name)
        return
    log.debug("process named %r", raw.decode(errors="replace"))


def _rt_refusal(priority: int) -> str:
    """Why the kernel refused SCHED_FIFO ``priority``, and what to change."""
    limit = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
    if limit != resource.RLIM_INFINITY and limit < priority and not _has_capability(CAP_SYS_NICE):
        return f"RLIMIT_RTPRIO is {limit}, needs {priority} (set LimitRTPRIO={priority} in the unit)"
    return (
        "RLIMIT_RTPRIO allows it, so a seccomp filter blocks sched_setscheduler "
        "(SystemCallFilter=, RestrictRealtime=) or this cgroup has no real-time runtime "
        "(kernels with CONFIG_RT_GROUP_SCHED)"
    )


def _has_capability(bit: int) -> bool:
    return bool(_status_field("CapEff", 16) >> bit & 1)


def _status_field(field: str, base: int) -> int:
    """A number from /proc/self/status (0 where there is none)."""
    try:
        with open("/proc/self/status", "rb") as status:  # bytes: no codec to import
            for line in status:
                key, _, value = line.partition(b":")
                if key == field.encode():
                    return int(value.split()[0], base)
    except (OSError, ValueError, IndexError):
        pass
    return 0


class _Libc:
    """The few C library calls this module needs, typed."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._mlockall = lib.mlockall
        self._mlockall.argtypes, self._mlockall.restype = [ctypes.c_int], ctypes.c_int
        self._prctl = lib.prctl
        self._prctl.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        self._prctl.restype = ctypes.c_int
        self._mallopt = getattr(lib, "mallopt", None)  # glibc; musl has no arenas to limit
        if self._mallopt is not None:
            self._mallopt.argtypes, self._mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int

    def mlockall(self, flags: int) -> int:
        return int(self._mlockall(flags))

    def prctl(self, option: int, arg: ctypes.c_char_p, *rest: int) -> int:
        return int(self._prctl(option, arg, *rest))

    def mallopt(self, param: int, value: int) -> None:
        if self._mallopt is not None:
            self._mallopt(param, value)


_loaded: list[_Libc | None] = []


def _libc() -> _Libc | None:
    if not _loaded:
        try:
            _loaded.append(_Libc(ctypes.CDLL(None, use_errno=True)))
        except (OSError, AttributeError):
            _loaded.append(None)
    return _loaded[0]
