"""The S3 upload-then-poll flow end to end: presigned POST against the emulator, the bucket's
ObjectCreated notification to the upload-events queue, the `upload_arrived` handler, the
worker streaming the object."""
from __future__ import annotations

import json
import os
import time

import boto3
import pytest
import requests

from tests.integration.conftest import extra_api, history_rows


def create_upload(api, stack, item, size: int | None, max_bytes: int = 1024 ** 3, **extra) -> dict:
    body = {"type": "verify", "registryAddress": stack.endpoints["registry_address"],
            "manifestURI": item.manifest_uri, "filename": "clip.mp4", "contentType": "video/mp4", **extra}
    if size is not None:
        body["size"] = size
    response = api.post("/api/verification-jobs/uploads", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "awaiting_upload"
    assert response.headers["Location"] == created["pollUrl"] == f"/api/verification-jobs/{created['jobId']}"
    assert created["upload"]["method"] == "POST" and created["upload"]["maxBytes"] == max_bytes
    assert created["upload"]["expiresAt"].endswith("Z")
    return created


def post_to_storage(upload: dict, data: bytes, fields: dict | None = None) -> requests.Response:
    """The client's side of a presigned POST: the policy's fields first, the file last."""
    return requests.post(upload["url"], data=fields or upload["fields"],
                         files={"file": ("clip.mp4", data, "video/mp4")}, timeout=60)


def test_presigned_upload_is_verified_without_a_second_call(stack, api, anchored, db):
    data = os.urandom(6 * 1024 * 1024 + 17)  # over the inline cap
    item = anchored(data)
    created = create_upload(api, stack, item, len(data))
    assert api.get(created["pollUrl"]).json()["status"] == "awaiting_upload"

    stored = post_to_storage(created["upload"], data)
    assert stored.status_code in (200, 201, 204), stored.text

    job = api.wait_for_job(created["jobId"])
    assert job["status"] == "completed", job
    assert job["contentHash"] == item.content_hash
    assert job["result"]["status"] == "OK"
    assert history_rows(db, created["jobId"]) == 1

    # The sweeper deletes a completed job's file (the stack sweeps every 2 s).
    s3, key = _client(stack, "s3"), created["upload"]["fields"]["key"]
    deadline = time.monotonic() + 30
    while _object_exists(s3, stack.endpoints["upload_bucket"], key) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _object_exists(s3, stack.endpoints["upload_bucket"], key)


def test_a_repeated_s3_event_enqueues_the_job_once(stack, api, anchored, db):
    data = os.urandom(1000)
    item = anchored(data)
    created = create_upload(api, stack, item, len(data))
    assert post_to_storage(created["upload"], data).status_code in (200, 201, 204)
    assert api.wait_for_job(created["jobId"])["status"] == "completed"
    sent_at = _enqueued_at(db, created["jobId"])

    # S3 delivers the same notification again (it may: delivery is at least once).
    key = created["upload"]["fields"]["key"]
    repeat = {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventName": "ObjectCreated:Post", "eventTime": "2026-01-01T00:00:00.000Z",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": stack.endpoints["upload_bucket"]},
               "object": {"key": key, "size": len(data)}},
    }]}
    sqs = _client(stack, "sqs")
    events_queue = stack.endpoints["upload_events_queue_url"]
    sqs.send_message(QueueUrl=events_queue, MessageBody=json.dumps(repeat))
    _drain(sqs, events_queue)

    assert _enqueued_at(db, created["jobId"]) == sent_at
    assert api.get(created["pollUrl"]).json()["status"] == "completed"
    assert history_rows(db, created["jobId"]) == 1


def test_upload_that_never_arrives_fails_with_upload_expired(stack, anchored, tmp_path):
    item = anchored(os.urandom(10), register=False)
    with extra_api(stack, {"UPLOAD_URL_EXPIRY_SECONDS": "1"}, tmp_path) as short_lived:
        created = create_upload(short_lived, stack, item, 10)
        job = short_lived.wait_for_job(created["jobId"], timeout=30)
    assert job["status"] == "failed", job
    assert job["errorCode"] == "UPLOAD_EXPIRED"


def test_upload_request_validation(stack, api, anchored):
    item = anchored(os.urandom(10), register=False)
    base = {"registryAddress": stack.endpoints["registry_address"], "manifestURI": item.manifest_uri,
            "filename": "a.bin"}
    too_big = api.post("/api/verification-jobs/uploads", json={**base, "size": 1024 ** 3 + 1})
    assert too_big.status_code == 413 and too_big.json()["code"] == "PAYLOAD_TOO_LARGE"
    for field, value in (("type", "hash"), ("filename", ""), ("size", -5), ("contentType", "application/x-sh")):
        response = api.post("/api/verification-jobs/uploads", json={**base, field: value})
        assert response.status_code in (400, 415), (field, response.text)
        assert response.json()["field"] == field


class TestStorageEnforcesThePolicy:
    """S3 itself refuses what the presigned POST does not allow. moto accepts any POST (it does
    not evaluate POST policies), so these checks run where the emulator enforces them."""

    @pytest.fixture(autouse=True)
    def _enforcing_backend(self, stack):
        if stack.endpoints["backend"] == "moto":
            pytest.skip("moto does not evaluate presigned POST policies; checked on LocalStack")

    def test_over_the_declared_range_is_refused(self, stack, tmp_path, anchored):
        item = anchored(os.urandom(10), register=False)
        with extra_api(stack, {"MAX_UPLOAD_BYTES": "1000"}, tmp_path) as small:
            created = create_upload(small, stack, item, 1000, max_bytes=1000)
        refused = post_to_storage(created["upload"], os.urandom(1001))
        assert refused.status_code in (400, 403), refused.text
        assert "EntityTooLarge" in refused.text or "content-length-range" in refused.text

    def test_to_another_key_is_refused(self, stack, api, anchored):
        item = anchored(os.urandom(10), register=False)
        created = create_upload(api, stack, item, 10)
        fields = {**created["upload"]["fields"], "key": "uploads/somebody-elses-job"}
        refused = post_to_storage(created["upload"], os.urandom(10), fields)
        assert refused.status_code == 403, refused.text

    def test_after_expiry_is_refused(self, stack, tmp_path, anchored):
        item = anchored(os.urandom(10), register=False)
        with extra_api(stack, {"UPLOAD_URL_EXPIRY_SECONDS": "1"}, tmp_path) as short_lived:
            created = create_upload(short_lived, stack, item, 10)
        time.sleep(2)
        refused = post_to_storage(created["upload"], os.urandom(10))
        assert refused.status_code in (400, 403), refused.text
        assert "expired" in refused.text.lower()


def _client(stack, service: str):
    return boto3.client(service, endpoint_url=stack.endpoints["aws_endpoint_url"], region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def _object_exists(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except s3.exceptions.ClientError:
        return False


def _enqueued_at(db, job_id: str):
    return db.execute("SELECT last_enqueued_at FROM verification_jobs WHERE id = %s", (job_id,)).fetchone()[0]


def _drain(sqs, queue_url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
        if attributes["ApproximateNumberOfMessages"] == "0" and attributes["ApproximateNumberOfMessagesNotVisible"] == "0":
            time.sleep(0.5)
            return
        time.sleep(0.2)
    raise AssertionError("the S3 event queue did not drain")
