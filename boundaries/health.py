"""Health checks of the services the domain talks to: the object store and the registry database.

Used by ``boundaries doctor`` (boundaries_cli/doctor.py), the worker's start-up check (worker/boot.py) and
the producer's ``/readyz`` (producer/app.py). The Redis and Modal checks live at the edges (the domain does
not import redis or modal): ``boundaries_cli/doctor.py``.

Each check returns a :class:`Check`: ``kind`` is ``ok``, ``skipped``, ``config`` (a setting must change:
a missing bucket, unapplied migrations) or ``unavailable`` (a service does not answer); ``detail`` is one
line that, on failure, names the setting (``BOUNDARIES_*``) or the command that fixes it. Secrets never
appear in it (DSNs are shown as ``host:port/dbname``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Literal

from boundaries.errors import StoreMisconfigured, StoreUnavailable

if TYPE_CHECKING:
    from boundaries.storage.base import ObjectStore
    from config.settings import Settings

Kind = Literal["ok", "skipped", "config", "unavailable"]

PROBE_PREFIX = "doctor/"
"""Key prefix of the probe object :func:`check_store` writes and deletes (``write=True``)."""
CHECK_TIMEOUT_S = 5.0
"""Connect/read timeout of one check's requests (seconds); each check tries once."""


@dataclass(frozen=True)
class Check:
    """The outcome of one check: ``name`` (``redis``, ``registry``, ``store``, ``modal``), ``kind`` and a
    one-line ``detail``."""

    name: str
    kind: Kind
    detail: str

    @property
    def ok(self) -> bool:
        return self.kind in ("ok", "skipped")

    def line(self) -> str:
        """``ok    store: bucket 'x' ...`` / ``FAIL  store: ...`` / ``skip  modal: ...``."""
        tag = {"ok": "ok", "skipped": "skip"}.get(self.kind, "FAIL")
        return f"{tag:<5} {self.name}: {self.detail}"


def _one_line(text: object, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def store_for_checks(settings: Settings, *, timeout_s: float = CHECK_TIMEOUT_S) -> ObjectStore:
    """The object store of ``settings`` with one try per request and ``timeout_s`` connect/read timeouts."""
    if settings.storage_backend == "s3":
        from boundaries.storage.s3 import S3Store

        return S3Store.from_settings(settings, max_attempts=1, timeout_s=timeout_s)
    from boundaries.storage.factory import store_from_settings

    return store_from_settings(settings)


def _describe(store: ObjectStore) -> str:
    d = store.describe()
    if d.get("backend") == "s3":
        return f"bucket {d['bucket']!r} at {d.get('endpoint_url') or 'AWS S3'}"
    return f"local directory {d.get('root')}"


def check_store(store: ObjectStore, *, write: bool = True) -> Check:
    """The bucket exists and the credentials may use it (S3: HEAD bucket); with ``write``, a small probe
    object under :data:`PROBE_PREFIX` is put and deleted (the store takes writes and deletes)."""
    where = _describe(store)
    try:
        check_bucket = getattr(store, "check_bucket", None)
        if check_bucket is not None:
            check_bucket()
        if write:
            key = f"{PROBE_PREFIX}probe-{uuid.uuid4().hex}"
            store.put_bytes(key, b"boundaries doctor probe\n")
            store.delete(key)
    except StoreMisconfigured as e:
        return Check("store", "config", _one_line(e))
    except StoreUnavailable as e:
        return Check("store", "unavailable", _one_line(e))
    except OSError as e:  # the local backend: a directory that cannot be written
        return Check("store", "config", f"{where}: {_one_line(e)}; check BOUNDARIES_LOCAL_STORE_DIR /"
                     " BOUNDARIES_STATE_DIR")
    return Check("store", "ok", f"{where} reachable" + (", writable" if write else ""))


def migration_names() -> list[str]:
    """Names of the registry migrations this code expects (``boundaries/registry/migrations/*.sql``), sorted."""
    return sorted(p.name for p in resources.files("boundaries.registry.migrations").iterdir()
                  if p.name.endswith(".sql"))


def check_registry(settings: Settings) -> Check:
    """PostgreSQL answers at ``BOUNDARIES_DATABASE_URL`` and every migration is applied in
    ``BOUNDARIES_DB_SCHEMA`` (its ``schema_migrations`` table lists each of :func:`migration_names`)."""
    import psycopg
    from psycopg import sql

    from boundaries.registry.db import _where

    if settings.database_url is None:
        return Check("registry", "config", "BOUNDARIES_DATABASE_URL is not set (the PostgreSQL registry)")
    dsn = settings.database_url.get_secret_value()
    where = _where(dsn)
    try:
        with psycopg.connect(dsn, connect_timeout=max(1, int(CHECK_TIMEOUT_S)), autocommit=True) as conn:
            exists = conn.execute("SELECT to_regclass(%s)",
                                  (f"{settings.db_schema}.schema_migrations",)).fetchone()[0]
            done = set()
            if exists is not None:
                done = {r[0] for r in conn.execute(sql.SQL("SELECT name FROM {}.schema_migrations").format(
                    sql.Identifier(settings.db_schema)))}
    except psycopg.Error as e:
        return Check("registry", "unavailable", f"PostgreSQL at {where} does not answer ({type(e).__name__}: "
                     f"{_one_line(e, 200)}); check BOUNDARIES_DATABASE_URL and that the server is up")
    missing = [n for n in migration_names() if n not in done]
    if missing:
        return Check("registry", "config", f"{len(missing)} of {len(migration_names())} migrations not applied in "
                     f"schema {settings.db_schema!r} on {where} ({', '.join(missing)}): run `boundaries migrate`"
                     " (BOUNDARIES_DB_SCHEMA)")
    return Check("registry", "ok", f"PostgreSQL at {where}, schema {settings.db_schema!r}, "
                 f"{len(done)} migrations applied")
