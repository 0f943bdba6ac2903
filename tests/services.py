"""Real services for tests: the machine's Redis/PostgreSQL when reachable, else embedded ones,
and moto in server mode (a real HTTP S3 API on loopback)."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

REDIS_URL_DEFAULT = "redis://127.0.0.1:6379/0"
PG_DSN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_ok(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


def _pg_ok(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=2):
            return True
    except Exception:
        return False


def redis_url() -> tuple[str, object | None]:
    """(url, handle) — handle keeps an embedded server alive."""
    url = os.environ.get("TEST_REDIS_URL", REDIS_URL_DEFAULT)
    if _redis_ok(url):
        return url, None
    from boundaries_cli.embedded import start_embedded_redis

    return start_embedded_redis(Path(tempfile.mkdtemp(prefix="test-redis-")))


def pg_dsn() -> tuple[str, object | None]:
    dsn = os.environ.get("TEST_DATABASE_URL", PG_DSN_DEFAULT)
    if _pg_ok(dsn):
        return dsn, None
    from boundaries_cli.embedded import start_embedded_postgres

    return start_embedded_postgres(Path(tempfile.mkdtemp(prefix="test-pg-")))


class MotoS3:
    """moto's ThreadedMotoServer on a free loopback port."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.stop()
