"""Versioned schema migrations: `chalicelib/db/migrations/NNNN_name.sql`, applied in order.

Each pending migration runs in its own transaction together with its row in
`schema_migrations`, so a failing migration leaves nothing half-applied. The whole run holds a
PostgreSQL advisory lock, so concurrent migrators (several Lambda cold starts, the local stack
and a test) apply each migration exactly once; running it again applies nothing.

    python -m chalicelib.db.migrate          # uses DATABASE_URL, prints what it applied
    migrate("postgresql://...")              # or migrate(conn) with an open connection
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.rows import tuple_row

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Arbitrary constant key for pg_advisory_lock (shared by every migrator of this schema).
ADVISORY_LOCK_KEY = 0x1D_5E_7E_A1_0001
_FILE_RE = re.compile(r"^(\d+)_([A-Za-z0-9_\-]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in `directory`, ordered by version (duplicate versions are an error)."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise ValueError(f"migration file name must look like 0001_name.sql: {path.name}")
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"two migrations with version {version}: {found[version].label}, {path.name}")
        found[version] = Migration(version, match.group(2), path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def migrate(
    url_or_conn: str | psycopg.Connection,
    *,
    directory: Path = MIGRATIONS_DIR,
    lock_timeout: float = 120.0,
) -> list[str]:
    """Apply the pending migrations; return the labels applied (empty when up to date).

    Given a connection, it must be idle (no transaction open); it is left open and idle.
    """
    migrations = discover(directory)
    if isinstance(url_or_conn, str):
        with psycopg.connect(url_or_conn, autocommit=True) as conn:
            return _migrate(conn, migrations, lock_timeout)
    conn = url_or_conn
    was_autocommit = conn.autocommit
    conn.autocommit = True  # raises if a transaction is open: the caller must commit first
    try:
        return _migrate(conn, migrations, lock_timeout)
    finally:
        conn.autocommit = was_autocommit


def _migrate(conn: psycopg.Connection, migrations: list[Migration], lock_timeout: float) -> list[str]:
    _acquire_lock(conn, lock_timeout)
    try:
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer     PRIMARY KEY,
                   name       text        NOT NULL,
                   checksum   text        NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now()
               )"""
        )
        applied = {
            row[0]: row[1]
            for row in conn.cursor(row_factory=tuple_row).execute("SELECT version, checksum FROM schema_migrations").fetchall()
        }
        done: list[str] = []
        for migration in migrations:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    logger.warning("migration %s changed after it was applied; not re-applied", migration.label)
                continue
            with conn.transaction():
                conn.execute(migration.sql)  # type: ignore[arg-type]  # several statements: no parameters
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            logger.info("applied migration %s", migration.label)
            done.append(migration.label)
        return done
    finally:
        with contextlib.suppress(psycopg.OperationalError):  # a lost session has no lock to release
            conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))


def _acquire_lock(conn: psycopg.Connection, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        row = conn.cursor(row_factory=tuple_row).execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()
        if row and row[0]:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"another migration held the lock for more than {timeout:.0f}s")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    from chalicelib.config import settings

    logging.basicConfig(level=logging.WARNING)
    url = settings().database_url
    if not url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    applied = migrate(url)
    for label in applied:
        print(f"applied {label}")
    if not applied:
        print("database schema is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
