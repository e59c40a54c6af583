"""Cancellation end to end: `POST /api/verification-jobs/{jobId}/cancel` on a job awaiting its
upload, waiting in the queue and running in a worker, through real HTTP, the emulator's S3 and
SQS, the runner and Postgres. A `Gate` holds the worker inside a job, so that the test cancels a
job that is provably running (and one provably still queued behind it) without guessing at
timings."""
from __future__ import annotations

import json
import os

import pytest

from tests.integration.conftest import (
    API_KEY, EMPTY_QUEUE, Gate, assert_error, aws_client, form, forward_to, history_rows, own_lane, respond,
    wait_for,
)
from tests.integration.test_uploads_e2e import _object_exists, create_upload, post_to_storage

ADMIN = {"x-api-key": API_KEY}


@pytest.fixture(scope="module")
def one_worker_lane(stack, tmp_path_factory):
    """ONE worker: held inside a job, it keeps the next job `queued` as long as the test needs."""
    with own_lane(stack, tmp_path_factory.mktemp("cancel-lane"), workers=1,
                  env_overrides={"HTTP_TIMEOUT_SECONDS": "30"}) as running:
        yield running


def cancel(api, job_id: str):
    return api.post(f"/api/verification-jobs/{job_id}/cancel")


def assert_cancelled(api, db, job_id: str) -> dict:
    """The job is cancelled with no result and no history row."""
    job = api.get(f"/api/verification-jobs/{job_id}").json()
    assert (job["status"], job["result"]) == ("cancelled", None), job
    assert job["completedAt"] is not None
    assert history_rows(db, job_id) == 0
    return job


def test_cancelling_an_awaiting_upload_job_keeps_no_file_even_when_the_upload_comes_later(stack, api, anchored, db):
    data = os.urandom(3000)
    created = create_upload(api, stack, anchored(data), len(data))
    response = cancel(api, created["jobId"])
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled" and response.json()["jobId"] == created["jobId"]

    # The presigned POST stays valid until it expires: S3 takes the file, the service drops it.
    assert post_to_storage(created["upload"], data).status_code in (200, 201, 204)
    s3, key = aws_client(stack, "s3"), created["upload"]["fields"]["key"]
    wait_for(lambda: _object_exists(s3, stack.endpoints["upload_bucket"], key), lambda exists: not exists,
             what="the cancelled job's late upload deleted")
    assert_cancelled(api, db, created["jobId"])


def test_cancelling_a_queued_and_a_processing_job_stops_both_with_no_result(stack, one_worker_lane, anchored, db):
    lane = one_worker_lane
    s3, bucket = aws_client(stack, "s3"), lane.outputs["UploadBucketName"]
    data = os.urandom(2000)
    item = anchored(data)
    with Gate(respond(200, json.dumps(item.manifest).encode())) as manifest, \
            Gate(forward_to(stack.endpoints["rpc_url"])) as rpc:
        rpc.open()  # passes every call through to the chain, counting them
        fields = {"registryAddress": stack.endpoints["registry_address"],
                  "manifestURI": f"{manifest.url}/manifest.json", "rpcUrl": rpc.url}
        running_id = lane.api.post("/api/verification-jobs/verify", **form(fields, data)).json()["jobId"]
        manifest.next_arrival()  # the lane's only worker is inside the job, fetching its manifest
        # Its first beat wrote its progress: from then on each step is written and checks for a cancel.
        wait_for(lambda: lane.api.get(f"/api/verification-jobs/{running_id}").json()["progress"],
                 lambda progress: progress >= 10, what="the running job's first beat")
        queued_id = lane.api.post("/api/verification-jobs/verify", **form(fields, data)).json()["jobId"]
        assert lane.api.get(f"/api/verification-jobs/{running_id}").json()["status"] == "processing"
        assert lane.api.get(f"/api/verification-jobs/{queued_id}").json()["status"] == "queued"

        for job_id in (queued_id, running_id):
            response = cancel(lane.api, job_id)
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "cancelled"
            assert not _object_exists(s3, bucket, f"inline/{job_id}")

        manifest.open()  # the running attempt goes on to its next step, and stops there
        wait_for(lane.depth, lambda depth: depth == EMPTY_QUEUE, what="both messages consumed")
        assert rpc.requests_seen == 0  # neither job read the chain: no step ran after the cancel
        assert manifest.requests_seen == 1  # the queued job never started
    for job_id in (queued_id, running_id):
        assert_cancelled(lane.api, db, job_id)


def test_a_cancelled_job_is_not_retried_redriven_or_cancelled_again(stack, one_worker_lane, anchored, db):
    lane = one_worker_lane
    data = os.urandom(700)
    item = anchored(data)
    fields = {"registryAddress": stack.endpoints["registry_address"], "manifestURI": item.manifest_uri}
    with Gate(respond(200, json.dumps(item.manifest).encode())) as blocker_manifest:
        # The worker is held by another job, so this one is cancelled before it runs.
        lane.api.post("/api/verification-jobs/verify",
                      **form({**fields, "manifestURI": f"{blocker_manifest.url}/m.json"}, data))
        blocker_manifest.next_arrival()
        job_id = lane.api.post("/api/verification-jobs/verify", **form(fields, data)).json()["jobId"]
        assert cancel(lane.api, job_id).status_code == 200
        assert_error(cancel(lane.api, job_id), 409, "INVALID_STATE")
        assert_error(lane.api.post(f"/api/verification-jobs/{job_id}/retry", headers=ADMIN), 409, "INVALID_STATE")
        # Its message dead-lettered, then redriven: the redrive moves it, the worker drops it.
        lane.sqs.send_message(QueueUrl=lane.outputs["DeadLetterQueueUrl"], MessageBody=json.dumps({"jobId": job_id}))
        redriven = lane.api.post("/api/verification-jobs/dead-letter/redrive", headers=ADMIN)
        assert redriven.status_code == 200 and redriven.json()["moved"] == 1, redriven.text
        blocker_manifest.open()
        wait_for(lane.depth, lambda depth: depth == EMPTY_QUEUE, what="the messages consumed")
    assert_cancelled(lane.api, db, job_id)


def test_cancelling_a_completed_job_is_409_and_changes_nothing(stack, api, anchored, db):
    data = os.urandom(800)
    item = anchored(data)
    fields = {"registryAddress": stack.endpoints["registry_address"], "manifestURI": item.manifest_uri}
    job_id = api.post("/api/verification-jobs/verify", **form(fields, data)).json()["jobId"]
    done = api.wait_for_job(job_id)
    assert done["status"] == "completed"
    body = assert_error(cancel(api, job_id), 409, "INVALID_STATE")
    assert "completed" in body["error"]
    after = api.get(f"/api/verification-jobs/{job_id}").json()
    assert (after["status"], after["result"]) == ("completed", done["result"])
    assert history_rows(db, job_id) == 1
    assert_error(cancel(api, "3f1c4a52-0000-4000-8000-000000000000"), 404, "NOT_FOUND")
    assert_error(cancel(api, "not-a-uuid"), 404, "NOT_FOUND")
