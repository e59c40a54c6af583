"""Housekeeping on moto's S3 and SQS with the fake store: uploads that arrive (real S3
notifications), the sweep, the dead-letter reconciler and the redrive."""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from chalicelib import housekeeping
from chalicelib.errors import TransientError
from chalicelib.housekeeping import ENQUEUE_RECORD_LAG
from chalicelib.jobs import CacheKey
from chalicelib.vocabulary import (
    AWAITING_UPLOAD, COMPLETED, DEAD_LETTERED, FAILED, PROCESSING, QUEUED, UPLOAD_EXPIRED,
)
from chalicelib.wiring import build_services, verification as verification_core

from tests.unit.conftest import invoke_from_queue

REGISTRY = "0x" + "ab" * 20
MANIFEST = "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/manifest.json"
LONG_AGO = datetime(2020, 1, 1, tzinfo=timezone.utc)


def new_job(store, status=QUEUED, job_type="verify", **fields):
    return store.create_job(job_type=job_type, status=status, manifest_uri=MANIFEST, registry_address=REGISTRY,
                            **fields)


def job_ids_on(aws, url):
    return sorted(json.loads(body)["jobId"] for body in aws.bodies(url))


class Proxy:
    """A boto3 client whose chosen calls a test replaces; everything else goes to moto."""

    def __init__(self, real, **replaced):
        self.real, self.replaced = real, replaced

    def __getattr__(self, name):
        return self.replaced.get(name) or getattr(self.real, name)


def with_clients(services, s3=None, sqs=None):
    built = build_services(services.settings, s3=s3 or services.storage.s3(), sqs=sqs or services.queue.sqs())
    return dataclasses.replace(built, store=services.store)


# --- uploads that arrive -----------------------------------------------------------------------

@pytest.fixture()
def events_url(aws):
    """The bucket notifies a queue of its uploads, as infra/template.yaml wires it."""
    url = aws.sqs.create_queue(QueueName=f"{aws.bucket}-events")["QueueUrl"]
    arn = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.s3.put_bucket_notification_configuration(Bucket=aws.bucket, NotificationConfiguration={"QueueConfigurations": [
        {"QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
         "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}}}]})
    return url


def drain(aws, url, app):
    while invoke_from_queue(aws, url, app.upload_arrived, batch_size=10) is not None:
        pass


def test_an_upload_that_lands_queues_its_job_once(aws, store, services, serve, events_url):
    app = serve(services)
    job = new_job(store, AWAITING_UPLOAD, object_key="uploads/placeholder")
    aws.s3.put_object(Bucket=aws.bucket, Key=f"uploads/{job.id}", Body=b"12345")
    [event] = [m["Body"] for m in aws.sqs.receive_message(QueueUrl=events_url, MaxNumberOfMessages=10)["Messages"]
               if "Records" in m["Body"]]
    aws.sqs.purge_queue(QueueUrl=events_url)
    for _ in range(3):  # S3 may say it more than once
        aws.sqs.send_message(QueueUrl=events_url, MessageBody=event)
    drain(aws, events_url, app)
    got = store.get_job(job.id)
    assert (got.status, got.file_size) == (QUEUED, 5) and got.last_enqueued_at is not None
    assert job_ids_on(aws, aws.queue_url) == [job.id]
    assert aws.count(events_url) == (0, 0)


def test_test_events_and_foreign_keys_change_nothing(aws, store, services, serve, events_url):
    app = serve(services)
    waiting = new_job(store, AWAITING_UPLOAD)
    aws.s3.put_object(Bucket=aws.bucket, Key=f"uploads/{waiting.id}/nested", Body=b"x")
    aws.s3.put_object(Bucket=aws.bucket, Key="inline/other", Body=b"x")  # not notified
    aws.sqs.send_message(QueueUrl=events_url, MessageBody="not json")
    drain(aws, events_url, app)
    assert store.get_job(waiting.id).status == AWAITING_UPLOAD
    assert aws.count(aws.queue_url) == (0, 0) and aws.count(events_url) == (0, 0)


def test_an_upload_after_expiry_revives_the_job(aws, store, services):
    job = new_job(store, AWAITING_UPLOAD)
    store.fail_job(job.id, "expired", UPLOAD_EXPIRED)
    assert housekeeping.upload_arrived(services, f"uploads/{job.id}", 9) is True
    assert store.get_job(job.id).status == QUEUED


# --- the sweep ---------------------------------------------------------------------------------

def test_sweep_resends_expires_and_deletes(aws, store, services):
    stuck = new_job(store)
    store.put(stuck, updated_at=LONG_AGO)
    fresh = new_job(store)  # its request may still be about to send it
    late = new_job(store, AWAITING_UPLOAD, upload_expires_at=LONG_AGO)
    done = new_job(store, object_key="inline/done")
    aws.s3.put_object(Bucket=aws.bucket, Key="inline/done", Body=b"x")
    store.complete_job(done.id, {}, {"status": "OK"})
    recent_failure = new_job(store, object_key="inline/failed")
    aws.s3.put_object(Bucket=aws.bucket, Key="inline/failed", Body=b"x")
    store.fail_job(recent_failure.id, "x", "MANIFEST_INVALID")

    report = housekeeping.sweep(services)
    assert (report.resent, report.uploads_expired, report.objects_deleted, report.objects_kept) == (1, 1, 1, 0)
    assert job_ids_on(aws, aws.queue_url) == [stuck.id]
    assert store.get_job(stuck.id).last_enqueued_at is not None and store.get_job(fresh.id).last_enqueued_at is None
    assert (store.get_job(late.id).status, store.get_job(late.id).error_code) == (FAILED, UPLOAD_EXPIRED)
    assert store.get_job(done.id).object_key is None
    keys = [o["Key"] for o in aws.s3.list_objects_v2(Bucket=aws.bucket).get("Contents", [])]
    assert keys == ["inline/failed"]  # a failed job keeps its file for a retry


def test_sweep_removes_cached_results_past_the_window(store, services):
    services = dataclasses.replace(services, settings=dataclasses.replace(services.settings, result_cache_seconds=60))
    stale, young = (CacheKey("verify", 31337, "0x" + "ab" * 20, "0x" + h * 32, "ipfs://x", "http://n") for h in "12")
    store.store_result(stale, {"status": "OK"})
    store.store_result(young, {"status": "OK"})
    store.cache[stale] = (store.cache[stale][0], LONG_AGO)
    assert housekeeping.sweep(services).cached_results_removed == 1
    assert list(store.cache) == [young]


def test_sweep_goes_on_after_one_delete_error(aws, store, services):
    jobs = []
    for name in ("a", "b", "c"):
        aws.s3.put_object(Bucket=aws.bucket, Key=f"inline/{name}", Body=b"x")
        job = new_job(store, object_key=f"inline/{name}")
        store.complete_job(job.id, {}, {"status": "OK"})
        jobs.append(job)
    real_delete = aws.s3.delete_object

    def delete(Bucket, Key):
        if Key == "inline/a":
            raise ClientError({"Error": {"Code": "InternalError", "Message": "try again"}}, "DeleteObject")
        return real_delete(Bucket=Bucket, Key=Key)

    report = housekeeping.sweep(with_clients(services, s3=Proxy(aws.s3, delete_object=delete)))
    assert (report.objects_deleted, report.objects_kept) == (2, 1)
    assert [store.get_job(j.id).object_key for j in jobs] == ["inline/a", None, None]
    assert [o["Key"] for o in aws.s3.list_objects_v2(Bucket=aws.bucket)["Contents"]] == ["inline/a"]
    assert housekeeping.sweep(services).objects_deleted == 1  # the next sweep finishes it


def test_sweep_with_the_queue_down_leaves_the_job_for_the_next_one(aws, store, services):
    stuck = new_job(store)
    store.put(stuck, updated_at=LONG_AGO)
    aws.sqs.delete_queue(QueueUrl=aws.queue_url)
    assert housekeeping.sweep(services).resent == 0
    assert store.get_job(stuck.id).last_enqueued_at is None


# --- the dead-letter queue ---------------------------------------------------------------------

def dead_letter(aws, job_ids):
    for start in range(0, len(job_ids), 10):
        aws.sqs.send_message_batch(QueueUrl=aws.dlq_url, Entries=[
            {"Id": str(i), "MessageBody": json.dumps({"jobId": j})} for i, j in enumerate(job_ids[start:start + 10])])


def test_reconciler_reads_past_the_first_ten_messages_and_leaves_them_there(aws, store, services):
    jobs = [new_job(store, PROCESSING) for _ in range(25)]
    dead_letter(aws, [j.id for j in jobs])
    assert housekeeping.reconcile_dead_letters(services) == 25
    assert {store.get_job(j.id).status for j in jobs} == {FAILED}
    assert {store.get_job(j.id).error_code for j in jobs} == {DEAD_LETTERED}
    assert aws.count(aws.dlq_url) == (25, 0)  # still there for a redrive, and visible


def test_reconciler_at_the_enqueue_record_lag_edge(aws, store, services):
    at_edge, past_edge, finished = new_job(store, QUEUED), new_job(store, QUEUED), new_job(store, QUEUED)
    store.fail_job(finished.id, "x", "MANIFEST_INVALID")
    dead_letter(aws, [at_edge.id, past_edge.id, finished.id])
    sent = {m.job_id: m.sent_at for m in services.queue.peek_dead_letters()}
    # Written within the lag of the message's own send: this message is the job's latest.
    store.put(store.get_job(at_edge.id), last_enqueued_at=sent[at_edge.id] + ENQUEUE_RECORD_LAG,
              error="RPC unreachable", error_code="RPC_UNAVAILABLE")
    # Enqueued again after that (retry endpoint): a newer message is live, leave the job be.
    store.put(store.get_job(past_edge.id),
              last_enqueued_at=sent[past_edge.id] + ENQUEUE_RECORD_LAG + timedelta(milliseconds=1))
    assert housekeeping.reconcile_dead_letters(services) == 1
    failed = store.get_job(at_edge.id)
    assert (failed.status, failed.error, failed.error_code) == (FAILED, "RPC unreachable", "RPC_UNAVAILABLE")
    assert store.get_job(past_edge.id).status == QUEUED
    assert store.get_job(finished.id).error_code == "MANIFEST_INVALID"


def test_redrive_of_several_batches_with_a_partial_failure_in_the_middle(aws, store, services):
    jobs = [new_job(store) for _ in range(23)]
    for job in jobs:
        store.fail_job(job.id, "RPC unreachable", "RPC_UNAVAILABLE")
    dead_letter(aws, [j.id for j in jobs])
    calls, refused = [], []

    def send_batch(QueueUrl, Entries):
        calls.append(len(Entries))
        if len(calls) != 2:
            return aws.sqs.send_message_batch(QueueUrl=QueueUrl, Entries=Entries)
        refused.extend(json.loads(e["MessageBody"])["jobId"] for e in Entries[:3])
        answer = aws.sqs.send_message_batch(QueueUrl=QueueUrl, Entries=Entries[3:])
        answer["Failed"] = [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError"} for e in Entries[:3]]
        return answer

    report = housekeeping.redrive_dead_letters(with_clients(services, sqs=Proxy(aws.sqs, send_message_batch=send_batch)))
    moved = report.moved
    assert calls == [10, 10, 3] and len(refused) == 3 and report.remaining == 3
    assert sorted(moved) == sorted(j.id for j in jobs if j.id not in refused)
    assert job_ids_on(aws, aws.queue_url) == sorted(moved)
    for job in jobs:
        got = store.get_job(job.id)
        if job.id in refused:  # still dead-lettered: failed, where a redrive or the operator sees it
            assert (got.status, got.error_code) == (FAILED, DEAD_LETTERED)
        else:
            assert got.status == QUEUED and got.last_enqueued_at is not None
    assert sum(aws.count(aws.dlq_url)) == 3


def test_redrive_that_moves_nothing_is_a_dependency_failure(aws, store, services):
    job = new_job(store)
    store.fail_job(job.id, "x", "RPC_UNAVAILABLE")
    dead_letter(aws, [job.id])
    aws.sqs.delete_queue(QueueUrl=aws.queue_url)
    with pytest.raises(TransientError) as info:
        housekeeping.redrive_dead_letters(services)
    assert info.value.code == "QUEUE_UNAVAILABLE"
    assert (store.get_job(job.id).status, store.get_job(job.id).error_code) == (FAILED, DEAD_LETTERED)


def test_redriven_jobs_run_again(aws, store, services, serve, monkeypatch):
    from chalicelib import worker
    job = new_job(store, content_hash="0x" + "11" * 32)
    store.fail_job(job.id, "x", "RPC_UNAVAILABLE")
    dead_letter(aws, [job.id])
    assert housekeeping.redrive_dead_letters(services).moved == [job.id]
    monkeypatch.setattr(verification_core(), "verify_hash", lambda *args: {"status": "FAIL", "fileHash": "0x", "recovered": "0x",
                                                              "onchain": {"creator": "0x0"},
                                                              "evidence": {"chainId": 31337}})
    assert invoke_from_queue(aws, aws.queue_url, serve(services).process_verification_job) is True
    assert store.get_job(job.id).status == COMPLETED


def test_a_bad_upload_event_neither_holds_back_nor_repeats_the_others_of_its_batch(aws, store, services, serve):
    app = serve(services)
    jobs = [new_job(store, AWAITING_UPLOAD) for _ in range(3)]
    bodies = [json.dumps({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Post",
                                       "s3": {"bucket": {"name": aws.bucket},
                                              "object": {"key": f"uploads/{job.id}", "size": 5}}}]}) for job in jobs]
    bad = json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {}}}]})  # no key
    aws.sqs.send_message_batch(QueueUrl=aws.upload_events_url, Entries=[
        {"Id": str(i), "MessageBody": body} for i, body in enumerate([bodies[0], bad, *bodies[1:]])])
    assert invoke_from_queue(aws, aws.upload_events_url, app.upload_arrived, batch_size=10) is False
    assert all(store.get_job(job.id).status == QUEUED for job in jobs)
    assert sorted(job_ids_on(aws, aws.queue_url)) == sorted(job.id for job in jobs)
    assert aws.count(aws.upload_events_url) == (0, 1)  # only the bad one is left, for redelivery


def test_a_redrive_moves_a_bounded_batch_each_to_its_own_queue_and_says_how_many_remain(aws, store, services):
    verify_jobs = [new_job(store) for _ in range(7)]
    proof_jobs = [new_job(store, job_type="proof") for _ in range(6)]
    for job in verify_jobs + proof_jobs:
        store.fail_job(job.id, "RPC unreachable", "RPC_UNAVAILABLE")
    dead_letter(aws, [j.id for j in verify_jobs])
    for job in proof_jobs:
        aws.sqs.send_message(QueueUrl=aws.proof_dlq_url, MessageBody=json.dumps({"jobId": job.id}))
    bounded = dataclasses.replace(services, settings=dataclasses.replace(services.settings, redrive_batch_messages=5))
    reports = []
    while not reports or reports[-1].remaining:
        reports.append(housekeeping.redrive_dead_letters(bounded))
    assert [len(r.moved) for r in reports] == [5, 5, 3] and [r.remaining for r in reports] == [8, 3, 0]
    assert job_ids_on(aws, aws.queue_url) == sorted(j.id for j in verify_jobs)
    assert job_ids_on(aws, aws.proof_queue_url) == sorted(j.id for j in proof_jobs)


def test_the_sweeper_and_the_reconciler_cover_the_proof_queue_too(aws, store, services):
    stuck = new_job(store, job_type="proof")
    store.put(stuck, updated_at=LONG_AGO)
    assert housekeeping.sweep(services).resent == 1
    assert job_ids_on(aws, aws.proof_queue_url) == [stuck.id] and aws.count(aws.queue_url) == (0, 0)
    died = new_job(store, PROCESSING, job_type="proof")
    aws.sqs.send_message(QueueUrl=aws.proof_dlq_url, MessageBody=json.dumps({"jobId": died.id}))
    assert housekeeping.reconcile_dead_letters(services) == 1
    assert (store.get_job(died.id).status, store.get_job(died.id).error_code) == (FAILED, DEAD_LETTERED)
