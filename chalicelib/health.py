"""Dependency checks for GET /api/health: each names what is down, so operators know where to look."""
from __future__ import annotations

from typing import Any, Callable

from chalicelib import db
from chalicelib.aws import client
from chalicelib.config import Settings


def _database(settings: Settings) -> None:
    db.ping()


def _queue(settings: Settings) -> None:
    if settings.queue_configured:
        client("sqs").get_queue_attributes(QueueUrl=settings.queue_url, AttributeNames=["QueueArn"])


def _storage(settings: Settings) -> None:
    if settings.upload_bucket:
        client("s3").head_bucket(Bucket=settings.upload_bucket)


CHECKS: dict[str, Callable[[Settings], None]] = {"database": _database, "queue": _queue, "storage": _storage}


def check(settings: Settings) -> dict[str, Any]:
    results: dict[str, str] = {}
    for name, probe in CHECKS.items():
        try:
            probe(settings)
            results[name] = "ok"
        except Exception as exc:  # a health check reports any failure rather than raising it
            results[name] = f"error: {type(exc).__name__}: {str(exc)[:200]}"
    healthy = all(value == "ok" for value in results.values())
    return {"status": "ok" if healthy else "error", "checks": results}
