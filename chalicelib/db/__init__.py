"""PostgreSQL access: the connection pool and the schema migrations."""
from chalicelib.db.pool import Database

__all__ = ["Database"]
