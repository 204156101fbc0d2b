"""A client for the rig socket of a daemon running on simulated hardware."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any


class RigReplyError(Exception):
    pass


class SimRig:
    """One connection to the rig socket; every call is one request and its reply."""

    def __init__(self, path: Path | str, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(self.path))
        self._buffer = b""

    @classmethod
    def wait_for(cls, path: Path | str, timeout: float = 10.0) -> SimRig:
        """Connect once the daemon listens."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return cls(path)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SimRig:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def send_line(self, line: bytes) -> dict[str, Any]:
        """Send raw bytes (a line) and read one reply line."""
        self.sock.sendall(line if line.endswith(b"\n") else line + b"\n")
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the daemon closed the rig socket")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        reply = self.send_line(json.dumps({"cmd": cmd, **fields}).encode())
        if reply.get("ok") is not True:
            raise RigReplyError(f"{cmd} {fields}: {reply.get('error')}")
        return reply

    def plug(self, evse: int = 1) -> None:
        self.request("plug", evse=evse)

    def charge(self, evse: int = 1, **fields: Any) -> None:
        self.request("charge", evse=evse, **fields)

    def suspend(self, evse: int = 1) -> None:
        self.request("suspend", evse=evse)

    def unplug(self, evse: int = 1) -> None:
        self.request("unplug", evse=evse)

    def cp(self, state: str | None, evse: int = 1) -> None:
        self.request("cp", evse=evse, state=state)

    def swipe(self, token: str) -> None:
        self.request("swipe", id=token)

    def fault(self, kind: str, active: bool = True, evse: int = 1) -> None:
        self.request("fault", evse=evse, kind=kind, active=active)

    def status(self, evse: int = 1) -> dict[str, Any]:
        return self.request("status", evse=evse)

    def wait_until(self, check: Any, timeout: float = 5.0, evse: int = 1) -> dict[str, Any]:
        """Poll status until ``check(status)`` is true; returns that status."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(evse)
            if check(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s; last status {status}")
            time.sleep(0.02)
