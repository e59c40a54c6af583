"""The error taxonomy the queue acts on, and the client errors the API answers with.

Every failure inside a job is either permanent (retrying cannot help: fail the job now and
consume the message) or transient (the world may change: put the job back and let SQS
redeliver with backoff). Which one a code is, and its HTTP status, is written once in
`chalicelib.vocabulary`; the classes here refuse a code that is not there or not of their kind.

`message` is what a client may read (job `error`, 502/503 bodies): a code's short sentence, never
an RPC URL's path, a database host, an account id or an address a name resolved to. `detail` is
for the logs only: the underlying exception and whatever else helps an operator.
"""
from __future__ import annotations

from chalicelib.vocabulary import ERROR_CODES


class JobError(Exception):
    """A failure while running a job (or a dependency failing in a request)."""

    permanent: bool = True
    code: str = ""  # a subclass may fix its code

    def __init__(self, message: str, code: str | None = None, detail: str | None = None) -> None:
        code = code or self.code
        known = ERROR_CODES.get(code)
        if known is None or known.permanent != self.permanent:
            kind = "permanent" if self.permanent else "transient"
            raise ValueError(f"{code!r} is not a {kind} error code of chalicelib.vocabulary")
        super().__init__(message)
        self.message = message
        self.code = code
        self.detail = detail

    def log_fields(self) -> dict[str, str]:
        """What the logs keep about this failure: the client's message and the detail."""
        fields = {"code": self.code, "error": self.message}
        if self.detail:
            fields["detail"] = self.detail
        return fields


class PermanentError(JobError):
    """Bad input or a fact that will not change: malformed manifest, no contract, no upload."""

    permanent = True


class TransientError(JobError):
    """Network trouble, timeouts, 5xx, throttling, RPC or database connection loss."""

    permanent = False


class ApiError(Exception):
    """A client mistake, answered as `{"error", "code", "field"?}` with the code's 4xx status."""

    def __init__(self, code: str, message: str, field: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status or ERROR_CODES[code].status or 400
        self.message = message
        self.code = code
        self.field = field

    def body(self) -> dict[str, str]:
        body = {"error": self.message, "code": self.code}
        if self.field:
            body["field"] = self.field
        return body
