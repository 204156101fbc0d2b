"""The station under test when it runs here: ``evse run`` as a subprocess on simulated
hardware, with faults that need the process and its storage.

- power loss: SIGKILL, then a start on the same storage directory (the simulated EV and
  meter persist, as hardware would);
- disk full: the storage directory is a small tmpfs of its own (root only), filled to the
  last byte with a ballast file and emptied again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hil.simrig import SimRig

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """\
[station]
id = "{station_id}"
vendor = "Generic"
model = "PiCharger-Sim"
serial = "SIM-0001"

[ocpp]
version = "{version}"
url = "{url}"
{ocpp_extra}

[auth]
mode = "{auth_mode}"

[storage]
dir = "var"

[rfid]
driver = "sim"

{evses}
{extra}

[sim]
socket = "var/sim.sock"
"""

EVSE = """\
[[evse]]
id = {id}
max_current_a = 32
phases = 3
pilot = {{ driver = "sim" }}
contactor = {{ driver = "sim" }}
meter = {{ driver = "sim" }}
lock = {{ driver = "{lock}" }}
"""


def config_text(
    url: str,
    version: str = "1.6",
    evses: int = 1,
    auth_mode: str = "ocpp",
    lock: str = "none",
    extra: str = "",
    station_id: str = "CP001",
    ocpp_extra: str = "",
) -> str:
    """The config of a station on simulated hardware (storage ``var``, rig socket
    ``var/sim.sock``); ``extra`` is TOML added before the ``[sim]`` table, ``ocpp_extra``
    keys added to the ``[ocpp]`` table (security settings, say)."""
    blocks = "\n".join(EVSE.format(id=n, lock=lock) for n in range(1, evses + 1))
    return CONFIG.format(
        station_id=station_id,
        version=version,
        url=url,
        ocpp_extra=ocpp_extra,
        auth_mode=auth_mode,
        evses=blocks,
        extra=extra,
    )


class StationError(Exception):
    pass


class LocalStation:
    """``evse run`` in ``dir`` (config ``dir/evse.toml``, storage ``dir/var``, log
    ``dir/daemon.log``). ``disk_mb`` puts the storage on a tmpfs of that size, which
    ``fill_disk`` can fill; that needs root (mount): when it cannot be mounted the storage
    is a plain directory, ``mounted`` is false and ``no_tmpfs_because`` says why."""

    def __init__(
        self,
        dir: Path,
        url: str,
        version: str = "1.6",
        evses: int = 1,
        station_id: str = "CP001",
        extra: str = "",
        disk_mb: int | None = None,
        ocpp_extra: str = "",
    ) -> None:
        self.dir = dir
        self.station_id = station_id
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.dir.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        self.config.write_text(
            config_text(url, version, evses, extra=extra, station_id=station_id, ocpp_extra=ocpp_extra)
        )
        self.mounted = False
        self.no_tmpfs_because = ""
        if disk_mb is not None:
            try:
                self._mount(disk_mb)
            except StationError as exc:  # the station runs as well without; only disk full needs it
                self.no_tmpfs_because = str(exc)

    @property
    def config(self) -> Path:
        return self.dir / "evse.toml"

    @property
    def storage(self) -> Path:
        return self.dir / "var"

    @property
    def log(self) -> Path:
        return self.dir / "daemon.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self, timeout: float = 15.0) -> SimRig:
        """Start the daemon; the rig, once its socket answers."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "controller", "run", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        self.starts += 1
        try:
            return SimRig.wait_for(self.storage / "sim.sock", timeout, reconnect_s=20.0)
        except OSError:
            self.proc.kill()
            raise StationError(f"the daemon did not come up; see {self.log}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Signal the daemon and wait for it; its exit code (None if it was not running)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def power_loss(self, off_s: float = 0.0) -> SimRig:
        """SIGKILL (nothing flushed, nothing closed), ``off_s`` seconds off, start again."""
        self.stop(signal.SIGKILL)
        time.sleep(off_s)
        return self.start()

    def rss_mb(self) -> float | None:
        """The daemon's resident memory now, from /proc."""
        pid = self.pid
        if pid is None:
            return None
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    # -- disk full ---------------------------------------------------------------------

    def _mount(self, size_mb: int) -> None:
        if os.geteuid() != 0:
            raise StationError("a disk-full storage needs root (it mounts a tmpfs); run as root or skip it")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(self.storage)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise StationError(f"cannot mount a tmpfs on {self.storage}: {done.stderr.strip()}")
        self.mounted = True

    @property
    def ballast(self) -> Path:
        return self.storage / "ballast"

    def fill_disk(self) -> None:
        """Fill the storage file system to the last byte."""
        if not self.mounted:
            why = self.no_tmpfs_because or "no disk_mb given"
            raise StationError(f"this station's storage is not a tmpfs of its own: {why}")
        block = b"\0" * 65536
        with self.ballast.open("ab", buffering=0) as out:
            for size in (65536, 4096, 1):
                try:
                    while True:
                        out.write(block[:size])
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise

    def free_disk(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop the daemon (SIGKILL: a test is over, nothing to wait for) and unmount the storage."""
        self.stop(signal.SIGKILL if self.proc is not None and self.proc.poll() is None else signal.SIGTERM)
        if self.mounted:
            with contextlib.suppress(OSError):
                subprocess.run(["umount", "-l", str(self.storage)], check=False, capture_output=True)
            self.mounted = False
