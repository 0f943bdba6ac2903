"""The producer's ASGI app: ``POST /webhooks/supabase`` → auth, validate, idempotent enqueue, 202.

Responses (COMPAT.md §7: pg_net tries once, with a 1–5 s timeout, so answer in milliseconds):

====  =====================================================================================
401   ``Authorization`` missing or wrong; Standard Webhooks signature missing/stale/wrong
413   body over ``settings.webhook_max_body_bytes``
415   ``Content-Type`` not ``application/json``
400   body is not JSON; ``Content-Length`` not an integer; client gone while sending the body
422   JSON of the wrong shape or types, ids that are not UUIDs
202   ``{"status": "queued", "job_id": …}`` (also when a repeated webhook finds the job recorded
      but never sent by a request that died, past ``resend_unsent_after_s``, and sends it)
200   ``{"status": "duplicate", "job_id": …, "reason": …}`` / ``{"status": "ignored", "reason": …}``
503   with ``Retry-After`` (seconds): Redis / broker / registry unreachable, hung (no answer within
      ``producer_deadline_s``) or read-only; or another request's job for the same key is recorded
      but not yet sent (it may still be undone; the reconciler settles it)
500   an unexpected error (a bug), logged with its traceback as ``webhook.error``
====  =====================================================================================

Bad input never yields a 5xx. Also ``GET /healthz`` (process alive), ``GET /readyz`` (Redis and
registry take writes and the object store's bucket answers a HEAD, within the deadline, else 503 with
``failed``: each failed check's one-line reason naming the setting to fix) and ``GET /metrics``
(Prometheus text format).

Run with ``uvicorn producer.app:app_from_env --factory`` (settings from ``BOUNDARIES_*`` env).
"""

from __future__ import annotations

import functools
import json
import time
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from boundaries.events import JobEvent
from boundaries.model_versions import resolve_model_version
from config.settings import PLACEHOLDER_WEBHOOK_SECRET, Settings, check_producer_timing
from producer.auth import Unauthorized, check_bearer, check_signature
from producer.dispatch import QueueUnavailable, producer_celery
from producer.enqueue import Enqueuer, EnqueueResult, fail_fast_redis
from producer.inflight import InFlightJobs
from producer.lifecycle_metrics import LifecycleCollector
from producer.metrics import ProducerMetrics
from producer.payload import WebhookEnvelope, select_event
from producer.warmup import warm_up

log = structlog.get_logger(__name__)

RETRY_AFTER_S = 5
READYZ_STORE_CACHE_S = 5.0
"""Seconds a /readyz answer of the object store is reused (a HEAD bucket per probe at most this often)."""


def _pg_options(settings: Settings) -> dict:
    """libpq parameters of the producer's registry connections, so that a thread left behind a request
    deadline ends on its own: statements and lock waits are cancelled by the server after
    ``producer_deadline_s`` (``statement_timeout``, ``lock_timeout``, in ms); a silently dead peer is
    noticed in ~10 s (keepalives) and unacknowledged writes are abandoned after 5 s
    (``tcp_user_timeout``) instead of the kernel's ~15 min retransmission timeout.

    ``synchronous_commit=off``: a webhook does not wait for PostgreSQL's WAL flush (an fsync, tens to
    hundreds of ms when the disk is busy). Rows are visible to other sessions at once; only a PostgreSQL
    crash within ~0.2 s (wal_writer_delay) can lose one, and then nothing is lost downstream: the worker
    skips a message whose job row is missing and the reconciler re-finds the active version without a
    job (a lost ``sent_at`` makes it send a harmless duplicate)."""
    ms = max(1, int(settings.producer_deadline_s * 1000))
    return {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
            "tcp_user_timeout": 5000,
            "options": f"-c statement_timeout={ms} -c lock_timeout={ms} -c synchronous_commit=off"}


class _Reject(Exception):
    def __init__(self, status: int, code: str, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status, self.code, self.reason, self.headers = status, code, reason, headers


def _validation_reason(e: ValidationError) -> str:
    parts = []
    for err in e.errors(include_url=False, include_input=False)[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)[:1000]


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _Reject(413, "too_large", f"body of {int(declared)} bytes exceeds {limit} bytes")
        except ValueError:
            raise _Reject(400, "bad_request", "Content-Length is not an integer") from None
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise _Reject(415, "media_type", f"Content-Type must be application/json, got {content_type[:60]!r}")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _Reject(413, "too_large", f"body exceeds {limit} bytes")
    except ClientDisconnect:
        raise _Reject(400, "bad_request", "client disconnected while sending the body") from None
    return bytes(body)


def _parse_int(literal: str) -> int | str:
    """JSON integers; one longer than Python converts (4 300 digits, sys.int_info) stays its text: an
    ignored column (a Postgres ``numeric``) must not drop the event, a typed one then fails (422)."""
    return int(literal) if len(literal) <= 4000 else literal


def _parse(body: bytes) -> WebhookEnvelope:
    try:
        data = json.loads(body, parse_int=_parse_int)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _Reject(400, "bad_json", f"body is not JSON: {str(e)[:200]}") from None
    try:
        return WebhookEnvelope.model_validate(data)
    except (ValidationError, RecursionError) as e:
        reason = _validation_reason(e) if isinstance(e, ValidationError) else "body nested too deeply"
        raise _Reject(422, "invalid_payload", reason) from None


class _StoreProbe:
    """The object store's readiness (HEAD bucket, :func:`boundaries.health.check_store` without a write),
    remembered for :data:`READYZ_STORE_CACHE_S` seconds. ``store`` None: built from the settings on first
    use, with one try per request and a timeout of half the producer deadline."""

    def __init__(self, settings: Settings, store=None):
        self.settings, self.store = settings, store
        self._at = float("-inf")
        self._last = None

    def __call__(self):
        from boundaries.health import Check, check_store, store_for_checks

        if time.monotonic() - self._at < READYZ_STORE_CACHE_S and self._last is not None:
            return self._last
        try:
            if self.store is None:
                self.store = store_for_checks(self.settings, timeout_s=self.settings.producer_deadline_s / 2)
            check = check_store(self.store, write=False)
        except Exception as e:  # a bug or an unknown library error: not ready, say which check
            check = Check("store", "unavailable", f"{type(e).__name__}: {' '.join(str(e).split())[:200]}")
        self._last, self._at = check, time.monotonic()
        return check


def create_app(settings: Settings, *, registry=None, redis_client=None, celery_app=None, store=None) -> FastAPI:
    """Build the producer app; whatever is not given is built from ``settings``.

    Args:
        registry: a ``boundaries.registry.registry.Registry``; default from ``settings.database_url``
            and ``settings.db_schema`` (its pool is closed on shutdown).
        redis_client: a redis-py client (dedupe keys, readiness); default from ``settings.redis_url``.
        celery_app: the Celery app used to ``send_task``; default ``make_celery(settings)`` made to
            fail fast (:func:`producer.dispatch.fail_fast_celery`; apply it to an app you pass).
        store: the object store /readyz checks (HEAD bucket); default from ``settings`` (storage_backend,
            s3_bucket, s3_endpoint_url, credentials).

    Raises:
        ValueError: timeouts that do not nest (:func:`config.settings.check_producer_timing`);
            ``webhook_secret`` empty or the placeholder of Settings (anyone who read the source
            could queue GPU jobs); ``redis_url`` / ``database_url`` unset while the object is not
            given; a checkpoint configured without ``model_version`` (see resolve_model_version).
    """
    check_producer_timing(settings)  # again: settings made by model_copy skipped the validator
    if settings.webhook_secret.get_secret_value() in ("", PLACEHOLDER_WEBHOOK_SECRET):
        raise ValueError("webhook_secret (BOUNDARIES_WEBHOOK_SECRET) is empty or the placeholder "
                         f"{PLACEHOLDER_WEBHOOK_SECRET!r}; set a random secret shared with the Supabase trigger")
    owned: list[Any] = []
    if registry is None:
        from boundaries.registry.db import Database
        from boundaries.registry.registry import Registry

        if settings.database_url is None:
            raise ValueError("database_url is not set (BOUNDARIES_DATABASE_URL); pass registry= or set it")
        n = settings.producer_connections
        db = Database(settings.database_url.get_secret_value(), settings.db_schema, max_size=n, min_size=n,
                      timeout_s=settings.producer_db_timeout_s, check=True, connect_options=_pg_options(settings))
        registry = Registry(db)
        owned.append(db)
    if redis_client is None:
        from config.celery_app import redis_py_url

        if not settings.redis_url:
            raise ValueError("redis_url is not set (BOUNDARIES_REDIS_URL); pass redis_client= or set it")
        redis_client = fail_fast_redis(redis_py_url(settings.redis_url), settings.producer_redis_timeout_s)
        owned.append(redis_client)
    if celery_app is None:
        celery_app = producer_celery(settings)
        owned.append(celery_app)
    model_version = resolve_model_version(settings)
    enqueuer = Enqueuer(settings, registry, redis_client, celery_app)
    in_flight = InFlightJobs(enqueuer)
    metrics = ProducerMetrics(collectors=(LifecycleCollector(
        registry, redis_client, queues={"high": settings.queue_high, "low": settings.queue_low},
        db_schema=settings.db_schema),))
    store_probe = _StoreProbe(settings, store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # uvicorn runs this before it accepts connections: no webhook pays a connect (producer/warmup.py)
        app.state.warm_up = await run_in_threadpool(
            warm_up, registry, redis_client, celery_app, connections=settings.producer_connections,
            timeout_s=settings.producer_deadline_s)
        yield
        for thing in owned:
            thing.close()

    app = FastAPI(title="caption-boundaries producer", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings, app.state.enqueuer, app.state.metrics = settings, enqueuer, metrics
    app.state.registry, app.state.redis = registry, redis_client

    def reject(e: _Reject) -> JSONResponse:
        metrics.rejected.labels(e.code).inc()
        log.info("webhook.rejected", status=e.status, code=e.code, reason=e.reason)
        return JSONResponse({"status": "rejected", "reason": e.reason}, status_code=e.status,
                            headers=e.headers)

    async def _within_deadline(fn, *args):
        """Run blocking ``fn`` in a worker thread; TimeoutError after ``producer_deadline_s``. The thread is
        abandoned, not killed: an enqueue finishes or undoes itself (a hung service's socket times out)."""
        with anyio.fail_after(settings.producer_deadline_s):
            return await anyio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)

    async def _enqueue(event: JobEvent) -> EnqueueResult:
        """Enqueue in a worker thread; if another request's job for the key is recorded but not yet sent,
        wait for it here (producer/inflight.py), not in the thread. Raises QueueUnavailable (503)."""
        run = functools.partial(enqueuer.enqueue, event, wait_for_owner=False)
        for _ in range(3):
            result = await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
            if result.status != "in_flight":
                return result
            outcome = await in_flight.wait(result.job_id, settings.producer_deadline_s / 2)
            if outcome == "sent":
                return EnqueueResult(result.job_id, "duplicate")
            if outcome != "gone":  # still unsent: its owner may yet undo it; the reconciler settles it
                raise QueueUnavailable(f"job {result.job_id} of another request is not sent yet ({outcome})")
        raise QueueUnavailable(f"job {event.idempotency_key} kept being undone by other requests")

    async def handle(request: Request) -> JSONResponse:
        try:
            check_bearer(request.headers.get("authorization"), settings.webhook_secret)
        except Unauthorized as e:
            raise _Reject(401, "unauthorized", str(e), {"WWW-Authenticate": "Bearer"}) from None
        body = await _read_body(request, settings.webhook_max_body_bytes)
        if settings.webhook_hmac_secret is not None:
            try:
                check_signature(request.headers, body, settings.webhook_hmac_secret,
                                tolerance_s=settings.webhook_timestamp_tolerance_s)
            except Unauthorized as e:
                raise _Reject(401, "bad_signature", str(e)) from None
        env = _parse(body)
        try:
            sel = select_event(env, settings.webhook_tables, settings.webhook_schemas or (settings.db_schema,))
        except ValidationError as e:
            raise _Reject(422, "invalid_payload", _validation_reason(e)) from None
        if not sel.selected:
            metrics.ignored.labels(sel.code).inc()
            log.info("webhook.ignored", table=env.table, type=env.type, reason=sel.reason)
            return JSONResponse({"status": "ignored", "reason": sel.reason}, status_code=200)
        event = JobEvent(video_id=sel.video_id, tenant_id=sel.tenant_id, cropped_frames_version=sel.version,
                         model_version=model_version, priority=settings.default_priority, source="webhook")
        t0 = time.perf_counter()
        try:
            with anyio.fail_after(settings.producer_deadline_s):
                result = await _enqueue(event)
        except (QueueUnavailable, TimeoutError) as e:
            error = str(e) or f"no answer within {settings.producer_deadline_s} s"
            log.warning("webhook.unavailable", error=error, video_id=event.video_id)
            raise _Reject(503, "unavailable", "queue unavailable; retry later",
                          {"Retry-After": str(RETRY_AFTER_S)}) from None
        finally:
            metrics.enqueue_latency.observe(time.perf_counter() - t0)
        ctx = {"video_id": event.video_id, "version": event.cropped_frames_version, "job_id": result.job_id}
        if result.status == "duplicate":
            metrics.duplicate.inc()
            log.info("webhook.duplicate", **ctx)
            return JSONResponse({"status": "duplicate", "job_id": result.job_id,
                                 "reason": "a job exists for this video version and model"}, status_code=200)
        metrics.accepted.inc()
        log.info("webhook.accepted", reason=sel.reason, **ctx)
        return JSONResponse({"status": "queued", "job_id": result.job_id}, status_code=202)

    @app.post("/webhooks/supabase")
    async def supabase_webhook(request: Request) -> Response:
        metrics.received.inc()
        try:
            return await handle(request)
        except _Reject as e:
            return reject(e)
        except Exception:
            log.exception("webhook.error")
            metrics.rejected.labels("internal").inc()
            return JSONResponse({"status": "error", "reason": "internal error"}, status_code=500)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        failed: dict[str, str] = {}

        def probe() -> dict[str, bool]:
            try:  # a write, as the enqueue does: a replica (READONLY) or a full Redis is not ready
                redis_ok = bool(redis_client.set(f"boundaries:readyz:{settings.db_schema}", "1", ex=60))
            except Exception as e:
                redis_ok = False
                failed["redis"] = f"Redis (BOUNDARIES_REDIS_URL) did not take a write: {type(e).__name__}"
            registry_ok = registry.db.ping(writable=True)
            if not registry_ok:
                failed["registry"] = ("the registry (BOUNDARIES_DATABASE_URL) did not answer or is read-only;"
                                      " `boundaries doctor` says more")
            store = store_probe()
            if not store.ok:
                failed["store"] = store.detail
            return {"redis": redis_ok, "registry": registry_ok, "store": store.ok}

        try:
            checks = await _within_deadline(probe)
        except TimeoutError:
            checks = {"redis": "redis" not in failed, "registry": "registry" not in failed, "store": False,
                      "timed_out": True}
            failed.setdefault("timed_out", f"the checks took longer than {settings.producer_deadline_s} s "
                                           "(BOUNDARIES_PRODUCER_DEADLINE_S)")
        ok = all(checks.values()) and not failed
        body = {"status": "ok" if ok else "unavailable", **checks}
        if not ok:
            body["failed"] = dict(failed)
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        # the lifecycle collector reads PostgreSQL and Redis: off the event loop
        return Response(await run_in_threadpool(metrics.render), media_type=ProducerMetrics.content_type)

    return app


def app_from_env() -> FastAPI:
    """uvicorn ``--factory`` entry: settings from the ``BOUNDARIES_*`` environment."""
    from config.logging import configure_logging

    configure_logging()
    return create_app(Settings())
