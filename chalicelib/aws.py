"""boto3 clients, made once per process and shared (a Lambda container reuses them).

boto3 reads AWS_ENDPOINT_URL itself, so the same code talks to AWS, moto or LocalStack.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)


@lru_cache(maxsize=None)
def client(service: str) -> Any:
    """A shared boto3 client; boto3 clients are thread-safe once created."""
    return boto3.session.Session().client(service, config=_CONFIG)
