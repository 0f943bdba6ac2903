"""A superseded attempt (its worker stalled and another took the job over) cannot overwrite the job's
state: no requeue while the newer attempt runs, no 'failed' after completion, no stray dead letter."""

from __future__ import annotations

import pytest

from boundaries.events import JobEvent
from boundaries.registry.db import Database
from boundaries.registry.dead_letters import DeadLetters
from boundaries.registry.registry import Registry


@pytest.fixture
def reg(pg_dsn, db_schema):
    db = Database(pg_dsn, db_schema)
    db.migrate()
    yield Registry(db)
    db.close()


def _taken_over(reg: Registry, video_id: str, tenant_id: str) -> tuple[str, int, int]:
    job_id, _ = reg.jobs.record(JobEvent(video_id=video_id, tenant_id=tenant_id, cropped_frames_version=1,
                                        model_version="m1"))
    old = reg.jobs.claim(job_id)
    with reg.db.connection() as c:  # the first worker stalls: its heartbeat goes stale
        c.execute("UPDATE boundary_inference_jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = %s",
                  (job_id,))
    new = reg.jobs.claim(job_id, stale_after_s=60)
    return job_id, old, new


def test_stale_attempt_retry_does_not_requeue_a_job_a_newer_attempt_runs(reg, video_id, tenant_id):
    job_id, old, new = _taken_over(reg, video_id, tenant_id)

    changed = reg.jobs.retry(job_id, old, "shard_failed", "boom")

    assert (old, new) == (1, 2) and changed is False
    assert reg.jobs.get(job_id)["status"] == "running"


def test_stale_attempt_cannot_fail_a_job_a_newer_attempt_runs_or_completed(reg, video_id, tenant_id):
    job_id, old, new = _taken_over(reg, video_id, tenant_id)

    event = {"video_id": video_id, "tenant_id": tenant_id, "cropped_frames_version": 1, "model_version": "m1"}

    assert reg.jobs.dead_letter(job_id, old, event, error_type="x", error_message="late failure") is None
    assert reg.jobs.get(job_id)["status"] == "running"
    reg.jobs.complete(job_id, new, None)
    assert reg.jobs.dead_letter(job_id, new, event, error_type="x", error_message="late failure") is None
    assert reg.jobs.get(job_id)["status"] == "completed"


def test_dead_letter_only_when_the_attempt_still_owns_the_job(reg, video_id, tenant_id):
    from worker.tasks import dead_letter

    job_id, old, new = _taken_over(reg, video_id, tenant_id)
    dls = DeadLetters(reg.db)
    event = {"video_id": video_id, "tenant_id": tenant_id, "cropped_frames_version": 1, "model_version": "m1"}

    stale = dead_letter(reg.jobs, event, job_id, old, RuntimeError("stale"))
    current = dead_letter(reg.jobs, event, job_id, new, RuntimeError("current"))

    assert stale is None and current is not None
    assert [r["error_message"] for r in dls.list(video_id=video_id)] == ["RuntimeError: current"]
    assert reg.jobs.get(job_id)["status"] == "failed"
