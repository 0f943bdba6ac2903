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
    job_id, _ = reg.record_job(JobEvent(video_id=video_id, tenant_id=tenant_id, cropped_frames_version=1,
                                        model_version="m1"))
    old = reg.start_attempt(job_id)
    with reg.db.connection() as c:  # the first worker stalls: its heartbeat goes stale
        c.execute("UPDATE boundary_inference_jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = %s",
                  (job_id,))
    new = reg.start_attempt(job_id, stale_after_s=60)
    return job_id, old, new


def test_stale_attempt_retry_does_not_requeue_a_job_a_newer_attempt_runs(reg, video_id, tenant_id):
    job_id, old, new = _taken_over(reg, video_id, tenant_id)

    reg.finish_attempt(job_id, old, "retry", "shard_failed", "boom")

    assert (old, new) == (1, 2)
    assert reg.get_job(job_id)["status"] == "running"


def test_stale_attempt_cannot_fail_a_job_a_newer_attempt_runs_or_completed(reg, video_id, tenant_id):
    job_id, old, new = _taken_over(reg, video_id, tenant_id)

    assert reg.fail_job(job_id, "late failure", attempt=old) is False
    assert reg.get_job(job_id)["status"] == "running"
    reg.complete_job(job_id, None)
    assert reg.fail_job(job_id, "late failure", attempt=new) is False
    assert reg.get_job(job_id)["status"] == "completed"


def test_dead_letter_only_when_the_attempt_still_owns_the_job(reg, video_id, tenant_id):
    from worker.tasks import record_dead_letter

    job_id, old, new = _taken_over(reg, video_id, tenant_id)
    dls = DeadLetters(reg.db)
    event = {"video_id": video_id, "tenant_id": tenant_id, "cropped_frames_version": 1, "model_version": "m1"}

    stale = record_dead_letter(reg, dls, event, job_id, old, RuntimeError("stale"))
    current = record_dead_letter(reg, dls, event, job_id, new, RuntimeError("current"))

    assert stale is None and current is not None
    assert [r["error_message"] for r in dls.list(video_id=video_id)] == ["RuntimeError: current"]
    assert reg.get_job(job_id)["status"] == "failed"
