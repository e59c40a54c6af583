"""The worker: one job from SQS message to stored result, with the retry decision.

SQS delivers at least once, so every step is safe to repeat: `start_attempt` refuses jobs
that are already finished, and `complete_job` writes the result and the history row in one
transaction that only the first finisher wins. A transient failure puts the job back to
`queued`, stretches the message's visibility for backoff and raises, so that SQS (not this
code) redelivers it and, after `maxReceiveCount` receives, moves it to the dead-letter queue.

While a job runs, its worker holds the job's lease (taken by `start_attempt`) and a heartbeat
renews it and the message's visibility every third of LEASE_SECONDS, so the message stays hidden
however long the job runs. A delivery that finds a live lease does not run the job a second time:
it puts its message back for a lease's length and raises (no failure is recorded). A worker that
dies stops renewing; its lease runs out and the next delivery runs the job again.

A job that ends within its first beat costs two database transactions (taking the lease, then
result + history row + result cache entry in one; a third for the cache lookup when the cache is
on) and no visibility change: its progress is never written, since no poll could tell it from
`processing`. Longer jobs write their progress with each beat and at each step (see `Attempt`).

The SQS event side (a batch of messages to deliveries, partial failures) is `chalicelib.batches`.
"""
from __future__ import annotations

import math
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from chalicelib.alarms import ALARMS
from chalicelib.errors import JobError, TransientError
from chalicelib.jobs import Job, history_row
from chalicelib.queue import MAX_VISIBILITY_SECONDS
from chalicelib.result_cache import Verified, lookup_or_verify
from chalicelib.telemetry import job_finished, logger
from chalicelib.upload_hashing import hash_upload
from chalicelib.vocabulary import CANCELLED, INTERNAL_ERROR, PROGRESS_HASHED, PROGRESS_PERSISTING, PROOF
from chalicelib.wiring import Services, verification


# The heartbeat hides the message half a lease longer than the lease lasts: when a worker dies,
# its lease has run out by the time SQS shows the message again, so that delivery runs the job
# (rather than being put back, which would spend one of the message's receives).
VISIBILITY_PER_LEASE = 1.5


class RetryScheduled(Exception):
    """Raised to leave the message on the queue: SQS redelivers it after the backoff."""


class AttemptAbandoned(Exception):
    """The job was cancelled while this attempt ran: stop, keep no result, consume the message."""


class LeaseHeld(RetryScheduled):
    """Raised for a delivery of a job another worker runs under a live lease: the message stays
    (hidden for a lease's length), neither deleted nor counted as a failure."""


@dataclass(frozen=True)
class Delivery:
    """The parts of an SQS record that the worker needs."""

    job_id: str
    receive_count: int
    receipt_handle: str


def backoff_seconds(base_seconds: float, receive_count: int) -> int:
    """Exponential backoff: base, 2×base, 4×base… for the 1st, 2nd, 3rd failed receive,
    capped at the longest visibility SQS allows."""
    delay = base_seconds * (2 ** max(receive_count - 1, 0))
    return int(min(max(round(delay), 0), MAX_VISIBILITY_SECONDS))


class Attempt:
    """One delivery's run of a job: what it got to (progress, the file's hash), kept in memory and
    written only when someone could see it. A job that ends within its first beat (a third of
    LEASE_SECONDS) writes nothing between taking its lease and its result; from its first beat on,
    each beat writes the progress with the lease's renewal, and each progress step is written as
    it is reached, that step's write also being where a cancel is noticed (a beat notices one too)."""

    def __init__(self, services: Services, job: Job, lease_token: str) -> None:
        self.services, self.job, self.lease_token = services, job, lease_token
        self.progress = job.progress or 0
        self.content_hash: str | None = None
        self.beaten = threading.Event()  # the first beat happened: the attempt is long enough to watch
        self.cancelled = threading.Event()  # a beat found the job cancelled

    def step(self, value: int) -> None:
        """A progress step of the verification (also the hashed step of an upload)."""
        self.progress = max(self.progress, value)
        if self.cancelled.is_set():
            raise AttemptAbandoned(self.job.id)
        if self.beaten.is_set():
            _unless_cancelled(self.services, self.job.id, self.services.store.set_progress(self.job.id, value))


def run_job(services: Services, delivery: Delivery) -> None:
    lease_token, lease_seconds = str(uuid.uuid4()), services.settings.lease_seconds
    job = services.store.start_attempt(delivery.job_id, lease_token, lease_seconds)
    if job is None:
        _not_started(services, delivery)
        return
    started = time.monotonic()
    attempt = Attempt(services, job, lease_token)
    error: JobError | None = None
    with _heartbeat(attempt, delivery):
        try:
            verified = _execute(attempt)
        except AttemptAbandoned:
            logger.info("job cancelled while running; attempt abandoned", extra={"job_id": job.id})
            return
        except Exception as exc:  # every failure is classified; unknown ones count as transient
            error = _as_job_error(exc)
    if error is not None:
        if _is_cancelled(services, job.id):  # e.g. its file was deleted by the cancel mid-read
            logger.info("job cancelled while running; attempt abandoned", extra={"job_id": job.id})
            return
        _handle_failure(services, delivery, job, error, lease_token)
        return
    duration_ms = (time.monotonic() - started) * 1000
    result = verified.result
    history = {**history_row(job, result), "file_hash": attempt.content_hash or job.content_hash}  # what was hashed
    if services.store.complete_job(job.id, result, history, verified.fresh_key):
        logger.info("job completed", extra={"job_id": job.id, "status": _status_of(result), "duration_ms": duration_ms})
        job_finished("Completed", duration_ms)
    elif _is_cancelled(services, job.id):
        logger.info("job cancelled while running; attempt abandoned", extra={"job_id": job.id})
    else:
        logger.info("job was already completed by another delivery", extra={"job_id": job.id})


def _is_cancelled(services: Services, job_id: str) -> bool:
    try:
        current = services.store.get_job(job_id)
    except JobError:  # the database is down: the failure at hand decides
        return False
    return current is not None and current.status == CANCELLED


def _unless_cancelled(services: Services, job_id: str, written: bool) -> None:
    """After a progress write: one that changed nothing may mean the job was cancelled meanwhile
    (or only that an earlier attempt got further); then stop the attempt."""
    if not written and _is_cancelled(services, job_id):
        raise AttemptAbandoned(job_id)


def _not_started(services: Services, delivery: Delivery) -> None:
    """A delivery whose job did not start: consumed, unless another worker holds the job's
    lease, in which case it comes back after a lease's length (by then the job is finished and
    the copy is consumed, or its worker died and the copy runs it)."""
    holder = services.store.lease_holder(delivery.job_id)
    if holder is None:
        logger.info("delivery ignored: job finished, unknown or not ready", extra={"job_id": delivery.job_id})
        return
    seconds = math.ceil(services.settings.lease_seconds)
    logger.info("job is running under another worker's lease; delivery put back",
                extra={"job_id": delivery.job_id, "retry_in_seconds": seconds})
    _hide(services, holder, delivery, seconds)
    raise LeaseHeld(f"job {delivery.job_id} is running under another worker's lease")


@contextmanager
def _heartbeat(attempt: Attempt, delivery: Delivery) -> Iterator[None]:
    """Every third of LEASE_SECONDS until the block ends, renew the lease (writing the attempt's
    progress and file hash with it) and the message's visibility; nothing for a job that ends
    before the first beat, whose lease and message the start of the attempt and the queue's own
    visibility timeout cover (so the beats' thread starts at the first beat: most jobs never
    need one). A renewal that fails (database or queue down) is logged and tried again on the
    next beat: the job goes on, and at worst a copy runs it once the lease runs out. A renewal
    refused because the job was cancelled stops the attempt at its next step."""
    services, job = attempt.services, attempt.job
    seconds = services.settings.lease_seconds
    stop, starting = threading.Event(), threading.Lock()
    beating: list[threading.Thread] = []

    def beats() -> None:
        while True:
            try:
                renewed = services.store.renew_lease(job.id, attempt.lease_token, seconds, attempt.progress,
                                                     attempt.content_hash)
            except TransientError as exc:
                logger.warning("lease renewal failed", extra={"job_id": job.id, "error": exc.message})
            else:
                if not renewed:
                    if _is_cancelled(services, job.id):
                        attempt.cancelled.set()
                    else:
                        logger.warning("lease lost: another delivery runs the job now", extra={"job_id": job.id})
                    return
            attempt.beaten.set()
            _hide(services, job, delivery, math.ceil(seconds * VISIBILITY_PER_LEASE))
            if stop.wait(seconds / 3):
                return

    def first_beat_due() -> None:  # on the alarms' thread: only starts the beats' own
        with starting:
            if not stop.is_set():
                beating.append(threading.Thread(target=beats, name=f"lease-{job.id}", daemon=True))
                beating[0].start()

    first_beat = ALARMS.set(seconds / 3, first_beat_due)
    try:
        yield
    finally:
        with starting:
            stop.set()
        ALARMS.cancel(first_beat)
        for thread in beating:
            thread.join()


def _execute(attempt: Attempt) -> Verified:
    services, job = attempt.services, attempt.job
    if job.object_key:
        attempt.content_hash = file_hash = hash_upload(services.storage, job)
    else:
        file_hash = job.content_hash
    attempt.step(PROGRESS_HASHED)
    settings = services.settings
    rpc_url = job.rpc_url or settings.rpc_url

    def verify() -> dict[str, Any]:
        core = verification()
        if job.type == PROOF:
            return core.prove_hash(
                file_hash, job.file_name or "", job.manifest_uri, job.registry_address, rpc_url, settings, attempt.step
            )
        return core.verify_hash(file_hash, job.manifest_uri, job.registry_address, rpc_url, settings, attempt.step)

    verified = lookup_or_verify(services.store, settings, job.type, file_hash, job.manifest_uri,
                                job.registry_address, rpc_url, job.file_name, verify)
    attempt.step(PROGRESS_PERSISTING)
    return verified


def _as_job_error(exc: Exception) -> JobError:
    if isinstance(exc, JobError):
        return exc
    logger.exception("unexpected error in job; will retry")
    return TransientError("internal error; it has been logged", INTERNAL_ERROR, detail=f"{type(exc).__name__}: {exc}")


def _handle_failure(services: Services, delivery: Delivery, job: Job, error: JobError, lease_token: str) -> None:
    store, settings, job_id = services.store, services.settings, delivery.job_id
    extra = {"job_id": job_id, **error.log_fields(), "receive_count": delivery.receive_count}
    if error.permanent:
        store.fail_job(job_id, error.message, error.code)
        logger.warning("job failed permanently", extra=extra)
        job_finished("Failed")
        return
    if delivery.receive_count >= settings.max_retry_attempts:
        # Last allowed receive: record the failure now and let SQS move the message to the
        # dead-letter queue straight away (visibility 0), where it waits for a redrive.
        store.fail_job(job_id, error.message, error.code)
        _hide(services, job, delivery, 0)
        logger.warning("job failed after its last attempt; message goes to the dead-letter queue", extra=extra)
        job_finished("Failed")
        raise RetryScheduled(error.message)
    delay = backoff_seconds(settings.retry_base_seconds, delivery.receive_count)
    store.schedule_retry(job_id, error.message, error.code, delay, lease_token)
    _hide(services, job, delivery, delay)
    logger.warning("transient failure; retry scheduled", extra={**extra, "retry_in_seconds": delay})
    job_finished("Retried")
    raise RetryScheduled(error.message)


def _hide(services: Services, job: Job, delivery: Delivery, seconds: int) -> None:
    """Set the message's visibility before the handler raises to leave it on the queue. When SQS
    refuses, the queue's own visibility timeout brings the message back instead: a retry sooner or
    later than planned, never a lost job."""
    try:
        services.queue.delay_redelivery(job, delivery.receipt_handle, seconds)
    except TransientError as exc:
        logger.warning("could not set the message's visibility", extra={"job_id": job.id, "error": exc.message})


def _status_of(result: dict[str, Any]) -> str:
    return result.get("status") or result.get("verification", {}).get("status")
