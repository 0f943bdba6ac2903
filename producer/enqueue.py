"""The idempotent enqueue used by the webhook producer, the reconciler and the CLI.

A job is recorded at most once per idempotency key ``(video_id, cropped_frames_version,
model_version)`` (COMPAT.md §6); its message may be sent more than once (a re-send after a failure),
which the worker's claim by status and attempt makes harmless:

1. Redis ``SET NX`` on ``boundaries:dedupe:{db_schema}:{key}``: a fast filter for repeated webhooks.
   The winner sets ``pending`` with a short TTL (``settings.dedupe_pending_ttl_s``) and, once the
   job is sent, the job id with ``settings.dedupe_ttl_s``. A webhook finding a job id whose job exists
   is a duplicate after one primary-key read (no INSERT); one finding ``pending`` (a request in flight, or
   one that died) or a job id without a job falls through to step 2, so a key left by a crashed or
   failed request never hides work. Other sources always fall through; ``replay`` skips the key.
2. ``Jobs.record`` — the UNIQUE key in PostgreSQL is the source of truth. The job row is
   written ``queued`` *before* the task is sent.
3. :func:`producer.dispatch.dispatch` sends the job's message; then the row's ``sent_at`` is set.
   A ``queued`` row left without ``sent_at`` (the send failed and so did the undo) is re-sent by the
   reconciler after ``settings.resend_unsent_after_s``.

If Redis, the broker or the registry is unreachable, :class:`QueueUnavailable` (a TransientError)
is raised and the half state of *this call* is undone (the job row it created, the dedupe key it
set), so that a retry or the reconciler finds the event again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import psycopg
import psycopg_pool
import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from boundaries.events import JobEvent
from boundaries.registry.db import Database
from boundaries.registry.registry import Registry
from config.celery_app import redis_py_url
from producer.dispatch import QueueUnavailable, dispatch, dispatch_rows, producer_celery

if TYPE_CHECKING:
    from celery import Celery

    from config.settings import Settings

log = structlog.get_logger(__name__)

_PENDING = "pending"


@dataclass
class EnqueueResult:
    """``queued``: this call sent the job's message; ``duplicate``: a job exists and is sent;
    ``in_flight`` (only with ``wait_for_owner=False``): another request recorded the job and has not sent
    it yet — it may still send or undo it (see :meth:`Enqueuer.send_state`)."""

    job_id: str | None
    status: Literal["queued", "duplicate", "in_flight"]


def dedupe_key(settings: Settings, event: JobEvent) -> str:
    """Redis key of an event's dedupe marker (namespaced by the registry schema)."""
    return f"boundaries:dedupe:{settings.db_schema}:{event.idempotency_key}"


def fail_fast_redis(url: str, timeout_s: float = 2.0):
    """A redis-py client that fails fast when Redis is down or hung (redis-py 8 retries with backoff
    for seconds by default; pg_net waits 1–5 s for the whole webhook, COMPAT.md §7).

    Connect timeout 0.5 s; a reply must come within ``timeout_s`` seconds. One immediate retry on a
    connection error (a socket broken by a Redis restart), none on a timeout (a hung Redis would
    double the wait).
    """
    retry = Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,))
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=min(0.5, timeout_s),
                                retry=retry)


def _is_redis_error(e: BaseException) -> bool:
    return isinstance(e, redis.exceptions.RedisError | OSError)


def _is_db_error(e: BaseException) -> bool:
    """The registry cannot take the write now (down, hung, restarting, read-only standby after a
    failover): retry later. Errors of our SQL or data (ProgrammingError, DataError…) are not."""
    return isinstance(e, psycopg.OperationalError | psycopg.InterfaceError | psycopg_pool.PoolTimeout
                      | psycopg.errors.ReadOnlySqlTransaction)


class Enqueuer:
    """Idempotent enqueue of :class:`JobEvent` s. Thread-safe (redis-py, psycopg pool and Celery's
    producer pool are); one instance per process."""

    def __init__(self, settings: Settings, registry: Registry, redis_client: Any, celery_app: Celery):
        self.settings = settings
        self.registry = registry
        self.redis = redis_client
        self.celery = celery_app

    @classmethod
    def from_settings(cls, settings: Settings) -> Enqueuer:
        """Build the registry (``database_url``, ``db_schema``), Redis client and Celery app from settings.

        Raises:
            ValueError: ``redis_url`` or ``database_url`` is not set.
        """
        if settings.database_url is None or not settings.redis_url:
            raise ValueError("Enqueuer.from_settings needs redis_url and database_url (BOUNDARIES_*)")
        registry = Registry(Database(settings.database_url.get_secret_value(), settings.db_schema))
        client = fail_fast_redis(redis_py_url(settings.redis_url), settings.producer_redis_timeout_s)
        return cls(settings, registry, client, producer_celery(settings))

    def enqueue(self, event: JobEvent, *, wait_for_owner: bool = True) -> EnqueueResult:
        """Record and send ``event`` unless a job with its idempotency key exists.

        Returns ``EnqueueResult(job_id, "queued")`` when a task was sent, else
        ``EnqueueResult(job_id, "duplicate")``. When another request recorded the job and has not sent it
        yet, this call waits (up to half ``producer_deadline_s``, polling) for it to be sent or undone;
        with ``wait_for_owner=False`` it returns ``EnqueueResult(job_id, "in_flight")`` at once instead
        (the producer waits without holding a thread, once per job: producer/inflight.py).

        Raises:
            QueueUnavailable: Redis / the broker / PostgreSQL unreachable; nothing of this call is left.
        """
        key = dedupe_key(self.settings, event)
        log_ = log.bind(idempotency_key=event.idempotency_key, source=event.source)
        own_key = False
        if event.source != "replay":
            try:
                own_key = bool(self.redis.set(key, _PENDING, nx=True, ex=self.settings.dedupe_pending_ttl_s))
                if not own_key and event.source == "webhook":
                    held = self.redis.get(key)
                    job_id = held.decode() if isinstance(held, bytes) else held
                    if job_id not in (None, _PENDING) and self.registry.jobs.get(job_id) is not None:
                        return EnqueueResult(job_id, "duplicate")
                    # 'pending' (a request in flight, or one that failed or died before it could clear the
                    # key) or a released job: the registry's unique key decides below
            except Exception as e:
                if _is_redis_error(e):
                    raise QueueUnavailable(f"Redis unreachable for dedupe key {key!r}: {e}") from e
                if _is_db_error(e):
                    raise QueueUnavailable(f"registry unreachable checking job {event.idempotency_key}: {e}") from e
                raise

        for _round in range(3):
            try:
                job_id, created = self.registry.jobs.record(event)
                # another request's job: answer "duplicate" only once it is sent (or past queued), never
                # while its owner may still undo it (a failed send deletes the row)
                if job_id is None:  # the row we conflicted with was undone meanwhile
                    state = "gone"
                elif created:
                    state = "created"
                else:
                    state = self._await_sent(job_id) if wait_for_owner else self.send_state(job_id)
                if state == "unsent" and self._send_orphan(job_id):
                    # recorded longer ago than any request lasts and never sent (its owner died, or could
                    # neither send nor undo): sent now, as the reconciler's resend_unsent would
                    state = "orphan_sent"
            except QueueUnavailable:
                self._forget(key, own_key)
                raise
            except Exception as e:
                self._forget(key, own_key)
                if _is_db_error(e):
                    msg = f"registry unreachable recording job {event.idempotency_key}: {e}"
                    raise QueueUnavailable(msg) from e
                raise
            if state == "created":
                break
            if state == "orphan_sent":
                if event.source != "replay":
                    self._remember(key, job_id)
                return EnqueueResult(job_id, "queued")
            if state == "unsent" and not wait_for_owner:
                self._forget(key, own_key)
                return EnqueueResult(job_id, "in_flight")
            if state == "unsent" and event.source == "webhook":
                # its owner is still between recording and sending and may yet undo the row, so "a job
                # exists" cannot be promised; the reconciler settles it either way (resend_unsent, or the
                # active version without a job)
                self._forget(key, own_key)
                raise QueueUnavailable(f"job {job_id} of another request is not sent yet; retry later")
            if state != "gone":
                if own_key:
                    self._remember(key, job_id)
                return EnqueueResult(job_id, "duplicate")
        else:
            self._forget(key, own_key)
            raise QueueUnavailable(f"job {event.idempotency_key} was undone by its owner three times; retry later")

        queued = event.model_copy(update={"job_id": job_id})
        try:
            queue = dispatch(self.celery, self.settings, queued)
        except Exception:
            self._undo_job(job_id, event)
            self._forget(key, own_key)
            raise
        self._mark_sent(job_id)
        if event.source != "replay":  # also over a 'pending' left by a failed or dead request
            self._remember(key, job_id)
        log_.info("job.enqueued", job_id=job_id, queue=queue)
        return EnqueueResult(job_id, "queued")

    def send_existing(self, row: dict, *, source: str = "reconciler") -> None:
        """Send the message of an already recorded job (a registry row with its ``id``) to its priority's
        queue. A duplicate message is harmless (the worker claims a job by status and attempt).

        Raises:
            QueueUnavailable: the broker is unreachable.
        """
        dispatch(self.celery, self.settings, JobEvent.from_job_row(row, source))

    def _send_orphan(self, job_id: str) -> bool:
        """Claim and send ``job_id`` if it is queued, unsent and older than ``resend_unsent_after_s``.

        Returns whether it was sent. Raises QueueUnavailable (the claim undone) when the broker is down.
        """
        rows = self.registry.jobs.claim_unsent(self.settings.resend_unsent_after_s, limit=1, job_id=job_id)
        if not rows:
            return False
        dispatch_rows(self.celery, self.settings, self.registry.jobs, rows, "webhook")
        log.warning("enqueue.sent_orphaned_job", job_id=job_id)
        return True

    def send_state(self, job_id: str) -> Literal["sent", "unsent", "gone"]:
        """Whether a recorded job's message is out: ``sent`` (``sent_at`` set, or no longer queued),
        ``unsent``, or ``gone`` (the row was undone). Raises psycopg errors of the registry."""
        row = self.registry.jobs.send_state(job_id)
        if row is None:
            return "gone"
        return "sent" if row["status"] != "queued" or row["sent_at"] is not None else "unsent"

    def _await_sent(self, job_id: str) -> Literal["sent", "unsent", "gone"]:
        """Poll the job another request recorded until it is sent (``sent_at`` set or no longer queued) or
        gone (its owner's send failed and it undid the row), for at most half ``producer_deadline_s``.

        Raises:
            psycopg errors of the registry (mapped by the caller).
        """
        deadline = time.monotonic() + self.settings.producer_deadline_s / 2
        delay = 0.005
        while True:
            state = self.send_state(job_id)
            if state != "unsent" or time.monotonic() + delay > deadline:
                return state
            time.sleep(delay)
            delay = min(2 * delay, 0.05)

    # --- undo helpers (best effort: the service may be the one that is down) ----------------------
    def _mark_sent(self, job_id: str) -> None:
        try:
            self.registry.jobs.mark_sent(job_id)
        except Exception as e:  # the message is out; at worst the reconciler sends a harmless duplicate
            log.warning("enqueue.mark_sent_failed", job_id=job_id, error=str(e))

    def _remember(self, key: str, job_id: str) -> None:
        try:
            self.redis.set(key, job_id, ex=self.settings.dedupe_ttl_s)
        except Exception as e:  # the pending marker still dedupes; not worth failing the request
            log.warning("enqueue.dedupe_update_failed", key=key, error=str(e))

    def _forget(self, key: str, own_key: bool) -> None:
        if not own_key:
            return
        try:
            self.redis.delete(key)
        except Exception as e:
            log.warning("enqueue.dedupe_delete_failed", key=key, error=str(e))

    def _undo_job(self, job_id: str, event: JobEvent) -> None:
        """Delete the job row this call created and never sent (a replayed job goes back to failed)."""
        try:  # never a row another request has sent meanwhile (an orphan re-send)
            self.registry.jobs.undo(job_id, replay=event.source == "replay")
        except Exception as e:
            log.error("enqueue.undo_failed", job_id=job_id, error=str(e))
