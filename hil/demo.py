"""A scripted charging session on simulated hardware that you can watch.

    python -m hil.demo [--config config/evse.ocpp.toml]     (OCPP 1.6J)
    python -m hil.demo --config config/evse.ocpp201.toml    (OCPP 2.0.1)

Starts the bundled development CSMS, then ``evse run`` as a subprocess (as on a charger)
connected to it, and plays the EV side over the rig socket: plug in, swipe a card,
charge with meter values, a charging limit from the CSMS, a pause, unplug, and a
residual-current trip. It prints the station's live state, the CSMS's timeline of OCPP
messages (``CP001 -> ...`` from the station, ``<-`` from the CSMS) and, indented, the
daemon's own log lines. A config without ``[ocpp]`` runs standalone.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from controller.config import ConfigError, load
from hil.csms import CsmsThread
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


TOKEN = "04A1B2C3"
LIMIT_10A = {
    "connectorId": 1,
    "csChargingProfiles": {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}],
        },
    },
}


# The same limit in 2.0.1 words.
LIMIT_10A_201 = {
    "evseId": 1,
    "chargingProfile": {
        "id": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": [
            {"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}]}
        ],
    },
}
SAMPLE_EVERY_2S_201 = {
    "setVariableData": [
        {
            "component": {"name": "SampledDataCtrlr"},
            "variable": {"name": "TxUpdatedInterval"},
            "attributeValue": "2",
        }
    ]
}


def _with_csms(path: Path, url: str, work: Path) -> Path:
    """A copy of the config in ``work`` pointing at the CSMS, with fresh state."""
    text = path.read_text()
    lines = [f'url = "{url}"' if line.strip().startswith("url =") else line for line in text.splitlines()]
    copy = work / path.name
    copy.write_text("\n".join(lines) + "\n")
    return copy


def ocpp_steps(rig: SimRig, csms: CsmsThread, version: str) -> list[tuple[str, Callable[[], Any], float]]:
    def plug_and_swipe() -> None:
        rig.plug()
        rig.swipe(TOKEN)

    def call(action: str, payload: dict[str, Any]) -> Callable[[], Any]:
        return lambda: say(f"CSMS script: {action} -> {csms.call('CP001', action, payload)}")

    v201 = version == "2.0.1"
    sample_every_2s = (
        call("SetVariables", SAMPLE_EVERY_2S_201)
        if v201
        else call("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "2"})
    )
    limit = call("SetChargingProfile", LIMIT_10A_201 if v201 else LIMIT_10A)
    start = "TransactionEvent Started once the contactor closes" if v201 else "StartTransaction"
    stop = "TransactionEvent Ended" if v201 else "StopTransaction"
    return [
        ("the CSMS asks for meter values every 2 s", sample_every_2s, 1),
        ("EV plugged in (state B): connector Preparing", lambda: rig.plug(), 2),
        (f"card {TOKEN} swiped: Authorize, then {start}", lambda: rig.swipe(TOKEN), 2),
        (
            "EV asks for energy (state C), takes up to 16 A on 3 phases",
            lambda: rig.charge(max_current_a=16, phases=3),
            6,
        ),
        (
            "the CSMS limits the station to 10 A (SetChargingProfile)",
            limit,
            8,
        ),
        ("EV pauses (C -> B): contactor opens within 100 ms", lambda: rig.suspend(), 2),
        ("EV resumes", lambda: rig.charge(max_current_a=16, phases=3), 3),
        (f"EV unplugged: {stop} (EVDisconnected)", lambda: rig.unplug(), 3),
        ("EV plugged in again and the card swiped", plug_and_swipe, 2),
        ("charging", lambda: rig.charge(max_current_a=32), 3),
        (
            "the residual-current sensor trips: Faulted (GroundFailure; 2.0.1 NotifyEvent RCD.Tripped), "
            "latched until restart",
            lambda: rig.fault("rcd"),
            3,
        ),
    ]


def standalone_steps(rig: SimRig) -> list[tuple[str, Callable[[], Any], float]]:
    return [
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
        ("the residual-current sensor trips: latched until restart", lambda: rig.fault("rcd"), 2),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "evse.ocpp.toml")
    args = parser.parse_args()
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 78
    wanted = config.ocpp["version"] if config.ocpp else "1.6"
    versions = ("2.0.1", "1.6") if wanted == "auto" else (wanted,)
    work = Path(tempfile.mkdtemp(prefix="evse-demo-"))
    csms: CsmsThread | None = None
    try:
        if "[ocpp]" in args.config.read_text():
            csms = CsmsThread(out=sys.stdout, versions=versions)
            csms.start()
            say(f"development CSMS listening on {csms.url}")
            args.config = _with_csms(args.config, csms.url, work)
        else:
            shutil.copy(args.config, work / args.config.name)
            args.config = work / args.config.name
        return run(args.config, csms)
    finally:
        if csms is not None:
            csms.stop()
        shutil.rmtree(work, ignore_errors=True)


def run(path: Path, csms: CsmsThread | None) -> int:
    config = load(path)
    assert config.sim_socket is not None
    say(f"starting evse run --config {path}")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "controller", "run", "--config", str(path)],
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert daemon.stderr is not None
    threading.Thread(target=relay, args=(daemon.stderr,), daemon=True).start()
    try:
        rig = SimRig.wait_for(config.sim_socket)
        if csms is not None:
            csms.wait_station("CP001", timeout=15)
            time.sleep(1)
        version = csms.csms.stations["CP001"].version if csms is not None else ""
        steps = ocpp_steps(rig, csms, version) if csms is not None else standalone_steps(rig)
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
            "SELECT id, csms_id, started_at, meter_stop_wh - meter_start_wh, stop_reason "
            "FROM transactions ORDER BY rowid DESC LIMIT 3"
        ).fetchall()
    say("last transactions in the station's database:")
    for tx_id, csms_id, started, energy, reason in reversed(rows):
        known = f" (CSMS id {csms_id})" if csms_id else ""
        print(f"          {tx_id[:8]}{known}  {started}  {energy or 0:8.1f} Wh  {reason}")
    if csms is not None:
        say("transactions as the CSMS saw them:")
        for number, tx in csms.transactions.items():
            stop = tx["stop"] or {}
            print(
                f"          {number}: idTag {tx['start']['idTag']} meterStart {tx['start']['meterStart']} "
                f"meterStop {stop.get('meterStop')} reason {stop.get('reason')} stops {tx['stop_count']}"
            )
        for tx_id, tx in csms.transactions201.items():
            ended = (tx["ended"] or {}).get("transactionInfo", {})
            seqs = [e["seqNo"] for e in tx["events"]]
            print(
                f"          {tx_id[:8]}: {len(tx['events'])} events, seqNo {seqs[0]}..{seqs[-1]}, "
                f"stoppedReason {ended.get('stoppedReason')}, Ended {tx['ended_count']}x"
            )
    return code


if __name__ == "__main__":
    sys.exit(main())
