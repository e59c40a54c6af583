"""The verification job: its record (`record`), and its store in PostgreSQL (`store`)."""
from chalicelib.jobs.record import Job, iso_utc, job_to_api, new_job_id, parse_job_id
from chalicelib.jobs.store import JobStore

__all__ = ["Job", "JobStore", "iso_utc", "job_to_api", "new_job_id", "parse_job_id"]
