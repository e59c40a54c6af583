"""A Lambda SQS event to the worker's deliveries: the jobs of a batch side by side, and the
partial failures that Chalice cannot report. Lambda deletes the whole batch when the handler
returns and none of it when it raises, and Chalice has no switch for partial batch responses;
so when some jobs are not done, the done ones' messages are deleted here in one request and the
handler raises for the rest, which keep their own visibility, receive count and dead-letter path."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools.utilities.data_classes import SQSEvent, SQSRecord

from chalicelib.errors import TransientError
from chalicelib.queue import BATCH, job_id_from_body
from chalicelib.telemetry import logger
from chalicelib.wiring import Services
from chalicelib.worker import Delivery, RetryScheduled, run_job


def delivery_from_record(record: SQSRecord) -> Delivery | None:
    """A Delivery from a Lambda SQS record, or None when the body is not one of our jobs."""
    job_id = job_id_from_body(record.body or "")
    if job_id is None:
        return None
    receive_count = int(record.attributes.get("ApproximateReceiveCount") or 1)
    return Delivery(job_id=job_id, receive_count=receive_count, receipt_handle=record.receipt_handle)


class BatchItemsFailed(RetryScheduled):
    """Raised for a batch some of whose jobs are not done, once the done ones' messages are
    deleted: the others stay on the queue, each with its own visibility and receive count."""


def process_event(services: Services, event: dict[str, Any]) -> None:
    """Run the jobs of a Lambda SQS event side by side, one thread each (a batch holds at most
    ten, and its container keeps the threads); delete the done ones' messages and raise when some
    are not done. A batch of one raises its own job's exception."""
    records = list(SQSEvent(event).records)
    if len(records) == 1:
        _run_record(services, records[0])
        return
    outcomes = list(_job_threads().map(lambda record: _outcome(services, record), records))
    failed = [record for record, error in zip(records, outcomes) if error is not None]
    if not failed:
        return
    done = [record.receipt_handle for record, error in zip(records, outcomes) if error is None]
    try:
        services.queue.delete_received(records[0].event_source_arn, done)
    except TransientError as exc:  # they come back with the others; their jobs are finished: absorbed
        logger.warning("could not delete the finished jobs' messages", extra={"error": exc.message})
    raise BatchItemsFailed(f"{len(failed)} of {len(records)} messages left for redelivery")


_containers = threading.local()


def _job_threads() -> ThreadPoolExecutor:
    """The threads a batch's jobs run on, started once per container and kept (Lambda runs one
    invocation at a time per container; the local runner's poll threads each play one), rather
    than ten thread starts per invocation."""
    pool = getattr(_containers, "pool", None)
    if pool is None:
        pool = _containers.pool = ThreadPoolExecutor(max_workers=BATCH, thread_name_prefix="job")
    return pool


def _run_record(services: Services, record: SQSRecord) -> None:
    delivery = delivery_from_record(record)
    if delivery is None:
        logger.warning("dropping a message that is not a job", extra={"body": (record.body or "")[:200]})
        return
    run_job(services, delivery)


def _outcome(services: Services, record: SQSRecord) -> Exception | None:
    """None when the record's message may be deleted, else why it stays (already logged)."""
    try:
        _run_record(services, record)
    except RetryScheduled as exc:
        return exc
    except Exception as exc:  # e.g. the database down before the job started: SQS tries again
        logger.exception("job left for redelivery", extra={"message_id": record.message_id})
        return exc
    return None
