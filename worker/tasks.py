"""Celery task: decode the message, bind context, call the pipeline, map errors to retry or fail.

One function decides retry vs give up (:func:`handle`): permanent errors and the last attempt go to
a dead letter (limit violations to a rejection row) and the job is marked failed; transient errors
retry with capped exponential backoff and jitter (``max_attempts`` per round: a replayed dead letter
gets a fresh budget). A message for a job that a live worker runs (fresh heartbeat) is retried later,
without using an attempt; while a job runs, a :class:`Heartbeat` thread refreshes its heartbeat.
"""

from __future__ import annotations

import random
import traceback

import structlog
from celery import Celery
from pydantic import ValidationError

from boundaries.errors import LimitExceeded, PermanentError, VersionNotActive
from boundaries.events import PROCESS_VIDEO_TASK, JobEvent
from boundaries.registry.jobs import JobBusy, Jobs
from worker.deps import WorkerContext
from worker.heartbeat import Heartbeat
from worker.pipeline import process_video

log = structlog.get_logger(__name__)


def backoff_s(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal jitter": in [d/2, d], d = min(max_s, base_s * 2**(attempt-1))."""
    d = min(max_s, base_s * 2 ** max(attempt - 1, 0))
    return d / 2 + (rng or random).random() * d / 2


def handle(task, event_dict: dict, ctx: WorkerContext) -> dict:
    try:
        event = JobEvent.model_validate(event_dict)
    except ValidationError as e:
        # Nothing to attach a job to; the producer validates before enqueueing, so this is a bug or tampering.
        log.error("job.invalid_event", error=str(e)[:500])
        return {"status": "invalid_event"}
    deps = ctx.deps()
    jobs = deps.registry.jobs
    job_id = event.job_id or jobs.record(event)[0]
    structlog.contextvars.bind_contextvars(job_id=job_id, video_id=event.video_id)
    s = deps.settings
    retry_kwargs = {"event": event.model_dump(mode="json") | {"job_id": job_id}}
    try:
        try:
            attempt = jobs.claim(job_id, stale_after_s=s.heartbeat_stale_s)
        except JobBusy as e:
            # A redelivered message (visibility timeout, sweep) of a job a live worker is running.
            log.info("job.busy_elsewhere", countdown_s=s.heartbeat_stale_s / 2)
            raise task.retry(countdown=s.heartbeat_stale_s / 2, exc=e, max_retries=None,
                             kwargs=retry_kwargs) from e
        if attempt is None:
            log.info("job.already_finished")
            return {"status": "skipped"}
        try:
            with Heartbeat(jobs, job_id, attempt, s.heartbeat_interval_s):
                outcome = process_video(event, deps, job_id=job_id, attempt=attempt)
        except LimitExceeded as e:
            jobs.reject(job_id, attempt, event, rejection_type=e.rejection_type, message=str(e),
                        frame_count=e.frame_count, estimated_cost_usd=e.estimated_cost_usd)
            log.warning("job.rejected", rejection_type=e.rejection_type, error=str(e))
            return {"status": "rejected", "rejection_type": e.rejection_type}
        except VersionNotActive as e:
            # Not ready (or no longer current): release the job so the reconciler finds the version once
            # it is active; failing it would hide the version from the reconciler for good.
            jobs.release(job_id, attempt, e.error_type, str(e))
            log.warning("job.released_not_active", error=str(e))
            return {"status": "not_active"}
        except PermanentError as e:
            dead_letter(jobs, event.model_dump(mode="json") | {"job_id": job_id}, job_id, attempt, e)
            return {"status": "dead_letter", "error_type": e.error_type}
        except Exception as e:
            if jobs.attempts_since_replay(job_id, attempt) >= s.max_attempts:
                dead_letter(jobs, event.model_dump(mode="json") | {"job_id": job_id}, job_id, attempt, e)
                return {"status": "dead_letter", "error_type": getattr(e, "error_type", type(e).__name__)}
            jobs.retry(job_id, attempt, getattr(e, "error_type", type(e).__name__), str(e)[:2000])
            delay = backoff_s(attempt, s.retry_backoff_base_s, s.retry_backoff_max_s)
            log.warning("job.retry", attempt=attempt, countdown_s=round(delay, 2), error=str(e)[:500])
            raise task.retry(countdown=delay, exc=e, max_retries=None, kwargs=retry_kwargs) from e
        return {"status": "completed", "run_id": outcome.run_id, "results_key": outcome.results_key,
                "pairs": outcome.total_pairs, "shards_computed": outcome.shards_computed,
                "shards_reused": outcome.shards_reused}
    finally:
        structlog.contextvars.unbind_contextvars("job_id", "video_id")


def dead_letter(jobs: Jobs, event: dict, job_id: str, attempt: int, exc: BaseException) -> str | None:
    """Give up on the job (``Jobs.dead_letter``: attempt closed, job failed, dead letter stored, one
    transaction) while ``attempt`` still owns it. Returns the dead letter's id, or None when superseded."""
    error_type = getattr(exc, "error_type", type(exc).__name__)
    dl_id = jobs.dead_letter(job_id, attempt, event, error_type=error_type,
                             error_message=f"{type(exc).__name__}: {exc}",
                             traceback="".join(traceback.format_exception(exc, limit=8)))
    if dl_id is None:
        log.warning("job.dead_letter_superseded", attempt=attempt, error_type=error_type)
        return None
    log.error("job.dead_letter", dead_letter_id=dl_id, error_type=error_type, error=str(exc)[:500], attempt=attempt)
    return dl_id


def register_tasks(app: Celery, ctx: WorkerContext) -> None:
    # max_retries=None: attempts are counted by the registry (settings.max_attempts), not by Celery.
    @app.task(name=PROCESS_VIDEO_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
    def process_video_task(self, event: dict) -> dict:
        return handle(self, event, ctx)
