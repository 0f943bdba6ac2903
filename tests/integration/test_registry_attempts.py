"""A superseded attempt (its worker stalled and another took the job over) cannot overwrite the job's
state: no requeue while the newer attempt runs, no 'failed' after completion, no stray dead letter."""

from __future__ import annotations

import time
import uuid

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


def _job(reg, video_id, tenant_id) -> str:
    return reg.jobs.record(JobEvent(video_id=video_id, tenant_id=tenant_id, cropped_frames_version=1,
                                    model_version="m1"))[0]


def _lose_the_worker(reg, job_id):
    with reg.db.connection() as c:
        c.execute("UPDATE boundary_inference_jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = %s",
                  (job_id,))


def test_claim_counts_starts_and_dead_letters_once_max_attempts_were_used(reg, video_id, tenant_id):
    from boundaries.registry.jobs import AttemptsExhausted

    job_id = _job(reg, video_id, tenant_id)
    for n in (1, 2):  # two starts whose worker died (never finished)
        assert reg.jobs.claim(job_id, stale_after_s=60, max_attempts=2) == n
        _lose_the_worker(reg, job_id)

    with pytest.raises(AttemptsExhausted) as info:
        reg.jobs.claim(job_id, stale_after_s=60, max_attempts=2)

    assert info.value.error_type == "worker_lost" and "lost 2 times" in str(info.value)
    job = reg.jobs.get(job_id)
    assert job["status"] == "failed" and job["attempts"] == 2
    assert [a["outcome"] for a in reg.jobs.attempts_of(job_id)] == ["abandoned", "abandoned"]
    assert [d["error_type"] for d in DeadLetters(reg.db).list(video_id=video_id)] == ["worker_lost"]


def test_sweep_dead_letters_a_stale_job_that_used_its_attempts_instead_of_requeueing(reg, video_id, tenant_id):
    job_id = _job(reg, video_id, tenant_id)
    other = _job(reg, str(uuid.uuid4()), tenant_id)
    for j in (job_id, other):
        reg.jobs.claim(j)
    reg.jobs.claim(job_id, stale_after_s=None)  # job_id: two starts, other: one
    _lose_the_worker(reg, job_id)
    _lose_the_worker(reg, other)

    stale, old, dead = reg.jobs.requeue(stale_after_s=60, queued_after_s=3600, max_attempts=2)

    assert [str(r["id"]) for r in stale] == [other] and old == [] and dead == [job_id]
    assert reg.jobs.get(job_id)["status"] == "failed" and reg.jobs.get(other)["status"] == "queued"


def test_a_retry_waits_in_the_registry_until_due_and_is_claimed_once(reg, video_id, tenant_id):
    job_id = _job(reg, video_id, tenant_id)
    reg.jobs.mark_sent(job_id)
    attempt = reg.jobs.claim(job_id)

    assert reg.jobs.retry(job_id, attempt, "shard_failed", "boom", delay_s=0.5)
    not_yet = reg.jobs.claim_due_retries()
    unsent = reg.jobs.claim_unsent(0.0)  # a retry pending is not "recorded and never sent"
    time.sleep(0.6)
    due = reg.jobs.claim_due_retries()
    again = reg.jobs.claim_due_retries()

    assert not_yet == [] and unsent == []
    assert [str(r["id"]) for r in due] == [job_id] and again == []
    assert reg.jobs.get(job_id)["retry_at"] is None


def test_the_sweep_leaves_a_retry_that_is_not_yet_due(reg, video_id, tenant_id):
    # a back-off longer than sweep_queued_after_s: the sweep must not send the job before its retry_at
    job_id = _job(reg, video_id, tenant_id)
    reg.jobs.mark_sent(job_id)
    attempt = reg.jobs.claim(job_id)
    assert reg.jobs.retry(job_id, attempt, "shard_failed", "boom", delay_s=3600)
    with reg.db.connection() as c:  # untouched for longer than the sweep's queued_after_s
        c.execute("UPDATE boundary_inference_jobs SET updated_at = now() - interval '2 hours' WHERE id = %s",
                  (job_id,))

    _stale, old, _dead = reg.jobs.requeue(stale_after_s=60, queued_after_s=60)

    assert old == [] and reg.jobs.get(job_id)["retry_at"] is not None
