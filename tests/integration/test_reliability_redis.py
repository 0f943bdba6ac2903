"""Issue 7, broker outage: the test's own Redis (never the machine's shared one) is restarted on the
same port while a job runs; the job completes once, and the worker, reconnected, runs the next job."""

from __future__ import annotations

import time
import uuid
from contextlib import ExitStack

import psycopg

from boundaries.model_versions import CLASSICAL_MODEL_VERSION as MV
from tests.conftest import REPO
from tests.integration.faults import FAST_TIMING, read_counts, set_faults, synthetic_video
from tests.integration.harness import e2e_settings, open_stack


def test_redis_restarted_during_a_job(own_redis, redis_url, pg_dsn, db_schema, moto_s3, s3_bucket, tmp_path,
                                      monkeypatch):
    # given: a ~6 s job (4 shards x 1.5 s) on a worker whose broker is our own Redis
    cfg = set_faults(monkeypatch, redis_url, f"faults:{db_schema}", REPO, delay_s=1.5)
    settings = e2e_settings(redis_url=own_redis.url, pg_dsn=pg_dsn, db_schema=db_schema, tmp_path=tmp_path,
                            s3_endpoint=moto_s3.endpoint_url, s3_bucket=s3_bucket,
                            **(FAST_TIMING | {"runner_factory": "tests.integration.faults:slow_local"}))
    with ExitStack() as es:
        s = open_stack(settings, es)
        videos = []
        for _ in range(2):
            tenant, vid = str(uuid.uuid4()), str(uuid.uuid4())
            res = synthetic_video(s.store, s.settings, tenant, vid)
            s.registry.upsert_video(vid, tenant, 1)
            videos.append((tenant, vid, res))
        s.start_worker()
        s.post(s.activate(*videos[0]))
        s.wait_job(videos[0][1], MV, statuses=("running",), timeout_s=60)

        # when: Redis goes down for 2 s mid-job and comes back on the same port
        own_redis.stop()
        time.sleep(2)
        own_redis.start()
        first = s.wait_job(videos[0][1], MV, timeout_s=90)
        # and a new job after the restart (served only if the worker reconnected)
        resp = s.post(s.activate(*videos[1]))
        second = s.wait_job(videos[1][1], MV, timeout_s=90)

    # then: both completed, each with one run row and one results file, no shard computed twice
    assert first["status"] == "completed", first["error_message"]
    assert resp.status_code == 202, resp.text
    assert second["status"] == "completed", second["error_message"]
    with psycopg.connect(pg_dsn) as c:
        runs = c.execute(f"SELECT video_id, count(*) FROM {db_schema}.boundary_inference_runs GROUP BY video_id"
                         ).fetchall()
    assert sorted(str(v) for v, _ in runs) == sorted(v for _, v, _ in videos) and {n for _, n in runs} == {1}
    for tenant, vid, _ in videos:
        assert len(list(s.store.list_keys(f"videos/{tenant}/{vid}/boundaries/"))) == 1
    computed = read_counts(cfg, "computed")
    assert len(computed) == 8 and set(computed.values()) == {1}
