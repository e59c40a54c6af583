"""The process-wide PostgreSQL connection pool.

One `psycopg_pool.ConnectionPool` per process (per Lambda container), created on first use from
`settings().database_url`, or from an explicit URL given to `configure_pool()` (tests, the local
stack). Connections are checked when taken from the pool, so a connection the server dropped
(restart, failover, idle timeout, `pg_terminate_backend`) is replaced instead of failing the call.

`connection()` is the only way the repository modules talk to the database: it yields a
connection inside a transaction (committed when the block ends, rolled back on an exception)
and turns "the database cannot be reached" (`psycopg.OperationalError`, which includes the pool's
`PoolTimeout`) into `TransientError(code="DATABASE_UNAVAILABLE")`, which the pipeline retries.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager, suppress
from typing import Any, Callable, Iterator

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from chalicelib.config import settings
from chalicelib.errors import TransientError

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"

# Defaults sized for Lambda: no connection is opened before it is needed (min_size 0), a caller
# waits at most POOL_TIMEOUT_SECONDS for one, and a refused connection attempt gives up fast.
POOL_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5
RECONNECT_TIMEOUT_SECONDS = 10.0  # then the next request starts a fresh attempt: bounds the lag after an outage
MAX_IDLE_SECONDS = 300.0
MAX_LIFETIME_SECONDS = 1800.0

_lock = threading.Lock()
_pool: ConnectionPool | None = None


def _checker() -> tuple[Callable[[psycopg.Connection[Any]], None], list[ConnectionPool]]:
    """`ConnectionPool.check_connection`, plus: when a connection turns out dead, test every
    idle one at once. One dead connection usually means the server restarted or failed over and
    all of them died; the pool alone would find them one by one with a growing pause (0 s, 1 s,
    2 s, 4 s, ...) before each next try, enough to exceed the timeout with a few dead ones.
    This way the immediate second try already gets a fresh connection."""
    owner: list[ConnectionPool] = []

    def check(conn: psycopg.Connection[Any]) -> None:
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            if owner:
                with suppress(Exception):
                    owner[0].check()
            raise

    return check, owner


def _new_pool(url: str, **overrides: Any) -> ConnectionPool:
    check, owner = _checker()
    options: dict[str, Any] = dict(
        min_size=0,
        max_size=settings().database_pool_max,
        open=True,
        check=check,
        timeout=POOL_TIMEOUT_SECONDS,
        reconnect_timeout=RECONNECT_TIMEOUT_SECONDS,
        max_idle=MAX_IDLE_SECONDS,
        max_lifetime=MAX_LIFETIME_SECONDS,
        name="internetid",
        kwargs={
            "row_factory": dict_row,
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            # No server-side prepared statements: they pin sessions behind RDS Proxy/pgbouncer.
            "prepare_threshold": None,
            "application_name": "internetid-verification",
        },
    )
    extra_kwargs = overrides.pop("kwargs", None)
    if extra_kwargs:
        options["kwargs"] = {**options["kwargs"], **extra_kwargs}
    options.update(overrides)
    pool = ConnectionPool(url, **options)
    owner.append(pool)
    return pool


def configure_pool(url: str | None = None, **overrides: Any) -> ConnectionPool:
    """(Re)create the process pool for `url` (default `settings().database_url`).

    `overrides` are passed to `ConnectionPool` (e.g. `timeout=2`, `max_size=8`); a `kwargs`
    override is merged into the connection arguments. A previous pool is closed first.
    """
    global _pool
    url = url or settings().database_url
    if not url:
        raise RuntimeError("DATABASE_URL is not set")
    with _lock:
        old, _pool = _pool, None
        if old is not None:
            old.close()
        _pool = _new_pool(url, **overrides)
        return _pool


def get_pool() -> ConnectionPool:
    """The process pool, created on first use from `settings().database_url`."""
    global _pool
    pool = _pool
    if pool is not None:
        return pool
    with _lock:
        if _pool is None:
            url = settings().database_url
            if not url:
                raise RuntimeError("DATABASE_URL is not set")
            _pool = _new_pool(url)
        return _pool


def close_pool() -> None:
    """Close the process pool (the next `get_pool()` creates a new one)."""
    global _pool
    with _lock:
        old, _pool = _pool, None
    if old is not None:
        old.close()


@contextmanager
def connection(timeout: float | None = None) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A pooled connection in a transaction; database outages raise TransientError.
    `timeout` bounds the wait for a connection (the pool's own default otherwise)."""
    try:
        with get_pool().connection(timeout=timeout) as conn:
            yield conn
    except psycopg.OperationalError as exc:
        logger.warning("database unavailable: %s", exc)
        raise TransientError(f"Database unavailable: {exc}", code=DATABASE_UNAVAILABLE) from exc


HEALTH_TIMEOUT_SECONDS = 3.0


def ping() -> None:
    """Run `SELECT 1` for the health check, waiting at most a few seconds for a connection (a
    health check that hangs is no answer); raises TransientError when the database is down."""
    with connection(timeout=HEALTH_TIMEOUT_SECONDS) as conn:
        conn.execute("SELECT 1")
