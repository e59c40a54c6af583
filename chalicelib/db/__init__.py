"""PostgreSQL access: the process connection pool and the schema migrations."""
from chalicelib.db.pool import (
    DATABASE_UNAVAILABLE,
    close_pool,
    configure_pool,
    connection,
    get_pool,
    ping,
)

__all__ = ["DATABASE_UNAVAILABLE", "close_pool", "configure_pool", "connection", "get_pool", "ping"]
