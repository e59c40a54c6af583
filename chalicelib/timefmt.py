"""The one timestamp format of the API documents: ISO 8601 UTC with milliseconds and Z."""
from __future__ import annotations

from datetime import datetime, timezone


def iso8601(moment: datetime) -> str:
    """`2025-01-31T12:00:00.123Z`, as JavaScript's toISOString(); a naive datetime is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_now() -> str:
    return iso8601(datetime.now(timezone.utc))
