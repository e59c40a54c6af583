"""What each HTTP endpoint does, once its input is validated: one function per endpoint.

The order of effects on submission is what keeps jobs from getting lost: the upload goes to
S3 first, then the job row, then the message. A failed send leaves a `queued` row with no
`last_enqueued_at`, which the sweeper re-sends; the client already holds the job id.
"""
from __future__ import annotations

from typing import Any

from chalicelib import jobs, queue, storage
from chalicelib.config import Settings
from chalicelib.errors import ApiError, JobError
from chalicelib.forms import ListQuery, Submission, UploadRequest
from chalicelib.telemetry import logger
from chalicelib.timefmt import iso8601
from chalicelib.verification import prove_hash, sha256_stream, verify_hash


def poll_url(job_id: str) -> str:
    return f"/api/verification-jobs/{job_id}"


def verify_now(settings: Settings, job_type: str, submission: Submission) -> dict[str, Any]:
    """Run a verification inside the request (sync endpoints, and the no-queue fallback)."""
    target = submission.target
    if submission.file is not None:
        file_hash = sha256_stream([submission.file.data])
        file_name = submission.file.file_name
    else:
        file_hash = submission.content_hash
        file_name = None
    rpc_url = target.rpc_url or settings.rpc_url
    try:
        if job_type == "proof":
            return prove_hash(file_hash, file_name or "", target.manifest_uri, target.registry_address, rpc_url, settings)
        return verify_hash(file_hash, target.manifest_uri, target.registry_address, rpc_url, settings)
    except JobError as exc:
        raise _job_error_to_api(exc) from exc


def _job_error_to_api(exc: JobError) -> ApiError:
    """A failed synchronous verification: the client's input (422) or a dependency (502)."""
    if exc.permanent:
        return ApiError(422, exc.message, exc.code)
    return ApiError(502, f"{exc.message}; try again shortly", exc.code)


def submit_job(settings: Settings, job_type: str, submission: Submission) -> tuple[int, dict[str, Any]]:
    """Store, record, enqueue. Returns (HTTP status, body)."""
    if not settings.queue_configured:
        return 200, {"mode": "sync", "result": verify_now(settings, job_type, submission)}
    job_id = jobs.new_job_id()
    target = submission.target
    upload = submission.file
    key = None
    if upload is not None:
        key = storage.object_key(settings, job_id, inline=True)
        storage.put_object(settings, key, upload.data, upload.content_type)
    jobs.create_job(
        job_id=job_id,
        job_type=job_type,
        status="queued",
        manifest_uri=target.manifest_uri,
        registry_address=target.registry_address,
        rpc_url=target.rpc_url,
        content_hash=submission.content_hash,
        object_key=key,
        file_name=upload.file_name if upload else None,
        content_type=upload.content_type if upload else None,
        file_size=len(upload.data) if upload else None,
    )
    queue.enqueue_job(settings, job_id)
    return 202, {
        "mode": "async",
        "jobId": job_id,
        "status": "queued",
        "message": "Verification job queued successfully",
        "pollUrl": poll_url(job_id),
    }


def create_upload(settings: Settings, request: UploadRequest) -> dict[str, Any]:
    """A job waiting for its file, and the presigned POST that lets the client send it to S3."""
    job_id = jobs.new_job_id()
    key = storage.object_key(settings, job_id)
    upload = storage.presign_upload(settings, key, request.content_type)
    target = request.target
    jobs.create_job(
        job_id=job_id,
        job_type=request.job_type,
        status="awaiting_upload",
        manifest_uri=target.manifest_uri,
        registry_address=target.registry_address,
        rpc_url=target.rpc_url,
        object_key=key,
        file_name=request.file_name,
        content_type=request.content_type,
        file_size=request.size,
        upload_expires_at=upload.expires_at,
    )
    return {
        "jobId": job_id,
        "status": "awaiting_upload",
        "pollUrl": poll_url(job_id),
        "upload": {
            "method": "POST",
            "url": upload.url,
            "fields": upload.fields,
            "maxBytes": upload.max_bytes,
            "expiresAt": iso8601(upload.expires_at),
        },
    }


def get_job(job_id: str) -> dict[str, Any] | None:
    job = jobs.get_job(job_id)
    return jobs.job_to_api(job) if job else None


def list_jobs(query: ListQuery) -> dict[str, Any]:
    found = jobs.list_jobs(status=query.status, job_type=query.job_type, limit=query.limit, offset=query.offset)
    return {"jobs": [jobs.job_to_api(j) for j in found], "count": len(found), "limit": query.limit, "offset": query.offset}


def stats(settings: Settings) -> dict[str, Any]:
    counts = jobs.status_counts()
    body: dict[str, Any] = {"available": False, "waiting": 0, "active": 0, "delayed": 0,
                            "completed": counts.get("completed", 0), "failed": counts.get("failed", 0),
                            "deadLetter": 0}
    if not settings.queue_configured:
        return body
    try:
        depth = queue.depth(settings)
    except Exception as exc:  # any failure to reach SQS means "not available", per the contract
        logger.warning("queue stats unavailable", extra={"error": str(exc)})
        return body
    body.update(available=True, waiting=depth.waiting, active=depth.active, delayed=depth.delayed,
                deadLetter=depth.dead_letter)
    return body


def _require_queue(settings: Settings) -> None:
    if not settings.queue_configured:
        raise ApiError(409, "this deployment has no queue (synchronous mode); submit the file again instead",
                       "QUEUE_NOT_CONFIGURED")


def retry_job(settings: Settings, job_id: str) -> dict[str, Any]:
    """Re-enqueue a failed job whose input still exists."""
    _require_queue(settings)
    job = jobs.get_job(job_id)
    if job is None:
        raise ApiError(404, "Job not found", "NOT_FOUND")
    if job.status != "failed":
        raise ApiError(409, f"only failed jobs can be retried; this one is {job.status}", "INVALID_STATE")
    if job.object_key and not storage.object_exists(settings, job.object_key):
        raise ApiError(409, "the job's file is no longer stored; submit it again", "UPLOAD_MISSING")
    if job.object_key is None and job.content_hash is None:
        raise ApiError(409, "the job's upload never arrived; create a new upload", "UPLOAD_MISSING")
    if jobs.requeue_failed(job_id) is None:
        raise ApiError(409, "the job changed state meanwhile; poll it and try again", "INVALID_STATE")
    queue.enqueue_job(settings, job_id)
    return {"jobId": job_id, "status": "queued", "message": "Verification job re-queued", "pollUrl": poll_url(job_id)}


def redrive(settings: Settings) -> dict[str, Any]:
    _require_queue(settings)
    moved = queue.redrive_dead_letters(settings, before_send=jobs.requeue_dead_lettered)
    return {"moved": len(moved)}
