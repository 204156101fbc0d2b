"""A client for the rig socket of a daemon running on simulated hardware."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from hil.rig import NOMINAL_PILOT_V, Measurement, Rig, RigError


class RigReplyError(RigError):
    pass


class SimRig(Rig):
    """One connection to the rig socket of a daemon on simulated hardware; every call is
    one request and its reply."""

    def __init__(self, path: Path | str, timeout: float = 5.0, reconnect_s: float = 0.0) -> None:
        """``reconnect_s`` > 0: a request that finds the socket gone (a daemon restarted)
        waits up to that long for the socket to answer again and is sent again."""
        self.path = Path(path)
        self.timeout = timeout
        self.reconnect_s = reconnect_s
        self.sock = self._connect()
        self._buffer = b""
        self._broken = False

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError:
            sock.close()
            raise
        return sock

    @classmethod
    def wait_for(cls, path: Path | str, timeout: float = 10.0, reconnect_s: float = 0.0) -> SimRig:
        """Connect once the daemon listens."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return cls(path, reconnect_s=reconnect_s)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @staticmethod
    def wait_released(path: Path | str, timeout: float = 3.0) -> bool:
        """After the daemon was killed: wait until nothing listens on ``path`` any more.

        The safety process outlives a killed daemon by a moment (it opens the contactors,
        then gives the rig socket up); a rig that connected in that moment would talk to
        the world that is going away. True once released."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
            except OSError:
                return True
            finally:
                probe.close()
            time.sleep(0.01)
        return False

    def reconnect(self, timeout: float) -> None:
        self.sock.close()
        self._buffer = b""
        self._broken = True
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = self._connect()
                self._broken = False
                return
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
        """Send raw bytes (a line) and read one reply line.

        A request that failed leaves the connection out of step (a late reply may still
        come), so the next request starts on a new one. Only a request that cannot have
        reached the daemon (the socket gone) is sent again; a timed-out one is not, since
        it may have been carried out (a swipe twice is not a swipe once)."""
        if self._broken:
            self.reconnect(self.reconnect_s)
        try:
            return self._exchange(line)
        except OSError as exc:
            self._broken = True
            if not self.reconnect_s or isinstance(exc, TimeoutError):
                raise
        self.reconnect(self.reconnect_s)
        return self._exchange(line)

    def _exchange(self, line: bytes) -> dict[str, Any]:
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

    def charge(self, evse: int = 1, max_current_a: float | None = None, phases: int | None = None) -> None:
        given = {"max_current_a": max_current_a, "phases": phases}
        self.request("charge", evse=evse, **{k: v for k, v in given.items() if v is not None})

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

    def timing(self, evse: int = 1) -> dict[str, Any]:
        """When the simulated pilot state and the contactor command last changed
        (``time.monotonic`` of this host): ``cp_state``, ``cp_changed_at``,
        ``contactor_command``, ``contactor_commanded_at``."""
        return self.request("timing", evse=evse)

    def measure(self, evse: int = 1) -> Measurement:
        status = self.status(evse)
        return Measurement(
            cp_state=status["cp_state"],
            pilot_v=NOMINAL_PILOT_V[status["cp_state"]],
            duty_percent=status["duty_percent"],
            contactor_closed=status["contactor_closed"],
            power_w=status["power_w"],
            energy_wh=status["energy_wh"],
        )

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
