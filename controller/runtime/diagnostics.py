"""Diagnostics and logs for the CSMS: a bundle of the station's state, or the security log."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import logging
import os
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from controller.core.timestamps import parse_timestamp
from controller.io.logs import FrameLog
from controller.io.transfer import TransferError, redact, upload
from controller.ocpp.host import Notify
from controller.security import tls
from controller.security.certstore import CertStore
from controller.security.events import SecurityLog

log = logging.getLogger(__name__)

DIAGNOSTICS_DIR = "diagnostics"


@dataclasses.dataclass(frozen=True)
class UploadRequest:
    """GetDiagnostics (1.6) or GetLog (2.0.1): what to upload, where, and how to retry."""

    location: str
    name: str
    start: datetime | None = None
    stop: datetime | None = None
    retries: int = 0
    interval: int = 30
    security_log: bool = False  # 2.0.1 GetLog SecurityLog: the security log, not diagnostics


class Diagnostics:
    def __init__(
        self,
        station_id: str,
        storage_dir: Path,
        certs: CertStore,
        security_log: SecurityLog,
        frames: FrameLog | None,
        status: Callable[[], dict[str, Any]],
    ) -> None:
        self.station_id = station_id
        self.folder = storage_dir / DIAGNOSTICS_DIR
        self.certs = certs
        self.security_log = security_log
        self.frames = frames
        self.status = status  # what `evse status --json` prints

    def name(self) -> str:
        return f"{self.station_id}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.tar.gz"

    async def upload(self, request: UploadRequest, notify: Notify) -> None:
        location, name, start, stop = request.location, request.name, request.start, request.stop
        retries, interval, security_log = request.retries, request.interval, request.security_log
        self.folder.mkdir(exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=self.folder))  # each request its own: names can repeat
        path = work / name
        await asyncio.to_thread(self._security_extract if security_log else self._bundle, path, start, stop)
        await notify("Uploading")
        try:
            roots = await asyncio.to_thread(self.certs.roots_pem, "CSMSRootCertificate")
            context = tls.transfer_context(roots)
            await upload(location, path, retries=retries, retry_interval_s=interval, ssl_context=context)
        except TransferError as exc:
            log.error("diagnostics upload failed: %s", exc)
            await notify("UploadFailed")
        else:
            log.info("diagnostics %s uploaded to %s", name, redact(location))
            await notify("Uploaded")
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
                work.rmdir()

    def _security_extract(self, path: Path, start: datetime | None, stop: datetime | None) -> None:
        """The security log entries of the window asked for, as JSON lines."""
        with path.open("w", encoding="utf-8") as out:
            for source in self.security_log.files():
                with source.open(encoding="utf-8", errors="replace") as lines:
                    for line in lines:
                        try:
                            at = parse_timestamp(json.loads(line)["timestamp"])
                        except (ValueError, KeyError, TypeError):
                            continue
                        if (start is None or at >= start) and (stop is None or at <= stop):
                            out.write(line)

    def _bundle(self, path: Path, start: datetime | None, stop: datetime | None) -> None:
        """A tar.gz with the status, the journal of the window asked for and the OCPP frames."""
        with tarfile.open(path, "w:gz") as tar:

            def add(name: str, data: bytes) -> None:
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), int(time.time())
                tar.addfile(info, io.BytesIO(data))

            add("status.json", json.dumps(self.status(), indent=2, default=str).encode())
            journal = _journal(start, stop)
            if journal:
                add("journal.txt", journal)
            for frames in self.frames.files() if self.frames else []:
                tar.add(frames, arcname=f"frames/{frames.name}")


def _journal(start: datetime | None, stop: datetime | None) -> bytes:
    argv = ["journalctl", "--no-pager", "-o", "short-iso-precise"]
    if os.environ.get("INVOCATION_ID"):
        argv += ["-u", "evse"]
    else:
        argv += [f"_PID={os.getpid()}"]
    if start:
        argv += ["--since", f"@{int(start.timestamp())}"]
    if stop:
        argv += ["--until", f"@{int(stop.timestamp())}"]
    try:
        return subprocess.run(argv, capture_output=True, timeout=10, check=False).stdout[-20_000_000:]
    except (OSError, subprocess.SubprocessError):
        return b""
