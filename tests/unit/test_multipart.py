"""Multipart uploads through the HTTP layer, on moto's in-process S3 with the fake store: the part
URLs, the received parts, the completion's check of the part list, and the aborts (expiry, cancel).
The parts go to S3 with boto3 here; tests/integration/test_multipart_e2e.py PUTs them to the
presigned URLs over real HTTP."""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone

import pytest
from chalice.test import Client

import app
from chalicelib import housekeeping
from chalicelib.storage import Storage, part_plan
from chalicelib.wiring import build_services
from chalicelib.vocabulary import AWAITING_UPLOAD, CANCELLED, FAILED, MIN_UPLOAD_PART_BYTES, QUEUED, UPLOAD_EXPIRED

from tests.unit.conftest import make_settings
from tests.unit.test_endpoints import JSON_HEADERS, MANIFEST, REGISTRY, error

PART = MIN_UPLOAD_PART_BYTES
SIZE = 2 * PART + 10  # three parts: two whole, a short last one


@pytest.fixture()
def services(aws, store):
    """The conftest's services with parts of S3's minimum size, so a test file is a few MiB."""
    built = build_services(make_settings(aws, MULTIPART_PART_SIZE_BYTES=str(PART)), s3=aws.s3, sqs=aws.sqs)
    return dataclasses.replace(built, store=store)


@pytest.fixture()
def http(monkeypatch, services):
    monkeypatch.setattr(app, "services", lambda: services)
    with Client(app.app) as client:
        yield client.http


def create(http, size=SIZE, **extra) -> dict:
    body = {"registryAddress": REGISTRY, "manifestURI": MANIFEST, "filename": "master.mov",
            "contentType": "video/quicktime", "size": size, "multipart": True, **extra}
    response = http.post("/api/verification-jobs/uploads", headers=JSON_HEADERS, body=json.dumps(body).encode())
    assert response.status_code == 201, response.body
    return json.loads(response.body)


def part_data(number: int, size: int = SIZE) -> bytes:
    start = (number - 1) * PART
    return bytes([number]) * (min(PART, size - start))


def put_part(aws, store, job_id: str, number: int, data: bytes | None = None) -> str:
    job = store.get_job(job_id)
    answer = aws.s3.upload_part(Bucket=aws.bucket, Key=job.object_key, UploadId=job.multipart_upload_id,
                                PartNumber=number, Body=part_data(number) if data is None else data)
    return answer["ETag"]


def complete(http, job_id: str, parts: list[dict]):
    return http.post(f"/api/verification-jobs/{job_id}/upload/complete", headers=JSON_HEADERS,
                     body=json.dumps({"parts": parts}).encode())


def open_uploads(aws) -> list[dict]:
    return aws.s3.list_multipart_uploads(Bucket=aws.bucket).get("Uploads", [])


def test_a_large_size_gets_a_multipart_upload_with_a_url_per_part(http, aws, store):
    """A size over MULTIPART_THRESHOLD_BYTES (default 1 GiB) is multipart by itself."""
    body = {"registryAddress": REGISTRY, "manifestURI": MANIFEST, "filename": "master.mov", "size": 12 * 1024 ** 3}
    response = http.post("/api/verification-jobs/uploads", headers=JSON_HEADERS, body=json.dumps(body).encode())
    assert response.status_code == 201, response.body
    created = json.loads(response.body)
    upload = created["upload"]
    assert upload["method"] == "MULTIPART" and upload["partSize"] == PART
    assert [p["partNumber"] for p in upload["parts"]] == list(range(1, 12 * 1024 // 5 + 2))
    assert "uploadId=" in upload["parts"][0]["url"] and "partNumber=1" in upload["parts"][0]["url"]
    assert upload["completeUrl"] == f"/api/verification-jobs/{created['jobId']}/upload/complete"
    assert upload["maxBytes"] == 20 * 1024 ** 3 and upload["expiresAt"].endswith("Z")
    job = store.get_job(created["jobId"])
    assert job.status == AWAITING_UPLOAD and job.file_size == 12 * 1024 ** 3
    assert [u["UploadId"] for u in open_uploads(aws) if u["Key"] == job.object_key] == [job.multipart_upload_id]


def test_the_part_size_grows_to_keep_within_s3s_ten_thousand_parts():
    assert part_plan(10, PART) == (PART, 1)
    assert part_plan(2 * PART, PART) == (PART, 2)
    assert part_plan(20 * 1024 ** 3, 1024) == (PART, 4096)  # never under S3's minimum
    size, count = part_plan(100 * 1024 ** 3, PART)
    assert count <= 10_000 and size * count >= 100 * 1024 ** 3 and size * (count - 1) < 100 * 1024 ** 3


def test_the_completed_upload_is_stored_and_queued_once(http, aws, store):
    created = create(http)
    job_id = created["jobId"]
    assert len(created["upload"]["parts"]) == 3 and created["upload"]["partSize"] == PART
    etags = [put_part(aws, store, job_id, n) for n in (1, 2, 3)]

    status = json.loads(http.get(f"/api/verification-jobs/{job_id}/upload").body)
    assert [(p["partNumber"], p["size"]) for p in status["parts"]] == [(1, PART), (2, PART), (3, 10)]
    assert status["missing"] == []

    response = complete(http, job_id, [{"partNumber": n, "etag": e} for n, e in zip((1, 2, 3), etags)])
    assert response.status_code == 202, response.body
    assert json.loads(response.body)["status"] == QUEUED
    job = store.get_job(job_id)
    assert job.status == QUEUED and job.multipart_upload_id is None
    stored = aws.s3.get_object(Bucket=aws.bucket, Key=job.object_key)["Body"].read()
    assert stored == b"".join(part_data(n) for n in (1, 2, 3))
    assert [json.loads(b)["jobId"] for b in aws.bodies(aws.queue_url)] == [job_id]
    assert open_uploads(aws) == []

    again = complete(http, job_id, [{"partNumber": n, "etag": e} for n, e in zip((1, 2, 3), etags)])
    assert (again.status_code, error(again)["code"]) == (409, "INVALID_STATE")
    assert len(aws.bodies(aws.queue_url)) == 1


def test_resuming_lists_what_landed_and_signs_only_the_rest(http, aws, store):
    job_id = create(http)["jobId"]
    put_part(aws, store, job_id, 1)
    put_part(aws, store, job_id, 3, b"short")  # the wrong length: sent again
    status = json.loads(http.get(f"/api/verification-jobs/{job_id}/upload").body)
    assert [p["partNumber"] for p in status["parts"]] == [1]
    assert [p["partNumber"] for p in status["missing"]] == [2, 3]
    assert "partNumber=2" in status["missing"][0]["url"]
    assert (status["size"], status["partSize"], status["status"]) == (SIZE, PART, AWAITING_UPLOAD)


@pytest.mark.parametrize("listed,message", [
    (lambda e: [{"partNumber": 1, "etag": e[0]}, {"partNumber": 2, "etag": e[0]}, {"partNumber": 3, "etag": e[2]}],
     "part 2: the ETag does not match"),
    (lambda e: [{"partNumber": 1, "etag": e[0]}, {"partNumber": 3, "etag": e[2]}], "part 2 is missing from the list"),
    (lambda e: [{"partNumber": n, "etag": e[0]} for n in (1, 2, 3, 4)], "part 2: the ETag"),
    (lambda e: [{"partNumber": 1, "etag": e[0]}, {"partNumber": 2, "etag": e[1]}, {"partNumber": 3, "etag": e[2]},
                {"partNumber": 4, "etag": e[2]}], "part 4 is beyond the file's 3 parts"),
])
def test_a_part_list_that_does_not_match_storage_names_the_first_wrong_part(http, aws, store, listed, message):
    job_id = create(http)["jobId"]
    etags = [put_part(aws, store, job_id, n) for n in (1, 2, 3)]
    response = complete(http, job_id, listed(etags))
    assert response.status_code == 400
    answer = error(response)
    assert (answer["code"], answer["field"]) == ("VALIDATION_ERROR", "parts") and message in answer["error"]
    assert store.get_job(job_id).status == AWAITING_UPLOAD and len(open_uploads(aws)) == 1


def test_a_part_not_received_is_named(http, aws, store):
    job_id = create(http)["jobId"]
    etag = put_part(aws, store, job_id, 1)
    response = complete(http, job_id, [{"partNumber": n, "etag": etag} for n in (1, 2, 3)])
    assert response.status_code == 400 and "part 2 was not received" in error(response)["error"]


@pytest.mark.parametrize("body", [
    {}, {"parts": []}, {"parts": [{"partNumber": 0, "etag": "x"}]}, {"parts": [{"partNumber": 1}]},
    {"parts": [{"partNumber": 1, "etag": "a"}, {"partNumber": 1, "etag": "a"}]},
    {"parts": [{"partNumber": True, "etag": "a"}]}, {"parts": ["1"]},
])
def test_a_malformed_part_list_is_a_400(http, aws, store, body):
    job_id = create(http)["jobId"]
    response = http.post(f"/api/verification-jobs/{job_id}/upload/complete", headers=JSON_HEADERS,
                         body=json.dumps(body).encode())
    assert (response.status_code, error(response)["field"]) == (400, "parts")


def test_the_upload_routes_refuse_jobs_without_an_open_multipart_upload(http, aws, store):
    body = {"registryAddress": REGISTRY, "manifestURI": MANIFEST, "filename": "a.bin", "size": 10}
    post_job = json.loads(http.post("/api/verification-jobs/uploads", headers=JSON_HEADERS,
                                    body=json.dumps(body).encode()).body)["jobId"]
    for job_id, status, code in ((post_job, 409, "INVALID_STATE"), ("nope", 404, "NOT_FOUND")):
        listed = http.get(f"/api/verification-jobs/{job_id}/upload")
        completed = complete(http, job_id, [{"partNumber": 1, "etag": "x"}])
        assert {(r.status_code, error(r)["code"]) for r in (listed, completed)} == {(status, code)}


def test_an_expired_upload_fails_and_leaves_no_parts(http, aws, store, services):
    job_id = create(http)["jobId"]
    put_part(aws, store, job_id, 1)
    store.put(store.get_job(job_id), upload_expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    report = housekeeping.sweep(services)
    assert (report.uploads_expired, report.multipart_uploads_aborted) == (1, 1)
    job = store.get_job(job_id)
    assert (job.status, job.error_code, job.multipart_upload_id) == (FAILED, UPLOAD_EXPIRED, None)
    assert open_uploads(aws) == []
    late = complete(http, job_id, [{"partNumber": 1, "etag": "x"}])
    assert (late.status_code, error(late)["code"]) == (409, UPLOAD_EXPIRED)


def test_an_abort_that_fails_is_done_by_the_next_sweep(http, aws, store, services):
    job_id = create(http)["jobId"]
    store.put(store.get_job(job_id), upload_expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    unreachable = Storage(make_settings(aws, UPLOAD_BUCKET="no-such-bucket-anywhere"), aws.s3)
    services_down = dataclasses.replace(services, storage=unreachable)
    assert housekeeping.sweep(services_down).objects_kept == 1
    assert store.get_job(job_id).multipart_upload_id is not None and len(open_uploads(aws)) == 1
    assert housekeeping.sweep(services).multipart_uploads_aborted == 1
    assert open_uploads(aws) == []


def test_cancel_aborts_the_multipart_upload(http, aws, store):
    job_id = create(http)["jobId"]
    put_part(aws, store, job_id, 2)
    response = http.post(f"/api/verification-jobs/{job_id}/cancel")
    assert response.status_code == 200 and store.get_job(job_id).status == CANCELLED
    assert open_uploads(aws) == [] and store.get_job(job_id).multipart_upload_id is None
