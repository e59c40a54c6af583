"""Query strings of the read endpoints (the job listing, the activity report): each parameter
checked against the vocabulary's limits, 400 `VALIDATION_ERROR` naming it otherwise. A parameter
given more than once is refused rather than read as its last copy, and so is an empty number,
so that a client never gets a page other than the one it asked for; an empty filter (`status=`,
`type=`) is documented as no filter."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

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


def _param(params: Mapping[str, Any], name: str, empty_is_absent: bool = False) -> str | None:
    """The one value of `name`, or None when it is absent."""
    if name not in params:
        return None
    values = params.getlist(name) if hasattr(params, "getlist") else [params[name]]
    if len(values) > 1:
        raise bad_field(name, f"{name} is given {len(values)} times; give it once")
    if values[0] == "" and empty_is_absent:
        return None
    if values[0] == "":
        raise bad_field(name, f"{name} is empty; give a value or leave it out")
    return values[0]


def _int_param(params: Mapping[str, Any], name: str, default: int, low: int, high: int | None) -> int:
    raw = _param(params, name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d+", raw):
        raise bad_field(name, f"{name} must be a whole number")
    value = int(raw)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise bad_field(name, f"{name} must be {bound}")
    return value


def parse_list_query(params: Mapping[str, Any] | None) -> ListQuery:
    params = params or {}
    status = _param(params, "status", empty_is_absent=True)
    if status is not None and status not in JOB_STATUSES:
        raise bad_field("status", f"status must be one of {', '.join(JOB_STATUSES)}")
    job_type = _param(params, "type", empty_is_absent=True)
    if job_type is not None and job_type not in JOB_TYPES:
        raise bad_field("type", f"type must be {' or '.join(map(repr, JOB_TYPES))}")
    return ListQuery(
        status=status,
        job_type=job_type,
        limit=_int_param(params, "limit", LIST_LIMIT_DEFAULT, 1, LIST_LIMIT_MAX),
        offset=_int_param(params, "offset", 0, 0, LIST_OFFSET_MAX),
    )


def parse_activity_minutes(params: Mapping[str, Any] | None) -> int:
    """The activity report's window in minutes (`minutes`, 1 to a day, default the last hour)."""
    return _int_param(params or {}, "minutes", ACTIVITY_MINUTES_DEFAULT, 1, ACTIVITY_MINUTES_MAX)
