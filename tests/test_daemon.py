import math

import pytest

from controller.runtime.meters import finite as _finite
from drivers.base import MeterReading


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_meter_reading_with_non_finite_values_is_not_used(bad: float) -> None:
    assert _finite(MeterReading(10.0, 100.0, (1.0, 1.0, 1.0), (230.0, 230.0, 230.0)))
    assert not _finite(MeterReading(10.0, 100.0, (1.0, bad, 1.0), (230.0, 230.0, 230.0)))
    assert not _finite(MeterReading(bad, 100.0, (1.0,), (230.0,)))
