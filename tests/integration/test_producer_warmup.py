"""The producer opens its connections at start-up (producer/warmup.py) and starts even when the services
it needs are down, answering 503 quickly until they are back. Real uvicorn, Redis and PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import psycopg
import pytest
import redis

from boundaries.registry.db import Database
from producer.app import create_app
from tests.integration.test_producer_support import ServerThread, clear_queues, make_settings, version_payload
from tests.services import free_port

pytestmark = pytest.mark.integration

CONNECTIONS = 6


def _redis_clients(r: redis.Redis) -> int:
    return len(r.client_list())


def _pg_client_backends(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                         " AND datname = current_database()").fetchone()[0]


@pytest.fixture
def owned_producer(redis_url, pg_dsn, db_schema):
    """A producer that builds (and warms) its own registry pool, Redis client and Celery app."""
    Database(pg_dsn, db_schema).migrate()
    settings = make_settings(redis_url, pg_dsn, db_schema, producer_connections=CONNECTIONS)
    r = redis.Redis.from_url(redis_url)
    with ServerThread(create_app(settings)) as server:
        yield server, settings, r
    clear_queues(r, settings)
    r.close()


def test_a_burst_after_start_up_opens_no_new_connection(owned_producer, pg_dsn):
    server, settings, r = owned_producer
    redis_before, pg_before = _redis_clients(r), _pg_client_backends(pg_dsn)
    barrier = threading.Barrier(CONNECTIONS)
    codes: list[int] = []

    def send() -> None:
        payload = version_payload(str(uuid.uuid4()), str(uuid.uuid4()))
        with httpx.Client(timeout=10) as c:
            barrier.wait()
            codes.append(c.post(server.url + "/webhooks/supabase", json=payload,
                                headers={"Authorization": f"Bearer {settings.webhook_secret.get_secret_value()}"}
                                ).status_code)

    threads = [threading.Thread(target=send) for _ in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [202] * CONNECTIONS
    assert r.llen(settings.queue_high) + r.llen(settings.queue_low) == CONNECTIONS
    # every connection the burst used was opened at start-up (Redis counts the dedupe client and the broker's)
    assert _redis_clients(r) == redis_before
    assert _pg_client_backends(pg_dsn) == pg_before


def test_starts_with_services_down_and_answers_503_fast(db_schema):
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    dead_pg = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    settings = make_settings(dead_redis, dead_pg, db_schema, producer_connections=2)
    app = create_app(settings)
    t0 = time.perf_counter()
    with ServerThread(app) as server:
        started_s = time.perf_counter() - t0
        assert set(app.state.warm_up.errors) == {"registry", "redis", "broker"}
        assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
        assert httpx.get(server.url + "/readyz", timeout=10).status_code == 503
        t1 = time.perf_counter()
        resp = httpx.post(server.url + "/webhooks/supabase", json=version_payload(str(uuid.uuid4()),
                                                                                  str(uuid.uuid4())),
                          headers={"Authorization": f"Bearer {settings.webhook_secret.get_secret_value()}"},
                          timeout=10)
        answered_s = time.perf_counter() - t1
    assert started_s < 8, started_s
    assert resp.status_code == 503 and resp.headers["Retry-After"].isdigit()
    assert answered_s < 1.5, answered_s  # pg_net gives a webhook 1-5 s (COMPAT.md §7)


def test_registry_down_gives_503_within_the_db_timeout_and_frees_the_dedupe_key(redis_url, db_schema):
    dead_pg = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    settings = make_settings(redis_url, dead_pg, db_schema, producer_connections=2, producer_db_timeout_s=0.5)
    video_id = str(uuid.uuid4())
    r = redis.Redis.from_url(redis_url)
    try:
        with ServerThread(create_app(settings)) as server:
            t0 = time.perf_counter()
            resp = httpx.post(server.url + "/webhooks/supabase", json=version_payload(video_id, str(uuid.uuid4())),
                              headers={"Authorization": f"Bearer {settings.webhook_secret.get_secret_value()}"},
                              timeout=10)
            answered_s = time.perf_counter() - t0
        assert resp.status_code == 503, resp.text
        assert answered_s < 1.5, answered_s
        # nothing left that would make the next delivery (or the reconciler's) look like a duplicate
        assert list(r.scan_iter(f"boundaries:dedupe:{settings.db_schema}:{video_id}:*")) == []
        assert r.llen(settings.queue_high) + r.llen(settings.queue_low) == 0
    finally:
        r.delete(settings.queue_high, settings.queue_low)
        r.close()


def test_producer_sessions_do_not_wait_for_wal_flush_and_have_statement_deadlines(owned_producer):
    # the webhook path must not wait for an fsync (measured under disk pressure: p50 90 -> 5 ms), and a
    # statement or lock wait must end at the request deadline (an abandoned enqueue ends on its own)
    server, settings, _r = owned_producer
    app = server.server.config.app
    with app.state.registry.db.connection() as c:
        got = c.execute("SELECT current_setting('synchronous_commit') AS sc,"
                        " (SELECT setting::int FROM pg_settings WHERE name = 'statement_timeout') AS st,"
                        " (SELECT setting::int FROM pg_settings WHERE name = 'lock_timeout') AS lt").fetchone()
    ms = int(settings.producer_deadline_s * 1000)
    assert (got["sc"], got["st"], got["lt"]) == ("off", ms, ms), got
