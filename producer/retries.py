"""Due retries: a job whose attempt failed transiently waits in the registry (``retry_at``), not in a
worker's hands as a delayed (ETA/countdown) message — a broker restart while a worker held one took the
worker down (issue 12). :func:`dispatch_due_retries` sends the jobs whose ``retry_at`` has passed; the
reconcile loop (``boundaries reconcile --loop``) and ``boundaries run`` call it every
``retry_poll_interval_s`` seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from producer.dispatch import dispatch_rows

if TYPE_CHECKING:
    from celery import Celery

    from boundaries.registry.jobs import Jobs
    from config.settings import Settings

log = structlog.get_logger(__name__)


def dispatch_due_retries(settings: Settings, jobs: Jobs, celery_app: Celery, *, limit: int = 1000) -> int:
    """Send the jobs whose retry is due (``Jobs.claim_due_retries``) to ``settings.retry_priority``'s queue
    (low by default: fresh webhooks go first). Returns how many were sent.

    Raises:
        QueueUnavailable: the broker is unreachable; the jobs not sent are due again at once (the next
            poll sends them).
    """
    rows = jobs.claim_due_retries(limit)

    def sent(row: dict) -> None:
        log.info("retry.dispatched", job_id=str(row["id"]), attempts=row["attempts"])

    return dispatch_rows(celery_app, settings, jobs, rows, "retry", on_sent=sent, priority=settings.retry_priority,
                         undo=jobs.reschedule_retry)
