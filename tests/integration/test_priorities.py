"""The queues per job type, leases, the upload-events path and the bounded redrive, end to end
through real HTTP on the local stack. Each test runs in a lane of its own (see `own_lane`), so
the queue figures it reads are its own; workers are held at a `Gate`, paused with SIGSTOP or
stopped, never timed.
"""
from __future__ import annotations

import json
import os
import signal
import uuid
from datetime import timedelta

from devstack.stack import ManagedProcess, Stack
from tests.integration.conftest import (
    API_KEY, EMPTY_QUEUE, attempts, history_rows, lease_expiry, own_lane, queue_depth, wait_for,
)
from tests.integration.test_jobs_e2e import job_of, manifest_gate, outcome, submit
from tests.integration.test_uploads_e2e import create_upload, post_to_storage

ADMIN = {"x-api-key": API_KEY}
HELD = {"HTTP_TIMEOUT_SECONDS": "60"}  # workers held at a gate must not time out meanwhile


def test_a_verify_job_completes_while_a_backlog_of_proofs_waits(stack, anchored, tmp_path):
    """Proofs fill their capped share of the workers (held at the gate, the rest queued behind
    them); a verify job submitted after them runs on its own queue and completes first."""
    data = os.urandom(500)
    item = anchored(data)
    backlog, cap = 8, 2  # PROOF_MAX_CONCURRENCY's default; the lane has four workers
    with own_lane(stack, tmp_path, workers=4, env_overrides=HELD) as lane, manifest_gate(item) as gate:
        proofs = [submit(lane.api, stack, item, data, kind="proof", manifest_uri=f"{gate.url}/manifest.json")
                  for _ in range(backlog)]
        held = [gate.next_arrival() for _ in range(cap)]  # the cap's worth of proofs inside their jobs
        verify_id = submit(lane.api, stack, item, data)
        done = lane.api.wait_for_job(verify_id)
        assert done["status"] == "completed" and done["result"]["status"] == "OK", done

        statuses = [job_of(lane.api, job_id)["status"] for job_id in proofs]
        assert sorted(statuses) == ["processing"] * cap + ["queued"] * (backlog - cap)
        assert gate.requests_seen == cap  # never more proofs at once than the cap
        stats = lane.api.stats()
        assert stats["byType"]["proof"]["waiting"] + stats["byType"]["proof"]["active"] == backlog
        assert stats["byType"]["verify"] == {"waiting": 0, "active": 0, "delayed": 0, "deadLetter": 0}

        gate.open()
        for job_id in proofs:
            assert lane.api.wait_for_job(job_id)["status"] == "completed"
        assert len(held) == cap


def test_a_job_whose_worker_is_paused_past_its_lease_runs_again_once_and_completes_once(
        stack, anchored, db, tmp_path):
    """Worker A is paused (SIGSTOP) inside the job; its lease runs out and worker B, in another
    runner, runs the job. A, resumed, finishes after B: its result changes nothing."""
    data = os.urandom(700)
    item = anchored(data)
    with own_lane(stack, tmp_path, env_overrides=HELD) as lane, manifest_gate(item) as gate:
        job_id = submit(lane.api, stack, item, data, manifest_uri=f"{gate.url}/manifest.json")
        paused = gate.next_arrival()  # A is inside the job
        lane.runner.signal(signal.SIGSTOP)
        other = ManagedProcess(f"runner-b-{lane.name}", Stack.runner_argv(), lane.runner.env, tmp_path, True)
        other.start()
        try:
            wait_for(lambda: lease_expiry(db, job_id), lambda expiry: expiry is not None and
                     db.execute("SELECT now() > %s", (expiry,)).fetchone()[0], what="A's lease ran out")
            second = gate.next_arrival()  # B runs the job: a second run, once
            second.release()
            done = lane.api.wait_for_job(job_id)
            assert done["status"] == "completed", done
            paused.release()
        finally:
            lane.runner.signal(signal.SIGCONT)
            other.stop()
        wait_for(lane.depth, lambda d: d == EMPTY_QUEUE, what="the message consumed")
        assert gate.requests_seen == 2 and attempts(db, job_id) == 2
        assert outcome(job_of(lane.api, job_id)) == outcome(done)  # A's late finish changed nothing
    assert history_rows(db, job_id) == 1


def test_a_job_that_runs_longer_than_the_visibility_timeout_completes_exactly_once(stack, anchored, db, tmp_path):
    """The lane's queue hides a received message for 2 s; the job is held at the gate until its
    lease was renewed far past that. The heartbeat kept the message hidden all along: no second
    delivery ran it and none was spent (nothing dead-lettered after three receives)."""
    data = os.urandom(900)
    item = anchored(data)
    visibility = 2
    with own_lane(stack, tmp_path, visibility_seconds=visibility, env_overrides=HELD) as lane, \
            manifest_gate(item) as gate:
        job_id = submit(lane.api, stack, item, data, manifest_uri=f"{gate.url}/manifest.json")
        held = gate.next_arrival()
        first = lease_expiry(db, job_id)
        wait_for(lambda: lease_expiry(db, job_id),
                 lambda expiry: expiry > first + timedelta(seconds=4 * (visibility + 3)),
                 what="the lease renewed well past the queue's visibility timeout")
        assert lane.depth() == {"visible": 0, "in_flight": 1, "delayed": 0}
        held.release()
        done = lane.api.wait_for_job(job_id)
        wait_for(lane.depth, lambda d: d == EMPTY_QUEUE, what="the message consumed")
        assert lane.dead_letter_depth() == EMPTY_QUEUE
    assert done["status"] == "completed", done
    assert gate.requests_seen == 1 and attempts(db, job_id) == 1 and history_rows(db, job_id) == 1


def test_redrive_moves_a_bounded_batch_per_request_and_says_how_many_remain(stack, tmp_path):
    with own_lane(stack, tmp_path, env_overrides={"REDRIVE_BATCH_MESSAGES": "10"}) as lane:
        dead = {"DeadLetterQueueUrl": 8, "ProofDeadLetterQueueUrl": 7}  # unknown jobs: consumed once moved
        for output, count in dead.items():
            lane.sqs.send_message_batch(QueueUrl=lane.outputs[output], Entries=[
                {"Id": str(i), "MessageBody": json.dumps({"jobId": str(uuid.uuid4())})} for i in range(count)])
        first = lane.api.post("/api/verification-jobs/dead-letter/redrive", headers=ADMIN)
        assert (first.status_code, first.json()) == (200, {"moved": 10, "remaining": 5}), first.text
        second = lane.api.post("/api/verification-jobs/dead-letter/redrive", headers=ADMIN)
        assert (second.status_code, second.json()) == (200, {"moved": 5, "remaining": 0}), second.text
        for output in ("QueueUrl", "ProofQueueUrl", *dead):
            wait_for(lambda: queue_depth(lane.sqs, lane.outputs[output]), lambda d: d == EMPTY_QUEUE,
                     what=f"{output} drained")


def test_a_bad_upload_event_neither_holds_back_nor_repeats_the_others(stack, anchored, db, tmp_path):
    """Three uploads land while the runner is stopped, so that their S3 events wait on the
    upload-events queue together with a malformed one; the runner, started again, handles them:
    the three jobs complete once each and only the bad event stays on the queue, for redelivery."""
    data = os.urandom(300)
    item = anchored(data)
    with own_lane(stack, tmp_path, workers=1) as lane:
        events_url = lane.outputs["UploadEventsQueueUrl"]
        lane.runner.stop()
        uploads = [create_upload(lane.api, stack, item, len(data)) for _ in range(3)]
        for upload in uploads:
            assert post_to_storage(upload["upload"], data).status_code in (200, 201, 204)
        bad = json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {}}}]})  # no key
        lane.sqs.send_message(QueueUrl=events_url, MessageBody=bad)
        wait_for(lambda: queue_depth(lane.sqs, events_url)["visible"], lambda n: n >= 4,
                 what="the three S3 events and the bad one waiting")
        lane.runner.start()
        for upload in uploads:
            assert lane.api.wait_for_job(upload["jobId"])["status"] == "completed"
        wait_for(lambda: queue_depth(lane.sqs, events_url), lambda d: d["in_flight"] + d["visible"] == 1,
                 what="only the bad event left on the upload-events queue")
    for upload in uploads:
        assert history_rows(db, upload["jobId"]) == 1
