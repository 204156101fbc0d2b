"""The in-process bench itself: a whole 1.6 session on virtual time, in well under a second."""

from __future__ import annotations

import asyncio
import time

from tests.inproc import TOKEN, Bench, station


@station()
async def test_a_two_minute_session_runs_on_virtual_time(b: Bench) -> None:
    real = time.monotonic()
    boot = b.calls("BootNotification")
    assert boot and boot[0]["chargePointModel"] == "PiCharger-Sim"
    start = await b.charge()
    assert start["idTag"] == TOKEN
    await asyncio.sleep(120)
    b.sim.unplug()
    stop = await b.wait("StopTransaction")
    # 16 A on three phases of 230 V for two minutes: the simulated meter follows the virtual clock.
    assert 360 <= stop["meterStop"] <= 380
    assert stop["reason"] == "EVDisconnected"
    assert time.monotonic() - real < 10
