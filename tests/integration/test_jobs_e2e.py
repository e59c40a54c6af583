"""Asynchronous jobs end to end: HTTP → S3 → Postgres → SQS → runner → worker handler →
Postgres, through the emulator, the dev chain and the dev IPFS node."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from devstack.anchoring import ipfs_add, sign_manifest
from devstack.stack import free_port
from tests.integration.conftest import API_KEY, extra_api, form, history_rows

ADMIN = {"x-api-key": API_KEY}


def sqs(stack):
    return boto3.client("sqs", endpoint_url=stack.endpoints["aws_endpoint_url"], region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def submit(api, stack, item, data: bytes, kind: str = "verify", **extra: str) -> str:
    fields = {"registryAddress": stack.endpoints["registry_address"], "manifestURI": item.manifest_uri, **extra}
    response = api.post(f"/api/verification-jobs/{kind}", **form(fields, data))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["mode"] == "async" and body["status"] == "queued"
    assert body["message"] == "Verification job queued successfully"
    assert body["pollUrl"] == f"/api/verification-jobs/{body['jobId']}"
    assert response.headers["Location"] == body["pollUrl"]
    return body["jobId"]


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
    assert history_rows(db, job_id) == 1


def test_warn_and_fail_jobs_complete_with_their_results(stack, api, anchored, creator_key):
    data = os.urandom(900)
    item = anchored(data)
    other = sign_manifest(item.content_hash, creator_key, stack.endpoints["chain_id"])
    other["attestations"] = ["second"]
    other_uri = "ipfs://" + ipfs_add(stack.endpoints["ipfs_api_url"], json.dumps(other).encode())
    fields = {"registryAddress": stack.endpoints["registry_address"], "manifestURI": other_uri}
    warn_id = api.post("/api/verification-jobs/verify", **form(fields, data)).json()["jobId"]
    fail_id = submit(api, stack, item, b"tampered bytes")

    assert api.wait_for_job(warn_id)["result"]["status"] == "WARN"
    failed = api.wait_for_job(fail_id)
    assert failed["status"] == "completed"
    assert failed["result"]["status"] == "FAIL"
    assert failed["result"]["checks"]["manifestHashOk"] is False


def test_proof_job_and_json_content_hash_submission(stack, api, anchored):
    data = os.urandom(1234)
    item = anchored(data)
    body = {"registryAddress": stack.endpoints["registry_address"], "manifestURI": item.manifest_uri,
            "contentHash": item.content_hash.upper().replace("0X", "0x")}
    response = api.post("/api/verification-jobs/proof", json=body)
    assert response.status_code == 202, response.text

    job = api.wait_for_job(response.json()["jobId"])

    assert job["type"] == "proof" and job["status"] == "completed"
    assert job["contentHash"] == item.content_hash
    assert job["result"]["tx"] == {"txHash": item.tx_hash, "blockNumber": item.block_number}
    assert job["result"]["verification"]["status"] == "OK"


def test_unreachable_rpc_is_retried_with_backoff_then_dead_lettered_and_redriven(stack, api, anchored):
    data = os.urandom(100)
    item = anchored(data)
    dead_rpc = f"http://127.0.0.1:{free_port()}"
    job_id = submit(api, stack, item, data, rpcUrl=dead_rpc)

    # Between attempts the job waits in `queued` with the attempt's error; delays grow (1 s, then 2 s).
    first_seen: dict[int, float] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = api.get(f"/api/verification-jobs/{job_id}").json()
        if job["status"] == "queued" and job["retryCount"] >= 1:
            first_seen.setdefault(job["retryCount"], time.monotonic())
            assert job["errorCode"] == "RPC_UNAVAILABLE", job
        if job["status"] == "failed":
            first_seen.setdefault(0, time.monotonic())  # 0: the final failure
            break
        time.sleep(0.05)

    assert job["status"] == "failed", job
    assert job["errorCode"] == "RPC_UNAVAILABLE", job
    assert "unreachable" in job["error"] and dead_rpc.rsplit(":", 1)[1] in job["error"], job
    assert job["retryCount"] == 2  # attempts 1 and 2 were retried; attempt 3 was the last
    assert set(first_seen) == {0, 1, 2}, first_seen
    first_delay = first_seen[2] - first_seen[1]
    second_delay = first_seen[0] - first_seen[2]
    assert second_delay > first_delay, (first_delay, second_delay)

    stats = _wait(lambda: api.get("/api/verification-jobs/stats").json(), lambda s: s["deadLetter"] >= 1)
    assert stats["available"] is True and stats["deadLetter"] >= 1 and stats["failed"] >= 1

    moved = api.post("/api/verification-jobs/dead-letter/redrive", headers=ADMIN)
    assert moved.status_code == 200 and moved.json()["moved"] >= 1
    back = api.wait_for_job(job_id, until=lambda j: j["status"] != "failed" or j["retryCount"] > job["retryCount"],
                            timeout=30)
    assert back["status"] in ("queued", "processing") or back["retryCount"] > job["retryCount"]


def _wait(fetch, until, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if until(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_duplicate_and_concurrent_deliveries_leave_one_history_row(stack, api, anchored, db):
    data = os.urandom(333)
    item = anchored(data)
    job_id = submit(api, stack, item, data)
    queue_url = stack.endpoints["queue_url"]
    client = sqs(stack)
    for _ in range(3):  # racing copies of the same message
        client.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"jobId": job_id}))
    done = api.wait_for_job(job_id)
    assert done["status"] == "completed"

    client.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"jobId": job_id}))  # a late copy
    _wait(lambda: client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"],
          lambda a: a["ApproximateNumberOfMessages"] == "0" and a["ApproximateNumberOfMessagesNotVisible"] == "0")
    time.sleep(1)

    again = api.get(f"/api/verification-jobs/{job_id}").json()
    assert again["status"] == "completed"
    assert again["completedAt"] == done["completedAt"]
    assert again["result"] == done["result"]
    assert history_rows(db, job_id) == 1


class SlowManifest(BaseHTTPRequestHandler):
    """Serves one manifest slowly, so a test can kill the worker in the middle of the job."""

    manifest: bytes = b"{}"
    delay = 4.0

    def do_GET(self) -> None:  # noqa: N802
        time.sleep(self.delay)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.manifest)))
        self.end_headers()
        self.wfile.write(self.manifest)

    def log_message(self, *args) -> None:
        pass


def test_worker_killed_mid_job_completes_once_after_redelivery(stack, api, anchored, db):
    data = os.urandom(2222)
    item = anchored(data)
    handler = type("Handler", (SlowManifest,), {"manifest": json.dumps(item.manifest).encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    manifest_url = f"http://127.0.0.1:{server.server_address[1]}/manifest.json"
    try:
        fields = {"registryAddress": stack.endpoints["registry_address"], "manifestURI": manifest_url}
        job_id = api.post("/api/verification-jobs/verify", **form(fields, data)).json()["jobId"]
        running = api.wait_for_job(job_id, until=lambda j: j["status"] == "processing" and j["progress"] >= 10)
        assert running["status"] == "processing"

        stack.runner.signal(signal.SIGKILL)  # the worker dies mid-job, its message still in flight
        stack.runner.proc.wait(10)
        assert api.get(f"/api/verification-jobs/{job_id}").json()["status"] == "processing"
        stack.restart_runner()

        job = api.wait_for_job(job_id, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert job["status"] == "completed", job
    assert job["result"]["status"] == "WARN"  # the registered URI is the ipfs:// one, not this URL
    assert history_rows(db, job_id) == 1


def test_permanent_failure_fails_at_once_and_retry_endpoint_requeues(stack, api):
    missing_cid = "QmYBL4FCdr7YmHm6UEeLGf6UQE2rMqkAEttbCFDNbm1u5o"  # not on the dev node
    fields = {"registryAddress": stack.endpoints["registry_address"], "manifestURI": f"ipfs://{missing_cid}"}
    job_id = api.post("/api/verification-jobs/verify", **form(fields, b"x")).json()["jobId"]

    job = api.wait_for_job(job_id)
    assert job["status"] == "failed" and job["retryCount"] == 0
    assert job["errorCode"] == "MANIFEST_NOT_FOUND"

    retried = api.post(f"/api/verification-jobs/{job_id}/retry", headers=ADMIN)
    assert retried.status_code == 202, retried.text
    again = api.wait_for_job(job_id, until=lambda j: j["status"] == "failed" and j["completedAt"] != job["completedAt"])
    assert again["status"] == "failed"


def test_retry_of_a_job_that_is_not_failed_is_409(stack, api, anchored):
    data = os.urandom(10)
    item = anchored(data)
    job_id = submit(api, stack, item, data)
    api.wait_for_job(job_id)
    response = api.post(f"/api/verification-jobs/{job_id}/retry", headers=ADMIN)
    assert response.status_code == 409
    assert response.json()["code"] == "INVALID_STATE"


def test_listing_filters_paginates_and_stats(stack, api, anchored):
    data = os.urandom(50)
    item = anchored(data)
    ids = [submit(api, stack, item, data) for _ in range(3)]
    for job_id in ids:
        api.wait_for_job(job_id)

    page = api.get("/api/verification-jobs?limit=2&offset=0", headers=ADMIN).json()
    assert page["count"] == 2 and page["limit"] == 2 and page["offset"] == 0
    next_page = api.get("/api/verification-jobs?limit=2&offset=2", headers=ADMIN).json()
    assert not {j["id"] for j in page["jobs"]} & {j["id"] for j in next_page["jobs"]}
    newest = [j["createdAt"] for j in page["jobs"] + next_page["jobs"]]
    assert newest == sorted(newest, reverse=True)

    completed = api.get("/api/verification-jobs?status=completed&type=verify&limit=100", headers=ADMIN).json()
    assert set(ids) <= {j["id"] for j in completed["jobs"]}
    assert all(j["status"] == "completed" and j["type"] == "verify" for j in completed["jobs"])

    stats = api.get("/api/verification-jobs/stats").json()
    assert set(stats) == {"available", "waiting", "active", "delayed", "completed", "failed", "deadLetter"}
    assert stats["available"] is True and stats["completed"] >= 3


def test_job_stuck_in_queued_is_resent_by_the_sweeper(stack, api, anchored, db):
    data = os.urandom(77)
    item = anchored(data)
    job_id = str(uuid.uuid4())
    # As if the API had recorded the job and then failed to send its message.
    db.execute(
        "INSERT INTO verification_jobs (id, type, status, progress, content_hash, manifest_uri, registry_address,"
        " created_at, updated_at) VALUES (%s, 'verify', 'queued', 0, %s, %s, %s, now() - interval '1 minute',"
        " now() - interval '1 minute')",
        (job_id, item.content_hash, item.manifest_uri, stack.endpoints["registry_address"]),
    )
    job = api.wait_for_job(job_id, timeout=30)
    assert job["status"] == "completed" and job["result"]["status"] == "OK"


def test_health_reports_every_dependency(api):
    body = api.get("/api/health").json()
    assert body == {"status": "ok", "checks": {"database": "ok", "queue": "ok", "storage": "ok"}}


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


def test_without_a_queue_the_job_endpoint_verifies_synchronously(stack, anchored, tmp_path):
    data = os.urandom(64)
    item = anchored(data)
    fields = {"registryAddress": stack.endpoints["registry_address"], "manifestURI": item.manifest_uri}
    with extra_api(stack, {"QUEUE_URL": None}, tmp_path) as sync_api:
        response = sync_api.post("/api/verification-jobs/verify", **form(fields, data))
    assert response.status_code == 200, response.text
    assert response.json()["mode"] == "sync"
    assert response.json()["result"]["status"] == "OK"


def test_dead_lettered_job_of_a_dead_worker_is_failed_then_redriven_to_completion(stack, api, anchored, db):
    """Workers that die on every attempt never record a failure; the reconciler does, from the
    dead-letter queue, and leaves the message there for a redrive."""
    data = os.urandom(99)
    item = anchored(data)
    job_id = str(uuid.uuid4())
    db.execute(
        "INSERT INTO verification_jobs (id, type, status, progress, content_hash, manifest_uri, registry_address,"
        " attempts, last_enqueued_at) VALUES (%s, 'verify', 'processing', 10, %s, %s, %s, 3, now())",
        (job_id, item.content_hash, item.manifest_uri, stack.endpoints["registry_address"]),
    )
    sqs(stack).send_message(QueueUrl=stack.endpoints["dead_letter_queue_url"],
                            MessageBody=json.dumps({"jobId": job_id}))

    failed = api.wait_for_job(job_id, until=lambda j: j["status"] == "failed", timeout=30)
    assert failed["status"] == "failed" and failed["errorCode"] == "DEAD_LETTERED", failed
    assert "did not finish after 3 attempts" in failed["error"]
    assert api.get("/api/verification-jobs/stats").json()["deadLetter"] >= 1

    assert api.post("/api/verification-jobs/dead-letter/redrive", headers=ADMIN).json()["moved"] >= 1
    done = api.wait_for_job(job_id, until=lambda j: j["status"] == "completed", timeout=30)
    assert done["status"] == "completed" and done["result"]["status"] == "OK"
    assert history_rows(db, job_id) == 1
