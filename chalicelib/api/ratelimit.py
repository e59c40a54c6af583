"""The rate limit of the original's "moderate" tier: RATE_LIMIT_PER_MINUTE requests per client
IP and fixed one-minute window on the verification routes, 429 `RATE_LIMITED` with
`Retry-After` beyond it. The count lives in PostgreSQL (`chalicelib/jobs/ratelimit.py`), so it
holds across Lambda instances. Holders of the API key are exempt; health, the OpenAPI document
and the console are not counted.

What it does not do: sliding windows or bursts inside a minute (API Gateway's throttling is the
coarse shield for those), and trusting `X-Forwarded-For` (the client IP is API Gateway's own
`sourceIp`). When the database cannot count (down, or the table not migrated yet), the request
goes through: the limiter must not turn its own trouble into refusals or 500s.
"""
from __future__ import annotations

import math
from typing import Callable

from chalice import Response
from chalice.app import Request

from chalicelib.api.answers import JSON, has_api_key
from chalicelib.errors import JobError
from chalicelib.jobs import Window
from chalicelib.telemetry import logger
from chalicelib.vocabulary import ERROR_CODES, RATE_LIMITED
from chalicelib.wiring import Services

COUNTED_PREFIXES = ("/api/verification-jobs", "/api/verify", "/api/proof")


def counted(path: str) -> bool:
    """Whether requests to a route (its path template, as Chalice names it) count."""
    return any(path == prefix or path.startswith(prefix + "/") for prefix in COUNTED_PREFIXES)


def client_ip(request: Request) -> str:
    return (request.context.get("identity") or {}).get("sourceIp") or "unknown"


def _headers(limit: int, window: Window) -> dict[str, str]:
    """The IETF draft's RateLimit-* fields (as the original's express-rate-limit sent them)."""
    return {"RateLimit-Limit": str(limit), "RateLimit-Remaining": str(max(limit - window.requests, 0)),
            "RateLimit-Reset": str(_seconds(window))}


def _seconds(window: Window) -> int:
    return max(1, math.ceil(window.seconds_left))


def _count(services: Services, request: Request) -> Window | None:
    """This request's window, or None when it is not counted (or cannot be)."""
    settings = services.settings
    if settings.rate_limit_per_minute <= 0 or not counted(request.path) or has_api_key(settings, request.headers):
        return None
    try:
        return services.store.count_request(client_ip(request))
    except JobError as exc:
        logger.warning("rate limit not counted; request let through", extra={"code": exc.code, "error": exc.message})
    except Exception:  # a schema not migrated yet, a bug: the route still answers for itself
        logger.exception("rate limit not counted; request let through")
    return None


def limited(services: Services, request: Request, get_response: Callable[[Request], Response]) -> Response:
    """The route's answer, or 429 when the client is over its budget for this minute."""
    window = _count(services, request)
    if window is None:
        return get_response(request)
    limit = services.settings.rate_limit_per_minute
    if window.requests > limit:
        body = {"error": f"more than {limit} requests in a minute from this client; "
                         f"try again in {_seconds(window)} s", "code": RATE_LIMITED}
        return Response(body, status_code=ERROR_CODES[RATE_LIMITED].status or 429,
                        headers={**JSON, **_headers(limit, window), "Retry-After": str(_seconds(window))})
    response = get_response(request)
    response.headers = {**response.headers, **_headers(limit, window)}  # a copy: answers may share theirs
    return response
