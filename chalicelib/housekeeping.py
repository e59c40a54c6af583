"""Housekeeping: uploads that arrive, the scheduled sweep, and the dead-letter queue.

Everything here is idempotent: S3 events repeat, schedules overlap, and a run interrupted
halfway is simply finished by the next one.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, Iterator
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event, SQSEvent

from chalicelib.dispatch import enqueue_job
from chalicelib.errors import TransientError
from chalicelib.jobs import Job
from chalicelib.queue import SCAN_HIDE_SECONDS
from chalicelib.telemetry import job_finished, logger
from chalicelib.vocabulary import CANCELLED, DEAD_LETTERED, QUEUE_UNAVAILABLE, UNFINISHED_STATUSES
from chalicelib.wiring import Services

# A job's `last_enqueued_at` is written just after its message is sent; a later value than
# that means the job was enqueued again (retry endpoint) after the message was written.
ENQUEUE_RECORD_LAG = timedelta(seconds=2)


# --- uploads that arrive -----------------------------------------------------------------------

def objects_created(body: str) -> Iterator[tuple[str, int | None]]:
    """(key, size) of each ObjectCreated record of an S3 notification delivered through SQS.
    Keys arrive URL-encoded. S3's `s3:TestEvent` and anything else without records yield nothing."""
    try:
        notification = json.loads(body)
    except ValueError:
        return
    if not isinstance(notification, dict) or not isinstance(notification.get("Records"), list):
        return
    for record in S3Event(notification).records:
        if record.event_name.startswith("ObjectCreated") and "s3" in record:
            obj = record.s3.get_object
            yield unquote_plus(obj.key), obj.get("size")


class UploadEventsFailed(Exception):
    """Raised when some events of a batch could not be handled: the others were deleted already,
    so SQS delivers only these again (and, after maxReceiveCount, moves them to the dead-letter queue)."""


def uploads_arrived(services: Services, event: dict[str, Any]) -> None:
    """Each object an SQS batch of S3 notifications announces. One event that fails (a malformed
    notification, the database down) neither holds back nor repeats the others: Chalice has no
    partial batch responses, so when any fails the ones handled are deleted here and the handler
    raises for the rest (DESIGN.md)."""
    handled, failed = [], []
    for record in SQSEvent(event).records:
        try:
            for key, size in objects_created(record.body or ""):
                upload_arrived(services, key, size)
        except Exception:  # whatever went wrong, this event is retried alone
            logger.exception("upload event failed; it will be retried", extra={"message_id": record.message_id})
            failed.append(record.message_id)
        else:
            handled.append(record.receipt_handle)
    if failed:
        if handled:
            services.queue.delete_upload_events(handled)
        raise UploadEventsFailed(f"{len(failed)} of {len(failed) + len(handled)} upload events failed: {failed}")


def upload_arrived(services: Services, key: str, size: int | None) -> bool:
    """An object landed under the uploads prefix: queue its job, once however often S3 says so."""
    job_id = services.storage.job_id_from_key(key)
    if job_id is None:
        logger.info("ignoring object outside the uploads prefix", extra={"key": key})
        return False
    job = services.store.mark_upload_received(job_id, size)
    if job is None:
        current = services.store.get_job(job_id)
        if current is not None and current.status == CANCELLED:  # the file came after the cancel: it has no use
            services.storage.delete_object(key)
            logger.info("upload of a cancelled job deleted", extra={"job_id": job_id})
            return False
        logger.info("upload event for a job that is not awaiting upload (repeat or late)", extra={"job_id": job_id})
        return False
    enqueue_job(services, job)
    return True


def abort_multipart_upload(services: Services, job: Job) -> bool:
    """Drop the parts of a finished job's open multipart upload, if it has one; False when S3
    could not be reached (the next sweep tries again)."""
    if job.multipart_upload_id is None or job.object_key is None:
        return True
    try:
        services.storage.abort_multipart_upload(job.object_key, job.multipart_upload_id)
    except TransientError as exc:
        logger.warning("could not abort a multipart upload", extra={"job_id": job.id, "error": exc.message})
        return False
    services.store.forget_multipart_upload(job.id)
    logger.info("multipart upload aborted", extra={"job_id": job.id})
    return True


# --- the scheduled sweep -----------------------------------------------------------------------

@dataclass
class SweepReport:
    resent: int = 0
    uploads_expired: int = 0
    objects_deleted: int = 0
    objects_kept: int = 0  # their delete (or multipart abort) failed; the next sweep tries again
    multipart_uploads_aborted: int = 0  # of jobs that expired or were cancelled: no parts left behind
    jobs_removed: int = 0
    cached_results_removed: int = 0  # result cache entries past RESULT_CACHE_SECONDS


def sweep(services: Services) -> SweepReport:
    """Re-send stuck jobs, expire uploads that never came (aborting their multipart uploads),
    delete old objects, jobs and cached results."""
    store, settings, report = services.store, services.settings, SweepReport()
    for job in store.jobs_to_resend(settings.stuck_queued_seconds):
        report.resent += enqueue_job(services, job)
    for job in store.expire_uploads():
        report.uploads_expired += 1
        job_finished("Failed")
    for job in store.jobs_with_open_multipart_uploads():
        if abort_multipart_upload(services, job):
            report.multipart_uploads_aborted += 1
        else:
            report.objects_kept += 1
    # Completed jobs' files go at once; failed jobs keep theirs for a retry until retention ends.
    for job in store.finished_jobs_with_objects(0.0, settings.failed_retention_days * 86400):
        try:
            services.storage.delete_object(job.object_key)
        except TransientError as exc:  # one object that cannot go now must not stop the others
            logger.warning("could not delete an upload", extra={"job_id": job.id, "error": exc.message})
            report.objects_kept += 1
            continue
        store.clear_object_key(job.id)
        report.objects_deleted += 1
    report.jobs_removed = store.delete_old_jobs(settings.completed_retention_days, settings.failed_retention_days)
    if settings.result_cache_seconds > 0:  # with the cache off nothing is written, so nothing to sweep
        report.cached_results_removed = store.delete_stale_results(settings.result_cache_seconds)
    store.delete_ended_windows()  # the rate limiter's past minutes
    if report != SweepReport():
        logger.info("sweep done", extra=asdict(report))
    return report


# --- the dead-letter queue ---------------------------------------------------------------------

def reconcile_dead_letters(services: Services) -> int:
    """Fail the jobs whose messages reached the dead-letter queue without the worker saying so.

    That happens when a worker dies (crash, timeout) on every attempt. The messages stay in
    the dead-letter queue, counted by the stats and the alarm, until someone redrives them.
    """
    store, failed = services.store, 0
    for message in services.queue.peek_dead_letters():
        job = store.get_job(message.job_id) if message.job_id else None
        if job is None or job.status not in UNFINISHED_STATUSES:
            continue
        if job.last_enqueued_at and job.last_enqueued_at > message.sent_at + ENQUEUE_RECORD_LAG:
            continue  # retried or redriven since this message was written: a newer one is live
        reason = job.error or f"the job did not finish after {services.settings.max_retry_attempts} attempts"
        if store.fail_job(job.id, reason, job.error_code or DEAD_LETTERED):
            failed += 1
            logger.warning("dead-lettered job marked failed", extra={"job_id": job.id, "error": reason})
            job_finished("Failed")
    return failed


@dataclass
class RedriveReport:
    moved: list[str]  # job ids of the messages moved back to their work queues
    remaining: int  # messages still in the dead-letter queues: call again while above 0


def redrive_dead_letters(services: Services) -> RedriveReport:
    """Move up to REDRIVE_BATCH_MESSAGES dead-letter messages back to the work queue of their
    lane, batch by batch, so that one request ends well within API Gateway's 29 s. Each batch's
    failed jobs go back to `queued` before their messages go out, so a worker that picks one up
    at once finds it ready; a job whose message the work queue then refuses goes back to `failed`
    (its message is still dead-lettered), never left `queued` where neither the sweeper nor the
    reconciler would look at it."""
    store, moved, limit = services.store, [], services.settings.redrive_batch_messages
    while len(moved) < limit and (batch := services.queue.receive_dead_letters(SCAN_HIDE_SECONDS, limit - len(moved))):
        requeued = set(store.requeue_dead_lettered([m.job_id for m in batch if m.job_id]))
        try:
            sent = services.queue.move_to_work_queue(batch)
        except TransientError:
            sent = []
        sent_ids = {m.job_id for m in sent}
        for job_id in requeued - sent_ids:
            store.fail_job(job_id, "the redrive could not re-send this job; it is still in the dead-letter queue",
                           DEAD_LETTERED)
        if not sent:
            raise TransientError("the work queue refused the redriven messages", QUEUE_UNAVAILABLE)
        moved.extend(m.job_id for m in sent if m.job_id)
    return RedriveReport(moved=moved, remaining=services.queue.dead_letters_left())
