"""Where the API is and how a file travels to it: flags, then environment, then the local stack.

`make up` writes `.stack/endpoints.json`, so running the client from the project directory
reaches the local stack with no flags at all.
"""
from __future__ import annotations

import json
import mimetypes
import os
from pathlib import Path
from typing import Any

DEFAULT_API_URL = "http://127.0.0.1:8000"
ENDPOINTS_FILE = Path(".stack") / "endpoints.json"
# The API's inline cap (MAX_INLINE_UPLOAD_BYTES, 4 MiB): anything larger goes straight to storage.
MAX_INLINE = 4 * 1024 * 1024
# The file types the API accepts (chalicelib/vocabulary.py ALLOWED_CONTENT_TYPES); others travel as octet-stream.
ALLOWED_CONTENT_TYPES = frozenset({
    "image/jpeg", "image/png", "image/gif", "image/webp", "image/svg+xml",
    "video/mp4", "video/webm", "video/quicktime", "video/x-msvideo",
    "audio/mpeg", "audio/wav", "audio/ogg",
    "application/pdf", "text/plain", "application/json", "application/octet-stream",
})
OCTET_STREAM = "application/octet-stream"
# mimetypes spells some of the allowed types differently from the API's list.
ALIASES = {"audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "video/avi": "video/x-msvideo"}


class ConfigError(Exception):
    """A local problem found before any request: missing file, missing endpoints, bad setting."""


def load_endpoints(cwd: Path | None = None) -> dict[str, Any] | None:
    """The local stack's endpoints file in the current directory, or None when there is none."""
    path = (cwd or Path.cwd()) / ENDPOINTS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object")
    return data


def resolve_api_url(flag: str | None, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """--api-url, else INTERNETID_API_URL, else the local stack's api_url, else the default."""
    env = os.environ if env is None else env
    if flag:
        return flag.rstrip("/")
    if env.get("INTERNETID_API_URL"):
        return env["INTERNETID_API_URL"].rstrip("/")
    endpoints = load_endpoints(cwd)
    if endpoints and endpoints.get("api_url"):
        return str(endpoints["api_url"]).rstrip("/")
    return DEFAULT_API_URL


def inline_max(env: dict[str, str] | None = None) -> int:
    """The size up to which a file goes inline; INTERNETID_INLINE_MAX_BYTES overrides it."""
    env = os.environ if env is None else env
    raw = env.get("INTERNETID_INLINE_MAX_BYTES")
    if raw is None or raw.strip() == "":
        return MAX_INLINE
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"INTERNETID_INLINE_MAX_BYTES must be a whole number of bytes, not {raw!r}") from exc
    if value < 0:
        raise ConfigError("INTERNETID_INLINE_MAX_BYTES must not be negative")
    return value


def state_file(env: dict[str, str] | None = None) -> Path:
    """Where interrupted multipart uploads are remembered: INTERNETID_STATE_FILE, else
    `$XDG_STATE_HOME/internetid/uploads.json` (`~/.local/state/...` by default)."""
    env = os.environ if env is None else env
    if env.get("INTERNETID_STATE_FILE"):
        return Path(env["INTERNETID_STATE_FILE"])
    base = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else Path.home() / ".local" / "state"
    return base / "internetid" / "uploads.json"


def uses_inline(size: int, limit: int) -> bool:
    """Inline through the API up to the cap; above it, the presigned upload to storage."""
    return size <= limit


def content_type_for(filename: str) -> str:
    """A content type the API accepts: the guessed one when allowed, else octet-stream."""
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    guessed = ALIASES.get(guessed or "", guessed)
    return guessed if guessed in ALLOWED_CONTENT_TYPES else OCTET_STREAM
