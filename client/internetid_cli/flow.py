"""One verification from a file on disk to a finished job, shared by `verify` and `demo`.

Small files go inline with the form; larger ones get a presigned POST and go straight to
storage, whose ObjectCreated event queues the job. Either way the job is then polled.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from internetid_cli.api import ApiClient, ClientError, Target
from internetid_cli.config import ConfigError, content_type_for, uses_inline
from internetid_cli.progress import JobBar, UploadBar


@dataclass(frozen=True)
class Outcome:
    """Where the run ended: a finished job (or a sync result), or a job left to run (--no-wait)."""

    kind: str
    path: str  # "inline" or "presigned"
    job_id: str | None
    poll_url: str | None
    job: dict[str, Any] | None = None
    result: dict[str, Any] | None = None


class WaitInterrupted(Exception):
    """Ctrl-C while waiting for a job: the job runs on without us; say how to find it again."""

    def __init__(self, job_id: str, poll_url: str) -> None:
        super().__init__(f"interrupted while waiting for job {job_id}")
        self.job_id, self.poll_url = job_id, poll_url


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
        inline_limit: int, timeout: float = 900.0, log: Callable[[str], None] = lambda _: None) -> Outcome:
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
        log(f"Creating a presigned upload for {file.name} ({size} bytes, {content_type})")
        created = client.create_upload(kind, target, file.name, content_type, size)
        job_id, poll_url, upload = created["jobId"], created["pollUrl"], created["upload"]
        max_bytes = upload.get("maxBytes")
        if isinstance(max_bytes, int) and size > max_bytes:
            raise ClientError(f"{file} is {size} bytes; the API accepts at most {max_bytes}", code="PAYLOAD_TOO_LARGE")
        log(f"Job {job_id} awaiting upload; sending the file to storage")
        with UploadBar(size, "upload", quiet) as bar:
            client.upload_file(upload, file, content_type, on_read=bar.callback, on_restart=bar.restart)
        log("Upload done; the storage event queues the job")
        route = "presigned"
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
