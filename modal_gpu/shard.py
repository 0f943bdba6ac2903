"""The shard function: fetch only the chunks a pair range needs, decode them sequentially, predict
every pair in both directions, write the shard output to the object store, return a small summary.

Runs unchanged in a local process pool (worker/runners/local.py) and in a Modal GPU container
(modal_gpu/app.py). The predictor is loaded once per process and reused across shards.
"""

from __future__ import annotations

import time

import numpy as np
import structlog

from boundaries.errors import ModelVersionMismatch
from boundaries.frames.layoutdb import parse_layout_db
from boundaries.frames.reader import iter_frames
from boundaries.shards import ShardRequest, ShardSummary, encode_output
from boundaries.storage.factory import open_store
from modal_gpu.predictor import PairPredictor, load_predictor

log = structlog.get_logger(__name__)

_PREDICTORS: dict[tuple, PairPredictor] = {}


def cached_predictor(checkpoint_path: str | None, batch_size: int, model_version: str | None) -> PairPredictor:
    key = (checkpoint_path, batch_size, model_version)
    if key not in _PREDICTORS:
        _PREDICTORS[key] = load_predictor(checkpoint_path, batch_size=batch_size, model_version=model_version)
    return _PREDICTORS[key]


def predict_range(store, frames_prefix: str, layout, first_pair: int, end_pair: int, predictor: PairPredictor,
                  *, window: int = 256, timings: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward probabilities, ``float32 (end_pair - first_pair, 5)`` each, for pairs
    [first_pair, end_pair), streaming frames [first_pair, end_pair] in windows (bounded memory).

    Raises:
        MissingFramesError / CorruptChunkError from the frame store.
    """
    n = end_pair - first_pair
    fwd = np.empty((n, 5), np.float32)
    bwd = np.empty((n, 5), np.float32)
    filled = 0
    carry: np.ndarray | None = None  # last frame of the previous window: the pair across the seam
    decode_s = model_s = 0.0
    t = time.perf_counter()
    for batch in iter_frames(store, frames_prefix, first_pair, end_pair, window=window):
        frames = batch.frames if carry is None else np.concatenate([carry[None], batch.frames])
        decode_s += time.perf_counter() - t
        if len(frames) >= 2:
            t = time.perf_counter()
            f, b = predictor.predict(frames, layout)
            model_s += time.perf_counter() - t
            fwd[filled: filled + len(f)] = f
            bwd[filled: filled + len(b)] = b
            filled += len(f)
        carry = frames[-1].copy()
        t = time.perf_counter()
    if filled != n:
        raise RuntimeError(f"predicted {filled} pairs for range [{first_pair}, {end_pair}), expected {n}")
    if timings is not None:
        timings["decode_s"] = decode_s
        timings["model_s"] = model_s
    return fwd, bwd


def run_shard(request: ShardRequest | dict, predictor: PairPredictor | None = None) -> dict:
    """Process one shard; returns ``ShardSummary.model_dump()`` (a plain dict, cheap to send back)."""
    req = request if isinstance(request, ShardRequest) else ShardRequest.model_validate(request)
    t0 = time.perf_counter()
    if predictor is None:
        predictor = cached_predictor(req.checkpoint_path, req.batch_size, req.model_version
                                     if req.checkpoint_path else None)
    if predictor.model_version != req.model_version:
        raise ModelVersionMismatch(f"shard {req.shard_id} asks for model_version {req.model_version!r} but the "
                                   f"loaded predictor is {predictor.model_version!r}")
    store = open_store(req.store)
    layout = parse_layout_db(store.get_bytes(req.layout_db_key), source=req.layout_db_key)
    timings: dict = {}
    fwd, bwd = predict_range(store, req.frames_prefix, layout, req.first_pair, req.end_pair, predictor,
                             timings=timings)
    seconds = time.perf_counter() - t0
    per_pair_ms = np.full(req.pairs, 1000.0 * timings["model_s"] / max(req.pairs, 1), np.float32)
    store.put_bytes(req.output_key, encode_output(req.first_pair, req.end_pair, req.model_version, fwd, bwd,
                                                  per_pair_ms))
    peak, device = _gpu_stats()
    summary = ShardSummary(shard_id=req.shard_id, pairs=req.pairs, seconds=seconds,
                           pairs_per_s=req.pairs / seconds if seconds > 0 else 0.0, decode_s=timings["decode_s"],
                           model_s=timings["model_s"], peak_gpu_mem_bytes=peak, output_key=req.output_key,
                           device=device)
    log.info("shard.completed", **summary.model_dump())
    return summary.model_dump()


def run_shard_remote(request: dict, predictor: PairPredictor | None = None) -> dict:
    """:func:`run_shard` for a remote container: a ``PermanentError`` comes back as data,
    ``{"permanent_error": {"error_type", "message"}}``, so Modal's retry policy (which retries every
    exception) does not repeat work that cannot succeed. Transient errors still raise."""
    from boundaries.errors import PermanentError

    try:
        return run_shard(request, predictor)
    except PermanentError as e:
        log.warning("shard.permanent_error", error_type=e.error_type, error=str(e)[:500])
        return {"permanent_error": {"error_type": e.error_type, "message": f"{type(e).__name__}: {e}"[:2000]}}


def _gpu_stats() -> tuple[int, str]:
    import sys

    torch = sys.modules.get("torch")  # only if the predictor already imported it
    if torch is not None and torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated()), torch.cuda.get_device_name()
    return 0, "cpu"
