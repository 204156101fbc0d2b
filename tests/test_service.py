"""The daemon as a systemd service: notify, watchdog, stall handling, reload, logging."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.config import load
from controller.io import logs
from controller.io.notify import Notifier
from controller.reload import plan
from hil.simrig import SimRig
from tests.test_end_to_end import ROOT, SIM_CONFIG


class NotifySocket:
    """What systemd would receive on $NOTIFY_SOCKET, drained continuously like systemd does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._closed = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def collect(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        self._closed.set()

    def wait_for(self, key: str, value: str | None = None, timeout: float = 10.0) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for at, fields in self.messages:
                if key in fields and (value is None or fields[key] == value):
                    return at
            self.collect(0.1)
        raise AssertionError(f"{key}={value} never sent; got {self.messages}")

    def times(self, key: str) -> list[float]:
        return [at for at, fields in self.messages if key in fields]


def wait_for_text(log: Path, text: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"{text!r} never logged"
        time.sleep(0.05)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], NotifySocket, Path]]:
    config = tmp_path / "evse.toml"
    shutil.copy(SIM_CONFIG, config)
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", "run", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env=env,
    )
    yield proc, notify, config
    notify.close()
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.close()


def test_ready_after_start_up_then_watchdog_until_the_control_loop_stalls(service) -> None:  # type: ignore[no-untyped-def]
    proc, notify, config = service
    ready = notify.wait_for("READY", "1")
    assert (config.parent / "var" / "sim.sock").exists()  # up before READY
    assert any("STATUS" in fields for _, fields in notify.messages)

    notify.collect(1.5)
    pings = [t for t in notify.times("WATCHDOG") if t > ready]
    assert len(pings) >= 4, "WATCHDOG=1 must keep coming (every WATCHDOG_USEC / 4)"

    with SimRig.wait_for(config.parent / "var" / "sim.sock") as rig:
        rig.charge()
        rig.wait_until(lambda s: s["contactor_closed"])
        stalled_at = time.monotonic()
        rig.fault("pilot_hang")  # the pilot ADC read never returns: the control loop stalls
    while proc.poll() is None and time.monotonic() < stalled_at + 10:
        notify.collect(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGABRT)  # faulthandler dumps every thread's stack
        proc.wait(timeout=5)
        pytest.fail("daemon did not exit after the stall:\n" + (config.parent / "daemon.log").read_text())
    assert proc.wait(timeout=1) == 1  # exits for systemd to restart it
    notify.collect(0.2)
    # Pings may go on until the stall is detected (1 s), never after.
    late_pings = [t for t in notify.times("WATCHDOG") if t > stalled_at + 1.3]
    assert late_pings == [], "the watchdog must not be fed while the control loop is stalled"
    kinds = [next(iter(f)) if "WATCHDOG" in f else f.get("STATUS", "") for _, f in notify.messages]
    stall = next(i for i, k in enumerate(kinds) if "stalled" in k)
    assert "WATCHDOG" not in kinds[stall:]
    state = (config.parent / "var" / "sim-hardware.json").read_text()
    assert '"contactor_closed": false' in state


def test_sighup_applies_live_changes_and_keeps_the_old_config_when_the_new_one_is_bad(service) -> None:  # type: ignore[no-untyped-def]
    proc, notify, config = service
    notify.wait_for("READY", "1")
    log = config.parent / "daemon.log"
    original = config.read_text()

    config.write_text(
        original.replace('mode = "free"', 'mode = "list"').replace("max_current_a = 32", "max_current_a = 16")
    )
    proc.send_signal(signal.SIGHUP)
    notify.wait_for("RELOADING", "1")
    with SimRig.wait_for(config.parent / "var" / "sim.sock") as rig:
        rig.charge()
        time.sleep(0.5)
        assert rig.status()["transaction_id"] is None  # list mode now: a token is needed
        rig.swipe("04A1B2C3")
        charging = rig.wait_until(lambda s: s["contactor_closed"])
        assert charging["offered_a"] == pytest.approx(16.0, abs=0.1)

        config.write_text(original.replace("max_current_a = 32", "max_current_a = 'lots'"))
        proc.send_signal(signal.SIGHUP)
        wait_for_text(log, "keeping the running config")
        assert "evse 1: max_current_a" in log.read_text()
        assert rig.status()["contactor_closed"]  # the session goes on

        config.write_text(
            original.replace('mode = "free"', 'mode = "list"')
            .replace("max_current_a = 32", "max_current_a = 16")
            .replace("phases = 3", "phases = 1")
        )
        proc.send_signal(signal.SIGHUP)
        wait_for_text(log, "takes effect after a restart")
        assert "evse 1: phases" in log.read_text()
        assert rig.status()["contactor_closed"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    notify.collect(0.2)
    assert any(fields.get("STOPPING") == "1" for _, fields in notify.messages)
    reloads = [k for _, f in notify.messages for k in f if k in ("RELOADING", "READY")]
    assert reloads.count("RELOADING") == 3 and reloads.count("READY") == 4  # start + 3 reloads


def test_reload_plan_separates_live_keys_from_restart_keys(tmp_path: Path) -> None:
    path = tmp_path / "evse.toml"
    path.write_text(SIM_CONFIG.read_text())
    old = load(path)
    path.write_text(
        SIM_CONFIG.read_text()
        .replace('mode = "free"', 'mode = "list"')
        .replace("max_current_a = 32", "max_current_a = 20")
        .replace('id = "SIM001"', 'id = "SIM002"')
    )
    running, live, restart = plan(old, load(path))
    assert live == ["auth.mode", "evse 1: max_current_a"]
    assert restart == ["station.id"]
    assert running.auth["mode"] == "list" and running.evses[0].max_current_a == 20
    assert running.station["id"] == "SIM001"


def test_notifier_does_nothing_outside_systemd_and_reads_the_watchdog_interval(tmp_path: Path) -> None:
    assert not Notifier({}).send(READY="1")
    notify = NotifySocket(tmp_path / "n.sock")
    notifier = Notifier({"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "3000000"})
    assert notifier.watchdog_s == 3.0
    assert notifier.send(READY="1", STATUS="ok")
    notify.collect(0.2)
    assert notify.messages[0][1] == {"READY": "1", "STATUS": "ok"}
    notify.close()


def test_a_full_notify_queue_never_blocks_the_daemon(tmp_path: Path) -> None:
    path = tmp_path / "busy.sock"
    busy = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    busy.bind(str(path))  # bound but never read, like a systemd that is busy
    notifier = Notifier({"NOTIFY_SOCKET": str(path)})
    started = time.monotonic()
    results = [notifier.send(WATCHDOG="1") for _ in range(100)]
    assert time.monotonic() - started < 1.0
    assert results[0] and not results[-1]  # the overflow is dropped, not waited for
    busy.close()
    other = Notifier({"NOTIFY_SOCKET": "x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_s is None  # the watchdog is for another process


def test_journal_records_carry_the_structured_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("systemd.journal")
    sent: list[tuple[str, dict[str, str]]] = []
    handler = logs.JournalHandler()
    monkeypatch.setattr(handler, "_send", lambda message, **fields: sent.append((message, fields)))
    logger = logging.Logger("controller.test")
    logger.addHandler(handler)
    logger.warning(
        "EVSE %d: %s",
        1,
        "Faulted",
        extra={"evse_id": 1, "transaction_id": "tx-1", "ocpp_action": "StatusNotification"},
    )
    message, fields = sent[0]
    assert message == "EVSE 1: Faulted"
    assert fields["EVSE_ID"] == "1" and fields["TRANSACTION_ID"] == "tx-1"
    assert fields["OCPP_ACTION"] == "StatusNotification" and fields["PRIORITY"] == "4"
    assert fields["SYSLOG_IDENTIFIER"] == "evse"


def test_journald_is_detected_from_journal_stream(tmp_path: Path) -> None:
    info = os.fstat(sys.stderr.fileno())
    assert logs.under_journald({"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"})
    assert not logs.under_journald({"JOURNAL_STREAM": "1:2"})
    assert not logs.under_journald({})


def test_frame_log_is_size_capped_and_lists_its_files_oldest_first(tmp_path: Path) -> None:
    frames = logs.FrameLog(tmp_path / "ocpp-frames.log", max_bytes=2000, backups=3)
    for n in range(200):
        frames.record("out" if n % 2 else "in", f'[2,"{n}","Heartbeat",{{}}]')
    files = frames.files()
    assert len(files) == 4 and files[-1] == tmp_path / "ocpp-frames.log"
    assert all(f.stat().st_size <= 2000 for f in files)
    newest = files[-1].read_text().splitlines()[-1]
    assert newest.endswith('[2,"199","Heartbeat",{}]') and " > " in newest
    frames.close()
    again = logs.FrameLog(tmp_path / "ocpp-frames.log", max_bytes=2000, backups=3)
    again.record("in", '[3,"x",{}]')  # a restart appends to the live file
    assert again.files()[-1].read_text().splitlines()[-2].endswith('[2,"199","Heartbeat",{}]')
    again.close()


def test_a_frame_log_that_cannot_be_written_counts_what_it_lost(tmp_path: Path) -> None:
    frames = logs.FrameLog(tmp_path / "gone" / "ocpp-frames.log", max_bytes=2000, backups=3)
    frames.record("in", '[2,"1","Heartbeat",{}]')
    frames.record("out", '[3,"1",{}]')
    assert frames.dropped == 2
    (tmp_path / "gone").mkdir()
    frames.record("in", '[2,"2","Heartbeat",{}]')  # the disk came back
    assert frames.dropped == 2 and len(frames.files()) == 1
    frames.close()


def test_removing_ocpp_does_not_switch_authorization_live(tmp_path: Path) -> None:
    path = tmp_path / "evse.toml"
    no_mode = re.sub(r"(?m)^mode = .*\n", "", SIM_CONFIG.read_text())  # mode follows [ocpp]
    path.write_text(no_mode + '\n[ocpp]\nurl = "ws://127.0.0.1:9000/ocpp"\n')
    old = load(path)
    assert old.auth["mode"] == "ocpp"
    path.write_text(no_mode)  # no [ocpp]: the default would be free charging
    running, live, restart = plan(old, load(path))
    assert running.auth["mode"] == "ocpp" and "ocpp" in restart
    assert not any(key.startswith("auth.") for key in live)


def test_reload_names_keys_as_the_file_does(tmp_path: Path) -> None:
    path = tmp_path / "evse.toml"
    path.write_text(SIM_CONFIG.read_text())
    old = load(path)
    path.write_text(
        SIM_CONFIG.read_text().replace('dir = "var"', 'dir = "var2"') + "\n[control]\nsample_hz = 100\n"
    )
    _, _, restart = plan(old, load(path))
    assert "storage.dir" in restart and "control.sample_hz" in restart


def test_a_crashed_background_task_gets_the_daemon_restarted(tmp_path: Path) -> None:
    import asyncio

    from controller.daemon import Daemon

    path = tmp_path / "evse.toml"
    path.write_text(SIM_CONFIG.read_text())
    daemon = Daemon(load(path))

    async def scenario() -> int:
        run = asyncio.create_task(daemon.run())
        while not daemon.tasks:
            await asyncio.sleep(0.05)

        async def broken() -> None:
            raise ValueError("a bug in a meter driver")

        daemon.tasks.append(asyncio.create_task(broken(), name="meter 9"))
        return await asyncio.wait_for(run, 10)

    assert asyncio.run(scenario()) == 1
