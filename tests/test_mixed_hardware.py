"""The daemon with a real Modbus TCP meter and an RDM6300 reader on a pty, pilot and
contactor simulated: a swipe starts a session and `evse status` shows the meter."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.rfid_frames import rdm6300_frame
from tests.test_end_to_end import ROOT, SIM_CONFIG, start, stop
from tests.test_modbus_meter import ENERGY_WH, UNIT, WATTS, FakeMeter

CARD = "0A1B2C3D4E"  # RDM6300: version byte + 4-byte tag, as the reader sends it


@pytest.fixture
def meter_port() -> Iterator[int]:
    """A pymodbus TCP server holding an SDM630's registers, on its own event loop."""
    meter = FakeMeter("sdm630")
    loop = asyncio.new_event_loop()
    port = loop.run_until_complete(meter.start_tcp())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield port
    asyncio.run_coroutine_threadsafe(meter.stop(), loop).result(timeout=5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()


@pytest.fixture
def reader_pty() -> Iterator[tuple[int, str]]:
    """The reader's end (master) and the serial port the daemon opens (slave path)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_a_swipe_starts_a_session_and_status_shows_the_meter(
    tmp_path: Path, meter_port: int, reader_pty: tuple[int, str]
) -> None:
    master, port = reader_pty
    text = re.sub(r"(?m)^mode = .*$", 'mode = "list"', SIM_CONFIG.read_text())
    text = text.replace('allow = ["04A1B2C3"]', f'allow = ["{CARD}"]')
    text = text.replace('[rfid]\ndriver = "sim"', f'[rfid]\ndriver = "rdm6300"\nport = "{port}"')
    text = text.replace(
        'meter = { driver = "sim" }',
        'meter = { driver = "modbus", model = "sdm630", '
        f'host = "127.0.0.1", tcp_port = {meter_port}, unit_id = {UNIT} }}',
    )
    assert 'driver = "rdm6300"' in text and 'driver = "modbus"' in text
    config = tmp_path / "evse.toml"
    config.write_text(text)

    station = start(config)
    try:
        station.rig.charge(max_current_a=16)
        station.rig.wait_until(lambda s: s["pwm"] is False and s["cp_state"] == "C" and s["power_w"] > 0)
        assert station.rig.status()["transaction_id"] is None  # list mode: waits for a card

        os.write(master, rdm6300_frame(CARD))
        charging = station.rig.wait_until(lambda s: s["contactor_closed"] and s["transaction_id"], timeout=5)
        assert station.db("SELECT id_tag FROM transactions") == [(CARD,)]

        result = subprocess.run(
            [sys.executable, "-m", "controller", "status", "--config", str(config), "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stderr
        (evse,) = json.loads(result.stdout)["evses"]
        assert evse["transaction_id"] == charging["transaction_id"]
        assert evse["power_w"] == pytest.approx(WATTS, abs=1)
        assert evse["energy_wh"] == pytest.approx(ENERGY_WH, abs=1)
        assert evse["connector_status"] == "Charging"
    finally:
        assert stop(station) == 0
