"""Logging: journald with structured fields under systemd, plain stderr elsewhere.

Code logs with ``extra={"evse_id": 1, "transaction_id": "..."}``; under journald those
become the fields in ``JOURNAL_FIELDS`` so a technician can ask
``journalctl -u evse TRANSACTION_ID=...``. The raw OCPP frames go to their own
size-capped rotating files (``FrameLog``), which diagnostics uploads collect.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import logging.handlers
import os
import queue
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

JOURNAL_FIELDS = {
    "evse_id": "EVSE_ID",
    "transaction_id": "TRANSACTION_ID",
    "id_tag": "ID_TAG",
    "ocpp_action": "OCPP_ACTION",
    "ocpp_message_id": "OCPP_MESSAGE_ID",
}
PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
STDERR_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def under_journald(environ: Mapping[str, str] = os.environ) -> bool:
    """True when stderr is connected to the journal (systemd sets JOURNAL_STREAM=dev:inode)."""
    stream = environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        info = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


class JournalHandler(logging.Handler):
    """Sends records to journald with their structured fields."""

    def __init__(self) -> None:
        super().__init__()
        from systemd import journal  # systemd-python: only on machines that run systemd

        self._send = journal.send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {
                "PRIORITY": str(PRIORITIES.get(record.levelno, 6)),
                "SYSLOG_IDENTIFIER": "evse",
                "LOGGER": record.name,
                "THREAD_NAME": record.threadName or "",
                "CODE_FILE": record.pathname,
                "CODE_LINE": str(record.lineno),
                "CODE_FUNC": record.funcName,
            }
            for attribute, field in JOURNAL_FIELDS.items():
                value = getattr(record, attribute, None)
                if value is not None:
                    fields[field] = str(value)
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info))
            self._send(message, **fields)
        except Exception:
            self.handleError(record)


_configured_modules: set[str] = set()


def setup(
    level: str = "info", modules: Mapping[str, str] | None = None, environ: Mapping[str, str] = os.environ
) -> None:
    """Configure the root logger once; call again (on reload) to change levels.

    Records pass through a queue to a listener thread that writes them, so a slow
    journald or a blocked stderr never holds up a control thread that logs a fault.
    """
    root = logging.getLogger()
    if not getattr(root, "_evse_configured", False):
        handler: logging.Handler
        if under_journald(environ):
            try:
                handler = JournalHandler()
            except ImportError:
                handler = logging.StreamHandler(sys.stderr)
                handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        else:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(STDERR_FORMAT))
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        listener = logging.handlers.QueueListener(records, handler)
        listener.start()
        atexit.register(listener.stop)  # writes what is still queued
        root.handlers[:] = [logging.handlers.QueueHandler(records)]
        root._evse_configured = True  # type: ignore[attr-defined]
    root.setLevel(LEVELS[level])
    for name in _configured_modules:
        logging.getLogger(name).setLevel(logging.NOTSET)
    # pymodbus logs every failed poll as an error; the meter driver reports them with context.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    _configured_modules.clear()
    for name, module_level in (modules or {}).items():
        logging.getLogger(name).setLevel(LEVELS[module_level])
        _configured_modules.add(name)


SECRET_KEYS = ("AuthorizationKey", "BasicAuthPassword")


def redact_frame(frame: str) -> str:
    """The frame with the passwords a CSMS sets replaced by "***" (for logs)."""
    if not any(key in frame for key in SECRET_KEYS):
        return frame
    try:
        message = json.loads(frame)
        payload = message[3] if message[0] == 2 else None
    except (ValueError, IndexError, KeyError, TypeError):
        return "[a frame naming a password, not logged]"
    if isinstance(payload, dict):
        if payload.get("key") == "AuthorizationKey" and "value" in payload:
            payload["value"] = "***"
        for item in payload.get("setVariableData") or ():
            if isinstance(item, dict) and (item.get("variable") or {}).get("name") == "BasicAuthPassword":
                item["attributeValue"] = "***"
    return json.dumps(message, separators=(",", ":"))


class FrameLog:
    """Raw OCPP frames with timestamps, in size-capped rotating files (``path``,
    ``path.1`` the newest backup ... ``path.<backups>`` the oldest).

    Written directly rather than through ``logging``: with a handler per record (two
    stat calls and a lock) the frame log was a fifth of the event loop's work while a
    queue of transaction messages was delivered.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._file: BinaryIO | None = None
        self._size = 0
        self.dropped = 0

    def record(self, direction: str, frame: str) -> None:
        """``direction`` is "in" (from the CSMS) or "out"."""
        moment = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        line = f"{moment} {'<' if direction == 'in' else '>'} {redact_frame(frame)}\n".encode()
        try:
            if self._file is None:
                self._file = self.path.open("ab")
                self._size = self._file.tell()
            if self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
                assert self._file is not None
            self._file.write(line)
            self._file.flush()
            self._size += len(line)
        except OSError:
            # A full disk must not stop the station; count what was lost instead.
            self.dropped += 1
            self.close()

    def _rotate(self) -> None:
        self.close()
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._file = self.path.open("ab")
        self._size = 0

    def files(self) -> list[Path]:
        """The log files, oldest first, for an upload."""
        backups = sorted(self.path.parent.glob(self.path.name + ".*"), key=lambda p: -int(p.suffix[1:]))
        return [p for p in [*backups, self.path] if p.exists()]

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
