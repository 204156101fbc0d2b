"""The bench rig on gpiozero's mock pins: each rig action switches the right relays.

The ADS1115 is the fake bus of the driver tests; the card reader is a pty pair, read back
through the charger's own RDM6300 parser.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial  # type: ignore[import-untyped]
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from drivers.rfid_frames import Rdm6300Parser
from hil.pirig import FAULT_RELAYS, PiRig, PiRigConfig
from hil.rig import RigError
from tests.test_pi_drivers import FakeAds1115Bus, adc_volts

ROOT = Path(__file__).resolve().parent.parent
PINS = {
    "cp_connect": 5,
    "r_c": 6,
    "r_d": 13,
    "cp_short_pe": 19,
    "diode_bypass": 26,
    "rcd_test": 16,
    "weld_bridge": 20,
    "coil_break": 21,
    "meter_break": 12,
}
SENSE = 25
POWER = 4


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    factory = MockFactory()
    Device.pin_factory = factory
    yield factory
    factory.reset()
    Device.pin_factory = None


def make_rig(active_high: bool = True, **rig: object) -> PiRig:
    config = PiRigConfig.from_dict(
        {
            "rig": {"relay_active_high": active_high, "station_power": POWER, **rig},
            "evse": [{"id": 1, "relays": PINS, "contactor_sense": SENSE}],
        }
    )
    return PiRig(config, bus=FakeAds1115Bus({0: adc_volts(12.0), 1: adc_volts(12.0), 2: 0.0}))


def energised(factory: MockFactory, active_high: bool = True) -> set[str]:
    """The relays whose pins are at their active level, read off the pins themselves."""
    return {name for name, pin in PINS.items() if factory.pin(pin).state == active_high}


@pytest.mark.parametrize("active_high", [True, False])
@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (lambda rig: rig.plug(), {"cp_connect"}),
        (lambda rig: rig.charge(), {"cp_connect", "r_c"}),
        (lambda rig: (rig.charge(), rig.suspend()), {"cp_connect"}),
        (lambda rig: (rig.charge(), rig.unplug()), set()),
        (lambda rig: rig.cp("A"), set()),
        (lambda rig: rig.cp("B"), {"cp_connect"}),
        (lambda rig: rig.cp("C"), {"cp_connect", "r_c"}),
        (lambda rig: rig.cp("D"), {"cp_connect", "r_d"}),
        (lambda rig: rig.cp("E"), {"cp_short_pe"}),
        (lambda rig: (rig.charge(), rig.cp("E"), rig.cp(None)), {"cp_connect", "r_c"}),
        (lambda rig: (rig.cp("E"), rig.plug()), {"cp_connect"}),
    ],
    ids=[
        "plug",
        "charge",
        "suspend",
        "unplug",
        "cp-A",
        "cp-B",
        "cp-C",
        "cp-D",
        "cp-E",
        "cp-release",
        "plug-releases-cp",
    ],
)
def test_each_ev_action_switches_its_relays(pins: MockFactory, active_high: bool, action, expected) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig(active_high)
    action(rig)
    assert energised(pins, active_high) == expected
    assert rig.relays_on() == expected
    rig.close()


@pytest.mark.parametrize("kind", sorted(FAULT_RELAYS))
def test_each_fault_switches_one_relay_and_clears(pins: MockFactory, kind: str) -> None:
    rig = make_rig()
    rig.charge()
    rig.fault(kind)
    assert energised(pins) == {"cp_connect", "r_c", FAULT_RELAYS[kind]}
    rig.fault(kind, active=False)
    assert energised(pins) == {"cp_connect", "r_c"}
    rig.close()


def test_state_changes_break_before_make(pins: MockFactory) -> None:
    rig = make_rig()
    rig.cp("C")
    switched: list[tuple[str, bool]] = []
    for name, relay in rig._relays[1].items():
        relay.on = lambda name=name, on=relay.on: (switched.append((name, True)), on())  # type: ignore[method-assign]
        relay.off = lambda name=name, off=relay.off: (switched.append((name, False)), off())  # type: ignore[method-assign]
    rig.cp("D")
    switched = [(name, state) for name, state in switched if name in ("r_c", "r_d")]
    assert switched == [("r_c", False), ("r_d", True)]
    rig.close()


def test_power_cut_and_close_leave_everything_at_rest(pins: MockFactory) -> None:
    rig = make_rig(active_high=False)
    rig.charge()
    rig.fault("rcd")
    rig.power_cut(True)
    assert pins.pin(POWER).state is False  # active low: energised, the charger's supply open
    rig.close()
    rig.close()  # twice is harmless
    assert energised(pins, active_high=False) == set()
    assert pins.pin(POWER).state is True


def test_refused_actions_say_why(pins: MockFactory) -> None:
    rig = make_rig()
    with pytest.raises(RigError, match="cannot force pilot state 'F'"):
        rig.cp("F")
    with pytest.raises(RigError, match="no evse 2"):
        rig.plug(2)
    with pytest.raises(RigError, match="unknown fault"):
        rig.fault("lightning")
    with pytest.raises(RigError, match="RDM6300"):
        rig.swipe("04A1B2C3")  # 8 characters: not an RDM6300 id
    rig.close()


def test_a_fault_without_its_relay_is_refused_and_not_offered(pins: MockFactory) -> None:
    relays = {k: v for k, v in PINS.items() if k != "weld_bridge"}
    rig = PiRig(PiRigConfig.from_dict({"evse": [{"id": 1, "relays": relays, "contactor_sense": SENSE}]}))
    assert "contactor_weld" not in rig.faults
    with pytest.raises(RigError, match="needs relay weld_bridge"):
        rig.fault("contactor_weld")
    rig.close()


def test_unknown_relay_names_are_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "rig.toml"
    path.write_text("[[evse]]\nid = 1\ncontactor_sense = 25\nrelays = { r3 = 6 }\n")
    with pytest.raises(RigError, match=r"rig.toml: evse 1: unknown relay\(s\) \['r3'\]"):
        PiRigConfig.load(path)


def test_the_example_config_loads() -> None:
    config = PiRigConfig.load(ROOT / "hil" / "pirig.example.toml")
    assert set(config.evses[1].relays) == set(PINS)


@pytest.mark.parametrize(
    ("high", "low", "duty_v", "state", "duty"),
    [
        (12.0, 12.0, 0.0, "A", 100.0),
        (9.0, -12.0, 0.88, "B", 26.7),
        (6.0, -12.0, 0.55, "C", 16.7),
        (9.0, 9.0, 0.0, "B", 100.0),
    ],
)
def test_measure_reads_pilot_duty_and_contactor(
    pins: MockFactory, high: float, low: float, duty_v: float, state: str, duty: float
) -> None:
    rig = make_rig()
    rig._bus = FakeAds1115Bus({0: adc_volts(high), 1: adc_volts(low), 2: duty_v})
    assert rig.measure().contactor_closed is False
    pins.pin(SENSE).drive_low()  # the auxiliary contact closes to GND
    seen = rig.measure()
    assert (seen.cp_state, seen.duty_percent, seen.contactor_closed) == (state, duty, True)
    assert seen.pilot_v == pytest.approx(high, abs=0.01)
    assert seen.power_w is None  # no meter of the rig's own
    rig.close()


def test_swipe_sends_an_rdm6300_frame_the_charger_reads(pins: MockFactory) -> None:
    master, slave = os.openpty()
    rig = make_rig(rfid_port=os.ttyname(slave))
    try:
        rig.swipe("0A1B2C3D4E")
        assert isinstance(rig._serial, serial.Serial)
        parser = Rdm6300Parser()
        while not (ids := parser.feed(os.read(master, 64))):
            pass
        assert ids == ["0A1B2C3D4E"]
    finally:
        rig.close()
        os.close(master)
        os.close(slave)
