"""The operator console's files: the page, its style sheet and its script, served from the
Lambda package itself (no CDN, nothing fetched at run time). The page talks to the JSON API only.

Every answer carries a Content-Security-Policy that allows this origin's own scripts, styles and
API calls and nothing else (no inline script or style, no framing), and `nosniff`, so that a job
field holding markup can only ever be text. Not done here: caching headers beyond `no-cache`,
compression, files in subfolders (there are none).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from chalice import Response

from chalicelib.errors import ApiError
from chalicelib.vocabulary import NOT_FOUND

STATIC = Path(__file__).resolve().parent / "static"
PAGE = "index.html"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".js": "text/javascript; charset=utf-8"}
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


@lru_cache(maxsize=None)
def _files() -> dict[str, tuple[str, str]]:
    """name -> (media type, text) of every servable file, read once per process."""
    return {path.name: (MEDIA_TYPES[path.suffix], path.read_text(encoding="utf-8"))
            for path in STATIC.iterdir() if path.suffix in MEDIA_TYPES}


def _serve(name: str) -> Response:
    found = _files().get(name)
    if found is None:
        missing = ApiError(NOT_FOUND, "No such console file")
        return Response(missing.body(), status_code=missing.status,
                        headers={"Content-Type": "application/json", **SECURITY_HEADERS})
    media_type, text = found
    return Response(text, status_code=200, headers={"Content-Type": media_type, **SECURITY_HEADERS})


def page() -> Response:
    """GET /console: the page (its script reads the hash for which view to show)."""
    return _serve(PAGE)


def asset(name: str) -> Response:
    """GET /console/{asset}: the style sheet or the script, by file name (the page only at
    /console, where its relative links resolve)."""
    return _serve("" if name == PAGE else name)
