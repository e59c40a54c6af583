"""The verification job: its record (`record`), and its store in PostgreSQL (`store`, with the
result cache's statements in `cache`, the rate limiter's in `ratelimit`, the operators' activity
report in `activity`)."""
from chalicelib.jobs.activity import FailureCount, MinuteActivity
from chalicelib.jobs.cache import CacheKey
from chalicelib.jobs.ratelimit import Window
from chalicelib.jobs.record import Job, history_row, iso_utc, job_to_api, new_job_id, parse_job_id
from chalicelib.jobs.store import JobStore

__all__ = ["CacheKey", "FailureCount", "Job", "JobStore", "MinuteActivity", "Window", "history_row", "iso_utc", "job_to_api",
           "new_job_id", "parse_job_id"]
