"""The reconciler: finds the "frames cropped" events whose webhook never came (COMPAT.md §7: pg_net
tries once, no retries, lost on a DB crash) and enqueues them.

An active cropped-frames version of a live video with no job for the current model_version is
enqueued with ``source="reconciler"`` through the same idempotent :class:`Enqueuer` as webhooks, so
running it twice, or concurrently with webhooks, still yields one job per idempotency key. It also
re-sends ``queued`` jobs whose message was never marked sent (:func:`resend_unsent`).

Scheduling: ``boundaries reconcile --loop`` (boundaries_cli) runs a pass at start and then every
``settings.reconcile_interval_s`` seconds; an error ends only that pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from boundaries.events import JobEvent
from boundaries.model_versions import resolve_model_version
from producer.dispatch import dispatch_rows

if TYPE_CHECKING:
    from boundaries.registry.registry import Registry
    from config.settings import Settings
    from producer.enqueue import Enqueuer

log = structlog.get_logger(__name__)


def reconcile(settings: Settings, registry: Registry, enqueuer: Enqueuer, *, limit: int = 1000) -> int:
    """Enqueue up to ``limit`` active versions that have no job, and re-send jobs recorded but never sent
    (:func:`resend_unsent`). Returns how many messages were sent.

    Versions that turn out to have a job meanwhile (a webhook won the race) count as duplicates,
    not as queued.

    Raises:
        TransientError (QueueUnavailable): Redis/broker/registry unreachable; the versions not yet
            enqueued are found again on the next run.
    """
    model_version = resolve_model_version(settings)
    rows = registry.active_versions_without_job(model_version, limit=limit)
    queued = duplicates = 0
    for row in rows:
        event = JobEvent(video_id=str(row["video_id"]), tenant_id=str(row["tenant_id"]),
                         cropped_frames_version=int(row["version"]), model_version=model_version,
                         priority=settings.reconcile_priority, source="reconciler")
        result = enqueuer.enqueue(event)
        if result.status == "queued":
            queued += 1
            log.info("reconcile.enqueued", video_id=event.video_id, version=event.cropped_frames_version,
                     job_id=result.job_id)
        else:
            duplicates += 1
    resent = resend_unsent(settings, registry, enqueuer, limit=limit)
    log.info("reconcile.completed", found=len(rows), queued=queued, duplicates=duplicates, resent=resent,
             model_version=model_version)
    return queued + resent


def resend_unsent(settings: Settings, registry: Registry, enqueuer: Enqueuer, *, limit: int = 1000) -> int:
    """Send the messages of ``queued`` jobs recorded more than ``settings.resend_unsent_after_s`` ago and
    never marked sent (a producer that could neither send nor undo: broker and PostgreSQL failing
    together, or a crash between the two). Returns how many were sent.

    Raises:
        TransientError (QueueUnavailable): the broker is unreachable; the job not sent is unmarked and
            found again on the next run.
    """
    rows = registry.jobs.claim_unsent(settings.resend_unsent_after_s, limit=limit)

    def sent(row: dict) -> None:
        log.warning("reconcile.resent_unsent_job", job_id=str(row["id"]), video_id=str(row["video_id"]))

    return dispatch_rows(enqueuer.celery, settings, registry.jobs, rows, "reconciler", on_sent=sent)
