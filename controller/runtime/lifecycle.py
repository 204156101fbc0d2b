"""How the daemon ends: the stop, its exit code, and the restart planned after it."""

from __future__ import annotations

import asyncio
import logging

from controller.core.model import StopReason
from controller.io.notify import Notifier

log = logging.getLogger(__name__)

SHUTDOWN_REASON = StopReason.REBOOT


class Lifecycle:
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.stopping = asyncio.Event()
        self.exit_code = 0
        self.shutdown_reason: StopReason = SHUTDOWN_REASON  # the stop reason of the transactions it ends
        self._restart: str | None = None  # see the restart property
        self.reset_retries = 0  # a failing reboot command is run again this often, then "exec"
        self.terminated = False  # SIGTERM/SIGINT: no restart, whatever was planned
        # Stored at exit only if the restart planned still happens (2.0.1 boot reason RemoteReset).
        self.restart_settings: dict[str, str] = {}

    @property
    def restart(self) -> str | None:
        """After stopping: "exec" (re-execute in place), "reboot", or None. SIGTERM/SIGINT
        cancel it, whether a reset or an install asked for it before or after them."""
        return None if self.terminated else self._restart

    @restart.setter
    def restart(self, how: str | None) -> None:
        self._restart = how

    @property
    def restart_retries(self) -> int:
        """ResetRetries for the restart planned: only a CSMS Reset has them (not a firmware restart)."""
        return (
            self.reset_retries
            if self.shutdown_reason in (StopReason.HARD_RESET, StopReason.SOFT_RESET)
            else 0
        )

    def restart_after_stop(self, reason: StopReason, how: str) -> None:
        """Stop, ending transactions with ``reason``, then restart ("exec" or "reboot")."""
        self.shutdown_reason = reason
        self.restart = how
        self.stop()

    def terminate(self) -> None:
        """SIGTERM or SIGINT: stop and exit, even while a reset or firmware restart is under way."""
        if self.restart is not None:
            log.warning(
                "terminated: the %s planned is not done", "reboot" if self.restart == "reboot" else "restart"
            )
        self.terminated = True
        self.stop()

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: opening contactors and ending transactions")
            self.notifier.send(STOPPING="1", STATUS="stopping: opening contactors")
        self.stopping.set()

    def fail(self, status: str) -> None:
        """Exit with status 1 so that systemd restarts the service (Restart=on-failure)."""
        self.notifier.send(STATUS=status)
        self.exit_code = 1
        self.stop()
