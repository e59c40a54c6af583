"""What any job store must do, run on the real one (tests/integration/test_jobs_db.py) and on
the unit tests' fake (tests/unit/test_fake_store.py), so that the fake cannot drift from the SQL."""
from __future__ import annotations

from typing import Any, Callable

from datetime import timedelta

from chalicelib.jobs import CacheKey, FailureCount
from chalicelib.vocabulary import (
    AWAITING_UPLOAD, CANCELLED, COMPLETED, FAILED, JOB_STATUSES, PROCESSING, QUEUED, UPLOAD_EXPIRED,
)

REGISTRY = "0x" + "ab" * 20
MANIFEST = "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/manifest.json"
HASH = "0x" + "11" * 32

# transition -> the statuses it may start from (every other status leaves the job as it is)
TRANSITIONS: dict[str, tuple[Callable[[Any, str], Any], set[str]]] = {
    "mark_enqueued": (lambda s, j: s.mark_enqueued(j), {QUEUED, PROCESSING}),
    "mark_upload_received": (lambda s, j: s.mark_upload_received(j, 5), {AWAITING_UPLOAD}),
    "start_attempt": (lambda s, j: s.start_attempt(j), {QUEUED, PROCESSING}),
    "set_progress": (lambda s, j: s.set_progress(j, 50), {PROCESSING}),
    "schedule_retry": (lambda s, j: s.schedule_retry(j, "timeout", "RPC_UNAVAILABLE"), {PROCESSING}),
    "fail_job": (lambda s, j: s.fail_job(j, "bad manifest", "MANIFEST_INVALID"), {AWAITING_UPLOAD, QUEUED, PROCESSING}),
    "requeue_failed": (lambda s, j: s.requeue_failed(j), {FAILED}),
    "requeue_dead_lettered": (lambda s, j: s.requeue_dead_lettered([j]), {FAILED}),
    "complete_job": (lambda s, j: s.complete_job(j, {"status": "OK"}, {"status": "OK", "file_hash": HASH}),
                     {QUEUED, PROCESSING, FAILED}),
    "clear_object_key": (lambda s, j: s.clear_object_key(j), {COMPLETED, FAILED, CANCELLED}),
    "cancel_job": (lambda s, j: s.cancel_job(j), {AWAITING_UPLOAD, QUEUED, PROCESSING}),
}


def job_in(store: Any, status: str) -> str:
    """A new job (with an object key) brought to `status` through the store's own transitions."""
    job = store.create_job(job_type="verify", status=AWAITING_UPLOAD if status == AWAITING_UPLOAD else QUEUED,
                           manifest_uri=MANIFEST, registry_address=REGISTRY, object_key="uploads/x")
    if status in (PROCESSING, COMPLETED):
        store.start_attempt(job.id)
    if status == COMPLETED:
        store.complete_job(job.id, {"status": "OK"}, {"status": "OK", "file_hash": HASH})
    if status == FAILED:
        store.fail_job(job.id, "bad manifest", "MANIFEST_INVALID")
    if status == CANCELLED:
        store.cancel_job(job.id)
    assert store.get_job(job.id).status == status
    return job.id


def check_transitions(store: Any) -> None:
    """Each transition changes a job exactly from the statuses it names, and reports so."""
    for name, (transition, allowed) in TRANSITIONS.items():
        for status in JOB_STATUSES:
            job_id = job_in(store, status)
            before = store.get_job(job_id)
            changed = bool(transition(store, job_id))
            assert changed == (status in allowed), (name, status)
            if not changed:
                assert store.get_job(job_id) == before, (name, status)


def check_first_failure_and_late_results(store: Any) -> None:
    job_id = job_in(store, PROCESSING)
    assert store.fail_job(job_id, "first", "RPC_UNAVAILABLE")
    assert not store.fail_job(job_id, "second", "MANIFEST_INVALID")
    assert (store.get_job(job_id).error, store.get_job(job_id).error_code) == ("first", "RPC_UNAVAILABLE")
    assert store.complete_job(job_id, {"status": "OK"}, {"status": "OK", "file_hash": HASH})  # a slow worker
    assert not store.complete_job(job_id, {"status": "FAIL"}, {"status": "FAIL", "file_hash": HASH})
    done = store.get_job(job_id)
    assert (done.status, done.progress, done.result, done.error) == (COMPLETED, 100, {"status": "OK"}, None)


def check_expired_uploads_revive(store: Any) -> None:
    job_id = job_in(store, AWAITING_UPLOAD)
    store.fail_job(job_id, "expired", UPLOAD_EXPIRED)
    assert store.mark_upload_received(job_id, 7)
    revived = store.get_job(job_id)
    assert (revived.status, revived.error_code, revived.file_size) == (QUEUED, None, 7)


def check_requeue_resets(store: Any) -> None:
    job_id = job_in(store, PROCESSING)
    store.set_progress(job_id, 50)
    store.fail_job(job_id, "x", "RPC_UNAVAILABLE")
    again = store.requeue_failed(job_id)
    assert (again.status, again.progress, again.error, again.attempts, again.last_enqueued_at) == \
        (QUEUED, 0, None, 0, None)
    store.start_attempt(job_id)
    store.fail_job(job_id, "x", "RPC_UNAVAILABLE")
    assert store.requeue_dead_lettered([job_id, job_id, "junk"]) == [job_id]
    assert store.get_job(job_id).last_enqueued_at is not None  # a redrive counts as a send


def check_result_cache(store: Any) -> None:
    """A stored result comes back for its own key only, while it is young enough; a second store
    replaces the first."""
    key = CacheKey("verify", 31337, REGISTRY, HASH, MANIFEST, "http://127.0.0.1:8545")
    assert store.cached_result(key, 60) is None
    store.store_result(key, {"status": "OK", "evidence": {"cached": False}})
    assert store.cached_result(key, 60) == {"status": "OK", "evidence": {"cached": False}}
    for other in (key._replace(kind="proof"), key._replace(chain_id=1), key._replace(manifest_uri=MANIFEST + "x"),
                  key._replace(registry_address="0x" + "cd" * 20), key._replace(content_hash="0x" + "22" * 32),
                  key._replace(rpc_url="http://127.0.0.1:9")):
        assert store.cached_result(other, 60) is None, other
    store.store_result(key, {"status": "WARN"})
    assert store.cached_result(key, 60) == {"status": "WARN"}
    assert store.cached_result(key, 0) is None  # older than no time at all
    other = key._replace(content_hash="0x" + "33" * 32)
    store.store_result(other, {"status": "FAIL"})
    assert store.delete_stale_results(3600) == 0  # both younger than an hour
    assert store.delete_stale_results(0) == 2 and store.cached_result(key, 60) is None


def check_completion_keeps_its_cache_entry(store: Any) -> None:
    """A completion with a cache key makes the result the key's entry, in the same write; a
    completion that loses (the job is already completed) stores nothing."""
    key = CacheKey("verify", 31337, REGISTRY, "0x" + "44" * 32, MANIFEST, "http://127.0.0.1:8545")
    job_id = job_in(store, PROCESSING)
    assert store.complete_job(job_id, {"status": "OK"}, {"status": "OK", "file_hash": HASH}, key)
    assert store.cached_result(key, 60) == {"status": "OK"}
    late = key._replace(content_hash="0x" + "55" * 32)
    assert not store.complete_job(job_id, {"status": "FAIL"}, {"status": "FAIL", "file_hash": HASH}, late)
    assert store.cached_result(late, 60) is None


def check_cancelled_is_final(store: Any) -> None:
    """Cancelling keeps the job's input fields and finishes it; nothing brings it back (the
    transitions above refuse it), and retention treats it as a completed job."""
    job_id = job_in(store, PROCESSING)
    cancelled = store.cancel_job(job_id)
    assert (cancelled.status, cancelled.result, cancelled.object_key) == (CANCELLED, None, "uploads/x")
    assert cancelled.completed_at is not None
    assert store.cancel_job(job_id) is None and store.cancel_job("junk") is None
    assert [j.id for j in store.finished_jobs_with_objects(0.0, 10**9)] == [job_id]
    assert store.status_counts()[CANCELLED] == 1
    running = job_in(store, QUEUED)
    assert store.start_attempt(running, "00000000-0000-4000-8000-00000000000c", 60) is not None
    assert store.lease_holder(running) is not None
    store.cancel_job(running)
    assert store.lease_holder(running) is None  # the cancel lets the running attempt's lease go


def check_rate_limit_windows(store: Any) -> None:
    """Requests are counted per client in the current minute; ended windows go, current ones
    stay. (A minute that ends between two calls starts the count over: seen in `seconds_left`.)"""
    def counted_after(before: Any, client: str = "192.0.2.1") -> Any:
        window = store.count_request(client)
        assert 0 < window.seconds_left <= 60
        assert window.requests == (before.requests + 1 if window.seconds_left <= before.seconds_left else 1)
        return window

    first = store.count_request("192.0.2.1")
    assert first.requests == 1 and 0 < first.seconds_left <= 60
    second = counted_after(first)
    assert store.count_request("198.51.100.7").requests == 1
    store.delete_ended_windows()
    counted_after(second)  # the current window survived the delete


def check_activity(store: Any) -> None:
    """Finished jobs per minute over the window (every minute present, oldest first) and failures
    per code, most frequent first; unfinished jobs count in neither."""
    job_in(store, COMPLETED)
    for code in ("RPC_UNAVAILABLE", "MANIFEST_INVALID", "MANIFEST_INVALID"):
        store.fail_job(job_in(store, QUEUED), "x", code)
    job_in(store, PROCESSING)
    minutes = store.finished_by_minute(60)
    assert len(minutes) == 60
    assert all(later.minute - earlier.minute == timedelta(minutes=1) for earlier, later in zip(minutes, minutes[1:]))
    assert (sum(m.completed for m in minutes), sum(m.failed for m in minutes)) == (1, 3)
    assert store.failures_by_code(60) == [FailureCount("MANIFEST_INVALID", 2), FailureCount("RPC_UNAVAILABLE", 1)]
    assert len(store.finished_by_minute(1)) == 1


CHECKS = [check_transitions, check_first_failure_and_late_results, check_expired_uploads_revive,
          check_requeue_resets, check_result_cache, check_completion_keeps_its_cache_entry, check_cancelled_is_final,
          check_rate_limit_windows, check_activity]
