"""What the loopback test servers (unit fakes, the chaos run's fault proxy) share."""
from __future__ import annotations

from http.server import BaseHTTPRequestHandler


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str | None = None) -> None:
    """Answer a request with ``body`` and its length (and a Content-Type when given)."""
    handler.send_response(status)
    if content_type:
        handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
