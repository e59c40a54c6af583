"""The HTTP side of the client: submit a file inline, create a presigned upload, send the file
to storage, poll a job. Every failure surfaces as `ClientError` carrying what the server said,
so the command line can print it and exit with the error code.
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import requests

from internetid_cli.formdata import StreamingForm
from internetid_cli.multipart import FilePart

JOBS = "/api/verification-jobs"
FINISHED = ("completed", "failed", "cancelled")
RATE_LIMITED = 429  # the API's per-client limit: wait the Retry-After it gives, then go on
# Answers that mean "not now" rather than "no": worth retrying while polling.
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
LONGEST_RATE_LIMIT_WAIT = 60.0  # the API's windows last a minute


class ClientError(Exception):
    """Anything that stops a verification: an HTTP error answer, a network failure, a failed job."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 field: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.code, self.field = message, status, code, field
        self.retry_after = retry_after  # seconds, when the answer said when to try again

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status else None
        details = ", ".join(p for p in (where, self.code, f"field {self.field}" if self.field else None) if p)
        return f"{self.message} ({details})" if details else self.message


@dataclass(frozen=True)
class Target:
    """What the file is checked against: the same inputs for both upload paths."""

    registry_address: str
    manifest_uri: str
    rpc_url: str | None = None

    def form_fields(self) -> dict[str, str]:
        fields = {"registryAddress": self.registry_address, "manifestURI": self.manifest_uri}
        if self.rpc_url:
            fields["rpcUrl"] = self.rpc_url
        return fields


@dataclass(frozen=True)
class Submitted:
    """A job the API accepted, or (when the deployment has no queue) the result it already has."""

    job_id: str | None
    poll_url: str | None
    result: dict[str, Any] | None = None


def error_from_response(response: requests.Response, what: str) -> ClientError:
    """The API's `{"error", "code", "field"}` (or S3's XML error) as a ClientError."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        return ClientError(f"{what}: {body['error']}", status=response.status_code,
                           code=body.get("code"), field=body.get("field"), retry_after=_retry_after_header(response))
    text = response.text or ""
    code = re.search(r"<Code>([^<]*)</Code>", text)
    message = re.search(r"<Message>([^<]*)</Message>", text)
    if code or message:  # S3 answers in XML
        return ClientError(f"{what}: {message.group(1) if message else 'storage refused the upload'}",
                           status=response.status_code, code=code.group(1) if code else None)
    snippet = " ".join(text.split())[:300] or response.reason or "no details"
    return ClientError(f"{what}: {snippet}", status=response.status_code)


class ApiClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0,
                 session: requests.Session | None = None, log: Callable[[str], None] = lambda _: None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.log = log  # says when the client waits out the API's rate limit
        self.sleep = sleep
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = "internetid-cli"
        if api_key:
            self.session.headers["x-api-key"] = api_key

    def url(self, path: str) -> str:
        """Poll URLs come back relative to the API; storage URLs are absolute."""
        return urljoin(self.base_url + "/", path.lstrip("/")) if not re.match(r"^https?://", path) else path

    def rate_limit_wait(self, seconds: float | None, what: str) -> float:
        """How long to wait after a 429: the API's Retry-After (a window is at most a minute);
        says so on the log."""
        delay = min(seconds if seconds is not None else 1.0, LONGEST_RATE_LIMIT_WAIT)
        self.log(f"The API's rate limit is reached ({what}); waiting {delay:.0f} s as its Retry-After says")
        return delay

    def _send(self, method: str, url: str, what: str, attempts: int = 3, **kwargs: Any) -> requests.Response:
        """One request. A 429 (rate limited) is waited out as long as the API asks; a 503 (the
        server says "not now" before doing anything) is tried again up to `attempts` times."""
        kwargs.setdefault("timeout", self.timeout)
        attempt = 1
        while True:
            try:
                response = self.session.request(method, url, **kwargs)
            except requests.RequestException as exc:
                raise ClientError(f"{what}: cannot reach {url}: {exc}") from exc
            if response.status_code == RATE_LIMITED:
                self.sleep(self.rate_limit_wait(_retry_after_header(response), what))
                continue
            if response.status_code == 503 and attempt < attempts:
                self.sleep(retry_after(response, attempt))
                attempt += 1
                continue
            if response.status_code >= 400:
                raise error_from_response(response, what)
            return response

    def submit_inline(self, kind: str, path: str | os.PathLike[str], target: Target, content_type: str,
                      on_read: Callable[[int], None] | None = None) -> Submitted:
        """POST the file with the form to /verify or /proof (files up to the inline cap)."""
        form = StreamingForm(target.form_fields(), path, file_content_type=content_type, on_read=on_read)
        response = self._send("POST", self.url(f"{JOBS}/{kind}"), "submitting the file", data=form,
                              headers={"Content-Type": form.content_type})
        body = _json(response, "submitting the file")
        if body.get("mode") == "sync":
            return Submitted(job_id=None, poll_url=None, result=body.get("result"))
        return Submitted(job_id=body["jobId"], poll_url=body.get("pollUrl") or f"{JOBS}/{body['jobId']}")

    def create_upload(self, kind: str, target: Target, filename: str, content_type: str, size: int) -> dict[str, Any]:
        """A job awaiting its file, with the presigned POST to send the file straight to storage."""
        payload: dict[str, Any] = {"type": kind, **target.form_fields(), "filename": filename,
                                   "contentType": content_type, "size": size}
        response = self._send("POST", self.url(f"{JOBS}/uploads"), "creating the upload", json=payload)
        return _json(response, "creating the upload")

    def upload_file(self, upload: Mapping[str, Any], path: str | os.PathLike[str], content_type: str,
                    on_read: Callable[[int], None] | None = None,
                    on_restart: Callable[[], None] | None = None, attempts: int = 3) -> None:
        """POST the file to the presigned URL, `fields` first and `file` last, streamed from disk.

        A broken connection or a 5xx from storage is retried from the start (the presigned POST
        stays valid until it expires); a 4xx is final (policy refused, expired, too large).
        """
        fields = {str(k): str(v) for k, v in (upload.get("fields") or {}).items()}
        url = upload["url"]
        for attempt in range(1, attempts + 1):
            form = StreamingForm(fields, path, file_content_type=content_type, on_read=on_read)
            try:
                response = self.session.post(url, data=form, headers={"Content-Type": form.content_type},
                                             timeout=(self.timeout, max(self.timeout, 300.0)))
            except requests.RequestException as exc:
                if attempt == attempts:
                    raise ClientError(f"uploading the file to storage: {exc}") from exc
            else:
                if response.status_code < 400:
                    return
                if response.status_code < 500 or attempt == attempts:
                    raise error_from_response(response, "uploading the file to storage")
            if on_restart:
                on_restart()
            time.sleep(min(2.0 ** attempt, 10.0))

    def upload_status(self, poll_url: str) -> dict[str, Any]:
        """The parts a multipart upload holds, and fresh URLs for the missing ones (to resume)."""
        response = self._send("GET", self.url(f"{poll_url}/upload"), "reading the upload")
        return _json(response, "reading the upload")

    def put_part(self, url: str, part: FilePart, attempts: int = 3) -> str:
        """PUT one part to its presigned URL, streamed from the file; the ETag storage answers. A
        broken connection or a 5xx is retried from the part's first byte (a part may be sent again
        freely); a 4xx is final."""
        for attempt in range(1, attempts + 1):
            part.rewind()
            try:
                response = self.session.put(url, data=part, timeout=(self.timeout, max(self.timeout, 300.0)))
            except requests.RequestException as exc:
                if attempt == attempts:
                    raise ClientError(f"uploading a part to storage: {exc}") from exc
            else:
                if response.status_code < 400 and response.headers.get("ETag"):
                    return response.headers["ETag"]
                if response.status_code < 500 or attempt == attempts:
                    raise error_from_response(response, "uploading a part to storage")
            time.sleep(min(2.0 ** attempt, 10.0))
        raise AssertionError("unreachable")

    def complete_upload(self, complete_url: str, etags: Mapping[int, str]) -> dict[str, Any]:
        """POST the part list; the job, now queued."""
        parts = [{"partNumber": number, "etag": etag} for number, etag in sorted(etags.items())]
        response = self._send("POST", self.url(complete_url), "completing the upload", json={"parts": parts})
        return _json(response, "completing the upload")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Cancel an unfinished job; the job as the API answers it (now `cancelled`)."""
        response = self._send("POST", self.url(f"{JOBS}/{job_id}/cancel"), "cancelling the job")
        return _json(response, "cancelling the job")

    def get_job(self, poll_url: str) -> dict[str, Any]:
        try:
            response = self.session.get(self.url(poll_url), timeout=self.timeout)
        except requests.RequestException as exc:
            raise ClientError(f"reading the job: cannot reach {self.url(poll_url)}: {exc}") from exc
        if response.status_code >= 400:
            raise error_from_response(response, "reading the job")
        return _json(response, "reading the job")

    def wait_for_job(self, poll_url: str, on_update: Callable[[dict[str, Any]], None] | None = None,
                     interval: float = 0.5, timeout: float = 900.0, max_backoff: float = 15.0,
                     sleep: Callable[[float], None] = time.sleep,
                     clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
        """Poll until the job is completed, failed or cancelled. The rate limit is waited out for
        its Retry-After; 5xx and network trouble with exponential backoff (the job keeps running
        meanwhile); another 4xx is final."""
        deadline = clock() + timeout
        failures = 0
        while True:
            try:
                job = self.get_job(poll_url)
            except ClientError as exc:
                last_error: ClientError | None = exc
                if exc.status == RATE_LIMITED:
                    sleep(min(self.rate_limit_wait(exc.retry_after, "polling the job"), max(0.0, deadline - clock())))
                    if clock() < deadline:
                        continue
                elif exc.status is not None and exc.status not in RETRYABLE_STATUSES:
                    raise
                failures += 1
            else:
                failures, last_error = 0, None
                if on_update:
                    on_update(job)
                if job.get("status") in FINISHED:
                    return job
            if clock() >= deadline:
                reason = f"; last error: {last_error}" if last_error else ""
                raise ClientError(f"the job did not finish within {timeout:.0f}s (poll {self.url(poll_url)}){reason}")
            delay = interval if failures == 0 else min(interval * 2.0 ** failures, max_backoff)
            sleep(max(0.0, min(delay, deadline - clock())))


def _retry_after_header(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


def retry_after(response: requests.Response, attempt: int) -> float:
    """The server's Retry-After when it gives one in seconds, else exponential backoff."""
    given = _retry_after_header(response)
    if given is not None:
        return min(given, 30.0)
    return min(0.5 * 2.0 ** attempt, 10.0)


def _json(response: requests.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise ClientError(f"{what}: the answer is not JSON", status=response.status_code) from exc
    if not isinstance(body, dict):
        raise ClientError(f"{what}: the answer is not a JSON object", status=response.status_code)
    return body
