"""Housekeeping on a schedule, and the S3 event that starts an uploaded job.

Everything here is idempotent: S3 events repeat, schedules overlap, and a sweep interrupted
halfway is simply finished by the next one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from chalicelib import jobs, queue, storage
from chalicelib.config import Settings
from chalicelib.telemetry import job_finished, logger


def upload_arrived(settings: Settings, key: str, size: int | None) -> bool:
    """An object landed under the uploads prefix: queue its job, once however often S3 says so."""
    job_id = storage.job_id_from_key(settings, key)
    if job_id is None:
        logger.info("ignoring object outside the uploads prefix", extra={"key": key})
        return False
    if not jobs.mark_upload_received(job_id, size):
        logger.info("upload event for a job that is not awaiting upload (repeat or late)", extra={"job_id": job_id})
        return False
    queue.enqueue_job(settings, job_id)
    return True


@dataclass
class SweepReport:
    resent: int = 0
    uploads_expired: int = 0
    objects_deleted: int = 0
    jobs_removed: int = 0


def sweep(settings: Settings) -> SweepReport:
    report = SweepReport()
    for job in jobs.jobs_to_resend(settings.stuck_queued_seconds):
        report.resent += queue.enqueue_job(settings, job.id)
    for job in jobs.expire_uploads():
        report.uploads_expired += 1
        job_finished("Failed")
    # Completed jobs' files go at once; failed jobs keep theirs for a retry until retention ends.
    for job in jobs.finished_jobs_with_objects():
        storage.delete_object(settings, job.object_key)
        jobs.clear_object_key(job.id)
        report.objects_deleted += 1
    report.jobs_removed = jobs.delete_old_jobs(settings.completed_retention_days, settings.failed_retention_days)
    if report != SweepReport():
        logger.info("sweep done", extra=asdict(report))
    return report
