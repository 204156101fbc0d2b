"""A scripted charging session on simulated hardware that you can watch.

    python -m hil.demo [--config config/evse.sim.toml]

Starts ``evse run`` as a subprocess (as on a charger), then plays the EV side over the
rig socket: plug in, charge, suspend, a pilot short, unplug, and a residual-current
trip, printing the station's live state as it changes. The daemon's own log lines are
shown indented.
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from controller.config import ConfigError, load
from hil.simrig import SimRig

ROOT = Path(__file__).resolve().parent.parent
START = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - START:5.1f}s] {text}", flush=True)


def show(status: dict[str, Any]) -> str:
    offer = f"PWM {status['duty_percent']:.1f}% = {status['offered_a']:.0f} A" if status["pwm"] else "no PWM"
    contactor = "CLOSED" if status["contactor_closed"] else "open"
    tx = status["transaction_id"]
    return (
        f"pilot {status['cp_state']}  {offer:<20} contactor {contactor:<6} "
        f"{status['power_w']:>7.0f} W {status['energy_wh']:>9.1f} Wh  {status['connector_status']:<13}"
        f"{' tx ' + tx[:8] if tx else ''}"
    )


def watch(rig: SimRig, seconds: float) -> None:
    last = ""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        line = show(rig.status())
        if line != last:
            say("  " + line)
            last = line
        time.sleep(0.1)


def relay(stream: IO[bytes]) -> None:
    for raw in stream:
        print(f"          | {raw.decode(errors='replace').rstrip()}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "evse.sim.toml")
    args = parser.parse_args()
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 78
    assert config.sim_socket is not None
    say(f"starting evse run --config {args.config}")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "controller", "run", "--config", str(args.config)],
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert daemon.stderr is not None
    threading.Thread(target=relay, args=(daemon.stderr,), daemon=True).start()
    try:
        rig = SimRig.wait_for(config.sim_socket)
        steps: list[tuple[str, Any, float]] = [
            ("EV plugged in (state B): a free-mode session starts", lambda: rig.plug(), 2),
            (
                "EV asks for energy (state C), takes up to 16 A on 3 phases",
                lambda: rig.charge(max_current_a=16, phases=3),
                6,
            ),
            ("EV pauses (C -> B): contactor opens within 100 ms", lambda: rig.suspend(), 2),
            ("EV resumes", lambda: rig.charge(max_current_a=16, phases=3), 3),
            ("pilot shorted (state E): contactor opens, no PWM", lambda: rig.cp("E"), 2),
            ("short removed", lambda: rig.cp(None), 3),
            ("EV unplugged: transaction ends", lambda: rig.unplug(), 2),
            ("EV plugged in again, charging at up to 32 A", lambda: rig.charge(max_current_a=32), 3),
            ("the residual-current sensor trips: latched until restart", lambda: rig.fault("rcd"), 2),
        ]
        for text, action, seconds in steps:
            say(f"rig: {text}")
            action()
            watch(rig, seconds)
        rig.close()
    finally:
        say("stopping the daemon (SIGTERM): contactors open, transactions end")
        daemon.terminate()
        code = daemon.wait(timeout=10)
    say(f"daemon exited with {code}")
    with sqlite3.connect(config.storage_dir / "evse.db") as db:
        rows = db.execute(
            "SELECT id, started_at, meter_stop_wh - meter_start_wh, stop_reason "
            "FROM transactions ORDER BY rowid DESC LIMIT 3"
        ).fetchall()
    say("last transactions in the database:")
    for tx_id, started, energy, reason in reversed(rows):
        print(f"          {tx_id[:8]}  {started}  {energy or 0:8.1f} Wh  {reason}")
    return code


if __name__ == "__main__":
    sys.exit(main())
