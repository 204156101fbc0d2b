"""What crosses into the control thread: the hardware cap a reload changes reaches the
supervisor only through the thread's own next tick, as permits do; maintenance's
contactor test goes through the same loop."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from controller.config import load
from controller.daemon import Daemon
from controller.safety.control import ControlLoop, EvseChannel
from controller.safety.pilot import CpState, PilotMode, duty_for_current
from controller.safety.supervisor import ContactorTest, Supervisor
from drivers.sim import SimContactor, SimPilot
from tests.test_control_loop import charge, running, sim_evse, wait
from tests.test_end_to_end import SIM_CONFIG

ROOT = Path(__file__).resolve().parent.parent


class WatchedSupervisor(Supervisor):
    """Records the thread that sets its hardware cap."""

    writers: list[str]

    def __setattr__(self, name: str, value: object) -> None:
        if name == "max_current_a":
            self.__dict__.setdefault("writers", []).append(threading.current_thread().name)
        super().__setattr__(name, value)


def test_a_new_cap_reaches_the_supervisor_at_the_next_tick(tmp_path: Path) -> None:
    sim = sim_evse(tmp_path)
    sup = Supervisor(max_current_a=32)
    channel = EvseChannel(1, sup, SimPilot(sim), SimContactor(sim), None)
    channel.permit = (True, 32.0)
    sim.set_ev(plugged=True, requesting=False)
    now = 0.0
    for _ in range(3):
        now += 0.01
        view = channel.tick(now)
    assert view.pilot is PilotMode.PWM and view.duty_percent == duty_for_current(32.0)
    channel.max_current_a = 10.0  # what a reload writes, from the event loop
    assert sup.max_current_a == 32.0  # nothing changed outside the control thread's tick
    now += 6.0  # past the 5 s between duty changes
    assert channel.tick(now).duty_percent == duty_for_current(10.0) and sup.max_current_a == 10.0


def test_reload_leaves_the_supervisor_to_the_control_thread(tmp_path: Path) -> None:
    path = tmp_path / "evse.toml"
    path.write_text(SIM_CONFIG.read_text().replace('dir = "var"', f'dir = "{tmp_path}"'))
    daemon = Daemon(load(path))
    channel = daemon.open().hardware.channels[1]
    sup = WatchedSupervisor(max_current_a=32)
    channel.supervisor = sup
    sup.writers = []
    path.write_text(path.read_text().replace("max_current_a = 32", "max_current_a = 16"))
    daemon.reload()  # as the SIGHUP handler calls it, on the event loop's thread
    assert channel.max_current_a == 16.0
    assert sup.max_current_a == 32.0 and sup.writers == []
    loop = ControlLoop([channel], 100, lambda _id, _view: None)
    loop.start()
    try:
        wait(lambda: sup.max_current_a == 16.0)
    finally:
        loop.stop()
    assert set(sup.writers) == {loop.name}


def test_a_contactor_test_runs_in_the_control_loop_with_no_ev(tmp_path: Path) -> None:
    sim = sim_evse(tmp_path)
    sup = Supervisor(max_current_a=32, feedback_timeout_s=0.05)
    channel = EvseChannel(1, sup, SimPilot(sim), SimContactor(sim), None)
    loop = ControlLoop([channel], 100, lambda _id, _view: None)
    loop.start()
    try:
        channel.test_contactor = True
        wait(lambda: channel.contactor_test is ContactorTest.PASSED)
        assert not sim.contactor_closed
    finally:
        loop.stop()


def test_a_contactor_test_is_refused_while_an_ev_charges(tmp_path: Path) -> None:
    sim = sim_evse(tmp_path)
    channel = EvseChannel(1, Supervisor(max_current_a=32), SimPilot(sim), SimContactor(sim), None)
    loop = running(channel)
    try:
        charge(sim)
        channel.test_contactor = True
        wait(lambda: channel.contactor_test is ContactorTest.REFUSED)
        assert sim.contactor_closed and channel.view is not None and channel.view.cp is CpState.C
    finally:
        loop.stop()


def test_only_the_control_loop_commands_contactors() -> None:
    sources = [
        p for d in ("controller", "drivers") for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts
    ]
    commanders = {
        str(p.relative_to(ROOT))
        for p in sources
        if re.search(r"contactor\.command\(|partial\(self\.contactor\.command", p.read_text())
    }
    assert commanders == {"controller/safety/control.py"}
