"""The worker's decisions, watched on a real (moto) work queue: a message is consumed when its
job is done or cannot be helped by a retry, and left, out of sight for the backoff, when it can."""
from __future__ import annotations

import json

import pytest

from chalicelib import worker
from chalicelib.errors import PermanentError, TransientError
from chalicelib.queue import MAX_VISIBILITY_SECONDS
from chalicelib.vocabulary import CANCELLED, COMPLETED, FAILED, PROCESSING, QUEUED

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
    verification["value"] = KeyError("postgres://admin@db.internal:5432")
    job = submit(aws, store)
    run_once(aws, app)
    assert aws.count(aws.queue_url) == (0, 1)
    stored = store.get_job(job.id)
    assert stored.error_code == "INTERNAL_ERROR" and stored.error == "internal error; it has been logged"


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


def short_lease(services, serve, store, monkeypatch) -> tuple[object, "threading.Event", list]:
    """The app with a lease of 0.3 s (a beat every 0.1 s); an event set once the first beat
    renewed the lease, and the list of renewals' results."""
    import dataclasses
    import threading

    app = serve(dataclasses.replace(services, settings=dataclasses.replace(services.settings, lease_seconds=0.3)))
    beaten, outcomes = threading.Event(), []
    real_renew = store.renew_lease

    def watched_renew(*args, **kwargs):
        outcomes.append(real_renew(*args, **kwargs))
        beaten.set()
        return outcomes[-1]
    monkeypatch.setattr(store, "renew_lease", watched_renew)
    return app, beaten, outcomes


@pytest.mark.parametrize("step_after_cancel", [True, False], ids=["cancelled-mid-run", "running-on"])
def test_a_job_cancelled_while_running_is_abandoned_at_its_next_progress_write(
        aws, store, services, serve, monkeypatch, step_after_cancel):
    """The verification core reports a step after the job, running past its first beat, was
    cancelled: the attempt stops, the message is consumed, no result and no history row are
    written; nothing after that step runs."""
    reached = []
    app, beaten, _ = short_lease(services, serve, store, monkeypatch)

    def verify(file_hash, manifest_uri, registry, rpc_url, settings, progress=None):
        assert beaten.wait(30), "no beat"
        progress(30)
        store.cancel_job(job.id)
        if step_after_cancel:
            progress(50)
            reached.append("registry read")
        return RESULT
    monkeypatch.setattr(verification_core(), "verify_hash", verify)
    monkeypatch.setattr(worker.logger, "info", lambda message, **kw: reached.append(message))
    job = submit(aws, store)
    assert run_once(aws, app) is True
    assert aws.count(aws.queue_url) == (0, 0)
    assert reached == ["job cancelled while running; attempt abandoned"]
    cancelled = store.get_job(job.id)
    assert (cancelled.status, cancelled.result, store.history) == (CANCELLED, None, [])


def test_a_cancel_noticed_by_a_beat_stops_the_attempt_at_its_next_step(aws, store, services, serve, monkeypatch):
    reached = []
    app, beaten, outcomes = short_lease(services, serve, store, monkeypatch)

    def verify(file_hash, manifest_uri, registry, rpc_url, settings, progress=None):
        store.cancel_job(job.id)
        beaten.clear()
        assert beaten.wait(30), "no beat after the cancel"
        monkeypatch.setattr(store, "set_progress", lambda *args: pytest.fail("a step was written"))
        progress(50)
        reached.append("registry read")
        return RESULT
    monkeypatch.setattr(verification_core(), "verify_hash", verify)
    job = submit(aws, store)
    assert run_once(aws, app) is True
    assert outcomes[-1] is False and reached == []
    assert (store.get_job(job.id).status, store.history) == (CANCELLED, [])


def test_a_job_done_within_its_first_beat_takes_its_lease_and_writes_its_result_and_nothing_else(
        aws, store, app, verification, monkeypatch):
    """No progress write, no lease renewal, no visibility change: two store calls and the
    message's receive and delete."""
    calls = []
    for name in ("start_attempt", "complete_job", "set_progress", "renew_lease", "cached_result", "store_result",
                 "get_job", "lease_holder"):
        real = getattr(store, name)
        monkeypatch.setattr(store, name, lambda *args, _real=real, _name=name, **kwargs: (
            calls.append(_name), _real(*args, **kwargs))[1])
    seen = []
    real_sqs_call = aws.sqs._make_api_call
    monkeypatch.setattr(aws.sqs, "_make_api_call", lambda operation, params: (
        seen.append(operation), real_sqs_call(operation, params))[1])
    job = submit(aws, store)
    seen.clear()
    assert run_once(aws, app) is True
    assert calls == ["start_attempt", "complete_job"]
    assert seen == ["ReceiveMessage", "DeleteMessageBatch"]
    assert store.get_job(job.id).status == COMPLETED


def test_a_progress_write_that_changes_nothing_on_a_running_job_does_not_stop_it(aws, store, app, monkeypatch):
    """A retried attempt reports steps an earlier attempt already passed: not a cancellation."""
    def verify(file_hash, manifest_uri, registry, rpc_url, settings, progress=None):
        progress(70)
        progress(30)
        return RESULT
    monkeypatch.setattr(verification_core(), "verify_hash", verify)
    job = submit(aws, store)
    run_once(aws, app)
    assert store.get_job(job.id).status == COMPLETED and len(store.history) == 1


def test_an_attempt_that_fails_after_its_job_was_cancelled_is_dropped_not_retried(aws, store, app, monkeypatch):
    """The cancel deleted the file the attempt was reading: no retry, the message is consumed."""
    def verify(file_hash, manifest_uri, registry, rpc_url, settings, progress=None):
        store.cancel_job(job.id)
        raise TransientError("the upload stream broke", "STORAGE_UNAVAILABLE")
    monkeypatch.setattr(verification_core(), "verify_hash", verify)
    job = submit(aws, store)
    assert run_once(aws, app) is True
    assert aws.count(aws.queue_url) == (0, 0)
    cancelled = store.get_job(job.id)
    assert (cancelled.status, cancelled.retry_count, store.history) == (CANCELLED, 0, [])
# --- leases ------------------------------------------------------------------------------------

def test_a_copy_delivered_while_the_lease_is_live_is_put_back_not_run(aws, store, app, verification):
    job = submit(aws, store)
    assert store.start_attempt(job.id, "another-worker", 60) is not None  # another worker runs it
    assert run_once(aws, app) is False  # the handler raised: the message stays
    assert aws.count(aws.queue_url) == (0, 1)  # hidden for a lease's length, not deleted
    assert verification["calls"] == []  # no second run
    held = store.get_job(job.id)
    assert held.status == PROCESSING and held.attempts == 1 and held.retry_count == 0 and held.error is None


def test_a_lease_that_ran_out_lets_the_next_delivery_run_the_job(aws, store, app, verification):
    job = submit(aws, store)
    store.start_attempt(job.id, "a-worker-that-died", 0)  # its lease is already over
    assert run_once(aws, app) is True
    done = store.get_job(job.id)
    assert done.status == COMPLETED and done.attempts == 2 and len(store.history) == 1
    assert job.id not in store.leases  # completion lets the lease go


def test_the_heartbeat_renews_the_lease_and_the_message_visibility(aws, store, services, serve, monkeypatch):
    """A job held inside the verification core until its lease was renewed twice: the lease is
    then further ahead than the first one, and the message is still in flight."""
    import dataclasses
    import threading

    app = serve(dataclasses.replace(services, settings=dataclasses.replace(services.settings, lease_seconds=0.3)))
    renewed = threading.Event()
    renewals: list[object] = []
    real_renew = store.renew_lease

    def counting_renew(job_id, *args):
        renewals.append(store.leases[job_id][1])
        if len(renewals) >= 3:
            renewed.set()
        return real_renew(job_id, *args)
    monkeypatch.setattr(store, "renew_lease", counting_renew)

    def held_verify(file_hash, manifest_uri, registry, rpc_url, settings, progress=None):
        progress(30)
        assert renewed.wait(30), "the lease was not renewed"
        assert aws.count(aws.queue_url) == (0, 1)
        assert store.get_job(job.id).progress == 30  # a long job's progress can be watched
        return RESULT
    monkeypatch.setattr(verification_core(), "verify_hash", held_verify)
    job = submit(aws, store)
    assert run_once(aws, app) is True
    assert renewals[-1] > renewals[0] and store.get_job(job.id).status == COMPLETED


def test_a_transient_failure_lets_the_lease_go_and_marks_the_backoff(aws, store, app, verification):
    verification["value"] = TransientError("RPC unreachable", "RPC_UNAVAILABLE")
    job = submit(aws, store)
    run_once(aws, app)
    assert job.id not in store.leases and job.id in store.retry_at
    assert store.delayed_counts() == {"verify": 1, "proof": 0}


def test_a_proof_job_waits_on_the_proof_queue_and_its_retry_hides_it_there(aws, store, app, monkeypatch):
    monkeypatch.setattr(verification_core(), "prove_hash", lambda *args: (_ for _ in ()).throw(
        TransientError("RPC unreachable", "RPC_UNAVAILABLE")))
    job = store.create_job(job_type="proof", status=QUEUED, manifest_uri=MANIFEST, registry_address=REGISTRY,
                           content_hash=HASH, file_name="a.txt")
    from chalicelib.dispatch import enqueue_job
    assert enqueue_job(app.services(), job)
    assert aws.count(aws.queue_url) == (0, 0) and aws.count(aws.proof_queue_url) == (1, 0)
    assert invoke_from_queue(aws, aws.proof_queue_url, app.process_proof_job) is False
    assert aws.count(aws.proof_queue_url) == (0, 1)  # hidden for its backoff on its own queue
    assert store.get_job(job.id).status == QUEUED


def test_a_large_file_job_waits_on_the_large_queue_and_its_retry_hides_it_there(aws, store, app, verification):
    verification["value"] = TransientError("RPC unreachable", "RPC_UNAVAILABLE")
    large = app.services().settings.large_file_bytes + 1
    job = store.create_job(job_type="verify", status=QUEUED, manifest_uri=MANIFEST, registry_address=REGISTRY,
                           content_hash=HASH, file_size=large)
    from chalicelib.dispatch import enqueue_job
    assert enqueue_job(app.services(), job)
    assert aws.count(aws.queue_url) == (0, 0) and aws.count(aws.large_queue_url) == (1, 0)
    assert invoke_from_queue(aws, aws.large_queue_url, app.process_large_job) is False
    assert aws.count(aws.large_queue_url) == (0, 1)  # hidden for its backoff on the large queue
    assert store.get_job(job.id).status == QUEUED
