"""The job store against a real PostgreSQL (embedded, started by the fixture)."""
from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from chalicelib import jobs, vocabulary
from chalicelib.db import Database
from chalicelib.db.migrate import ADVISORY_LOCK_KEY, discover, migrate
from chalicelib.errors import TransientError
from chalicelib.jobs import JobStore
from devstack.postgres import start_postgres
from tests.store_contract import CHECKS

pytestmark = pytest.mark.integration

REGISTRY = "0x" + "ab" * 20
MANIFEST = "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/manifest.json"
HASH = "0x" + "11" * 32
ISO_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
POOL_OPTIONS = dict(timeout=3)
THREAD_TIMEOUT_SECONDS = 60


def pg_data_dir() -> Path:
    """A fresh directory for a cluster. Not under pytest's tmp_path: every pytest session
    resets /tmp/pytest-of-<user> to mode 0700, which would lock out the unprivileged user the
    server runs as when the tests run as root (and other pytest sessions may start meanwhile)."""
    return Path(tempfile.mkdtemp(prefix="internetid-test-pg-")) / "data"


@pytest.fixture(scope="module")
def pg():
    data_dir = pg_data_dir()
    server = start_postgres(data_dir, server_settings={"fsync": "off"})
    print(f"embedded PostgreSQL started in {server.startup_seconds:.2f}s")
    try:
        migrate(server.url)
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def database(pg):
    database = Database(pg.url, max_size=10, **POOL_OPTIONS)
    yield database
    database.close()


@pytest.fixture(autouse=True)
def clean(pg):
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("TRUNCATE verification_jobs, verifications, rate_limit_windows")
    yield


@pytest.fixture
def store(database):
    return JobStore(database)


def run_threads(n, target):
    """Run `target(i)` in `n` threads released together; return {i: result}. An exception in
    a thread, or a thread still running after THREAD_TIMEOUT_SECONDS, fails the test."""
    barrier = threading.Barrier(n)
    results, errors = {}, []

    def run(i):
        try:
            barrier.wait()
            results[i] = target(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(THREAD_TIMEOUT_SECONDS)
    assert not [t for t in threads if t.is_alive()], "threads still running after the timeout"
    assert errors == []
    return results


def sql(pg, query, params=None):
    with psycopg.connect(pg.url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else cur.rowcount


_STORE: list[JobStore] = []


@pytest.fixture(autouse=True)
def current_store(store):
    """new_job() writes through the test's store."""
    _STORE[:] = [store]
    yield


def new_job(**overrides):
    args = dict(job_type="verify", status="queued", manifest_uri=MANIFEST, registry_address=REGISTRY)
    args.update(overrides)
    return _STORE[0].create_job(**args)


def history_rows(pg, job_id):
    return sql(pg, "SELECT file_hash, status, creator FROM verifications WHERE job_id = %s", (job_id,))


# --- migrations ----------------------------------------------------------------------------------

def test_migrations_are_recorded_and_idempotent(pg):
    assert migrate(pg.url) == []
    with psycopg.connect(pg.url) as conn:
        assert migrate(conn) == []
    versions = [row[0] for row in sql(pg, "SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [m.version for m in discover()]
    assert len(versions) >= 2


def test_concurrent_migrators_apply_each_migration_once(pg):
    sql(pg, "DROP DATABASE IF EXISTS migrate_race")
    sql(pg, "CREATE DATABASE migrate_race")
    url = pg.url.rsplit("/", 1)[0] + "/migrate_race"
    results = run_threads(4, lambda i: migrate(url))
    assert len(results) == 4
    applied = sorted(label for result in results.values() for label in result)
    assert applied == sorted(m.label for m in discover())
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(applied)


def test_failing_migration_leaves_nothing_behind(pg, tmp_path):
    sql(pg, "DROP DATABASE IF EXISTS migrate_fail")
    sql(pg, "CREATE DATABASE migrate_fail")
    url = pg.url.rsplit("/", 1)[0] + "/migrate_fail"
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int);\nSELECT no_such_function();")
    with pytest.raises(psycopg.errors.UndefinedFunction):
        migrate(url, directory=tmp_path)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [(1,)]
        assert conn.execute("SELECT to_regclass('half')").fetchone()[0] is None
        assert conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()[0]
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int);")
    assert migrate(url, directory=tmp_path) == ["0002_bad"]


# --- create, get, list ---------------------------------------------------------------------------

def test_create_and_get_roundtrip(pg, store):
    expires = datetime.now(timezone.utc) + timedelta(minutes=15)
    job = new_job(job_type="proof", status="awaiting_upload", rpc_url="http://127.0.0.1:8545",
                  object_key="uploads/x", file_name="clip.mp4", content_type="video/mp4",
                  file_size=1234, upload_expires_at=expires)
    got = store.get_job(job.id)
    assert got == job
    assert got.type == "proof" and got.status == "awaiting_upload" and got.progress == 0
    assert got.file_name == "clip.mp4" and got.file_size == 1234 and got.object_key == "uploads/x"
    assert got.retry_count == 0 and got.attempts == 0 and got.last_enqueued_at is None
    assert abs((got.upload_expires_at - expires).total_seconds()) < 0.001
    assert store.get_job(job.id.upper()) == job  # any UUID spelling


def test_create_with_given_id_and_validation(pg):
    jid = jobs.new_job_id()
    assert new_job(job_id=jid, content_hash=HASH).id == jid
    with pytest.raises(ValueError):
        new_job(job_type="nope")
    with pytest.raises(ValueError):
        new_job(status="done")
    with pytest.raises(ValueError):
        new_job(job_id="not-a-uuid")


@pytest.mark.parametrize("bad", ["", "123", "not-a-uuid", "../../etc/passwd", "1234567890", None, 42])
def test_invalid_ids_are_not_found_without_database_error(pg, store, bad):
    assert store.get_job(bad) is None
    assert store.start_attempt(bad) is None
    assert store.requeue_failed(bad) is None
    assert store.mark_upload_received(bad) is None
    assert store.complete_job(bad, {}, {"status": "OK", "file_hash": HASH}) is False
    assert store.fail_job(bad, "x", "X") is False


def test_unknown_id_is_none(pg, store):
    assert store.get_job(jobs.new_job_id()) is None


def test_list_newest_first_with_filters_and_pagination(pg, store):
    created = []
    for i in range(6):
        created.append(new_job(job_type="verify" if i % 2 == 0 else "proof",
                               status="queued" if i < 4 else "awaiting_upload"))
    newest_first = [j.id for j in reversed(created)]
    assert [j.id for j in store.list_jobs()] == newest_first
    assert [j.id for j in store.list_jobs(limit=2)] == newest_first[:2]
    assert [j.id for j in store.list_jobs(limit=2, offset=2)] == newest_first[2:4]
    assert [j.id for j in store.list_jobs(limit=50, offset=6)] == []
    assert [j.id for j in store.list_jobs(status="awaiting_upload")] == newest_first[:2]
    assert [j.id for j in store.list_jobs(job_type="proof")] == [created[i].id for i in (5, 3, 1)]
    assert [j.id for j in store.list_jobs(status="queued", job_type="verify")] == [created[i].id for i in (2, 0)]
    assert store.list_jobs(status="completed") == []


def test_list_order_breaks_created_at_ties_by_id(pg, store):
    a, b, c = new_job(), new_job(), new_job()
    sql(pg, "UPDATE verification_jobs SET created_at = '2025-01-01T00:00:00Z'")
    expected = sorted([a.id, b.id, c.id], reverse=True)
    assert [j.id for j in store.list_jobs()] == expected


def test_job_to_api_shape(pg, store):
    job = new_job(content_hash=HASH)
    body = jobs.job_to_api(job)
    assert list(body) == ["id", "jobId", "type", "status", "progress", "contentHash", "manifestUri",
                          "registryAddress", "rpcUrl", "result", "error", "errorCode", "retryCount",
                          "createdAt", "startedAt", "completedAt", "updatedAt", "fileName"]
    assert body["id"] == body["jobId"] == job.id
    assert body["type"] == "verify" and body["status"] == "queued" and body["progress"] == 0
    assert body["contentHash"] == HASH and body["manifestUri"] == MANIFEST
    assert body["registryAddress"] == REGISTRY and body["rpcUrl"] is None
    assert body["result"] is None and body["error"] is None and body["errorCode"] is None
    assert body["retryCount"] == 0 and body["fileName"] is None
    assert ISO_MS_Z.match(body["createdAt"]) and ISO_MS_Z.match(body["updatedAt"])
    assert body["startedAt"] is None and body["completedAt"] is None

    store.start_attempt(job.id)
    store.complete_job(job.id, {"status": "OK", "fileHash": HASH}, {"status": "OK"})
    body = jobs.job_to_api(store.get_job(job.id))
    assert body["status"] == "completed" and body["progress"] == 100
    assert body["result"] == {"status": "OK", "fileHash": HASH}
    assert ISO_MS_Z.match(body["startedAt"]) and ISO_MS_Z.match(body["completedAt"])


def test_iso_utc_converts_to_utc_with_milliseconds():
    plus_two = timezone(timedelta(hours=2))
    assert jobs.iso_utc(datetime(2025, 3, 4, 7, 8, 9, 123456, tzinfo=plus_two)) == "2025-03-04T05:08:09.123Z"
    assert jobs.iso_utc(None) is None


# --- lifecycle -------------------------------------------------------------------------------

def test_happy_path_with_retry(pg, store):
    job = new_job()
    assert store.mark_enqueued(job.id) is True
    assert store.get_job(job.id).last_enqueued_at is not None

    first = store.start_attempt(job.id, TOKEN_A, 60)
    assert first.status == "processing" and first.attempts == 1 and first.started_at is not None
    assert store.renew_lease(job.id, TOKEN_A, 60, progress=10, content_hash=HASH) is True
    assert (store.get_job(job.id).progress, store.get_job(job.id).content_hash) == (10, HASH)  # a beat carries both
    assert store.set_progress(job.id, 30) is True
    assert store.set_progress(job.id, 10) is False  # never lowers
    assert store.get_job(job.id).progress == 30

    assert store.schedule_retry(job.id, "RPC timed out", "RPC_TIMEOUT") is True
    waiting = store.get_job(job.id)
    assert (waiting.status, waiting.retry_count, waiting.error, waiting.error_code) == \
        ("queued", 1, "RPC timed out", "RPC_TIMEOUT")
    assert store.schedule_retry(job.id, "again", "X") is False  # only from processing
    assert store.set_progress(job.id, 50) is False  # only while processing

    second = store.start_attempt(job.id)
    assert second.attempts == 2 and second.started_at == first.started_at

    result = {"status": "OK", "fileHash": HASH}
    history = {"status": "OK", "creator": "0x" + "cd" * 20, "recovered": "0x" + "cd" * 20, "chain_id": 31337}
    assert store.complete_job(job.id, result, history) is True
    done = store.get_job(job.id)
    assert (done.status, done.progress, done.result, done.error, done.error_code) == \
        ("completed", 100, result, None, None)
    assert done.completed_at is not None and done.content_hash == HASH
    rows = sql(pg, "SELECT job_id::text, file_hash, manifest_uri, registry_address, status, chain_id FROM verifications")
    assert rows == [(job.id, HASH, MANIFEST, REGISTRY, "OK", 31337)]


def test_completed_never_goes_backwards(pg, store):
    job = new_job(content_hash=HASH)
    store.start_attempt(job.id)
    assert store.complete_job(job.id, {"status": "WARN"}, {"status": "WARN"}) is True
    before = store.get_job(job.id)

    assert store.start_attempt(job.id) is None  # late duplicate delivery
    assert store.schedule_retry(job.id, "boom", "X") is False
    assert store.fail_job(job.id, "boom", "X") is False
    assert store.set_progress(job.id, 99) is False
    assert store.renew_lease(job.id, TOKEN_A, 60, progress=99, content_hash="0x" + "22" * 32) is False
    assert store.requeue_failed(job.id) is None
    assert store.requeue_dead_lettered([job.id]) == []
    assert store.mark_upload_received(job.id) is None
    assert store.complete_job(job.id, {"status": "FAIL"}, {"status": "FAIL"}) is False
    assert store.get_job(job.id) == before
    assert len(history_rows(pg, job.id)) == 1


def test_fail_requeue_and_late_completion(pg, store):
    job = new_job(content_hash=HASH)
    store.start_attempt(job.id)
    store.set_progress(job.id, 50)
    assert store.fail_job(job.id, "manifest is not JSON", "MANIFEST_INVALID") is True
    assert store.fail_job(job.id, "second opinion", "OTHER") is False  # keeps the first failure
    failed = store.get_job(job.id)
    assert (failed.status, failed.error_code, failed.error) == ("failed", "MANIFEST_INVALID", "manifest is not JSON")
    assert failed.completed_at is not None
    assert store.start_attempt(job.id) is None
    assert store.status_counts()["failed"] == 1

    again = store.requeue_failed(job.id)
    assert again.status == "queued" and again.completed_at is None and again.started_at is None
    assert again.error is None and again.error_code is None and again.progress == 0
    assert again.last_enqueued_at is None and again.attempts == 0
    assert store.requeue_failed(job.id) is None  # no longer failed

    # A slow worker finishing after the job was marked failed still delivers its result.
    store.start_attempt(job.id)
    store.fail_job(job.id, "dead-lettered", "MAX_RETRIES_EXCEEDED")
    assert store.complete_job(job.id, {"status": "OK"}, {"status": "OK"}) is True
    assert store.get_job(job.id).status == "completed"
    assert len(history_rows(pg, job.id)) == 1


def test_fail_from_any_unfinished_status(pg, store):
    for status in ("awaiting_upload", "queued", "processing"):
        job = new_job(status=status)
        assert store.fail_job(job.id, "x", "X") is True
        assert store.get_job(job.id).status == "failed"


def test_upload_received_once_and_start_waits_for_it(pg, store):
    job = new_job(status="awaiting_upload", object_key="uploads/a",
                  upload_expires_at=datetime.now(timezone.utc) + timedelta(minutes=15))
    assert store.start_attempt(job.id) is None  # not uploaded yet
    assert store.mark_upload_received(job.id, object_size=4096) is not None
    assert store.mark_upload_received(job.id, object_size=4096) is None  # repeated S3 event
    got = store.get_job(job.id)
    assert got.status == "queued" and got.file_size == 4096
    assert store.start_attempt(job.id).status == "processing"
    assert store.mark_upload_received(job.id) is None


def test_duplicate_deliveries_complete_once(pg, store):
    job = new_job(content_hash=HASH)

    def deliver(i: int) -> bool:
        if store.start_attempt(job.id) is None:
            return False
        store.set_progress(job.id, 50)
        return store.complete_job(job.id, {"status": "OK", "worker": i}, {"status": "OK", "file_hash": HASH})

    outcomes = run_threads(8, deliver)
    [winner] = [i for i, won in outcomes.items() if won]
    done = store.get_job(job.id)
    assert done.status == "completed" and done.progress == 100
    assert done.result == {"status": "OK", "worker": winner}  # the stored result is the winner's
    assert history_rows(pg, job.id) == [(HASH, "OK", None)]


def test_concurrent_complete_calls_write_one_history_row(pg, store):
    job = new_job(content_hash=HASH)
    store.start_attempt(job.id)
    outcomes = run_threads(8, lambda i: store.complete_job(
        job.id, {"worker": i}, {"status": "OK", "creator": f"0x{i:040x}"}))
    [winner] = [i for i, won in outcomes.items() if won]
    assert store.get_job(job.id).result == {"worker": winner}
    assert history_rows(pg, job.id) == [(HASH, "OK", f"0x{winner:040x}")]  # and so is the history row


def test_complete_requires_history_status(pg, store):
    job = new_job(content_hash=HASH)
    with pytest.raises(ValueError):
        store.complete_job(job.id, {}, {"file_hash": HASH})
    assert store.get_job(job.id).status == "queued"


def test_requeue_dead_lettered(pg, store):
    failed = [new_job() for _ in range(2)]
    for job in failed:
        store.fail_job(job.id, "dead-lettered", "MAX_RETRIES_EXCEEDED")
    queued = new_job()
    moved = store.requeue_dead_lettered([failed[0].id, failed[1].id, queued.id, "junk", failed[0].id])
    assert sorted(moved) == sorted(j.id for j in failed)
    for job in failed:
        got = store.get_job(job.id)
        assert got.status == "queued" and got.error is None and got.last_enqueued_at is not None
    assert store.requeue_dead_lettered([]) == []


def test_status_counts(pg, store):
    new_job()
    new_job(status="awaiting_upload")
    done = new_job(content_hash=HASH)
    store.start_attempt(done.id)
    store.complete_job(done.id, {}, {"status": "FAIL"})
    store.fail_job(new_job().id, "x", "X")
    store.fail_job(new_job().id, "x", "X")
    assert store.status_counts() == {"awaiting_upload": 1, "queued": 1, "processing": 0,
                                    "completed": 1, "failed": 2, "cancelled": 0}


def test_activity_counts_each_job_in_the_minute_it_finished_within_the_window(pg, store):
    """Times are set relative to the database's clock, far from the window's edges, so that a
    minute turning over during the test moves no job across an edge."""
    ages = {"inside": "58 minutes 30 seconds", "outside": "61 minutes"}
    ids = {}
    for name, age in ages.items():
        ids[name] = new_job().id
        store.fail_job(ids[name], "x", "RPC_UNAVAILABLE")
        sql(pg, "UPDATE verification_jobs SET completed_at = now() - %s::interval WHERE id = %s", (age, ids[name]))
    store.complete_job(new_job().id, {}, {"status": "OK", "file_hash": HASH})
    minutes = store.finished_by_minute(60)
    [(inside_minute,)] = sql(pg, "SELECT date_trunc('minute', completed_at) FROM verification_jobs WHERE id = %s",
                             (ids["inside"],))
    assert [(m.completed, m.failed) for m in minutes if m.minute == inside_minute] == [(0, 1)]
    assert (sum(m.completed for m in minutes), sum(m.failed for m in minutes)) == (1, 1)
    assert [tuple(f) for f in store.failures_by_code(60)] == [("RPC_UNAVAILABLE", 1)]
    assert [tuple(f) for f in store.failures_by_code(62)] == [("RPC_UNAVAILABLE", 2)]


# --- sweeper -------------------------------------------------------------------------------

def test_jobs_to_resend(pg, store):
    never_sent = new_job()
    sent_long_ago = new_job()
    store.mark_enqueued(sent_long_ago.id)
    fresh = new_job()  # the API is about to send it
    backoff = new_job()
    store.mark_enqueued(backoff.id)
    processing = new_job()
    sql(pg, "UPDATE verification_jobs SET created_at = now() - interval '1 hour', "
            "updated_at = now() - interval '1 hour', "
            "last_enqueued_at = CASE WHEN last_enqueued_at IS NULL THEN NULL ELSE now() - interval '1 hour' END "
            "WHERE id <> %s", (fresh.id,))
    # backoff: a transient failure re-queued it just now; its message reappears after the delay
    store.start_attempt(backoff.id)
    store.schedule_retry(backoff.id, "timeout", "RPC_TIMEOUT")
    store.start_attempt(processing.id)

    # Only jobs whose send failed are re-sent; a sent message stays in SQS however long it waits.
    resend = {j.id for j in store.jobs_to_resend(older_than_seconds=300)}
    assert resend == {never_sent.id}
    store.mark_enqueued(never_sent.id)
    assert store.jobs_to_resend(older_than_seconds=300) == []
    assert {j.id for j in store.jobs_to_resend(older_than_seconds=0)} == {fresh.id}


def test_expire_uploads(pg, store):
    now = datetime.now(timezone.utc)
    late = new_job(status="awaiting_upload", upload_expires_at=now - timedelta(seconds=1))
    pending = new_job(status="awaiting_upload", upload_expires_at=now + timedelta(minutes=10))
    arrived = new_job(status="awaiting_upload", upload_expires_at=now - timedelta(seconds=1))
    store.mark_upload_received(arrived.id)

    expired = store.expire_uploads()
    assert [j.id for j in expired] == [late.id]
    assert expired[0].status == "failed" and expired[0].error_code == "UPLOAD_EXPIRED"
    assert expired[0].completed_at is not None
    assert store.expire_uploads() == []
    assert store.get_job(pending.id).status == "awaiting_upload"
    assert [j.id for j in store.expire_uploads(now + timedelta(hours=1))] == [pending.id]

    # An upload S3 accepted just before expiry but reported after the sweep revives the job.
    assert store.mark_upload_received(late.id, object_size=10) is not None
    revived = store.get_job(late.id)
    assert revived.status == "queued" and revived.error is None and revived.completed_at is None


def test_objects_of_finished_jobs(pg, store):
    done = new_job(object_key="uploads/done", content_hash=HASH)
    store.start_attempt(done.id)
    store.complete_job(done.id, {}, {"status": "OK"})
    recent_failure = new_job(object_key="uploads/recent-failure")
    store.fail_job(recent_failure.id, "x", "X")
    old_failure = new_job(object_key="uploads/old-failure")
    store.fail_job(old_failure.id, "x", "X")
    sql(pg, "UPDATE verification_jobs SET completed_at = now() - interval '31 days' WHERE id = %s",
        (old_failure.id,))
    new_job(object_key="uploads/queued")

    found = {j.object_key for j in store.finished_jobs_with_objects(0, 30 * 86400)}
    assert found == {"uploads/done", "uploads/old-failure"}
    assert store.clear_object_key(done.id) is True
    assert store.clear_object_key(done.id) is False
    assert {j.object_key for j in store.finished_jobs_with_objects(0, 30 * 86400)} == {"uploads/old-failure"}
    assert store.get_job(done.id).object_key is None


def test_delete_old_jobs_keeps_history_and_unfinished(pg, store):
    old_done = new_job(content_hash=HASH)
    store.start_attempt(old_done.id)
    store.complete_job(old_done.id, {}, {"status": "OK"})
    new_done = new_job(content_hash=HASH)
    store.start_attempt(new_done.id)
    store.complete_job(new_done.id, {}, {"status": "OK"})
    failed_8_days = new_job()
    store.fail_job(failed_8_days.id, "x", "X")
    failed_31_days = new_job()
    store.fail_job(failed_31_days.id, "x", "X")
    failed_with_object = new_job(object_key="uploads/keep")
    store.fail_job(failed_with_object.id, "x", "X")
    old_queued = new_job()
    sql(pg, "UPDATE verification_jobs SET completed_at = now() - interval '8 days', "
            "created_at = now() - interval '40 days' WHERE id IN (%s, %s, %s)",
        (old_done.id, failed_8_days.id, old_queued.id))
    sql(pg, "UPDATE verification_jobs SET completed_at = now() - interval '31 days' WHERE id IN (%s, %s)",
        (failed_31_days.id, failed_with_object.id))

    assert store.delete_old_jobs(completed_days=7, failed_days=30) == 2
    remaining = {j.id for j in store.list_jobs(limit=100)}
    assert remaining == {new_done.id, failed_8_days.id, failed_with_object.id, old_queued.id}
    assert len(history_rows(pg, old_done.id)) == 1  # history survives retention
    assert store.delete_old_jobs(completed_days=7, failed_days=30) == 0


# --- connection loss -------------------------------------------------------------------------

def _pool_backends(pg):
    return [row[0] for row in sql(pg, "SELECT pid FROM pg_stat_activity "
                                      "WHERE application_name = 'internetid-verification'")]


def test_dropped_idle_connection_is_replaced_by_the_pool_check(pg, store, database):
    job = new_job()
    assert _pool_backends(pg), "the pool keeps its connection for the next call"
    sql(pg, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'internetid-verification'")
    time.sleep(0.2)
    # The check on checkout finds a dead connection, every idle one is tested at once, and a
    # fresh connection serves the call: the caller sees no error.
    t0 = time.monotonic()
    assert store.get_job(job.id) == job
    print(f"first call after the drop took {time.monotonic() - t0:.3f}s")
    assert database.pool().get_stats().get("connections_lost", 0) >= 1
    assert store.get_job(job.id) == job


def test_connection_dropped_mid_transaction_is_transient(pg, store, database):
    job = new_job()
    with pytest.raises(TransientError) as info:
        with database.connection() as conn:
            pid = conn.info.backend_pid
            sql(pg, "SELECT pg_terminate_backend(%s)", (pid,))
            conn.execute("SELECT 1")
    assert info.value.code == vocabulary.DATABASE_UNAVAILABLE and info.value.permanent is False
    assert store.get_job(job.id) == job  # and the pool recovers at once


def test_database_down_is_transient_and_recovers(pg):
    data_dir = pg_data_dir()
    other = start_postgres(data_dir, server_settings={"fsync": "off"})
    database = Database(other.url, max_size=2, timeout=2)
    store = JobStore(database)
    try:
        migrate(other.url)
        job = store.create_job(job_type="verify", status="queued", manifest_uri=MANIFEST, registry_address=REGISTRY)
        port = other.port
        other.stop()
        with pytest.raises(TransientError) as info:
            store.get_job(job.id)
        assert info.value.code == vocabulary.DATABASE_UNAVAILABLE
        with pytest.raises(TransientError):
            store.create_job(job_type="verify", status="queued", manifest_uri=MANIFEST,
                             registry_address=REGISTRY)

        # Same port again: the pool reconnects by itself once the server is back.
        other = start_postgres(data_dir, port=port)
        t0 = time.monotonic()
        while True:
            try:
                assert store.get_job(job.id) == job
                break
            except TransientError:
                if time.monotonic() - t0 > 60:
                    raise
                time.sleep(0.2)
        print(f"pool recovered {time.monotonic() - t0:.2f}s after the server came back")
    finally:
        database.close()
        other.stop()
        shutil.rmtree(data_dir.parent, ignore_errors=True)


# --- the schema speaks the vocabulary ----------------------------------------------------------

def _check_values(pg, table: str, column: str) -> set[str]:
    """The string values a CHECK (column IN (...)) constraint of `table` allows."""
    rows = sql(pg, """SELECT pg_get_constraintdef(oid) FROM pg_constraint
                       WHERE conrelid = %s::regclass AND contype = 'c'""", (table,))
    [definition] = [r[0] for r in rows if f"({column} = ANY" in r[0] or f"{column} IN" in r[0]]
    return set(re.findall(r"'([^']+)'", definition))


def test_check_constraints_allow_exactly_the_vocabulary(pg):
    assert _check_values(pg, "verification_jobs", "status") == set(vocabulary.JOB_STATUSES)
    assert _check_values(pg, "verification_jobs", "type") == set(vocabulary.JOB_TYPES)
    assert _check_values(pg, "verifications", "status") == set(vocabulary.VERDICTS)
    assert _check_values(pg, "result_cache", "kind") == set(vocabulary.JOB_TYPES)


# --- the rules the unit tests' fake store keeps too ------------------------------------------

@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_store_keeps_the_contract(store, check):
    check(store)


def test_rate_limit_windows_that_ended_are_deleted_and_the_current_one_kept(pg, store):
    sql(pg, """INSERT INTO rate_limit_windows (client, window_start, requests)
               VALUES ('192.0.2.1', date_trunc('minute', now()) - interval '1 minute', 100),
                      ('192.0.2.1', date_trunc('minute', now()) - interval '1 day', 3)""")
    store.count_request("192.0.2.1")
    deleted = store.delete_ended_windows()
    left = sql(pg, "SELECT client, requests FROM rate_limit_windows")
    # Unless the minute ended in between (then the current one went too), it alone is left.
    assert (deleted, left) in ((2, [("192.0.2.1", 1)]), (3, []))
# --- leases and retry backoff ------------------------------------------------------------------

TOKEN_A, TOKEN_B = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"


def test_a_live_lease_keeps_a_second_delivery_from_starting_the_job(store):
    job = new_job()
    assert store.start_attempt(job.id, TOKEN_A, 60).status == "processing"
    assert store.start_attempt(job.id, TOKEN_B, 60) is None  # the lease is A's
    assert store.lease_holder(job.id).id == job.id
    assert store.renew_lease(job.id, TOKEN_B, 60) is False and store.renew_lease(job.id, TOKEN_A, 60) is True
    assert store.get_job(job.id).attempts == 1


def test_concurrent_deliveries_start_the_job_once(store):
    job = new_job()
    tokens = [f"00000000-0000-4000-8000-{i:012d}" for i in range(8)]
    started = run_threads(8, lambda i: store.start_attempt(job.id, tokens[i], 60))
    assert sum(result is not None for result in started.values()) == 1
    assert store.get_job(job.id).attempts == 1


def test_a_lease_that_ran_out_is_taken_by_the_next_delivery_and_the_old_holder_loses_it(store):
    job = new_job()
    store.start_attempt(job.id, TOKEN_A, 0)  # A's lease is over at once (A died)
    assert store.lease_holder(job.id) is None
    assert store.start_attempt(job.id, TOKEN_B, 60).attempts == 2
    assert store.renew_lease(job.id, TOKEN_A, 60) is False  # A, resumed, learns it lost the job
    assert store.schedule_retry(job.id, "late", "RPC_UNAVAILABLE", 5, TOKEN_A) is False  # nor sends it back
    assert store.get_job(job.id).status == "processing"


def test_a_scheduled_retry_is_delayed_until_its_backoff_ends_and_lets_the_lease_go(store):
    waiting, due = new_job(), new_job(job_type="proof")
    for job, delay in ((waiting, 3600), (due, 0)):
        store.start_attempt(job.id, TOKEN_A, 60)
        assert store.schedule_retry(job.id, "RPC down", "RPC_UNAVAILABLE", delay, TOKEN_A)
    assert store.delayed_counts() == {"verify": 1, "proof": 0}
    assert store.lease_holder(waiting.id) is None
    assert store.start_attempt(waiting.id, TOKEN_B, 60) is not None  # the redelivery runs it
    assert store.delayed_counts() == {"verify": 0, "proof": 0}
