"""Fork the safety process from ``evse run`` before anything heavy is imported.

The fork happens while the OCPP process is still one thread with only the command line
and the config loaded, so the child starts at once, shares those pages, and never holds
asyncio, websockets, SQLite or cryptography. It gets its end of the channel and the
config; the OCPP process gets a ``SafetyChild``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass

from controller.config import Config
from controller.safety import wire

EXIT_WAIT_S = 0.5  # an orderly exit; after that the child is killed


@dataclass
class SafetyChild:
    pid: int
    sock: socket.socket  # the OCPP process's end of the channel
    started_at: float  # time.monotonic() at the fork

    def exit_status(self, wait_s: float) -> int | None:
        """Wait up to ``wait_s`` for the child to end; its exit status, or None if it runs on."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return 0
            if pid:
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.005)

    def end(self) -> int:
        """Make sure the child has ended (asked first, then killed); its exit status."""
        with contextlib.suppress(OSError):
            wire.send(self.sock, wire.encode("exit"))
        status = self.exit_status(EXIT_WAIT_S)
        if status is None:
            logging.getLogger(__name__).critical("safety process %d did not exit; killed", self.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            status = self.exit_status(EXIT_WAIT_S)
        self.sock.close()
        return -signal.SIGKILL if status is None else status


def spawn(config: Config) -> SafetyChild:
    """Fork the safety process. Call before starting any thread."""
    assert threading.active_count() == 1, "fork the safety process before any thread starts"
    ocpp_end, safety_end = wire.pair()
    started_at = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the safety process
        code = 1
        try:
            ocpp_end.close()
            from controller.io import logs
            from controller.safety import process

            logs.setup(config.logging.get("level", "info"), config.logging.get("modules"))
            code = process.main(config, safety_end)
        except BaseException:
            logging.getLogger(__name__).critical("safety process crashed", exc_info=True)
        finally:
            atexit._run_exitfuncs()  # the log listener writes what is queued
            os._exit(code)  # never return into the OCPP process's stack
    safety_end.close()
    return SafetyChild(pid, ocpp_end, started_at)
