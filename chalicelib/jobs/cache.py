"""The result cache's statements: a lookup of a fresh entry, the upsert after a miss, and the
sweep's removal of stale entries.
Apart from the lifecycle (`store.py`) so that each file reads as one topic; the rule of when to
use them lives in `chalicelib/result_cache.py`."""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple

from psycopg.types.json import Json

from chalicelib.jobs.statements import Statements

_KEY_COLUMNS = ("kind", "chain_id", "registry_address", "content_hash", "manifest_uri", "rpc_url")
_KEY_MATCH = " AND ".join(f"{name} = %({name})s" for name in _KEY_COLUMNS)


class CacheKey(NamedTuple):
    """What a cached result answers for: its kind ("verify"/"proof"), the four inputs that
    decide it, and the RPC URL it was read through (a client's own node vouches only for the
    results it gave). Addresses and hashes are normalised by the caller (lowercase)."""

    kind: str
    chain_id: int
    registry_address: str
    content_hash: str
    manifest_uri: str
    rpc_url: str


_UPSERT = f"""INSERT INTO result_cache ({", ".join(_KEY_COLUMNS)}, result, checked_at)
               VALUES ({", ".join(f"%({name})s" for name in _KEY_COLUMNS)}, %(result)s, now())
               ON CONFLICT ({", ".join(_KEY_COLUMNS)})
               DO UPDATE SET result = EXCLUDED.result, checked_at = EXCLUDED.checked_at"""


def upsert_result(conn: Any, key: CacheKey, result: Mapping[str, Any]) -> None:
    """The cache write, on a connection whose transaction the caller owns (a job's completion
    writes its result, history row and cache entry in one)."""
    conn.execute(_UPSERT, {**key._asdict(), "result": Json(dict(result))})


class ResultCacheStatements(Statements):
    def cached_result(self, key: CacheKey, max_age_seconds: float) -> dict[str, Any] | None:
        """The stored result for `key` if it was checked less than `max_age_seconds` ago."""
        with self.database.connection() as conn:
            row = conn.execute(
                f"""SELECT result FROM result_cache
                     WHERE {_KEY_MATCH} AND checked_at > now() - make_interval(secs => %(age)s)""",
                {**key._asdict(), "age": float(max_age_seconds)},
            ).fetchone()
        return row["result"] if row else None

    def store_result(self, key: CacheKey, result: Mapping[str, Any]) -> None:
        """Keep `result` as the fresh entry for `key` (replacing an older one)."""
        with self.database.connection() as conn:
            upsert_result(conn, key, result)

    def delete_stale_results(self, max_age_seconds: float, limit: int = 10_000) -> int:
        """Delete entries checked `max_age_seconds` ago or earlier (no lookup would use them);
        the sweep runs it so that the table holds only the keys of the last window."""
        return self._changed(
            """DELETE FROM result_cache
                WHERE ctid IN (SELECT ctid FROM result_cache
                                WHERE checked_at <= now() - make_interval(secs => %(age)s) LIMIT %(limit)s)""",
            {"age": float(max_age_seconds), "limit": limit},
        )
