"""The PostgreSQL connection pool.

One `Database` per process (per Lambda container, built once in `chalicelib.wiring`), whose
`psycopg_pool.ConnectionPool` opens on first use. Connections are checked when taken from the
pool, so a connection the server dropped (restart, failover, idle timeout,
`pg_terminate_backend`) is replaced instead of failing the call.

`Database.connection()` is the only way the job store talks to the database: it yields a
connection inside a transaction (committed when the block ends, rolled back on an exception)
and turns "the database cannot be reached" (`psycopg.OperationalError`, which includes the pool's
`PoolTimeout`) into a `TransientError` with code `DATABASE_UNAVAILABLE`, which the worker retries.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager, suppress
from typing import Any, Callable, Iterator

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from chalicelib.errors import TransientError
from chalicelib.vocabulary import DATABASE_UNAVAILABLE

logger = logging.getLogger(__name__)

# Defaults sized for Lambda: no connection is opened before it is needed (min_size 0), a caller
# waits at most POOL_TIMEOUT_SECONDS for one, and a refused connection attempt gives up fast.
POOL_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5
RECONNECT_TIMEOUT_SECONDS = 10.0  # then the next request starts a fresh attempt: bounds the lag after an outage
MAX_IDLE_SECONDS = 300.0
MAX_LIFETIME_SECONDS = 1800.0


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


def _new_pool(url: str, max_size: int, **overrides: Any) -> ConnectionPool:
    check, owner = _checker()
    options: dict[str, Any] = dict(
        min_size=0,
        max_size=max_size,
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


HEALTH_TIMEOUT_SECONDS = 3.0


class Database:
    """The pool of one database URL, opened on first use; `overrides` go to `ConnectionPool`
    (e.g. `timeout=2`), a `kwargs` override is merged into the connection arguments."""

    def __init__(self, url: str | None, max_size: int = 4, **overrides: Any) -> None:
        self.url = url
        self.max_size = max_size
        self.overrides = overrides
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None

    def pool(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                if not self.url:
                    raise RuntimeError("DATABASE_URL is not set")
                self._pool = _new_pool(self.url, self.max_size, **dict(self.overrides))
            return self._pool

    def close(self) -> None:
        """Close the pool (the next use opens a new one)."""
        with self._lock:
            old, self._pool = self._pool, None
        if old is not None:
            old.close()

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled connection in a transaction; database outages raise TransientError.
        `timeout` bounds the wait for a connection (the pool's own default otherwise)."""
        try:
            with self.pool().connection(timeout=timeout) as conn:
                yield conn
        except psycopg.OperationalError as exc:
            logger.warning("database unavailable: %s", exc)
            raise TransientError("Database unavailable", code=DATABASE_UNAVAILABLE, detail=str(exc)) from exc

    def ping(self) -> None:
        """`SELECT 1` for the health check, waiting at most a few seconds for a connection (a
        health check that hangs is no answer); raises TransientError when the database is down."""
        with self.connection(timeout=HEALTH_TIMEOUT_SECONDS) as conn:
            conn.execute("SELECT 1")
