"""The residual-current self-test: one sequence and one timing, for the control loop and
for `evse doctor --actuate` alike."""

from __future__ import annotations

import re
from pathlib import Path

from controller.safety.rcd import RELEASE_S, TRIP_S, RcdSelfTest

ROOT = Path(__file__).resolve().parent.parent


def test_the_rcd_self_test_sequence() -> None:
    test = RcdSelfTest()
    test.start(0.0)
    assert test.running and test.test_input
    assert test.step(0.5, tripped=False) is None and test.test_input
    assert test.step(0.6, tripped=True) is None and not test.test_input  # tripped: test input off
    assert test.step(0.7, tripped=False) is True and not test.running
    test.start(0.0)
    assert test.step(TRIP_S, tripped=False) is None and test.test_input  # still in time
    assert test.step(TRIP_S + 0.01, tripped=False) is None and not test.test_input
    assert test.step(TRIP_S + 0.02, tripped=False) is False and test.did_not_trip
    test.start(0.0)
    test.step(0.1, tripped=True)
    assert test.step(0.1 + RELEASE_S, tripped=True) is None
    assert test.step(0.11 + RELEASE_S, tripped=True) is False and not test.did_not_trip


def test_the_self_test_timing_is_written_once() -> None:
    sources = [
        p for d in ("controller", "drivers") for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts
    ]
    timing = {
        str(p.relative_to(ROOT))
        for p in sources
        if re.search(r"^(RCD_TRIP|RCD_RELEASE|SELF_TEST|TRIP|RELEASE)_S\s*=", p.read_text(), re.MULTILINE)
    }
    assert timing == {"controller/safety/rcd.py"}
    assert not [p for p in sources if "def self_test(" in p.read_text()]  # no second sequence in a driver
