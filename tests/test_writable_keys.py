"""Writable means it works: every 1.6 configuration key and 2.0.1 variable the CSMS may
write has a consumer, a function that reads it (``CONSUMERS`` beside each key table).

A key added as writable without an entry, or with an entry naming a function that does
not read it, fails here: make it work, or make it read-only. The variables whose effect
shows in the station's dealings with a CSMS are tested in-process in
test_inproc_writable_keys.py.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.server import ServerConnection, serve

from controller.core import authorization as auth
from controller.core.model import StopReason
from controller.ocpp.adapter import RETRY_BACKOFF_MAX_S, retry_backoff
from controller.ocpp.v16.keys import CONSUMERS as CONSUMERS16
from controller.ocpp.v16.keys import KEYS
from controller.ocpp.v201 import device_model as dm
from hil.csms import CsmsThread
from hil.station import config_text
from tests.ocpp_harness import ROOT, eventually, make_bench

INFO = dm.StationInfo("Vendor", "Model", "SN", "1.0", 0)
DEFS = dm.definitions({1: dm.EvseInfo(32, 3, True), 2: dm.EvseInfo(16, 1, False)}, INFO)


def _resolve(where: str) -> Callable[..., Any]:
    module, _, name = where.partition(":")
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    return target  # type: ignore[no-any-return]


def _source(where: str) -> str:
    return inspect.getsource(_resolve(where))


def writable16() -> list[str]:
    # A key with one allowed value cannot change anything: the station behaves that way.
    return [name for name, d in KEYS.items() if d.writable and len(d.choices) != 1]


def writable201() -> list[tuple[str, str]]:
    single = [
        d
        for d in DEFS
        if d.data_type in (*dm.LISTS, "SequenceList", "OptionList") and len(d.values_list) == 1
    ]
    return sorted({(d.component, d.variable) for d in DEFS if d.mutability != "ReadOnly" and d not in single})


@pytest.mark.parametrize("name", writable16())
def test_every_writable_16_key_is_read_by_its_consumer(name: str) -> None:
    assert name in CONSUMERS16, f"{name} is writable but nothing uses it: wire it or make it read-only"
    assert f'"{name}"' in _source(CONSUMERS16[name]), f"{CONSUMERS16[name]} does not read {name}"


@pytest.mark.parametrize(("component", "variable"), writable201(), ids=lambda v: str(v))
def test_every_writable_201_variable_is_read_by_its_consumer(component: str, variable: str) -> None:
    where = dm.CONSUMERS.get((component, variable))
    assert where is not None, (
        f"{component}.{variable} is writable but nothing uses it: wire it or make it ReadOnly"
    )
    # The two names in one call: self._number("OCPPCommCtrlr", "MessageTimeout", ...)
    pattern = re.compile(rf'"{component}",[^"]{{0,40}}"{variable}"')
    assert pattern.search(_source(where)), f"{where} does not read {component}.{variable}"


def test_consumer_tables_name_only_writable_entries() -> None:
    assert set(CONSUMERS16) <= set(writable16())
    assert set(dm.CONSUMERS) <= set(writable201())


def test_the_issue_17_list_is_now_wired_or_read_only() -> None:
    """The keys issue 17 found accepted and ignored."""
    keys = {name: d for name, d in KEYS.items()}
    assert keys["ResetRetries"].writable and "ResetRetries" in CONSUMERS16
    found = {(d.component, d.variable): d for d in DEFS}
    for name in (
        ("OCPPCommCtrlr", "MessageTimeout"),
        ("OCPPCommCtrlr", "OfflineThreshold"),
        ("OCPPCommCtrlr", "RetryBackOffRandomRange"),
        ("OCPPCommCtrlr", "RetryBackOffRepeatTimes"),
        ("OCPPCommCtrlr", "RetryBackOffWaitMinimum"),
        ("OCPPCommCtrlr", "ResetRetries"),
        ("AuthCtrlr", "Enabled"),
        ("AuthCacheCtrlr", "LifeTime"),
        ("MonitoringCtrlr", "OfflineQueuingSeverity"),
    ):
        assert name in dm.CONSUMERS, name
    for name in (
        ("OCPPCommCtrlr", "QueueAllMessages"),
        ("AuthCtrlr", "DisableRemoteAuthorization"),
        ("SmartChargingCtrlr", "LimitChangeSignificance"),
    ):
        assert found[name].mutability == "ReadOnly", name


# -- each wired entry does what it says ------------------------------------------------------


class RawCsms:
    """A bare 2.0.1 CSMS on a websocket: answers what ``answers`` knows (others never), records
    each CALL with its arrival time, and sends CALLs of its own to the station."""

    def __init__(self, answers: dict[str, dict[str, Any]]) -> None:
        self.answers = answers
        self.calls: list[tuple[float, str, dict[str, Any]]] = []
        self.results: dict[str, Any] = {}
        self.connects: list[float] = []
        self.closes: list[float] = []
        self.ws: ServerConnection | None = None
        self.server = serve(self._serve, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"])  # type: ignore[list-item]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}/ocpp"

    def _serve(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.connects.append(time.monotonic())
        try:
            for text in ws:
                frame = json.loads(text)
                if frame[0] == 3:
                    self.results[frame[1]] = frame[2]
                elif frame[0] == 2:
                    self.calls.append((time.monotonic(), frame[2], frame[3]))
                    if frame[2] in self.answers:
                        ws.send(json.dumps([3, frame[1], self.answers[frame[2]]]))
        finally:
            self.closes.append(time.monotonic())

    def times(self, action: str) -> list[float]:
        return [t for t, a, _ in self.calls if a == action]

    def call(self, action: str, payload: dict[str, Any]) -> Any:
        unique_id = f"csms-{len(self.results)}-{time.monotonic()}"
        assert self.ws is not None
        self.ws.send(json.dumps([2, unique_id, action, payload]))
        return eventually(lambda: self.results.get(unique_id), timeout=10, what=f"answer to {action}")

    def set_variable(self, component: str, variable: str, value: str, instance: str | None = None) -> None:
        item: dict[str, Any] = {"component": {"name": component}, "variable": {"name": variable}}
        if instance:
            item["variable"]["instance"] = instance
        reply = self.call("SetVariables", {"setVariableData": [{**item, "attributeValue": value}]})
        assert reply["setVariableResult"][0]["attributeStatus"] == "Accepted", reply

    def close(self) -> None:
        self.server.shutdown()


ANSWERS_201: dict[str, dict[str, Any]] = {
    "BootNotification": {"status": "Accepted", "currentTime": "2026-12-07T08:00:00Z", "interval": 300},
    "StatusNotification": {},
    "SecurityEventNotification": {},
    "NotifyEvent": {},
    "NotifyReport": {},
}


@pytest.fixture
def raw201(tmp_path: Path) -> Iterator[RawCsms]:
    server = RawCsms(dict(ANSWERS_201))
    (tmp_path / "evse.toml").write_text(config_text(server.url, version="2.0.1"))
    with (tmp_path / "daemon.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller", "run", "--config", str(tmp_path / "evse.toml")],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        eventually(lambda: server.times("StatusNotification"), timeout=20, what="the station's boot")
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        server.close()


def test_message_timeout_bounds_the_wait_for_an_answer(raw201: RawCsms) -> None:
    """OCPPCommCtrlr.MessageTimeout: a request the CSMS does not answer holds the next one
    back for that long (one CALL at a time), not for the built-in 30 s."""
    raw201.set_variable("OCPPCommCtrlr", "MessageTimeout", "2", "Default")
    for _ in range(2):
        assert raw201.call("TriggerMessage", {"requestedMessage": "Heartbeat"}) == {"status": "Accepted"}
    beats = eventually(
        lambda: raw201.times("Heartbeat")[1:] and raw201.times("Heartbeat"), timeout=10, what="2 beats"
    )
    assert 1.5 <= beats[1] - beats[0] <= 6, beats


def test_retry_back_off_variables_set_the_reconnect_wait(raw201: RawCsms) -> None:
    """Part 4 5.3: the first reconnection after a connection loss waits
    RetryBackOffWaitMinimum plus up to RetryBackOffRandomRange seconds."""
    raw201.set_variable("OCPPCommCtrlr", "RetryBackOffWaitMinimum", "6")
    raw201.set_variable("OCPPCommCtrlr", "RetryBackOffRandomRange", "0")
    assert raw201.ws is not None
    raw201.ws.close()
    eventually(lambda: len(raw201.connects) >= 2, timeout=15, what="a reconnection")
    waited = raw201.connects[1] - raw201.closes[0]
    assert 5.8 <= waited <= 8.5, waited  # the defaults wait 1-4 s


def test_retry_back_off_doubles_and_is_capped() -> None:
    """Part 4 5.3: RetryBackOffWaitMinimum doubled RetryBackOffRepeatTimes times at most, plus
    RetryBackOffRandomRange at random. The defaults stay under 60 s (1.6 and 2.0.1 alike); values
    the CSMS sets (up to 3600 s x 2^20 within the limits) never wait longer than an hour."""
    defaults = {d.variable: int(d.default) for d in DEFS if d.variable.startswith("RetryBackOff")}
    minimum = defaults["RetryBackOffWaitMinimum"]
    repeat, spread = defaults["RetryBackOffRepeatTimes"], defaults["RetryBackOffRandomRange"]
    assert [retry_backoff(n, minimum, repeat, spread, 0.0) for n in range(6)] == [1, 2, 4, 8, 16, 16]
    assert max(retry_backoff(n, minimum, repeat, spread, 1.0) for n in range(100)) <= 60
    assert retry_backoff(0, 6, 4, 3, 0.5) == 7.5
    assert retry_backoff(20, 3600, 20, 3600, 1.0) == RETRY_BACKOFF_MAX_S == 3600
    assert retry_backoff(3, 1000, 20, 0, 0.0) == 3600


def test_auth_cache_life_time_forgets_entries_not_used_for_that_long() -> None:
    """AuthCacheCtrlr.LifeTime: "how long it takes until a token expires in the
    authorization cache since it is last used"; offline, an expired entry is unknown."""
    cache = auth.AuthCache()
    now = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    cache.update("04A1B2C3", auth.IdTagInfo("Accepted"), now)
    settings = auth.AuthSettings(cache_lifetime_s=60)
    later = now + timedelta(seconds=50)
    decision = auth.decide("04A1B2C3", later, False, auth.LocalList(), cache, settings)
    assert (decision.outcome, decision.source) == ("accept", "cache")  # a use: 60 s from here
    decision = auth.decide(
        "04A1B2C3", later + timedelta(seconds=55), False, auth.LocalList(), cache, settings
    )
    assert decision.outcome == "accept"
    decision = auth.decide(
        "04A1B2C3", later + timedelta(seconds=200), False, auth.LocalList(), cache, settings
    )
    assert (decision.outcome, decision.source) == ("reject", "unknown")
    assert len(cache) == 0


def test_reset_retries_runs_a_failing_reboot_command_again(tmp_path: Path, csms: CsmsThread) -> None:
    """1.6 ResetRetries: "Number of times to retry an unsuccessful reset". A hard reset runs
    the reboot command; failing, it is run ResetRetries more times, then the daemon
    restarts in place (and boots again)."""
    runs = tmp_path / "reboots"
    command = f"sh -c 'echo run >> {runs}; exit 1'"
    bench = make_bench(tmp_path, csms, extra=f"[system]\nreboot_command = {json.dumps(command)}\n")
    bench.start()
    try:
        assert (
            bench.call("ChangeConfiguration", {"key": "ResetRetries", "value": "2"})["status"] == "Accepted"
        )
        mark = bench.mark()
        assert bench.call("Reset", {"type": "Hard"}) == {"status": "Accepted"}
        bench.wait("BootNotification", after=mark, timeout=30)
        assert runs.read_text().splitlines() == ["run"] * 3
    finally:
        if bench.proc is not None and bench.proc.poll() is None:
            bench.kill()


def test_reset_retries_a_hanging_reboot_command_is_killed_and_counts_as_a_failure(tmp_path: Path) -> None:
    """ResetRetries ("Number of times to retry an unsuccessful reset"): a reboot command that
    hangs (a sudo prompt, a stuck systemctl job) is killed after the timeout, with what it
    started, and run again; never done, the caller restarts the daemon in place."""
    from controller.cli import run_reboot_command

    pids = tmp_path / "pids"
    command = f"sh -c 'sleep 30 & echo $! >> {pids}; wait'"
    started = time.monotonic()
    assert run_reboot_command(command, retries=1, timeout_s=0.5) is False
    assert time.monotonic() - started < 5
    children = [int(pid) for pid in pids.read_text().split()]
    assert len(children) == 2  # run, then run again
    for pid in children:
        eventually(lambda pid=pid: _gone(pid), 5, f"sleep {pid} killed")
    assert run_reboot_command("true", retries=0, timeout_s=5) is True
    assert run_reboot_command("'unbalanced", retries=0, timeout_s=5) is False


def _gone(pid: int) -> bool:
    """Ended (a zombie not reaped yet counts: it runs no more)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def test_reset_retries_apply_to_a_csms_reset_only(tmp_path: Path) -> None:
    """ResetRetries count for the reboot a Reset asked for, not for a later firmware restart."""
    from controller.config import load
    from controller.daemon import Daemon

    path = tmp_path / "evse.toml"
    path.write_text(config_text("ws://127.0.0.1:9/ocpp", "1.6", 1, "ocpp", "none", ""))
    daemon = Daemon(load(path))
    daemon.lifecycle.reset_retries = 3  # as Reset leaves them
    daemon.lifecycle.shutdown_reason = StopReason.HARD_RESET
    assert daemon.restart_retries == 3
    daemon.lifecycle.shutdown_reason = StopReason.REBOOT  # a firmware install restarts the station afterwards
    assert daemon.restart_retries == 0
