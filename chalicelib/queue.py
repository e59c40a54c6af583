"""The SQS adapter for the work queue and its dead-letter queue: send, delay, depth, scan, move.

A message carries only `{"jobId": ...}`; everything else lives in the job row, so a message
can be re-sent or redriven any number of times without carrying stale data. Every botocore
failure comes out as TransientError(QUEUE_UNAVAILABLE).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from chalicelib.aws import LazyClient, unavailable_as
from chalicelib.config import Settings
from chalicelib.vocabulary import QUEUE_UNAVAILABLE

# SQS refuses a visibility that takes a message past 12 hours from its receive; a worker holds it
# for at most a Lambda timeout (15 minutes) before asking, so the longest backoff leaves that much.
MAX_VISIBILITY_SECONDS = 12 * 60 * 60 - 15 * 60
SCAN_HIDE_SECONDS = 30  # a dead-letter scan hides what it has read, so each receive brings new ones
BATCH = 10  # SQS's most messages per receive and per batch call


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


@dataclass(frozen=True)
class QueueDepth:
    waiting: int
    active: int
    delayed: int
    dead_letter: int


@dataclass(frozen=True)
class DeadLetter:
    """A message of the dead-letter queue, as a redrive or a scan sees it."""

    job_id: str | None
    body: str
    receipt_handle: str
    sent_at: datetime  # SQS keeps the first SentTimestamp when it dead-letters a message


class WorkQueue:
    def __init__(self, settings: Settings, sqs: Any = None) -> None:
        self.url = settings.queue_url
        self.dead_letter_url = settings.dead_letter_queue_url
        self.sqs = LazyClient("sqs", sqs)

    def send(self, job_id: str) -> None:
        with unavailable_as(QUEUE_UNAVAILABLE, "enqueue the job"):
            self.sqs().send_message(QueueUrl=self.url, MessageBody=message_body(job_id))

    def delay_redelivery(self, receipt_handle: str, seconds: int) -> None:
        """Hold the message invisible for `seconds`: SQS redelivers it when they run out."""
        with unavailable_as(QUEUE_UNAVAILABLE, "delay the message"):
            self.sqs().change_message_visibility(QueueUrl=self.url, ReceiptHandle=receipt_handle,
                                               VisibilityTimeout=min(max(seconds, 0), MAX_VISIBILITY_SECONDS))

    def check(self) -> None:
        """Raise when the work queue cannot be reached (the health check)."""
        with unavailable_as(QUEUE_UNAVAILABLE, "reach the work queue"):
            self.sqs().get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])

    def depth(self) -> QueueDepth:
        """Approximate message counts of both queues (SQS's own figures, a few seconds stale)."""
        with unavailable_as(QUEUE_UNAVAILABLE, "read the queue depth"):
            main = self.sqs().get_queue_attributes(QueueUrl=self.url, AttributeNames=["All"])["Attributes"]
            dead = {}
            if self.dead_letter_url:
                dead = self.sqs().get_queue_attributes(
                    QueueUrl=self.dead_letter_url, AttributeNames=["ApproximateNumberOfMessages"]
                )["Attributes"]
        return QueueDepth(
            waiting=int(main.get("ApproximateNumberOfMessages", 0)),
            active=int(main.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(main.get("ApproximateNumberOfMessagesDelayed", 0)),
            dead_letter=int(dead.get("ApproximateNumberOfMessages", 0)),
        )

    def receive_dead_letters(self, hide_seconds: int) -> list[DeadLetter]:
        """Up to ten dead-letter messages, hidden from other readers for `hide_seconds`."""
        if not self.dead_letter_url:
            return []
        with unavailable_as(QUEUE_UNAVAILABLE, "read the dead-letter queue"):
            messages = self.sqs().receive_message(
                QueueUrl=self.dead_letter_url, MaxNumberOfMessages=BATCH, VisibilityTimeout=hide_seconds,
                WaitTimeSeconds=0, AttributeNames=["SentTimestamp"],
            ).get("Messages", [])
        return [DeadLetter(
            job_id=job_id_from_body(m["Body"]), body=m["Body"], receipt_handle=m["ReceiptHandle"],
            sent_at=datetime.fromtimestamp(int(m.get("Attributes", {}).get("SentTimestamp", "0")) / 1000,
                                           timezone.utc),
        ) for m in messages]

    def peek_dead_letters(self, max_messages: int = 100) -> list[DeadLetter]:
        """The messages of the dead-letter queue, left there. Each receive hides what it read,
        so the next one brings others (a receive that may show the same ones again would end
        the scan early); at the end all of them are made visible again."""
        found: list[DeadLetter] = []
        try:
            while len(found) < max_messages:
                batch = self.receive_dead_letters(SCAN_HIDE_SECONDS)
                if not batch:
                    break
                found.extend(batch)
        finally:
            self.release(found)
        return found

    def release(self, messages: list[DeadLetter]) -> None:
        """Make dead-letter messages visible again at once."""
        for start in range(0, len(messages), BATCH):
            chunk = messages[start:start + BATCH]
            with unavailable_as(QUEUE_UNAVAILABLE, "release the dead-letter messages"):
                self.sqs().change_message_visibility_batch(QueueUrl=self.dead_letter_url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
                    for i, m in enumerate(chunk)])

    def move_to_work_queue(self, messages: list[DeadLetter]) -> list[DeadLetter]:
        """Send dead-letter messages (at most ten) to the work queue, then delete the ones sent
        from the dead-letter queue; returns those. Send first, delete second: a crash in between
        leaves a duplicate, which the worker absorbs, never a lost message."""
        with unavailable_as(QUEUE_UNAVAILABLE, "redrive the dead-letter messages"):
            sent = self.sqs().send_message_batch(
                QueueUrl=self.url, Entries=[{"Id": str(i), "MessageBody": m.body} for i, m in enumerate(messages)],
            ).get("Successful", [])
            done = [messages[int(entry["Id"])] for entry in sent]
            if done:
                self.sqs().delete_message_batch(QueueUrl=self.dead_letter_url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(done)])
        return done
