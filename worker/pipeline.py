"""The job pipeline: claim → validate → plan shards → fan out → aggregate → publish.

Pure logic over the ports (registry, object store, runner); the Celery task (worker/tasks.py) only
decodes the message and maps errors to retry / dead letter. Every step is idempotent, so a redelivered
or retried job recomputes only shards whose output is missing or invalid and republishes the same
run (deterministic run id and results key).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import structlog

from boundaries.errors import (
    LayoutError,
    LimitExceeded,
    MissingFramesError,
    PermanentError,
    ShardFailed,
    VersionNotActive,
)
from boundaries.events import JobEvent
from boundaries.frames.keys import frames_prefix, layout_db_key, results_filename, results_key, shard_output_key
from boundaries.frames.layout import all_chunks
from boundaries.frames.layoutdb import parse_layout_db
from boundaries.frames.reader import discover_chunks
from boundaries.limits import check_limits, estimate
from boundaries.registry.registry import Registry, run_id_for
from boundaries.results_db import RunMetadata, build_results_db
from boundaries.shards import InvalidShardOutput, ShardRequest, decode_output, plan_shards, shard_id
from boundaries.storage.base import ObjectStore
from config.settings import Settings
from worker.runners.base import Runner, ShardError

log = structlog.get_logger(__name__)


@dataclass
class Deps:
    settings: Settings
    registry: Registry
    store: ObjectStore
    runner: Runner


@dataclass
class JobOutcome:
    status: str  # "completed" | "skipped"
    run_id: str | None = None
    results_key: str | None = None
    total_pairs: int = 0
    shards_total: int = 0
    shards_computed: int = 0
    shards_reused: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def locate_version(deps: Deps, event: JobEvent) -> tuple[str, str, int | None]:
    """(frames prefix, layout.db key, total_frames or None) from the registry row, else the templates.

    Raises:
        VersionNotActive: the row exists and its status is not ``active`` (its chunks may still be being
            written: a complete-looking prefix of the video would be published as the whole run).
    """
    s = deps.settings
    row = deps.registry.get_version(event.video_id, event.cropped_frames_version)
    if row is not None and row.get("status") not in (None, "active"):
        raise VersionNotActive(f"cropped_frames_versions row of video {event.video_id} v{event.cropped_frames_version}"
                               f" has status {row.get('status')!r}, not 'active'; released until it is activated")
    prefix = (row or {}).get("storage_prefix") or frames_prefix(
        s.frames_prefix_template, event.tenant_id, event.video_id, event.cropped_frames_version)
    if not prefix.endswith("/"):
        prefix += "/"
    layout_key = (row or {}).get("layout_db_storage_key") or layout_db_key(
        s.layout_db_key_template, event.tenant_id, event.video_id)
    return prefix, layout_key, (row or {}).get("total_frames")


def shard_requests(deps: Deps, event: JobEvent, prefix: str, layout_key: str, total_frames: int) -> list[ShardRequest]:
    s = deps.settings
    return [
        ShardRequest(
            shard_id=shard_id(a, b), tenant_id=event.tenant_id, video_id=event.video_id,
            cropped_frames_version=event.cropped_frames_version, model_version=event.model_version,
            first_pair=a, end_pair=b, frames_prefix=prefix, layout_db_key=layout_key,
            output_key=shard_output_key(s.shard_output_key_template, event.tenant_id, event.video_id,
                                        event.cropped_frames_version, event.model_version, a, b),
            store=deps.store.describe(),
            checkpoint_path=str(s.checkpoint_path) if s.checkpoint_path else None, batch_size=s.batch_size,
        )
        for a, b in plan_shards(total_frames, s.shard_pairs)
    ]


def _load_output(store: ObjectStore, req: ShardRequest) -> dict | None:
    try:
        return decode_output(store.get_bytes(req.output_key), req.first_pair, req.end_pair, req.model_version)
    except (InvalidShardOutput, KeyError):
        return None


def process_video(event: JobEvent, deps: Deps, *, job_id: str, attempt: int) -> JobOutcome:
    """Run one job to completion or raise.

    Raises:
        PermanentError: bad layout, missing frames, over limits (LimitExceeded), … — never retried.
        ShardFailed: some shards failed transiently; finished shards are kept for the retry.
    """
    t0 = time.perf_counter()
    started_at = datetime.now(UTC)
    s = deps.settings
    bound = log.bind(job_id=job_id, video_id=event.video_id, version=event.cropped_frames_version,
                     model_version=event.model_version, attempt=attempt)
    prefix, layout_key, registered_frames = locate_version(deps, event)
    try:
        parse_layout_db(deps.store.get_bytes(layout_key), source=layout_key)
    except KeyError as e:
        raise LayoutError(f"layout.db for video {event.video_id} not found at key {layout_key!r}; "
                          "re-run layout analysis / ingest") from e
    index = discover_chunks(deps.store, prefix)
    if not index.keys:
        raise MissingFramesError(f"no chunks under prefix {prefix!r} for video {event.video_id}", [])
    total_frames = index.total_frames(deps.store)
    if registered_frames and registered_frames != total_frames:
        bound.warning("frames.count_mismatch", registered=registered_frames, found=total_frames)
        total_frames = max(total_frames, registered_frames)
    missing_chunks = [c for c in all_chunks(total_frames) if c not in index.keys]
    if missing_chunks:
        from boundaries.frames.layout import chunk_frames

        missing = sorted(i for c in missing_chunks for i in chunk_frames(c, total_frames))
        raise MissingFramesError(
            f"video {event.video_id} v{event.cropped_frames_version}: {len(missing_chunks)} chunks missing "
            f"under {prefix!r} (first missing frames {missing[:10]})", missing)
    if total_frames < 2:
        raise LimitExceeded(f"video {event.video_id} v{event.cropped_frames_version} has {total_frames} frame(s);"
                            " at least 2 are needed for a frame pair", "validation_failed", frame_count=total_frames)
    est = estimate(total_frames, pairs_per_s=s.estimated_pairs_per_s, gpu_hourly_usd=s.gpu_hourly_usd,
                   warn_frames=s.warn_frames)
    if est.warning:
        bound.warning("limits.warning", message=est.warning)
    check_limits(est, max_frames=s.max_frames, max_cost_usd=s.max_cost_usd)

    requests = shard_requests(deps, event, prefix, layout_key, total_frames)
    outputs: dict[str, dict] = {}
    for req in requests:
        out = _load_output(deps.store, req)
        if out is not None:
            outputs[req.shard_id] = out
    pending = [r for r in requests if r.shard_id not in outputs]
    reused = len(requests) - len(pending)
    bound.info("job.planned", total_frames=total_frames, shards=len(requests), pending=len(pending),
               reused=reused, estimated_cost_usd=round(est.cost_usd, 4))
    results = deps.runner.map(pending)
    failed = {r.shard_id: res for r, res in zip(pending, results, strict=True) if isinstance(res, ShardError)}
    for req in pending:
        if req.shard_id in failed:
            continue
        out = _load_output(deps.store, req)
        if out is None:
            failed[req.shard_id] = ShardError(req.shard_id, "invalid_output",
                                              f"shard output missing or invalid at {req.output_key}", False)
        else:
            outputs[req.shard_id] = out
    if failed:
        permanent = [f for f in failed.values() if f.permanent]
        if permanent:
            f = permanent[0]
            err = PermanentError(f"shard {f.shard_id} failed permanently ({f.error_type}): {f.message}")
            err.error_type = f.error_type
            raise err
        raise ShardFailed(f"{len(failed)} of {len(requests)} shards failed; first: "
                          f"{next(iter(failed.values())).message}", {k: v.message for k, v in failed.items()})

    frame1 = np.concatenate([np.arange(r.first_pair, r.end_pair, dtype=np.int64) for r in requests])
    fwd = np.concatenate([outputs[r.shard_id]["forward"] for r in requests])
    bwd = np.concatenate([outputs[r.shard_id]["backward"] for r in requests])
    ptime = np.concatenate([outputs[r.shard_id]["processing_time_ms"] for r in requests])
    total_pairs = total_frames - 1
    if len(frame1) != total_pairs or not np.array_equal(frame1, np.arange(total_pairs)):
        raise RuntimeError(f"aggregation produced {len(frame1)} pairs, expected {total_pairs}")  # a bug, not input

    run_id = run_id_for(event.idempotency_key)
    completed_at = datetime.now(UTC)
    seconds = time.perf_counter() - t0
    meta = RunMetadata(run_id=run_id, cropped_frames_version=event.cropped_frames_version,
                       model_version=event.model_version,
                       model_checkpoint_path=str(s.checkpoint_path) if s.checkpoint_path else None,
                       started_at=started_at.isoformat(), completed_at=completed_at.isoformat(),
                       total_pairs=total_pairs, processing_time_seconds=seconds)
    data = build_results_db(meta, frame1, fwd, bwd, ptime)
    key = results_key(s.results_key_template, event.tenant_id, event.video_id,
                      results_filename(event.cropped_frames_version, event.model_version, run_id))
    deps.store.put_bytes(key, data)
    run_uuid = deps.registry.upsert_run(
        run_id=run_id, video_id=event.video_id, tenant_id=event.tenant_id,
        cropped_frames_version=event.cropped_frames_version, model_version=event.model_version,
        model_checkpoint_path=meta.model_checkpoint_path, wasabi_storage_key=key, file_size_bytes=len(data),
        total_pairs=total_pairs, processing_time_seconds=seconds, started_at=started_at, completed_at=completed_at)
    deps.registry.jobs.complete(job_id, attempt, run_uuid)
    outcome = JobOutcome("completed", run_id, key, total_pairs, len(requests), len(pending), reused, seconds)
    bound.info("job.completed", run_id=run_id, results_key=key, pairs=total_pairs, shards=len(requests),
               computed=len(pending), reused=reused, seconds=round(seconds, 3),
               pairs_per_s=round(total_pairs / seconds, 1) if seconds else None)
    return outcome
