"""/metrics reports the job lifecycle from PostgreSQL and Redis: jobs driven through their states by the
registry's transitions, messages in the real broker queues, shard counters written by the worker's
runner wrapper — scraped from real producer apps and parsed with prometheus_client's parser."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from boundaries.events import JobEvent
from boundaries.registry.db import Database
from boundaries.registry.registry import Registry
from boundaries.shards import ShardSummary
from config.celery_app import make_celery
from config.shard_metrics import shard_metrics_key
from producer.app import create_app
from producer.dispatch import dispatch, fail_fast_celery
from producer.enqueue import fail_fast_redis
from tests.conftest import REPO
from tests.integration.test_producer_support import SECRET, ServerThread, clear_queues, make_settings, version_payload
from worker.runners.base import ShardError
from worker.runners.measured import MeasuredRunner

pytestmark = pytest.mark.integration


def scrape(server: ServerThread) -> dict[tuple, float]:
    """``{(sample name, sorted label items): value}`` of one GET /metrics."""
    r = httpx.get(server.url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def lifecycle(samples: dict) -> dict:
    """The samples read from the shared state (everything but the per-process webhook counters)."""
    return {k: v for k, v in samples.items() if not k[0].startswith("boundaries_webhook")}


@pytest.fixture
def two_producers(redis_url, pg_dsn, db_schema):
    """Two producer apps on one registry schema and one pair of queues, as two uvicorn processes would be."""
    settings = make_settings(redis_url, pg_dsn, db_schema)
    made = []
    for _ in range(2):
        db = Database(pg_dsn, db_schema)
        db.migrate()
        r = fail_fast_redis(redis_url)
        celery_app = fail_fast_celery(make_celery(settings))
        app = create_app(settings, registry=Registry(db), redis_client=r, celery_app=celery_app)
        made.append((ServerThread(app).__enter__(), db, r, celery_app))
    yield settings, [m[0] for m in made], Registry(made[0][1]), made[0][3]
    client = redis.Redis.from_url(redis_url)
    clear_queues(client, settings)
    client.delete(shard_metrics_key(db_schema))
    client.close()
    for server, db, r, celery_app in made:
        server.__exit__(None, None, None)
        db.close()
        r.close()
        celery_app.close()


def _event(settings, priority="high") -> JobEvent:
    return JobEvent(video_id=str(uuid.uuid4()), tenant_id=str(uuid.uuid4()), cropped_frames_version=1,
                    model_version=settings.model_version, priority=priority)


def _took(reg: Registry, job_id: str, seconds: float) -> None:
    """Make the job's attempts have lasted ``seconds`` (claim → outcome)."""
    with reg.db.connection() as c:
        c.execute("UPDATE boundary_inference_job_attempts SET started_at = finished_at - make_interval(secs => %s)"
                  " WHERE job_id = %s", (seconds, job_id))


def test_lifecycle_numbers_from_the_registry_and_the_queues(two_producers):
    settings, (p1, p2), reg, celery_app = two_producers
    jobs = reg.jobs
    empty = scrape(p1)
    assert empty[("boundaries_lifecycle_source_up", (("source", "registry"),))] == 1
    assert empty[("boundaries_lifecycle_source_up", (("source", "redis"),))] == 1
    assert all(empty[("boundaries_jobs", (("status", s),))] == 0 for s in ("queued", "running", "completed", "failed"))

    # completed in 20 s, with a 300-pair run that took 6 s of processing
    done_event = _event(settings)
    done, _ = jobs.record(done_event)
    a = jobs.claim(done)
    now = datetime.now(UTC)
    run_uuid = reg.upsert_run(run_id=f"run-{uuid.uuid4().hex[:8]}", video_id=done_event.video_id,
                              tenant_id=done_event.tenant_id, cropped_frames_version=1,
                              model_version=settings.model_version, model_checkpoint_path=None,
                              wasabi_storage_key="k", file_size_bytes=10, total_pairs=300,
                              processing_time_seconds=6.0, started_at=now - timedelta(seconds=6), completed_at=now)
    assert jobs.complete(done, a, run_uuid)
    _took(reg, done, 20)
    # a transient failure after 3 s: queued again, waiting for its retry
    retried, _ = jobs.record(_event(settings))
    assert jobs.retry(retried, jobs.claim(retried), "shard_failed", "boom", delay_s=600)
    _took(reg, retried, 3)
    # dead-lettered after 0.5 s
    dead_event = _event(settings, "low")
    dead, _ = jobs.record(dead_event)
    assert jobs.dead_letter(dead, jobs.claim(dead), dead_event.model_dump(mode="json"), error_type="layout_error",
                            error_message="bad layout") is not None
    _took(reg, dead, 0.5)
    # one running, two queued and sent (one per priority)
    running, _ = jobs.record(_event(settings))
    jobs.claim(running)
    for priority in ("high", "low"):
        ev = _event(settings, priority)
        job_id, _ = jobs.record(ev)
        dispatch(celery_app, settings, ev.model_copy(update={"job_id": job_id}))

    m = scrape(p1)
    job = {s: m[("boundaries_jobs", (("status", s),))] for s in ("queued", "running", "completed", "failed")}
    assert job == {"queued": 3, "running": 1, "completed": 1, "failed": 1}
    assert m[("boundaries_jobs_waiting_retry", ())] == 1
    assert m[("boundaries_job_attempts_started_total", ())] == 4
    outcomes = {k[1][0][1]: v for k, v in m.items() if k[0] == "boundaries_job_attempts_total"}
    assert outcomes == {"completed": 1, "retry": 1, "failed": 1}
    b = "boundaries_attempt_duration_seconds_bucket"
    assert m[(b, (("le", "15.0"), ("outcome", "completed")))] == 0
    assert m[(b, (("le", "30.0"), ("outcome", "completed")))] == 1
    assert m[(b, (("le", "1.0"), ("outcome", "failed")))] == 1
    assert m[(b, (("le", "1.0"), ("outcome", "retry")))] == 0
    assert m[(b, (("le", "5.0"), ("outcome", "retry")))] == 1
    assert m[("boundaries_attempt_duration_seconds_sum", (("outcome", "completed"),))] == pytest.approx(20, abs=0.01)
    assert m[("boundaries_attempt_duration_seconds_count", (("outcome", "failed"),))] == 1
    assert m[("boundaries_dead_letters_total", ())] == 1
    assert m[("boundaries_dead_letters_pending", ())] == 1
    assert m[("boundaries_runs_total", ())] == 1
    assert m[("boundaries_pairs_total", ())] == 300
    assert m[("boundaries_run_seconds_total", ())] == pytest.approx(6.0)
    assert m[("boundaries_pairs_per_second", ())] == pytest.approx(50.0)
    assert m[("boundaries_queue_depth", (("priority", "high"), ("queue", settings.queue_high)))] == 1
    assert m[("boundaries_queue_depth", (("priority", "low"), ("queue", settings.queue_low)))] == 1

    # the second producer process reads the same shared state: the same lifecycle numbers
    assert lifecycle(scrape(p2)) == lifecycle(m)


def test_shard_durations_recorded_by_workers_are_exported(two_producers):
    settings, (p1, p2), _reg, _app = two_producers

    class Backend:  # the wrapped runner's results: what a local or Modal runner returns
        def __init__(self, results):
            self.results = results

        def map(self, requests):
            return self.results

        def close(self):
            pass

    def summary(i, seconds, pairs):
        return ShardSummary(shard_id=f"s{i}", pairs=pairs, seconds=seconds, pairs_per_s=pairs / seconds,
                            decode_s=0.1, model_s=seconds / 2, output_key=f"k{i}")

    key = shard_metrics_key(settings.db_schema)
    worker_a = MeasuredRunner(Backend([summary(0, 0.5, 200), summary(1, 7.0, 200)]), redis.Redis.from_url(
        settings.redis_url), key)
    worker_b = MeasuredRunner(Backend([summary(2, 45.0, 100), ShardError("s3", "deadline_exceeded", "slow", False)]),
                              redis.Redis.from_url(settings.redis_url), key)
    assert len(worker_a.map([object(), object()])) == 2
    assert len(worker_b.map([object(), object()])) == 2
    m = scrape(p2)
    b = "boundaries_shard_duration_seconds_bucket"
    assert [m[(b, (("le", le),))] for le in ("1.0", "5.0", "10.0", "30.0", "60.0", "+Inf")] == [1, 1, 2, 2, 3, 3]
    assert m[("boundaries_shard_duration_seconds_count", ())] == 3
    assert m[("boundaries_shard_duration_seconds_sum", ())] == pytest.approx(52.5)
    assert m[("boundaries_shard_pairs_total", ())] == 500
    assert m[("boundaries_shard_errors_total", ())] == 1
    assert lifecycle(scrape(p1)) == lifecycle(m)
    worker_a.redis.close()
    worker_b.redis.close()


def test_a_scrape_with_the_registry_down_still_answers_and_says_so(redis_url, pg_dsn, db_schema):
    settings = make_settings(redis_url, pg_dsn, db_schema)
    db = Database(pg_dsn, db_schema)
    db.migrate()
    down = Database("postgresql://nobody@127.0.0.1:1/none", db_schema, timeout_s=1)
    r = fail_fast_redis(redis_url)
    celery_app = fail_fast_celery(make_celery(settings))
    try:
        app = create_app(settings, registry=Registry(down), redis_client=r, celery_app=celery_app)
        with ServerThread(app) as server:
            m = scrape(server)
        assert m[("boundaries_lifecycle_source_up", (("source", "registry"),))] == 0
        assert m[("boundaries_lifecycle_source_up", (("source", "redis"),))] == 1
        assert not any(k[0] == "boundaries_jobs" for k in m)
    finally:
        db.close()
        down.close()
        r.close()
        celery_app.close()


def test_every_metric_the_grafana_dashboard_queries_is_exported(two_producers):
    settings, (p1, _p2), reg, _app = two_producers
    job_id, _ = reg.jobs.record(_event(settings))
    reg.jobs.complete(job_id, reg.jobs.claim(job_id), None)
    client = redis.Redis.from_url(settings.redis_url)
    MeasuredRunner(type("Backend", (), {"map": lambda self, reqs: [ShardSummary(
        shard_id="s", pairs=5, seconds=1.5, pairs_per_s=3.3, decode_s=0.1, model_s=1.0, output_key="k")]})(),
        client, shard_metrics_key(settings.db_schema)).map([object()])
    client.close()
    # a 401 and an ignored event: the labelled webhook counters have samples
    assert httpx.post(p1.url + "/webhooks/supabase", json={}, timeout=10).status_code == 401
    ignored = version_payload(str(uuid.uuid4()), str(uuid.uuid4()), status="processing", old_status=None, op="INSERT")
    r = httpx.post(p1.url + "/webhooks/supabase", json=ignored, headers={"Authorization": f"Bearer {SECRET}"},
                   timeout=10)
    assert r.json()["status"] == "ignored", r.text
    exported = {name for name, _labels in scrape(p1)}
    dashboard = json.loads((REPO / "deploy" / "grafana" / "boundaries.json").read_text())
    queried = {name for panel in dashboard["panels"] for t in panel["targets"]
               for name in re.findall(r"boundaries_[a-z_]+", t["expr"])}
    assert len(queried) >= 15
    assert queried - exported == set()
