"""The sweep: re-sends jobs whose worker vanished and jobs whose message was lost.

- ``running`` jobs whose heartbeat is older than ``heartbeat_stale_s`` (worker killed; its attempt row
  is closed as ``abandoned`` and the job goes back to ``queued``), and
- ``queued`` jobs untouched for ``sweep_queued_after_s`` (a crash between recording a job and sending
  it, or a broker that lost its queue; a job waiting for a retry that is not due yet is left alone).

A stale ``running`` job that has used ``max_attempts`` starts is dead-lettered instead (attempts are
counted when they start: a job that kills its worker is not requeued forever).

The row changes are one transition (``Jobs.requeue``); the messages go out through
:func:`producer.dispatch.dispatch`. Re-sending is safe: the worker's claim rule and the idempotent
pipeline make a duplicate message a no-op. Scheduling: ``boundaries sweep --loop``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from producer.dispatch import dispatch_rows

if TYPE_CHECKING:
    from celery import Celery

    from boundaries.registry.jobs import Jobs
    from config.settings import Settings

log = structlog.get_logger(__name__)


@dataclass
class SweepResult:
    requeued_running: list[str]
    resent_queued: list[str]
    dead_lettered: list[str] = field(default_factory=list)


def sweep(settings: Settings, jobs: Jobs, celery_app: Celery, *, limit: int = 1000) -> SweepResult:
    """Requeue stale ``running`` jobs and re-send old ``queued`` ones (see module docstring).

    ``settings``: heartbeat_stale_s, sweep_queued_after_s (seconds), queue names; the messages go to
    ``sweep_priority``'s queue (low by default: fresh webhooks first). If a send fails, the jobs
    not sent stay ``queued`` with ``sent_at`` cleared (the reconciler re-sends them after
    ``resend_unsent_after_s``) and QueueUnavailable is raised.
    """
    stale, old, dead = jobs.requeue(stale_after_s=settings.heartbeat_stale_s,
                                    queued_after_s=settings.sweep_queued_after_s, max_attempts=settings.max_attempts,
                                    limit=limit)
    result = SweepResult([str(r["id"]) for r in stale], [str(r["id"]) for r in old], dead)
    dispatch_rows(celery_app, settings, jobs, [*stale, *old], "sweep", priority=settings.sweep_priority)
    if stale or old or dead:
        log.warning("jobs.swept", requeued_running=len(stale), resent_queued=len(old), dead_lettered=len(dead))
    return result
