"""The registry: videos, cropped-frames versions, jobs, runs and rejections (COMPAT.md §6).

Every write is idempotent under redelivery: jobs are unique per idempotency key
``(video_id, cropped_frames_version, model_version)``, runs are upserted on the same key.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from boundaries.errors import TransientError
from boundaries.events import JobEvent
from boundaries.registry.db import Database

RUN_NAMESPACE = uuid.UUID("6f1c1c9e-3f57-4c55-9d0a-7c1b0b7d2a10")


def run_id_for(event_key: str) -> str:
    """Deterministic run id of a job: redelivery and retries write the same run and results key."""
    return str(uuid.uuid5(RUN_NAMESPACE, event_key))


class JobBusy(TransientError):
    """The job is running on another live worker (fresh heartbeat); try again later."""

    error_type = "job_busy"


class Registry:
    def __init__(self, db: Database):
        self.db = db

    # --- videos and versions --------------------------------------------------------------------
    def upsert_video(self, video_id: str, tenant_id: str, current_version: int | None) -> None:
        with self.db.connection() as c:
            c.execute(
                "INSERT INTO videos (id, tenant_id, current_cropped_frames_version, status)"
                " VALUES (%s, %s, %s, 'active') ON CONFLICT (id) DO UPDATE SET"
                " current_cropped_frames_version = EXCLUDED.current_cropped_frames_version",
                (video_id, tenant_id, current_version),
            )

    def upsert_version(self, *, video_id: str, tenant_id: str, version: int, storage_prefix: str,
                       layout_db_storage_key: str, total_frames: int, chunk_count: int,
                       status: str = "active") -> dict:
        with self.db.connection() as c:
            return c.execute(
                "INSERT INTO cropped_frames_versions (video_id, tenant_id, version, storage_prefix,"
                " layout_db_storage_key, total_frames, chunk_count, frame_rate, status, activated_at)"
                " VALUES (%s,%s,%s,%s,%s,%s,%s,10,%s, CASE WHEN %s = 'active' THEN now() END)"
                " ON CONFLICT (video_id, version) DO UPDATE SET storage_prefix = EXCLUDED.storage_prefix,"
                " layout_db_storage_key = EXCLUDED.layout_db_storage_key, total_frames = EXCLUDED.total_frames,"
                " chunk_count = EXCLUDED.chunk_count, status = EXCLUDED.status,"
                " activated_at = COALESCE(cropped_frames_versions.activated_at, EXCLUDED.activated_at)"
                " RETURNING *",
                (video_id, tenant_id, version, storage_prefix, layout_db_storage_key, total_frames,
                 chunk_count, status, status),
            ).fetchone()

    def get_version(self, video_id: str, version: int) -> dict | None:
        with self.db.connection() as c:
            return c.execute(
                "SELECT * FROM cropped_frames_versions WHERE video_id = %s AND version = %s", (video_id, version)
            ).fetchone()

    # --- jobs -----------------------------------------------------------------------------------
    def record_job(self, event: JobEvent) -> tuple[str | None, bool]:
        """Record the job as ``queued`` unless one exists for its idempotency key.

        Returns ``(job_id, created)``, or ``(None, False)`` when the conflicting row was deleted between
        the INSERT and the SELECT (its owner undid it): the caller tries again. A replay of a ``failed``
        job puts it back to ``queued`` and counts as created (it must be enqueued again). Each statement
        commits on its own (autocommit: one round trip on the webhook path).
        """
        with self.db.connection(autocommit=True) as c:
            row = c.execute(
                "INSERT INTO boundary_inference_jobs (video_id, tenant_id, cropped_frames_version,"
                " model_version, status, priority, source) VALUES (%s,%s,%s,%s,'queued',%s,%s)"
                " ON CONFLICT (video_id, cropped_frames_version, model_version) DO NOTHING RETURNING id",
                (event.video_id, event.tenant_id, event.cropped_frames_version, event.model_version,
                 event.priority, event.source),
            ).fetchone()
            if row:
                return str(row["id"]), True
            if event.source == "replay":
                row = c.execute(
                    "UPDATE boundary_inference_jobs SET status = 'queued', error_message = NULL,"
                    " completed_at = NULL, updated_at = now(), source = 'replay', sent_at = NULL"
                    " WHERE video_id = %s AND cropped_frames_version = %s AND model_version = %s"
                    " AND status = 'failed' RETURNING id",
                    (event.video_id, event.cropped_frames_version, event.model_version),
                ).fetchone()
                if row:
                    return str(row["id"]), True
            row = c.execute(
                "SELECT id FROM boundary_inference_jobs WHERE video_id = %s AND cropped_frames_version = %s"
                " AND model_version = %s",
                (event.video_id, event.cropped_frames_version, event.model_version),
            ).fetchone()
            return (str(row["id"]), False) if row else (None, False)

    @staticmethod
    def prime_connection(conn) -> None:
        """Plan (EXPLAIN, nothing runs) the producer's statements on ``conn``: a new PostgreSQL backend
        loads the catalog entries of the jobs table and its indexes on first use, ≈5–20 ms that the
        first webhooks served by each pooled connection would otherwise pay."""
        nil = "00000000-0000-0000-0000-000000000000"
        conn.execute(
            "EXPLAIN INSERT INTO boundary_inference_jobs (video_id, tenant_id, cropped_frames_version,"
            " model_version, status, priority, source) VALUES (%s,%s,1,'m','queued','high','webhook')"
            " ON CONFLICT (video_id, cropped_frames_version, model_version) DO NOTHING RETURNING id", (nil, nil))
        conn.execute("EXPLAIN SELECT id FROM boundary_inference_jobs WHERE video_id = %s"
                     " AND cropped_frames_version = 1 AND model_version = 'm'", (nil,))
        conn.execute("EXPLAIN UPDATE boundary_inference_jobs SET sent_at = now() WHERE id = %s", (nil,))
        conn.execute("SELECT status, sent_at FROM boundary_inference_jobs WHERE id = %s", (nil,))

    def job_send_state(self, job_id: str) -> dict | None:
        """``{"status", "sent_at"}`` of a job, or None when it does not exist."""
        with self.db.connection(autocommit=True) as c:
            return c.execute("SELECT status, sent_at FROM boundary_inference_jobs WHERE id = %s",
                             (job_id,)).fetchone()

    def mark_sent(self, job_id: str) -> None:
        """Record that the job's message was sent (``sent_at``)."""
        with self.db.connection(autocommit=True) as c:
            c.execute("UPDATE boundary_inference_jobs SET sent_at = now() WHERE id = %s", (job_id,))

    def claim_unsent_jobs(self, older_than_s: float, limit: int = 1000, *, job_id: str | None = None
                          ) -> list[dict]:
        """``queued`` jobs never marked sent whose row is older than ``older_than_s`` seconds (only
        ``job_id`` when given), marked sent now (so concurrent callers take each once); the caller sends
        them and calls :meth:`unmark_sent` for any it could not."""
        with self.db.connection() as c:
            return c.execute(
                "UPDATE boundary_inference_jobs SET sent_at = now() WHERE id IN (SELECT id FROM"
                " boundary_inference_jobs WHERE status = 'queued' AND sent_at IS NULL"
                " AND updated_at < now() - make_interval(secs => %s::float8)"
                " AND (%s::uuid IS NULL OR id = %s::uuid)"
                " ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING *",
                (older_than_s, job_id, job_id, limit),
            ).fetchall()

    def send_claimed(self, rows: list[dict], send) -> None:
        """Call ``send(row)`` for each row claimed as sent (``claim_unsent_jobs``, the sweep); when one
        fails, clear ``sent_at`` of it and of the rows not yet sent (the reconciler re-sends them), then
        re-raise."""
        for i, row in enumerate(rows):
            try:
                send(row)
            except Exception:
                for rest in rows[i:]:
                    self.unmark_sent(str(rest["id"]))
                raise

    def unmark_sent(self, job_id: str) -> None:
        with self.db.connection(autocommit=True) as c:
            c.execute("UPDATE boundary_inference_jobs SET sent_at = NULL WHERE id = %s AND status = 'queued'",
                      (job_id,))

    def get_job(self, job_id: str) -> dict | None:
        with self.db.connection() as c:
            return c.execute("SELECT * FROM boundary_inference_jobs WHERE id = %s", (job_id,)).fetchone()

    def find_job(self, video_id: str, version: int, model_version: str) -> dict | None:
        with self.db.connection() as c:
            return c.execute(
                "SELECT * FROM boundary_inference_jobs WHERE video_id = %s AND cropped_frames_version = %s"
                " AND model_version = %s", (video_id, version, model_version),
            ).fetchone()

    def start_attempt(self, job_id: str, *, stale_after_s: float | None = None) -> int | None:
        """Claim the job for one attempt: status ``running``, attempts + 1, a job_attempts row.

        ``stale_after_s``: a ``running`` job is only taken over when its ``heartbeat_at`` is older
        than this many seconds (its worker vanished); None takes it over unconditionally.

        Returns the attempt number, or None when the job is already completed or failed
        (a redelivered message of a finished job: nothing to do).

        Raises:
            JobBusy: the job is running with a fresh heartbeat (another live worker has it).
        """
        with self.db.connection() as c:
            row = c.execute(
                "UPDATE boundary_inference_jobs SET status = 'running', attempts = attempts + 1,"
                " started_at = COALESCE(started_at, now()), heartbeat_at = now(), updated_at = now()"
                " WHERE id = %s AND (status = 'queued' OR (status = 'running' AND (%s::float8 IS NULL"
                " OR heartbeat_at IS NULL OR heartbeat_at < now() - make_interval(secs => %s::float8))))"
                " RETURNING attempts",
                (job_id, stale_after_s, stale_after_s),
            ).fetchone()
            if row is None:
                job = c.execute("SELECT status, heartbeat_at FROM boundary_inference_jobs WHERE id = %s",
                                (job_id,)).fetchone()
                if job is not None and job["status"] == "running":
                    raise JobBusy(f"job {job_id} is running with a fresh heartbeat ({job['heartbeat_at']}); "
                                  "another worker has it")
                return None
            c.execute("INSERT INTO boundary_inference_job_attempts (job_id, attempt) VALUES (%s, %s)",
                      (job_id, row["attempts"]))
            return int(row["attempts"])

    def heartbeat(self, job_id: str, attempt: int | None = None) -> bool:
        """Refresh ``heartbeat_at`` of a running job (of ``attempt`` only, when given). Returns
        False when the job is no longer running that attempt (taken over or finished)."""
        with self.db.connection() as c:
            return c.execute(
                "UPDATE boundary_inference_jobs SET heartbeat_at = now() WHERE id = %s AND status = 'running'"
                " AND (%s::int IS NULL OR attempts = %s::int)", (job_id, attempt, attempt),
            ).rowcount == 1

    def attempts_since_replay(self, job_id: str, attempt: int) -> int:
        """Attempts of the current round: ``attempt`` minus the last attempt that ended the job
        (``failed``/``rejected``) before a replay. The retry budget (settings.max_attempts) is per round."""
        with self.db.connection() as c:
            row = c.execute(
                "SELECT COALESCE(max(attempt), 0) AS last FROM boundary_inference_job_attempts"
                " WHERE job_id = %s AND attempt < %s AND outcome IN ('failed', 'rejected')", (job_id, attempt),
            ).fetchone()
            return attempt - int(row["last"])

    def finish_attempt(self, job_id: str, attempt: int, outcome: str, error_type: str | None = None,
                       error_message: str | None = None) -> None:
        with self.db.connection() as c:
            c.execute(
                "UPDATE boundary_inference_job_attempts SET finished_at = now(), outcome = %s, error_type = %s,"
                " error_message = %s WHERE job_id = %s AND attempt = %s",
                (outcome, error_type, error_message, job_id, attempt),
            )
            if outcome == "retry":  # only while this attempt still owns the job (not taken over)
                c.execute(
                    "UPDATE boundary_inference_jobs SET status = 'queued', error_message = %s, updated_at = now()"
                    " WHERE id = %s AND status = 'running' AND attempts = %s", (error_message, job_id, attempt),
                )

    def attempts_of(self, job_id: str) -> list[dict[str, Any]]:
        with self.db.connection() as c:
            return c.execute(
                "SELECT attempt, started_at, finished_at, outcome, error_type, error_message"
                " FROM boundary_inference_job_attempts WHERE job_id = %s ORDER BY attempt", (job_id,),
            ).fetchall()

    def complete_job(self, job_id: str, run_uuid: str) -> None:
        with self.db.connection() as c:
            c.execute(
                "UPDATE boundary_inference_jobs SET status = 'completed', completed_at = now(),"
                " inference_run_id = %s, error_message = NULL, updated_at = now() WHERE id = %s",
                (run_uuid, job_id),
            )

    def release_job(self, job_id: str, attempt: int) -> bool:
        """Delete the job row while ``attempt`` still holds it (``running``), with its attempt rows, so that
        :meth:`active_versions_without_job` finds the version again. Returns whether a row was deleted."""
        with self.db.connection() as c:
            return c.execute("DELETE FROM boundary_inference_jobs WHERE id = %s AND status = 'running'"
                             " AND attempts = %s", (job_id, attempt)).rowcount == 1

    def fail_job(self, job_id: str, message: str, *, attempt: int | None = None, conn=None) -> bool:
        """Mark the job failed unless it is completed or (with ``attempt``) a newer attempt owns it.
        Returns whether the row changed. ``conn``: run inside the caller's transaction."""
        sql = ("UPDATE boundary_inference_jobs SET status = 'failed', completed_at = now(),"
               " error_message = %s, updated_at = now() WHERE id = %s AND status <> 'completed'")
        args: tuple = (message[:2000], job_id)
        if attempt is not None:
            sql += " AND attempts = %s"
            args += (attempt,)
        if conn is not None:
            return conn.execute(sql, args).rowcount == 1
        with self.db.connection() as c:
            return c.execute(sql, args).rowcount == 1

    # --- runs -----------------------------------------------------------------------------------
    def upsert_run(self, *, run_id: str, video_id: str, tenant_id: str, cropped_frames_version: int,
                   model_version: str, model_checkpoint_path: str | None, wasabi_storage_key: str,
                   file_size_bytes: int, total_pairs: int, processing_time_seconds: float,
                   started_at: datetime, completed_at: datetime) -> str:
        """Insert or update the run of this idempotency key. Returns the run row's uuid ``id``."""
        with self.db.connection() as c:
            row = c.execute(
                "INSERT INTO boundary_inference_runs (run_id, video_id, tenant_id, cropped_frames_version,"
                " model_version, model_checkpoint_path, wasabi_storage_key, file_size_bytes, total_pairs,"
                " processing_time_seconds, started_at, completed_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (video_id, cropped_frames_version, model_version) DO UPDATE SET"
                " run_id = EXCLUDED.run_id, model_checkpoint_path = EXCLUDED.model_checkpoint_path,"
                " wasabi_storage_key = EXCLUDED.wasabi_storage_key, file_size_bytes = EXCLUDED.file_size_bytes,"
                " total_pairs = EXCLUDED.total_pairs, processing_time_seconds = EXCLUDED.processing_time_seconds,"
                " started_at = EXCLUDED.started_at, completed_at = EXCLUDED.completed_at RETURNING id",
                (run_id, video_id, tenant_id, cropped_frames_version, model_version, model_checkpoint_path,
                 wasabi_storage_key, file_size_bytes, total_pairs, processing_time_seconds, started_at,
                 completed_at),
            ).fetchone()
            return str(row["id"])

    def get_run(self, video_id: str, version: int, model_version: str) -> dict | None:
        with self.db.connection() as c:
            return c.execute(
                "SELECT * FROM boundary_inference_runs WHERE video_id = %s AND cropped_frames_version = %s"
                " AND model_version = %s", (video_id, version, model_version),
            ).fetchone()

    # --- rejections -----------------------------------------------------------------------------
    def add_rejection(self, *, video_id: str | None, tenant_id: str | None, rejection_type: str,
                      message: str, frame_count: int | None = None, estimated_cost_usd: float | None = None,
                      cropped_frames_version: int | None = None, model_version: str | None = None,
                      priority: str | None = None) -> str:
        with self.db.connection() as c:
            row = c.execute(
                "INSERT INTO boundary_inference_rejections (video_id, tenant_id, rejection_type,"
                " rejection_message, frame_count, estimated_cost_usd, cropped_frames_version, model_version,"
                " priority) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
                (video_id, tenant_id, rejection_type, message[:2000], frame_count, estimated_cost_usd,
                 cropped_frames_version, model_version, priority),
            ).fetchone()
            return str(row["id"])

    # --- reconciliation -------------------------------------------------------------------------
    def active_versions_without_job(self, model_version: str, limit: int = 1000) -> list[dict]:
        """Active cropped-frames versions (of live videos) with no job for ``model_version``."""
        with self.db.connection() as c:
            return c.execute(
                "SELECT v.video_id, v.tenant_id, v.version FROM cropped_frames_versions v"
                " LEFT JOIN videos vid ON vid.id = v.video_id"
                " WHERE v.status = 'active' AND vid.deleted_at IS NULL AND NOT EXISTS ("
                "   SELECT 1 FROM boundary_inference_jobs j WHERE j.video_id = v.video_id"
                "   AND j.cropped_frames_version = v.version AND j.model_version = %s)"
                " ORDER BY v.activated_at NULLS LAST LIMIT %s",
                (model_version, limit),
            ).fetchall()
