"""The work queue and its dead-letter queue on SQS: sending jobs, backoff, depth, redrive.

A message carries only `{"jobId": ...}`; everything else lives in the job row, so a message
can be re-sent or redriven any number of times without carrying stale data.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import jobs
from chalicelib.aws import client
from chalicelib.config import Settings
from chalicelib.errors import TransientError
from chalicelib.telemetry import logger

MAX_VISIBILITY_SECONDS = 12 * 60 * 60


def message_body(job_id: str) -> str:
    return json.dumps({"jobId": job_id})


def job_id_from_body(body: str) -> str | None:
    """The job id of a message, or None for a message this service did not write."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    job_id = data.get("jobId") if isinstance(data, dict) else None
    return job_id if isinstance(job_id, str) else None


def send_job(settings: Settings, job_id: str) -> None:
    try:
        client("sqs").send_message(QueueUrl=settings.queue_url, MessageBody=message_body(job_id))
    except (BotoCoreError, ClientError) as exc:
        raise TransientError(f"could not enqueue the job: {exc}", "QUEUE_UNAVAILABLE") from exc


def enqueue_job(settings: Settings, job_id: str) -> bool:
    """Send a recorded job's message. On failure the job stays `queued` with no
    `last_enqueued_at`, and the sweeper sends it later: the request still succeeds."""
    try:
        send_job(settings, job_id)
    except TransientError as exc:
        logger.warning("enqueue failed; the sweeper will re-send", extra={"job_id": job_id, "error": exc.message})
        return False
    try:
        jobs.mark_enqueued(job_id)
    except TransientError as exc:  # the message is out: the job will run; only the record lags
        logger.warning("job sent but not marked as sent", extra={"job_id": job_id, "error": exc.message})
    return True


def backoff_seconds(settings: Settings, receive_count: int) -> int:
    """Exponential backoff: base, 2×base, 4×base… for the 1st, 2nd, 3rd failed receive."""
    delay = settings.retry_base_seconds * (2 ** max(receive_count - 1, 0))
    return int(min(max(round(delay), 0), MAX_VISIBILITY_SECONDS))


def delay_redelivery(settings: Settings, receipt_handle: str, seconds: int) -> None:
    """Hold the message invisible for `seconds`: SQS redelivers it when they run out."""
    client("sqs").change_message_visibility(
        QueueUrl=settings.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
    )


@dataclass(frozen=True)
class QueueDepth:
    waiting: int
    active: int
    delayed: int
    dead_letter: int


def depth(settings: Settings) -> QueueDepth:
    """Approximate message counts of both queues (SQS's own figures, a few seconds stale)."""
    sqs = client("sqs")
    main = sqs.get_queue_attributes(QueueUrl=settings.queue_url, AttributeNames=["All"])["Attributes"]
    dead = 0
    if settings.dead_letter_queue_url:
        dlq = sqs.get_queue_attributes(
            QueueUrl=settings.dead_letter_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        dead = int(dlq.get("ApproximateNumberOfMessages", 0))
    return QueueDepth(
        waiting=int(main.get("ApproximateNumberOfMessages", 0)),
        active=int(main.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(main.get("ApproximateNumberOfMessagesDelayed", 0)),
        dead_letter=dead,
    )


def peek_dead_letters(settings: Settings, max_messages: int = 100) -> list[tuple[str, datetime]]:
    """(job id, first sent) of the messages in the dead-letter queue, leaving them there.

    SQS keeps a message's SentTimestamp when it moves it to the dead-letter queue, so the time
    tells whether a job was enqueued again (retry, redrive) after this message was written.
    """
    if not settings.dead_letter_queue_url:
        return []
    sqs = client("sqs")
    found: list[tuple[str, datetime]] = []
    seen: set[str] = set()
    while len(seen) < max_messages:
        try:
            messages = sqs.receive_message(
                QueueUrl=settings.dead_letter_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                WaitTimeSeconds=0, AttributeNames=["SentTimestamp"],
            ).get("Messages", [])
        except (BotoCoreError, ClientError) as exc:
            raise TransientError(f"could not read the dead-letter queue: {exc}", "QUEUE_UNAVAILABLE") from exc
        fresh = [m for m in messages if m["MessageId"] not in seen]
        if not fresh:
            break
        for message in fresh:
            seen.add(message["MessageId"])
            job_id = job_id_from_body(message["Body"])
            if job_id:
                sent = int(message.get("Attributes", {}).get("SentTimestamp", "0")) / 1000
                found.append((job_id, datetime.fromtimestamp(sent, timezone.utc)))
    return found


def redrive_dead_letters(settings: Settings, before_send: Callable[[list[str]], object]) -> list[str]:
    """Move every dead-letter message back to the work queue; returns the job ids moved.

    `before_send` gets each batch's job ids before the messages go out, so their jobs are
    ready for a worker that picks them up at once. Send first, delete second: a crash in
    between leaves a duplicate, which the worker absorbs, never a lost message.
    """
    if not settings.dead_letter_queue_url:
        return []
    sqs = client("sqs")
    moved: list[str] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=settings.dead_letter_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            return moved
        before_send([j for m in messages if (j := job_id_from_body(m["Body"]))])
        sent = sqs.send_message_batch(
            QueueUrl=settings.queue_url,
            Entries=[{"Id": str(i), "MessageBody": m["Body"]} for i, m in enumerate(messages)],
        ).get("Successful", [])
        done = [messages[int(entry["Id"])] for entry in sent]
        if not done:
            raise TransientError("the work queue refused the redriven messages", "QUEUE_UNAVAILABLE")
        sqs.delete_message_batch(
            QueueUrl=settings.dead_letter_queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
        )
        moved.extend(j for m in done if (j := job_id_from_body(m["Body"])))
