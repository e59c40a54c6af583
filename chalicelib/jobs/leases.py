"""The lease statements: renewing a running job's lease, finding a live one, and counting the
jobs that wait out a retry backoff. The lease itself is taken by `JobStore.start_attempt`, in the
statement that moves the job to processing, and let go by every statement that ends the attempt."""
from __future__ import annotations

from chalicelib.jobs.record import Job, parse_job_id
from chalicelib.jobs.statements import COLUMNS, Statements
from chalicelib.vocabulary import JOB_TYPES, PROCESSING, PROGRESS_DONE, QUEUED, sql_list

# Every statement that ends an attempt (retry, failure, completion, requeue) lets the lease go.
RELEASE_LEASE = "lease_token = NULL, lease_expires_at = NULL"


class LeaseStatements(Statements):
    def renew_lease(self, job_id: str, lease_token: str, lease_seconds: float, progress: int = 0,
                    content_hash: str | None = None) -> bool:
        """Push a held lease's expiry `lease_seconds` ahead, raising the job's progress to
        `progress` and recording `content_hash` when given (the heartbeat carries what the attempt
        got to, in the same write); False when the lease is no longer this worker's (it ran out
        and another delivery took the job, or the attempt ended: completed, failed, cancelled)."""
        jid = parse_job_id(job_id)
        return jid is not None and self._changed(
            f"""UPDATE verification_jobs SET lease_expires_at = now() + make_interval(secs => %(lease)s),
                       progress = GREATEST(progress, %(p)s), content_hash = coalesce(%(h)s::text, content_hash)
                 WHERE id = %(id)s AND status IN {sql_list(PROCESSING)} AND lease_token = %(token)s::uuid""",
            {"id": jid, "token": lease_token, "lease": lease_seconds,
             "p": max(0, min(PROGRESS_DONE - 1, int(progress))), "h": content_hash},
        ) > 0

    def lease_holder(self, job_id: str) -> Job | None:
        """The job when it is processing under a live lease (another worker runs it), else None."""
        jid = parse_job_id(job_id)
        if jid is None:
            return None
        return self._one(
            f"""SELECT {COLUMNS} FROM verification_jobs
                 WHERE id = %(id)s AND status IN {sql_list(PROCESSING)} AND lease_expires_at > now()""",
            {"id": jid},
        )

    def delayed_counts(self) -> dict[str, int]:
        """Queued jobs still waiting out a retry backoff, per job type (zeros included)."""
        with self.database.connection() as conn:
            rows = conn.execute(
                f"""SELECT type, count(*) AS n FROM verification_jobs
                     WHERE status IN {sql_list(QUEUED)} AND retry_at > now() GROUP BY type""").fetchall()
        counts = dict.fromkeys(JOB_TYPES, 0)
        counts.update({row["type"]: row["n"] for row in rows})
        return counts
