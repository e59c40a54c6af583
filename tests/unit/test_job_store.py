"""The job store and the database pool without a server: what they refuse before any SQL, and
how an unreachable database is reported. The SQL itself runs on real PostgreSQL in
tests/integration/test_jobs_db.py."""
from __future__ import annotations

import socket

import pytest

from chalicelib.db import Database
from chalicelib.db.migrate import discover
from chalicelib.errors import TransientError
from chalicelib.jobs import JobStore, parse_job_id
from chalicelib.vocabulary import DATABASE_UNAVAILABLE
from chalicelib.wiring import build_services, services

NO_DATABASE = JobStore(Database(None))  # any SQL would raise RuntimeError


@pytest.mark.parametrize("bad", ["", "123", "../../etc/passwd", None, 42])
def test_ids_that_are_not_uuids_match_nothing_without_sql(bad):
    assert parse_job_id(bad) is None
    assert NO_DATABASE.get_job(bad) is None and NO_DATABASE.start_attempt(bad) is None
    assert NO_DATABASE.requeue_failed(bad) is None and NO_DATABASE.fail_job(bad, "x", "X") is False
    assert NO_DATABASE.complete_job(bad, {}, {"status": "OK"}) is False
    assert NO_DATABASE.requeue_dead_lettered([bad]) == []


def test_values_outside_the_vocabulary_are_refused_before_sql():
    for kwargs in ({"job_type": "audit", "status": "queued"}, {"job_type": "verify", "status": "done"}):
        with pytest.raises(ValueError):
            NO_DATABASE.create_job(manifest_uri="ipfs://x", registry_address="0x", **kwargs)
    with pytest.raises(ValueError):
        NO_DATABASE.complete_job("3f1c4a52-0000-4000-8000-000000000000", {}, {"status": "MAYBE"})
    with pytest.raises(ValueError):
        NO_DATABASE.list_jobs(offset=-1)


def test_no_database_url_is_a_configuration_error():
    with pytest.raises(RuntimeError):
        NO_DATABASE.status_counts()


def test_an_unreachable_database_is_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        database = Database(f"postgresql://nobody@127.0.0.1:{port}/none", timeout=0.5)
        try:
            with pytest.raises(TransientError) as info:
                JobStore(database).status_counts()
            assert info.value.code == DATABASE_UNAVAILABLE
        finally:
            database.close()


def test_migrations_are_numbered_once(tmp_path):
    assert [m.version for m in discover()] == sorted({m.version for m in discover()})
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError):
        discover(tmp_path)
    (tmp_path / "0001_b.sql").rename(tmp_path / "one.sql")
    with pytest.raises(ValueError):
        discover(tmp_path)


def test_services_are_built_once_per_process():
    assert services() is services()
    built = build_services(services().settings, s3="s3", sqs="sqs")
    assert built.storage.s3() == "s3" and built.queue.sqs() == "sqs" and isinstance(built.store, JobStore)
