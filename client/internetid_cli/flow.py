"""One verification from a file on disk to a finished job, shared by `verify` and `demo`.

Small files go inline with the form; larger ones get a presigned POST and go straight to
storage, whose ObjectCreated event queues the job; very large ones (the API decides) go as a
resumable multipart upload. Either way the job is then polled.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from internetid_cli.api import ApiClient, ClientError, Target
from internetid_cli.config import ConfigError, content_type_for, uses_inline
from internetid_cli.multipart import Fingerprint, ResumeState, part_length, send_parts
from internetid_cli.progress import JobBar, UploadBar

MULTIPART = "MULTIPART"  # the upload method the API answers for very large files


@dataclass(frozen=True)
class Outcome:
    """Where the run ended: a finished job (or a sync result), or a job left to run (--no-wait)."""

    kind: str
    path: str  # "inline", "presigned" or "multipart"
    job_id: str | None
    poll_url: str | None
    job: dict[str, Any] | None = None
    result: dict[str, Any] | None = None


class WaitInterrupted(Exception):
    """Ctrl-C while waiting for a job: the job runs on without us; say how to find it again."""

    def __init__(self, job_id: str, poll_url: str) -> None:
        super().__init__(f"interrupted while waiting for job {job_id}")
        self.job_id, self.poll_url = job_id, poll_url


def _to_storage(client: ApiClient, kind: str, file: Path, target: Target, size: int, content_type: str,
                quiet: bool, state: ResumeState | None, log: Callable[[str], None]) -> tuple[str, str, str]:
    """Send the file straight to storage; (job id, poll URL, route)."""
    state = state or ResumeState(None)
    fingerprint = Fingerprint.of(file)
    resumed = _resumable(client, state, file, fingerprint, log)
    if resumed is not None:
        job_id, poll_url, status = resumed
        return job_id, poll_url, _send_multipart(client, file, status, status["missing"], size, quiet, state, log,
                                                 {p["partNumber"]: p["etag"] for p in status["parts"]})
    log(f"Creating a presigned upload for {file.name} ({size} bytes, {content_type})")
    created = client.create_upload(kind, target, file.name, content_type, size)
    job_id, poll_url, upload = created["jobId"], created["pollUrl"], created["upload"]
    max_bytes = upload.get("maxBytes")
    if isinstance(max_bytes, int) and size > max_bytes:
        raise ClientError(f"{file} is {size} bytes; the API accepts at most {max_bytes}", code="PAYLOAD_TOO_LARGE")
    if upload.get("method") == MULTIPART:
        state.remember(client.base_url, file, fingerprint, job_id)
        log(f"Job {job_id} awaiting upload; sending {len(upload['parts'])} parts to storage")
        return job_id, poll_url, _send_multipart(client, file, upload, upload["parts"],
                                                 size, quiet, state, log, {})
    log(f"Job {job_id} awaiting upload; sending the file to storage")
    with UploadBar(size, "upload", quiet) as bar:
        client.upload_file(upload, file, content_type, on_read=bar.callback, on_restart=bar.restart)
    log("Upload done; the storage event queues the job")
    return job_id, poll_url, "presigned"


def _resumable(client: ApiClient, state: ResumeState, file: Path, fingerprint: Fingerprint,
               log: Callable[[str], None]) -> tuple[str, str, dict[str, Any]] | None:
    """(job id, poll URL, upload status) of an unfinished multipart upload of this unchanged file."""
    job_id = state.job_for(client.base_url, file, fingerprint)
    if job_id is None:
        return None
    poll_url = f"/api/verification-jobs/{job_id}"
    try:
        status = client.upload_status(poll_url)
    except ClientError as exc:
        if exc.status is None or exc.status >= 500:
            raise
        log(f"The earlier upload of job {job_id} cannot be resumed ({exc}); starting over")
        state.forget(client.base_url, file)
        return None
    log(f"Resuming job {job_id}: {len(status['parts'])} parts in storage, {len(status['missing'])} to send")
    return job_id, poll_url, status


def _send_multipart(client: ApiClient, file: Path, upload: dict[str, Any], to_send: list[dict[str, Any]], size: int,
                    quiet: bool, state: ResumeState, log: Callable[[str], None], etags: dict[int, str]) -> str:
    """Send the parts still missing in parallel under one progress bar, then complete the upload."""
    part_size = int(upload["partSize"])
    sent_before = size - sum(part_length(int(p["partNumber"]), size, part_size) for p in to_send)
    with UploadBar(size, "upload", quiet) as bar:
        bar.callback(sent_before)
        etags = {**etags, **send_parts(client.put_part, file, to_send, part_size, bar.callback)}
    try:
        client.complete_upload(upload["completeUrl"], etags)
    except ClientError as exc:
        if exc.code != "INVALID_STATE":  # INVALID_STATE: completed already (an answer we did not hear)
            raise
    state.forget(client.base_url, file)
    log("Upload complete; the job is queued")
    return "multipart"


def check_file(path: Path) -> int:
    """The file's size, after making sure it is a non-empty regular file."""
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    if not path.is_file():
        raise ConfigError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise ConfigError(f"{path}: the file is empty; there is nothing to verify")
    return size


def run(client: ApiClient, kind: str, file: Path, target: Target, *, wait: bool = True, quiet: bool = False,
        inline_limit: int, timeout: float = 900.0, log: Callable[[str], None] = lambda _: None,
        state: ResumeState | None = None) -> Outcome:
    """Send the file (inline, presigned POST or multipart, resuming an interrupted multipart
    upload of the same file remembered in `state`), then wait for its job unless told not to."""
    size = check_file(file)
    content_type = content_type_for(file.name)
    if uses_inline(size, inline_limit):
        log(f"Submitting {file.name} ({size} bytes, {content_type}) inline to {client.url('/api/verification-jobs/' + kind)}")
        with UploadBar(size, "upload", quiet) as bar:
            submitted = client.submit_inline(kind, file, target, content_type, on_read=bar.callback)
        if submitted.result is not None:
            log("The API verified the file in the request (no queue configured)")
            return Outcome(kind, "inline", None, None, result=submitted.result)
        job_id, poll_url = submitted.job_id, submitted.poll_url
        log(f"Job {job_id} queued")
        route = "inline"
    else:
        job_id, poll_url, route = _to_storage(client, kind, file, target, size, content_type, quiet, state, log)
    if not wait:
        return Outcome(kind, route, job_id, poll_url)
    try:
        with JobBar(quiet) as bar:
            job = client.wait_for_job(poll_url, on_update=bar.update, timeout=timeout)
    except KeyboardInterrupt:
        raise WaitInterrupted(job_id, poll_url) from None
    if job.get("status") == "failed":
        code = job.get("errorCode")
        raise ClientError(f"job {job_id} failed: {job.get('error') or 'no reason given'}", code=code)
    if job.get("status") == "cancelled":
        raise ClientError(f"job {job_id} was cancelled before it finished")
    return Outcome(kind, route, job_id, poll_url, job=job, result=job.get("result"))
