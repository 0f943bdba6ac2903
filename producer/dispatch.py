"""``dispatch``: the ONE function that sends a job message (webhook, reconciler, sweep, dead-letter
replay, due retries), with one set of send options and one mapping of broker errors.

Message: task ``boundaries.process_video`` by name, kwargs ``{"event": JobEvent JSON}`` with ``job_id``
set, to the queue of the event's priority (``config.celery_app.queue_for``), with Celery task id = the
job id (``celery inspect``, Flower and the logs name the job). Every send of a job (a re-send, a retry, a
replay) carries the same task id: a duplicate message is harmless, the worker claims a job by status and
attempt (boundaries/registry/jobs.py), never by task id.

Send options (:data:`SEND_OPTIONS`): ``retry=False`` — Celery's default publish retry waits seconds
for a broker that is down, longer than a webhook may take (pg_net waits 1–5 s, COMPAT.md §7); a failed
send is reported at once and the job row says what to do (``sent_at`` cleared: the reconciler re-sends).
Senders build their Celery app with :func:`producer_celery` (short connect/socket timeouts, no
connection retries).

Errors: broker errors (kombu ``OperationalError``, redis-py errors, ``OSError``) become
:class:`QueueUnavailable`; anything else is a bug and propagates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import kombu.exceptions
import redis
import structlog

from boundaries.errors import TransientError
from boundaries.events import PROCESS_VIDEO_TASK, JobEvent
from config.celery_app import make_celery, queue_for

if TYPE_CHECKING:
    from celery import Celery

    from boundaries.registry.jobs import Jobs
    from config.settings import Settings

log = structlog.get_logger(__name__)

SEND_OPTIONS: dict = {"retry": False}


class QueueUnavailable(TransientError):
    """Redis, the Celery broker or the registry could not be reached; retry later (HTTP 503)."""

    error_type = "queue_unavailable"


def is_broker_error(e: BaseException) -> bool:
    """The broker could not take the message (down, hung, restarting, refused)."""
    return isinstance(e, kombu.exceptions.OperationalError | redis.exceptions.RedisError | OSError)


def fail_fast_celery(celery_app: Celery, timeout_s: float = 2.0) -> Celery:
    """Make ``send_task`` on ``celery_app`` fail in about ``timeout_s`` seconds when the broker is down or
    hung (instead of ~6 s, or never): short broker connect/socket timeouts, no connection retries.
    Only for a sending app, never a worker's. Returns the app."""
    conf = celery_app.conf
    conf.broker_transport_options = {**(conf.broker_transport_options or {}),
                                     "socket_connect_timeout": min(0.5, timeout_s), "socket_timeout": timeout_s,
                                     "max_retries": 0}
    conf.broker_connection_timeout = 1
    return celery_app


def producer_celery(settings: Settings) -> Celery:
    """The Celery app every sender uses: :func:`config.celery_app.make_celery` made to fail fast within
    ``settings.producer_redis_timeout_s`` seconds. Raises ValueError as make_celery does."""
    return fail_fast_celery(make_celery(settings), settings.producer_redis_timeout_s)


def dispatch(celery_app: Celery, settings: Settings, event: JobEvent) -> str:
    """Send the message of the recorded job ``event`` (``job_id`` set) to its priority's queue.

    Returns the queue name.

    Raises:
        QueueUnavailable: the broker is unreachable (the message may not be out).
        ValueError: ``event.job_id`` is unset (only recorded jobs are sent).
    """
    if event.job_id is None:
        raise ValueError(f"dispatch needs a recorded job (job_id unset) for {event.idempotency_key}")
    queue = queue_for(settings, event.priority)
    try:
        celery_app.send_task(PROCESS_VIDEO_TASK, kwargs={"event": event.model_dump(mode="json")}, queue=queue,
                             task_id=str(event.job_id), **SEND_OPTIONS)
    except Exception as e:
        if is_broker_error(e):
            raise QueueUnavailable(f"broker unreachable sending job {event.job_id} to queue {queue!r}: {e}") from e
        raise
    return queue


def dispatch_rows(celery_app: Celery, settings: Settings, jobs: Jobs, rows: Iterable[dict], source: str,
                  on_sent: Callable[[dict], None] | None = None, *, priority: str | None = None,
                  undo: Callable[[str], None] | None = None) -> int:
    """Send the messages of job rows already marked sent (``Jobs.claim_unsent``, ``Jobs.requeue``,
    ``Jobs.claim_due_retries``); when a send fails, ``undo(job_id)`` that row and the rows not yet sent
    (default ``jobs.unmark_sent``: the reconciler re-sends them), then re-raise. ``priority``: send to that
    priority's queue instead of each row's. Returns how many were sent.

    Raises:
        QueueUnavailable: the broker is unreachable.
    """
    rows = list(rows)
    undo = undo or jobs.unmark_sent
    for i, row in enumerate(rows):
        try:
            event = JobEvent.from_job_row(row, source)
            if priority is not None:
                event = event.model_copy(update={"priority": priority})
            dispatch(celery_app, settings, event)
        except Exception:
            for rest in rows[i:]:
                undo(str(rest["id"]))
            raise
        if on_sent is not None:
            on_sent(row)
    return len(rows)
