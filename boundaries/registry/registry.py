"""The registry: videos, cropped-frames versions, jobs, runs and rejections (COMPAT.md §6).

Every write is idempotent under redelivery: jobs are unique per idempotency key
``(video_id, cropped_frames_version, model_version)``, runs are upserted on the same key.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from boundaries.registry.db import Database
from boundaries.registry.jobs import Jobs

RUN_NAMESPACE = uuid.UUID("6f1c1c9e-3f57-4c55-9d0a-7c1b0b7d2a10")


def run_id_for(event_key: str) -> str:
    """Deterministic run id of a job: redelivery and retries write the same run and results key."""
    return str(uuid.uuid5(RUN_NAMESPACE, event_key))


class Registry:
    """Videos, versions, runs and the reconciler's query; job and attempt rows through :attr:`jobs`
    (:class:`boundaries.registry.jobs.Jobs`, the only writer of those rows)."""

    def __init__(self, db: Database):
        self.db = db
        self.jobs = Jobs(db)

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
