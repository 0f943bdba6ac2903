"""Shared pieces of the producer integration tests (no tests here): a real uvicorn server on a free
loopback port in a thread, a Celery app on the test Redis with unique queue names, payload builders.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

import httpx
import pytest
import redis
import uvicorn

from boundaries.registry.db import Database
from boundaries.registry.registry import Registry
from config.celery_app import make_celery
from config.settings import Settings
from producer.app import create_app
from producer.dispatch import fail_fast_celery
from producer.enqueue import Enqueuer, fail_fast_redis
from tests.services import free_port

SECRET = "test-secret-" + uuid.uuid4().hex


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self, app):
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class Producer:
    url: str
    settings: Settings
    registry: Registry
    redis: redis.Redis
    enqueuer: Enqueuer
    app: object

    def post(self, payload=None, *, secret: str | None = SECRET, content: bytes | None = None,
             headers: dict | None = None, client: httpx.Client | None = None) -> httpx.Response:
        h = {"Content-Type": "application/json"}
        if secret is not None:
            h["Authorization"] = f"Bearer {secret}"
        h.update(headers or {})
        kw = {"content": content} if content is not None else {"json": payload}
        if client is not None:
            return client.post(self.url + "/webhooks/supabase", headers=h, **kw)
        return httpx.post(self.url + "/webhooks/supabase", headers=h, timeout=10, **kw)

    def queued(self) -> list[bytes]:
        """Messages waiting in the high and low queues (the Redis lists kombu pushes to)."""
        return (self.redis.lrange(self.settings.queue_high, 0, -1)
                + self.redis.lrange(self.settings.queue_low, 0, -1))


def clear_queues(r: redis.Redis, settings: Settings) -> None:
    """Delete a test producer's queues and dedupe keys (its schema's) from Redis."""
    r.delete(settings.queue_high, settings.queue_low)
    for k in r.scan_iter(f"boundaries:dedupe:{settings.db_schema}:*"):
        r.delete(k)


def make_settings(redis_url: str, pg_dsn: str, db_schema: str, **overrides) -> Settings:
    q = uuid.uuid4().hex[:10]
    # test payloads name the schema of their source table ("public", or the trigger test's
    # captionacc_production) while each test's registry lives in a schema of its own
    overrides.setdefault("webhook_schemas", ("public", "captionacc_production"))
    return Settings(redis_url=redis_url, database_url=pg_dsn, db_schema=db_schema,
                    webhook_secret=SECRET, queue_high=f"test.{q}.high", queue_low=f"test.{q}.low",
                    model_version="testmodel_0123abcd", **overrides)


@pytest.fixture
def producer_factory(redis_url, pg_dsn, db_schema):
    """Call with Settings overrides; yields running Producers, torn down (queues deleted) at the end."""
    started = []

    def start(**overrides) -> Producer:
        settings = make_settings(redis_url, pg_dsn, db_schema, **overrides)
        db = Database(pg_dsn, db_schema)
        db.migrate()
        registry = Registry(db)
        r = fail_fast_redis(redis_url)
        celery_app = fail_fast_celery(make_celery(settings))
        app = create_app(settings, registry=registry, redis_client=r, celery_app=celery_app)
        server = ServerThread(app).__enter__()
        p = Producer(server.url, settings, registry, r, app.state.enqueuer, app)
        started.append((server, p, db, celery_app))
        return p

    yield start
    for server, p, db, celery_app in started:
        server.__exit__(None, None, None)
        clear_queues(p.redis, p.settings)
        p.redis.close()
        celery_app.close()
        db.close()


def version_payload(video_id: str, tenant_id: str, version: int = 1, *, status: str = "active",
                    old_status: str | None = "processing", op: str = "UPDATE",
                    schema: str = "public") -> dict:
    record = {"id": str(uuid.uuid4()), "video_id": video_id, "tenant_id": tenant_id, "version": version,
              "status": status, "storage_prefix": f"{tenant_id}/{video_id}/cropped_frames_v{version}/",
              "total_frames": 100, "chunk_count": 7, "frame_rate": 10}
    old = None if old_status is None else {**record, "status": old_status}
    return {"type": op, "table": "cropped_frames_versions", "schema": schema, "record": record,
            "old_record": old if op == "UPDATE" else None}
