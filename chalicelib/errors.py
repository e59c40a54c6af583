"""The error taxonomy the queue acts on, and the client errors the API answers with.

Every failure inside a job is either permanent (retrying cannot help: fail the job now and
consume the message) or transient (the world may change: put the job back and let SQS
redeliver with backoff). Code that raises picks the class; the pipeline only reads `permanent`.
"""
from __future__ import annotations


class JobError(Exception):
    """A failure while running a job. `code` is a stable MACHINE_CODE for clients."""

    permanent: bool = True
    code: str = "JOB_FAILED"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class PermanentError(JobError):
    """Bad input or a fact that will not change: malformed manifest, no contract, no upload."""

    permanent = True
    code = "PERMANENT_ERROR"


class TransientError(JobError):
    """Network trouble, timeouts, 5xx, throttling, RPC or database connection loss."""

    permanent = False
    code = "TRANSIENT_ERROR"


class ApiError(Exception):
    """A client mistake, answered as `{"error", "code", "field"?}` with a 4xx status."""

    def __init__(self, status: int, message: str, code: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.field = field

    def body(self) -> dict[str, str]:
        body = {"error": self.message, "code": self.code}
        if self.field:
            body["field"] = self.field
        return body
