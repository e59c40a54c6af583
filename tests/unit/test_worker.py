"""The worker's decisions, watched on a real (moto) work queue: a message is consumed when its
job is done or cannot be helped by a retry, and left, out of sight for the backoff, when it can."""
from __future__ import annotations

import json

import pytest

from chalicelib import worker
from chalicelib.errors import PermanentError, TransientError
from chalicelib.queue import MAX_VISIBILITY_SECONDS
from chalicelib.vocabulary import COMPLETED, FAILED, PROCESSING, QUEUED

from chalicelib.wiring import verification as verification_core

from tests.unit.conftest import invoke_from_queue

REGISTRY = "0x" + "ab" * 20
MANIFEST = "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/manifest.json"
HASH = "0x" + "11" * 32
RESULT = {"status": "OK", "fileHash": HASH, "recovered": "0x" + "cd" * 20,
          "onchain": {"creator": "0x" + "cd" * 20, "manifestURI": MANIFEST, "timestamp": 1}, "checks": {},
          "evidence": {"chainId": 31337, "blockNumber": 7, "blockHash": "0x" + "ee" * 32,
                       "checkedAt": "2026-12-01T00:00:00Z", "cached": False}}


@pytest.fixture()
def app(serve, services):
    return serve(services)


@pytest.fixture()
def verification(monkeypatch):
    """Stand in for the verification core: `outcome` is a result to return or an error to raise."""
    outcome = {"value": RESULT, "calls": []}

    def verify(file_hash, *args, **kwargs):
        outcome["calls"].append(file_hash)
        if isinstance(outcome["value"], Exception):
            raise outcome["value"]
        return outcome["value"]
    monkeypatch.setattr(verification_core(), "verify_hash", verify)
    return outcome


def submit(aws, store, **fields):
    job = store.create_job(job_type="verify", status=QUEUED, manifest_uri=MANIFEST, registry_address=REGISTRY,
                           **({"content_hash": HASH} | fields))
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps({"jobId": job.id}))
    return job


def run_once(aws, app):
    return invoke_from_queue(aws, aws.queue_url, app.process_verification_job)


def test_a_completed_job_consumes_its_message(aws, store, app, verification):
    job = submit(aws, store)
    assert run_once(aws, app) is True
    assert aws.count(aws.queue_url) == (0, 0)
    done = store.get_job(job.id)
    assert done.status == COMPLETED and done.result == RESULT and done.progress == 100
    assert store.history == [{"job_id": job.id, "file_hash": HASH, "recovered": RESULT["recovered"], "status": "OK",
                              "chain_id": 31337, "creator": RESULT["onchain"]["creator"],
                              "manifest_uri": MANIFEST, "registry_address": REGISTRY}]


def test_a_permanent_failure_fails_the_job_and_consumes_the_message(aws, store, app, verification):
    verification["value"] = PermanentError("no contract there", "REGISTRY_NOT_FOUND")
    job = submit(aws, store)
    run_once(aws, app)
    assert aws.count(aws.queue_url) == (0, 0)
    assert (store.get_job(job.id).status, store.get_job(job.id).error_code) == (FAILED, "REGISTRY_NOT_FOUND")


def test_a_transient_failure_requeues_the_job_and_leaves_the_message_out_of_sight(aws, store, app, verification):
    verification["value"] = TransientError("RPC unreachable", "RPC_UNAVAILABLE")
    job = submit(aws, store)
    assert run_once(aws, app) is False
    assert aws.count(aws.queue_url) == (0, 1)  # still there, invisible for the backoff
    assert run_once(aws, app) is None  # not redelivered before the backoff ends
    waiting = store.get_job(job.id)
    assert (waiting.status, waiting.retry_count, waiting.error_code) == (QUEUED, 1, "RPC_UNAVAILABLE")


def test_an_unexpected_exception_is_retried_not_lost(aws, store, app, verification):
    verification["value"] = KeyError("boom")
    job = submit(aws, store)
    run_once(aws, app)
    assert aws.count(aws.queue_url) == (0, 1)
    assert store.get_job(job.id).error_code == "INTERNAL_ERROR" and "KeyError" in store.get_job(job.id).error


def test_the_last_attempt_fails_the_job_and_the_queue_dead_letters_the_message(aws, store, app, verification,
                                                                               services, monkeypatch):
    verification["value"] = TransientError("RPC unreachable", "RPC_UNAVAILABLE")
    monkeypatch.setattr(worker, "backoff_seconds", lambda base, count: 0)  # redeliver at once
    job = submit(aws, store)
    for attempt in range(1, services.settings.max_retry_attempts):
        assert run_once(aws, app) is False
        assert store.get_job(job.id).status == QUEUED, attempt
    assert run_once(aws, app) is False  # the last allowed receive
    assert store.get_job(job.id).status == FAILED
    assert run_once(aws, app) is None  # the next receive finds it moved (maxReceiveCount)
    assert aws.count(aws.queue_url) == (0, 0) and aws.count(aws.dlq_url) == (1, 0)
    assert len(verification["calls"]) == services.settings.max_retry_attempts


def test_a_finished_job_and_a_foreign_message_are_consumed_without_work(aws, store, app, verification):
    job = submit(aws, store)
    store.fail_job(job.id, "x", "MANIFEST_INVALID")
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody="not a job")
    assert run_once(aws, app) is True and run_once(aws, app) is True
    assert aws.count(aws.queue_url) == (0, 0) and verification["calls"] == []


def test_a_database_outage_leaves_the_message(aws, store, app, verification):
    submit(aws, store)
    store.down = True
    assert run_once(aws, app) is False
    assert aws.count(aws.queue_url) == (0, 1)


def test_an_uploaded_file_is_hashed_from_storage(aws, store, app, verification):
    aws.s3.put_object(Bucket=aws.bucket, Key="uploads/a", Body=b"test")
    job = submit(aws, store, content_hash=None, object_key="uploads/a")
    run_once(aws, app)
    sha = "0x9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    assert verification["calls"] == [sha] and store.get_job(job.id).content_hash == sha


def test_a_missing_upload_fails_at_once_and_storage_down_is_retried(aws, store, app, verification):
    gone = submit(aws, store, content_hash=None, object_key="uploads/gone")
    run_once(aws, app)
    assert (store.get_job(gone.id).status, store.get_job(gone.id).error_code) == (FAILED, "UPLOAD_MISSING")
    assert aws.count(aws.queue_url) == (0, 0)
    aws.s3.delete_bucket(Bucket=aws.bucket)
    down = submit(aws, store, content_hash=None, object_key="uploads/b")
    run_once(aws, app)
    assert (store.get_job(down.id).status, store.get_job(down.id).error_code) == (QUEUED, "STORAGE_UNAVAILABLE")
    assert aws.count(aws.queue_url) == (0, 1)


def test_a_proof_job_runs_the_proof(aws, store, app, monkeypatch):
    proof = {"content": {"hash": HASH}, "onchain": {"creator": "0x1"}, "signature": {"recovered": "0x1"},
             "verification": {"status": "WARN"}, "network": {"chainId": 84532}}
    monkeypatch.setattr(verification_core(), "prove_hash", lambda *args: proof)
    job = submit(aws, store)
    store.put(job, type="proof")
    run_once(aws, app)
    assert store.get_job(job.id).status == COMPLETED
    assert (store.history[0]["status"], store.history[0]["chain_id"]) == ("WARN", 84532)


def test_backoff_doubles_from_the_base_and_is_capped():
    assert [worker.backoff_seconds(5, n) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert worker.backoff_seconds(5, 40) == MAX_VISIBILITY_SECONDS
    assert worker.backoff_seconds(0, 3) == 0


def test_processing_jobs_are_taken_again_after_a_crash(aws, store, app, verification):
    job = submit(aws, store)
    store.put(store.get_job(job.id), status=PROCESSING)  # a worker died mid-job
    run_once(aws, app)
    assert store.get_job(job.id).status == COMPLETED
