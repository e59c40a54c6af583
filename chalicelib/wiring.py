"""The service's dependencies, built once per process and passed to every room that needs them.

As the Chalice samples build their `get_app_db()` object: `app.py` asks `services()` for the one
`Services` of the process; tests build their own with moto's clients or fakes.

The verification core is the one dependency that is not built up front: `verification()` loads
it (web3, eth_account) on the first job or synchronous verification of the process, so that
`import app`, which every Lambda function does at cold start, stays cheap.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

from chalicelib import verification as verification_core
from chalicelib.config import Settings, settings
from chalicelib.db import Database
from chalicelib.jobs import JobStore
from chalicelib.queue import WorkQueue
from chalicelib.storage import Storage


@dataclass(frozen=True)
class Services:
    settings: Settings
    store: JobStore | Any  # a JobStore, or a test's fake with the same methods
    storage: Storage
    queue: WorkQueue


def build_services(config: Settings, s3: Any = None, sqs: Any = None, database: Database | None = None) -> Services:
    """Services for `config`; the clients and the database default to real ones, made on first use."""
    return Services(
        settings=config,
        store=JobStore(database or Database(config.database_url, config.database_pool_max)),
        storage=Storage(config, s3),
        queue=WorkQueue(config, sqs),
    )


@lru_cache(maxsize=1)
def services() -> Services:
    """The process's services (a Lambda container keeps them for its life)."""
    return build_services(settings())


# What the worker, the sync endpoints and the result cache use of the core.
CORE_PARTS = ("verify_hash", "prove_hash", "registry", "rpc")


@lru_cache(maxsize=1)
def verification() -> ModuleType:
    """`chalicelib.verification` with its chain and signature parts loaded: imported by the first
    caller of the process (a worker's first job, a sync endpoint's first request), then kept."""
    for name in CORE_PARTS:
        getattr(verification_core, name)  # the package loads a name on first access (PEP 562)
    return verification_core
