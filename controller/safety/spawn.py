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


class _Held(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _record_signals() -> list[int]:
    """From the first instant of the safety process: a stop signal (SIGABRT too: systemd's
    watchdog sends it to the whole service) is recorded, never fatal; the main loop acts on
    it (``SafetyProcess``). A reload is the OCPP process's business."""
    caught: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGABRT):
        signal.signal(sig, lambda signum, _frame: caught.append(signum))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return caught


def spawn(config: Config) -> SafetyChild:
    """Fork the safety process. Call before starting any thread."""
    assert threading.active_count() == 1, "fork the safety process before any thread starts"
    ocpp_end, safety_end = wire.pair()
    started_at = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the safety process
        code = 1
        early = _Held()  # what is logged before the journal is set up
        try:
            ocpp_end.close()
            signals = _record_signals()
            logging.getLogger().addHandler(early)
            logging.getLogger().setLevel(logging.DEBUG)
            from controller.safety import realtime

            realtime.lock_memory()  # first: before the log thread maps its stack
            from controller.io import logs
            from controller.safety import process

            logging.getLogger().removeHandler(early)
            logs.setup(config.logging.get("level", "info"), config.logging.get("modules"))
            for record in early.records:
                if logging.getLogger(record.name).isEnabledFor(record.levelno):
                    logging.getLogger(record.name).handle(record)
            code = process.main(config, safety_end, signals)
        except BaseException:
            logging.getLogger(__name__).critical("safety process crashed", exc_info=True)
            root = logging.getLogger()
            if early in root.handlers:  # it crashed before the journal was set up: stderr
                root.removeHandler(early)
                last = logging.lastResort
                for record in early.records:
                    if last is not None and record.levelno >= logging.WARNING:
                        last.handle(record)
        finally:
            atexit._run_exitfuncs()  # the log listener writes what is queued
            os._exit(code)  # never return into the OCPP process's stack
    safety_end.close()
    return SafetyChild(pid, ocpp_end, started_at)
