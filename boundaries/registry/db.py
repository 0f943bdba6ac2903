"""PostgreSQL connection handling and migrations for the registry (Supabase Postgres, COMPAT.md §6)."""

from __future__ import annotations

import os
import re
import threading
from contextlib import contextmanager
from importlib import resources

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class Database:
    """A lazily opened, fork-aware connection pool whose connections use ``schema`` as search_path.

    Args:
        max_size: most connections held.
        min_size: connections opened in the background when the pool opens and kept open (0: open on
            demand; a latency-sensitive process such as the producer keeps them warm).
        timeout_s: seconds a caller waits for a connection before ``psycopg_pool.PoolTimeout``.
        check: test each connection with an empty query when it is handed out (one round trip), so
            one broken by a PostgreSQL restart is replaced instead of failing the caller.
        connect_options: extra libpq connection parameters (e.g. ``keepalives``, ``tcp_user_timeout``);
            ``options`` is appended to the DSN's own.
    """

    def __init__(self, dsn: str, schema: str, *, max_size: int = 4, min_size: int = 0, timeout_s: float = 10.0,
                 check: bool = False, connect_options: dict | None = None):
        if not _SCHEMA_RE.match(schema):
            raise ValueError(f"db_schema must match {_SCHEMA_RE.pattern}, got {schema!r}")
        if not 0 <= min_size <= max_size:
            raise ValueError(f"min_size must be within 0..max_size ({max_size}), got {min_size}")
        self._dsn = dsn
        self.schema = schema
        self._max_size = max_size
        self._min_size = min_size
        self._timeout_s = timeout_s
        self._check = check
        self._connect_options = dict(connect_options or {})
        if "options" in self._connect_options:  # keep the DSN's own server options (ours come last, so win)
            from psycopg.conninfo import conninfo_to_dict

            if own := conninfo_to_dict(dsn).get("options"):
                self._connect_options["options"] = f"{own} {self._connect_options['options']}"
        self._pool: ConnectionPool | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(self.schema)))
        conn.commit()

    def pool(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                # After fork (Celery prefork, process pools) never reuse the parent's sockets.
                self._pool = ConnectionPool(
                    self._dsn, min_size=self._min_size, max_size=self._max_size, open=True,
                    kwargs={"row_factory": dict_row, "connect_timeout": 5, **self._connect_options},
                    configure=self._configure,
                    timeout=self._timeout_s, check=ConnectionPool.check_connection if self._check else None,
                )
                self._pid = os.getpid()
            return self._pool

    @contextmanager
    def connection(self, *, autocommit: bool = False):
        """A pooled connection; the block is one transaction, committed at its end (rolled back on error).

        ``autocommit=True``: each statement commits on its own — for a single statement, one round
        trip instead of three (BEGIN, statement, COMMIT).
        """
        with self.pool().connection() as conn:
            if not autocommit:
                yield conn
                return
            conn.autocommit = True
            try:
                yield conn
            finally:
                if not conn.closed:
                    conn.autocommit = False

    def close(self) -> None:
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()
        self._pool = None

    def ping(self, *, writable: bool = False) -> bool:
        """True when a query succeeds; with ``writable``, also when the server takes writes (not a
        read-only standby or ``default_transaction_read_only``)."""
        try:
            with self.connection() as conn:
                row = conn.execute("SELECT current_setting('transaction_read_only') AS ro").fetchone()
            return not writable or row["ro"] == "off"
        except Exception:
            return False

    def migrate(self) -> list[str]:
        """Create the schema and apply every migration not yet applied. Returns the applied names.

        Safe to run concurrently (advisory lock) and repeatedly.
        """
        files = sorted(
            (p for p in resources.files("boundaries.registry.migrations").iterdir() if p.name.endswith(".sql")),
            key=lambda p: p.name,
        )
        applied = []
        with psycopg.connect(self._dsn, autocommit=False) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"boundaries-migrate-{self.schema}",))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            conn.execute(sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(self.schema)))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
            for f in files:
                if f.name in done:
                    continue
                conn.execute(f.read_text())
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (f.name,))
                applied.append(f.name)
            conn.commit()
        return applied
