"""PostgreSQL connection handling and migrations for the registry (Supabase Postgres, COMPAT.md §6).

This is the seam where the registry calls psycopg: every psycopg (and psycopg_pool) error raised in a
:meth:`Database.connection` block or by :meth:`Database.migrate` leaves as one of ours —

* ``psycopg.OperationalError`` (connection closed or refused, ``AdminShutdown`` from a restart or
  ``pg_terminate_backend``, ``PoolTimeout``, serialization failures, statement timeouts),
  ``InterfaceError`` (a connection already closed) and ``ReadOnlySqlTransaction`` (a standby after a
  failover) -> :class:`~boundaries.errors.RegistryUnavailable` (transient);
* any other ``psycopg.Error`` -> :class:`~boundaries.errors.RegistryError`;

with the psycopg error as ``__cause__``. Callers never see psycopg exceptions.

Pooled connections are checked (one empty query) when they are handed out; a broken one is dropped
and the next one taken at once, with no back-off, so the first call after a PostgreSQL restart or a
terminated backend gets a fresh connection while the server is up.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from boundaries.errors import RegistryError, RegistryUnavailable

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, psycopg.errors.ReadOnlySqlTransaction)
"""psycopg errors that say "the database cannot answer now" (``psycopg_pool.PoolTimeout`` is an
OperationalError)."""


def _where(dsn: str) -> str:
    """``host:port/dbname`` of a DSN, for messages (never the password)."""
    try:
        d = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "(unparsable DSN)"
    return f"{d.get('host') or 'localhost'}:{d.get('port') or 5432}/{d.get('dbname') or ''}"


@contextmanager
def registry_errors(where: str) -> Iterator[None]:
    """Map psycopg errors raised in the block to the domain tree (module docstring)."""
    try:
        yield
    except _UNAVAILABLE as e:
        raise RegistryUnavailable(f"registry database {where} unavailable ({type(e).__name__}: "
                                  f"{str(e).strip()[:300]}); retry later") from e
    except psycopg.Error as e:
        raise RegistryError(f"registry statement failed on {where} ({type(e).__name__}: "
                            f"{str(e).strip()[:300]})") from e


class Database:
    """A lazily opened, fork-aware connection pool whose connections use ``schema`` as search_path.

    Args:
        max_size: most connections held.
        min_size: connections opened in the background when the pool opens and kept open (0: open on
            demand; a latency-sensitive process such as the producer keeps them warm).
        timeout_s: seconds a caller waits for a connection before ``psycopg_pool.PoolTimeout``.
        check: test each connection with an empty query when it is handed out (one round trip), so
            one broken by a PostgreSQL restart, a failover, an idle timeout of a pooler or a terminated
            backend is dropped (and replaced in the background) instead of failing the caller.
        connect_options: extra libpq connection parameters (e.g. ``keepalives``, ``tcp_user_timeout``);
            ``options`` is appended to the DSN's own.
    """

    def __init__(self, dsn: str, schema: str, *, max_size: int = 4, min_size: int = 0, timeout_s: float = 10.0,
                 check: bool = True, connect_options: dict | None = None):
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
        self.where = _where(dsn)
        if "options" in self._connect_options:  # keep the DSN's own server options (ours come last, so win)
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
                    timeout=self._timeout_s,  # connections are checked by _getconn: no back-off between checks
                )
                self._pid = os.getpid()
            return self._pool

    @contextmanager
    def connection(self, *, autocommit: bool = False):
        """A pooled connection; the block is one transaction, committed at its end (rolled back on error).

        ``autocommit=True``: each statement commits on its own — for a single statement, one round
        trip instead of three (BEGIN, statement, COMMIT).
        """
        with registry_errors(self.where):
            pool = self.pool()
            conn = self._getconn(pool)
            try:
                with conn:  # commit at the end of the block, roll back on an error
                    if not autocommit:
                        yield conn
                        return
                    conn.autocommit = True
                    try:
                        yield conn
                    finally:
                        if not conn.closed:
                            conn.autocommit = False
            finally:
                pool.putconn(conn)  # a broken connection is discarded and replaced by the pool

    def _getconn(self, pool: ConnectionPool) -> psycopg.Connection:
        """A connection from ``pool`` that answered an empty query (when ``check``); within ``timeout_s``.

        psycopg_pool's own ``check`` sleeps ≈1 s (its reconnect back-off) after the first broken
        connection, longer than the producer's registry timeout: after a restart every pooled
        connection is broken and the first webhooks were answered 503. Here a broken connection is
        handed back (the pool replaces it in the background) and the next one tried at once; when none
        is left, ``getconn`` waits for the replacements.

        Raises:
            psycopg_pool.PoolTimeout: none within ``timeout_s`` (mapped by the caller).
        """
        deadline = time.monotonic() + self._timeout_s
        while True:
            conn = pool.getconn(timeout=max(deadline - time.monotonic(), 0.001))
            if not self._check:
                return conn
            try:
                ConnectionPool.check_connection(conn)
            except Exception:  # noqa: BLE001 - any failure of an empty query means the connection is unusable
                conn.close()  # closed: putconn discards it and opens a replacement
                pool.putconn(conn)
                continue
            return conn

    def close(self) -> None:
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()
        self._pool = None

    def check_reachable(self, connect_timeout_s: int = 5) -> None:
        """Open and close one direct (unpooled) connection, for one-shot commands: a server that is down
        fails at once with libpq's reason ("Connection refused", an authentication failure, an unknown
        database) instead of the pool's ``timeout_s`` wait with its reconnect warnings in the log.

        Raises:
            RegistryUnavailable: no connection within ``connect_timeout_s`` seconds (libpq's
                ``connect_timeout``, whole seconds, minimum 2 per libpq).
            RegistryError: any other psycopg error.
        """
        with registry_errors(self.where), psycopg.connect(
                self._dsn, connect_timeout=connect_timeout_s, autocommit=True, **self._connect_options):
            pass

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
        with registry_errors(self.where), psycopg.connect(self._dsn, autocommit=False, connect_timeout=10) as conn:
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
