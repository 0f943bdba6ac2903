"""Inputs that made the worker publish a partial results database or burn retries.

Real PostgreSQL and a real local object store; the Celery task body (:func:`worker.tasks.handle`) is
called directly (these paths never retry, so no task object is needed).
"""

from __future__ import annotations

import uuid

import pytest
from pydantic import SecretStr

from boundaries.events import JobEvent
from boundaries.model_versions import CLASSICAL_MODEL_VERSION as MV
from config.settings import Settings
from tests.integration.faults import synthetic_video
from worker.deps import WorkerContext
from worker.tasks import handle

pytestmark = pytest.mark.integration


@pytest.fixture
def ctx(pg_dsn, db_schema, tmp_path):
    settings = Settings(database_url=SecretStr(pg_dsn), db_schema=db_schema, local_store_dir=tmp_path / "store",
                        shard_pairs=16, state_dir=tmp_path / "state")
    c = WorkerContext(settings)
    c.deps().registry.db.migrate()
    yield c
    c.deps().registry.db.close()


def _video(ctx, frames: int, *, status: str | None, total_frames: int | None = None):
    deps = ctx.deps()
    tenant, vid = str(uuid.uuid4()), str(uuid.uuid4())
    res = synthetic_video(deps.store, deps.settings, tenant, vid, frames=frames)
    deps.registry.upsert_video(vid, tenant, 1)
    if status is not None:
        deps.registry.upsert_version(video_id=vid, tenant_id=tenant, version=1, storage_prefix=res.frames_prefix,
                                     layout_db_storage_key=res.layout_db_key, total_frames=total_frames,
                                     chunk_count=res.chunk_count, status=status)
    event = JobEvent(video_id=vid, tenant_id=tenant, cropped_frames_version=1, model_version=MV)
    job_id, _ = deps.registry.jobs.record(event)
    return tenant, vid, event.model_copy(update={"job_id": job_id}), job_id


def test_version_still_processing_is_not_published_and_is_found_again_when_active(ctx):
    # given: the `videos` webhook (current_cropped_frames_version changed) arrives while the cropping
    # service is still writing chunks: the version row says 'processing', total_frames unknown, and the
    # first 40 frames of a longer video are uploaded (a consistent, complete-looking prefix)
    deps = ctx.deps()
    tenant, vid, event, job_id = _video(ctx, 40, status="processing")

    out = handle(None, event.model_dump(mode="json"), ctx)

    # then: nothing is published for a version that is not active, the job is not completed ...
    assert out["status"] == "not_active"
    assert list(deps.store.list_keys(f"videos/{tenant}/{vid}/")) == []
    assert deps.registry.get_run(vid, 1, MV) is None
    assert deps.registry.jobs.find(vid, 1, MV) is None  # released: not a failed job hiding the version
    # ... and once the version is active the reconciler finds it (no job blocks it)
    deps.registry.upsert_version(video_id=vid, tenant_id=tenant, version=1, storage_prefix=None,
                                 layout_db_storage_key=None, total_frames=40, chunk_count=1, status="active")
    pending = deps.registry.active_versions_without_job(MV)
    assert [(str(r["video_id"]), r["version"]) for r in pending] == [(vid, 1)]


def test_active_version_still_completes(ctx):
    deps = ctx.deps()
    tenant, vid, event, job_id = _video(ctx, 40, status="active", total_frames=40)

    out = handle(None, event.model_dump(mode="json"), ctx)

    assert out["status"] == "completed", out
    assert out["pairs"] == 39
    assert deps.registry.jobs.get(job_id)["status"] == "completed"


def test_one_frame_video_is_rejected_once_not_retried(ctx):
    # given: a video of a single frame (no frame pair at all)
    deps = ctx.deps()
    tenant, vid, event, job_id = _video(ctx, 1, status="active", total_frames=1)

    out = handle(None, event.model_dump(mode="json"), ctx)

    # then: a validation rejection after one attempt (not a transient ValueError retried 5 times)
    assert out == {"status": "rejected", "rejection_type": "validation_failed"}
    job = deps.registry.jobs.get(job_id)
    assert job["status"] == "failed" and job["attempts"] == 1
    with deps.registry.db.connection() as c:
        rows = c.execute("SELECT rejection_type, frame_count FROM boundary_inference_rejections"
                         " WHERE video_id = %s", (vid,)).fetchall()
    assert [(r["rejection_type"], r["frame_count"]) for r in rows] == [("validation_failed", 1)]
