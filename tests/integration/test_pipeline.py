"""The pipeline (claim → plan → fan out → aggregate → publish) on a real ingested video, real
PostgreSQL and a real object store, with the inline runner."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from boundaries.errors import LayoutError, LimitExceeded, MissingFramesError
from boundaries.events import JobEvent
from boundaries.frames.keys import chunk_key
from boundaries.frames.layout import ChunkRef
from boundaries.ingest import ingest_video
from boundaries.registry.db import Database
from boundaries.registry.registry import Registry
from boundaries.results_db import read_results_db
from boundaries.storage.local import LocalStore
from config.settings import Settings
from worker.pipeline import Deps, process_video
from worker.runners.inline import InlineRunner

POPEYE = "derived/popeye_burn10/T00-1_p3_srtburn_10fps.mp4"
CROP = (0.05, 0.78, 0.95, 0.99)


class BrightnessPredictor:
    """A deterministic stand-in for the model port: 'different' probability grows with the mean
    absolute difference of consecutive frames (enough to tell shards apart and check ordering)."""

    model_version = "test-brightness"

    def predict(self, frames, layout):
        d = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
        p_diff = np.clip(d / 50.0, 0, 1)
        fwd = np.zeros((len(d), 5), np.float32)
        fwd[:, 0], fwd[:, 1] = 1 - p_diff, p_diff
        return fwd, fwd.copy()


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, real_data):
    root = tmp_path_factory.mktemp("store")
    store = LocalStore(root)
    tenant, video = str(uuid.uuid4()), str(uuid.uuid4())
    res = ingest_video(real_data / POPEYE, CROP, "center", store, Settings(local_store_dir=root), tenant, video, 1)
    return root, tenant, video, res


@pytest.fixture
def env(ingested, pg_dsn, db_schema, tmp_path):
    root, tenant, video, res = ingested
    db = Database(pg_dsn, db_schema)
    db.migrate()
    reg = Registry(db)
    # each test writes shard outputs and results to its own copy of the frames (tests may delete chunks)
    store = LocalStore(tmp_path / "store")
    src = LocalStore(root)
    for k in src.list_keys(""):
        store.put_bytes(k, src.get_bytes(k))
    settings = Settings(local_store_dir=tmp_path / "store", shard_pairs=128, db_schema=db_schema)
    runner = InlineRunner(BrightnessPredictor())
    yield Deps(settings, reg, store, runner), tenant, video, res
    db.close()


def _event(tenant, video, model_version="test-brightness"):
    return JobEvent(video_id=video, tenant_id=tenant, cropped_frames_version=1, model_version=model_version)


def test_job_publishes_every_pair_once_and_registers_the_run(env):
    deps, tenant, video, res = env
    event = _event(tenant, video)
    job_id, created = deps.registry.jobs.record(event)
    attempt = deps.registry.jobs.claim(job_id)

    outcome = process_video(event, deps, job_id=job_id, attempt=attempt)

    assert outcome.total_pairs == res.total_frames - 1 == 599
    results = read_results_db(deps.store.get_bytes(outcome.results_key))
    assert results["frame1_index"].tolist() == list(range(599))
    assert results["meta"]["total_pairs"] == 599
    assert np.allclose(results["forward"].sum(1), 1.0, atol=1e-5)
    run = deps.registry.get_run(video, 1, "test-brightness")
    assert run["run_id"] == outcome.run_id and run["total_pairs"] == 599
    assert run["wasabi_storage_key"] == outcome.results_key
    assert deps.registry.jobs.get(job_id)["status"] == "completed"
    assert outcome.shards_total == 5 and outcome.shards_computed == 5


def test_retry_reuses_valid_shard_outputs_and_recomputes_invalid_ones(env):
    deps, tenant, video, _ = env
    event = _event(tenant, video)
    job_id, _ = deps.registry.jobs.record(event)
    first = process_video(event, deps, job_id=job_id, attempt=1)
    calls_before = deps.runner.calls
    # corrupt one shard output: it must be recomputed, the others reused
    keys = sorted(k for k in deps.store.list_keys("boundary_runs/"))
    deps.store.put_bytes(keys[2], b"garbage")

    second = process_video(event, deps, job_id=job_id, attempt=2)

    assert deps.runner.calls - calls_before == 1
    assert (second.shards_computed, second.shards_reused) == (1, 4)
    assert second.run_id == first.run_id and second.results_key == first.results_key
    a = read_results_db(deps.store.get_bytes(first.results_key))
    assert np.array_equal(a["forward"], read_results_db(deps.store.get_bytes(second.results_key))["forward"])


def test_missing_chunk_is_a_permanent_error_listing_the_frames(env):
    deps, tenant, video, res = env
    deps.store.delete(chunk_key(res.frames_prefix, ChunkRef(1, 43)))
    event = _event(tenant, video)
    job_id, _ = deps.registry.jobs.record(event)

    with pytest.raises(MissingFramesError) as e:
        process_video(event, deps, job_id=job_id, attempt=1)

    assert 43 in e.value.missing and 42 not in e.value.missing
    assert deps.registry.get_run(video, 1, "test-brightness") is None


def test_missing_layout_db_is_a_layout_error(env):
    deps, tenant, video, res = env
    deps.store.delete(res.layout_db_key)
    event = _event(tenant, video)
    job_id, _ = deps.registry.jobs.record(event)

    with pytest.raises(LayoutError, match="layout.db"):
        process_video(event, deps, job_id=job_id, attempt=1)


def test_over_the_frame_limit_is_rejected_before_any_shard_runs(env):
    deps, tenant, video, _ = env
    deps.settings = deps.settings.model_copy(update={"max_frames": 500})
    event = _event(tenant, video)
    job_id, _ = deps.registry.jobs.record(event)

    with pytest.raises(LimitExceeded) as e:
        process_video(event, deps, job_id=job_id, attempt=1)

    assert e.value.rejection_type == "frame_count_exceeded" and e.value.frame_count == 600
    assert deps.runner.calls == 0
