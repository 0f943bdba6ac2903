"""The reconciler finds active versions whose webhook never came, exactly once."""

from __future__ import annotations

import json
import uuid

import pytest

from producer.reconciler import reconcile
from tests.integration import test_producer_support as support
from tests.integration.test_producer_support import version_payload

pytestmark = pytest.mark.integration
producer_factory = support.producer_factory  # the fixture


def _add_version(p, *, status="active", deleted=False):
    video_id, tenant_id = str(uuid.uuid4()), str(uuid.uuid4())
    p.registry.upsert_video(video_id, tenant_id, 1)
    p.registry.upsert_version(video_id=video_id, tenant_id=tenant_id, version=1, storage_prefix="p/",
                              layout_db_storage_key="l.db", total_frames=100, chunk_count=7, status=status)
    if deleted:
        with p.registry.db.connection() as c:
            c.execute("UPDATE videos SET deleted_at = now() WHERE id = %s", (video_id,))
    return video_id, tenant_id


def test_dropped_webhooks_are_found_exactly_once(producer_factory):
    # given: 3 versions activated without a webhook, 1 with a webhook, and 2 that must not run
    p = producer_factory()
    dropped = [_add_version(p) for _ in range(3)]
    delivered = _add_version(p)
    _add_version(p, status="processing")
    _add_version(p, deleted=True)
    assert p.post(version_payload(*delivered)).status_code == 202

    # when: the reconciler runs twice
    first = reconcile(p.settings, p.registry, p.enqueuer, limit=100)
    second = reconcile(p.settings, p.registry, p.enqueuer, limit=100)

    # then: the 3 dropped ones are queued once each, nothing more
    assert (first, second) == (3, 0)
    msgs = p.queued()
    assert len(msgs) == 4
    import base64
    events = [json.loads(base64.b64decode(json.loads(m)["body"]))[1]["event"] for m in msgs]
    by_source = sorted((e["source"], e["video_id"]) for e in events)
    assert by_source == sorted([("reconciler", v) for v, _ in dropped] + [("webhook", delivered[0])])
    for video_id, _ in dropped:
        job = p.registry.jobs.find(video_id, 1, p.settings.model_version)
        assert job["status"] == "queued" and job["source"] == "reconciler"
    # a late webhook for a reconciled version is a duplicate
    late = p.post(version_payload(*dropped[0]))
    assert late.status_code == 200 and late.json()["status"] == "duplicate"
    assert len(p.queued()) == 4


def test_stale_dedupe_key_without_a_job_does_not_hide_the_version(producer_factory):
    # given: a producer crashed after SET NX and before recording the job
    p = producer_factory()
    video_id, tenant_id = _add_version(p)
    key = f"boundaries:dedupe:{p.settings.db_schema}:{video_id}:1:{p.settings.model_version}"
    p.redis.set(key, "pending", ex=60)
    # when / then: the reconciler still queues it (the registry's unique key decides)
    assert reconcile(p.settings, p.registry, p.enqueuer, limit=10) == 1
    assert len(p.queued()) == 1


def test_limit_bounds_one_run(producer_factory):
    p = producer_factory()
    for _ in range(3):
        _add_version(p)
    assert reconcile(p.settings, p.registry, p.enqueuer, limit=2) == 2
    assert reconcile(p.settings, p.registry, p.enqueuer, limit=2) == 1
    assert reconcile(p.settings, p.registry, p.enqueuer, limit=2) == 0
