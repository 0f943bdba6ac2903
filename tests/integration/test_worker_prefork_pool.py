"""``boundaries worker -P prefork -c 2``: two jobs at a time in pool children, and SIGTERM mid-job hands
both jobs back (queued, due now; the attempt closed as a ``worker_interrupted`` retry) as the solo pool
does, instead of leaving them ``running`` behind fresh heartbeats until the sweep."""

from __future__ import annotations

import signal
import uuid
from contextlib import ExitStack

import pytest
import redis

from boundaries.events import JobEvent
from boundaries.model_versions import CLASSICAL_MODEL_VERSION
from boundaries.registry.db import Database
from boundaries.registry.registry import Registry
from boundaries.storage.factory import store_from_settings
from boundaries_cli.embedded import child_env
from boundaries_cli.main_job import start_due_retries
from producer.dispatch import dispatch, producer_celery
from tests.conftest import REPO
from tests.integration.faults import FAST_TIMING, counters, set_faults, synthetic_video
from tests.integration.harness import e2e_settings, wait_until
from tests.integration.test_serve_and_worker_processes import Process

pytestmark = pytest.mark.integration

_wait = wait_until



def test_prefork_runs_two_jobs_at_once_and_sigterm_hands_both_back(redis_url, pg_dsn, db_schema, tmp_path,
                                                                   monkeypatch):
    cfg = set_faults(monkeypatch, redis_url, f"faults:{db_schema}", REPO, delay_s=60.0)
    settings = e2e_settings(redis_url=redis_url, pg_dsn=pg_dsn, db_schema=db_schema, tmp_path=tmp_path,
                            **(FAST_TIMING | dict(runner_factory="tests.integration.faults:slow_local",
                                                  local_runner_workers=1, local_runner_deadline_s=300,
                                                  modal_call_deadline_s=300, task_soft_time_limit_s=400,
                                                  task_time_limit_s=500, visibility_timeout_s=600)))
    db = Database(pg_dsn, db_schema)
    db.migrate()
    registry = Registry(db)
    store = store_from_settings(settings)
    sender = producer_celery(settings)
    env = child_env(settings) | {"BOUNDARIES_LOG_LEVEL": "INFO"}
    with ExitStack() as es:
        es.callback(db.close)
        es.callback(sender.close)
        job_ids = []
        for seed in (4, 5):
            tenant, vid = str(uuid.uuid4()), str(uuid.uuid4())
            synthetic_video(store, settings, tenant, vid, frames=12, seed=seed)
            registry.upsert_video(vid, tenant, 1)
            event = JobEvent(video_id=vid, tenant_id=tenant, cropped_frames_version=1,
                             model_version=CLASSICAL_MODEL_VERSION, priority="high")
            job_id, _ = registry.jobs.record(event)
            dispatch(sender, settings, event.model_copy(update={"job_id": job_id}))
            job_ids.append(job_id)
        worker = Process(["worker", "-P", "prefork", "-c", "2", "-n", f"pf-{uuid.uuid4().hex[:8]}@%h"], env)
        es.callback(worker.stop)
        ready = worker.wait_for(lambda e: e.get("event") == "worker.ready", 60, "worker.ready")
        assert ready["pool"] == "prefork" and ready["concurrency"] == 2

        # both jobs run at the same time, each 60 s into a slow shard
        try:
            _wait(lambda: all(registry.jobs.get(j)["status"] == "running" for j in job_ids), 60, "both jobs running")
            _wait(lambda: len(counters(cfg).lrange(f"{cfg['ns']}:pids", 0, -1)) == 2, 60, "both shards started")
        except TimeoutError as e:
            pytest.fail(f"{e}:\n" + "\n".join(line for _, line in worker.lines[-40:]))

        worker.proc.send_signal(signal.SIGTERM)
        worker.proc.wait(20)
        worker.stop()
        for j in job_ids:
            job = registry.jobs.get(j)
            attempts = registry.jobs.attempts_of(j)
            assert job["status"] == "queued", "\n".join(line for _, line in worker.lines[-25:])
            assert [(a["outcome"], a["error_type"]) for a in attempts] == [("retry", "worker_interrupted")]
        worker.events()  # the prefork worker's lines are JSON too

        # a new prefork worker (fast shards now) completes both, sent by the due-retry loop or requeued
        set_faults(monkeypatch, redis_url, f"faults:{db_schema}", REPO, delay_s=0.0)
        start_due_retries(settings, registry, es)
        env = child_env(settings) | {"BOUNDARIES_LOG_LEVEL": "WARNING"}
        again = Process(["worker", "-P", "prefork", "-c", "2", "-n", f"pf2-{uuid.uuid4().hex[:8]}@%h"], env)
        es.callback(again.stop)
        _wait(lambda: all(registry.jobs.get(j)["status"] == "completed" for j in job_ids), 120, "both completed")
    r = redis.Redis.from_url(redis_url)
    r.delete(settings.queue_high, settings.queue_low)
    r.close()
