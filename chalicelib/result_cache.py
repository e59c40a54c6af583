"""The shared result cache around the verification core, for the worker and the sync endpoints.

A completed result (OK/WARN/FAIL) of the same kind, chain, registry, content hash and manifest
URI, read through the same RPC URL, checked less than RESULT_CACHE_SECONDS ago is reused: no RPC
and no gateway call, the stored result with `evidence.cached: true` and its original
`evidence.checkedAt` and block. The price: a revoke or a manifest update becomes visible only when
the entry expires. Errors are never cached (the core raises them).

The key needs the chain id; it is asked of the node once per RPC URL per process (a chain's id
does not change). The cache is an optimisation: a database that cannot be reached for it, or
no database at all (DATABASE_URL unset), means a fresh verification, never a failed one.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from chalicelib.config import Settings
from chalicelib.errors import TransientError
from chalicelib.jobs import CacheKey
from chalicelib.telemetry import logger
from chalicelib.wiring import verification


@lru_cache(maxsize=256)  # bounded: clients may name RPC URLs of their own
def chain_id_of(rpc_url: str, settings: Settings) -> int:
    """The chain id behind `rpc_url`, asked of the node only the first time (a failure is not
    remembered)."""
    rpc = verification().rpc
    with rpc.connected(rpc_url, settings) as w3:
        return rpc.chain_id(w3)


def served_from_cache(stored: dict[str, Any], file_name: str | None) -> dict[str, Any]:
    """A job's own copy of a cached result: marked cached, and a proof names this job's file."""
    result = copy.deepcopy(stored)
    result["evidence"]["cached"] = True
    if "content" in result:
        result["content"]["file"] = file_name or "unknown"
    return result


@dataclass(frozen=True)
class Verified:
    """A result, and the cache key to keep it under when it was verified afresh (None when it
    came from the cache, or there is no cache)."""

    result: dict[str, Any]
    fresh_key: CacheKey | None = None


def cached_verification(
    store: Any, settings: Settings, kind: str, file_hash: str, manifest_uri: str, registry_address: str,
    rpc_url: str | None, file_name: str | None, verify: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """The result of `verify()` for these inputs (`kind` is the job type), or a fresh enough
    cached one; a fresh result is stored at once (the sync endpoints)."""
    verified = lookup_or_verify(store, settings, kind, file_hash, manifest_uri, registry_address, rpc_url,
                                file_name, verify)
    if verified.fresh_key is not None:
        try:
            store.store_result(verified.fresh_key, verified.result)
        except TransientError as exc:
            logger.warning("result cache store failed", extra={"error": exc.message})
    return verified.result


def lookup_or_verify(
    store: Any, settings: Settings, kind: str, file_hash: str, manifest_uri: str, registry_address: str,
    rpc_url: str | None, file_name: str | None, verify: Callable[[], dict[str, Any]],
) -> Verified:
    """A fresh enough cached result, or `verify()`'s with the key to store it under: the worker
    stores it with the job's completion, in one transaction. Without DATABASE_URL there is
    nowhere to share results: always `verify()`."""
    if settings.result_cache_seconds <= 0 or not settings.database_url:
        return Verified(verify())
    core = verification()
    url = core.rpc.require_rpc_url(rpc_url)
    key = CacheKey(kind, chain_id_of(url, settings), core.registry.checked_address(registry_address).lower(),
                   core.registry.checked_hash(file_hash), manifest_uri, url)
    try:
        stored = store.cached_result(key, settings.result_cache_seconds)
    except TransientError as exc:
        logger.warning("result cache lookup failed; verifying afresh", extra={"error": exc.message})
        stored = None
    if stored is not None:
        return Verified(served_from_cache(stored, file_name))
    return Verified(verify(), key)  # a failure raises: errors are never stored
