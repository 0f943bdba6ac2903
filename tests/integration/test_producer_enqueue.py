"""The idempotent Enqueuer on real Redis/PostgreSQL: replay, CLI source, and the periodic reconciler."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from boundaries.events import JobEvent
from boundaries_cli.loops import run_loop
from producer.reconciler import reconcile
from tests.integration import test_producer_support as support
from tests.integration.faults import fail_job

pytestmark = pytest.mark.integration
producer_factory = support.producer_factory  # the fixture


def _event(p, video_id, tenant_id, source):
    return JobEvent(video_id=video_id, tenant_id=tenant_id, cropped_frames_version=1,
                    model_version=p.settings.model_version, source=source)


def test_replay_of_a_failed_job_bypasses_the_dedupe_key(producer_factory, video_id, tenant_id):
    p = producer_factory()
    first = p.enqueuer.enqueue(_event(p, video_id, tenant_id, "webhook"))
    assert first.status == "queued"
    assert p.enqueuer.enqueue(_event(p, video_id, tenant_id, "cli")).status == "duplicate"
    # a replay of a job that is not failed is a duplicate too
    assert p.enqueuer.enqueue(_event(p, video_id, tenant_id, "replay")).status == "duplicate"
    fail_job(p.registry.jobs, first.job_id)
    replayed = p.enqueuer.enqueue(_event(p, video_id, tenant_id, "replay"))
    assert replayed == type(first)(first.job_id, "queued")
    assert p.registry.jobs.get(first.job_id)["status"] == "queued"
    assert len(p.queued()) == 2


def test_low_priority_goes_to_the_low_queue(producer_factory, video_id, tenant_id):
    p = producer_factory()
    event = _event(p, video_id, tenant_id, "cli").model_copy(update={"priority": "low"})
    assert p.enqueuer.enqueue(event).status == "queued"
    assert p.redis.llen(p.settings.queue_low) == 1 and p.redis.llen(p.settings.queue_high) == 0


def test_reconcile_loop_runs_until_stopped(producer_factory):
    p = producer_factory()
    video_id, tenant_id = str(uuid.uuid4()), str(uuid.uuid4())
    stop = threading.Event()
    loop = threading.Thread(target=run_loop, args=("reconcile", lambda: {"n": reconcile(p.settings, p.registry,
                                                                                        p.enqueuer)}),
                            kwargs={"stop": stop, "interval_s": 0.05, "echo": False}, daemon=True)
    loop.start()
    try:
        # a version activated while the loop runs (its webhook lost) is picked up by a later tick
        p.registry.upsert_video(video_id, tenant_id, 1)
        p.registry.upsert_version(video_id=video_id, tenant_id=tenant_id, version=1, storage_prefix="p/",
                                  layout_db_storage_key="l.db", total_frames=10, chunk_count=1)
        deadline = time.monotonic() + 10
        while not p.queued() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # several more ticks
    finally:
        stop.set()
        loop.join(timeout=5)
    assert not loop.is_alive()
    assert len(p.queued()) == 1
    assert p.registry.jobs.find(video_id, 1, p.settings.model_version)["source"] == "reconciler"


def test_webhook_after_a_released_job_is_queued_not_a_duplicate(producer_factory, video_id, tenant_id):
    # Given a webhook whose job the worker released (its version was not active yet: job row deleted)
    p = producer_factory()
    first = p.enqueuer.enqueue(_event(p, video_id, tenant_id, "webhook"))
    attempt = p.registry.jobs.claim(first.job_id)
    assert p.registry.jobs.release(first.job_id, attempt, "version_not_active", "not active yet")
    # When the activation webhook arrives while the dedupe key still names the released job
    second = p.enqueuer.enqueue(_event(p, video_id, tenant_id, "webhook"))
    # Then it is queued at once (not left to the next reconciler pass), and a third copy is a duplicate
    assert second.status == "queued" and second.job_id != first.job_id
    assert p.registry.jobs.get(second.job_id)["status"] == "queued"
    assert p.enqueuer.enqueue(_event(p, video_id, tenant_id, "webhook")).status == "duplicate"
    assert len(p.queued()) == 2
