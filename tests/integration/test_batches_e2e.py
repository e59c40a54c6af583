"""Batched workers end to end: ten jobs through real HTTP, the emulator's S3 and SQS, the
event-source runner (one poll thread gathering one batch of ten within its window) and Postgres.
One job names an RPC node that refuses every connection: it is retried and dead-lettered on its
own, while the other nine complete exactly once."""
from __future__ import annotations

import json
import os

import pytest

from devstack.process import free_port
from tests.integration.conftest import EMPTY_QUEUE, attempts, form, history_rows, own_lane, wait_for

BATCH = 10
FAILING = 4  # the index of the job whose RPC node refuses


@pytest.fixture(scope="module")
def batch_lane(stack, tmp_path_factory):
    """One poll thread and a batching window long enough for the ten submissions to share a batch,
    well within the queue's visibility timeout (a window as long as it would let a message that
    became visible again join the batch it is already in)."""
    with own_lane(stack, tmp_path_factory.mktemp("batch-lane"), visibility_seconds=30, workers=1,
                  env_overrides={"WORKER_BATCH_SIZE": str(BATCH), "WORKER_BATCHING_WINDOW_SECONDS": "5",
                                 "MAX_RETRY_ATTEMPTS": "3"}) as running:
        yield running


def invocations(lane) -> list[dict]:
    """The runner's `runner invocation` lines (one per handler call)."""
    lines = lane.runner.log_path.read_text(errors="replace").splitlines()
    return [record for record in (json.loads(line) for line in lines if line.startswith('{"message": "runner invocation"'))]


def test_one_failing_job_in_a_batch_of_ten_is_dead_lettered_alone_and_the_nine_complete_once(
        stack, batch_lane, anchored, db):
    lane = batch_lane
    data = os.urandom(1500)
    item = anchored(data)
    good = {"registryAddress": stack.endpoints["registry_address"], "manifestURI": item.manifest_uri}
    refused = {**good, "rpcUrl": f"http://127.0.0.1:{free_port()}"}  # nothing listens there
    job_ids = []
    for i in range(BATCH):
        response = lane.api.post("/api/verification-jobs/verify", **form(refused if i == FAILING else good, data))
        assert response.status_code == 202, response.text
        job_ids.append(response.json()["jobId"])

    finished = {job_id: lane.api.wait_for_job(job_id, until=lambda job: job["status"] in ("completed", "failed"))
                for job_id in job_ids}
    wait_for(lane.dead_letter_depth, lambda depth: depth["visible"] == 1, what="the failing job's message dead-lettered")
    wait_for(lane.depth, lambda depth: depth == EMPTY_QUEUE, what="the work queue empty")

    calls = [call for call in invocations(lane) if set(call["job_ids"]) & set(job_ids)]
    first, later = calls[0], calls[1:]
    assert sorted(first["job_ids"]) == sorted(job_ids)  # the ten shared one invocation
    failed = finished[job_ids[FAILING]]
    assert (failed["status"], failed["errorCode"]) == ("failed", "RPC_UNAVAILABLE"), failed
    assert attempts(db, job_ids[FAILING]) == 3
    for i, job_id in enumerate(job_ids):
        if i != FAILING:
            assert finished[job_id]["status"] == "completed", finished[job_id]
            assert finished[job_id]["result"]["status"] == "OK"
            assert (attempts(db, job_id), history_rows(db, job_id)) == (1, 1), job_id
    assert all(call["job_ids"] == [job_ids[FAILING]] for call in later), later  # only the failed one came back
