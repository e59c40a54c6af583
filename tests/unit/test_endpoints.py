"""The HTTP layer through Chalice's test client: input rules, what each endpoint does to storage,
the job store and the queue (moto and the fake store), and how every failure is answered."""
from __future__ import annotations

import dataclasses
import json

import pytest
from chalice.test import Client
from urllib3 import encode_multipart_formdata

import app
from chalicelib.api import endpoints
from chalicelib.errors import PermanentError, TransientError
from chalicelib.vocabulary import AWAITING_UPLOAD, CANCELLED, COMPLETED, FAILED, LIST_OFFSET_MAX, QUEUED
from chalicelib.wiring import verification as verification_core

from tests.unit.conftest import API_KEY, make_settings

REGISTRY = "0x" + "ab" * 20
MANIFEST = "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/manifest.json"
HASH = "0x" + "11" * 32
JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture()
def use(monkeypatch, services):
    """Serve app.py with `services` (or a variant of them given later)."""
    current = [services]
    monkeypatch.setattr(app, "services", lambda: current[0])

    def swap(**changes):
        current[0] = dataclasses.replace(current[0], **changes)
        return current[0]
    return swap


@pytest.fixture()
def http(use):
    with Client(app.app) as client:
        yield client.http


def hash_job(**fields):
    return json.dumps({"registryAddress": REGISTRY, "manifestURI": MANIFEST, "contentHash": HASH, **fields}).encode()


def form(data=b"hello", content_type="text/plain", **fields):
    values = {"registryAddress": REGISTRY, "manifestURI": MANIFEST, **fields}
    parts = [(k, v) for k, v in values.items() if v is not None]
    if data is not None:
        parts.append(("file", ("clip.txt", data, content_type)))
    body, header = encode_multipart_formdata(parts)
    return body, {"Content-Type": header}


def error(response) -> dict:
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)


def only_job(store):
    [job] = store.jobs.values()
    return job


# --- submission --------------------------------------------------------------------------------

def test_inline_submission_stores_records_and_enqueues(http, aws, store):
    body, headers = form(b"\x00file bytes")
    response = http.post("/api/verification-jobs/verify", headers=headers, body=body)
    assert response.status_code == 202
    answer = json.loads(response.body)
    job = only_job(store)
    assert answer == {"mode": "async", "jobId": job.id, "status": QUEUED,
                      "message": "Verification job queued successfully", "pollUrl": f"/api/verification-jobs/{job.id}"}
    assert response.headers["Location"] == answer["pollUrl"]
    assert job.object_key == f"inline/{job.id}" and job.file_name == "clip.txt" and job.file_size == 11
    assert aws.s3.get_object(Bucket=aws.bucket, Key=job.object_key)["Body"].read() == b"\x00file bytes"
    assert aws.bodies(aws.queue_url) == [json.dumps({"jobId": job.id})]
    assert job.last_enqueued_at is not None


def test_hash_submission_of_a_proof(http, aws, store):
    response = http.post("/api/verification-jobs/proof", headers=JSON_HEADERS, body=hash_job())
    assert response.status_code == 202
    job = only_job(store)
    assert (job.type, job.content_hash, job.object_key) == ("proof", HASH, None)


def test_queue_down_at_submission_still_answers_202_and_leaves_the_job_to_the_sweeper(http, aws, store, use):
    aws.sqs.delete_queue(QueueUrl=aws.queue_url)
    response = http.post("/api/verification-jobs/verify", headers=JSON_HEADERS, body=hash_job())
    assert response.status_code == 202
    job = only_job(store)
    assert job.status == QUEUED and job.last_enqueued_at is None  # what the sweeper looks for


def test_storage_down_is_a_503_with_retry_after_and_no_job(http, aws, store):
    aws.s3.delete_bucket(Bucket=aws.bucket)
    body, headers = form()
    response = http.post("/api/verification-jobs/verify", headers=headers, body=body)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert error(response)["code"] == "STORAGE_UNAVAILABLE"
    assert store.jobs == {} and aws.count(aws.queue_url) == (0, 0)


def test_database_down_is_a_503(http, store):
    store.down = True
    response = http.post("/api/verification-jobs/verify", headers=JSON_HEADERS, body=hash_job())
    assert (response.status_code, error(response)["code"]) == (503, "DATABASE_UNAVAILABLE")
    assert response.headers["Retry-After"] == "5"


def test_a_bug_is_a_logged_500_in_the_contract_shape(http, store, monkeypatch):
    monkeypatch.setattr(store, "create_job", lambda **kw: {}["boom"])
    response = http.post("/api/verification-jobs/verify", headers=JSON_HEADERS, body=hash_job())
    assert response.status_code == 500
    assert error(response) == {"error": "internal error; it has been logged", "code": "INTERNAL_ERROR"}


def test_without_a_queue_the_job_endpoints_verify_in_the_request(http, aws, use, monkeypatch):
    settings = make_settings(aws, QUEUE_URL=None)
    use(settings=settings)
    result = {"status": "OK", "fileHash": HASH}
    monkeypatch.setattr(verification_core(), "verify_hash", lambda *args: result)
    response = http.post("/api/verification-jobs/verify", headers=JSON_HEADERS, body=hash_job())
    assert (response.status_code, json.loads(response.body)) == (200, {"mode": "sync", "result": result})


# --- input rules (each a 4xx with the contract's body) ------------------------------------------

@pytest.mark.parametrize("fields,field,code", [
    ({"registryAddress": "0x123"}, "registryAddress", "VALIDATION_ERROR"),
    ({"registryAddress": None}, "registryAddress", "VALIDATION_ERROR"),
    ({"manifestURI": "ftp://example.com/m.json"}, "manifestURI", "VALIDATION_ERROR"),
    ({"manifestURI": "ipfs://not-a-cid"}, "manifestURI", "VALIDATION_ERROR"),
    ({"manifestURI": "https://example.com/" + "a" * 2048}, "manifestURI", "VALIDATION_ERROR"),
    ({"rpcUrl": "http://169.254.169.254/"}, "rpcUrl", "URL_NOT_ALLOWED"),
    ({"rpcUrl": "ws://example.com"}, "rpcUrl", "VALIDATION_ERROR"),
    ({"contentHash": "0x1234"}, "contentHash", "VALIDATION_ERROR"),
])
def test_bad_fields_are_400_naming_the_field(http, store, fields, field, code):
    response = http.post("/api/verification-jobs/verify", headers=JSON_HEADERS, body=hash_job(**fields))
    assert response.status_code == 400
    body = error(response)
    assert (body["code"], body["field"]) == (code, field) and body["error"]
    assert store.jobs == {}


def test_body_shapes(http):
    cases = [
        ({"Content-Type": "application/json"}, b"{not json", 400, "INVALID_JSON"),
        ({"Content-Type": "application/json"}, b"[1, 2]", 400, "INVALID_JSON"),
        ({"Content-Type": "application/json"}, b"[" * 100_000, 400, "INVALID_JSON"),  # nesting: no crash
        ({"Content-Type": "text/csv"}, b"a,b", 415, "UNSUPPORTED_MEDIA_TYPE"),
        ({"Content-Type": "multipart/form-data"}, b"--x--", 400, "INVALID_MULTIPART"),
    ]
    for headers, body, status, code in cases:
        response = http.post("/api/verification-jobs/verify", headers=headers, body=body)
        assert (response.status_code, error(response)["code"]) == (status, code), body[:20]


def test_file_rules(http, use, aws):
    body, headers = form(content_type="application/x-msdownload")
    response = http.post("/api/verification-jobs/verify", headers=headers, body=body)
    assert (response.status_code, error(response)["field"]) == (415, "file")
    body, headers = form(data=b"")
    assert error(http.post("/api/verify", headers=headers, body=body))["field"] == "file"
    body, headers = form(data=None)
    assert http.post("/api/verification-jobs/verify", headers=headers, body=body).status_code == 400
    use(settings=make_settings(aws, MAX_INLINE_UPLOAD_BYTES="10"))
    body, headers = form(data=b"x" * 11)
    response = http.post("/api/verification-jobs/verify", headers=headers, body=body)
    assert response.status_code == 413
    assert error(response)["code"] == "PAYLOAD_TOO_LARGE" and "/api/verification-jobs/uploads" in error(response)["error"]


def test_sync_endpoints_take_no_hash(http):
    response = http.post("/api/verify", headers=JSON_HEADERS, body=hash_job())
    assert (response.status_code, error(response)["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")


# --- uploads -----------------------------------------------------------------------------------

def test_upload_creation_presigns_a_post_for_a_new_job(http, store):
    request = {"type": "proof", "registryAddress": REGISTRY, "manifestURI": MANIFEST, "filename": "clip.mp4",
               "contentType": "video/mp4", "size": 1024}
    response = http.post("/api/verification-jobs/uploads", headers=JSON_HEADERS, body=json.dumps(request).encode())
    assert response.status_code == 201
    answer = json.loads(response.body)
    job = only_job(store)
    assert answer["jobId"] == job.id and answer["status"] == "awaiting_upload"
    assert job.object_key == f"uploads/{job.id}" and job.upload_expires_at is not None
    upload = answer["upload"]
    assert upload["method"] == "POST" and upload["fields"]["key"] == job.object_key
    assert upload["fields"]["Content-Type"] == "video/mp4" and upload["maxBytes"] == 1024  # the declared size, pinned


def test_upload_size_may_be_written_as_json_does_for_an_integral_number(http, store):
    """JSON Schema counts 1024.0 as an integer, and some clients write sizes that way."""
    request = {"registryAddress": REGISTRY, "manifestURI": MANIFEST, "filename": "a.bin", "size": 1024.0}
    response = http.post("/api/verification-jobs/uploads", headers=JSON_HEADERS, body=json.dumps(request).encode())
    assert response.status_code == 201 and json.loads(response.body)["upload"]["maxBytes"] == 1024


@pytest.mark.parametrize("change,status,field", [
    ({"type": "audit"}, 400, "type"), ({"filename": ""}, 400, "filename"), ({"filename": "x" * 256}, 400, "filename"),
    ({"size": 0}, 400, "size"), ({"size": True}, 400, "size"), ({"size": 1.5}, 400, "size"),
    ({"size": "10"}, 400, "size"), ({"size": 21 * 1024 ** 3}, 413, "size"),
    ({"size": 2 * 1024 ** 3, "multipart": False}, 413, "size"), ({"multipart": True}, 400, "size"),
    ({"multipart": "yes", "size": 10}, 400, "multipart"),
    ({"contentType": "application/zip"}, 415, "contentType"),
])
def test_upload_request_rules(http, change, status, field):
    request = {"registryAddress": REGISTRY, "manifestURI": MANIFEST, "filename": "a.bin", **change}
    response = http.post("/api/verification-jobs/uploads", headers=JSON_HEADERS, body=json.dumps(request).encode())
    assert (response.status_code, error(response)["field"]) == (status, field)


# --- reading -----------------------------------------------------------------------------------

def test_get_job_and_not_found(http, store):
    job = store.create_job(job_type="verify", status=QUEUED, manifest_uri=MANIFEST, registry_address=REGISTRY)
    body = json.loads(http.get(f"/api/verification-jobs/{job.id.upper()}").body)
    assert body["id"] == body["jobId"] == job.id and body["status"] == QUEUED
    for missing in ("not-a-uuid", "3f1c4a52-0000-4000-8000-000000000000"):
        response = http.get(f"/api/verification-jobs/{missing}")
        assert (response.status_code, error(response)) == (404, {"error": "Job not found", "code": "NOT_FOUND"})


@pytest.mark.parametrize("query,field", [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=-1", "limit"), ("limit=ten", "limit"),
    ("offset=-1", "offset"), (f"offset={LIST_OFFSET_MAX + 1}", "offset"), ("status=done", "status"),
    ("type=audit", "type"), ("offset=", "offset"), ("limit=&type=verify", "limit"),
    ("limit=1&limit=100", "limit"), ("offset=0&offset=5", "offset"), ("status=queued&status=failed", "status"),
])
def test_listing_bounds(http, query, field):
    response = http.get(f"/api/verification-jobs?{query}", headers={"x-api-key": API_KEY})
    assert (response.status_code, error(response)["code"], error(response)["field"]) == (400, "VALIDATION_ERROR", field)


def test_listing_pages_newest_first_at_the_offset_bounds(http, store):
    for _ in range(3):
        store.create_job(job_type="verify", status=QUEUED, manifest_uri=MANIFEST, registry_address=REGISTRY)
    key = {"x-api-key": API_KEY}
    page = json.loads(http.get("/api/verification-jobs?limit=2&offset=0", headers=key).body)
    assert (page["count"], page["limit"], page["offset"]) == (2, 2, 0)
    last = json.loads(http.get(f"/api/verification-jobs?offset={LIST_OFFSET_MAX}", headers=key).body)
    assert last["jobs"] == [] and last["offset"] == LIST_OFFSET_MAX
    unfiltered = json.loads(http.get("/api/verification-jobs?status=&type=", headers=key).body)
    assert unfiltered["count"] == 3  # an empty filter is documented as no filter


def test_stats_count_the_queue_and_say_when_it_is_unavailable(http, aws, store):
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody="{}")
    aws.sqs.send_message(QueueUrl=aws.proof_queue_url, MessageBody="{}")
    aws.sqs.send_message(QueueUrl=aws.proof_queue_url, MessageBody="{}")
    aws.sqs.send_message(QueueUrl=aws.dlq_url, MessageBody="{}")
    aws.sqs.send_message(QueueUrl=aws.large_queue_url, MessageBody="{}")
    failed = store.create_job(job_type="verify", status=QUEUED, manifest_uri=MANIFEST, registry_address=REGISTRY)
    store.fail_job(failed.id, "x", "MANIFEST_INVALID")
    store.cancel_job(store.create_job(job_type="verify", status=QUEUED, manifest_uri=MANIFEST,
                                      registry_address=REGISTRY).id)
    store.create_job(job_type="proof", status=AWAITING_UPLOAD, manifest_uri=MANIFEST, registry_address=REGISTRY)
    body = json.loads(http.get("/api/verification-jobs/stats").body)
    assert body == {"available": True, "waiting": 4, "active": 0, "delayed": 0, "completed": 0, "failed": 1,
                    "deadLetter": 1, "cancelled": 1, "awaitingUpload": 1, "byType": {
                        "verify": {"waiting": 1, "active": 0, "delayed": 0, "deadLetter": 1},
                        "proof": {"waiting": 2, "active": 0, "delayed": 0, "deadLetter": 0}},
                    "largeFiles": {"waiting": 1, "active": 0, "delayed": 0, "deadLetter": 0}}
    aws.sqs.delete_queue(QueueUrl=aws.queue_url)
    response = http.get("/api/verification-jobs/stats")
    assert response.status_code == 200
    assert json.loads(response.body) == {"available": False, "waiting": 0, "active": 0, "delayed": 0,
                                         "completed": 0, "failed": 1, "deadLetter": 0, "cancelled": 1,
                                         "awaitingUpload": 1}


def test_health_names_what_is_down(http, aws, store):
    assert json.loads(http.get("/api/health").body) == \
        {"status": "ok", "checks": {"database": "ok", "queue": "ok", "storage": "ok"}}
    aws.s3.delete_bucket(Bucket=aws.bucket)
    store.down = True
    response = http.get("/api/health")
    checks = json.loads(response.body)["checks"]
    assert response.status_code == 503 and checks["queue"] == "ok"
    assert checks["storage"].startswith("error:") and "DATABASE" not in checks["storage"]
    assert checks["database"].startswith("error:")


# --- the API key -------------------------------------------------------------------------------

ADMIN = [("GET", "/api/verification-jobs"), ("POST", "/api/verification-jobs/3f1c4a52-0000-4000-8000-000000000000/retry"),
         ("POST", "/api/verification-jobs/dead-letter/redrive")]


@pytest.mark.parametrize("method,path", ADMIN)
@pytest.mark.parametrize("key", [None, "wrong", API_KEY + "x"])
def test_a_missing_or_wrong_key_is_401(http, method, path, key):
    headers = {"x-api-key": key} if key else {}
    response = http.request(method, path, headers=headers)
    assert (response.status_code, error(response)["code"]) == (401, "UNAUTHORIZED")


@pytest.mark.parametrize("method,path,status", [(m, p, s) for (m, p), s in zip(ADMIN, (200, 404, 200))])
def test_with_no_key_configured_the_admin_endpoints_are_open(http, aws, use, method, path, status):
    use(settings=make_settings(aws, API_KEY=None))
    assert http.request(method, path).status_code == status


# --- retry and redrive -------------------------------------------------------------------------

@pytest.fixture()
def failed_job(store, aws):
    aws.s3.put_object(Bucket=aws.bucket, Key="inline/f", Body=b"data")
    job = store.create_job(job_type="verify", status=QUEUED, manifest_uri=MANIFEST, registry_address=REGISTRY,
                           object_key="inline/f")
    store.fail_job(job.id, "RPC unreachable", "RPC_UNAVAILABLE")
    return job


def retry(http, job_id):
    return http.post(f"/api/verification-jobs/{job_id}/retry", headers={"x-api-key": API_KEY})


def test_retry_requeues_a_failed_job_and_sends_it(http, aws, store, failed_job):
    response = retry(http, failed_job.id)
    assert response.status_code == 202 and response.headers["Location"].endswith(failed_job.id)
    job = store.get_job(failed_job.id)
    assert job.status == QUEUED and job.error is None and job.last_enqueued_at is not None
    assert aws.bodies(aws.queue_url) == [json.dumps({"jobId": job.id})]


def test_retry_refusals(http, aws, store, failed_job, use):
    queued = store.create_job(job_type="verify", status=QUEUED, manifest_uri=MANIFEST, registry_address=REGISTRY)
    assert (retry(http, queued.id).status_code, error(retry(http, queued.id))["code"]) == (409, "INVALID_STATE")
    assert retry(http, "3f1c4a52-0000-4000-8000-000000000000").status_code == 404
    aws.s3.delete_object(Bucket=aws.bucket, Key="inline/f")
    response = retry(http, failed_job.id)
    assert (response.status_code, error(response)["code"]) == (409, "UPLOAD_MISSING")
    assert store.get_job(failed_job.id).status == FAILED
    use(settings=make_settings(aws, QUEUE_URL=None))
    response = retry(http, failed_job.id)
    assert (response.status_code, error(response)["code"]) == (409, "QUEUE_NOT_CONFIGURED")


def test_retry_when_storage_is_down_is_a_503(http, aws, failed_job):
    aws.s3.delete_object(Bucket=aws.bucket, Key="inline/f")
    aws.s3.delete_bucket(Bucket=aws.bucket)
    response = retry(http, failed_job.id)
    assert (response.status_code, error(response)["code"]) == (503, "STORAGE_UNAVAILABLE")


def test_redrive_answers_what_it_moved(http, aws, store, failed_job):
    aws.sqs.send_message(QueueUrl=aws.dlq_url, MessageBody=json.dumps({"jobId": failed_job.id}))
    response = http.post("/api/verification-jobs/dead-letter/redrive", headers={"x-api-key": API_KEY})
    assert (response.status_code, json.loads(response.body)) == (200, {"moved": 1, "remaining": 0})
    assert store.get_job(failed_job.id).status == QUEUED


def test_redrive_when_the_queue_is_down_is_a_503(http, aws):
    aws.sqs.delete_queue(QueueUrl=aws.dlq_url)
    response = http.post("/api/verification-jobs/dead-letter/redrive", headers={"x-api-key": API_KEY})
    assert (response.status_code, error(response)["code"]) == (503, "QUEUE_UNAVAILABLE")
    assert response.headers["Retry-After"] == "5"


# --- synchronous verification ------------------------------------------------------------------

@pytest.mark.parametrize("raised,status", [
    (PermanentError("The manifest is not valid JSON.", "MANIFEST_INVALID"), 422),
    (TransientError("The RPC endpoint is unreachable.", "RPC_UNAVAILABLE"), 502),
])
def test_a_failed_verification_in_the_request_is_422_or_502(http, monkeypatch, raised, status):
    def fail(*args):
        raise raised
    monkeypatch.setattr(verification_core(), "prove_hash", fail)
    body, headers = form()
    response = http.post("/api/proof", headers=headers, body=body)
    assert (response.status_code, error(response)["code"]) == (status, raised.code)
    assert error(response)["error"].startswith(raised.message)


def test_the_sync_proof_gets_the_file_name_and_hash(http, monkeypatch):
    seen = []
    monkeypatch.setattr(verification_core(), "prove_hash", lambda *args: seen.append(args[:2]) or {"version": "1.0"})
    body, headers = form(b"test")
    response = http.post("/api/proof", headers=headers, body=body)
    assert (response.status_code, json.loads(response.body)) == (200, {"version": "1.0"})
    assert seen == [("0x9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "clip.txt")]


# --- cancellation ------------------------------------------------------------------------------

def cancel(http, job_id):
    return http.post(f"/api/verification-jobs/{job_id}/cancel")


@pytest.mark.parametrize("status", [AWAITING_UPLOAD, QUEUED])
def test_cancel_finishes_the_job_and_deletes_its_file(http, aws, store, status):
    aws.s3.put_object(Bucket=aws.bucket, Key="inline/c", Body=b"data")
    job = store.create_job(job_type="verify", status=status, manifest_uri=MANIFEST, registry_address=REGISTRY,
                           object_key="inline/c")
    response = cancel(http, job.id)
    assert response.status_code == 200
    body = json.loads(response.body)
    assert (body["jobId"], body["status"], body["result"]) == (job.id, CANCELLED, None)
    assert body["completedAt"] is not None
    assert aws.s3.list_objects_v2(Bucket=aws.bucket).get("KeyCount") == 0
    assert store.get_job(job.id).object_key is None


def test_cancel_refusals(http, store, failed_job):
    done = store.create_job(job_type="verify", status=QUEUED, manifest_uri=MANIFEST, registry_address=REGISTRY)
    store.complete_job(done.id, {"status": "OK"}, {"status": "OK", "file_hash": HASH})
    for job_id, status in ((done.id, COMPLETED), (failed_job.id, FAILED)):
        response = cancel(http, job_id)
        assert (response.status_code, error(response)["code"]) == (409, "INVALID_STATE")
        assert status in error(response)["error"] and store.get_job(job_id).status == status
    assert cancel(http, "3f1c4a52-0000-4000-8000-000000000000").status_code == 404
    assert cancel(http, "not-a-uuid").status_code == 404


def test_cancel_when_storage_is_down_still_cancels_and_leaves_the_file_to_the_sweep(http, aws, store):
    job = store.create_job(job_type="verify", status=QUEUED, manifest_uri=MANIFEST, registry_address=REGISTRY,
                           object_key="inline/gone")
    aws.s3.delete_bucket(Bucket=aws.bucket)
    response = cancel(http, job.id)
    assert response.status_code == 200 and json.loads(response.body)["status"] == CANCELLED
    assert store.get_job(job.id).object_key == "inline/gone"  # the sweep deletes cancelled jobs' files
    assert [j.id for j in store.finished_jobs_with_objects(0.0, 10**9)] == [job.id]
