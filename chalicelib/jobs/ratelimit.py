"""The rate limiter's statements: count a request in its client's current one-minute window,
and delete the windows that have ended. Apart from the lifecycle (`store.py`) so that each
file reads as one topic; the rule (who is counted, the 429) lives in `chalicelib/api/ratelimit.py`."""
from __future__ import annotations

from typing import NamedTuple

from chalicelib.jobs.statements import Statements

WINDOW = "minute"  # date_trunc's unit: fixed windows of one minute


class Window(NamedTuple):
    """A client's current window: requests counted in it (this one included), and the seconds
    until it ends."""

    requests: int
    seconds_left: float


class RateLimitStatements(Statements):
    def count_request(self, client: str) -> Window:
        """Count one request of `client` (one statement, whatever the number of instances)."""
        with self.database.connection() as conn:
            row = conn.execute(
                f"""INSERT INTO rate_limit_windows (client, window_start, requests)
                    VALUES (%(client)s, date_trunc('{WINDOW}', now()), 1)
                    ON CONFLICT (client, window_start)
                    DO UPDATE SET requests = rate_limit_windows.requests + 1
                    RETURNING requests,
                              EXTRACT(EPOCH FROM window_start + interval '1 {WINDOW}' - now())::float AS seconds_left""",
                {"client": client},
            ).fetchone()
        return Window(row["requests"], row["seconds_left"])

    def delete_ended_windows(self, limit: int = 10_000) -> int:
        """Delete windows that have ended (the sweep runs it; no count reads them again)."""
        return self._changed(
            f"""DELETE FROM rate_limit_windows
                 WHERE ctid IN (SELECT ctid FROM rate_limit_windows
                                 WHERE window_start < date_trunc('{WINDOW}', now()) LIMIT %(limit)s)""",
            {"limit": limit},
        )
