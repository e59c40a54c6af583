"""The S3 upload-then-poll flow end to end: presigned POST against the emulator, the bucket's
ObjectCreated notification to the upload-events queue, the `upload_arrived` handler, the
worker streaming the object."""
from __future__ import annotations

import json
import os
import time

import pytest
import requests

from tests.integration.conftest import (
    API_KEY, EMPTY_QUEUE, Gate, aws_client, extra_api, history_rows, own_lane, queue_depth, respond, wait_for,
)

ADMIN = {"x-api-key": API_KEY}


@pytest.fixture(scope="module")
def upload_lane(stack, tmp_path_factory):
    """A lane of its own bucket and queues with ONE worker per queue: holding that worker keeps
    the next job `queued` for as long as the test needs."""
    with own_lane(stack, tmp_path_factory.mktemp("upload-lane"), workers=1,
                  env_overrides={"HTTP_TIMEOUT_SECONDS": "30"}) as running:
        yield running


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
    # A declared size is pinned: the policy takes exactly that many bytes.
    assert created["upload"]["method"] == "POST" and created["upload"]["maxBytes"] == (size or max_bytes)
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
    s3, key = aws_client(stack, "s3"), created["upload"]["fields"]["key"]
    wait_for(lambda: _object_exists(s3, stack.endpoints["upload_bucket"], key), lambda exists: not exists,
             what="the completed job's file deleted")


def test_a_repeated_s3_event_while_queued_processing_or_done_enqueues_the_job_once(
        stack, upload_lane, anchored, db):
    """S3 may deliver an ObjectCreated event more than once, at any point of the job's life.
    Repeated while the job waits in the queue, while it runs and after it completed, the event
    sends no second message and leaves one result and one history row."""
    data = os.urandom(1000)
    item = anchored(data)
    lane, sqs = upload_lane, upload_lane.sqs
    events_queue = lane.outputs["UploadEventsQueueUrl"]

    def repeat_the_event() -> None:
        sqs.send_message(QueueUrl=events_queue, MessageBody=json.dumps(
            s3_event(lane.outputs["UploadBucketName"], created["upload"]["fields"]["key"], len(data))))
        wait_for(lambda: queue_depth(sqs, events_queue), lambda d: d == EMPTY_QUEUE, what="the S3 event consumed")

    with Gate(respond(200, json.dumps(item.manifest).encode())) as gate:
        manifest_url = f"{gate.url}/manifest.json"
        # The lane's only worker is held inside another job, so the upload's job stays queued.
        blocker = lane.api.post("/api/verification-jobs/verify", data={
            "registryAddress": stack.endpoints["registry_address"], "manifestURI": manifest_url},
            files={"file": ("b.txt", data, "text/plain")})
        assert blocker.status_code == 202, blocker.text
        holding_the_worker = gate.next_arrival()

        created = create_upload(lane.api, stack, item, len(data), manifestURI=manifest_url)
        assert post_to_storage(created["upload"], data).status_code in (200, 201, 204)
        lane.api.wait_for_job(created["jobId"], until=lambda j: j["status"] == "queued")
        wait_for(lane.depth, lambda d: d["visible"] == 1, what="the upload's job message")
        sent_at = _enqueued_at(db, created["jobId"])
        assert sent_at is not None

        repeat_the_event()  # while queued
        assert api_status(lane.api, created) == "queued"
        assert lane.depth()["visible"] == 1 and _enqueued_at(db, created["jobId"]) == sent_at

        holding_the_worker.release()
        gate.next_arrival()  # the upload's job is running now, held at its manifest
        repeat_the_event()  # while processing
        assert api_status(lane.api, created) == "processing"
        assert lane.depth() == {"visible": 0, "in_flight": 1, "delayed": 0}
        assert _enqueued_at(db, created["jobId"]) == sent_at

        gate.open()
        done = lane.api.wait_for_job(created["jobId"])
        assert done["status"] == "completed" and done["result"]["status"] == "WARN", done
        repeat_the_event()  # after completion
        assert gate.requests_seen == 2  # the blocker's fetch and the upload job's one: no repeat ran

    again = lane.api.get(created["pollUrl"]).json()
    assert again["status"] == "completed" and again["result"] == done["result"]
    assert again["completedAt"] == done["completedAt"]
    assert _enqueued_at(db, created["jobId"]) == sent_at
    assert history_rows(db, created["jobId"]) == 1
    wait_for(lane.depth, lambda d: d == EMPTY_QUEUE, what="the lane's work queue drained")


def test_an_object_gone_before_the_worker_reads_it_fails_with_upload_missing(stack, api, anchored):
    """S3 announced the object, but it is gone when the worker streams it (deleted, expired):
    a permanent failure, and the retry endpoint refuses to re-run a job without its file."""
    item = anchored(os.urandom(10), register=False)
    created = create_upload(api, stack, item, 10)
    event = s3_event(stack.endpoints["upload_bucket"], created["upload"]["fields"]["key"], 10)
    aws_client(stack, "sqs").send_message(QueueUrl=stack.endpoints["upload_events_queue_url"],
                                          MessageBody=json.dumps(event))

    job = api.wait_for_job(created["jobId"])
    assert job["status"] == "failed" and job["errorCode"] == "UPLOAD_MISSING", job
    assert job["retryCount"] == 0  # permanent: no retries burnt

    retry = api.post(created["pollUrl"] + "/retry", headers=ADMIN)
    assert retry.status_code == 409, retry.text
    assert retry.json()["code"] == "UPLOAD_MISSING" and "submit it again" in retry.json()["error"]


def test_upload_that_never_arrives_fails_with_upload_expired(stack, api, anchored, tmp_path):
    item = anchored(os.urandom(10), register=False)
    with extra_api(stack, {"UPLOAD_URL_EXPIRY_SECONDS": "1"}, tmp_path) as short_lived:
        created = create_upload(short_lived, stack, item, 10)
        job = short_lived.wait_for_job(created["jobId"], timeout=30)
    assert job["status"] == "failed", job
    assert job["errorCode"] == "UPLOAD_EXPIRED"
    retry = api.post(created["pollUrl"] + "/retry", headers=ADMIN)  # nothing to verify again
    assert retry.status_code == 409 and retry.json()["code"] == "UPLOAD_MISSING", retry.text


def test_upload_request_validation(stack, api, anchored):
    item = anchored(os.urandom(10), register=False)
    base = {"registryAddress": stack.endpoints["registry_address"], "manifestURI": item.manifest_uri,
            "filename": "a.bin"}
    # Over 1 GiB a presigned POST is refused; the multipart upload takes up to 20 GiB.
    for too_large in ({"size": 1024 ** 3 + 1, "multipart": False}, {"size": 20 * 1024 ** 3 + 1}):
        too_big = api.post("/api/verification-jobs/uploads", json={**base, **too_large})
        assert too_big.status_code == 413 and too_big.json()["code"] == "PAYLOAD_TOO_LARGE"
        assert too_big.json()["field"] == "size" and too_big.json()["error"]
    for field, value, status, code in (
        ("type", "hash", 400, "VALIDATION_ERROR"),
        ("filename", "", 400, "VALIDATION_ERROR"),
        ("size", -5, 400, "VALIDATION_ERROR"),
        ("registryAddress", "0x12", 400, "VALIDATION_ERROR"),
        ("manifestURI", "http://169.254.169.254/latest/meta-data/", 400, "URL_NOT_ALLOWED"),
        ("contentType", "application/x-sh", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ):
        response = api.post("/api/verification-jobs/uploads", json={**base, field: value})
        assert response.status_code == status, (field, response.text)
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert set(body) == {"error", "code", "field"} and body["field"] == field, body
        assert body["code"] == code and isinstance(body["error"], str) and body["error"], body


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

    def test_a_size_other_than_the_declared_one_is_refused(self, stack, api, anchored):
        item = anchored(os.urandom(10), register=False)
        created = create_upload(api, stack, item, 10)
        refused = post_to_storage(created["upload"], os.urandom(11))
        assert refused.status_code in (400, 403), refused.text

    def test_below_the_minimum_size_is_refused(self, stack, api, anchored):
        item = anchored(os.urandom(10), register=False)
        created = create_upload(api, stack, item, 10)
        refused = post_to_storage(created["upload"], b"")  # the policy's range starts at 1 byte
        assert refused.status_code in (400, 403), refused.text
        assert "EntityTooSmall" in refused.text or "content-length-range" in refused.text
        assert api_status(api, created) == "awaiting_upload"

    def test_another_content_type_than_declared_is_refused(self, stack, api, anchored):
        item = anchored(os.urandom(10), register=False)
        created = create_upload(api, stack, item, 10)  # declared video/mp4
        assert created["upload"]["fields"]["Content-Type"] == "video/mp4"
        fields = {**created["upload"]["fields"], "Content-Type": "text/html"}
        refused = post_to_storage(created["upload"], os.urandom(10), fields)
        assert refused.status_code == 403, refused.text
        assert "Content-Type" in refused.text or "condition" in refused.text.lower()
        assert api_status(api, created) == "awaiting_upload"

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


def s3_event(bucket: str, key: str, size: int) -> dict:
    """The ObjectCreated notification S3 sends to the upload-events queue for one object."""
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventName": "ObjectCreated:Post", "eventTime": "2026-01-01T00:00:00.000Z",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": {"key": key, "size": size}},
    }]}


def api_status(api, created: dict) -> str:
    return api.get(created["pollUrl"]).json()["status"]


def _object_exists(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except s3.exceptions.ClientError:
        return False


def _enqueued_at(db, job_id: str):
    return db.execute("SELECT last_enqueued_at FROM verification_jobs WHERE id = %s", (job_id,)).fetchone()[0]
