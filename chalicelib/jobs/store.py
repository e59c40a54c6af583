"""The job store: creating, reading and moving jobs through their lifecycle in PostgreSQL.

    awaiting_upload ──upload lands──▶ queued ──delivery──▶ processing ──▶ completed
                                        ▲                     │  │
                                        └──transient error────┘  └──permanent error──▶ failed
                    failed ──retry endpoint / DLQ redrive──▶ queued
    awaiting_upload | queued | processing ──cancel──▶ cancelled

Every transition is ONE SQL statement whose WHERE clause names the statuses it may start from,
so duplicate, concurrent and late SQS deliveries are harmless: the statement that loses the race
matches no row and reports False/None, and the caller acknowledges the message and does nothing.

- A completed job never changes again (no retry, failure or progress moves it backwards).
- `complete_job` accepts a job in queued, processing or failed: a slow worker that finishes after
  its job was re-queued (visibility timeout) or marked failed (dead-letter handler) still
  delivers its result, so no result is lost. It writes the history row in the same statement,
  at most once per job (UNIQUE job_id, ON CONFLICT DO NOTHING).
- `fail_job` keeps the first failure: an already failed job is left as it is.
- A cancelled job never changes again: no statement but `cancel_job` names `cancelled` among the
  statuses it starts from, so a late completion, failure, retry, redrive or re-send matches no row.

A database outage raises a `TransientError` with code `DATABASE_UNAVAILABLE`. Ids that are not UUIDs
match no job (None/False), without a database error.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Mapping

from psycopg.types.json import Json

from chalicelib.jobs.activity import ActivityStatements
from chalicelib.jobs.cache import CacheKey, ResultCacheStatements, upsert_result
from chalicelib.jobs.leases import RELEASE_LEASE, LeaseStatements
from chalicelib.jobs.ratelimit import RateLimitStatements
from chalicelib.jobs.record import Job, new_job_id, parse_job_id
from chalicelib.jobs.retention import RetentionStatements
from chalicelib.jobs.statements import COLUMNS
from chalicelib.vocabulary import (
    AWAITING_UPLOAD, CANCELLED, COMPLETED, FAILED, JOB_STATUSES, JOB_TYPES, PROCESSING, PROGRESS_DONE,
    QUEUED, UNFINISHED_STATUSES, UPLOAD_EXPIRED, VERDICTS, sql_list,
)

_RUNNABLE = sql_list(QUEUED, PROCESSING)
_REQUEUE_SET = f"""status = '{QUEUED}', progress = 0, error = NULL, error_code = NULL,
                   started_at = NULL, completed_at = NULL, attempts = 0, retry_at = NULL, {RELEASE_LEASE}"""

_COMPLETE = f"""WITH done AS (
       UPDATE verification_jobs
          SET status = '{COMPLETED}', progress = {PROGRESS_DONE}, result = %(result)s,
              content_hash = coalesce(content_hash, %(file_hash)s::text),
              error = NULL, error_code = NULL, completed_at = now(), retry_at = NULL, {RELEASE_LEASE}
        WHERE id = %(id)s AND status IN {sql_list(QUEUED, PROCESSING, FAILED)}
        RETURNING id, content_hash, manifest_uri, registry_address
   ), history AS (
       INSERT INTO verifications (job_id, file_hash, manifest_uri, registry_address,
                                  creator, recovered, status, chain_id)
       SELECT id, coalesce(%(file_hash)s::text, content_hash),
              coalesce(%(manifest_uri)s::text, manifest_uri),
              coalesce(%(registry_address)s::text, registry_address),
              %(creator)s::text, %(recovered)s::text, %(status)s::text, %(chain_id)s::bigint
         FROM done
       ON CONFLICT (job_id) DO NOTHING
   )
   SELECT count(*) AS n FROM done"""


class JobStore(RetentionStatements, ResultCacheStatements, RateLimitStatements, LeaseStatements,
               ActivityStatements):
    """The lifecycle statements; the housekeeping ones come from RetentionStatements, the result
    cache's from ResultCacheStatements, the rate limit's from RateLimitStatements, the lease's from
    LeaseStatements, the operators' activity report from ActivityStatements."""

    def create_job(
        self, *, job_type: str, status: str, manifest_uri: str, registry_address: str,
        rpc_url: str | None = None, content_hash: str | None = None, object_key: str | None = None,
        file_name: str | None = None, content_type: str | None = None, file_size: int | None = None,
        upload_expires_at: datetime | None = None, multipart_upload_id: str | None = None,
        upload_part_size: int | None = None, job_id: str | None = None,
    ) -> Job:
        """Insert a job (normally `queued` or `awaiting_upload`) and return it."""
        if job_type not in JOB_TYPES:
            raise ValueError(f"unknown job type: {job_type!r}")
        if status not in JOB_STATUSES:
            raise ValueError(f"unknown job status: {status!r}")
        canonical = parse_job_id(job_id) if job_id is not None else new_job_id()
        if canonical is None:
            raise ValueError(f"job id is not a UUID: {job_id!r}")
        values = dict(id=canonical, type=job_type, status=status, manifest_uri=manifest_uri,
                      registry_address=registry_address, rpc_url=rpc_url, content_hash=content_hash,
                      object_key=object_key, file_name=file_name, content_type=content_type,
                      file_size=file_size, upload_expires_at=upload_expires_at,
                      multipart_upload_id=multipart_upload_id, upload_part_size=upload_part_size)
        job = self._one(
            f"""INSERT INTO verification_jobs ({", ".join(values)})
                VALUES ({", ".join(f"%({name})s" for name in values)})
                RETURNING {COLUMNS}""",
            values,
        )
        assert job is not None
        return job

    def get_job(self, job_id: str) -> Job | None:
        jid = parse_job_id(job_id)
        if jid is None:
            return None
        return self._one(f"SELECT {COLUMNS} FROM verification_jobs WHERE id = %(id)s", {"id": jid})

    def list_jobs(self, status: str | None = None, job_type: str | None = None,
                  limit: int = 50, offset: int = 0) -> list[Job]:
        """Jobs newest first (created_at, then id, descending), optionally filtered."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        where = ["TRUE"]
        if status is not None:
            where.append("status = %(status)s")
        if job_type is not None:
            where.append("type = %(type)s")
        return self._many(
            f"""SELECT {COLUMNS} FROM verification_jobs WHERE {' AND '.join(where)}
                ORDER BY created_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s""",
            {"status": status, "type": job_type, "limit": limit, "offset": offset},
        )

    def status_counts(self) -> dict[str, int]:
        """Number of jobs in each status (every status present, zeros included)."""
        with self.database.connection() as conn:
            rows = conn.execute("SELECT status, count(*) AS n FROM verification_jobs GROUP BY status").fetchall()
        counts = dict.fromkeys(JOB_STATUSES, 0)
        counts.update({row["status"]: row["n"] for row in rows})
        return counts

    def _transition(self, job_id: str, query: str, **params: Any) -> bool:
        """Run an UPDATE of one job by id; True when it changed the row."""
        jid = parse_job_id(job_id)
        return jid is not None and self._changed(query, {"id": jid, **params}) > 0

    def mark_enqueued(self, job_id: str) -> bool:
        """Record a successful send to the queue (the sweeper re-sends jobs never marked)."""
        return self._transition(job_id, f"""UPDATE verification_jobs SET last_enqueued_at = now()
                                             WHERE id = %(id)s AND status IN {_RUNNABLE}""")

    def mark_upload_received(self, job_id: str, object_size: int | None = None) -> Job | None:
        """awaiting_upload → queued when the uploaded object lands; the job, only for the call that
        made the transition (S3 events repeat), else None. An upload that lands after the sweeper
        expired the job (S3 accepted it, so the presigned POST was still valid when it began) revives it."""
        jid = parse_job_id(job_id)
        if jid is None:
            return None
        return self._one(
            f"""UPDATE verification_jobs
                   SET status = '{QUEUED}', file_size = coalesce(%(size)s::bigint, file_size),
                       error = NULL, error_code = NULL, completed_at = NULL
                 WHERE id = %(id)s AND (status IN {sql_list(AWAITING_UPLOAD)}
                       OR (status IN {sql_list(FAILED)} AND error_code = %(expired)s))
                 RETURNING {COLUMNS}""",
            {"id": jid, "size": object_size, "expired": UPLOAD_EXPIRED},
        )

    def start_attempt(self, job_id: str, lease_token: str | None = None, lease_seconds: float = 0.0) -> Job | None:
        """queued|processing → processing for a delivery, taking the job's lease (`lease_token`,
        for `lease_seconds`) in the same statement; None means "nothing to do now": the job is
        finished, missing, still awaiting its upload, or another worker holds a live lease on it
        (`lease_holder` tells which). `processing` is accepted when its lease has run out: a
        worker that died mid-job leaves it so, and SQS redelivers."""
        jid = parse_job_id(job_id)
        if jid is None:
            return None
        return self._one(
            f"""UPDATE verification_jobs
                   SET status = '{PROCESSING}', started_at = coalesce(started_at, now()),
                       attempts = attempts + 1, retry_at = NULL, lease_token = %(token)s::uuid,
                       lease_expires_at = now() + make_interval(secs => %(lease)s)
                 WHERE id = %(id)s AND status IN {_RUNNABLE}
                       AND (lease_expires_at IS NULL OR lease_expires_at <= now())
                 RETURNING {COLUMNS}""",
            {"id": jid, "token": lease_token, "lease": lease_seconds},
        )

    def set_progress(self, job_id: str, progress: int) -> bool:
        """Raise the progress of a processing job (never lowers it)."""
        return self._transition(
            job_id,
            f"""UPDATE verification_jobs SET progress = %(p)s
                 WHERE id = %(id)s AND status IN {sql_list(PROCESSING)} AND progress < %(p)s""",
            p=max(0, min(PROGRESS_DONE, int(progress))),
        )

    def complete_job(self, job_id: str, result: Mapping[str, Any], history: Mapping[str, Any],
                     cache_key: CacheKey | None = None) -> bool:
        """Store the result and write the history row, in one statement; True if this call did it.
        With `cache_key`, the result also becomes the result cache's entry for it, in the same
        transaction (only when this call completed the job).

        `history` keys: `status` (a verdict, required), `file_hash`, `creator`, `recovered`,
        `chain_id`, and optionally `manifest_uri`/`registry_address`; `file_hash`,
        `manifest_uri` and `registry_address` default to the job's own values.
        """
        jid = parse_job_id(job_id)
        if jid is None:
            return False
        if history.get("status") not in VERDICTS:
            raise ValueError(f"history status must be one of {VERDICTS}: {history.get('status')!r}")
        params = {name: history.get(name) for name in
                  ("file_hash", "manifest_uri", "registry_address", "creator", "recovered", "chain_id")}
        with self.database.connection() as conn:
            row = conn.execute(_COMPLETE, {**params, "id": jid, "result": Json(dict(result)),
                                           "status": history["status"]}).fetchone()
            completed = bool(row and row["n"])
            if completed and cache_key is not None:
                upsert_result(conn, cache_key, result)
        return completed

    def schedule_retry(self, job_id: str, error: str, code: str, retry_in_seconds: float = 0.0,
                       lease_token: str | None = None) -> bool:
        """processing → queued after a transient error (SQS redelivers after the backoff, which
        ends `retry_in_seconds` from now). With `lease_token`, only while that lease is still the
        job's: a worker whose lease ran out does not send back a job another worker now runs."""
        return self._transition(
            job_id,
            f"""UPDATE verification_jobs
                   SET status = '{QUEUED}', retry_count = retry_count + 1,
                       error = %(error)s, error_code = %(code)s,
                       retry_at = now() + make_interval(secs => %(delay)s), {RELEASE_LEASE}
                 WHERE id = %(id)s AND status IN {sql_list(PROCESSING)}
                       AND (%(token)s::uuid IS NULL OR lease_token = %(token)s::uuid)""",
            error=error, code=code, delay=retry_in_seconds, token=lease_token,
        )

    def fail_job(self, job_id: str, error: str, code: str) -> bool:
        """Any unfinished status → failed. A completed job stays completed; a failed one keeps
        its first error. True if this call failed the job."""
        return self._transition(
            job_id,
            f"""UPDATE verification_jobs
                   SET status = '{FAILED}', error = %(error)s, error_code = %(code)s, completed_at = now(),
                       retry_at = NULL, {RELEASE_LEASE}
                 WHERE id = %(id)s AND status IN {sql_list(*UNFINISHED_STATUSES)}""",
            error=error, code=code,
        )

    def cancel_job(self, job_id: str) -> Job | None:
        """An unfinished job → cancelled, returned; None when it is finished or unknown. A worker
        running it notices at its next progress write (see chalicelib/worker.py)."""
        jid = parse_job_id(job_id)
        if jid is None:
            return None
        return self._one(
            f"""UPDATE verification_jobs SET status = '{CANCELLED}', completed_at = now(), retry_at = NULL,
                       {RELEASE_LEASE}
                 WHERE id = %(id)s AND status IN {sql_list(*UNFINISHED_STATUSES)}
                 RETURNING {COLUMNS}""",
            {"id": jid},
        )

    def requeue_failed(self, job_id: str) -> Job | None:
        """failed → queued for the retry endpoint (None when the job is not failed). The caller
        checks that the input still exists, then sends the message and calls mark_enqueued."""
        jid = parse_job_id(job_id)
        if jid is None:
            return None
        return self._one(
            f"""UPDATE verification_jobs SET {_REQUEUE_SET}, last_enqueued_at = NULL
                 WHERE id = %(id)s AND status IN {sql_list(FAILED)}
                 RETURNING {COLUMNS}""",
            {"id": jid},
        )

    def requeue_dead_lettered(self, job_ids: Iterable[str]) -> list[str]:
        """failed → queued for the jobs whose messages a redrive moves back to the work queue;
        returns the ids moved. Call it before moving the messages, so that a worker receiving
        one finds its job queued. The move counts as an enqueue (last_enqueued_at = now())."""
        ids = sorted({jid for jid in map(parse_job_id, job_ids) if jid is not None})
        if not ids:
            return []
        jobs = self._many(
            f"""UPDATE verification_jobs SET {_REQUEUE_SET}, last_enqueued_at = now()
                 WHERE id = ANY(%(ids)s::uuid[]) AND status IN {sql_list(FAILED)}
                 RETURNING {COLUMNS}""",
            {"ids": ids},
        )
        return [job.id for job in jobs]
