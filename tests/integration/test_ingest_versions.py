"""Re-ingesting an active version never loses it: new chunks go to a fresh prefix, the registry row
switches in one step, a failed ingest removes what it wrote, and objects no version refers to
(interrupted ingests, replaced prefixes) are listed and removed by the orphan sweep. Real
PostgreSQL, S3 (moto server) and a real ingest process killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from pydantic import SecretStr

from boundaries.frames.decode import DamagedSourceError
from boundaries.frames.layoutdb import parse_layout_db
from boundaries.frames.orphans import delete_orphans, find_orphans
from boundaries.frames.reader import discover_chunks, read_frames
from boundaries.ingest import ingest_video
from boundaries.registry.db import Database
from boundaries.registry.frame_versions import publish_version, store_references
from boundaries.storage.s3 import S3Store
from config.settings import Settings

pytestmark = pytest.mark.integration

RAPID = "rapidvideocr/2.mp4"
CROP = (0.0, 0.7, 1.0, 1.0)


@pytest.fixture
def env(pg_dsn, db_schema, moto_s3, s3_bucket):
    settings = Settings(database_url=SecretStr(pg_dsn), db_schema=db_schema, storage_backend="s3",
                        s3_bucket=s3_bucket, s3_endpoint_url=moto_s3.endpoint_url)
    db = Database(pg_dsn, db_schema)
    db.migrate()
    yield settings, db, S3Store(s3_bucket, endpoint_url=moto_s3.endpoint_url)
    db.close()


def _publish(db, tenant_id, video_id, version=1):
    return lambda r: publish_version(db, video_id=video_id, tenant_id=tenant_id, version=version,
                                     storage_prefix=r.frames_prefix, layout_db_storage_key=r.layout_db_key,
                                     total_frames=r.total_frames, chunk_count=r.chunk_count)


def _row(db, video_id, version=1):
    with db.connection() as c:
        return c.execute("SELECT * FROM cropped_frames_versions WHERE video_id = %s AND version = %s",
                         (video_id, version)).fetchone()


def _readable(store, row) -> int:
    """Frames of the version the row points at, all decoded (raises if any chunk is missing)."""
    n = row["total_frames"]
    assert discover_chunks(store, row["storage_prefix"]).missing_chunks(n) == []
    parse_layout_db(store.get_bytes(row["layout_db_storage_key"]))
    return len(read_frames(store, row["storage_prefix"], 0, n - 1).frames)


def test_failed_reingest_keeps_the_active_version_and_removes_what_it_wrote(env, real_data, shared_dir,
                                                                             tenant_id, video_id):
    settings, db, store = env
    # Given: an active version
    first = ingest_video(real_data / RAPID, CROP, "center", store, settings, tenant_id, video_id,
                         publish=_publish(db, tenant_id, video_id))
    before = _row(db, video_id)
    assert before["status"] == "active" and before["storage_prefix"] == first.frames_prefix
    keys_before = sorted(store.list_keys(""))
    # When: re-ingests of the same version fail — in the source (damaged file) ...
    with pytest.raises(DamagedSourceError):
        ingest_video(shared_dir / "data" / "faults" / "corrupt_mid.mp4", CROP, "center", store, settings,
                     tenant_id, video_id, max_damaged_packets=0, publish=_publish(db, tenant_id, video_id))
    # ... and after every chunk and the layout.db were uploaded, when the registry is unreachable
    dead = Database("postgresql://postgres@127.0.0.1:1/x", "public", timeout_s=2)
    with pytest.raises(Exception, match="(?i)connect|timeout|refused"):
        ingest_video(real_data / RAPID, CROP, "center", store, settings, tenant_id, video_id,
                     publish=_publish(dead, tenant_id, video_id))
    dead.close()
    # Then: the row still points at the old, complete chunks; nothing else is in the store
    after = _row(db, video_id)
    assert (after["storage_prefix"], after["total_frames"], after["status"]) == (
        before["storage_prefix"], before["total_frames"], "active")
    assert _readable(store, after) == first.total_frames
    assert sorted(store.list_keys("")) == keys_before
    assert find_orphans(store, settings.frames_prefix_template, store_references(db), grace=timedelta(0)) == []


def test_reingest_switches_in_one_step_and_the_replaced_prefix_is_swept_after_the_grace(env, real_data, tenant_id,
                                                                                        video_id):
    settings, db, store = env
    first = ingest_video(real_data / RAPID, CROP, "center", store, settings, tenant_id, video_id, max_frames=12,
                         publish=_publish(db, tenant_id, video_id))
    # When: the same version is ingested again from a longer cut
    second = ingest_video(real_data / RAPID, CROP, "center", store, settings, tenant_id, video_id, max_frames=None,
                          publish=_publish(db, tenant_id, video_id))
    # Then: the row points at the new prefix with the new count; the old chunks were not touched ...
    row = _row(db, video_id)
    assert second.frames_prefix != first.frames_prefix
    assert (row["storage_prefix"], row["total_frames"], row["layout_db_storage_key"]) == (
        second.frames_prefix, 30, second.layout_db_key)
    assert _readable(store, row) == 30
    old_keys = list(store.list_keys(first.frames_prefix))
    assert len(old_keys) == first.chunk_count + 1  # chunks + layout.db
    # ... a job that located the old prefix before the switch can still read it (kept within the grace)
    refs = store_references(db)
    kept = find_orphans(store, settings.frames_prefix_template, refs)
    assert [(o.prefix, o.deletable) for o in kept] == [(first.frames_prefix, False)]
    assert delete_orphans(store, kept) == [] and list(store.list_keys(first.frames_prefix)) == old_keys
    # ... and after it, the sweep removes exactly the replaced prefix
    gone = find_orphans(store, settings.frames_prefix_template, refs, grace=timedelta(0))
    assert delete_orphans(store, gone) == [first.frames_prefix]
    assert list(store.list_keys(first.frames_prefix)) == []
    assert _readable(store, _row(db, video_id)) == 30


INGEST_CHILD = """
import sys
from pathlib import Path
from boundaries.ingest import ingest_video
from boundaries.storage.s3 import S3Store
from config.settings import Settings
video, bucket, endpoint, tenant, vid = sys.argv[1:]
store = S3Store(bucket, endpoint_url=endpoint)
ingest_video(Path(video), (0.05, 0.78, 0.95, 0.99), "center", store, Settings(), tenant, vid, encode_workers=1)
"""


def test_ingest_killed_midway_leaves_an_orphan_that_the_sweep_lists_and_removes(env, real_data, tenant_id,
                                                                                 video_id, s3_bucket, moto_s3):
    settings, db, store = env
    # Given: an active version of another video that must survive the sweep
    other_tenant, other_video = tenant_id, video_id
    kept = ingest_video(real_data / RAPID, CROP, "center", store, settings, other_tenant, other_video,
                        max_frames=20, publish=_publish(db, other_tenant, other_video))
    # When: an ingest process is killed (SIGKILL) after it uploaded some chunks
    import uuid

    tenant, video = str(uuid.uuid4()), str(uuid.uuid4())
    env_vars = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-c", INGEST_CHILD, str(real_data / "derived/popeye_burn10/"
                             "T00-1_p3_srtburn_10fps.mp4"), s3_bucket, moto_s3.endpoint_url, tenant, video],
                            env=env_vars, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any(True for _ in store.list_keys(f"{tenant}/{video}/")):
            assert proc.poll() is None, "ingest ended before it was killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    left = list(store.list_keys(f"{tenant}/{video}/"))
    assert left and not any(k.endswith("layout.db") for k in left)
    # Then: listed as an orphan (young: kept by default), removed once past the grace; the active
    # version of the other video is untouched
    refs = store_references(db)
    young = find_orphans(store, settings.frames_prefix_template, refs)
    assert [(o.deletable, sorted(o.keys)) for o in young] == [(False, sorted(left))]
    done = delete_orphans(store, find_orphans(store, settings.frames_prefix_template, refs,
                                              grace=timedelta(0)))
    assert len(done) == 1 and list(store.list_keys(f"{tenant}/{video}/")) == []
    assert _readable(store, _row(db, other_video)) == kept.total_frames == 20
