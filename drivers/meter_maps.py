"""Register maps of the supported Modbus energy meters, as data: one table per model.

Addresses are 0-based protocol addresses (register 30001 of a datasheet is address 0).
``scale`` turns a raw value into V, A, W or Wh: kWh registers carry 1000 times their
resolution. Which registers are fetched together follows from the addresses and the
device's read limit (``MeterMap.blocks``); no model is special-cased in code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Encoding = Literal["float32", "int32", "uint32", "uint64"]
WordOrder = Literal["big", "little"]  # "big": high word first

READ_HOLDING: Final = 3
READ_INPUT: Final = 4
REGISTERS = {"float32": 2, "int32": 2, "uint32": 2, "uint64": 4}


@dataclass(frozen=True, slots=True)
class Field:
    address: int
    encoding: Encoding
    scale: float = 1.0  # SI value = raw value * scale

    @property
    def size(self) -> int:
        return REGISTERS[self.encoding]


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` registers from ``address``."""

    address: int
    count: int


@dataclass(frozen=True, slots=True)
class MeterMap:
    function: Literal[3, 4]
    word_order: WordOrder
    max_read: int  # registers the device returns in one request
    voltage_v: tuple[Field, ...]  # one per phase
    current_a: tuple[Field, ...]  # one per phase
    power_w: Field  # total active power
    energy_wh: Field  # total import active energy
    # The device marks "no value" with the largest raw value: all ones unsigned, 0x7F.. signed.
    max_is_invalid: bool = False

    @property
    def phases(self) -> int:
        return len(self.voltage_v)

    def fields(self) -> tuple[Field, ...]:
        return (*self.voltage_v, *self.current_a, self.power_w, self.energy_wh)

    def blocks(self) -> tuple[Block, ...]:
        """The fewest contiguous reads of at most ``max_read`` registers covering every field."""
        blocks: list[Block] = []
        for field in sorted(self.fields(), key=lambda f: f.address):
            end = field.address + field.size
            if blocks and end - blocks[-1].address <= self.max_read:
                last = blocks[-1]
                blocks[-1] = Block(last.address, max(last.count, end - last.address))
            else:
                blocks.append(Block(field.address, field.size))
        return tuple(blocks)


def _each(encoding: Encoding, scale: float, *addresses: int) -> tuple[Field, ...]:
    return tuple(Field(a, encoding, scale) for a in addresses)


# Eastron SDM630 Modbus protocol, input registers (3X), IEEE 754 float, high word first.
# "Each request for data must be restricted to 40 parameters or less" (80 registers).
SDM630 = MeterMap(
    function=READ_INPUT,
    word_order="big",
    max_read=80,
    voltage_v=_each("float32", 1.0, 0x00, 0x02, 0x04),
    current_a=_each("float32", 1.0, 0x06, 0x08, 0x0A),
    power_w=Field(0x34, "float32"),
    energy_wh=Field(0x48, "float32", 1000.0),
)

# SDM72D-M v2: the SDM630 layout for these registers; its manual limits a request to
# 30 parameters (60 registers).
SDM72D = MeterMap(
    function=READ_INPUT,
    word_order="big",
    max_read=60,
    voltage_v=SDM630.voltage_v,
    current_a=SDM630.current_a,
    power_w=SDM630.power_w,
    energy_wh=SDM630.energy_wh,
)

# Single phase: 0x0C is its (only) active power.
SDM120 = MeterMap(
    function=READ_INPUT,
    word_order="big",
    max_read=80,
    voltage_v=_each("float32", 1.0, 0x00),
    current_a=_each("float32", 1.0, 0x06),
    power_w=Field(0x0C, "float32"),
    energy_wh=Field(0x48, "float32", 1000.0),
)

# ABB B23/B24 Modbus mapping (2CMC485003M0201), holding registers, high word first.
# Energy 0.01 kWh = 10 Wh. 125 is the protocol limit; our reads are far below it.
ABB_B23 = MeterMap(
    function=READ_HOLDING,
    word_order="big",
    max_read=125,
    voltage_v=_each("uint32", 0.1, 0x5B00, 0x5B02, 0x5B04),
    current_a=_each("uint32", 0.01, 0x5B0C, 0x5B0E, 0x5B10),
    power_w=Field(0x5B14, "int32", 0.01),
    energy_wh=Field(0x5000, "uint64", 10.0),
    max_is_invalid=True,
)

# Carlo Gavazzi EM340 communication protocol, input registers, INT32 low word first.
# Energy 0.1 kWh = 100 Wh. The EM300 series answers at most 50 registers a request.
EM340 = MeterMap(
    function=READ_INPUT,
    word_order="little",
    max_read=50,
    voltage_v=_each("int32", 0.1, 0x00, 0x02, 0x04),
    current_a=_each("int32", 0.001, 0x0C, 0x0E, 0x10),
    power_w=Field(0x28, "int32", 0.1),
    energy_wh=Field(0x34, "int32", 100.0),
)

METER_MAPS: dict[str, MeterMap] = {
    "sdm630": SDM630,
    "sdm120": SDM120,
    "sdm72d": SDM72D,
    "abb_b23": ABB_B23,
    "em340": EM340,
}
