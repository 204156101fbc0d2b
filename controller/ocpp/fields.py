"""Fields of CSMS requests both OCPP versions read alike: date-times and remote-start profiles."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from controller.core import schedule
from controller.io.storage import parse_timestamp
from controller.ocpp.ocppj import RpcError

log = logging.getLogger(__name__)


def optional_times(p: dict[str, Any], *keys: str) -> list[datetime | None]:
    """The date-times ``keys`` of a request, None where absent; one unreadable is a CALLERROR."""
    times: list[datetime | None] = []
    for key in keys:
        try:
            times.append(parse_timestamp(p[key]) if key in p else None)
        except ValueError as exc:
            raise RpcError("property", f"{key}: {exc}") from exc
    return times


def required_time(p: dict[str, Any], key: str) -> datetime:
    """A date-time the schema requires (so present)."""
    time = optional_times(p, key)[0]
    if time is None:
        raise RpcError("property", f"{key} is missing")
    return time


def tx_profile(
    action: str,
    raw: dict[str, Any] | None,
    parse: Callable[[dict[str, Any], int], schedule.Profile],
    evse_id: int,
) -> schedule.Profile | None:
    """The charging profile of a remote start, if any: a TxProfile, or ValueError (the start
    is refused)."""
    if raw is None:
        return None
    try:
        profile = parse(raw, evse_id)
    except ValueError as exc:
        log.warning("%s charging profile refused: %s", action, exc)
        raise
    if profile.purpose is not schedule.Purpose.TX:
        raise ValueError(f"a {profile.purpose} profile cannot start a transaction")
    return profile
