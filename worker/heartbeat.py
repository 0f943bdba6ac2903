"""The heartbeat a running job keeps: ``boundary_inference_jobs.heartbeat_at`` refreshed every
``heartbeat_interval_s`` seconds. ``Jobs.claim(stale_after_s=heartbeat_stale_s)`` only takes over a
``running`` job whose heartbeat is stale, so a redelivered message never runs a job that a live worker
is running; the sweep (producer/sweep.py) requeues jobs whose heartbeat went stale."""

from __future__ import annotations

import threading

import structlog

from boundaries.registry.jobs import Jobs

log = structlog.get_logger(__name__)


class Heartbeat:
    """Context manager: a daemon thread calling ``jobs.heartbeat(job_id, attempt)`` every
    ``interval_s`` seconds until exit. Failures are logged (``job.heartbeat_failed``), never raised."""

    def __init__(self, jobs: Jobs, job_id: str, attempt: int, interval_s: float):
        self.jobs, self.job_id, self.attempt, self.interval_s = jobs, job_id, attempt, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{job_id[:8]}", daemon=True)
        self.beats = 0

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if not self.jobs.heartbeat(self.job_id, self.attempt):
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
