"""Cropped-frames version rows (COMPAT.md §6) as the ingest switches them, and what they refer to.

A version becomes visible in one step: :func:`publish_version` points its row at a complete
prefix (chunks + ``layout.db`` already written) with its frame and chunk counts and ``status =
'active'`` in one transaction, and remembers the prefix it replaced in ``frame_store_retired``
(migration 010) so the orphan sweep keeps it while jobs that read it before the switch finish.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from boundaries.registry.db import Database


def publish_version(db: Database, *, video_id: str, tenant_id: str, version: int, storage_prefix: str,
                    layout_db_storage_key: str, total_frames: int, chunk_count: int) -> tuple[dict | None, dict]:
    """Point version ``version`` of ``video_id`` at a complete frame store and make it active.

    One transaction: locks the existing row, upserts it (prefix, layout key, counts, ``active``,
    ``activated_at`` kept if set), records the replaced prefix as retired, and sets
    ``videos.current_cropped_frames_version``. Returns ``(row before or None, row after)``.
    """
    with db.connection() as c:
        old = c.execute("SELECT * FROM cropped_frames_versions WHERE video_id = %s AND version = %s FOR UPDATE",
                        (video_id, version)).fetchone()
        new = c.execute(
            "INSERT INTO cropped_frames_versions (video_id, tenant_id, version, storage_prefix,"
            " layout_db_storage_key, total_frames, chunk_count, frame_rate, status, activated_at)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,10,'active',now())"
            " ON CONFLICT (video_id, version) DO UPDATE SET storage_prefix = EXCLUDED.storage_prefix,"
            " layout_db_storage_key = EXCLUDED.layout_db_storage_key, total_frames = EXCLUDED.total_frames,"
            " chunk_count = EXCLUDED.chunk_count, status = 'active',"
            " activated_at = COALESCE(cropped_frames_versions.activated_at, EXCLUDED.activated_at)"
            " RETURNING *",
            (video_id, tenant_id, version, storage_prefix, layout_db_storage_key, total_frames, chunk_count),
        ).fetchone()
        if old is not None and old["storage_prefix"] and old["storage_prefix"] != storage_prefix:
            c.execute("INSERT INTO frame_store_retired (storage_prefix, layout_db_storage_key, video_id, version)"
                      " VALUES (%s, %s, %s, %s) ON CONFLICT (storage_prefix) DO UPDATE SET retired_at = now()",
                      (old["storage_prefix"], old["layout_db_storage_key"], video_id, version))
        c.execute("INSERT INTO videos (id, tenant_id, current_cropped_frames_version, status)"
                  " VALUES (%s, %s, %s, 'active') ON CONFLICT (id) DO UPDATE SET"
                  " current_cropped_frames_version = EXCLUDED.current_cropped_frames_version",
                  (video_id, tenant_id, version))
    return old, new


@dataclass
class References:
    """What the registry refers to in the object store: prefixes of version rows (any status) and
    their layout.db keys; prefixes retired at ``retired[prefix]`` (UTC)."""

    prefixes: set[str]
    keys: set[str]
    retired: dict[str, datetime]


def store_references(db: Database) -> References:
    """Every ``storage_prefix`` / ``layout_db_storage_key`` of ``cropped_frames_versions`` and every
    retired prefix with its time (prefixes normalised to end in ``/``)."""
    def norm(p: str) -> str:
        return p if p.endswith("/") else p + "/"

    with db.connection() as c:
        rows = c.execute("SELECT storage_prefix, layout_db_storage_key FROM cropped_frames_versions").fetchall()
        retired = c.execute("SELECT storage_prefix, retired_at FROM frame_store_retired").fetchall()
    return References({norm(r["storage_prefix"]) for r in rows if r["storage_prefix"]},
                      {r["layout_db_storage_key"] for r in rows if r["layout_db_storage_key"]},
                      {norm(r["storage_prefix"]): r["retired_at"] for r in retired})


def forget_retired(db: Database, prefixes: list[str]) -> None:
    """Drop the ``frame_store_retired`` rows of prefixes whose objects were deleted."""
    if prefixes:
        with db.connection() as c:
            c.execute("DELETE FROM frame_store_retired WHERE storage_prefix = ANY(%s)", (list(prefixes),))
