"""The job store's activity statements for operators (the console's chart and failure list):
jobs finished per minute, and recent failures grouped by error code. Read-only, one statement
each, served by the index on (status, completed_at) of finished jobs.

A job counts in the minute of its `completed_at` under its status now: a job that failed and was
then retried to completion counts as completed, in the minute it completed.
"""
from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from chalicelib.jobs.statements import Statements
from chalicelib.vocabulary import COMPLETED, FAILED, sql_list

_WINDOW = "completed_at >= date_trunc('minute', now()) - make_interval(mins => %(minutes)s - 1)"


class MinuteActivity(NamedTuple):
    minute: datetime  # the start of the minute, UTC
    completed: int
    failed: int


class FailureCount(NamedTuple):
    error_code: str | None
    count: int


class ActivityStatements(Statements):
    def finished_by_minute(self, minutes: int) -> list[MinuteActivity]:
        """One row per minute of the last `minutes` (the current minute last, zeros included)."""
        with self.database.connection() as conn:
            rows = conn.execute(
                f"""WITH finished AS (
                        SELECT date_trunc('minute', completed_at) AS minute, status
                          FROM verification_jobs
                         WHERE status IN {sql_list(COMPLETED, FAILED)} AND {_WINDOW})
                    SELECT m.minute,
                           count(*) FILTER (WHERE f.status = '{COMPLETED}') AS completed,
                           count(*) FILTER (WHERE f.status = '{FAILED}') AS failed
                      FROM generate_series(date_trunc('minute', now()) - make_interval(mins => %(minutes)s - 1),
                                           date_trunc('minute', now()), interval '1 minute') AS m(minute)
                      LEFT JOIN finished f ON f.minute = m.minute
                     GROUP BY m.minute ORDER BY m.minute""",
                {"minutes": minutes},
            ).fetchall()
        return [MinuteActivity(row["minute"], row["completed"], row["failed"]) for row in rows]

    def failures_by_code(self, minutes: int) -> list[FailureCount]:
        """Jobs failed within the last `minutes`, counted per error code, most frequent first."""
        with self.database.connection() as conn:
            rows = conn.execute(
                f"""SELECT error_code, count(*) AS n FROM verification_jobs
                     WHERE status IN {sql_list(FAILED)} AND {_WINDOW}
                     GROUP BY error_code ORDER BY n DESC, error_code""",
                {"minutes": minutes},
            ).fetchall()
        return [FailureCount(row["error_code"], row["n"]) for row in rows]
