"""The job store's housekeeping statements: jobs to re-send, uploads that expired, files and
jobs past retention. Apart from the lifecycle (`store.py`) so that each file reads as one topic."""
from __future__ import annotations

from datetime import datetime

from chalicelib.jobs.record import Job, parse_job_id
from chalicelib.jobs.statements import COLUMNS, Statements
from chalicelib.vocabulary import (
    AWAITING_UPLOAD, CANCELLED, COMPLETED, FAILED, FINISHED_STATUSES, QUEUED, UPLOAD_EXPIRED, sql_list,
)

# Finished jobs older than %(c)s seconds (completed or cancelled) or %(f)s seconds (failed), from
# completion: a failed job's file waits for a retry, the others' have no further use.
_PAST = f"""((status IN {sql_list(COMPLETED, CANCELLED)} AND completed_at < now() - make_interval(secs => %(c)s))
            OR (status IN {sql_list(FAILED)} AND completed_at < now() - make_interval(secs => %(f)s)))"""


class RetentionStatements(Statements):
    def jobs_to_resend(self, older_than_seconds: float, limit: int = 100) -> list[Job]:
        """Queued jobs whose message never reached the queue (the send failed, so
        `last_enqueued_at` is NULL), untouched for `older_than_seconds` so that a request still
        between insert and send is left alone. Jobs that were sent once are not re-sent: SQS
        keeps their message, and re-sending during a backlog would only multiply duplicates."""
        return self._many(
            f"""SELECT {COLUMNS} FROM verification_jobs
                 WHERE status IN {sql_list(QUEUED)}
                   AND last_enqueued_at IS NULL
                   AND updated_at < now() - make_interval(secs => %(s)s)
                 ORDER BY created_at LIMIT %(limit)s""",
            {"s": float(older_than_seconds), "limit": limit},
        )

    def expire_uploads(self, now: datetime | None = None, limit: int = 1000) -> list[Job]:
        """awaiting_upload jobs whose upload URL expired before `now` (default: the database's
        clock) → failed with UPLOAD_EXPIRED; returns them."""
        return self._many(
            f"""UPDATE verification_jobs
                   SET status = '{FAILED}', completed_at = now(), error_code = %(code)s,
                       error = 'The upload did not arrive before its upload URL expired'
                 WHERE id IN (SELECT id FROM verification_jobs
                               WHERE status IN {sql_list(AWAITING_UPLOAD)}
                                 AND upload_expires_at < coalesce(%(now)s::timestamptz, now())
                               ORDER BY upload_expires_at LIMIT %(limit)s)
                   AND status IN {sql_list(AWAITING_UPLOAD)}
                 RETURNING {COLUMNS}""",
            {"code": UPLOAD_EXPIRED, "now": now, "limit": limit},
        )

    def finished_jobs_with_objects(
        self, completed_older_than_seconds: float, failed_older_than_seconds: float, limit: int = 100
    ) -> list[Job]:
        """Finished jobs whose uploaded object can be deleted (completed and cancelled ones at
        once, failed ones at the end of their retention, since the retry endpoint needs their input).
        Delete the object, then call clear_object_key."""
        return self._many(
            f"""SELECT {COLUMNS} FROM verification_jobs
                 WHERE object_key IS NOT NULL AND {_PAST}
                 ORDER BY completed_at LIMIT %(limit)s""",
            {"c": float(completed_older_than_seconds), "f": float(failed_older_than_seconds), "limit": limit},
        )

    def clear_object_key(self, job_id: str) -> bool:
        """Forget the upload of a finished job once its object is deleted."""
        jid = parse_job_id(job_id)
        return jid is not None and self._changed(
            f"""UPDATE verification_jobs SET object_key = NULL
                 WHERE id = %(id)s AND object_key IS NOT NULL AND status IN {sql_list(*FINISHED_STATUSES)}""",
            {"id": jid},
        ) > 0

    def jobs_with_open_multipart_uploads(self, limit: int = 100) -> list[Job]:
        """Finished jobs (an upload that expired, a cancel) whose multipart upload is still open:
        abort it, then call forget_multipart_upload, so that no parts are left behind."""
        return self._many(
            f"""SELECT {COLUMNS} FROM verification_jobs
                 WHERE multipart_upload_id IS NOT NULL AND status IN {sql_list(*FINISHED_STATUSES)}
                 ORDER BY completed_at LIMIT %(limit)s""",
            {"limit": limit},
        )

    def forget_multipart_upload(self, job_id: str) -> bool:
        """The job's multipart upload was completed or aborted: S3 holds no parts for it any more."""
        jid = parse_job_id(job_id)
        return jid is not None and self._changed(
            """UPDATE verification_jobs SET multipart_upload_id = NULL
                WHERE id = %(id)s AND multipart_upload_id IS NOT NULL""",
            {"id": jid},
        ) > 0

    def delete_old_jobs(self, completed_days: float, failed_days: float, limit: int = 10_000) -> int:
        """Delete completed and cancelled jobs older than `completed_days` and failed ones older than
        `failed_days`, counted from completion. Jobs that still have an object_key are kept until
        the sweeper has deleted their object, so no upload is orphaned. History rows are kept.
        Returns the number deleted."""
        return self._changed(
            f"""DELETE FROM verification_jobs
                 WHERE id IN (SELECT id FROM verification_jobs
                               WHERE object_key IS NULL AND multipart_upload_id IS NULL AND {_PAST} LIMIT %(limit)s)""",
            {"c": float(completed_days) * 86400, "f": float(failed_days) * 86400, "limit": limit},
        )
