"""Query strings of the read endpoints (the job listing, the activity report): each parameter
checked against the vocabulary's limits, 400 `VALIDATION_ERROR` naming it otherwise."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from chalicelib.api.forms import bad_field
from chalicelib.vocabulary import (
    ACTIVITY_MINUTES_DEFAULT, ACTIVITY_MINUTES_MAX, JOB_STATUSES, JOB_TYPES, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX,
    LIST_OFFSET_MAX,
)


@dataclass(frozen=True)
class ListQuery:
    status: str | None
    job_type: str | None
    limit: int
    offset: int


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"\d+", raw):
        raise bad_field(name, f"{name} must be a whole number")
    value = int(raw)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise bad_field(name, f"{name} must be {bound}")
    return value


def parse_list_query(params: Mapping[str, str] | None) -> ListQuery:
    params = params or {}
    status = params.get("status") or None
    if status is not None and status not in JOB_STATUSES:
        raise bad_field("status", f"status must be one of {', '.join(JOB_STATUSES)}")
    job_type = params.get("type") or None
    if job_type is not None and job_type not in JOB_TYPES:
        raise bad_field("type", f"type must be {' or '.join(map(repr, JOB_TYPES))}")
    return ListQuery(
        status=status,
        job_type=job_type,
        limit=_int_param(params, "limit", LIST_LIMIT_DEFAULT, 1, LIST_LIMIT_MAX),
        offset=_int_param(params, "offset", 0, 0, LIST_OFFSET_MAX),
    )


def parse_activity_minutes(params: Mapping[str, str] | None) -> int:
    """The activity report's window in minutes (`minutes`, 1 to a day, default the last hour)."""
    return _int_param(params or {}, "minutes", ACTIVITY_MINUTES_DEFAULT, 1, ACTIVITY_MINUTES_MAX)
