"""ModbusMeter against a real pymodbus server: TCP on loopback, RTU over a socat pty pair."""

from __future__ import annotations

import asyncio
import math
import os
import re
import select
import shutil
import struct
import subprocess
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from drivers.base import DriverError, MeterReading
from drivers.meter_maps import METER_MAPS, Field
from drivers.modbus_meter import ModbusMeter, build_meter

MODELS = sorted(METER_MAPS)
UNIT = 7  # not the default 1, so a unit id that is not passed on shows
VOLTS = (230.1, 231.2, 229.8)
AMPS = (16.2, 16.1, 16.0)
WATTS = 11_100.0
ENERGY_WH = 12_345_600.0  # 12345.6 kWh
STRUCT = {"float32": ">f", "int32": ">i", "uint32": ">I", "uint64": ">Q"}


def run(coro: Coroutine[Any, Any, None], timeout: float = 10.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


def encode(value: float, field: Field, word_order: str) -> list[int]:
    """The register words a meter shows for an SI value, packed without pymodbus."""
    raw = value / field.scale
    data = struct.pack(STRUCT[field.encoding], raw if field.encoding == "float32" else round(raw))
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return words[::-1] if word_order == "little" else words


class FakeMeter:
    """A pymodbus server with one model's registers under one unit id."""

    def __init__(self, model: str, ignore_missing_devices: bool = False) -> None:
        self.map = METER_MAPS[model]
        full, tiny = ModbusSequentialDataBlock.create(), ModbusSequentialDataBlock(0, [0] * 8)
        # Like a real meter: only the register kind of its map exists.
        input_regs, holding = (tiny, full) if self.map.function == 3 else (full, tiny)
        self.device = ModbusDeviceContext(ir=input_regs, hr=holding)
        self.context = ModbusServerContext(devices={UNIT: self.device}, single=False)
        self.ignore_missing_devices = ignore_missing_devices
        self.server: ModbusTcpServer | ModbusSerialServer | None = None
        self.requests: list[tuple[int, int, int]] = []  # (function, address, count)
        self.mute = False  # receive requests, answer nothing
        self.short = False  # answer two registers fewer than asked
        self.set()

    def set(self, energy_wh: float = ENERGY_WH, volts: tuple[float, ...] = VOLTS) -> None:
        m = self.map
        for field, value in [
            *zip(m.voltage_v, volts[: m.phases], strict=True),
            *zip(m.current_a, AMPS[: m.phases], strict=True),
            (m.power_w, WATTS),
            (m.energy_wh, energy_wh),
        ]:
            self.put(field.address, encode(value, field, m.word_order))

    def put(self, address: int, words: list[int]) -> None:
        # setValues adds 1 to the address like getValues, which answers the reads: a value put
        # at 0-based address A is what a client reading address A gets.
        self.device.setValues(self.map.function, address, words)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        return b"" if sending and self.mute else data

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests.append((pdu.function_code, pdu.address, pdu.count))
        elif self.short and pdu.registers:
            pdu.registers = pdu.registers[:-2]
        return pdu

    async def start_tcp(self, port: int = 0) -> int:
        self.server = ModbusTcpServer(
            self.context,
            address=("127.0.0.1", port),
            ignore_missing_devices=self.ignore_missing_devices,
            trace_packet=self._trace_packet,
            trace_pdu=self._trace_pdu,
        )
        await self.server.serve_forever(background=True)
        bound: int = self.server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return bound

    async def start_rtu(self, port: str) -> None:
        self.server = ModbusSerialServer(
            self.context,
            framer=FramerType.RTU,
            port=port,
            baudrate=9600,
            ignore_missing_devices=self.ignore_missing_devices,
            trace_packet=self._trace_packet,
            trace_pdu=self._trace_pdu,
        )
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None


def tcp_meter(model: str, port: int, unit_id: int = UNIT, timeout_s: float = 0.5) -> ModbusMeter:
    options = {"model": model, "host": "127.0.0.1", "tcp_port": port, "unit_id": unit_id}
    return build_meter({**options, "timeout_s": timeout_s})


def assert_reading(reading: MeterReading, model: str, energy_wh: float = ENERGY_WH) -> None:
    phases = METER_MAPS[model].phases
    assert len(reading.voltage_v) == len(reading.current_a) == phases
    assert reading.voltage_v == pytest.approx(VOLTS[:phases], abs=0.01)
    assert reading.current_a == pytest.approx(AMPS[:phases], abs=0.001)
    assert reading.power_w == pytest.approx(WATTS, abs=0.1)
    assert reading.energy_wh == pytest.approx(energy_wh, abs=1.0)  # float32 kWh: ~1 Wh steps here


@pytest.fixture
def pty_pair() -> Iterator[tuple[str, str]]:
    """Two connected pseudo-terminals from socat, like the two ends of an RS-485 bus."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed")
    proc = subprocess.Popen(["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"], stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        log, deadline = b"", time.monotonic() + 5.0
        while b"starting data transfer loop" not in log:
            ready, _, _ = select.select([proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(proc.stderr.fileno(), 4096) if ready else b""
            if not chunk:
                raise RuntimeError(f"socat did not set up a pty pair: {log.decode(errors='replace')}")
            log += chunk
        first, second = re.findall(r"PTY is (\S+)", log.decode())
        yield first, second
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        proc.stderr.close()


# -- the maps ------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_blocks_cover_every_field_within_the_read_limit(model: str) -> None:
    meter_map = METER_MAPS[model]
    blocks = meter_map.blocks()
    assert all(b.count <= meter_map.max_read for b in blocks)
    for field in meter_map.fields():
        inside = [
            b
            for b in blocks
            if b.address <= field.address and field.address + field.size <= b.address + b.count
        ]
        assert len(inside) == 1, field


def test_sdm630_is_one_read_and_abb_two() -> None:
    assert [(b.address, b.count) for b in METER_MAPS["sdm630"].blocks()] == [(0x00, 0x4A)]
    assert [(b.address, b.count) for b in METER_MAPS["abb_b23"].blocks()] == [(0x5000, 4), (0x5B00, 22)]


def test_test_encoder_matches_datasheet_words() -> None:
    """Pins the encoder the other tests use to hand-computed register contents."""
    sdm, abb, em = METER_MAPS["sdm630"], METER_MAPS["abb_b23"], METER_MAPS["em340"]
    assert encode(230.1, sdm.voltage_v[0], "big") == [0x4366, 0x199A]
    assert encode(ENERGY_WH, sdm.energy_wh, "big") == [0x4640, 0xE666]
    assert encode(230.1, em.voltage_v[0], "little") == [0x08FD, 0x0000]  # 2301, low word first
    assert encode(ENERGY_WH, em.energy_wh, "little") == [0xE240, 0x0001]  # 123456 x 0.1 kWh
    assert encode(ENERGY_WH, abb.energy_wh, "big") == [0, 0, 0x0012, 0xD680]  # 1234560 x 0.01 kWh
    assert encode(-500.0, abb.power_w, "big") == [0xFFFF, 0x3CB0]  # -50000 x 0.01 W


# -- decoding, over TCP and RTU --------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_tcp_reads_every_model(model: str) -> None:
    async def scenario() -> None:
        fake = FakeMeter(model)
        meter: ModbusMeter | None = None
        try:
            meter = tcp_meter(model, await fake.start_tcp())
            assert_reading(await meter.read(), model)
            blocks = METER_MAPS[model].blocks()
            assert fake.requests == [(fake.map.function, b.address, b.count) for b in blocks]
        finally:
            if meter is not None:
                await meter.close()
            await fake.stop()

    run(scenario())


@pytest.mark.parametrize("model", MODELS)
def test_rtu_reads_every_model(model: str, pty_pair: tuple[str, str]) -> None:
    server_end, meter_end = pty_pair

    async def scenario() -> None:
        fake = FakeMeter(model)
        meter = build_meter(
            {"model": model, "port": meter_end, "baudrate": 9600, "unit_id": UNIT, "timeout_s": 1.0}
        )
        try:
            await fake.start_rtu(server_end)
            assert_reading(await meter.read(), model)
            assert_reading(await meter.read(), model)  # the open port is reused
        finally:
            await meter.close()
            await fake.stop()

    run(scenario())


def test_negative_power_is_kept_and_a_value_marked_invalid_is_an_error() -> None:
    async def scenario() -> None:
        fake = FakeMeter("abb_b23")
        meter = tcp_meter("abb_b23", await fake.start_tcp())
        try:
            fake.put(fake.map.power_w.address, encode(-500.0, fake.map.power_w, "big"))
            assert (await meter.read()).power_w == pytest.approx(-500.0)
            fake.put(fake.map.current_a[1].address, [0xFFFF, 0xFFFF])  # ABB: "no value"
            with pytest.raises(DriverError, match="register 0x5B0E holds no valid value"):
                await meter.read()
        finally:
            await meter.close()
            await fake.stop()

    run(scenario())


def test_nan_is_an_error_and_the_next_good_reading_works() -> None:
    async def scenario() -> None:
        fake = FakeMeter("sdm630")
        meter = tcp_meter("sdm630", await fake.start_tcp())
        try:
            fake.set(volts=(math.nan, *VOLTS[1:]))
            with pytest.raises(DriverError, match=r"register 0x0000 holds no valid value \(nan\)"):
                await meter.read()
            fake.set()
            assert_reading(await meter.read(), "sdm630")
        finally:
            await meter.close()
            await fake.stop()

    run(scenario())


# -- failures and recovery -------------------------------------------------------------


def test_server_down_then_back_recovers_without_a_new_meter() -> None:
    async def scenario() -> None:
        fake = FakeMeter("sdm630")
        port = await fake.start_tcp()
        meter = tcp_meter("sdm630", port)
        try:
            assert_reading(await meter.read(), "sdm630")
            await fake.stop()
            # The daemon's three failures before it reports a meter fault. The first may still
            # go out on the closing connection and time out; then connecting is refused.
            for _ in range(3):
                with pytest.raises(DriverError) as failed:
                    await meter.read()
                message = str(failed.value)
                assert f"sdm630 at 127.0.0.1:{port} unit id {UNIT}: " in message
                assert "check host" in message and "tcp_port" in message
            assert "cannot connect" in message
            await fake.start_tcp(port)
            assert_reading(await meter.read(), "sdm630")
        finally:
            await meter.close()
            await fake.stop()

    run(scenario())


def test_energy_going_backwards_is_never_reported() -> None:
    async def scenario() -> None:
        fake = FakeMeter("em340")
        meter = tcp_meter("em340", await fake.start_tcp())
        try:
            assert_reading(await meter.read(), "em340")
            for lower in (ENERGY_WH - 1000.0, ENERGY_WH - 100.0):  # both below the last good one
                fake.set(energy_wh=lower)
                with pytest.raises(DriverError, match="energy went backwards"):
                    await meter.read()
            fake.set(energy_wh=ENERGY_WH + 500.0)
            assert_reading(await meter.read(), "em340", energy_wh=ENERGY_WH + 500.0)
            fake.set(energy_wh=-100.0)
            with pytest.raises(DriverError, match="negative energy"):
                await meter.read()
        finally:
            await meter.close()
            await fake.stop()

    run(scenario())


def test_wrong_unit_id_over_tcp_names_it() -> None:
    async def scenario() -> None:
        fake = FakeMeter("sdm630")  # a gateway: answers "no response from target" (exception 11)
        meter = tcp_meter("sdm630", await fake.start_tcp(), unit_id=3)
        try:
            with pytest.raises(DriverError, match=r"unit id 3: exception 11 .*check unit_id"):
                await meter.read()
        finally:
            await meter.close()
            await fake.stop()

    run(scenario())


def test_wrong_unit_id_over_rtu_times_out_and_names_it(pty_pair: tuple[str, str]) -> None:
    server_end, meter_end = pty_pair

    async def scenario() -> None:
        fake = FakeMeter("sdm120", ignore_missing_devices=True)  # on a bus nobody answers
        meter = build_meter({"model": "sdm120", "port": meter_end, "unit_id": 3, "timeout_s": 0.3})
        try:
            await fake.start_rtu(server_end)
            with pytest.raises(DriverError) as failed:
                await meter.read()
            message = str(failed.value)
            assert f"sdm120 on {meter_end} (9600 8N1) unit id 3: no valid answer within 0.3 s" in message
            assert "wiring" in message and "baudrate" in message and "unit_id 3" in message
        finally:
            await meter.close()
            await fake.stop()

    run(scenario())


def test_wrong_model_gets_an_exception_response() -> None:
    async def scenario() -> None:
        fake = FakeMeter("sdm630")  # input registers only
        meter = tcp_meter("abb_b23", await fake.start_tcp())
        try:
            with pytest.raises(DriverError, match=r"exception 2 .*holding registers at 0x5000.*meter.model"):
                await meter.read()
        finally:
            await meter.close()
            await fake.stop()

    run(scenario())


def test_short_answer_is_an_error() -> None:
    async def scenario() -> None:
        fake = FakeMeter("sdm630")
        meter = tcp_meter("sdm630", await fake.start_tcp())
        try:
            fake.short = True
            with pytest.raises(DriverError, match="72 registers in answer to a read of 74"):
                await meter.read()
            fake.short = False
            assert_reading(await meter.read(), "sdm630")
        finally:
            await meter.close()
            await fake.stop()

    run(scenario())


def test_read_cancelled_by_the_daemons_timeout_leaves_the_meter_usable() -> None:
    async def scenario() -> None:
        fake = FakeMeter("sdm630")
        meter = tcp_meter("sdm630", await fake.start_tcp(), timeout_s=2.0)
        try:
            fake.mute = True
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(meter.read(), 0.2)
            fake.mute = False
            assert_reading(await meter.read(), "sdm630")
        finally:
            await meter.close()
            await fake.stop()

    run(scenario())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "sdm999", "host": "127.0.0.1"}, "meter.model: 'sdm999' is not one of"),
        ({"model": "sdm630"}, "exactly one of port"),
        ({"model": "sdm630", "host": "127.0.0.1", "port": "/dev/ttyUSB0"}, "exactly one of port"),
    ],
)
def test_build_meter_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(DriverError, match=message):
        build_meter(options)


def test_missing_serial_port_is_an_error() -> None:
    async def scenario() -> None:
        meter = build_meter({"model": "sdm630", "port": "/nonexistent/ttyUSB9", "timeout_s": 0.2})
        with pytest.raises(DriverError, match=r"/nonexistent/ttyUSB9 .*cannot open the serial port"):
            await meter.read()
        await meter.close()

    run(scenario())
