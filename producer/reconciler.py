"""The reconciler: finds the "frames cropped" events whose webhook never came (COMPAT.md §7: pg_net
tries once, no retries, lost on a DB crash) and enqueues them.

An active cropped-frames version of a live video with no job for the current model_version is
enqueued with ``source="reconciler"`` through the same idempotent :class:`Enqueuer` as webhooks, so
running it twice, or concurrently with webhooks, still yields one job per idempotency key. It also
re-sends ``queued`` jobs whose message was never marked sent (:func:`resend_unsent`).

Scheduling: ``boundaries reconcile --loop`` (or :func:`reconcile_forever` in a process of its own) runs
a pass at start and then every ``settings.reconcile_interval_s`` seconds; an error ends only that pass.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import structlog

from boundaries.errors import TransientError
from boundaries.events import JobEvent
from boundaries.model_versions import resolve_model_version

if TYPE_CHECKING:
    from boundaries.enqueue import Enqueuer
    from boundaries.registry.registry import Registry
    from config.settings import Settings

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
    rows = registry.claim_unsent_jobs(settings.resend_unsent_after_s, limit=limit)

    def send(row: dict) -> None:
        enqueuer.send_existing(row)
        log.warning("reconcile.resent_unsent_job", job_id=str(row["id"]), video_id=str(row["video_id"]))

    registry.send_claimed(rows, send)
    return len(rows)


def reconcile_forever(settings: Settings, registry: Registry, enqueuer: Enqueuer, *,
                      stop: threading.Event | None = None, interval_s: float | None = None,
                      limit: int = 1000) -> None:
    """Run :func:`reconcile` now and every ``interval_s`` (default ``settings.reconcile_interval_s``)
    seconds until ``stop`` is set. Errors are logged and the next tick tries again."""
    stop = stop or threading.Event()
    interval = settings.reconcile_interval_s if interval_s is None else interval_s
    while not stop.is_set():
        try:
            reconcile(settings, registry, enqueuer, limit=limit)
        except TransientError as e:
            log.warning("reconcile.failed", error=str(e), retry_in_s=interval)
        except Exception:  # a daemon loop outlives one bad pass; the next pass starts over
            log.exception("reconcile.error", retry_in_s=interval)
        stop.wait(interval)


def main(argv: list[str] | None = None) -> int:
    """``python -m producer.reconciler [--once] [--limit N] [--interval-s S]`` (settings from env)."""
    import argparse

    from boundaries.enqueue import Enqueuer
    from config.logging import configure_logging
    from config.settings import Settings

    ap = argparse.ArgumentParser(description="Enqueue active cropped-frames versions that have no job.")
    ap.add_argument("--once", action="store_true", help="run one pass and exit (default: loop)")
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--interval-s", type=float, default=None)
    args = ap.parse_args(argv)
    configure_logging()
    settings = Settings()
    enqueuer = Enqueuer.from_settings(settings)
    try:
        if args.once:
            print(reconcile(settings, enqueuer.registry, enqueuer, limit=args.limit))
        else:
            reconcile_forever(settings, enqueuer.registry, enqueuer, interval_s=args.interval_s, limit=args.limit)
    except KeyboardInterrupt:
        pass
    finally:
        enqueuer.registry.db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
