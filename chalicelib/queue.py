"""The SQS adapter for the work queues, their dead-letter queues and the upload-events queue:
send, delay, delete, depth, scan, move.

Each job has a lane: a work queue and that queue's dead-letter queue. A job goes to its type's
lane (verify jobs on QUEUE_URL, proofs on PROOF_QUEUE_URL; a deployment without a proof queue runs
both on one), unless its file is over LARGE_FILE_BYTES: then to the large-file lane
(LARGE_QUEUE_URL), whose worker has the time to hash it. `lane_key` is that rule, and every sender
(enqueue, sweeper re-send, retry) and the worker's visibility changes go through it; a redrive
sends a message back to the lane whose dead-letter queue held it.
A message carries only `{"jobId": ...}`; everything else lives in the job row, so a message
can be re-sent or redriven any number of times without carrying stale data. Every botocore
failure comes out as TransientError(QUEUE_UNAVAILABLE).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from chalicelib.aws import LazyClient, unavailable_as
from chalicelib.config import Settings
from chalicelib.errors import TransientError
from chalicelib.vocabulary import JOB_TYPES, PROOF, QUEUE_UNAVAILABLE, VERIFY

# SQS refuses a visibility that takes a message past 12 hours from its receive; a worker holds it
# for at most a Lambda timeout (15 minutes) before asking, so the longest backoff leaves that much.
MAX_VISIBILITY_SECONDS = 12 * 60 * 60 - 15 * 60
SCAN_HIDE_SECONDS = 30  # a dead-letter scan hides what it has read, so each receive brings new ones
BATCH = 10  # SQS's most messages per receive and per batch call
LARGE = "large"  # the lane of jobs whose file is over LARGE_FILE_BYTES, whatever their type


class Routable(Protocol):
    """What a send and the lane rule read of a job (a Job has all three)."""

    id: str
    type: str
    file_size: int | None


def lane_key(job: Routable, large_file_bytes: int) -> str:
    """The lane a job belongs to: LARGE for a file over `large_file_bytes`, else its job type. A
    job's size is known before it is first queued (declared, inline, or from the S3 event), so
    every send and visibility change of one job lands on the same queue."""
    if job.type not in JOB_TYPES:
        raise ValueError(f"unknown job type: {job.type!r}")
    return LARGE if (job.file_size or 0) > large_file_bytes else job.type


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
class Lane:
    """One job type's work queue and its dead-letter queue."""

    job_type: str
    url: str | None
    dead_letter_url: str | None


@dataclass(frozen=True)
class QueueDepth:
    """SQS's approximate counts: visible, in flight (received, or hidden for a retry's backoff)
    and dead-lettered messages. Retries are hidden received messages, not SQS-delayed ones, so
    the jobs waiting out a backoff come from the database (the stats' `delayed`)."""

    waiting: int = 0
    active: int = 0
    dead_letter: int = 0

    def __add__(self, other: "QueueDepth") -> "QueueDepth":
        return QueueDepth(self.waiting + other.waiting, self.active + other.active,
                          self.dead_letter + other.dead_letter)


@dataclass(frozen=True)
class Depths:
    """The queues' figures, in all, per job type's lane (lanes that share a queue count it once),
    and of the large-file lane when there is one (jobs of both types, counted there only)."""

    total: QueueDepth
    by_type: dict[str, QueueDepth] = field(default_factory=dict)
    large: QueueDepth | None = None


@dataclass(frozen=True)
class DeadLetter:
    """A message of a dead-letter queue, as a redrive or a scan sees it."""

    job_id: str | None
    body: str
    receipt_handle: str
    sent_at: datetime  # SQS keeps the first SentTimestamp when it dead-letters a message
    lane: Lane  # the lane whose dead-letter queue holds it: a redrive sends it back to lane.url


class WorkQueue:
    def __init__(self, settings: Settings, sqs: Any = None) -> None:
        verify = Lane(VERIFY, settings.queue_url, settings.dead_letter_queue_url)
        proof = Lane(PROOF, settings.proof_queue_url, settings.proof_dead_letter_queue_url) \
            if settings.proof_queue_url else Lane(PROOF, verify.url, verify.dead_letter_url)
        large = Lane(LARGE, settings.large_queue_url, settings.large_dead_letter_queue_url) \
            if settings.large_queue_url else None
        self.lanes = {VERIFY: verify, PROOF: proof, **({LARGE: large} if large else {})}
        self.large_file_bytes = settings.large_file_bytes
        self.upload_events_url = settings.upload_events_queue_url
        self.upload_events_name = settings.upload_events_queue_name
        self.sqs = LazyClient("sqs", sqs)

    def lane(self, job: Routable) -> Lane:
        """The job's lane by `lane_key`; without a large-file queue, its type's lane."""
        key = lane_key(job, self.large_file_bytes)
        return self.lanes.get(key) or self.lanes[job.type]

    def _distinct_lanes(self, attribute: str) -> list[Lane]:
        """One lane per distinct queue URL in `attribute` (a queue two lanes share counts once)."""
        seen: dict[str, Lane] = {}
        for lane in self.lanes.values():
            url = getattr(lane, attribute)
            if url and url not in seen:
                seen[url] = lane
        return list(seen.values())

    def send(self, job: Routable) -> None:
        with unavailable_as(QUEUE_UNAVAILABLE, "enqueue the job"):
            self.sqs().send_message(QueueUrl=self.lane(job).url, MessageBody=message_body(job.id))

    def delay_redelivery(self, job: Routable, receipt_handle: str, seconds: int) -> None:
        """Hold a message of the job's queue invisible for `seconds`: SQS redelivers it when they
        run out. Also the lease's heartbeat, which keeps a running job's message invisible."""
        with unavailable_as(QUEUE_UNAVAILABLE, "change the message's visibility"):
            self.sqs().change_message_visibility(QueueUrl=self.lane(job).url, ReceiptHandle=receipt_handle,
                                                 VisibilityTimeout=min(max(seconds, 0), MAX_VISIBILITY_SECONDS))

    def delete_upload_events(self, receipt_handles: list[str]) -> None:
        """Delete handled messages of the upload-events queue (a batch's successes, so that a
        failure elsewhere in the batch does not make SQS deliver them again)."""
        with unavailable_as(QUEUE_UNAVAILABLE, "delete the handled upload events"):
            url = self.upload_events_url or self.sqs().get_queue_url(QueueName=self.upload_events_name)["QueueUrl"]
            self._delete(url, receipt_handles, "upload events")

    def delete_received(self, queue_arn: str, receipt_handles: list[str]) -> None:
        """Delete messages a worker received from the work queue `queue_arn` (the event's
        eventSourceARN): the finished jobs of a batch whose other jobs fail, which Lambda would
        otherwise deliver again with them."""
        if not receipt_handles:
            return
        name = queue_arn.rsplit(":", 1)[-1]
        with unavailable_as(QUEUE_UNAVAILABLE, "delete the finished jobs' messages"):
            url = next((lane.url for lane in self.lanes.values() if lane.url and lane.url.rsplit("/", 1)[-1] == name),
                       None) or self.sqs().get_queue_url(QueueName=name)["QueueUrl"]
            self._delete(url, receipt_handles, "finished jobs' messages")

    def _delete(self, url: str, receipt_handles: list[str], what: str) -> None:
        for start in range(0, len(receipt_handles), BATCH):
            answer = self.sqs().delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": handle}
                for i, handle in enumerate(receipt_handles[start:start + BATCH])])
            if answer.get("Failed"):
                raise TransientError(f"could not delete {what}: {answer['Failed']}", QUEUE_UNAVAILABLE)

    def check(self) -> None:
        """Raise when a work queue cannot be reached (the health check)."""
        with unavailable_as(QUEUE_UNAVAILABLE, "reach the work queue"):
            for lane in self._distinct_lanes("url"):
                self.sqs().get_queue_attributes(QueueUrl=lane.url, AttributeNames=["QueueArn"])

    def _attributes(self, url: str | None, names: list[str]) -> dict[str, str]:
        if not url:
            return {}
        return self.sqs().get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]

    def depth(self) -> Depths:
        """Approximate message counts of every lane's queues (SQS's own figures, a few seconds stale)."""
        by_url: dict[str, QueueDepth] = {}
        with unavailable_as(QUEUE_UNAVAILABLE, "read the queue depth"):
            for lane in self._distinct_lanes("url"):
                main = self._attributes(lane.url, ["All"])
                by_url[lane.url] = QueueDepth(
                    waiting=int(main.get("ApproximateNumberOfMessages", 0)),
                    active=int(main.get("ApproximateNumberOfMessagesNotVisible", 0)),
                )
            for lane in self._distinct_lanes("dead_letter_url"):
                dead = self._attributes(lane.dead_letter_url, ["ApproximateNumberOfMessages"])
                by_url[lane.dead_letter_url] = QueueDepth(dead_letter=int(dead.get("ApproximateNumberOfMessages", 0)))
        total = sum(by_url.values(), QueueDepth())
        by_lane = {key: by_url.get(lane.url or "", QueueDepth()) + by_url.get(lane.dead_letter_url or "", QueueDepth())
                   for key, lane in self.lanes.items()}
        return Depths(total=total, by_type={job_type: by_lane[job_type] for job_type in JOB_TYPES},
                      large=by_lane.get(LARGE))

    def dead_letters_left(self) -> int:
        """Messages in the dead-letter queues, visible or hidden by a scan (what a redrive has left)."""
        with unavailable_as(QUEUE_UNAVAILABLE, "read the dead-letter queue depth"):
            return sum(int(a.get("ApproximateNumberOfMessages", 0)) + int(a.get("ApproximateNumberOfMessagesNotVisible", 0))
                       for a in (self._attributes(lane.dead_letter_url, ["ApproximateNumberOfMessages",
                                                                         "ApproximateNumberOfMessagesNotVisible"])
                                 for lane in self._distinct_lanes("dead_letter_url")))

    def receive_dead_letters(self, hide_seconds: int, max_messages: int = BATCH) -> list[DeadLetter]:
        """Up to `max_messages` (at most ten) messages of the first dead-letter queue that has
        any, hidden from other readers for `hide_seconds`."""
        for lane in self._distinct_lanes("dead_letter_url"):
            with unavailable_as(QUEUE_UNAVAILABLE, "read the dead-letter queue"):
                messages = self.sqs().receive_message(
                    QueueUrl=lane.dead_letter_url, MaxNumberOfMessages=min(max(max_messages, 1), BATCH),
                    VisibilityTimeout=hide_seconds,
                    WaitTimeSeconds=0, AttributeNames=["SentTimestamp"],
                ).get("Messages", [])
            if messages:
                return [DeadLetter(
                    job_id=job_id_from_body(m["Body"]), body=m["Body"], receipt_handle=m["ReceiptHandle"],
                    sent_at=datetime.fromtimestamp(int(m.get("Attributes", {}).get("SentTimestamp", "0")) / 1000,
                                                   timezone.utc),
                    lane=lane,
                ) for m in messages]
        return []

    def peek_dead_letters(self, max_messages: int = 100) -> list[DeadLetter]:
        """The messages of the dead-letter queues, left there. Each receive hides what it read,
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
        for lane, chunk in _chunks_by_lane(messages):
            with unavailable_as(QUEUE_UNAVAILABLE, "release the dead-letter messages"):
                self.sqs().change_message_visibility_batch(QueueUrl=lane.dead_letter_url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
                    for i, m in enumerate(chunk)])

    def move_to_work_queue(self, messages: list[DeadLetter]) -> list[DeadLetter]:
        """Send dead-letter messages back to the work queue of their lane, then delete the ones
        sent from their dead-letter queue; returns those. Send first, delete second: a crash in
        between leaves a duplicate, which the worker absorbs, never a lost message."""
        done: list[DeadLetter] = []
        for lane, chunk in _chunks_by_lane(messages):
            with unavailable_as(QUEUE_UNAVAILABLE, "redrive the dead-letter messages"):
                sent = self.sqs().send_message_batch(
                    QueueUrl=lane.url, Entries=[{"Id": str(i), "MessageBody": m.body} for i, m in enumerate(chunk)],
                ).get("Successful", [])
                moved = [chunk[int(entry["Id"])] for entry in sent]
                if moved:
                    self.sqs().delete_message_batch(QueueUrl=lane.dead_letter_url, Entries=[
                        {"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(moved)])
            done.extend(moved)
        return done


def _chunks_by_lane(messages: list[DeadLetter]) -> list[tuple[Lane, list[DeadLetter]]]:
    """Messages grouped by their lane, in chunks of at most one batch call."""
    groups: dict[Lane, list[DeadLetter]] = {}
    for message in messages:
        groups.setdefault(message.lane, []).append(message)
    return [(lane, group[start:start + BATCH]) for lane, group in groups.items()
            for start in range(0, len(group), BATCH)]
