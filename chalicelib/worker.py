"""The worker: one job from SQS message to stored result, with the retry decision.

SQS delivers at least once, so every step is safe to repeat: `start_attempt` refuses jobs
that are already finished, and `complete_job` writes the result and the history row in one
transaction that only the first finisher wins. A transient failure puts the job back to
`queued`, stretches the message's visibility for backoff and raises, so that SQS (not this
code) redelivers it and, after `maxReceiveCount` receives, moves it to the dead-letter queue.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator

from aws_lambda_powertools.utilities.data_classes import SQSEvent, SQSRecord

from chalicelib.errors import JobError, TransientError
from chalicelib.jobs import Job
from chalicelib.queue import MAX_VISIBILITY_SECONDS, job_id_from_body
from chalicelib.result_cache import cached_verification
from chalicelib.telemetry import job_finished, logger
from chalicelib.verification import sha256_stream
from chalicelib.vocabulary import INTERNAL_ERROR, PROGRESS_HASHED, PROGRESS_PERSISTING, PROOF
from chalicelib.wiring import Services, verification


class RetryScheduled(Exception):
    """Raised to leave the message on the queue: SQS redelivers it after the backoff."""


@dataclass(frozen=True)
class Delivery:
    """The parts of an SQS record that the worker needs."""

    job_id: str
    receive_count: int
    receipt_handle: str


def delivery_from_record(record: SQSRecord) -> Delivery | None:
    """A Delivery from a Lambda SQS record, or None when the body is not one of our jobs."""
    job_id = job_id_from_body(record.body or "")
    if job_id is None:
        return None
    receive_count = int(record.attributes.get("ApproximateReceiveCount") or 1)
    return Delivery(job_id=job_id, receive_count=receive_count, receipt_handle=record.receipt_handle)


def process_event(services: Services, event: dict[str, Any]) -> None:
    """Run the job of each record of a Lambda SQS event; raising leaves the message for SQS."""
    for record in SQSEvent(event).records:
        delivery = delivery_from_record(record)
        if delivery is None:
            logger.warning("dropping a message that is not a job", extra={"body": (record.body or "")[:200]})
            continue
        run_job(services, delivery)


def backoff_seconds(base_seconds: float, receive_count: int) -> int:
    """Exponential backoff: base, 2×base, 4×base… for the 1st, 2nd, 3rd failed receive,
    capped at the longest visibility SQS allows."""
    delay = base_seconds * (2 ** max(receive_count - 1, 0))
    return int(min(max(round(delay), 0), MAX_VISIBILITY_SECONDS))


def run_job(services: Services, delivery: Delivery) -> None:
    job = services.store.start_attempt(delivery.job_id)
    if job is None:
        logger.info("delivery ignored: job finished, unknown or not ready", extra={"job_id": delivery.job_id})
        return
    started = time.monotonic()
    try:
        result = _execute(services, job)
    except Exception as exc:  # every failure is classified; unknown ones count as transient
        _handle_failure(services, delivery, _as_job_error(exc))
        return
    duration_ms = (time.monotonic() - started) * 1000
    if services.store.complete_job(job.id, result, history_row(job, result)):
        logger.info("job completed", extra={"job_id": job.id, "status": _status_of(result), "duration_ms": duration_ms})
        job_finished("Completed", duration_ms)
    else:
        logger.info("job was already completed by another delivery", extra={"job_id": job.id})


def _execute(services: Services, job: Job) -> dict[str, Any]:
    def progress(value: int) -> None:
        services.store.set_progress(job.id, value)

    if job.object_key:
        file_hash = _hash_object(services, job)
        services.store.set_content_hash(job.id, file_hash)  # also the "hashed" progress step
    else:
        file_hash = job.content_hash
        progress(PROGRESS_HASHED)
    settings = services.settings
    rpc_url = job.rpc_url or settings.rpc_url

    def verify() -> dict[str, Any]:
        core = verification()
        if job.type == PROOF:
            return core.prove_hash(
                file_hash, job.file_name or "", job.manifest_uri, job.registry_address, rpc_url, settings, progress
            )
        return core.verify_hash(file_hash, job.manifest_uri, job.registry_address, rpc_url, settings, progress)

    result = cached_verification(services.store, settings, job.type, file_hash, job.manifest_uri,
                                 job.registry_address, rpc_url, job.file_name, verify)
    progress(PROGRESS_PERSISTING)
    return result


def _hash_object(services: Services, job: Job) -> str:
    """SHA-256 of the stored upload, streamed; logs how long storage took to answer and how
    fast the stream was hashed once it flowed (the worker's own throughput)."""
    requested = time.monotonic()
    size, chunks = services.storage.stream_object(job.object_key)
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
    return TransientError(f"internal error: {type(exc).__name__}: {exc}", INTERNAL_ERROR)


def _handle_failure(services: Services, delivery: Delivery, error: JobError) -> None:
    store, settings, job_id = services.store, services.settings, delivery.job_id
    extra = {"job_id": job_id, "code": error.code, "error": error.message, "receive_count": delivery.receive_count}
    if error.permanent:
        store.fail_job(job_id, error.message, error.code)
        logger.warning("job failed permanently", extra=extra)
        job_finished("Failed")
        return
    if delivery.receive_count >= settings.max_retry_attempts:
        # Last allowed receive: record the failure now and let SQS move the message to the
        # dead-letter queue straight away (visibility 0), where it waits for a redrive.
        store.fail_job(job_id, error.message, error.code)
        services.queue.delay_redelivery(delivery.receipt_handle, 0)
        logger.warning("job failed after its last attempt; message goes to the dead-letter queue", extra=extra)
        job_finished("Failed")
        raise RetryScheduled(error.message)
    delay = backoff_seconds(settings.retry_base_seconds, delivery.receive_count)
    store.schedule_retry(job_id, error.message, error.code)
    services.queue.delay_redelivery(delivery.receipt_handle, delay)
    logger.warning("transient failure; retry scheduled", extra={**extra, "retry_in_seconds": delay})
    job_finished("Retried")
    raise RetryScheduled(error.message)


def _status_of(result: dict[str, Any]) -> str:
    return result.get("status") or result.get("verification", {}).get("status")


def history_row(job: Job, result: dict[str, Any]) -> dict[str, Any]:
    """The verifications-table row for a finished job, from a verify result or a proof."""
    if "verification" in result:  # a proof
        facts = {"file_hash": result["content"]["hash"], "recovered": result["signature"]["recovered"],
                 "status": result["verification"]["status"], "chain_id": result["network"]["chainId"]}
    else:
        facts = {"file_hash": result["fileHash"], "recovered": result["recovered"],
                 "status": result["status"], "chain_id": result["evidence"]["chainId"]}
    return {**facts, "creator": result["onchain"]["creator"],
            "manifest_uri": job.manifest_uri, "registry_address": job.registry_address}
