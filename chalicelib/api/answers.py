"""How the HTTP layer answers: JSON bodies, and the contract's error shapes for every failure."""
from __future__ import annotations

import hmac
from functools import wraps
from typing import Any, Callable, Mapping

from chalice import Response

from chalicelib.config import Settings
from chalicelib.errors import ApiError, JobError
from chalicelib.telemetry import logger
from chalicelib.vocabulary import ERROR_CODES, FAILED_VERIFICATION_STATUS, INTERNAL_ERROR, UNAUTHORIZED

JSON = {"Content-Type": "application/json"}
RETRY_AFTER_SECONDS = 5


def json_response(body: Any, status: int = 200, location: str | None = None) -> Response:
    headers = {**JSON, "Location": location} if location else JSON
    return Response(body, status_code=status, headers=headers)


def answered(endpoint: Callable[..., Response]) -> Callable[..., Response]:
    """Answer errors in the contract's JSON: a client mistake is a 4xx, a dependency that is
    down (database, storage, queue) a 503 that says when to try again, and a bug a logged 500."""
    @wraps(endpoint)
    def wrapped(*args: Any, **kwargs: Any) -> Response:
        try:
            return endpoint(*args, **kwargs)
        except ApiError as exc:
            return json_response(exc.body(), exc.status)
        except JobError as exc:
            logger.warning("dependency failure in a request", extra=exc.log_fields())
            body = {"error": f"{exc.message}; try again shortly", "code": exc.code}
            return Response(body, status_code=503, headers={**JSON, "Retry-After": str(RETRY_AFTER_SECONDS)})
        except Exception:
            logger.exception("unhandled error in a request")
            body = {"error": "internal error; it has been logged", "code": INTERNAL_ERROR}
            return json_response(body, ERROR_CODES[INTERNAL_ERROR].status or 500)
    return wrapped


def verification_failed(exc: JobError) -> ApiError:
    """A verification that failed inside a request: the client's input (422) or a dependency (502).
    The client reads the error's message; its detail goes to the log."""
    logger.info("verification failed in a request", extra=exc.log_fields())
    message = exc.message if exc.permanent else f"{exc.message}; try again shortly"
    return ApiError(exc.code, message, status=FAILED_VERIFICATION_STATUS[exc.permanent])


def has_api_key(settings: Settings, headers: Mapping[str, str]) -> bool:
    """The deployment has a key and `x-api-key` matches it (constant-time compare)."""
    given = headers.get("x-api-key") or ""
    return bool(settings.api_key) and hmac.compare_digest(given.encode(), settings.api_key.encode())


def require_api_key(settings: Settings, headers: Mapping[str, str]) -> None:
    """401 unless the deployment has no key or the request holds it."""
    if settings.api_key and not has_api_key(settings, headers):
        raise ApiError(UNAUTHORIZED, "a valid x-api-key header is required for this endpoint")
