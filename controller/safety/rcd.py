"""The residual-current sensor's self-test: its sequence and its timing, in one place.

Pure: times and the sensor's trip output in, the test input and the verdict out. The
control loop steps it across its ticks when an EV connects; ``evse doctor --actuate``
steps it in a loop of its own. The test input goes on until the sensor trips
(``TRIP_S`` at most), then off until it releases (``RELEASE_S`` at most): the sensor
passes when it tripped in time and released after.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

TRIP_S = 1.0  # the test input is held at most this long waiting for a trip
RELEASE_S = 0.5  # then the sensor must release within this


class Phase(StrEnum):
    IDLE = "idle"
    TESTING = "testing"  # test input on, waiting for the trip
    RELEASING = "releasing"  # test input off, waiting for the release


@dataclass
class RcdSelfTest:
    phase: Phase = Phase.IDLE
    _since: float = 0.0
    _tripped: bool = False

    @property
    def test_input(self) -> bool:
        """Whether the sensor's test input is to be driven now."""
        return self.phase is Phase.TESTING

    @property
    def running(self) -> bool:
        return self.phase is not Phase.IDLE

    def start(self, now: float) -> None:
        self.phase, self._since, self._tripped = Phase.TESTING, now, False

    def abort(self) -> None:
        self.phase = Phase.IDLE

    def step(self, now: float, tripped: bool) -> bool | None:
        """Feed the trip output read at ``now``; the verdict once the test is over, else None.

        A verdict of False says whether the sensor did not trip or did not release
        through ``did_not_trip``.
        """
        if self.phase is Phase.TESTING and (tripped or now - self._since > TRIP_S):
            self.phase, self._since, self._tripped = Phase.RELEASING, now, tripped
        elif self.phase is Phase.RELEASING and (not tripped or now - self._since > RELEASE_S):
            self.phase = Phase.IDLE
            return self._tripped and not tripped
        return None

    @property
    def did_not_trip(self) -> bool:
        """After a failed test: it never tripped (else it did not release)."""
        return not self._tripped
