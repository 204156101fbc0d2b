"""A real OCPP test bench: the development CSMS on a websocket, the daemon as a
subprocess on simulated hardware, driven over the rig socket."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hil.csms import CsmsThread, describe
from hil.simrig import SimRig
from hil.station import config_text

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "04A1B2C3"


@dataclass
class Bench:
    dir: Path
    csms: CsmsThread
    proc: subprocess.Popen[bytes] | None = None
    rig: SimRig | None = None
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.dir / "evse.toml"

    @property
    def log(self) -> Path:
        return self.dir / "daemon.log"

    def start(self, wait_boot: bool = True) -> None:
        mark = len(self.csms.timeline)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "controller", "run", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, **self.env},
            )
        self.starts += 1
        try:
            self.rig = SimRig.wait_for(self.dir / "var" / "sim.sock")
        except OSError:
            self.proc.kill()
            raise AssertionError(f"daemon did not come up:\n{self.log.read_text()}") from None
        if wait_boot:
            self.wait("BootNotification", after=mark)
            self.wait("StatusNotification", lambda p: p["connectorId"] == 1, after=mark)
            # Every start is a security event; tests begin once it has been delivered.
            self.wait("SecurityEventNotification", lambda p: p["type"] == "StartupOfTheDevice", after=mark)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.rig is not None:
            self.rig.close()
            self.rig = None
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=10)
        SimRig.wait_released(self.dir / "var" / "sim.sock")
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    # -- the CSMS side -----------------------------------------------------------------

    def call(self, action: str, payload: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        return self.csms.call("CP001", action, payload, timeout=timeout)

    def wait(
        self,
        action: str,
        where: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 10,
        after: int = 0,
    ) -> dict[str, Any]:
        entry = self.csms.wait_for(action, station="CP001", where=where, timeout=timeout, after=after)
        payload: dict[str, Any] = entry.payload  # type: ignore[assignment]
        return payload

    def mark(self) -> int:
        return len(self.csms.timeline)

    def status(self, connector: int, status: str, after: int = 0, timeout: float = 10) -> dict[str, Any]:
        return self.wait(
            "StatusNotification",
            lambda p: p["connectorId"] == connector and p["status"] == status,
            timeout,
            after,
        )

    def calls(self, action: str) -> list[dict[str, Any]]:
        return self.csms.calls(action, station="CP001")

    def event(
        self,
        event_type: str,
        where: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 10,
        after: int = 0,
    ) -> dict[str, Any]:
        """The next 2.0.1 TransactionEvent of ``event_type`` (Started, Updated, Ended)."""
        return self.wait(
            "TransactionEvent",
            lambda p: p["eventType"] == event_type and (where is None or where(p)),
            timeout,
            after,
        )

    def status201(self, evse: int, status: str, after: int = 0, timeout: float = 10) -> dict[str, Any]:
        return self.wait(
            "StatusNotification",
            lambda p: p["evseId"] == evse and p["connectorStatus"] == status,
            timeout,
            after,
        )

    # -- the station side --------------------------------------------------------------

    def db(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.dir / "var" / "evse.db") as db:
            return db.execute(sql, params).fetchall()

    def sim(self) -> SimRig:
        assert self.rig is not None
        return self.rig

    def charge(self, evse: int = 1, token: str | None = TOKEN, max_current_a: float = 16) -> dict[str, Any]:
        """Plug in, swipe (unless token is None), charge; returns the StartTransaction payload."""
        mark = self.mark()
        self.sim().plug(evse)
        if token is not None:
            self.sim().swipe(token)
        start = self.wait("StartTransaction", lambda p: p["connectorId"] == evse, after=mark)
        self.sim().charge(evse, max_current_a=max_current_a)
        self.sim().wait_until(lambda s: s["contactor_closed"], evse=evse, timeout=10)
        return start


def write_config(
    path: Path,
    url: str,
    evses: int = 1,
    auth_mode: str = "ocpp",
    extra: str = "",
    lock: str = "none",
    version: str = "1.6",
) -> None:
    path.write_text(config_text(url, version, evses, auth_mode, lock, extra))


@pytest.fixture
def csms() -> Iterator[CsmsThread]:
    with CsmsThread(quiet=True) as server:
        yield server


@pytest.fixture
def csms201() -> Iterator[CsmsThread]:
    """A development CSMS that speaks OCPP 2.0.1 only."""
    with CsmsThread(quiet=True, versions=("2.0.1",)) as server:
        yield server


@pytest.fixture
def bench201(tmp_path: Path, csms201: CsmsThread) -> Iterator[Bench]:
    """A station with one EVSE speaking OCPP 2.0.1, auth mode "ocpp", booted."""
    running = make_bench(tmp_path, csms201, version="2.0.1")
    running.start()
    yield running
    if running.proc is not None and running.proc.poll() is None:
        running.kill()


def make_bench(tmp_path: Path, csms: CsmsThread, **config: Any) -> Bench:
    bench = Bench(tmp_path, csms)
    write_config(bench.config, csms.url, **config)
    return bench


@pytest.fixture
def bench(tmp_path: Path, csms: CsmsThread) -> Iterator[Bench]:
    """A station with one EVSE, auth mode "ocpp", booted against the CSMS."""
    running = make_bench(tmp_path, csms)
    running.start()
    yield running
    if running.proc is not None and running.proc.poll() is None:
        running.kill()


def set_variables(bench: Bench, *items: tuple[str, str, str] | tuple[str, str, str, str]) -> None:
    """SetVariables (component, variable, value[, variable instance]), each Accepted."""
    data = []
    for item in items:
        variable: dict[str, str] = {"name": item[1]}
        if len(item) == 4:
            variable["instance"] = item[3]
        data.append({"component": {"name": item[0]}, "variable": variable, "attributeValue": item[2]})
    reply = bench.call("SetVariables", {"setVariableData": data})
    assert [r["attributeStatus"] for r in reply["setVariableResult"]] == ["Accepted"] * len(items), reply


@pytest.fixture(autouse=True)
def timeline201(csms201: CsmsThread, tmp_path: Path) -> Iterator[None]:
    """Print the CSMS timeline and the daemon log's tail; pytest shows them for a failed test.

    Autouse in the modules that import it (the 2.0.1 ones)."""
    yield
    print("\n".join(f"{e.t:10.3f} {describe(e)}" for e in csms201.timeline))
    log = tmp_path / "daemon.log"
    if log.exists():
        print("--- daemon.log (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-80:]))


def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def stop_all(benches: list[Bench], servers: list[CsmsThread]) -> None:
    """Kill the stations and stop the CSMSs, printing each timeline and log tail (shown on failure)."""
    for bench in benches:
        if bench.proc is not None and bench.proc.poll() is None:
            with contextlib.suppress(Exception):
                bench.kill()
    for server in servers:
        print(f"--- CSMS {server.url}")
        print("\n".join(f"{e.t:10.3f} {describe(e)}" for e in server.timeline))
        server.stop()
    for bench in benches:
        if bench.log.exists():
            tail = bench.log.read_text(errors="replace").splitlines()[-60:]
            print(f"--- {bench.log} (tail)\n" + "\n".join(tail))
