"""Read-only registry queries for operators (``boundaries runs``, ``boundaries jobs``): runs and jobs by
filter, one job with its attempts, run and dead letters. Nothing here writes (the job and attempt rows
are written only by :mod:`boundaries.registry.jobs`).

Filters are ANDed; ``since`` <= ``created_at`` < ``until`` (aware datetimes). Lists are newest first
(``created_at`` descending, then ``id``), at most ``limit`` rows; the matching ``count_*`` says how many
there are without the limit.
"""

from __future__ import annotations

from datetime import datetime

from boundaries.registry.db import Database

JOB_STATUSES = ("queued", "running", "completed", "failed")
"""The values of ``boundary_inference_jobs.status`` (migration 001's CHECK)."""

_RUN_LIST_COLS = ("id, run_id, video_id, tenant_id, cropped_frames_version, model_version, total_pairs,"
                  " file_size_bytes, processing_time_seconds, started_at, completed_at, created_at,"
                  " wasabi_storage_key")
_JOB_LIST_COLS = ("id, video_id, tenant_id, cropped_frames_version, model_version, status, priority, source,"
                  " attempts, created_at, started_at, completed_at, updated_at, inference_run_id, error_message")


def _where(filters: dict[str, object], since: datetime | None, until: datetime | None) -> tuple[str, list]:
    where, args = [], []
    for col, val in filters.items():
        if val is not None:
            where.append(f"{col} = %s")
            args.append(val)
    if since is not None:
        where.append("created_at >= %s")
        args.append(since)
    if until is not None:
        where.append("created_at < %s")
        args.append(until)
    return ("WHERE " + " AND ".join(where)) if where else "", args


def _run_filters(tenant_id, video_id, model_version) -> dict[str, object]:
    return {"tenant_id": tenant_id, "video_id": video_id, "model_version": model_version}


def _job_filters(tenant_id, video_id, model_version, status) -> dict[str, object]:
    if status is not None and status not in JOB_STATUSES:
        raise ValueError(f"job status must be one of {', '.join(JOB_STATUSES)}, got {status!r}")
    return {"tenant_id": tenant_id, "video_id": video_id, "model_version": model_version, "status": status}


def list_runs(db: Database, *, tenant_id: str | None = None, video_id: str | None = None,
              model_version: str | None = None, since: datetime | None = None, until: datetime | None = None,
              limit: int = 50) -> list[dict]:
    """``boundary_inference_runs`` rows matching every given filter, newest first, at most ``limit``."""
    clause, args = _where(_run_filters(tenant_id, video_id, model_version), since, until)
    with db.connection() as c:
        return c.execute(f"SELECT {_RUN_LIST_COLS} FROM boundary_inference_runs {clause}"
                         " ORDER BY created_at DESC, id LIMIT %s", (*args, limit)).fetchall()


def count_runs(db: Database, *, tenant_id: str | None = None, video_id: str | None = None,
               model_version: str | None = None, since: datetime | None = None,
               until: datetime | None = None) -> int:
    """How many rows :func:`list_runs` would return without a limit."""
    clause, args = _where(_run_filters(tenant_id, video_id, model_version), since, until)
    with db.connection() as c:
        return c.execute(f"SELECT count(*) AS n FROM boundary_inference_runs {clause}", args).fetchone()["n"]


def get_run(db: Database, run: str) -> dict | None:
    """The run whose row ``id`` (what a job's ``inference_run_id`` holds) or ``run_id`` (what the results
    database's ``run_metadata.run_id`` and ``boundaries run`` print) is ``run``; both are UUIDs."""
    with db.connection() as c:
        return c.execute("SELECT * FROM boundary_inference_runs WHERE id = %s::uuid OR run_id = %s",
                         (run, run)).fetchone()


def list_jobs(db: Database, *, tenant_id: str | None = None, video_id: str | None = None,
              model_version: str | None = None, status: str | None = None, since: datetime | None = None,
              until: datetime | None = None, limit: int = 50) -> list[dict]:
    """``boundary_inference_jobs`` rows matching every given filter, newest first, at most ``limit``.

    Raises:
        ValueError: ``status`` is not one of :data:`JOB_STATUSES`.
    """
    clause, args = _where(_job_filters(tenant_id, video_id, model_version, status), since, until)
    with db.connection() as c:
        return c.execute(f"SELECT {_JOB_LIST_COLS} FROM boundary_inference_jobs {clause}"
                         " ORDER BY created_at DESC, id LIMIT %s", (*args, limit)).fetchall()


def count_jobs(db: Database, *, tenant_id: str | None = None, video_id: str | None = None,
               model_version: str | None = None, status: str | None = None, since: datetime | None = None,
               until: datetime | None = None) -> int:
    """How many rows :func:`list_jobs` would return without a limit."""
    clause, args = _where(_job_filters(tenant_id, video_id, model_version, status), since, until)
    with db.connection() as c:
        return c.execute(f"SELECT count(*) AS n FROM boundary_inference_jobs {clause}", args).fetchone()["n"]


def job_detail(db: Database, job_id: str) -> dict | None:
    """``{"job": row, "attempts": [...], "run": row | None, "dead_letters": [...]}`` for ``job_id``, or None
    when there is no such job.

    Attempts in order (``attempt``, ``started_at``, ``finished_at``, ``outcome``, ``error_type``,
    ``error_message``, ``worker``: node name and pid, migration 011); the run by the job's
    ``inference_run_id``, else by its idempotency key (a run published by an attempt that did not get to
    mark the job); dead letters of the job oldest first, without their event and traceback (``boundaries
    dlq show`` has them)."""
    with db.connection() as c:
        job = c.execute("SELECT * FROM boundary_inference_jobs WHERE id = %s", (job_id,)).fetchone()
        if job is None:
            return None
        attempts = c.execute(
            "SELECT attempt, started_at, finished_at, outcome, error_type, error_message, worker"
            " FROM boundary_inference_job_attempts WHERE job_id = %s ORDER BY attempt", (job_id,)).fetchall()
        run = c.execute(
            "SELECT * FROM boundary_inference_runs WHERE id = %s OR (video_id = %s AND cropped_frames_version = %s"
            " AND model_version = %s) ORDER BY (id = %s) DESC NULLS LAST LIMIT 1",
            (job["inference_run_id"], job["video_id"], job["cropped_frames_version"], job["model_version"],
             job["inference_run_id"])).fetchone()
        dead = c.execute(
            "SELECT id, error_type, error_message, created_at, replayed_at, replay_count"
            " FROM boundary_inference_dead_letters WHERE job_id = %s ORDER BY created_at, id", (job_id,)).fetchall()
    return {"job": job, "attempts": attempts, "run": run, "dead_letters": dead}
