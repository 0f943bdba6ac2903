"""Queue priorities (issue 17): fresh webhooks go to the high queue, reconciler finds and sweep re-sends
(and replays: test_dlq_operations.py) to the low one, each overridable; a free worker takes every high
job before any low one."""

from __future__ import annotations

import uuid

import pytest

from boundaries.events import JobEvent
from producer.reconciler import reconcile
from tests.conftest import REPO
from tests.integration import test_producer_support as support
from tests.integration.test_producer_reconciler import _add_version
from tests.integration.test_producer_support import version_payload

pytestmark = pytest.mark.integration
producer_factory = support.producer_factory  # the fixture


@pytest.mark.parametrize("overrides,webhook_q,reconciler_q", [
    ({}, "high", "low"),
    ({"default_priority": "low", "reconcile_priority": "high"}, "low", "high"),
])
def test_webhooks_go_high_and_reconciler_finds_low_unless_overridden(producer_factory, overrides, webhook_q,
                                                                    reconciler_q):
    p = producer_factory(**overrides)
    fresh, lost = _add_version(p), _add_version(p)

    resp = p.post(version_payload(*fresh))
    found = reconcile(p.settings, p.registry, p.enqueuer, limit=100)

    assert resp.status_code == 202 and found == 1
    queue = {"high": p.settings.queue_high, "low": p.settings.queue_low}
    assert p.redis.llen(queue[webhook_q]) == 1 and p.redis.llen(queue[reconciler_q]) == 1
    assert p.registry.jobs.find(lost[0], 1, p.settings.model_version)["priority"] == reconciler_q


@pytest.mark.parametrize("sweep_priority", ["low", "high"])
def test_the_sweep_resends_to_its_own_queue(producer_factory, sweep_priority):
    # given: a webhook's job (high) whose message was lost (the queue emptied) and that nobody touched since
    import time

    from producer.sweep import sweep

    p = producer_factory(retry_backoff_base_s=0.1, retry_backoff_max_s=0.2, sweep_queued_after_s=0.5,
                         sweep_priority=sweep_priority)
    assert p.post(version_payload(*_add_version(p))).status_code == 202
    assert p.redis.llen(p.settings.queue_high) == 1
    p.redis.delete(p.settings.queue_high)
    time.sleep(0.7)

    # when
    res = sweep(p.settings, p.registry.jobs, p.enqueuer.celery)

    # then: re-sent once, to the sweep's queue
    queue = {"high": p.settings.queue_high, "low": p.settings.queue_low}[sweep_priority]
    other = p.settings.queue_low if sweep_priority == "high" else p.settings.queue_high
    assert len(res.resent_queued) == 1
    assert p.redis.llen(queue) == 1 and p.redis.llen(other) == 0


def test_a_free_worker_takes_every_high_job_before_any_low_one(make_stack, monkeypatch, redis_url, db_schema):
    # given: 4 low jobs queued first, then 3 high ones, before any worker runs (tiny real videos, inline runner)
    from boundaries.model_versions import CLASSICAL_MODEL_VERSION as CMV
    from producer.enqueue import Enqueuer
    from tests.integration.faults import copy_video, set_faults, synthetic_video

    set_faults(monkeypatch, redis_url, f"faults:{db_schema}", REPO)
    s = make_stack(runner_factory="tests.integration.faults:flaky")
    assert s.settings.queue_order_strategy == "priority"
    template = None
    enq = Enqueuer.from_settings(s.settings)
    order = ["low"] * 4 + ["high"] * 3
    videos = []
    for prio in order:
        tenant, vid = str(uuid.uuid4()), str(uuid.uuid4())
        if template is None:
            template = synthetic_video(s.store, s.settings, tenant, vid)
        else:
            copy_video(s.store, s.settings, template, tenant, vid)
        s.registry.upsert_video(vid, tenant, 1)
        ev = JobEvent(video_id=vid, tenant_id=tenant, cropped_frames_version=1, model_version=CMV, priority=prio,
                      source="cli")
        assert enq.enqueue(ev).status == "queued"
        videos.append((vid, prio))
    enq.registry.db.close()

    # when: one worker (solo pool: one job at a time) drains both queues
    s.start_worker()
    jobs = {vid: s.wait_job(vid, CMV, timeout_s=120) for vid, _ in videos}

    # then: the three high jobs started first (strict priority), then the low ones
    started = sorted(videos, key=lambda v: s.registry.jobs.attempts_of(str(jobs[v[0]]["id"]))[0]["started_at"])
    assert [p for _, p in started] == ["high"] * 3 + ["low"] * 4, started
    assert all(j["status"] == "completed" for j in jobs.values())
