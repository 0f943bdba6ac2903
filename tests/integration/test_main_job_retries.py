"""``boundaries run`` (the main job: producer, worker process, due-retry loop in one command) completes a
job whose first attempt fails transiently: the retry waits in the registry and this command sends it."""

from __future__ import annotations

import io

import av
import pytest
from pydantic import SecretStr
from rich.console import Console

from boundaries.shards import shard_id
from boundaries_cli.main_job import run_main_job
from config.settings import Settings
from tests.conftest import REPO
from tests.integration.faults import read_counts, set_faults
from tests.synthetic import caption_band_video

pytestmark = pytest.mark.integration


def _write_video(path, frames) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libvpx-vp9", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())


def test_main_job_completes_a_job_whose_first_attempt_failed(tmp_path, redis_url, pg_dsn, db_schema, monkeypatch):
    # given: a 40-frame video and a runner whose first call of one shard fails transiently
    video = tmp_path / "clip.webm"
    _write_video(video, caption_band_video(40, height=64, width=320, seed=3))
    cfg = set_faults(monkeypatch, redis_url, f"faults:{db_schema}", REPO, fail_first={shard_id(0, 20): 1})
    settings = Settings(redis_url=redis_url, database_url=SecretStr(pg_dsn), db_schema=db_schema,
                        state_dir=tmp_path / "state", local_store_dir=tmp_path / "store",
                        queue_high=f"{db_schema}.high", queue_low=f"{db_schema}.low", shard_pairs=20,
                        runner_factory="tests.integration.faults:flaky", retry_backoff_base_s=0.5,
                        retry_backoff_max_s=1.0, retry_poll_interval_s=0.2)

    # when
    report = run_main_job(video, (0.0, 0.5, 1.0, 1.0), "center", settings, Console(file=io.StringIO()),
                          timeout_s=90)

    # then: completed, every pair, the failed shard computed on the second attempt
    assert report.status == "completed", report.error
    assert report.pairs == 39
    assert read_counts(cfg, "failed") == {f"{report.video_id}:{shard_id(0, 20)}": 1}
