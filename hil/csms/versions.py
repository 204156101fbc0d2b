"""The OCPP versions the development CSMS speaks: each one's subprotocol and handler class."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hil.csms.ocpp16 import Ocpp16
from hil.csms.ocpp201 import Ocpp201

if TYPE_CHECKING:
    from hil.csms.session import StationSession

SUBPROTOCOLS = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}

# OCPP version -> the ChargePoint class that speaks it on the CSMS side.
HANDLERS: dict[str, Callable[[StationSession], Any]] = {"1.6": Ocpp16, "2.0.1": Ocpp201}
