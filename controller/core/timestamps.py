"""Date-times as OCPP writes them (RFC 3339), for the pure modules and storage alike."""

from __future__ import annotations

from datetime import UTC, datetime


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as OCPP wants it."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(text: str) -> datetime:
    """An ISO 8601 / RFC 3339 date-time; RFC 3339 allows a lowercase "z", Python 3.11 does not."""
    return datetime.fromisoformat(text.replace("z", "Z"))
