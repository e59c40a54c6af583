"""Resumable multipart uploads for very large files: the part URLs, the list of received parts,
and the completion, which checks the client's part list against what S3 holds before joining it.

The client PUTs the parts straight to S3; this service never sees their bytes. A completed upload
takes the same path into the queue as a presigned POST that landed (`housekeeping.upload_arrived`),
so the S3 notification that follows it is a harmless repeat. An upload that is never completed is
aborted by the sweep once its job expired or was cancelled (and by the bucket's lifecycle rule
after a day, whatever happens here).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from chalice import Response
from chalice.app import Request

from chalicelib import housekeeping
from chalicelib.api import forms
from chalicelib.api.answers import answered, json_response
from chalicelib.errors import ApiError
from chalicelib.jobs import Job, new_job_id
from chalicelib.storage import NO_SUCH_UPLOAD, MultipartRefused, ReceivedPart, bare_etag, part_length, part_plan
from chalicelib.timefmt import iso8601
from chalicelib.vocabulary import (
    AWAITING_UPLOAD, FAILED, INVALID_STATE, NOT_FOUND, UPLOAD_EXPIRED, UPLOAD_MULTIPART, VALIDATION_ERROR,
)
from chalicelib.wiring import Services


def job_url(job_id: str) -> str:
    return f"/api/verification-jobs/{job_id}"


def complete_url(job_id: str) -> str:
    return f"{job_url(job_id)}/upload/complete"


def create_multipart_upload(services: Services, upload_request: forms.UploadRequest) -> Response:
    """Open the S3 multipart upload, record the job waiting for it, and sign a PUT URL per part."""
    settings, storage = services.settings, services.storage
    assert upload_request.size is not None  # forms requires it for a multipart upload
    part_size, part_count = part_plan(upload_request.size, settings.multipart_part_size_bytes)
    job_id = new_job_id()
    key = storage.object_key(job_id)
    upload_id = storage.start_multipart_upload(key, upload_request.content_type)
    urls = storage.presign_parts(key, upload_id, range(1, part_count + 1))
    expires_at = datetime.now(timezone.utc) + timedelta(seconds=settings.multipart_url_expiry_seconds)
    target = upload_request.target
    services.store.create_job(
        job_id=job_id, job_type=upload_request.job_type, status=AWAITING_UPLOAD,
        manifest_uri=target.manifest_uri, registry_address=target.registry_address, rpc_url=target.rpc_url,
        object_key=key, file_name=upload_request.file_name, content_type=upload_request.content_type,
        file_size=upload_request.size, upload_expires_at=expires_at,
        multipart_upload_id=upload_id, upload_part_size=part_size,
    )
    body = {
        "jobId": job_id, "status": AWAITING_UPLOAD, "pollUrl": job_url(job_id),
        "upload": {"method": UPLOAD_MULTIPART, "partSize": part_size,
                   "parts": [{"partNumber": n, "url": url} for n, url in urls.items()],
                   "completeUrl": complete_url(job_id), "maxBytes": settings.max_multipart_upload_bytes,
                   "expiresAt": iso8601(expires_at)},
    }
    return json_response(body, 201, location=body["pollUrl"])


def _open_upload(services: Services, job_id: str) -> Job:
    """The job, when it waits for a multipart upload that is still open; else the 4xx that says why."""
    job = services.store.get_job(job_id)
    if job is None:
        raise ApiError(NOT_FOUND, "Job not found")
    if job.status == FAILED and job.error_code == UPLOAD_EXPIRED:
        raise ApiError(UPLOAD_EXPIRED, "the upload expired and its parts were dropped; create a new upload")
    if job.status != AWAITING_UPLOAD:
        raise ApiError(INVALID_STATE, f"the job is {job.status}, not waiting for its upload; poll {job_url(job.id)}")
    if job.multipart_upload_id is None or job.upload_part_size is None or job.file_size is None:
        raise ApiError(INVALID_STATE, "this job's upload is a presigned POST, not a multipart upload")
    return job


def _received(services: Services, job: Job) -> list[ReceivedPart]:
    assert job.object_key and job.multipart_upload_id
    parts = services.storage.received_parts(job.object_key, job.multipart_upload_id)
    if parts is None:
        raise ApiError(UPLOAD_EXPIRED, "storage holds no such upload any more (aborted); create a new upload")
    return parts


@answered
def upload_status(services: Services, job_id: str) -> Response:
    """GET …/{jobId}/upload: the parts S3 holds, and fresh URLs for the ones still to send, so an
    interrupted client resumes where it stopped."""
    job = _open_upload(services, job_id)
    assert job.object_key and job.multipart_upload_id and job.file_size and job.upload_part_size
    size, part_size = job.file_size, job.upload_part_size
    _, part_count = part_plan(size, part_size)
    whole = {p.number: p for p in _received(services, job)
             if p.number <= part_count and p.size == part_length(p.number, size, part_size)}
    missing = [n for n in range(1, part_count + 1) if n not in whole]
    urls = services.storage.presign_parts(job.object_key, job.multipart_upload_id, missing)
    return json_response({
        "jobId": job.id, "status": job.status, "method": UPLOAD_MULTIPART, "size": size, "partSize": part_size,
        "parts": [{"partNumber": p.number, "etag": p.etag, "size": p.size} for p in whole.values()],
        "missing": [{"partNumber": n, "url": urls[n]} for n in missing],
        "completeUrl": complete_url(job.id), "expiresAt": iso8601(job.upload_expires_at),
    })


def first_mismatch(listed: list[tuple[int, str]], held: list[ReceivedPart], size: int, part_size: int) -> str | None:
    """What is wrong with the first part, in part-number order, where the client's list and what S3
    holds disagree; None when they agree on every part of a `size`-byte file."""
    _, part_count = part_plan(size, part_size)
    listed_etags, held_by_number = dict(listed), {p.number: p for p in held}
    for number in range(1, max(part_count, max(listed_etags)) + 1):
        part = held_by_number.get(number)
        if number > part_count:
            return f"part {number} is beyond the file's {part_count} parts of {part_size} bytes"
        if number not in listed_etags:
            return f"part {number} is missing from the list"
        if part is None:
            return f"part {number} was not received by storage; upload it, then complete again"
        if bare_etag(listed_etags[number]) != part.etag:
            return f"part {number}: the ETag does not match the part storage holds"
        if part.size != part_length(number, size, part_size):
            return (f"part {number} holds {part.size} bytes, not {part_length(number, size, part_size)}; "
                    "upload it again")
    return None


@answered
def complete_upload(services: Services, request: Request, job_id: str) -> Response:
    """POST …/{jobId}/upload/complete: check the part list against S3's, join the parts, queue the job.
    Repeating it after a success that the client did not hear is answered 409 `INVALID_STATE`
    (the job is queued already); when the join happened but the job was not moved on, it moves it on."""
    listed = forms.parse_completed_parts(request.raw_body)
    job = _open_upload(services, job_id)
    assert job.object_key and job.multipart_upload_id and job.file_size and job.upload_part_size
    key, storage = job.object_key, services.storage
    held = storage.received_parts(key, job.multipart_upload_id)
    if held is not None:
        mismatch = first_mismatch(listed, held, job.file_size, job.upload_part_size)
        if mismatch is not None:
            raise ApiError(VALIDATION_ERROR, f"parts: {mismatch}", "parts")
        try:
            storage.complete_multipart_upload(key, job.multipart_upload_id, listed)
        except MultipartRefused as exc:
            if exc.code != NO_SUCH_UPLOAD:
                raise ApiError(VALIDATION_ERROR, f"parts: storage refused the part list ({exc.code})", "parts") from exc
            held = None  # completed meanwhile by a concurrent call, or aborted: the object says which
    if held is None and not storage.object_exists(key):
        raise ApiError(UPLOAD_EXPIRED, "storage holds no such upload any more (aborted); create a new upload")
    services.store.forget_multipart_upload(job.id)
    housekeeping.upload_arrived(services, key, job.file_size)
    current = services.store.get_job(job.id)
    body: dict[str, Any] = {"jobId": job.id, "status": current.status if current else AWAITING_UPLOAD,
                            "message": "Upload complete; verification job queued", "pollUrl": job_url(job.id)}
    return json_response(body, 202, location=body["pollUrl"])
