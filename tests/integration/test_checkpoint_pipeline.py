"""A users' checkpoint configured in settings (``boundaries run --checkpoint``) drives the pipeline:
shards run the learned model in the local runner's processes and the run records its model_version."""

from __future__ import annotations

import uuid

import numpy as np

from boundaries.events import JobEvent
from boundaries.registry.db import Database
from boundaries.registry.registry import Registry
from boundaries.results_db import read_results_db
from boundaries.storage.local import LocalStore
from config.settings import Settings
from tests.unit.test_modal_app import write_tiny_video
from worker.pipeline import Deps, process_video
from worker.runners.local import LocalRunner


def test_checkpoint_in_settings_is_the_model_shards_run(tmp_path, pg_dsn, db_schema):
    from modal_gpu.checkpoint import save_checkpoint
    from modal_gpu.model import build_model, randomize_for_tests_

    model = build_model()
    randomize_for_tests_(model, 3)
    ckpt = tmp_path / "ckpt.pt"
    model_version, _sha = save_checkpoint(model, ckpt, wandb_run_id="abc123xy")
    store = LocalStore(tmp_path / "store")
    tenant, vid = str(uuid.uuid4()), str(uuid.uuid4())
    prefix = f"{tenant}/{vid}/cropped_frames_v1/"
    write_tiny_video(store, prefix, f"{tenant}/{vid}/layout.db", frames=12)
    db = Database(pg_dsn, db_schema)
    db.migrate()
    settings = Settings(local_store_dir=tmp_path / "store", checkpoint_path=ckpt, model_version=model_version,
                        shard_pairs=6, db_schema=db_schema)
    runner = LocalRunner(1)
    event = JobEvent(video_id=vid, tenant_id=tenant, cropped_frames_version=1, model_version=model_version)
    try:
        deps = Deps(settings, Registry(db), store, runner)
        job_id, _ = deps.registry.jobs.record(event)
        outcome = process_video(event, deps, job_id=job_id, attempt=1)
    finally:
        runner.close()
        db.close()

    results = read_results_db(store.get_bytes(outcome.results_key))
    assert model_version.startswith("abc123xy_")
    assert results["meta"]["model_version"] == model_version
    assert results["meta"]["model_checkpoint_path"] == str(ckpt)
    assert results["frame1_index"].tolist() == list(range(11))
    assert np.allclose(results["forward"].sum(1), 1.0, atol=1e-5)
    assert f"model-{model_version[:8]}" in outcome.results_key
