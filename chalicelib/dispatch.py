"""Putting a recorded job on its type's work queue: the one place that sends a job's message.

The order is what keeps jobs from getting lost: the job row exists before its message is sent.
A failed send leaves a `queued` row with no `last_enqueued_at`, which the sweeper re-sends.
"""
from __future__ import annotations

from chalicelib.errors import TransientError
from chalicelib.jobs import Job
from chalicelib.telemetry import logger
from chalicelib.wiring import Services


def enqueue_job(services: Services, job: Job) -> bool:
    """Send a recorded job's message to the queue of its lane (its type's, or the large-file lane's:
    `queue.lane_key`); False when the send failed (the sweeper sends it later, so the request that
    recorded the job still succeeds)."""
    try:
        services.queue.send(job)
    except TransientError as exc:
        logger.warning("enqueue failed; the sweeper will re-send", extra={"job_id": job.id, "error": exc.message})
        return False
    try:
        services.store.mark_enqueued(job.id)
    except TransientError as exc:  # the message is out: the job will run; only the record lags
        logger.warning("job sent but not marked as sent", extra={"job_id": job.id, "error": exc.message})
    return True
