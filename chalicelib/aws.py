"""boto3 clients, and the one rule for what their failures mean to the service.

boto3 reads AWS_ENDPOINT_URL itself, so the same code talks to AWS, moto or LocalStack.
boto3 itself (about 0.15 s to import) is loaded by the first client a process makes, not by
`import app`: the job-status routes, the hottest ones, need only the database.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import TransientError

CLIENT_OPTIONS = {"retries": {"max_attempts": 3, "mode": "standard"}, "connect_timeout": 5, "read_timeout": 30}
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class ClientNotMade(BotoCoreError):
    """boto3 could not make a client (a bad endpoint URL is a plain ValueError there): a
    botocore failure like the others, so every adapter answers it as its dependency down."""

    fmt = "could not make the {service} client: {error}"


class LazyClient:
    """A boto3 client made on first use (thread-safe once created), or the one given (tests).
    Made late so that a failure to make it (no region, bad endpoint) is a dependency failure
    of the request that needed it, answered in the contract's shape."""

    def __init__(self, service: str, client: Any = None, options: dict[str, Any] | None = None) -> None:
        self.service = service
        self.client = client
        self.options = {**CLIENT_OPTIONS, **(options or {})}  # botocore Config arguments

    def __call__(self) -> Any:
        if self.client is None:
            import boto3
            from botocore.config import Config

            try:
                self.client = boto3.session.Session().client(self.service, config=Config(**self.options))
            except BotoCoreError:  # no region, bad credentials profile, ...: already botocore's
                raise
            except ValueError as exc:  # a bad endpoint URL
                raise ClientNotMade(service=self.service, error=exc) from exc
        return self.client


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def unavailable_as(code: str, what: str) -> Iterator[None]:
    """Turn any AWS failure inside the block into TransientError(`code`): the dependency is
    down or refusing, which is a 503 in a request and a retry in a job."""
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise TransientError(f"could not {what}", code, detail=str(exc)) from exc
