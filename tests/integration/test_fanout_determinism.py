"""Fan-out does not change results: the worker's pipeline with the local runner at 1, 2 and 4
processes produces byte-identical pair results (issue 5)."""

from __future__ import annotations

import sqlite3
import uuid

import pytest

from boundaries.events import JobEvent
from boundaries.frames.layoutdb import build_layout_db
from boundaries.frames.writer import ChunkWriter
from boundaries.layout_config import LayoutConfig
from boundaries.model_versions import CLASSICAL_MODEL_VERSION
from boundaries.registry.db import Database
from boundaries.registry.registry import Registry
from boundaries.storage.local import LocalStore
from config.settings import Settings
from tests.synthetic import caption_band_video
from worker.pipeline import Deps, process_video
from worker.runners.local import LocalRunner


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A 300-frame synthetic caption band (captions appear, change and vanish over a moving background)."""
    root = tmp_path_factory.mktemp("frames")
    store = LocalStore(root)
    tenant, vid = str(uuid.uuid4()), str(uuid.uuid4())
    prefix = f"{tenant}/{vid}/cropped_frames_v1/"
    frames = caption_band_video(300, height=40, width=320, seed=7)
    with ChunkWriter(store, prefix, 320, 40) as w:
        for f in frames:
            w.write(f)
    layout = LayoutConfig(640, 360, 160, 300, 480, 340, "center", _png(40, 320))
    store.put_bytes(f"{tenant}/{vid}/layout.db", build_layout_db(layout))
    return root, tenant, vid


def _png(h, w) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h)).save(buf, format="PNG")
    return buf.getvalue()


def _pair_rows(data: bytes, tmp_path) -> list[tuple]:
    p = tmp_path / f"{uuid.uuid4().hex}.db"
    p.write_bytes(data)
    con = sqlite3.connect(p)
    # every column except processing_time_ms, a wall-clock measurement
    cols = [r[1] for r in con.execute("PRAGMA table_info(pair_results)") if r[1] != "processing_time_ms"]
    rows = con.execute(f"SELECT {', '.join(cols)} FROM pair_results ORDER BY frame1_index").fetchall()
    con.close()
    return rows


def test_results_are_identical_at_1_2_and_4_local_workers(video, pg_dsn, db_schema, tmp_path):
    root, tenant, vid = video
    db = Database(pg_dsn, db_schema)
    db.migrate()
    tables = {}
    for n in (1, 2, 4):
        mv = CLASSICAL_MODEL_VERSION
        store_dir = tmp_path / f"store{n}"
        store = LocalStore(store_dir)
        src = LocalStore(root)
        for k in src.list_keys(""):
            store.put_bytes(k, src.get_bytes(k))
        runner = LocalRunner(n)
        try:
            deps = Deps(Settings(local_store_dir=store_dir, shard_pairs=40, db_schema=db_schema), Registry(db),
                        store, runner)
            event = JobEvent(video_id=vid, tenant_id=tenant, cropped_frames_version=1, model_version=mv)
            job_id, _ = deps.registry.jobs.record(event)
            outcome = process_video(event, deps, job_id=job_id, attempt=n)
        finally:
            runner.close()
        assert outcome.shards_computed == 8 and outcome.total_pairs == 299
        tables[n] = _pair_rows(store.get_bytes(outcome.results_key), tmp_path)
    db.close()

    assert len(tables[1]) == 299
    assert tables[1] == tables[2] == tables[4]
