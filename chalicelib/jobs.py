"""The verification job record and its lifecycle in PostgreSQL.

    awaiting_upload ──upload lands──▶ queued ──delivery──▶ processing ──▶ completed
                                        ▲                     │  │
                                        └──transient error────┘  └──permanent error──▶ failed
                    failed ──retry endpoint / DLQ redrive──▶ queued

Every transition is ONE SQL statement whose WHERE clause names the statuses it may start from,
so duplicate, concurrent and late SQS deliveries are harmless: the statement that loses the race
matches no row and reports False/None, and the caller acknowledges the message and does nothing.

- A completed job never changes again (no retry, failure or progress moves it backwards).
- `complete_job` accepts a job in queued, processing or failed: a slow worker that finishes after
  its job was re-queued (visibility timeout) or marked failed (dead-letter handler) still
  delivers its result, so no result is lost. It writes the history row in the same statement,
  at most once per job (UNIQUE job_id, ON CONFLICT DO NOTHING).
- `fail_job` keeps the first failure: an already failed job is left as it is.

Functions take no connection: they use the process pool (`chalicelib.db.connection()`), and a
database outage raises `TransientError(code="DATABASE_UNAVAILABLE")`. Ids that are not UUIDs
match no job (None/False), without a database error.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Iterable, Mapping

from psycopg.types.json import Json

from chalicelib.config import settings
from chalicelib.db import connection
from chalicelib.timefmt import iso8601

JOB_TYPES = ("verify", "proof")
AWAITING_UPLOAD = "awaiting_upload"
QUEUED = "queued"
PROCESSING = "processing"
COMPLETED = "completed"
FAILED = "failed"
STATUSES = (AWAITING_UPLOAD, QUEUED, PROCESSING, COMPLETED, FAILED)
UPLOAD_EXPIRED = "UPLOAD_EXPIRED"
HISTORY_STATUSES = ("OK", "WARN", "FAIL")


@dataclass(frozen=True)
class Job:
    """One row of verification_jobs."""

    id: str
    type: str
    status: str
    progress: int
    content_hash: str | None
    manifest_uri: str
    registry_address: str
    rpc_url: str | None
    result: dict[str, Any] | None
    error: str | None
    error_code: str | None
    retry_count: int
    attempts: int
    object_key: str | None
    file_name: str | None
    content_type: str | None
    file_size: int | None
    upload_expires_at: datetime | None
    last_enqueued_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Job":
        values = {name: row[name] for name in _FIELDS}
        values["id"] = str(values["id"])
        return cls(**values)

    @property
    def finished(self) -> bool:
        return self.status in (COMPLETED, FAILED)


_FIELDS = tuple(f.name for f in fields(Job))
_COLS = ", ".join(_FIELDS)


def iso_utc(value: datetime | None) -> str | None:
    """`2025-01-31T12:00:00.123Z` (UTC, milliseconds), or None for a time not reached yet."""
    return None if value is None else iso8601(value)


def job_to_api(job: Job) -> dict[str, Any]:
    """The job object of the HTTP API (see API.md), camelCase, timestamps in UTC."""
    return {
        "id": job.id,
        "jobId": job.id,
        "type": job.type,
        "status": job.status,
        "progress": job.progress,
        "contentHash": job.content_hash,
        "manifestUri": job.manifest_uri,
        "registryAddress": job.registry_address,
        "rpcUrl": job.rpc_url,
        "result": job.result,
        "error": job.error,
        "errorCode": job.error_code,
        "retryCount": job.retry_count,
        "createdAt": iso_utc(job.created_at),
        "startedAt": iso_utc(job.started_at),
        "completedAt": iso_utc(job.completed_at),
        "updatedAt": iso_utc(job.updated_at),
    }


def parse_job_id(job_id: object) -> str | None:
    """The canonical form of a UUID job id, or None when it is not one."""
    if isinstance(job_id, uuid.UUID):
        return str(job_id)
    if not isinstance(job_id, str):
        return None
    try:
        return str(uuid.UUID(job_id.strip()))
    except ValueError:
        return None


def new_job_id() -> str:
    """A random (version 4) UUID, for callers that need the id before the row exists."""
    return str(uuid.uuid4())


# --- the three shapes of statement -------------------------------------------------------------

def _one(query: str, params: Mapping[str, Any]) -> Job | None:
    with connection() as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    return Job.from_row(row) if row else None


def _many(query: str, params: Mapping[str, Any]) -> list[Job]:
    with connection() as conn:
        rows = conn.execute(query, params).fetchall()  # type: ignore[arg-type]
    return [Job.from_row(row) for row in rows]


def _changed(query: str, params: Mapping[str, Any]) -> bool:
    with connection() as conn:
        return conn.execute(query, params).rowcount > 0  # type: ignore[arg-type]


# --- creating and reading ----------------------------------------------------------------------

def create_job(
    *,
    job_type: str,
    status: str,
    manifest_uri: str,
    registry_address: str,
    rpc_url: str | None = None,
    content_hash: str | None = None,
    object_key: str | None = None,
    file_name: str | None = None,
    content_type: str | None = None,
    file_size: int | None = None,
    upload_expires_at: datetime | None = None,
    job_id: str | None = None,
) -> Job:
    """Insert a job (normally `queued` or `awaiting_upload`) and return it."""
    if job_type not in JOB_TYPES:
        raise ValueError(f"unknown job type: {job_type!r}")
    if status not in STATUSES:
        raise ValueError(f"unknown job status: {status!r}")
    canonical = parse_job_id(job_id) if job_id is not None else new_job_id()
    if canonical is None:
        raise ValueError(f"job id is not a UUID: {job_id!r}")
    job = _one(
        f"""INSERT INTO verification_jobs
                (id, type, status, manifest_uri, registry_address, rpc_url, content_hash,
                 object_key, file_name, content_type, file_size, upload_expires_at)
            VALUES (%(id)s, %(type)s, %(status)s, %(manifest_uri)s, %(registry_address)s,
                    %(rpc_url)s, %(content_hash)s, %(object_key)s, %(file_name)s,
                    %(content_type)s, %(file_size)s, %(upload_expires_at)s)
            RETURNING {_COLS}""",
        dict(id=canonical, type=job_type, status=status, manifest_uri=manifest_uri,
             registry_address=registry_address, rpc_url=rpc_url, content_hash=content_hash,
             object_key=object_key, file_name=file_name, content_type=content_type,
             file_size=file_size, upload_expires_at=upload_expires_at),
    )
    assert job is not None
    return job


def get_job(job_id: str) -> Job | None:
    jid = parse_job_id(job_id)
    if jid is None:
        return None
    return _one(f"SELECT {_COLS} FROM verification_jobs WHERE id = %(id)s", {"id": jid})


def list_jobs(
    status: str | None = None, job_type: str | None = None, limit: int = 50, offset: int = 0
) -> list[Job]:
    """Jobs newest first (created_at, then id, descending), optionally filtered."""
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
    where = ["TRUE"]
    if status is not None:
        where.append("status = %(status)s")
    if job_type is not None:
        where.append("type = %(type)s")
    return _many(
        f"""SELECT {_COLS} FROM verification_jobs WHERE {' AND '.join(where)}
            ORDER BY created_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s""",
        {"status": status, "type": job_type, "limit": limit, "offset": offset},
    )


def status_counts() -> dict[str, int]:
    """Number of jobs in each status (every status present, zeros included)."""
    with connection() as conn:
        rows = conn.execute("SELECT status, count(*) AS n FROM verification_jobs GROUP BY status").fetchall()
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


# --- transitions -------------------------------------------------------------------------------

def mark_enqueued(job_id: str) -> bool:
    """Record a successful send to the queue (the sweeper re-sends jobs never marked)."""
    jid = parse_job_id(job_id)
    return jid is not None and _changed(
        """UPDATE verification_jobs SET last_enqueued_at = now()
            WHERE id = %(id)s AND status IN ('queued', 'processing')""",
        {"id": jid},
    )


def mark_upload_received(job_id: str, object_size: int | None = None) -> bool:
    """awaiting_upload → queued when the uploaded object lands. True only for the call that
    made the transition (S3 events repeat). An upload that lands after the sweeper expired the
    job (S3 accepted it, so the presigned POST was still valid when it began) revives the job."""
    jid = parse_job_id(job_id)
    return jid is not None and _changed(
        """UPDATE verification_jobs
              SET status = 'queued', file_size = coalesce(%(size)s::bigint, file_size),
                  error = NULL, error_code = NULL, completed_at = NULL
            WHERE id = %(id)s
              AND (status = 'awaiting_upload' OR (status = 'failed' AND error_code = %(expired)s))""",
        {"id": jid, "size": object_size, "expired": UPLOAD_EXPIRED},
    )


def start_attempt(job_id: str) -> Job | None:
    """queued|processing → processing for a delivery; None means "nothing to do" (the job is
    finished, missing or still awaiting its upload): acknowledge the message and stop.
    `processing` is accepted because a worker that died mid-job leaves it so and SQS redelivers."""
    jid = parse_job_id(job_id)
    if jid is None:
        return None
    return _one(
        f"""UPDATE verification_jobs
               SET status = 'processing', started_at = coalesce(started_at, now()),
                   attempts = attempts + 1
             WHERE id = %(id)s AND status IN ('queued', 'processing')
             RETURNING {_COLS}""",
        {"id": jid},
    )


def set_progress(job_id: str, progress: int) -> bool:
    """Raise the progress of a processing job (never lowers it)."""
    jid = parse_job_id(job_id)
    value = max(0, min(100, int(progress)))
    return jid is not None and _changed(
        """UPDATE verification_jobs SET progress = %(p)s
            WHERE id = %(id)s AND status = 'processing' AND progress < %(p)s""",
        {"id": jid, "p": value},
    )


HASHED_PROGRESS = 10


def set_content_hash(job_id: str, content_hash: str) -> bool:
    """Record the file's hash once the worker has streamed the upload, together with the
    "hashed" progress step (10): one write instead of two on every job's path."""
    jid = parse_job_id(job_id)
    return jid is not None and _changed(
        """UPDATE verification_jobs SET content_hash = %(h)s, progress = GREATEST(progress, %(p)s)
            WHERE id = %(id)s AND status IN ('queued', 'processing')
              AND content_hash IS DISTINCT FROM %(h)s""",
        {"id": jid, "h": content_hash, "p": HASHED_PROGRESS},
    )


def complete_job(job_id: str, result: Mapping[str, Any], history: Mapping[str, Any]) -> bool:
    """Store the result and write the history row, in one statement; True if this call did it.

    `history` keys: `status` ('OK'|'WARN'|'FAIL', required), `file_hash`, `creator`,
    `recovered`, `chain_id`, and optionally `manifest_uri`/`registry_address`; `file_hash`,
    `manifest_uri` and `registry_address` default to the job's own values.
    """
    jid = parse_job_id(job_id)
    if jid is None:
        return False
    if history.get("status") not in HISTORY_STATUSES:
        raise ValueError(f"history status must be one of {HISTORY_STATUSES}: {history.get('status')!r}")
    with connection() as conn:
        row = conn.execute(
            """WITH done AS (
                   UPDATE verification_jobs
                      SET status = 'completed', progress = 100, result = %(result)s,
                          content_hash = coalesce(content_hash, %(file_hash)s::text),
                          error = NULL, error_code = NULL, completed_at = now()
                    WHERE id = %(id)s AND status IN ('queued', 'processing', 'failed')
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
               SELECT count(*) AS n FROM done""",
            {
                "id": jid,
                "result": Json(dict(result)),
                "file_hash": history.get("file_hash"),
                "manifest_uri": history.get("manifest_uri"),
                "registry_address": history.get("registry_address"),
                "creator": history.get("creator"),
                "recovered": history.get("recovered"),
                "status": history["status"],
                "chain_id": history.get("chain_id"),
            },
        ).fetchone()
    return bool(row and row["n"])


def schedule_retry(job_id: str, error: str, code: str) -> bool:
    """processing → queued after a transient error (SQS redelivers after the backoff)."""
    jid = parse_job_id(job_id)
    return jid is not None and _changed(
        """UPDATE verification_jobs
              SET status = 'queued', retry_count = retry_count + 1,
                  error = %(error)s, error_code = %(code)s
            WHERE id = %(id)s AND status = 'processing'""",
        {"id": jid, "error": error, "code": code},
    )


def fail_job(job_id: str, error: str, code: str) -> bool:
    """Any unfinished status → failed. A completed job stays completed; a failed one keeps its
    first error. True if this call failed the job."""
    jid = parse_job_id(job_id)
    return jid is not None and _changed(
        """UPDATE verification_jobs
              SET status = 'failed', error = %(error)s, error_code = %(code)s, completed_at = now()
            WHERE id = %(id)s AND status NOT IN ('completed', 'failed')""",
        {"id": jid, "error": error, "code": code},
    )


_REQUEUE_SET = """status = 'queued', progress = 0, error = NULL, error_code = NULL,
                  started_at = NULL, completed_at = NULL, attempts = 0"""


def requeue_failed(job_id: str) -> Job | None:
    """failed → queued for the retry endpoint (None when the job is not failed). The caller
    checks that the input still exists, then sends the message and calls mark_enqueued."""
    jid = parse_job_id(job_id)
    if jid is None:
        return None
    return _one(
        f"""UPDATE verification_jobs SET {_REQUEUE_SET}, last_enqueued_at = NULL
             WHERE id = %(id)s AND status = 'failed'
             RETURNING {_COLS}""",
        {"id": jid},
    )


def requeue_dead_lettered(job_ids: Iterable[str]) -> list[str]:
    """failed → queued for the jobs whose messages a redrive moves back to the work queue;
    returns the ids moved. Call it before moving the messages, so that a worker receiving one
    finds its job queued. The move counts as an enqueue (last_enqueued_at = now())."""
    ids = sorted({jid for jid in map(parse_job_id, job_ids) if jid is not None})
    if not ids:
        return []
    with connection() as conn:
        rows = conn.execute(
            f"""UPDATE verification_jobs SET {_REQUEUE_SET}, last_enqueued_at = now()
                 WHERE id = ANY(%(ids)s::uuid[]) AND status = 'failed'
                 RETURNING id""",
            {"ids": ids},
        ).fetchall()
    return [str(row["id"]) for row in rows]


# --- sweeper -----------------------------------------------------------------------------------

def jobs_to_resend(older_than_seconds: float | None = None, limit: int = 100) -> list[Job]:
    """Queued jobs whose message never reached the queue (the send failed, so
    `last_enqueued_at` is NULL), untouched for `older_than_seconds` (default
    STUCK_QUEUED_SECONDS) so that a request still between insert and send is left alone.
    Jobs that were sent once are not re-sent: SQS keeps their message, and re-sending during
    a backlog would only multiply duplicates."""
    seconds = settings().stuck_queued_seconds if older_than_seconds is None else older_than_seconds
    return _many(
        f"""SELECT {_COLS} FROM verification_jobs
             WHERE status = 'queued'
               AND last_enqueued_at IS NULL
               AND updated_at < now() - make_interval(secs => %(s)s)
             ORDER BY created_at LIMIT %(limit)s""",
        {"s": float(seconds), "limit": limit},
    )


def expire_uploads(now: datetime | None = None, limit: int = 1000) -> list[Job]:
    """awaiting_upload jobs whose upload URL expired before `now` (default: the database's
    clock) → failed with UPLOAD_EXPIRED; returns them."""
    return _many(
        f"""UPDATE verification_jobs
               SET status = 'failed', error = 'The upload did not arrive before its upload URL expired',
                   error_code = %(code)s, completed_at = now()
             WHERE id IN (SELECT id FROM verification_jobs
                           WHERE status = 'awaiting_upload'
                             AND upload_expires_at < coalesce(%(now)s::timestamptz, now())
                           ORDER BY upload_expires_at LIMIT %(limit)s)
               AND status = 'awaiting_upload'
             RETURNING {_COLS}""",
        {"code": UPLOAD_EXPIRED, "now": now, "limit": limit},
    )


def finished_jobs_with_objects(
    completed_older_than_seconds: float = 0.0,
    failed_older_than_seconds: float | None = None,
    limit: int = 100,
) -> list[Job]:
    """Finished jobs whose uploaded object can be deleted: completed ones at once (by default),
    failed ones only at the end of their retention (default FAILED_RETENTION_DAYS), since the
    retry endpoint needs their input. Delete the object, then call clear_object_key."""
    if failed_older_than_seconds is None:
        failed_older_than_seconds = settings().failed_retention_days * 86400
    return _many(
        f"""SELECT {_COLS} FROM verification_jobs
             WHERE object_key IS NOT NULL
               AND ((status = 'completed' AND completed_at < now() - make_interval(secs => %(c)s))
                 OR (status = 'failed' AND completed_at < now() - make_interval(secs => %(f)s)))
             ORDER BY completed_at LIMIT %(limit)s""",
        {"c": float(completed_older_than_seconds), "f": float(failed_older_than_seconds), "limit": limit},
    )


def clear_object_key(job_id: str) -> bool:
    """Forget the upload of a finished job once its object is deleted."""
    jid = parse_job_id(job_id)
    return jid is not None and _changed(
        """UPDATE verification_jobs SET object_key = NULL
            WHERE id = %(id)s AND object_key IS NOT NULL AND status IN ('completed', 'failed')""",
        {"id": jid},
    )


def delete_old_jobs(
    completed_days: float | None = None, failed_days: float | None = None, limit: int = 10_000
) -> int:
    """Delete completed jobs older than `completed_days` and failed ones older than `failed_days`
    (defaults: COMPLETED_RETENTION_DAYS, FAILED_RETENTION_DAYS), counted from completion.
    Jobs that still have an object_key are kept until the sweeper has deleted their object,
    so no upload is orphaned. History rows are kept. Returns the number deleted."""
    s = settings()
    completed_days = s.completed_retention_days if completed_days is None else completed_days
    failed_days = s.failed_retention_days if failed_days is None else failed_days
    with connection() as conn:
        return conn.execute(
            """DELETE FROM verification_jobs
                WHERE id IN (SELECT id FROM verification_jobs
                              WHERE object_key IS NULL
                                AND ((status = 'completed' AND completed_at < now() - make_interval(secs => %(c)s))
                                  OR (status = 'failed' AND completed_at < now() - make_interval(secs => %(f)s)))
                              LIMIT %(limit)s)""",
            {"c": float(completed_days) * 86400, "f": float(failed_days) * 86400, "limit": limit},
        ).rowcount
