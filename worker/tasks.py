"""Celery task: decode the message, bind context, call the pipeline, map errors to one registry
transition per outcome (boundaries/registry/jobs.py).

One function decides retry vs give up (:func:`handle`):

- claim (``Jobs.claim``): attempts are counted when they start; a job that has used ``max_attempts``
  starts in this round (a replayed dead letter gets a fresh round) is dead-lettered here, so a job
  whose attempts kill the worker does not run forever;
- a job for a model_version this worker does not serve → dead letter at claim (no retries);
- permanent errors → dead letter (limit violations → rejection); ``VersionNotActive`` → release;
- transient errors → ``Jobs.retry`` with capped exponential backoff and jitter: the job waits in the
  registry (``retry_at``) and the due-retry loop sends it when due. No delayed (ETA/countdown) message
  is ever held by a worker: a broker restart while one was held took the worker down (issue 12).

A message for a job that a live worker runs (fresh heartbeat) is acked and dropped: that worker owns the
job, and if it dies the sweep requeues the job once its heartbeat is stale. Registry calls before the
claim that find the database unavailable are retried with backoff for ``registry_retry_window_s``; then
the message goes back on the queue (never acked with no state change). While a job runs, a
:class:`Heartbeat` thread refreshes its heartbeat.
"""

from __future__ import annotations

import os
import random
import socket
import traceback

import psycopg
import structlog
from celery import Celery
from celery.exceptions import Reject
from pydantic import ValidationError
from tenacity import retry, retry_if_exception, stop_after_delay, wait_random_exponential

from boundaries.errors import LimitExceeded, ModelVersionMismatch, PermanentError, TransientError, VersionNotActive
from boundaries.events import PROCESS_VIDEO_TASK, JobEvent
from boundaries.registry.jobs import AttemptsExhausted, JobBusy, Jobs
from worker.boot import JobInterrupted
from worker.deps import WorkerContext, served_model_version
from worker.heartbeat import Heartbeat
from worker.pipeline import process_video

log = structlog.get_logger(__name__)


def backoff_s(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal jitter": in [d/2, d], d = min(max_s, base_s * 2**(attempt-1))."""
    d = min(max_s, base_s * 2 ** max(attempt - 1, 0))
    return d / 2 + (rng or random).random() * d / 2


def registry_unavailable(e: BaseException) -> bool:
    """The registry database cannot answer now (a transient registry error; psycopg's own connection
    errors too, for adapters that do not map them)."""
    if isinstance(e, JobBusy | AttemptsExhausted):
        return False
    return isinstance(e, TransientError | psycopg.OperationalError | psycopg.InterfaceError)


def before_claim(window_s: float, fn, *args, **kwargs):
    """Call registry function ``fn`` before the job is claimed, retrying while the registry is unavailable
    (exponential backoff with jitter, 0.1–2 s) for at most ``window_s`` seconds; then put the message back
    on the queue (``Reject(requeue=True)``): nothing changed yet, so it must not be acked."""
    call = retry(retry=retry_if_exception(registry_unavailable), stop=stop_after_delay(window_s),
                 wait=wait_random_exponential(multiplier=0.1, max=2.0), reraise=True)(fn)
    try:
        return call(*args, **kwargs)
    except Exception as e:
        if not registry_unavailable(e):
            raise
        log.warning("job.registry_unavailable_requeued", error=f"{type(e).__name__}: {e}"[:500],
                    retried_s=window_s)
        raise Reject(f"registry unavailable for {window_s} s before the claim: {e}", requeue=True) from e


def worker_name(task) -> str:
    """Who runs an attempt, for its row (``boundaries jobs show``): the Celery node name of ``task``'s worker
    (``-n``; ``celery@<host>`` by default; the host name outside Celery) and this process's id."""
    node = getattr(getattr(task, "request", None), "hostname", None) or socket.gethostname()
    return f"{node} pid {os.getpid()}"


def handle(task, event_dict: dict, ctx: WorkerContext) -> dict:
    try:
        event = JobEvent.model_validate(event_dict)
    except ValidationError as e:
        # Nothing to attach a job to; the producer validates before enqueueing, so this is a bug or tampering.
        log.error("job.invalid_event", error=str(e)[:500])
        return {"status": "invalid_event"}
    deps = ctx.deps()
    jobs = deps.registry.jobs
    s = deps.settings
    window = s.registry_retry_window_s
    job_id = event.job_id or before_claim(window, jobs.record, event)[0]
    structlog.contextvars.bind_contextvars(job_id=job_id, video_id=event.video_id)
    message = event.model_dump(mode="json") | {"job_id": job_id}
    try:
        try:
            attempt = before_claim(window, jobs.claim, job_id, stale_after_s=s.heartbeat_stale_s,
                                   max_attempts=s.max_attempts, worker=worker_name(task))
        except JobBusy:
            # A redelivered copy (broker restart, visibility timeout, sweep, a duplicate send) of a job a
            # live worker runs: that worker owns it; if it dies, its heartbeat goes stale and the sweep
            # requeues the job. Dropped here: holding it for later would be a delayed message.
            log.info("job.busy_elsewhere")
            return {"status": "busy_elsewhere"}
        except AttemptsExhausted as e:
            log.error("job.dead_letter", dead_letter_id=e.dead_letter_id, error_type=e.error_type, error=str(e)[:500],
                      workers_lost=e.workers_lost)
            return {"status": "dead_letter", "error_type": e.error_type}
        if attempt is None:
            log.info("job.already_finished")
            return {"status": "skipped"}
        served = served_model_version(s)
        if served is not None and event.model_version != served:
            e = ModelVersionMismatch(f"job {job_id} is for model_version {event.model_version!r} but this worker's "
                                     f"predictor serves {served!r}; run a worker with that checkpoint "
                                     "(BOUNDARIES_CHECKPOINT_PATH / BOUNDARIES_MODEL_VERSION), then replay")
            dead_letter(jobs, message, job_id, attempt, e)
            return {"status": "dead_letter", "error_type": e.error_type}
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
        except JobInterrupted:
            # SIGTERM mid-job: hand the job back (queued, due now) before the message is requeued, so the
            # redelivered copy claims it instead of dropping it as busy behind this attempt's fresh heartbeat.
            jobs.retry(job_id, attempt, "worker_interrupted", "worker stopped by SIGTERM mid-job", delay_s=0)
            log.warning("job.interrupted", attempt=attempt)
            raise
        except PermanentError as e:
            dead_letter(jobs, message, job_id, attempt, e)
            return {"status": "dead_letter", "error_type": e.error_type}
        except Exception as e:
            error_type = getattr(e, "error_type", type(e).__name__)
            if jobs.attempts_since_replay(job_id, attempt) >= s.max_attempts:
                dead_letter(jobs, message, job_id, attempt, e)
                return {"status": "dead_letter", "error_type": error_type}
            delay = backoff_s(attempt, s.retry_backoff_base_s, s.retry_backoff_max_s)
            jobs.retry(job_id, attempt, error_type, str(e)[:2000], delay_s=delay)
            log.warning("job.retry", attempt=attempt, retry_in_s=round(delay, 2), error=str(e)[:500])
            return {"status": "retry", "retry_in_s": round(delay, 3), "error_type": error_type}
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
    # max_retries=0: Celery never retries (no delayed messages); the registry counts attempts
    # (settings.max_attempts) and the due-retry loop sends a retry when it is due.
    @app.task(name=PROCESS_VIDEO_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=0)
    def process_video_task(self, event: dict) -> dict:
        return handle(self, event, ctx)
