"""Job liveness: the heartbeat a running job keeps, and the sweep that requeues jobs whose worker vanished.

A running job refreshes ``boundary_inference_jobs.heartbeat_at`` every ``heartbeat_interval_s``
(:class:`Heartbeat`). ``Registry.start_attempt(stale_after_s=heartbeat_stale_s)`` only takes over a
``running`` job whose heartbeat is stale, so a redelivered message (visibility timeout, sweep) never
runs a job that a live worker is running. :func:`sweep` re-sends

- ``running`` jobs whose heartbeat is older than ``heartbeat_stale_s`` (worker killed; its attempt row is
  closed as ``abandoned`` and the job goes back to ``queued``), and
- ``queued`` jobs untouched for ``sweep_queued_after_s`` (a crash between recording a job and sending
  it, or a broker that lost its queue).

Re-sending is safe: the claim rule above and the idempotent pipeline make a duplicate message a no-op.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import structlog

from boundaries.events import PROCESS_VIDEO_TASK, JobEvent
from boundaries.registry.registry import Registry

log = structlog.get_logger(__name__)


class Heartbeat:
    """Context manager: a daemon thread calling ``registry.heartbeat(job_id, attempt)`` every
    ``interval_s`` seconds until exit. Failures are logged (``job.heartbeat_failed``), never raised."""

    def __init__(self, registry: Registry, job_id: str, attempt: int, interval_s: float):
        self.registry, self.job_id, self.attempt, self.interval_s = registry, job_id, attempt, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{job_id[:8]}", daemon=True)
        self.beats = 0

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if not self.registry.heartbeat(self.job_id, self.attempt):
                    log.warning("job.heartbeat_lost", job_id=self.job_id, attempt=self.attempt)
                self.beats += 1
            except Exception as e:  # noqa: BLE001 — a missed beat must not kill the job
                log.warning("job.heartbeat_failed", job_id=self.job_id, error=f"{type(e).__name__}: {e}"[:300])

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 10)


@dataclass
class SweepResult:
    requeued_running: list[str]
    resent_queued: list[str]


def sweep(settings, registry: Registry, celery_app, *, limit: int = 1000) -> SweepResult:
    """Requeue stale ``running`` jobs and re-send old ``queued`` ones (see module docstring).

    ``settings``: heartbeat_stale_s, sweep_queued_after_s (seconds), queue names. If a send fails, the jobs
    not sent stay ``queued`` with ``sent_at`` cleared (the reconciler re-sends them) and the error is raised.
    """
    from config.celery_app import queue_for

    with registry.db.connection() as c:
        stale = c.execute(
            "UPDATE boundary_inference_jobs SET status = 'queued', updated_at = now(), sent_at = now(),"
            " error_message = 'requeued by sweep: heartbeat stale since ' || heartbeat_at::text"
            " WHERE id IN (SELECT id FROM boundary_inference_jobs WHERE status = 'running'"
            "  AND (heartbeat_at IS NULL OR heartbeat_at < now() - make_interval(secs => %s::float8))"
            "  ORDER BY heartbeat_at NULLS FIRST LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING *",
            (settings.heartbeat_stale_s, limit),
        ).fetchall()
        for row in stale:
            c.execute("UPDATE boundary_inference_job_attempts SET finished_at = now(), outcome = 'abandoned',"
                      " error_message = 'worker vanished (stale heartbeat)' WHERE job_id = %s AND attempt = %s"
                      " AND finished_at IS NULL", (row["id"], row["attempts"]))
        old = c.execute(
            "UPDATE boundary_inference_jobs SET updated_at = now(), sent_at = now()"
            " WHERE id IN (SELECT id FROM boundary_inference_jobs WHERE status = 'queued'"
            "  AND updated_at < now() - make_interval(secs => %s::float8) AND NOT (id = ANY(%s::uuid[]))"
            "  ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING *",
            (settings.sweep_queued_after_s, [str(r["id"]) for r in stale], limit),
        ).fetchall()
    result = SweepResult([str(r["id"]) for r in stale], [str(r["id"]) for r in old])

    def send(row: dict) -> None:
        event = JobEvent.from_job_row(row, "sweep")
        celery_app.send_task(PROCESS_VIDEO_TASK, kwargs={"event": event.model_dump(mode="json")},
                             queue=queue_for(settings, event.priority))

    # rows not sent get sent_at cleared: the reconciler's resend_unsent sends them (after
    # resend_unsent_after_s) instead of the next sweep after sweep_queued_after_s
    registry.send_claimed([*stale, *old], send)
    if stale or old:
        log.warning("jobs.swept", requeued_running=len(stale), resent_queued=len(old))
    return result
