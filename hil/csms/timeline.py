"""The timeline the development CSMS records: one ``Entry`` per frame or connection event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Direction = Literal["in", "out"]
Kind = Literal["call", "result", "error", "raw", "connect", "disconnect", "refused"]


@dataclass(frozen=True)
class Entry:
    """One timeline record: a frame, or a station connecting, disconnecting or refused.

    ``direction`` is seen from the CSMS ("in" = from the station). ``payload`` is the
    message payload (camelCase, as on the wire), ``{"code", "description", "details"}``
    for an error, the text for a raw frame, and connection details otherwise.
    """

    t: float
    station: str
    direction: Direction
    kind: Kind
    action: str
    payload: dict[str, Any] | str
    unique_id: str = ""
