"""The job record: one row of `verification_jobs`, its id rule, its shape in the HTTP API, and the
history row a finished job leaves."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Mapping

from chalicelib.timefmt import iso8601


@dataclass(frozen=True)
class Job:
    """One row of verification_jobs."""

    id: str
    type: str
    status: str
    progress: int
    content_hash: str | None
    manifest_uri: str
    registry_address: str
    rpc_url: str | None
    result: dict[str, Any] | None
    error: str | None
    error_code: str | None
    retry_count: int
    attempts: int
    object_key: str | None
    file_name: str | None
    content_type: str | None
    file_size: int | None
    upload_expires_at: datetime | None
    multipart_upload_id: str | None  # S3's UploadId while a multipart upload is open
    upload_part_size: int | None  # the part size its part URLs were signed for
    last_enqueued_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Job":
        values = {name: row[name] for name in FIELDS}
        values["id"] = str(values["id"])
        return cls(**values)


FIELDS = tuple(f.name for f in fields(Job))


def iso_utc(value: datetime | None) -> str | None:
    """`2025-01-31T12:00:00.123Z` (UTC, milliseconds), or None for a time not reached yet."""
    return None if value is None else iso8601(value)


def job_to_api(job: Job) -> dict[str, Any]:
    """The job object of the HTTP API (see API.md), camelCase, timestamps in UTC."""
    return {
        "id": job.id,
        "jobId": job.id,
        "type": job.type,
        "status": job.status,
        "progress": job.progress,
        "contentHash": job.content_hash,
        "manifestUri": job.manifest_uri,
        "registryAddress": job.registry_address,
        "rpcUrl": job.rpc_url,
        "result": job.result,
        "error": job.error,
        "errorCode": job.error_code,
        "retryCount": job.retry_count,
        "createdAt": iso_utc(job.created_at),
        "startedAt": iso_utc(job.started_at),
        "completedAt": iso_utc(job.completed_at),
        "updatedAt": iso_utc(job.updated_at),
        "fileName": job.file_name,  # beyond the original: the client's file name, as data
    }


def parse_job_id(job_id: object) -> str | None:
    """The canonical form of a UUID job id, or None when it is not one."""
    if isinstance(job_id, uuid.UUID):
        return str(job_id)
    if not isinstance(job_id, str):
        return None
    try:
        return str(uuid.UUID(job_id.strip()))
    except ValueError:
        return None


def new_job_id() -> str:
    """A random (version 4) UUID, for callers that need the id before the row exists."""
    return str(uuid.uuid4())


def history_row(job: Job, result: dict[str, Any]) -> dict[str, Any]:
    """The verifications-table row for a finished job, from a verify result or a proof."""
    if "verification" in result:  # a proof
        facts = {"file_hash": result["content"]["hash"], "recovered": result["signature"]["recovered"],
                 "status": result["verification"]["status"], "chain_id": result["network"]["chainId"]}
    else:
        facts = {"file_hash": result["fileHash"], "recovered": result["recovered"],
                 "status": result["status"], "chain_id": result["evidence"]["chainId"]}
    return {**facts, "creator": result["onchain"]["creator"],
            "manifest_uri": job.manifest_uri, "registry_address": job.registry_address}
