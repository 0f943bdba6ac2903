"""Issue 12 on real processes (Celery worker processes, a producer, Redis, PostgreSQL): a broker restart
while a retry is pending, a job whose attempts kill the worker, a job for a model_version the worker
does not serve, and the registry database down when a worker takes a message. Each test reproduced its
fault before the fix."""

from __future__ import annotations

import time
import uuid
from contextlib import ExitStack

import pytest
import redis

from boundaries.events import JobEvent
from boundaries.model_versions import CLASSICAL_MODEL_VERSION as MV
from boundaries.shards import shard_id
from producer.dispatch import dispatch, producer_celery
from tests.conftest import REPO
from tests.integration.faults import FAST_TIMING, read_counts, set_faults, synthetic_video
from tests.integration.harness import e2e_settings, open_stack, wait_until

pytestmark = pytest.mark.integration

_wait = wait_until


def _video(s):
    tenant, vid = str(uuid.uuid4()), str(uuid.uuid4())
    res = synthetic_video(s.store, s.settings, tenant, vid, frames=20)
    s.registry.upsert_video(vid, tenant, 1)
    return tenant, vid, res



def test_broker_restart_while_a_retry_is_pending_keeps_the_worker_consuming(own_redis, redis_url, pg_dsn, db_schema,
                                                                            tmp_path, monkeypatch):
    # given: a worker whose broker is our own redis-server, and a job whose first attempt fails transiently
    # (one shard's first call), so that it waits 2-4 s for its retry
    set_faults(monkeypatch, redis_url, f"faults:{db_schema}", REPO, fail_first={shard_id(0, 10): 1})
    settings = e2e_settings(redis_url=own_redis.url, pg_dsn=pg_dsn, db_schema=db_schema, tmp_path=tmp_path,
                            **(FAST_TIMING | {"runner_factory": "tests.integration.faults:flaky",
                                              "retry_backoff_base_s": 4.0, "retry_backoff_max_s": 4.0}))
    with ExitStack() as es:
        s = open_stack(settings, es)
        first, second = _video(s), _video(s)
        worker = s.start_worker()
        assert s.post(s.activate(*first)).status_code == 202
        job = s.registry.jobs.find(first[1], 1, MV) or _wait(lambda: s.registry.jobs.find(first[1], 1, MV), 10, "job")
        _wait(lambda: [a["outcome"] for a in s.registry.jobs.attempts_of(job["id"])] == ["retry"], 30,
              "first attempt closed for a retry")

        # when: the broker restarts (down about 1 s) while the retry is pending
        own_redis.stop()
        time.sleep(1)
        own_redis.start()

        # then: the worker stays up and keeps consuming; the job completes on its second attempt without the
        # sweep, and a job posted after the restart completes too
        done = s.wait_job(first[1], MV, timeout_s=60)
        assert s.post(s.activate(*second)).status_code == 202
        done_second = s.wait_job(second[1], MV, timeout_s=60)
        alive = worker.poll() is None
        log = (settings.state_dir / "logs").glob("*.log")
        logs = "\n".join(p.read_text(errors="replace") for p in log)
    assert alive, logs[-3000:]
    assert "Unrecoverable error" not in logs
    assert done["status"] == "completed" and done["attempts"] == 2, done["error_message"]
    assert done_second["status"] == "completed", done_second["error_message"]


def test_a_job_that_kills_its_worker_is_dead_lettered_after_max_attempts_starts(redis_url, pg_dsn, db_schema,
                                                                                tmp_path, monkeypatch):
    # given: a job whose shard kills the worker process (SIGKILL: a decoder segfault, an OOM kill), workers
    # restarted as a supervisor would, a short visibility timeout so the message comes back, max_attempts 3
    cfg = set_faults(monkeypatch, redis_url, f"faults:{db_schema}", REPO)
    timing = FAST_TIMING | dict(visibility_timeout_s=5, task_time_limit_s=4, task_soft_time_limit_s=3,
                                local_runner_deadline_s=2.0, modal_call_deadline_s=2.0, heartbeat_stale_s=2.0,
                                retry_backoff_max_s=1.0, max_attempts=3,
                                runner_factory="tests.integration.faults:worker_killer")
    settings = e2e_settings(redis_url=redis_url, pg_dsn=pg_dsn, db_schema=db_schema, tmp_path=tmp_path, **timing)
    with ExitStack() as es:
        s = open_stack(settings, es)
        tenant, vid, res = _video(s)
        assert s.post(s.activate(tenant, vid, res)).status_code == 202

        # when: each worker dies in the job and a new one is started, until the job is settled
        deaths = 0
        deadline = time.monotonic() + 120
        job = None
        while time.monotonic() < deadline:
            worker = s.start_worker()
            while worker.poll() is None and time.monotonic() < deadline:
                job = s.registry.jobs.find(vid, 1, MV)
                if job and job["status"] == "failed":
                    break
                time.sleep(0.2)
            if worker.poll() is not None:
                deaths += 1
            job = s.registry.jobs.find(vid, 1, MV)
            if job["status"] == "failed" or deaths > 6:
                break
        with s.registry.db.connection() as c:
            dls = c.execute("SELECT error_type, error_message, attempts FROM boundary_inference_dead_letters"
                            " WHERE video_id = %s", (vid,)).fetchall()
        attempts = s.registry.jobs.attempts_of(job["id"])

    # then: three starts, three lost workers, then a dead letter at the fourth claim — no fourth start
    assert job["status"] == "failed", (job, deaths)
    assert deaths == 3 and read_counts(cfg, "calls") == {"kills": 3}
    assert job["attempts"] == 3 and [a["outcome"] for a in attempts] == ["abandoned"] * 3
    assert len(dls) == 1 and dls[0]["error_type"] == "worker_lost"
    assert "worker was lost 3 times" in dls[0]["error_message"] and "max_attempts=3" in dls[0]["error_message"]


def test_a_job_for_another_model_version_is_dead_lettered_at_claim_without_retries(redis_url, pg_dsn, db_schema,
                                                                                  tmp_path, monkeypatch):
    # given: a worker that serves the built-in classical detector, and a job recorded and sent for another
    # model_version (a producer configured for a checkpoint, or a replay of a retired model's job)
    set_faults(monkeypatch, redis_url, f"faults:{db_schema}", REPO)
    settings = e2e_settings(redis_url=redis_url, pg_dsn=pg_dsn, db_schema=db_schema, tmp_path=tmp_path,
                            **(FAST_TIMING | {"runner_factory": "tests.integration.faults:flaky"}))
    with ExitStack() as es:
        s = open_stack(settings, es)
        tenant, vid, res = _video(s)
        s.activate(tenant, vid, res)
        event = JobEvent(video_id=vid, tenant_id=tenant, cropped_frames_version=1, model_version="other_a1b2c3d4",
                         source="cli")
        job_id, _ = s.registry.jobs.record(event)
        app = producer_celery(settings)
        es.callback(app.close)
        dispatch(app, settings, event.model_copy(update={"job_id": job_id}))
        s.registry.jobs.mark_sent(job_id)
        s.start_worker()

        # when
        job = s.wait_job(vid, "other_a1b2c3d4", timeout_s=60)
        with s.registry.db.connection() as c:
            dls = c.execute("SELECT error_type, error_message FROM boundary_inference_dead_letters"
                            " WHERE video_id = %s", (vid,)).fetchall()

    # then: one attempt, a dead letter that names both versions, no retries
    assert job["status"] == "failed" and job["attempts"] == 1
    assert [d["error_type"] for d in dls] == ["model_version_mismatch"]
    assert "other_a1b2c3d4" in dls[0]["error_message"] and MV in dls[0]["error_message"]


def _find_job(s, vid: str):
    try:
        return s.registry.jobs.find(vid, 1, MV)
    except Exception:  # noqa: BLE001 — the test's own pool reconnecting after the restart
        return None


def test_registry_down_when_the_worker_takes_a_message_leaves_the_job_for_after_it_is_back(
        private_pg, redis_url, db_schema, tmp_path, monkeypatch):
    # given: a job recorded and sent while the registry (our own PostgreSQL) is up, and no worker yet
    set_faults(monkeypatch, redis_url, f"faults:{db_schema}", REPO)
    settings = e2e_settings(redis_url=redis_url, pg_dsn=private_pg.dsn, db_schema=db_schema, tmp_path=tmp_path,
                            **(FAST_TIMING | {"runner_factory": "tests.integration.faults:flaky",
                                              "registry_retry_window_s": 25.0}))
    with ExitStack() as es:
        s = open_stack(settings, es)
        tenant, vid, res = _video(s)
        assert s.post(s.activate(tenant, vid, res)).status_code == 202

        # when: PostgreSQL goes down, a worker takes the message, and PostgreSQL comes back 12 s later
        # (longer than the worker's pool waits for a connection, 10 s)
        private_pg.stop()
        worker = s.start_worker()
        broker = redis.Redis.from_url(redis_url)
        es.callback(broker.close)
        _wait(lambda: broker.llen(settings.queue_high) == 0, 60, "message taken by the worker")
        time.sleep(12)
        private_pg.start()

        # then: the message was not acked with no state change: the job completes once, without the sweep
        job = _wait(lambda: (j := _find_job(s, vid)) and j["status"] in ("completed", "failed") and j, 60,
                    "job settled")
        alive = worker.poll() is None
    assert alive
    assert job["status"] == "completed" and job["attempts"] == 1, job["error_message"]
