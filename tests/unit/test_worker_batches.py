"""Batches of up to ten messages per invocation, on a real (moto) work queue with the fake store:
every message keeps its own fate. The handler deletes the messages of the jobs that are done
and raises for the rest, as DESIGN.md says (Chalice has no partial batch responses), so a
failing job neither repeats nor loses the others."""
from __future__ import annotations

import json
import threading

import pytest

from chalicelib import worker
from chalicelib.errors import PermanentError, TransientError
from chalicelib.vocabulary import COMPLETED, FAILED, PROCESSING, QUEUED
from chalicelib.wiring import verification as verification_core

from tests.unit.conftest import lambda_sqs_event
from tests.unit.test_worker import MANIFEST, REGISTRY, RESULT

BATCH = 10


def hash_of(i: int) -> str:
    return "0x" + f"{i:02x}" * 32


@pytest.fixture()
def app(serve, services):
    return serve(services)


@pytest.fixture()
def verification(monkeypatch):
    """The verification core stood in for: `failing` maps a file hash to the error its job raises."""
    state = {"failing": {}, "calls": [], "lock": threading.Lock()}

    def verify(file_hash, *args, **kwargs):
        with state["lock"]:
            state["calls"].append(file_hash)
        error = state["failing"].get(file_hash)
        if error is not None:
            raise error
        return {**RESULT, "fileHash": file_hash}
    monkeypatch.setattr(verification_core(), "verify_hash", verify)
    return state


def submit_batch(aws, store, count: int = BATCH) -> list:
    jobs = [store.create_job(job_type="verify", status=QUEUED, manifest_uri=MANIFEST, registry_address=REGISTRY,
                             content_hash=hash_of(i)) for i in range(count)]
    aws.sqs.send_message_batch(QueueUrl=aws.queue_url, Entries=[
        {"Id": str(i), "MessageBody": json.dumps({"jobId": job.id})} for i, job in enumerate(jobs)])
    return jobs


def receive_all(aws, expected: int) -> list[dict]:
    """Every visible message, up to `expected` (moto may hand out fewer per receive)."""
    messages: list[dict] = []
    while len(messages) < expected:
        more = aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=expected - len(messages),
                                       AttributeNames=["All"]).get("Messages", [])
        if not more:
            break
        messages += more
    return messages


def invoke(aws, app, messages: list[dict]) -> bool:
    """What the event source mapping does with a batch: True when the handler returned (then the
    whole batch is deleted), False when it raised (then nothing more is deleted)."""
    arn = aws.sqs.get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    try:
        app.process_verification_job(lambda_sqs_event(messages, arn), None)
    except Exception:
        return False
    aws.sqs.delete_message_batch(QueueUrl=aws.queue_url, Entries=[
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
    return True


def invoke_batch(aws, app, expected: int = BATCH) -> tuple[int, bool]:
    """One batch of what is visible: its number of records, and whether the handler returned."""
    messages = receive_all(aws, expected)
    assert messages, "nothing to receive"
    return len(messages), invoke(aws, app, messages)


def test_one_failing_message_of_ten_neither_repeats_nor_loses_the_other_nine(aws, store, app, verification,
                                                                              monkeypatch):
    monkeypatch.setattr(worker, "backoff_seconds", lambda base, count: 0)  # the failed one comes back at once
    jobs = submit_batch(aws, store)
    verification["failing"][hash_of(3)] = TransientError("RPC unreachable", "RPC_UNAVAILABLE")
    assert invoke_batch(aws, app) == (BATCH, False)
    assert [store.get_job(j.id).status for j in jobs] == [COMPLETED] * 3 + [QUEUED] + [COMPLETED] * 6
    del verification["failing"][hash_of(3)]
    assert invoke_batch(aws, app) == (1, True)  # only the failed job's message came back
    assert aws.count(aws.queue_url) == (0, 0)
    assert all(store.get_job(j.id).status == COMPLETED for j in jobs)
    assert sorted(verification["calls"]) == sorted([hash_of(i) for i in range(BATCH)] + [hash_of(3)])
    assert len(store.history) == BATCH


def test_the_jobs_of_a_batch_run_side_by_side(aws, store, app, monkeypatch):
    """Each job waits inside the verification core until all ten are there: they can only finish
    if the batch runs them at the same time."""
    everyone = threading.Barrier(BATCH, timeout=30)

    def verify(file_hash, *args, **kwargs):
        everyone.wait()
        return {**RESULT, "fileHash": file_hash}
    monkeypatch.setattr(verification_core(), "verify_hash", verify)
    jobs = submit_batch(aws, store)
    assert invoke_batch(aws, app) == (BATCH, True)
    assert all(store.get_job(j.id).status == COMPLETED for j in jobs)


def test_a_lease_held_copy_in_a_batch_is_put_back_and_the_others_complete(aws, store, app, verification):
    jobs = submit_batch(aws, store)
    assert store.start_attempt(jobs[5].id, "another-worker", 60) is not None  # another worker runs it
    assert invoke_batch(aws, app) == (BATCH, False)
    assert aws.count(aws.queue_url) == (0, 1)  # the copy: hidden for a lease's length, not deleted
    assert hash_of(5) not in verification["calls"]
    held = store.get_job(jobs[5].id)
    assert (held.status, held.attempts, held.retry_count, held.error) == (PROCESSING, 1, 0, None)
    assert all(store.get_job(j.id).status == COMPLETED for i, j in enumerate(jobs) if i != 5)


def test_a_permanent_failure_in_a_batch_fails_only_its_job(aws, store, app, verification):
    jobs = submit_batch(aws, store)
    verification["failing"][hash_of(7)] = PermanentError("no contract there", "REGISTRY_NOT_FOUND")
    assert invoke_batch(aws, app) == (BATCH, True)  # nothing to retry: the whole batch is consumed
    assert aws.count(aws.queue_url) == (0, 0)
    failed = store.get_job(jobs[7].id)
    assert (failed.status, failed.error_code) == (FAILED, "REGISTRY_NOT_FOUND")
    assert all(store.get_job(j.id).status == COMPLETED for i, j in enumerate(jobs) if i != 7)


def test_a_message_of_a_batch_reaches_the_dead_letter_queue_after_its_last_receive(aws, store, app, verification,
                                                                                    services, monkeypatch):
    monkeypatch.setattr(worker, "backoff_seconds", lambda base, count: 0)
    jobs = submit_batch(aws, store)
    verification["failing"][hash_of(0)] = TransientError("RPC unreachable", "RPC_UNAVAILABLE")
    assert invoke_batch(aws, app) == (BATCH, False)
    for attempt in range(2, services.settings.max_retry_attempts + 1):
        assert invoke_batch(aws, app) == (1, False), attempt
    assert store.get_job(jobs[0].id).status == FAILED
    assert receive_all(aws, BATCH) == []  # the next receive moved it (maxReceiveCount)
    assert aws.count(aws.queue_url) == (0, 0) and aws.count(aws.dlq_url) == (1, 0)
    assert verification["calls"].count(hash_of(0)) == services.settings.max_retry_attempts
    assert all(verification["calls"].count(hash_of(i)) == 1 for i in range(1, BATCH))
    assert all(store.get_job(j.id).status == COMPLETED for j in jobs[1:])


def test_a_batch_whose_delete_fails_raises_and_its_done_jobs_are_absorbed_next_time(aws, store, app, verification,
                                                                                     services, monkeypatch):
    """SQS refuses the delete of the done jobs' messages: the whole batch comes back, and the
    finished jobs are not run again."""
    jobs = submit_batch(aws, store, 3)
    verification["failing"][hash_of(1)] = TransientError("RPC unreachable", "RPC_UNAVAILABLE")
    real_delete = services.queue.delete_received

    def refused(*args, **kwargs):
        raise TransientError("SQS unreachable", "QUEUE_UNAVAILABLE")
    monkeypatch.setattr(services.queue, "delete_received", refused)
    messages = receive_all(aws, 3)
    assert invoke(aws, app, messages) is False
    monkeypatch.setattr(services.queue, "delete_received", real_delete)
    del verification["failing"][hash_of(1)]
    for message in messages:  # bring them all back now rather than after their visibility timeout
        aws.sqs.change_message_visibility(QueueUrl=aws.queue_url, ReceiptHandle=message["ReceiptHandle"],
                                          VisibilityTimeout=0)
    assert invoke_batch(aws, app, 3) == (3, True)
    assert all(store.get_job(j.id).status == COMPLETED for j in jobs)
    assert [verification["calls"].count(hash_of(i)) for i in range(3)] == [1, 2, 1]
    assert len(store.history) == 3
