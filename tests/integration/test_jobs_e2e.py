"""Asynchronous jobs end to end: HTTP → S3 → Postgres → SQS → runner → worker handler →
Postgres, through the emulator, the dev chain and the dev IPFS node.

Tests that count queue figures, hold workers or kill them run in a lane of their own (the
infra template deployed again, with its own API and runner: see `own_lane`), so that nothing
another test left on the shared queues can meet their counts. Tests never wait out a time
window: a `Gate` holds the worker at a known step while the test acts.
"""
from __future__ import annotations

import json
import os
import signal

import pytest

from devstack.anchoring import ipfs_add, sign_manifest
from devstack.stack import free_port
from tests.integration.conftest import (
    API_KEY, EMPTY_QUEUE, Gate, attempts, extra_api, form, forward_to, history_row, history_rows, own_lane, respond,
    wait_for,
)

ADMIN = {"x-api-key": API_KEY}
ZERO = "0x0000000000000000000000000000000000000000"


@pytest.fixture(scope="module")
def lane(stack, tmp_path_factory):
    """A lane whose workers may be held at a gate for a while (long HTTP timeout)."""
    with own_lane(stack, tmp_path_factory.mktemp("lane"), env_overrides={"HTTP_TIMEOUT_SECONDS": "30"}) as running:
        yield running


@pytest.fixture(scope="module")
def crash_lane(stack, tmp_path_factory):
    """A lane for killed workers: a short visibility timeout brings their messages back soon."""
    with own_lane(stack, tmp_path_factory.mktemp("crash-lane"), visibility_seconds=3) as running:
        yield running


def submit(api, stack, item, data: bytes, kind: str = "verify", manifest_uri: str | None = None,
           **extra: str) -> str:
    fields = {"registryAddress": stack.endpoints["registry_address"],
              "manifestURI": manifest_uri or item.manifest_uri, **extra}
    response = api.post(f"/api/verification-jobs/{kind}", **form(fields, data))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["mode"] == "async" and body["status"] == "queued"
    assert body["message"] == "Verification job queued successfully"
    assert body["pollUrl"] == f"/api/verification-jobs/{body['jobId']}"
    assert response.headers["Location"] == body["pollUrl"]
    return body["jobId"]


def manifest_gate(item) -> Gate:
    """A gate serving the item's signed manifest over http: its jobs WARN (the registry holds
    the ipfs:// URI), having run every step."""
    return Gate(respond(200, json.dumps(item.manifest).encode()))


def job_of(api, job_id: str) -> dict:
    return api.get(f"/api/verification-jobs/{job_id}").json()


def outcome(job: dict) -> dict:
    """What a delivery must not change once the job completed; `updatedAt` may move (the
    sweeper forgets the deleted file of a completed job)."""
    return {k: v for k, v in job.items() if k != "updatedAt"}


def assert_history(db, job_id: str, **expected) -> None:
    row = history_row(db, job_id)
    assert row is not None, f"no history row for {job_id}"
    assert {k: row[k] for k in expected} == expected, row
    assert history_rows(db, job_id) == 1


def kill_runner(lane) -> None:
    lane.runner.signal(signal.SIGKILL)
    lane.runner.proc.wait(10)


# --- results and history rows --------------------------------------------------------------

def test_ok_job_completes_with_result_and_one_history_row(stack, api, anchored, db):
    data = os.urandom(5000)
    item = anchored(data)
    job_id = submit(api, stack, item, data)

    job = api.wait_for_job(job_id)

    assert job["status"] == "completed", job
    assert job["id"] == job["jobId"] == job_id
    assert job["type"] == "verify" and job["progress"] == 100
    assert job["contentHash"] == item.content_hash
    assert job["manifestUri"] == item.manifest_uri
    assert job["registryAddress"] == stack.endpoints["registry_address"]
    assert job["rpcUrl"] is None and job["error"] is None and job["retryCount"] == 0
    assert job["result"]["status"] == "OK"
    assert list(job["result"]) == ["status", "fileHash", "recovered", "onchain", "checks", "evidence"]  # as API.md shows it
    assert job["result"]["recovered"] == item.creator
    for stamp in ("createdAt", "startedAt", "completedAt", "updatedAt"):
        assert job[stamp].endswith("Z"), stamp
    # The history row says what the result says; its chain is the one the result was read on.
    assert_history(db, job_id, file_hash=item.content_hash, manifest_uri=item.manifest_uri,
                   registry_address=stack.endpoints["registry_address"], creator=item.creator,
                   recovered=item.creator, status="OK",
                   chain_id=stack.endpoints["chain_id"])
    assert job["result"]["evidence"]["chainId"] == stack.endpoints["chain_id"]


def test_warn_and_fail_jobs_complete_with_their_results_and_history(stack, api, anchored, creator_key, db):
    data = os.urandom(900)
    item = anchored(data)
    other = sign_manifest(item.content_hash, creator_key, stack.endpoints["chain_id"])
    other["attestations"] = ["second"]
    other_uri = "ipfs://" + ipfs_add(stack.endpoints["ipfs_api_url"], json.dumps(other).encode())
    warn_id = submit(api, stack, item, data, manifest_uri=other_uri)
    fail_id = submit(api, stack, item, b"tampered bytes")

    warned = api.wait_for_job(warn_id)
    failed = api.wait_for_job(fail_id)

    assert warned["result"]["status"] == "WARN"
    assert failed["status"] == "completed"
    assert failed["result"]["status"] == "FAIL"
    assert failed["result"]["checks"]["manifestHashOk"] is False
    assert_history(db, warn_id, creator=item.creator, recovered=item.creator, status="WARN", manifest_uri=other_uri)
    # The tampered bytes were never registered: the zero creator, and the manifest's own signer.
    assert_history(db, fail_id, creator=ZERO, recovered=item.creator, status="FAIL",
                   file_hash=failed["result"]["fileHash"])


def test_proof_job_and_json_content_hash_submission(stack, api, anchored, db):
    data = os.urandom(1234)
    item = anchored(data)
    body = {"registryAddress": stack.endpoints["registry_address"], "manifestURI": item.manifest_uri,
            "contentHash": item.content_hash.upper().replace("0X", "0x")}
    response = api.post("/api/verification-jobs/proof", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["jobId"]

    job = api.wait_for_job(job_id)

    assert job["type"] == "proof" and job["status"] == "completed"
    assert job["contentHash"] == item.content_hash
    assert job["result"]["tx"] == {"txHash": item.tx_hash, "blockNumber": item.block_number}
    assert job["result"]["verification"]["status"] == "OK"
    assert_history(db, job_id, file_hash=item.content_hash, creator=item.creator, recovered=item.creator,
                   status="OK", chain_id=stack.endpoints["chain_id"])


# --- retries, the dead-letter queue and redrive ---------------------------------------------

def test_transient_rpc_failure_is_retried_then_dead_lettered_and_redriven_to_completion(
        stack, lane, anchored, db):
    """Each attempt is held at the RPC gate, so the test sees every one run (retryCount rising)
    and lets it fail; after the last, the message is in the lane's dead-letter queue (the only
    one there); redriven, the job runs again against the real chain and completes."""
    data = os.urandom(100)
    item = anchored(data)
    max_attempts = 3  # MAX_RETRY_ATTEMPTS, the template's maxReceiveCount
    with Gate(respond(503, b"overloaded", "text/plain")) as rpc:
        job_id = submit(lane.api, stack, item, data, rpcUrl=rpc.url)
        for attempt in range(1, max_attempts + 1):
            arrival = rpc.next_arrival()  # attempt `attempt` is inside the job, at its first RPC call
            running = job_of(lane.api, job_id)
            assert running["status"] == "processing" and running["retryCount"] == attempt - 1, running
            if attempt > 1:  # the previous attempt's error is kept while the next one runs
                assert running["errorCode"] == "RPC_UNAVAILABLE" and "HTTP 503" in running["error"], running
            arrival.release()

        failed = lane.api.wait_for_job(job_id, until=lambda j: j["status"] == "failed")
        assert failed["errorCode"] == "RPC_UNAVAILABLE" and "HTTP 503" in failed["error"], failed
        assert failed["retryCount"] == max_attempts - 1  # attempts 1 and 2 were retried; 3 was the last
        assert rpc.requests_seen == max_attempts

        wait_for(lane.dead_letter_depth, lambda d: d["visible"] == 1, what="the message in the dead-letter queue")
        stats = wait_for(lane.api.stats, lambda s: s["deadLetter"] == 1 and s["waiting"] == s["active"] == 0,
                         what="stats counting the dead letter")
        assert stats["available"] is True and stats["delayed"] == 0

        rpc.answer = forward_to(stack.endpoints["rpc_url"])  # the endpoint has recovered
        rpc.open()
        moved = lane.api.post("/api/verification-jobs/dead-letter/redrive", headers=ADMIN)
        assert moved.status_code == 200, moved.text
        assert moved.json()["moved"] == 1

        done = lane.api.wait_for_job(job_id, until=lambda j: j["status"] == "completed")
    assert done["result"]["status"] == "OK" and done["error"] is None, done
    assert rpc.requests_seen > max_attempts  # the redriven attempt read the registry through it
    assert_history(db, job_id, status="OK", creator=item.creator)
    assert lane.dead_letter_depth() == EMPTY_QUEUE
    wait_for(lane.depth, lambda d: d == EMPTY_QUEUE, what="the lane's work queue drained")


def test_copies_delivered_while_the_job_runs_do_not_run_it_again_and_a_late_copy_does_no_work(
        stack, lane, anchored, db):
    """Copies of a message delivered while the job is running find its lease live: they are put
    back, not run (none reaches the manifest gate), and come back until the job completed, when
    they are consumed. One result, one completion time, one history row. A copy arriving after
    completion is consumed and does no work."""
    data = os.urandom(333)
    item = anchored(data)
    copies = 3  # the lane has four workers: without the lease all three would run beside the first
    with manifest_gate(item) as gate:
        job_id = submit(lane.api, stack, item, data, manifest_uri=f"{gate.url}/manifest.json")
        first = gate.next_arrival()
        assert job_of(lane.api, job_id)["status"] == "processing"
        for _ in range(copies):
            lane.send_copy(job_id)
        wait_for(lane.depth, lambda d: d == {"visible": 0, "in_flight": 1 + copies, "delayed": 0},
                 what="every copy received and put back")
        assert gate.requests_seen == 1 and attempts(db, job_id) == 1

        first.release()
        done = lane.api.wait_for_job(job_id)
        assert done["status"] == "completed" and done["result"]["status"] == "WARN", done
        wait_for(lane.depth, lambda d: d == EMPTY_QUEUE, what="every copy consumed")
        assert outcome(job_of(lane.api, job_id)) == outcome(done)
        assert gate.requests_seen == 1  # no copy did any work
        assert lane.dead_letter_depth() == EMPTY_QUEUE  # and none was spent as a failure

        gate.open()
        lane.send_copy(job_id)  # a late copy
        wait_for(lane.depth, lambda d: d == EMPTY_QUEUE, what="the late copy consumed")
        assert gate.requests_seen == 1

    assert outcome(job_of(lane.api, job_id)) == outcome(done)
    assert history_rows(db, job_id) == 1


def test_worker_killed_mid_job_completes_once_after_redelivery(stack, crash_lane, anchored, db):
    data = os.urandom(2222)
    item = anchored(data)
    with manifest_gate(item) as gate:
        job_id = submit(crash_lane.api, stack, item, data, manifest_uri=f"{gate.url}/manifest.json")
        gate.next_arrival()  # the worker is inside the job, its message in flight

        kill_runner(crash_lane)
        assert job_of(crash_lane.api, job_id)["status"] == "processing"
        gate.open()
        crash_lane.restart_runner()

        job = crash_lane.api.wait_for_job(job_id)
    assert job["status"] == "completed", job
    assert job["result"]["status"] == "WARN"  # the registered URI is the ipfs:// one, not this URL
    assert history_rows(db, job_id) == 1
    wait_for(crash_lane.depth, lambda d: d == EMPTY_QUEUE, what="the redelivered message consumed")


def test_job_of_a_worker_that_dies_on_every_attempt_is_failed_then_redriven_to_completion(
        stack, anchored, db, tmp_path):
    """Workers killed in every attempt never record a failure; after maxReceiveCount receives
    SQS dead-letters the message and the reconciler fails the job from there, leaving the
    message for a redrive, which then runs the job to completion."""
    data = os.urandom(99)
    item = anchored(data)
    max_receives = 3
    with own_lane(stack, tmp_path, visibility_seconds=3, schedules=True) as crash_lane, manifest_gate(item) as gate:
        job_id = submit(crash_lane.api, stack, item, data, manifest_uri=f"{gate.url}/manifest.json")
        for _ in range(max_receives):
            gate.next_arrival()  # this attempt is inside the job: kill its worker there
            kill_runner(crash_lane)
            crash_lane.restart_runner()

        failed = crash_lane.api.wait_for_job(job_id, until=lambda j: j["status"] == "failed")
        assert failed["errorCode"] == "DEAD_LETTERED", failed
        assert f"did not finish after {max_receives} attempts" in failed["error"]
        assert gate.requests_seen == max_receives  # no fourth delivery: the message was dead-lettered
        assert crash_lane.api.stats()["deadLetter"] == 1

        gate.open()
        moved = crash_lane.api.post("/api/verification-jobs/dead-letter/redrive", headers=ADMIN)
        assert moved.status_code == 200 and moved.json()["moved"] == 1, moved.text
        done = crash_lane.api.wait_for_job(job_id, until=lambda j: j["status"] == "completed")
        assert crash_lane.dead_letter_depth() == EMPTY_QUEUE
    assert done["result"]["status"] == "WARN" and done["error"] is None
    assert history_rows(db, job_id) == 1


# --- the retry endpoint ------------------------------------------------------------------

def test_permanent_failure_fails_at_once_and_retry_endpoint_requeues(stack, api):
    missing_cid = "QmYBL4FCdr7YmHm6UEeLGf6UQE2rMqkAEttbCFDNbm1u5o"  # not on the dev node
    fields = {"registryAddress": stack.endpoints["registry_address"], "manifestURI": f"ipfs://{missing_cid}"}
    job_id = api.post("/api/verification-jobs/verify", **form(fields, b"x")).json()["jobId"]

    job = api.wait_for_job(job_id)
    assert job["status"] == "failed" and job["retryCount"] == 0
    assert job["errorCode"] == "MANIFEST_NOT_FOUND"

    retried = api.post(f"/api/verification-jobs/{job_id}/retry", headers=ADMIN)
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "queued"
    assert retried.headers["Location"] == f"/api/verification-jobs/{job_id}"
    again = api.wait_for_job(job_id, until=lambda j: j["status"] == "failed" and j["completedAt"] != job["completedAt"])
    assert again["errorCode"] == "MANIFEST_NOT_FOUND"


def test_retry_of_a_job_that_is_not_failed_is_409(stack, api, anchored):
    data = os.urandom(10)
    item = anchored(data)
    job_id = submit(api, stack, item, data)
    api.wait_for_job(job_id)
    response = api.post(f"/api/verification-jobs/{job_id}/retry", headers=ADMIN)
    assert response.status_code == 409
    assert response.json()["code"] == "INVALID_STATE"
    assert "completed" in response.json()["error"]


def test_retry_of_an_unknown_job_is_404(api):
    response = api.post("/api/verification-jobs/3f1c4a52-0000-4000-8000-000000000000/retry", headers=ADMIN)
    assert response.status_code == 404
    assert response.json()["error"] == "Job not found"


# --- listing and stats ---------------------------------------------------------------------

def test_listing_filters_paginates_and_stats(stack, lane, anchored):
    data = os.urandom(50)
    item = anchored(data)
    completed_before = lane.api.stats()["completed"]
    ids = [submit(lane.api, stack, item, data) for _ in range(3)]
    for job_id in ids:
        lane.api.wait_for_job(job_id)

    page = lane.api.get("/api/verification-jobs?limit=2&offset=0", headers=ADMIN).json()
    assert page["count"] == 2 and page["limit"] == 2 and page["offset"] == 0
    next_page = lane.api.get("/api/verification-jobs?limit=2&offset=2", headers=ADMIN).json()
    assert not {j["id"] for j in page["jobs"]} & {j["id"] for j in next_page["jobs"]}
    newest = [j["createdAt"] for j in page["jobs"] + next_page["jobs"]]
    assert newest == sorted(newest, reverse=True)

    completed = lane.api.get("/api/verification-jobs?status=completed&type=verify&limit=100", headers=ADMIN).json()
    assert set(ids) <= {j["id"] for j in completed["jobs"]}
    assert all(j["status"] == "completed" and j["type"] == "verify" for j in completed["jobs"])

    # The queue figures are the lane's own (all three messages consumed); `completed` counts
    # the database, relative to this test's three jobs.
    wait_for(lane.depth, lambda d: d == EMPTY_QUEUE, what="the lane's work queue drained")
    stats = wait_for(lane.api.stats, lambda s: s["waiting"] == s["active"] == 0, what="stats of a drained queue")
    assert set(stats) >= {"available", "waiting", "active", "delayed", "completed", "failed", "deadLetter"}
    assert stats["available"] is True and stats["delayed"] == 0 and stats["deadLetter"] == 0
    assert stats["completed"] == completed_before + 3


# --- a send that fails, and dependencies that are down -------------------------------------

def test_job_whose_send_failed_is_accepted_and_resent_by_the_sweeper(stack, api, anchored, db, tmp_path):
    """An API whose SQS endpoint refuses connections still answers 202 (the job row is
    written first); the stack's sweeper, whose queue works, sends the job later."""
    data = os.urandom(77)
    item = anchored(data)
    refusing_sqs = f"http://127.0.0.1:{free_port()}"
    with extra_api(stack, {"AWS_ENDPOINT_URL_SQS": refusing_sqs}, tmp_path) as cut_off:
        health = cut_off.get("/api/health")
        assert health.status_code == 503 and health.json()["checks"]["queue"].startswith("error"), health.text
        job_id = submit(cut_off, stack, item, data)
        log = wait_for(cut_off.log_path.read_text, lambda text: job_id in text, what="the API's log of the failed send")
    assert "enqueue failed" in log

    job = api.wait_for_job(job_id)
    assert job["status"] == "completed" and job["result"]["status"] == "OK", job
    enqueued = db.execute("SELECT last_enqueued_at FROM verification_jobs WHERE id = %s", (job_id,)).fetchone()[0]
    assert enqueued is not None  # recorded by the sweeper's send
    assert history_rows(db, job_id) == 1


def test_health_reports_every_dependency(api):
    body = api.get("/api/health").json()
    assert body == {"status": "ok", "checks": {"database": "ok", "queue": "ok", "storage": "ok"}}


@pytest.mark.emulator_neutral  # the database is what is down
def test_health_names_the_dependency_that_is_down(stack, tmp_path):
    dead_database = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?connect_timeout=1"
    with extra_api(stack, {"DATABASE_URL": dead_database}, tmp_path) as broken:
        response = broken.get("/api/health")
        submitted = broken.post("/api/verification-jobs/verify", json={
            "registryAddress": stack.endpoints["registry_address"], "contentHash": "0x" + "ab" * 32,
            "manifestURI": "ipfs://QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"})
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"].startswith("error") and checks["queue"] == "ok" and checks["storage"] == "ok"
    assert submitted.status_code == 503, submitted.text  # never a 500, and says to try again
    assert submitted.json()["code"] == "DATABASE_UNAVAILABLE" and "try again" in submitted.json()["error"]
    assert int(submitted.headers["Retry-After"]) > 0


def test_without_a_queue_the_job_endpoint_verifies_synchronously(stack, anchored, tmp_path):
    data = os.urandom(64)
    item = anchored(data)
    fields = {"registryAddress": stack.endpoints["registry_address"], "manifestURI": item.manifest_uri}
    with extra_api(stack, {"QUEUE_URL": None}, tmp_path) as sync_api:
        response = sync_api.post("/api/verification-jobs/verify", **form(fields, data))
        retry = sync_api.post("/api/verification-jobs/3f1c4a52-0000-4000-8000-000000000000/retry", headers=ADMIN)
        redrive = sync_api.post("/api/verification-jobs/dead-letter/redrive", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["mode"] == "sync"
    assert response.json()["result"]["status"] == "OK"
    for answer in (retry, redrive):
        assert answer.status_code == 409, answer.text
        assert answer.json()["code"] == "QUEUE_NOT_CONFIGURED" and answer.json()["error"]
