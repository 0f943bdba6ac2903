"""Issue 2's walking skeleton, on real services: POST the Supabase webhook → a real Celery worker
process → results database in S3 (moto server) with one row per pair → one boundary_inference_runs row."""

from __future__ import annotations

from contextlib import ExitStack

import psycopg

from boundaries.model_versions import CLASSICAL_MODEL_VERSION
from boundaries.results_db import read_results_db
from tests.integration.harness import POPEYE, e2e_settings, open_stack


def test_webhook_to_published_results_database_over_s3(real_data, redis_url, pg_dsn, db_schema, moto_s3, s3_bucket,
                                                       tmp_path):
    settings = e2e_settings(redis_url=redis_url, pg_dsn=pg_dsn, db_schema=db_schema, tmp_path=tmp_path,
                            s3_endpoint=moto_s3.endpoint_url, s3_bucket=s3_bucket)
    with ExitStack() as stack:
        s = open_stack(settings, stack)
        tenant, vid, res = s.ingest(real_data / POPEYE)
        payload = s.activate(tenant, vid, res)
        s.start_worker()

        resp = s.post(payload)
        job = s.wait_job(vid)

    assert resp.status_code == 202, resp.text
    assert job["status"] == "completed", job["error_message"]
    with psycopg.connect(pg_dsn) as c:
        runs = c.execute(f"SELECT run_id, wasabi_storage_key, total_pairs, file_size_bytes FROM {db_schema}."
                         "boundary_inference_runs WHERE video_id = %s", (vid,)).fetchall()
    assert len(runs) == 1
    run_id, key, total_pairs, size = runs[0]
    assert key.startswith(f"videos/{tenant}/{vid}/boundaries/v1_model-classica_run-{run_id[:8]}")
    data = s.store.get_bytes(key)
    assert len(data) == size
    results = read_results_db(data)
    assert res.total_frames == 600 and total_pairs == 599
    assert results["frame1_index"].tolist() == list(range(599))
    assert results["meta"]["run_id"] == run_id and results["meta"]["model_version"] == CLASSICAL_MODEL_VERSION
