"""What each HTTP endpoint does: parse the request, do the work, shape the answer.

The order of effects on submission is what keeps jobs from getting lost: the upload goes to
S3 first, then the job row, then the message. A failed send leaves a `queued` row with no
`last_enqueued_at`, which the sweeper re-sends; the client already holds the job id.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chalice import Response
from chalice.app import Request

from chalicelib import housekeeping
from chalicelib.api import forms, multipart, queries
from chalicelib.api.answers import answered, json_response, require_api_key, verification_failed
from chalicelib.dispatch import enqueue_job
from chalicelib.errors import ApiError, JobError
from chalicelib.jobs import job_to_api, new_job_id
from chalicelib.queue import QueueDepth
from chalicelib.result_cache import cached_verification
from chalicelib.telemetry import logger
from chalicelib.timefmt import iso8601
from chalicelib.verification import sha256_stream
from chalicelib.vocabulary import (
    AWAITING_UPLOAD, CANCELLED, COMPLETED, FAILED, INTERNAL_ERROR, INVALID_STATE, NOT_FOUND, PROOF,
    QUEUE_NOT_CONFIGURED, QUEUED, UPLOAD_MISSING, UPLOAD_POST,
)
from chalicelib.wiring import Services, verification

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.json"


def poll_url(job_id: str) -> str:
    return f"/api/verification-jobs/{job_id}"


def _not_found() -> ApiError:
    return ApiError(NOT_FOUND, "Job not found")


def _verify_now(services: Services, job_type: str, submission: forms.Submission) -> dict[str, Any]:
    """Run a verification inside the request (sync endpoints, and the no-queue fallback)."""
    target, settings = submission.target, services.settings
    if submission.file is not None:
        file_hash, file_name = sha256_stream([submission.file.data]), submission.file.file_name
    else:
        file_hash, file_name = submission.content_hash, None
    rpc_url = target.rpc_url or settings.rpc_url

    def verify() -> dict[str, Any]:
        core = verification()
        if job_type == PROOF:
            return core.prove_hash(file_hash, file_name or "", target.manifest_uri, target.registry_address, rpc_url,
                                   settings)
        return core.verify_hash(file_hash, target.manifest_uri, target.registry_address, rpc_url, settings)

    try:
        return cached_verification(services.store, settings, job_type, file_hash, target.manifest_uri,
                                   target.registry_address, rpc_url, file_name, verify)
    except JobError as exc:
        raise verification_failed(exc) from exc


@answered
def verify_sync(services: Services, request: Request, job_type: str) -> Response:
    """POST /api/verify and /api/proof: the result in the answer."""
    submission = forms.parse_submission(services.settings, request.headers, request.raw_body, allow_hash=False)
    return json_response(_verify_now(services, job_type, submission))


@answered
def submit_job(services: Services, request: Request, job_type: str) -> Response:
    """Store, record, enqueue: 202 with the poll URL (200 with the result when there is no queue)."""
    submission = forms.parse_submission(services.settings, request.headers, request.raw_body)
    if not services.settings.queue_configured:
        return json_response({"mode": "sync", "result": _verify_now(services, job_type, submission)})
    job_id, target, upload, key = new_job_id(), submission.target, submission.file, None
    if upload is not None:
        key = services.storage.object_key(job_id, inline=True)
        services.storage.put_object(key, upload.data, upload.content_type)
    job = services.store.create_job(
        job_id=job_id, job_type=job_type, status=QUEUED, manifest_uri=target.manifest_uri,
        registry_address=target.registry_address, rpc_url=target.rpc_url,
        content_hash=submission.content_hash, object_key=key,
        file_name=upload.file_name if upload else None,
        content_type=upload.content_type if upload else None,
        file_size=len(upload.data) if upload else None,
    )
    enqueue_job(services, job)
    body = {"mode": "async", "jobId": job_id, "status": QUEUED,
            "message": "Verification job queued successfully", "pollUrl": poll_url(job_id)}
    return json_response(body, 202, location=body["pollUrl"])


@answered
def create_upload(services: Services, request: Request) -> Response:
    """A job waiting for its file, and the presigned POST that lets the client send it to S3 (or,
    for a very large file, the multipart upload of `api/multipart.py`)."""
    upload_request = forms.parse_upload_request(services.settings, request.raw_body)
    if upload_request.multipart:
        return multipart.create_multipart_upload(services, upload_request)
    job_id = new_job_id()
    key = services.storage.object_key(job_id)
    upload = services.storage.presign_upload(key, upload_request.content_type, upload_request.size)
    target = upload_request.target
    services.store.create_job(
        job_id=job_id, job_type=upload_request.job_type, status=AWAITING_UPLOAD,
        manifest_uri=target.manifest_uri, registry_address=target.registry_address, rpc_url=target.rpc_url,
        object_key=key, file_name=upload_request.file_name, content_type=upload_request.content_type,
        file_size=upload_request.size, upload_expires_at=upload.expires_at,
    )
    body = {
        "jobId": job_id, "status": AWAITING_UPLOAD, "pollUrl": poll_url(job_id),
        "upload": {"method": UPLOAD_POST, "url": upload.url, "fields": upload.fields,
                   "maxBytes": upload.max_bytes, "expiresAt": iso8601(upload.expires_at)},
    }
    return json_response(body, 201, location=body["pollUrl"])


@answered
def get_job(services: Services, job_id: str) -> Response:
    job = services.store.get_job(job_id)
    if job is None:
        raise _not_found()
    return json_response(job_to_api(job))


@answered
def list_jobs(services: Services, request: Request) -> Response:
    require_api_key(services.settings, request.headers)
    query = queries.parse_list_query(request.query_params)
    found = services.store.list_jobs(status=query.status, job_type=query.job_type,
                                     limit=query.limit, offset=query.offset)
    return json_response({"jobs": [job_to_api(j) for j in found], "count": len(found),
                          "limit": query.limit, "offset": query.offset})


@answered
def stats(services: Services) -> Response:
    counts = services.store.status_counts()
    body: dict[str, Any] = {"available": False, "waiting": 0, "active": 0, "delayed": 0,
                            "completed": counts.get(COMPLETED, 0), "failed": counts.get(FAILED, 0),
                            "deadLetter": 0, "cancelled": counts.get(CANCELLED, 0),
                            "awaitingUpload": counts.get(AWAITING_UPLOAD, 0)}
    if services.settings.queue_configured:
        try:
            depth = services.queue.depth()
        except JobError as exc:  # SQS cannot be reached: "not available", per the contract
            logger.warning("queue stats unavailable", extra={"error": exc.message})
        else:
            delayed = services.store.delayed_counts()
            body.update(available=True, **_depth_fields(depth.total, sum(delayed.values())),
                        byType={job_type: _depth_fields(d, delayed[job_type]) for job_type, d in depth.by_type.items()})
            if depth.large is not None:  # its jobs' backoffs are counted in their type's `delayed`
                body["largeFiles"] = _depth_fields(depth.large, 0)
    return json_response(body)


def _depth_fields(depth: QueueDepth, delayed: int) -> dict[str, int]:
    """A queue's figures for the stats. `delayed` counts the jobs waiting out a retry backoff (from
    the database); SQS holds their messages as in flight, so `active` leaves them out."""
    return {"waiting": depth.waiting, "active": max(depth.active - delayed, 0), "delayed": delayed,
            "deadLetter": depth.dead_letter}


@answered
def activity(services: Services, request: Request) -> Response:
    """Jobs finished per minute and recent failures by error code (the console's chart and list)."""
    require_api_key(services.settings, request.headers)
    minutes = queries.parse_activity_minutes(request.query_params)
    store = services.store
    return json_response({
        "minutes": [{"minute": iso8601(row.minute), "completed": row.completed, "failed": row.failed}
                    for row in store.finished_by_minute(minutes)],
        "failuresByCode": [{"errorCode": row.error_code, "count": row.count}
                           for row in store.failures_by_code(minutes)],
    })


def _require_queue(services: Services) -> None:
    if not services.settings.queue_configured:
        raise ApiError(QUEUE_NOT_CONFIGURED,
                       "this deployment has no queue (synchronous mode); submit the file again instead")


@answered
def retry_job(services: Services, request: Request, job_id: str) -> Response:
    """Re-enqueue a failed job whose input still exists."""
    require_api_key(services.settings, request.headers)
    _require_queue(services)
    job = services.store.get_job(job_id)
    if job is None:
        raise _not_found()
    if job.status != FAILED:
        raise ApiError(INVALID_STATE, f"only failed jobs can be retried; this one is {job.status}")
    if job.object_key and not services.storage.object_exists(job.object_key):
        raise ApiError(UPLOAD_MISSING, "the job's file is no longer stored; submit it again")
    if job.object_key is None and job.content_hash is None:
        raise ApiError(UPLOAD_MISSING, "the job's upload never arrived; create a new upload")
    requeued = services.store.requeue_failed(job.id)
    if requeued is None:
        raise ApiError(INVALID_STATE, "the job changed state meanwhile; poll it and try again")
    enqueue_job(services, requeued)
    body = {"jobId": job.id, "status": QUEUED, "message": "Verification job re-queued", "pollUrl": poll_url(job.id)}
    return json_response(body, 202, location=body["pollUrl"])


@answered
def cancel_job(services: Services, job_id: str) -> Response:
    """Cancel an unfinished job and delete its file. Public like submission: the random job id
    is the capability. The job is cancelled first, so that no worker starts it or stores its
    result; a file whose delete fails now is deleted by the sweep (cancelled jobs' files go), and
    so is an open multipart upload whose abort fails now."""
    job = services.store.cancel_job(job_id)
    if job is None:
        current = services.store.get_job(job_id)
        if current is None:
            raise _not_found()
        raise ApiError(INVALID_STATE, f"only unfinished jobs can be cancelled; this one is {current.status}")
    if job.object_key:
        try:
            services.storage.delete_object(job.object_key)
        except JobError as exc:
            logger.warning("could not delete a cancelled job's file; the sweep will",
                           extra={"job_id": job.id, "error": exc.message})
        else:
            services.store.clear_object_key(job.id)
    housekeeping.abort_multipart_upload(services, job)
    logger.info("job cancelled", extra={"job_id": job.id})
    return json_response(job_to_api(job))


@answered
def redrive(services: Services, request: Request) -> Response:
    require_api_key(services.settings, request.headers)
    _require_queue(services)
    report = housekeeping.redrive_dead_letters(services)
    return json_response({"moved": len(report.moved), "remaining": report.remaining})


def _probe(name: str, check: Any) -> str:
    """"ok", or "error: <CODE>": the details (hosts, ARNs, account ids) go to the log only."""
    try:
        check()
        return "ok"
    except JobError as exc:  # a health check reports any failure rather than raising it
        logger.warning("health check failed", extra={"check": name, **exc.log_fields()})
        return f"error: {exc.code}"
    except Exception:
        logger.exception("health check failed", extra={"check": name})
        return f"error: {INTERNAL_ERROR}"


@answered
def health(services: Services) -> Response:
    """Each dependency by name, so operators know where to look; 503 when one is down."""
    checks = {"database": _probe("database", services.store.ping),
              "queue": _probe("queue", services.queue.check) if services.settings.queue_configured else "ok",
              "storage": _probe("storage", services.storage.check)}
    healthy = all(value == "ok" for value in checks.values())
    return json_response({"status": "ok" if healthy else "error", "checks": checks}, 200 if healthy else 503)


@answered
def openapi_document() -> Response:
    return json_response(json.loads(OPENAPI_PATH.read_text(encoding="utf-8")))
