"""The three shapes of statement the job store runs, on the `Database` it was given."""
from __future__ import annotations

from typing import Any, Mapping

from chalicelib.db import Database
from chalicelib.jobs.record import FIELDS, Job

COLUMNS = ", ".join(FIELDS)


class Statements:
    """Run one statement in its own transaction; the subclasses hold the SQL."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def ping(self) -> None:
        """Raise TransientError when the database cannot be reached (the health check)."""
        self.database.ping()

    def _one(self, query: str, params: Mapping[str, Any]) -> Job | None:
        with self.database.connection() as conn:
            row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return Job.from_row(row) if row else None

    def _many(self, query: str, params: Mapping[str, Any]) -> list[Job]:
        with self.database.connection() as conn:
            rows = conn.execute(query, params).fetchall()  # type: ignore[arg-type]
        return [Job.from_row(row) for row in rows]

    def _changed(self, query: str, params: Mapping[str, Any]) -> int:
        with self.database.connection() as conn:
            return conn.execute(query, params).rowcount  # type: ignore[arg-type]
