"""The optional API key that guards listing and queue administration."""
from __future__ import annotations

import hmac
from typing import Mapping

from chalicelib.config import Settings
from chalicelib.errors import ApiError


def require_api_key(settings: Settings, headers: Mapping[str, str]) -> None:
    """401 unless the deployment has no key or `x-api-key` matches it (constant-time compare)."""
    if not settings.api_key:
        return
    given = headers.get("x-api-key") or ""
    if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
        raise ApiError(401, "a valid x-api-key header is required for this endpoint", "UNAUTHORIZED")
