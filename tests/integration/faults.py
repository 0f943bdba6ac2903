"""Fault injection for the reliability tests (no tests here).

Runners built inside the Celery worker process through ``settings.runner_factory``:

- ``tests.integration.faults:flaky`` — the inline runner (classical detector, in the worker process)
  behind a wrapper that fails chosen shard calls with transient ShardErrors *before* computing them:
  ``fail_first`` {shard_id: n} fails a shard's first n calls; ``fail_rate`` p fails a call when a
  seeded hash of (video, shard, call number) falls below p (reproducible "random" faults).
- ``tests.integration.faults:slow_local`` — the LocalRunner (spawned process pool) whose child sleeps
  ``delay_s`` before each shard and records its pid, so a test can kill -9 a child mid-shard.

Configuration: JSON in the ``FAULTS_CONFIG`` environment variable of the worker (inherited by its
spawned children). Counters live in Redis (``counter_redis_url``, hashes under ``ns``) so the test
reads them across processes: ``{ns}:calls`` (calls per ``video:shard``), ``{ns}:computed`` (shards
actually computed), ``{ns}:failed`` (injected failures), list ``{ns}:pids`` (child pids).

Also: :func:`synthetic_video`, a tiny real VP9 frame store + layout.db, and :func:`copy_video`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np
import redis

from boundaries.frames.keys import frames_prefix, layout_db_key
from boundaries.frames.layoutdb import build_layout_db
from boundaries.frames.ocr_prior import OcrPriorAccumulator
from boundaries.frames.writer import ChunkWriter
from boundaries.ingest import IngestResult
from boundaries.layout_config import LayoutConfig
from worker.runners.base import ShardError
from worker.runners.inline import InlineRunner
from worker.runners.local import LocalRunner, _run

CONFIG_ENV = "FAULTS_CONFIG"


def config() -> dict:
    return json.loads(os.environ[CONFIG_ENV])


def counters(cfg: dict) -> redis.Redis:
    return redis.Redis.from_url(cfg["counter_redis_url"])


def read_counts(cfg: dict, name: str) -> dict[str, int]:
    """``{video:shard: count}`` of counter hash ``name`` (calls, computed, failed)."""
    raw = counters(cfg).hgetall(f"{cfg['ns']}:{name}")
    return {k.decode(): int(v) for k, v in raw.items()}


def _field(req) -> str:
    return f"{req.video_id}:{req.shard_id}"


def _injected(cfg: dict, field: str, shard: str, n: int) -> bool:
    if n <= cfg.get("fail_first", {}).get(shard, 0):
        return True
    rate = cfg.get("fail_rate", 0.0)
    if rate:
        h = hashlib.sha256(f"{cfg.get('seed', 0)}:{field}:{n}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64 < rate
    return False


class FlakyRunner:
    def __init__(self, inner, cfg: dict):
        self.inner, self.cfg = inner, cfg
        self.r = counters(cfg)

    def map(self, requests):
        ns = self.cfg["ns"]
        verdicts = []
        for req in requests:
            n = self.r.hincrby(f"{ns}:calls", _field(req), 1)
            verdicts.append(_injected(self.cfg, _field(req), req.shard_id, n))
        run = [req for req, fail in zip(requests, verdicts, strict=True) if not fail]
        done = iter(self.inner.map(run))
        out = []
        for req, fail in zip(requests, verdicts, strict=True):
            if fail:
                self.r.hincrby(f"{ns}:failed", _field(req), 1)
                out.append(ShardError(req.shard_id, "injected_fault", f"injected transient fault in {req.shard_id}",
                                      permanent=False))
                continue
            res = next(done)
            if not isinstance(res, ShardError):
                self.r.hincrby(f"{ns}:computed", _field(req), 1)
            out.append(res)
        return out

    def close(self) -> None:
        self.inner.close()


def flaky(settings) -> FlakyRunner:
    return FlakyRunner(InlineRunner(), config())


def _slow_run(request: dict) -> dict:
    """Runs in a spawned LocalRunner child: record pid and call, sleep, compute, count."""
    cfg = config()
    r = counters(cfg)
    field = f"{request['video_id']}:{request['shard_id']}"
    r.rpush(f"{cfg['ns']}:pids", os.getpid())
    r.hincrby(f"{cfg['ns']}:calls", field, 1)
    time.sleep(cfg.get("delay_s", 1.0))
    out = _run(request)
    r.hincrby(f"{cfg['ns']}:computed", field, 1)
    return out


class SlowLocalRunner(LocalRunner):
    target = staticmethod(_slow_run)


def slow_local(settings) -> SlowLocalRunner:
    return SlowLocalRunner(settings.local_runner_workers, deadline_s=settings.local_runner_deadline_s)


def synthetic_video(store, settings, tenant_id: str, video_id: str, *, frames: int = 40, width: int = 64,
                    height: int = 16, version: int = 1, seed: int = 0) -> IngestResult:
    """A real VP9 frame store (COMPAT.md §2) of ``frames`` noise frames whose content changes every
    10 frames, plus its layout.db (§3), under the settings' templates."""
    rng = np.random.default_rng(seed)
    prefix = frames_prefix(settings.frames_prefix_template, tenant_id, video_id, version)
    prior = OcrPriorAccumulator(width, height)
    with ChunkWriter(store, prefix, width, height) as w:
        for i in range(frames):
            if i % 10 == 0:
                frame = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            w.write(frame)
            prior.add(frame)
    chunks = w.chunks_written
    cfg = LayoutConfig(width * 4, height * 10, width, height * 9, width * 2, height * 10, "center", prior.png())
    key = layout_db_key(settings.layout_db_key_template, tenant_id, video_id)
    store.put_bytes(key, build_layout_db(cfg))
    return IngestResult(frames, chunks, width, height, prefix, key, cfg)


def copy_video(store, settings, src: IngestResult, tenant_id: str, video_id: str, version: int = 1) -> IngestResult:
    """Copy a synthetic video's chunks and layout.db to another tenant/video (no re-encoding)."""
    prefix = frames_prefix(settings.frames_prefix_template, tenant_id, video_id, version)
    for k in list(store.list_keys(src.frames_prefix)):
        store.put_bytes(prefix + k[len(src.frames_prefix):], store.get_bytes(k))
    key = layout_db_key(settings.layout_db_key_template, tenant_id, video_id)
    store.put_bytes(key, store.get_bytes(src.layout_db_key))
    return IngestResult(src.total_frames, src.chunk_count, src.crop_width, src.crop_height, prefix, key, src.layout)


FAST_TIMING = dict(
    visibility_timeout_s=12, task_time_limit_s=11, task_soft_time_limit_s=10, local_runner_deadline_s=9.0,
    modal_call_deadline_s=9.0, heartbeat_interval_s=0.5, heartbeat_stale_s=3.0, retry_backoff_base_s=0.2,
    retry_backoff_max_s=1.0, sweep_queued_after_s=5.0, broker_restore_interval_s=1, shard_pairs=10,
    local_runner_workers=1,
)
"""Seconds, scaled down so a dead worker's job comes back within ~15 s; the same relations as the defaults."""


def set_faults(monkeypatch, counter_redis_url: str, ns: str, repo_root, **cfg) -> dict:
    """Put the fault config in the environment the worker processes inherit; clear old counters."""
    cfg = {"counter_redis_url": counter_redis_url, "ns": ns, **cfg}
    monkeypatch.setenv(CONFIG_ENV, json.dumps(cfg))
    monkeypatch.setenv("PYTHONPATH", str(repo_root))
    r = counters(cfg)
    r.delete(*(f"{ns}:{k}" for k in ("calls", "computed", "failed", "pids")))
    return cfg


def fail_job(jobs, job_id: str) -> None:
    """Put a recorded job into ``failed`` the way a worker does: claim it and dead-letter the attempt."""
    job = jobs.get(job_id)
    attempt = jobs.claim(job_id)
    event = {"video_id": str(job["video_id"]), "tenant_id": str(job["tenant_id"]),
             "cropped_frames_version": job["cropped_frames_version"], "model_version": job["model_version"]}
    assert jobs.dead_letter(job_id, attempt, event, error_type="test", error_message="boom") is not None
