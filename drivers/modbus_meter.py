"""Modbus energy meters (RTU over a serial port, or TCP) read through pymodbus.

One ``read()`` fetches the blocks of the model's register map, decodes and scales them.
The connection is opened on the first read and dropped after any failure, so the next
read reconnects: a meter that comes back recovers without a new ``ModbusMeter``. Every
failure is a ``DriverError`` that names the meter and says what to check.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException

from drivers.base import DriverError, MeterReading
from drivers.meter_maps import METER_MAPS, READ_HOLDING, Block, Field

Client = AsyncModbusSerialClient | AsyncModbusTcpClient
DATATYPES = {
    "float32": AsyncModbusTcpClient.DATATYPE.FLOAT32,
    "int32": AsyncModbusTcpClient.DATATYPE.INT32,
    "uint32": AsyncModbusTcpClient.DATATYPE.UINT32,
    "uint64": AsyncModbusTcpClient.DATATYPE.UINT64,
}
INVALID_RAW = {"int32": 0x7FFF_FFFF, "uint32": 0xFFFF_FFFF, "uint64": 0xFFFF_FFFF_FFFF_FFFF}
EXCEPTION_HINTS = {
    1: "the meter does not know this function: check meter.model",
    2: "the meter does not have these registers: check meter.model",
    3: "the meter refused the request: check meter.model",
    10: "the gateway has no path to the meter: check the gateway's serial settings",
    11: "the gateway got no answer from this unit id: check unit_id and the wiring behind the gateway",
}


class ModbusMeter:
    def __init__(
        self,
        model: str,
        *,
        port: str = "",
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        host: str = "",
        tcp_port: int = 502,
        unit_id: int = 1,
        timeout_s: float = 1.0,
    ) -> None:
        if model not in METER_MAPS:
            raise DriverError(f"meter.model: {model!r} is not one of {', '.join(METER_MAPS)}")
        if bool(port) == bool(host):
            raise DriverError("meter: set exactly one of port (RTU) or host (TCP)")
        self.model = model
        self.map = METER_MAPS[model]
        self.blocks = self.map.blocks()
        self.port, self.baudrate, self.parity, self.stopbits = port, baudrate, parity, stopbits
        self.host, self.tcp_port = host, tcp_port
        self.unit_id, self.timeout_s = unit_id, timeout_s
        self._client: Client | None = None
        self._last_energy_wh: float | None = None
        if port:
            self.where = f"meter {model} on {port} ({baudrate} 8{parity}{stopbits}) unit id {unit_id}"
            self.check = f"check the RS-485 wiring (A/B, termination), baudrate, parity and unit_id {unit_id}"
        else:
            self.where = f"meter {model} at {host}:{tcp_port} unit id {unit_id}"
            self.check = f"check host, tcp_port, the network and unit_id {unit_id}"

    async def read(self) -> MeterReading:
        registers = await self._fetch()
        value = {f: self._decode(f, registers) for f in self.map.fields()}
        energy = value[self.map.energy_wh]
        if energy < 0:
            raise DriverError(f"{self.where}: negative energy {energy} Wh: check meter.model")
        if self._last_energy_wh is not None and energy < self._last_energy_wh:
            raise DriverError(
                f"{self.where}: energy went backwards from {self._last_energy_wh} Wh to {energy} Wh; "
                "ignoring the reading: a meter fault, or the meter was replaced or reset"
            )
        self._last_energy_wh = energy
        return MeterReading(
            energy_wh=energy,
            power_w=value[self.map.power_w],
            current_a=tuple(value[f] for f in self.map.current_a),
            voltage_v=tuple(value[f] for f in self.map.voltage_v),
        )

    async def close(self) -> None:
        self._drop()

    # ---------------------------------------------------------------------------------

    async def _fetch(self) -> dict[int, int]:
        """Every register of every block, by address; any failure drops the connection."""
        try:
            client = await self._connected()
            registers: dict[int, int] = {}
            for block in self.blocks:
                registers.update(enumerate(await self._read_block(client, block), block.address))
            return registers
        except (ModbusException, OSError) as exc:
            self._drop()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # pymodbus turns the cancellation of a pending request into ModbusIOException
                raise asyncio.CancelledError from exc
            if isinstance(exc, ModbusIOException):
                detail = f"no valid answer within {self.timeout_s} s"
            else:
                detail = str(exc)
            raise DriverError(f"{self.where}: {detail}: {self.check}") from exc
        except BaseException:  # a DriverError for a bad answer, or a cancellation
            self._drop()
            raise

    async def _connected(self) -> Client:
        if self._client is not None and self._client.connected:
            return self._client
        self._drop()
        client: Client
        # retries=0: the daemon polls again; reconnect_delay=0: we reconnect on the next read
        if self.port:
            client = AsyncModbusSerialClient(
                self.port,
                baudrate=self.baudrate,
                parity=self.parity,
                stopbits=self.stopbits,
                timeout=self.timeout_s,
                retries=0,
                reconnect_delay=0,
            )
        else:
            client = AsyncModbusTcpClient(
                self.host, port=self.tcp_port, timeout=self.timeout_s, retries=0, reconnect_delay=0
            )
        self._client = client
        if not await client.connect():  # pymodbus logs the reason as a warning
            if self.port:
                why = "cannot open the serial port: check the RS-485 adapter is plugged in and meter.port"
            else:
                why = "cannot connect: check host and tcp_port, and that the meter or gateway is reachable"
            raise DriverError(f"{self.where}: {why}")
        return client

    async def _read_block(self, client: Client, block: Block) -> list[int]:
        if self.map.function == READ_HOLDING:
            kind = "holding"
            response = await client.read_holding_registers(
                block.address, count=block.count, device_id=self.unit_id
            )
        else:
            kind = "input"
            response = await client.read_input_registers(
                block.address, count=block.count, device_id=self.unit_id
            )
        what = f"read of {block.count} {kind} registers at 0x{block.address:04X}"
        if response.isError():
            code = response.exception_code
            hint = EXCEPTION_HINTS.get(code, "the meter reports a failure")
            raise DriverError(f"{self.where}: exception {code} to a {what}: {hint}")
        if len(response.registers) != block.count:
            raise DriverError(
                f"{self.where}: {len(response.registers)} registers in answer to a {what}: {self.check}"
            )
        return response.registers

    def _decode(self, field: Field, registers: dict[int, int]) -> float:
        words = [registers[a] for a in range(field.address, field.address + field.size)]
        raw = AsyncModbusTcpClient.convert_from_registers(
            words, DATATYPES[field.encoding], word_order=self.map.word_order
        )
        assert isinstance(raw, int | float)
        invalid = self.map.max_is_invalid and raw == INVALID_RAW.get(field.encoding)
        if invalid or not math.isfinite(raw):
            raise DriverError(
                f"{self.where}: register 0x{field.address:04X} holds no valid value ({raw}): "
                "check meter.model and the meter's display"
            )
        return raw * field.scale

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def build_meter(options: Mapping[str, Any]) -> ModbusMeter:
    """A meter from the options of a ``meter = { driver = "modbus", ... }`` config table."""
    return ModbusMeter(
        options.get("model", ""),
        port=options.get("port", ""),
        baudrate=options.get("baudrate", 9600),
        parity=options.get("parity", "N"),
        stopbits=options.get("stopbits", 1),
        host=options.get("host", ""),
        tcp_port=options.get("tcp_port", 502),
        unit_id=options.get("unit_id", 1),
        timeout_s=options.get("timeout_s", 1.0),
    )
