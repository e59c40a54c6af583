"""The S3 and SQS adapters on moto: what they do, and that every dependency failure comes out as
the vocabulary's transient code (a 503 in a request, a retry in a job), never a raw botocore error."""
from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest

from chalicelib.aws import LazyClient
from chalicelib.config import load_settings
from chalicelib.errors import PermanentError, TransientError
from chalicelib.queue import LARGE, MAX_VISIBILITY_SECONDS, QueueDepth, WorkQueue, job_id_from_body, lane_key, message_body
from chalicelib.storage import Storage
from chalicelib.vocabulary import QUEUE_UNAVAILABLE, STORAGE_UNAVAILABLE, UPLOAD_MISSING

from tests.unit.conftest import make_settings


def routed(job_id: str, job_type: str, file_size: int | None = None) -> SimpleNamespace:
    """What the queue reads of a job: its id, its type and its file's size."""
    return SimpleNamespace(id=job_id, type=job_type, file_size=file_size)


def test_storage_keys_come_from_the_job_id_only(services):
    storage = services.storage
    assert storage.object_key("j1") == "uploads/j1" and storage.object_key("j1", inline=True) == "inline/j1"
    assert storage.job_id_from_key("uploads/j1") == "j1"
    assert [storage.job_id_from_key(k) for k in ("inline/j1", "uploads/", "uploads/a/b")] == [None, None, None]


def test_storage_round_trip(services):
    storage = services.storage
    storage.put_object("inline/j", b"abc" * 1000, "text/plain")
    size, chunks = storage.stream_object("inline/j")
    assert size == 3000 and b"".join(chunks) == b"abc" * 1000
    assert storage.object_exists("inline/j") and not storage.object_exists("inline/other")
    storage.delete_object("inline/j")
    assert not storage.object_exists("inline/j")
    with pytest.raises(PermanentError) as info:
        storage.stream_object("inline/j")
    assert info.value.code == UPLOAD_MISSING
    storage.check()


def test_presigned_post_pins_key_type_and_size(services):
    upload = services.storage.presign_upload("uploads/j", "video/mp4")
    assert upload.fields["key"] == "uploads/j" and upload.fields["Content-Type"] == "video/mp4"
    assert upload.max_bytes == services.settings.max_upload_bytes and upload.url
    assert "Content-Type" not in services.storage.presign_upload("uploads/k", None).fields


def _size_range(upload) -> list:
    policy = json.loads(base64.b64decode(upload.fields["policy"]))
    return next(c for c in policy["conditions"] if isinstance(c, list) and c[0] == "content-length-range")


def test_presigned_post_pins_the_declared_size(services):
    declared = services.storage.presign_upload("uploads/s", None, size=1234)
    assert _size_range(declared) == ["content-length-range", 1234, 1234] and declared.max_bytes == 1234
    undeclared = services.storage.presign_upload("uploads/t", None)
    assert _size_range(undeclared) == ["content-length-range", 1, services.settings.max_upload_bytes]


def test_every_storage_call_translates_a_missing_bucket(aws, services):
    aws.s3.delete_bucket(Bucket=aws.bucket)
    storage = services.storage
    calls = [lambda: storage.put_object("inline/j", b"x", "text/plain"), lambda: storage.stream_object("inline/j"),
             lambda: storage.object_exists("inline/j"), lambda: storage.delete_object("inline/j"), storage.check,
             lambda: storage.start_multipart_upload("uploads/j", None),
             lambda: storage.received_parts("uploads/j", "u"),
             lambda: storage.complete_multipart_upload("uploads/j", "u", [(1, "e")]),
             lambda: storage.abort_multipart_upload("uploads/j", "u")]
    for call in calls:
        with pytest.raises(TransientError) as info:
            call()
        assert info.value.code == STORAGE_UNAVAILABLE


def test_a_client_that_cannot_be_made_is_a_dependency_failure(monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    settings = load_settings({"UPLOAD_BUCKET": "b", "QUEUE_URL": "http://127.0.0.1:1/q"})
    with pytest.raises(TransientError) as info:
        Storage(settings).put_object("k", b"x", "text/plain")
    assert info.value.code == STORAGE_UNAVAILABLE
    with pytest.raises(TransientError) as info:
        WorkQueue(settings).send(routed("j", "verify"))
    assert info.value.code == QUEUE_UNAVAILABLE


def test_lazy_client_is_made_once():
    made = LazyClient("s3", client="given")
    assert made() == "given" and made() == "given"


def test_queue_sends_delays_and_counts(aws, services):
    queue = services.queue
    queue.send(routed("j1", "verify"))
    [message] = aws.sqs.receive_message(QueueUrl=aws.queue_url)["Messages"]
    assert job_id_from_body(message["Body"]) == "j1" and message["Body"] == message_body("j1")
    queue.delay_redelivery(routed("j", "verify"), message["ReceiptHandle"], MAX_VISIBILITY_SECONDS + 100)  # clamped, not refused
    assert queue.depth().total.active == 1
    aws.sqs.send_message(QueueUrl=aws.dlq_url, MessageBody="{}")
    assert queue.depth().total.dead_letter == 1
    queue.check()


def test_each_job_type_has_its_own_queue_and_counts(aws, services):
    queue = services.queue
    queue.send(routed("v1", "verify"))
    queue.send(routed("p1", "proof"))
    queue.send(routed("p2", "proof"))
    aws.sqs.send_message(QueueUrl=aws.proof_dlq_url, MessageBody="{}")
    assert aws.count(aws.queue_url) == (1, 0) and aws.count(aws.proof_queue_url) == (2, 0)
    depth = queue.depth()
    assert depth.total == QueueDepth(waiting=3, active=0, dead_letter=1)
    assert depth.by_type == {"verify": QueueDepth(waiting=1), "proof": QueueDepth(waiting=2, dead_letter=1)}
    [message] = aws.sqs.receive_message(QueueUrl=aws.proof_queue_url, MaxNumberOfMessages=1)["Messages"]
    queue.delay_redelivery(routed("j", "proof"), message["ReceiptHandle"], 60)  # a proof's handle, on the proof queue
    assert aws.count(aws.proof_queue_url) == (1, 1)


def test_without_a_proof_queue_proofs_share_the_verify_queue_counted_once(aws):
    queue = WorkQueue(make_settings(aws, PROOF_QUEUE_URL=None, PROOF_DEAD_LETTER_QUEUE_URL=None), aws.sqs)
    queue.send(routed("p1", "proof"))
    assert aws.count(aws.queue_url) == (1, 0)
    assert queue.depth().total.waiting == 1


def test_the_lane_rule_sends_files_over_the_threshold_to_the_large_lane():
    limit = 512 * 1024 * 1024
    assert [lane_key(routed("j", t, size), limit) for t, size in
            (("verify", None), ("verify", limit), ("proof", limit), ("verify", limit + 1), ("proof", limit + 1))] \
        == ["verify", "verify", "proof", LARGE, LARGE]
    with pytest.raises(ValueError):
        lane_key(routed("j", "other", 1), limit)


def test_large_files_of_either_type_go_to_the_large_queue_and_change_visibility_there(aws):
    queue = WorkQueue(make_settings(aws, LARGE_FILE_BYTES="1000"), aws.sqs)
    queue.send(routed("small", "verify", 1000))
    queue.send(routed("big", "verify", 1001))
    queue.send(routed("big-proof", "proof", 10**12))
    assert aws.count(aws.queue_url) == (1, 0) and aws.count(aws.large_queue_url) == (2, 0)
    assert aws.count(aws.proof_queue_url) == (0, 0)
    [message] = aws.sqs.receive_message(QueueUrl=aws.large_queue_url, MaxNumberOfMessages=1)["Messages"]
    queue.delay_redelivery(routed(job_id_from_body(message["Body"]), "verify", 1001), message["ReceiptHandle"], 60)
    assert aws.count(aws.large_queue_url) == (1, 1)
    aws.sqs.send_message(QueueUrl=aws.large_dlq_url, MessageBody="{}")
    depth = queue.depth()
    assert depth.large == QueueDepth(waiting=1, active=1, dead_letter=1)
    assert depth.by_type == {"verify": QueueDepth(waiting=1), "proof": QueueDepth()}
    assert depth.total == QueueDepth(waiting=2, active=1, dead_letter=1)
    [dead] = queue.receive_dead_letters(1)
    assert dead.lane.url == aws.large_queue_url  # a redrive sends it back to the large lane


def test_without_a_large_queue_large_files_stay_on_their_types_queue(aws):
    queue = WorkQueue(make_settings(aws, LARGE_FILE_BYTES="1000", LARGE_QUEUE_URL=None,
                                    LARGE_DEAD_LETTER_QUEUE_URL=None), aws.sqs)
    queue.send(routed("big", "proof", 1001))
    assert aws.count(aws.proof_queue_url) == (1, 0) and queue.depth().large is None


@pytest.mark.parametrize("body", ["", "null", "[]", json.dumps({"jobId": 7}), "{"])
def test_foreign_message_bodies_have_no_job(body):
    assert job_id_from_body(body) is None


def test_every_queue_call_translates_a_missing_queue(aws, services):
    for url in (aws.queue_url, aws.dlq_url, aws.proof_queue_url, aws.proof_dlq_url, aws.upload_events_url):
        aws.sqs.delete_queue(QueueUrl=url)
    queue = services.queue
    calls = [lambda: queue.send(routed("j", "proof")), lambda: queue.delay_redelivery(routed("j", "verify"), "h", 1), queue.depth,
             queue.check, queue.peek_dead_letters, lambda: queue.receive_dead_letters(1), queue.dead_letters_left,
             lambda: queue.delete_upload_events(["h"])]
    for call in calls:
        with pytest.raises(TransientError) as info:
            call()
        assert info.value.code == QUEUE_UNAVAILABLE


def test_no_dead_letter_queue_configured_reads_as_empty(aws):
    queue = WorkQueue(make_settings(aws, DEAD_LETTER_QUEUE_URL=None, PROOF_DEAD_LETTER_QUEUE_URL=None), aws.sqs)
    assert queue.peek_dead_letters() == [] and queue.depth().total.dead_letter == 0


def test_presigned_urls_and_posts_are_signed_with_sigv4(aws):
    """botocore presigns S3 with SigV2 unless told otherwise; the service's own client says s3v4."""
    storage = Storage(make_settings(aws))  # its own client, made as in Lambda
    upload_id = storage.start_multipart_upload("uploads/j", "video/mp4")
    [url] = storage.presign_parts("uploads/j", upload_id, [1]).values()
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "Signature=" not in url.replace("X-Amz-Signature=", "")
    fields = storage.presign_upload("uploads/j", "video/mp4").fields
    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256" and "signature" not in fields
