"""``python -m hil.csms`` as a real subprocess for tests: spawned with the SIGINT disposition a
test chooses, and always killed at the end, so a failing test leaves no CSMS running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent.parent

# What the CSMS inherits for SIGINT: pytest's own, Python's default, or ignored, as a process
# started in the background by a non-interactive shell (``make test &``) gets it.
Sigint = Literal["inherited", "default", "ignored"]


@contextlib.contextmanager
def csms_process(*args: str, sigint: Sigint = "inherited") -> Iterator[subprocess.Popen[str]]:
    """A running ``python -m hil.csms *args`` with stdout and stderr piped; killed if still
    running when the block ends."""
    previous = signal.getsignal(signal.SIGINT)
    if sigint == "ignored":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    elif sigint == "default":
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a handler: SIG_DFL after exec
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hil.csms", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def banner_urls(proc: subprocess.Popen[str]) -> list[str]:
    """The base URLs of the "listening" line, which the CSMS prints once it listens."""
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    assert "listening: connect stations to " in banner, banner
    urls = banner.split("connect stations to ")[1].strip().split(" or ")
    return [url.removesuffix("/<station id>") for url in urls]


def ended(proc: subprocess.Popen[str], within: float) -> tuple[str, str]:
    """stdout and stderr once the process has exited, which it must within ``within`` seconds."""
    try:
        return proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"python -m hil.csms still running {within:g} s later") from None


def handles(pid: int, *signals: signal.Signals, timeout: float = 10) -> bool:
    """Wait until the process has a handler for each of these signals (Linux: ``SigCgt`` in
    /proc); False if it has not within ``timeout``."""
    wanted = sum(1 << (sig - 1) for sig in signals)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
            if (int(caught.split()[1], 16) & wanted) == wanted:
                return True
        time.sleep(0.005)
    return False
