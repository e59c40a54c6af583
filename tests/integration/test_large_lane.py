"""The large-file lane end to end: a file over LARGE_FILE_BYTES (8 MiB here, 512 MiB by default)
is queued on the large-file queue, not its type's, is verified there by `process_large_job`, and
the worker's log says how long each of its parts took to read and hash.

The lane's runner is stopped while the upload completes, so that the queues can be read in a
settled state (the message waits on the large-file queue, none on the verify queue); then it
starts and the job runs."""
from __future__ import annotations

import os

from tests.bench._common import runner_log_records
from tests.integration.conftest import history_rows, own_lane, queue_depth
from tests.integration.test_multipart_e2e import PART, THRESHOLD, complete, create, put_parts

LARGE_FILE_BYTES = THRESHOLD


def test_a_file_over_the_threshold_is_verified_on_the_large_lane_and_logs_each_part(stack, anchored, db,
                                                                                    tmp_path):
    settings = {"LARGE_FILE_BYTES": str(LARGE_FILE_BYTES), "MULTIPART_PART_SIZE_BYTES": str(PART),
                "MULTIPART_THRESHOLD_BYTES": str(THRESHOLD)}
    with own_lane(stack, tmp_path, env_overrides=settings) as lane:
        lane.runner.stop()
        data = os.urandom(2 * PART + 4321)  # three parts, over the large-file threshold
        item = anchored(data)
        created = create(lane.api, stack, item, len(data))
        assert created["upload"]["method"] == "MULTIPART"
        etags = put_parts(created["upload"], data)
        assert complete(lane.api, created, etags).status_code == 202
        assert queue_depth(lane.sqs, lane.outputs["LargeQueueUrl"])["visible"] == 1
        assert queue_depth(lane.sqs, lane.outputs["QueueUrl"])["visible"] == 0
        assert lane.api.stats()["largeFiles"]["waiting"] == 1

        lane.runner.start()
        job = lane.api.wait_for_job(created["jobId"])
        assert job["status"] == "completed", job
        assert job["contentHash"] == item.content_hash and job["result"]["status"] == "OK"
        assert history_rows(db, created["jobId"]) == 1

        parts = runner_log_records(lane.runner.log_path, "upload part hashed", {created["jobId"]})
        assert [p["part"] for p in parts] == [1, 2, 3]
        assert parts[-1]["bytes_done"] == len(data) and all(p["seconds"] >= 0 for p in parts)
        [summary] = runner_log_records(lane.runner.log_path, "upload hashed", {created["jobId"]})
        assert summary["bytes"] == len(data)
