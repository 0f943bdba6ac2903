"""Dead letters: jobs that exhausted their attempts or hit a permanent error, kept with their event,
error, traceback summary and attempt history so operators can list, inspect, replay and purge them.

They are written by the job transitions that give up on a job (``Jobs.dead_letter``, ``Jobs.claim``
and ``Jobs.requeue`` past ``max_attempts``: boundaries/registry/jobs.py), in the same transaction as
the job's ``failed`` state; this module reads, marks and purges them."""

from __future__ import annotations

from datetime import datetime

from boundaries.registry.db import Database


class DeadLetters:
    def __init__(self, db: Database):
        self.db = db

    def list(self, *, video_id: str | None = None, tenant_id: str | None = None, error_type: str | None = None,
             older_than: datetime | None = None, newer_than: datetime | None = None,
             include_replayed: bool = False, limit: int = 100) -> list[dict]:
        """Dead letters matching every given filter, oldest first, at most ``limit`` (no event or traceback:
        :meth:`get` has them). ``newer_than`` <= ``created_at`` < ``older_than``; replayed ones only with
        ``include_replayed``."""
        clause, args = self._where(video_id, tenant_id, error_type, older_than, newer_than, include_replayed)
        with self.db.connection() as c:
            return c.execute(
                "SELECT id, job_id, video_id, tenant_id, cropped_frames_version, model_version, error_type,"
                f" error_message, created_at, replayed_at, replay_count FROM boundary_inference_dead_letters {clause}"
                " ORDER BY created_at, id LIMIT %s", (*args, limit),
            ).fetchall()

    def count(self, *, video_id: str | None = None, tenant_id: str | None = None, error_type: str | None = None,
              older_than: datetime | None = None, newer_than: datetime | None = None,
              include_replayed: bool = False) -> int:
        """How many dead letters :meth:`list` would return without a limit."""
        clause, args = self._where(video_id, tenant_id, error_type, older_than, newer_than, include_replayed)
        with self.db.connection() as c:
            return c.execute(f"SELECT count(*) AS n FROM boundary_inference_dead_letters {clause}",
                             args).fetchone()["n"]

    @staticmethod
    def _where(video_id, tenant_id, error_type, older_than, newer_than, include_replayed) -> tuple[str, list]:
        where, args = [], []
        for col, val in (("video_id", video_id), ("tenant_id", tenant_id), ("error_type", error_type)):
            if val is not None:
                where.append(f"{col} = %s")
                args.append(val)
        if older_than is not None:
            where.append("created_at < %s")
            args.append(older_than)
        if newer_than is not None:
            where.append("created_at >= %s")
            args.append(newer_than)
        if not include_replayed:
            where.append("replayed_at IS NULL")
        return ("WHERE " + " AND ".join(where)) if where else "", args

    def get(self, dead_letter_id: str) -> dict | None:
        with self.db.connection() as c:
            return c.execute("SELECT * FROM boundary_inference_dead_letters WHERE id = %s",
                             (dead_letter_id,)).fetchone()

    def mark_replayed(self, dead_letter_id: str) -> None:
        """Count a replay that sent a message (``replay_count`` + 1, ``replayed_at`` now); never called
        when the replay answered duplicate or failed."""
        with self.db.connection() as c:
            c.execute("UPDATE boundary_inference_dead_letters SET replayed_at = now(), replay_count ="
                      " replay_count + 1 WHERE id = %s", (dead_letter_id,))

    def purge(self, ids: list[str]) -> int:
        if not ids:
            return 0
        with self.db.connection() as c:
            return c.execute("DELETE FROM boundary_inference_dead_letters WHERE id = ANY(%s::uuid[])",
                             (ids,)).rowcount
