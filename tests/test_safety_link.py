"""The OCPP process's side of the safety channel, without a safety process: datagrams in,
what the station is told out."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from types import SimpleNamespace

from controller.config import load
from controller.runtime.safety_link import SafetyLink
from controller.safety import wire
from controller.safety.pilot import CpState, PilotMode
from controller.safety.spawn import SafetyChild
from controller.safety.view import EvseView

SIM_CONFIG = Path(__file__).resolve().parent.parent / "config" / "evse.sim.toml"


def link_and_peer() -> tuple[SafetyLink, socket.socket]:
    ours, theirs = wire.pair()
    theirs.setblocking(False)
    child = SafetyChild(pid=0, sock=ours, started_at=time.monotonic())
    return SafetyLink(child, load(SIM_CONFIG)), theirs


def view(cp: CpState, closed: bool = False) -> EvseView:
    return EvseView(cp, PilotMode.PWM, 53.3, 32.0, closed, frozenset())


def view_message(v: EvseView, departures: int) -> dict[str, object]:
    return {
        "t": "view",
        "evse": 1,
        "view": v.to_wire(),
        "lock": [False, False],
        "test": "idle",
        "ticks": 1,
        "departures": departures,
    }


def test_a_departure_the_views_never_showed_is_told_to_the_station_first() -> None:
    """Views lost while the OCPP process was stopped: the count of departures says the EV
    left, so the station hears of an A before the new EV's state, and the permit it then
    sends carries the new count (the safety process ignores one with an old count)."""
    link, peer = link_and_peer()
    seen: list[tuple[int, CpState]] = []

    async def run() -> None:
        report = SimpleNamespace(ocpp_fields=lambda _evse: {}, link=lambda: {})
        await link.start(lambda evse, v: seen.append((evse, v.cp)), report)  # type: ignore[arg-type]
        link._handle(view_message(view(CpState.C, closed=True), departures=0))
        link._handle(view_message(view(CpState.B), departures=1))

    asyncio.run(run())
    assert seen == [(1, CpState.C), (1, CpState.A), (1, CpState.B)]
    sent = [wire.decode(d) for d in wire.drain(peer)[0]]
    assert [m["departures"] for m in sent if m and m["t"] == "evse"][-1] == 1


def test_synced_goes_only_after_every_input_was_sent() -> None:
    link, peer = link_and_peer()
    link._handle({"t": "resync"})
    kinds = [m["t"] for m in (wire.decode(d) for d in wire.drain(peer)[0]) if m]
    assert kinds[-1] == "synced" and kinds.count("evse") == 1
