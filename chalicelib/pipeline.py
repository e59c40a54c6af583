"""One job from SQS message to stored result, with the retry decision.

SQS delivers at least once, so every step is safe to repeat: `start_attempt` refuses jobs
that are already finished, and `complete_job` writes the result and the history row in one
transaction that only the first finisher wins. A transient failure puts the job back to
`queued`, stretches the message's visibility for backoff and raises, so that SQS (not this
code) redelivers it and, after `maxReceiveCount` receives, moves it to the dead-letter queue.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator
from urllib.parse import unquote_plus

from chalicelib import jobs, queue, storage
from chalicelib.config import Settings
from chalicelib.errors import JobError, TransientError
from chalicelib.telemetry import job_finished, logger
from chalicelib.verification import prove_hash, sha256_stream, verify_hash


# A job's `last_enqueued_at` is written just after its message is sent; a later value than
# that means the job was enqueued again (retry endpoint) after the message was written.
ENQUEUE_RECORD_LAG = timedelta(seconds=2)


class RetryScheduled(Exception):
    """Raised to leave the message on the queue: SQS redelivers it after the backoff."""


@dataclass(frozen=True)
class Delivery:
    """The parts of an SQS record that the pipeline needs."""

    job_id: str
    receive_count: int
    receipt_handle: str


def delivery_from_record(record: dict[str, Any]) -> Delivery | None:
    """A Delivery from a Lambda SQS record, or None when the body is not one of our jobs."""
    job_id = queue.job_id_from_body(record.get("body", ""))
    if job_id is None:
        return None
    receive_count = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
    return Delivery(job_id=job_id, receive_count=receive_count, receipt_handle=record["receiptHandle"])


def objects_from_s3_notification(body: str) -> list[tuple[str, int | None]]:
    """(key, size) of each ObjectCreated record of an S3 notification delivered through SQS.

    Keys arrive URL-encoded. S3's `s3:TestEvent` (sent when notifications are configured)
    and anything else without records yield nothing.
    """
    try:
        notification = json.loads(body)
    except ValueError:
        return []
    records = notification.get("Records", []) if isinstance(notification, dict) else []
    return [
        (unquote_plus(r["s3"]["object"]["key"]), r["s3"]["object"].get("size"))
        for r in records
        if str(r.get("eventName", "")).startswith("ObjectCreated") and "s3" in r
    ]


def run_job(settings: Settings, delivery: Delivery) -> None:
    job = jobs.start_attempt(delivery.job_id)
    if job is None:
        logger.info("delivery ignored: job finished, unknown or not ready", extra={"job_id": delivery.job_id})
        return
    started = time.monotonic()
    try:
        result = _execute(settings, job)
    except Exception as exc:  # every failure is classified; unknown ones count as transient
        _handle_failure(settings, delivery, _as_job_error(exc))
        return
    duration_ms = (time.monotonic() - started) * 1000
    if jobs.complete_job(job.id, result, history_row(job, result)):
        logger.info("job completed", extra={"job_id": job.id, "status": _status_of(result), "duration_ms": duration_ms})
        job_finished("Completed", duration_ms)
    else:
        logger.info("job was already completed by another delivery", extra={"job_id": job.id})


def _execute(settings: Settings, job: jobs.Job) -> dict[str, Any]:
    def progress(value: int) -> None:
        jobs.set_progress(job.id, value)

    if job.object_key:
        file_hash = _hash_object(settings, job)
        jobs.set_content_hash(job.id, file_hash)  # also progress 10
    else:
        file_hash = job.content_hash
        progress(jobs.HASHED_PROGRESS)
    rpc_url = job.rpc_url or settings.rpc_url
    if job.type == "proof":
        result = prove_hash(
            file_hash, job.file_name or "", job.manifest_uri, job.registry_address, rpc_url, settings, progress
        )
    else:
        result = verify_hash(file_hash, job.manifest_uri, job.registry_address, rpc_url, settings, progress)
    progress(90)
    return result


def _hash_object(settings: Settings, job: jobs.Job) -> str:
    """SHA-256 of the stored upload, streamed; logs how long storage took to answer and how
    fast the stream was hashed once it flowed (the worker's own throughput)."""
    requested = time.monotonic()
    size, chunks = storage.stream_object(settings, job.object_key)
    first_byte: list[float] = []

    def timed(stream: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in stream:
            if not first_byte:
                first_byte.append(time.monotonic())
            yield chunk

    file_hash = sha256_stream(timed(chunks))
    done = time.monotonic()
    streaming = done - (first_byte[0] if first_byte else requested)
    logger.info("upload hashed", extra={
        "job_id": job.id, "bytes": size, "seconds": done - requested,
        "first_byte_seconds": (first_byte[0] if first_byte else done) - requested,
        "mib_per_s": size / (1024 * 1024) / streaming if streaming > 0 else None,
    })
    return file_hash


def _as_job_error(exc: Exception) -> JobError:
    if isinstance(exc, JobError):
        return exc
    logger.exception("unexpected error in job; will retry")
    return TransientError(f"internal error: {type(exc).__name__}: {exc}", "INTERNAL_ERROR")


def _handle_failure(settings: Settings, delivery: Delivery, error: JobError) -> None:
    job_id = delivery.job_id
    extra = {"job_id": job_id, "code": error.code, "error": error.message, "receive_count": delivery.receive_count}
    if error.permanent:
        jobs.fail_job(job_id, error.message, error.code)
        logger.warning("job failed permanently", extra=extra)
        job_finished("Failed")
        return
    if delivery.receive_count >= settings.max_retry_attempts:
        # Last allowed receive: record the failure now and let SQS move the message to the
        # dead-letter queue straight away (visibility 0), where it waits for a redrive.
        jobs.fail_job(job_id, error.message, error.code)
        queue.delay_redelivery(settings, delivery.receipt_handle, 0)
        logger.warning("job failed after its last attempt; message goes to the dead-letter queue", extra=extra)
        job_finished("Failed")
        raise RetryScheduled(error.message)
    delay = queue.backoff_seconds(settings, delivery.receive_count)
    jobs.schedule_retry(job_id, error.message, error.code)
    queue.delay_redelivery(settings, delivery.receipt_handle, delay)
    logger.warning("transient failure; retry scheduled", extra={**extra, "retry_in_seconds": delay})
    job_finished("Retried")
    raise RetryScheduled(error.message)


def _status_of(result: dict[str, Any]) -> str:
    return result.get("status") or result.get("verification", {}).get("status")


def history_row(job: jobs.Job, result: dict[str, Any]) -> dict[str, Any]:
    """The verifications-table row for a finished job, from a verify result or a proof."""
    if "verification" in result:  # a proof
        return {
            "file_hash": result["content"]["hash"],
            "creator": result["onchain"]["creator"],
            "recovered": result["signature"]["recovered"],
            "status": result["verification"]["status"],
            "chain_id": result["network"]["chainId"],
            "manifest_uri": job.manifest_uri,
            "registry_address": job.registry_address,
        }
    return {
        "file_hash": result["fileHash"],
        "creator": result["onchain"]["creator"],
        "recovered": result["recovered"],
        "status": result["status"],
        "chain_id": None,
        "manifest_uri": job.manifest_uri,
        "registry_address": job.registry_address,
    }


def reconcile_dead_letters(settings: Settings) -> int:
    """Fail the jobs whose messages reached the dead-letter queue without the worker saying so.

    That happens when a worker dies (crash, timeout) on every attempt. The messages stay in
    the dead-letter queue, counted by the stats and the alarm, until someone redrives them.
    """
    failed = 0
    for job_id, sent_at in queue.peek_dead_letters(settings):
        job = jobs.get_job(job_id)
        if job is None or job.status not in ("queued", "processing"):
            continue
        if job.last_enqueued_at and job.last_enqueued_at > sent_at + ENQUEUE_RECORD_LAG:
            continue  # retried or redriven since this message was written: a newer one is live
        message = job.error or f"the job did not finish after {settings.max_retry_attempts} attempts"
        if jobs.fail_job(job_id, message, job.error_code or "DEAD_LETTERED"):
            failed += 1
            logger.warning("dead-lettered job marked failed", extra={"job_id": job_id, "error": message})
            job_finished("Failed")
    return failed
