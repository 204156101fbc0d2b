"""Benchmark: pilot change -> contactor command latency of the control loop.

    python -m hil.loop_latency [--cycles 200] [--hz 50]

Runs the real control thread over simulated hardware in this process, once idle and
once while another thread keeps the interpreter busy (decoding and checking a
10,000-entry SendLocalList plus pure-Python work, as a flooded OCPP connection would). Each cycle
closes the contactor with the EV in C, then unplugs the EV and times how long the
contactor command takes. Prints one JSON object with the figures in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from controller.daemon import GIL_SWITCH_INTERVAL_S
from controller.ocpp.ocppj import Call, Codec
from controller.safety.control import ControlLoop, EvseChannel
from controller.safety.supervisor import Supervisor
from drivers.sim import SimBench, SimContactor, SimPilot


class TimedContactor(SimContactor):
    opened_at = 0.0

    def command(self, closed: bool) -> None:
        if not closed:
            self.opened_at = time.perf_counter()
        super().command(closed)


def percentile(values: list[float], fraction: float) -> float:
    """The value ``fraction`` of the way up the sorted values (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def busy(stop: threading.Event) -> None:
    """What a flooded 1.6 connection makes the event loop do: decode and check a
    10,000-entry SendLocalList, answer it, again and again."""
    entries = [{"idTag": f"{i:08X}", "idTagInfo": {"status": "Accepted"}} for i in range(10_000)]
    frame = json.dumps(
        [2, "1", "SendLocalList", {"listVersion": 1, "updateType": "Full", "localAuthorizationList": entries}]
    )
    codec = Codec("1.6")
    while not stop.is_set():
        call = codec.decode(frame)
        assert isinstance(call, Call)
        codec.validate_call(call)
        codec.result(call, {"status": "Accepted"})
        sum(i * i for i in range(20_000))


def measure(cycles: int, hz: int, loaded: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        bench = SimBench({1: 3}, Path(tmp) / "sim.json")
        sim = bench.evses[1]
        contactor = TimedContactor(sim)
        channel = EvseChannel(1, Supervisor(max_current_a=32), SimPilot(sim), contactor, None)
        channel.permit = (True, 32.0)
        loop = ControlLoop([channel], hz, lambda _id, _view: None)
        stop = threading.Event()
        load = threading.Thread(target=busy, args=(stop,), daemon=True)
        loop.start()
        if loaded:
            load.start()
        latencies: list[float] = []
        try:
            for _ in range(cycles):
                sim.set_ev(plugged=True, requesting=True)
                while not sim.contactor_closed:
                    time.sleep(0.001)
                time.sleep(random.uniform(0.005, 0.025))  # any phase against the loop's ticks
                changed = time.perf_counter()
                sim.set_ev(plugged=False, requesting=False)
                while sim.contactor_closed:
                    time.sleep(0.0005)
                latencies.append((contactor.opened_at - changed) * 1000)
        finally:
            stop.set()
            loop.stop()
    latencies.sort()
    return {
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(latencies[-1], 1),
        "late_ticks": loop.stats.late_ticks,
        "ticks": loop.stats.ticks,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--hz", type=int, default=50)
    args = parser.parse_args()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    result = {
        "sample_hz": args.hz,
        "cycles": args.cycles,
        "idle": measure(args.cycles, args.hz, loaded=False),
        "loaded": measure(args.cycles, args.hz, loaded=True),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
