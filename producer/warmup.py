"""Open the producer's connections before the first webhook arrives.

A cold producer pays, on its first requests, for TCP connects and PostgreSQL start-up (each new
psycopg connection also sets its search_path, and each new backend loads the jobs table's catalog
entries on first use), a new Redis socket per concurrent caller, and
kombu's broker connection + queue declaration per producer of Celery's pool. Measured with
``scripts/load_webhooks.py`` (1 000 events at 200/s, 16 client connections, 2 cores): every webhook
slower than 20 ms fell in the first 0.5 s of the burst (the first ones took 350–440 ms), p99 218–367 ms;
after that, none. :func:`warm_up` moves that cost to start-up, where uvicorn runs it before it
accepts connections.

Best effort: a service that is down or hung at start-up is logged and skipped — the producer must
still start (within ``producer_deadline_s``) and answer 503 (with ``Retry-After``) until it comes back.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import structlog

from boundaries.events import PROCESS_VIDEO_TASK

log = structlog.get_logger(__name__)


@dataclass
class WarmUp:
    """What :func:`warm_up` opened: connection counts per service, and errors by service name."""

    registry: int = 0
    redis: int = 0
    broker: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _warm_registry(registry: Any, n: int, timeout_s: float) -> int:
    """Open the pool's connections (its ``min_size``, else ``n`` on demand) and prime each one
    (``Jobs.prime_connection``: the catalog lookups of a new backend)."""
    pool = registry.db.pool()
    conns = []  # getconn waits for the connections the pool opens in the background
    try:
        for _ in range(min(max(n, pool.min_size), pool.max_size)):
            conns.append(pool.getconn(timeout=timeout_s))
        for c in conns:
            with c.transaction():
                registry.jobs.prime_connection(c)
    finally:
        for c in conns:
            pool.putconn(c)
    return len(conns)


def _warm_redis(client: Any, n: int) -> int:
    """Open ``n`` sockets of the client's connection pool and hand them back (they stay open)."""
    pool = client.connection_pool
    conns = []
    try:
        for _ in range(n):
            conn = pool.get_connection()
            conns.append(conn)
            conn.connect()
    finally:
        for c in conns:
            pool.release(c)
    return len(conns)


def _warm_broker(celery_app: Any, n: int, timeout_s: float) -> int:
    """Acquire ``n`` producers of Celery's producer pool at once, connect each and declare the queues
    the app routes to (kombu caches declarations per connection), then release them."""
    queues = list(celery_app.amqp.queues.values())
    # send_task resolves the result backend and builds a message with lazily imported code: ~25 ms of
    # CPU the first time, paid by every thread that races into it at once (an entry-point scan each)
    _ = celery_app.backend, celery_app.events.Dispatcher
    celery_app.amqp.create_task_message(uuid.uuid4().hex, PROCESS_VIDEO_TASK, (), {"event": {}})
    producers = []
    try:
        for _ in range(min(n, celery_app.conf.broker_pool_limit or n)):
            producer = celery_app.producer_pool.acquire(block=True, timeout=timeout_s)
            producers.append(producer)
            for q in queues:
                producer.maybe_declare(q)
    finally:
        for p in producers:
            p.release()
    return len(producers)


def warm_up(registry: Any, redis_client: Any, celery_app: Any, *, connections: int, timeout_s: float = 2.0
            ) -> WarmUp:
    """Open ``connections`` connections to PostgreSQL, Redis and the broker (blocking; run it in a thread).

    The three services are warmed concurrently and the whole call returns within about ``timeout_s``
    even when a service hangs (accepts TCP, never answers): a step still running then is abandoned
    (its own socket timeouts end it) and reported in ``errors``.

    Args:
        registry: a ``Registry`` (its ``db`` pool is warmed).
        redis_client: a redis-py client (dedupe keys).
        celery_app: the Celery app whose ``send_task`` the enqueue uses.
        connections: how many per service (``settings.producer_connections``).
        timeout_s: longest wait, for all services together (``settings.producer_deadline_s``).

    Returns:
        :class:`WarmUp`; a service that failed is named in ``errors`` and does not raise.
    """
    t0 = time.perf_counter()
    result = WarmUp()
    steps = {"registry": lambda: _warm_registry(registry, connections, timeout_s),
             "redis": lambda: _warm_redis(redis_client, connections),
             "broker": lambda: _warm_broker(celery_app, connections, timeout_s)}
    pool = ThreadPoolExecutor(len(steps), thread_name_prefix="warm-up")
    futures = {pool.submit(step): name for name, step in steps.items()}
    done, _ = wait(futures, timeout=timeout_s)
    pool.shutdown(wait=False, cancel_futures=True)
    for future, name in futures.items():
        if future not in done:
            result.errors[name] = f"no answer within {timeout_s} s"
        elif future.exception() is not None:  # a service down at start-up: start anyway, 503 until it is back
            e = future.exception()
            result.errors[name] = f"{type(e).__name__}: {e}"[:300]
        else:
            setattr(result, name, future.result())
    result.seconds = time.perf_counter() - t0
    if result.errors:
        log.warning("producer.warm_up_incomplete", registry=result.registry, redis=result.redis,
                    broker=result.broker, errors=result.errors, seconds=round(result.seconds, 3))
    else:
        log.info("producer.warmed_up", registry=result.registry, redis=result.redis, broker=result.broker,
                 seconds=round(result.seconds, 3))
    return result
