"""An in-memory job store with the JobStore's methods and transition rules, for unit tests of
the rooms around it. The SQL itself is tested on real PostgreSQL in
tests/integration/test_jobs_db.py; this fake does not model concurrency or retention by the clock
beyond what those unit tests set up, and knows nothing of the history table but a list, nor of the result cache and the rate limit's windows but dicts."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import fields, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from chalicelib.errors import TransientError
from chalicelib.jobs import CacheKey, FailureCount, Job, MinuteActivity, Window, new_job_id, parse_job_id
from chalicelib.vocabulary import (
    AWAITING_UPLOAD, CANCELLED, COMPLETED, DATABASE_UNAVAILABLE, FAILED, FINISHED_STATUSES, JOB_STATUSES,
    JOB_TYPES, PROCESSING, QUEUED, UNFINISHED_STATUSES, UPLOAD_EXPIRED,
)


def now() -> datetime:
    return datetime.now(timezone.utc)


class FakeStore:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.history: list[dict[str, Any]] = []
        self.cache: dict[CacheKey, tuple[dict[str, Any], datetime]] = {}  # key -> (result, checked at)
        self.windows: dict[tuple[str, datetime], int] = {}  # (client, minute) -> requests
        self.down = False  # every call raises DATABASE_UNAVAILABLE, as an outage would
        self.leases: dict[str, tuple[str | None, datetime]] = {}  # job id -> (token, expires at)
        self.retry_at: dict[str, datetime] = {}  # job id -> when its retry backoff ends

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if name.startswith("_") or name in ("jobs", "history", "cache", "windows", "down", "put", "leases", "retry_at") \
                or not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            if object.__getattribute__(self, "down"):
                raise TransientError("Database unavailable: connection refused", DATABASE_UNAVAILABLE)
            return value(*args, **kwargs)
        return call

    def put(self, job: Job, **changes: Any) -> Job:
        self.jobs[job.id] = replace(job, **{"updated_at": now(), **changes})
        return self.jobs[job.id]

    def _when(self, job_id: Any, statuses: Iterable[str]) -> Job | None:
        job = self.jobs.get(parse_job_id(job_id) or "")
        return job if job is not None and job.status in tuple(statuses) else None

    def ping(self) -> None:
        pass

    def create_job(self, *, job_type: str, status: str, job_id: str | None = None, **values: Any) -> Job:
        blank = {f.name: None for f in fields(Job)}
        job = Job(**{**blank, **values, "id": job_id or new_job_id(), "type": job_type, "status": status,
                     "progress": 0, "retry_count": 0, "attempts": 0, "created_at": now(), "updated_at": now()})
        return self.put(job)

    def get_job(self, job_id: Any) -> Job | None:
        return self.jobs.get(parse_job_id(job_id) or "")

    def list_jobs(self, status=None, job_type=None, limit=50, offset=0) -> list[Job]:
        found = [j for j in self.jobs.values() if status in (None, j.status) and job_type in (None, j.type)]
        return sorted(found, key=lambda j: (j.created_at, j.id), reverse=True)[offset:offset + limit]

    def status_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(JOB_STATUSES, 0)
        for job in self.jobs.values():
            counts[job.status] += 1
        return counts

    def mark_enqueued(self, job_id: str) -> bool:
        job = self._when(job_id, (QUEUED, PROCESSING))
        return job is not None and bool(self.put(job, last_enqueued_at=now()))

    def mark_upload_received(self, job_id: str, object_size: int | None = None) -> Job | None:
        job = self.get_job(job_id)
        if job is None or not (job.status == AWAITING_UPLOAD or (job.status == FAILED and job.error_code == UPLOAD_EXPIRED)):
            return None
        return self.put(job, status=QUEUED, file_size=object_size or job.file_size, error=None,
                        error_code=None, completed_at=None)

    def start_attempt(self, job_id: str, lease_token: str | None = None, lease_seconds: float = 0.0) -> Job | None:
        job = self._when(job_id, (QUEUED, PROCESSING))
        if job is None or self._lease_live(job.id):
            return None
        self.leases[job.id] = (lease_token, now() + timedelta(seconds=lease_seconds))
        self.retry_at.pop(job.id, None)
        return self.put(job, status=PROCESSING, attempts=job.attempts + 1, started_at=job.started_at or now())

    def _lease_live(self, job_id: str) -> bool:
        return job_id in self.leases and self.leases[job_id][1] > now()

    def _end_attempt(self, job_id: str) -> None:
        self.leases.pop(job_id, None)
        self.retry_at.pop(job_id, None)

    def renew_lease(self, job_id: str, lease_token: str, lease_seconds: float, progress: int = 0,
                    content_hash: str | None = None) -> bool:
        job = self._when(job_id, (PROCESSING,))
        if job is None or self.leases.get(job.id, (None,))[0] != lease_token:
            return False
        self.leases[job.id] = (lease_token, now() + timedelta(seconds=lease_seconds))
        self.put(job, progress=max(job.progress, min(int(progress), 99)), content_hash=content_hash or job.content_hash)
        return True

    def lease_holder(self, job_id: str) -> Job | None:
        job = self._when(job_id, (PROCESSING,))
        return job if job is not None and self._lease_live(job.id) else None

    def delayed_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(JOB_TYPES, 0)
        for job_id, until in self.retry_at.items():
            job = self.jobs.get(job_id)
            if job is not None and job.status == QUEUED and until > now():
                counts[job.type] += 1
        return counts

    def set_progress(self, job_id: str, progress: int) -> bool:
        job = self._when(job_id, (PROCESSING,))
        return job is not None and job.progress < progress and bool(self.put(job, progress=progress))

    def complete_job(self, job_id: str, result: dict, history: dict, cache_key: CacheKey | None = None) -> bool:
        job = self._when(job_id, (QUEUED, PROCESSING, FAILED))
        if job is None:
            return False
        self.put(job, status=COMPLETED, progress=100, result=result, error=None, error_code=None, completed_at=now(),
                 content_hash=job.content_hash or history.get("file_hash"))
        self._end_attempt(job.id)
        self.history.append({"job_id": job.id, **history})
        if cache_key is not None:
            self.store_result(cache_key, result)
        return True

    def schedule_retry(self, job_id: str, error: str, code: str, retry_in_seconds: float = 0.0,
                       lease_token: str | None = None) -> bool:
        job = self._when(job_id, (PROCESSING,))
        if job is None or (lease_token is not None and self.leases.get(job.id, (None,))[0] != lease_token):
            return False
        self._end_attempt(job.id)
        self.retry_at[job.id] = now() + timedelta(seconds=retry_in_seconds)
        return bool(self.put(job, status=QUEUED, retry_count=job.retry_count + 1, error=error, error_code=code))

    def fail_job(self, job_id: str, error: str, code: str) -> bool:
        job = self._when(job_id, UNFINISHED_STATUSES)
        if job is None:
            return False
        self._end_attempt(job.id)
        return bool(self.put(job, status=FAILED, error=error, error_code=code, completed_at=now()))

    def cancel_job(self, job_id: str) -> Job | None:
        job = self._when(job_id, UNFINISHED_STATUSES)
        if job is None:
            return None
        self._end_attempt(job.id)
        return self.put(job, status=CANCELLED, completed_at=now())

    def _requeue(self, job: Job, enqueued: datetime | None) -> Job:
        self._end_attempt(job.id)
        return self.put(job, status=QUEUED, progress=0, error=None, error_code=None, started_at=None,
                        completed_at=None, attempts=0, last_enqueued_at=enqueued)

    def requeue_failed(self, job_id: str) -> Job | None:
        job = self._when(job_id, (FAILED,))
        return job and self._requeue(job, None)

    def requeue_dead_lettered(self, job_ids: Iterable[str]) -> list[str]:
        found = {j.id: j for j in (self._when(i, (FAILED,)) for i in job_ids) if j is not None}
        return [self._requeue(job, now()).id for job in found.values()]

    def jobs_to_resend(self, older_than_seconds: float, limit: int = 100) -> list[Job]:
        cutoff = now() - timedelta(seconds=older_than_seconds)
        return [j for j in self.jobs.values()
                if j.status == QUEUED and j.last_enqueued_at is None and j.updated_at < cutoff][:limit]

    def expire_uploads(self, now_: datetime | None = None, limit: int = 1000) -> list[Job]:
        late = [j for j in self.jobs.values()
                if j.status == AWAITING_UPLOAD and j.upload_expires_at and j.upload_expires_at < (now_ or now())]
        return [self.put(j, status=FAILED, error_code=UPLOAD_EXPIRED, error="expired", completed_at=now())
                for j in late[:limit]]

    def finished_jobs_with_objects(self, completed_older_than_seconds: float, failed_older_than_seconds: float,
                                   limit: int = 100) -> list[Job]:
        def old(job: Job) -> bool:
            age = {COMPLETED: completed_older_than_seconds, CANCELLED: completed_older_than_seconds,
                   FAILED: failed_older_than_seconds}[job.status]
            return job.completed_at < now() - timedelta(seconds=age)
        return [j for j in self.jobs.values() if j.object_key and j.status in FINISHED_STATUSES and old(j)][:limit]

    def clear_object_key(self, job_id: str) -> bool:
        job = self._when(job_id, FINISHED_STATUSES)
        return job is not None and job.object_key is not None and bool(self.put(job, object_key=None))

    def jobs_with_open_multipart_uploads(self, limit: int = 100) -> list[Job]:
        return [j for j in self.jobs.values() if j.multipart_upload_id and j.status in FINISHED_STATUSES][:limit]

    def forget_multipart_upload(self, job_id: str) -> bool:
        job = self.get_job(job_id)
        return job is not None and job.multipart_upload_id is not None and bool(self.put(job, multipart_upload_id=None))

    def delete_old_jobs(self, completed_days: float, failed_days: float, limit: int = 10_000) -> int:
        def old(job: Job) -> bool:
            days = {COMPLETED: completed_days, CANCELLED: completed_days, FAILED: failed_days}.get(job.status)
            return days is not None and job.object_key is None and job.multipart_upload_id is None \
                and job.completed_at < now() - timedelta(days=days)
        gone = [j.id for j in self.jobs.values() if old(j)][:limit]
        for job_id in gone:
            del self.jobs[job_id]
        return len(gone)

    def count_request(self, client: str) -> Window:
        moment = now()
        start = moment.replace(second=0, microsecond=0)
        self.windows[(client, start)] = self.windows.get((client, start), 0) + 1
        return Window(self.windows[(client, start)], (start + timedelta(minutes=1) - moment).total_seconds())

    def delete_ended_windows(self, limit: int = 10_000) -> int:
        ended = [key for key in self.windows if key[1] < now().replace(second=0, microsecond=0)][:limit]
        for key in ended:
            del self.windows[key]
        return len(ended)

    def cached_result(self, key: CacheKey, max_age_seconds: float) -> dict[str, Any] | None:
        result, checked_at = self.cache.get(key, (None, None))
        fresh = checked_at is not None and checked_at > now() - timedelta(seconds=max_age_seconds)
        return json.loads(json.dumps(result)) if fresh else None  # a copy, as a database row is

    def store_result(self, key: CacheKey, result: dict[str, Any]) -> None:
        self.cache[key] = (json.loads(json.dumps(result)), now())

    def delete_stale_results(self, max_age_seconds: float, limit: int = 10_000) -> int:
        stale = [key for key, (_, checked_at) in self.cache.items()
                 if checked_at <= now() - timedelta(seconds=max_age_seconds)][:limit]
        for key in stale:
            del self.cache[key]
        return len(stale)

    def _window_start(self, minutes: int) -> datetime:
        return now().replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)

    def finished_by_minute(self, minutes: int) -> list[MinuteActivity]:
        start = self._window_start(minutes)
        counts = {start + timedelta(minutes=n): Counter() for n in range(minutes)}
        for job in self.jobs.values():
            minute = job.completed_at and job.completed_at.replace(second=0, microsecond=0)
            if job.status in FINISHED_STATUSES and minute in counts:
                counts[minute][job.status] += 1
        return [MinuteActivity(minute, seen[COMPLETED], seen[FAILED]) for minute, seen in counts.items()]

    def failures_by_code(self, minutes: int) -> list[FailureCount]:
        start = self._window_start(minutes)
        counts = Counter(j.error_code for j in self.jobs.values() if j.status == FAILED and j.completed_at >= start)
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0] is None, item[0] or ""))
        return [FailureCount(code, n) for code, n in ordered]
