"""The worker's retry decision, with the job store and the queue replaced by recorders (the real
ones are exercised end to end in tests/integration/test_jobs_e2e.py)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from chalicelib import pipeline
from chalicelib.config import load_settings
from chalicelib.errors import PermanentError, TransientError

SETTINGS = load_settings({"RETRY_BASE_SECONDS": "5", "MAX_RETRY_ATTEMPTS": "3", "QUEUE_URL": "http://q"})
JOB_ID = "3f1c4a52-0000-4000-8000-000000000000"


@pytest.fixture
def calls(monkeypatch):
    """Record what the pipeline asks of the job store and the queue; run a job that raises `error`."""
    recorded: list[tuple] = []
    job = SimpleNamespace(id=JOB_ID, object_key=None, content_hash="0x" + "ab" * 32, type="verify",
                          rpc_url=None, manifest_uri="ipfs://x", registry_address="0x" + "1" * 40, file_name=None)
    monkeypatch.setattr(pipeline.jobs, "start_attempt", lambda job_id: job)
    for name in ("fail_job", "schedule_retry", "complete_job", "set_progress"):
        monkeypatch.setattr(pipeline.jobs, name, lambda *a, _n=name: recorded.append((_n, *a)) or True)
    monkeypatch.setattr(pipeline.queue, "delay_redelivery", lambda s, handle, seconds: recorded.append(
        ("delay_redelivery", handle, seconds)))
    monkeypatch.setattr(pipeline, "job_finished", lambda outcome, duration_ms=None: recorded.append(("metric", outcome)))
    return recorded


def run(monkeypatch, error: Exception, receive_count: int) -> None:
    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(pipeline, "verify_hash", fail)
    pipeline.run_job(SETTINGS, pipeline.Delivery(JOB_ID, receive_count, "handle-1"))


def test_permanent_failure_fails_the_job_at_once_and_consumes_the_message(monkeypatch, calls):
    run(monkeypatch, PermanentError("no contract at that address", "REGISTRY_NOT_FOUND"), 1)
    assert ("fail_job", JOB_ID, "no contract at that address", "REGISTRY_NOT_FOUND") in calls
    assert ("metric", "Failed") in calls
    assert not any(c[0] in ("schedule_retry", "delay_redelivery") for c in calls)


@pytest.mark.parametrize("receive_count,delay", [(1, 5), (2, 10)])
def test_transient_failure_requeues_with_exponential_backoff_and_leaves_the_message(
        monkeypatch, calls, receive_count, delay):
    with pytest.raises(pipeline.RetryScheduled):
        run(monkeypatch, TransientError("RPC unreachable", "RPC_UNAVAILABLE"), receive_count)
    assert ("schedule_retry", JOB_ID, "RPC unreachable", "RPC_UNAVAILABLE") in calls
    assert ("delay_redelivery", "handle-1", delay) in calls
    assert ("metric", "Retried") in calls
    assert not any(c[0] == "fail_job" for c in calls)


def test_last_attempt_fails_the_job_and_sends_the_message_to_the_dead_letter_queue(monkeypatch, calls):
    with pytest.raises(pipeline.RetryScheduled):
        run(monkeypatch, TransientError("RPC unreachable", "RPC_UNAVAILABLE"), 3)
    assert ("fail_job", JOB_ID, "RPC unreachable", "RPC_UNAVAILABLE") in calls
    assert ("delay_redelivery", "handle-1", 0) in calls  # SQS moves it on the next receive
    assert not any(c[0] == "schedule_retry" for c in calls)


def test_an_unexpected_exception_is_retried_not_lost(monkeypatch, calls):
    with pytest.raises(pipeline.RetryScheduled):
        run(monkeypatch, KeyError("boom"), 1)
    [retry] = [c for c in calls if c[0] == "schedule_retry"]
    assert retry[3] == "INTERNAL_ERROR" and "KeyError" in retry[2]


def test_a_finished_job_is_acknowledged_without_work(monkeypatch, calls):
    monkeypatch.setattr(pipeline.jobs, "start_attempt", lambda job_id: None)
    run(monkeypatch, AssertionError("must not run"), 1)
    assert calls == []


def test_backoff_doubles_from_the_configured_base():
    assert [pipeline.queue.backoff_seconds(SETTINGS, n) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]


def test_delivery_and_upload_events_are_read_from_lambda_records():
    record = {"body": json.dumps({"jobId": JOB_ID}), "receiptHandle": "h", "attributes": {"ApproximateReceiveCount": "2"}}
    assert pipeline.delivery_from_record(record) == pipeline.Delivery(JOB_ID, 2, "h")
    assert pipeline.delivery_from_record({"body": "not json", "receiptHandle": "h"}) is None
    notification = {"Records": [
        {"eventName": "ObjectCreated:Post", "s3": {"object": {"key": "uploads%2Fa+b", "size": 7}}},
        {"eventName": "ObjectRemoved:Delete", "s3": {"object": {"key": "uploads/gone"}}},
    ]}
    assert pipeline.objects_from_s3_notification(json.dumps(notification)) == [("uploads/a b", 7)]
    assert pipeline.objects_from_s3_notification(json.dumps({"Event": "s3:TestEvent"})) == []


def test_reconciler_fails_dead_lettered_jobs_but_not_ones_enqueued_again_since(monkeypatch):
    from datetime import datetime, timedelta, timezone

    sent = datetime(2026, 1, 1, tzinfo=timezone.utc)
    stuck = SimpleNamespace(id="stuck", status="processing", last_enqueued_at=sent, error=None, error_code=None)
    retried = SimpleNamespace(id="retried", status="queued", last_enqueued_at=sent + timedelta(minutes=5),
                              error="RPC unreachable", error_code="RPC_UNAVAILABLE")
    done = SimpleNamespace(id="done", status="completed", last_enqueued_at=sent, error=None, error_code=None)
    jobs_by_id = {j.id: j for j in (stuck, retried, done)}
    failed: list[tuple] = []
    monkeypatch.setattr(pipeline.queue, "peek_dead_letters", lambda s: [(j, sent) for j in jobs_by_id])
    monkeypatch.setattr(pipeline.jobs, "get_job", jobs_by_id.get)
    monkeypatch.setattr(pipeline.jobs, "fail_job", lambda *a: failed.append(a) or True)
    monkeypatch.setattr(pipeline, "job_finished", lambda *a, **k: None)

    assert pipeline.reconcile_dead_letters(SETTINGS) == 1
    assert failed == [("stuck", "the job did not finish after 3 attempts", "DEAD_LETTERED")]
