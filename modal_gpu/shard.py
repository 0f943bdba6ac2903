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
from modal_gpu.inference_options import InferenceOptions
from modal_gpu.predictor import PairPredictor, load_predictor
from modal_gpu.prefetch import Prefetcher

log = structlog.get_logger(__name__)

_PREDICTORS: dict[tuple, PairPredictor] = {}


def cached_predictor(checkpoint_path: str | None, batch_size: int, model_version: str | None,
                     options: InferenceOptions | None = None) -> PairPredictor:
    key = (checkpoint_path, batch_size, model_version, options)
    if key not in _PREDICTORS:
        _PREDICTORS[key] = load_predictor(checkpoint_path, batch_size=batch_size, model_version=model_version,
                                          options=options)
    return _PREDICTORS[key]


def predict_range(store, frames_prefix: str, layout, first_pair: int, end_pair: int, predictor: PairPredictor,
                  *, window: int | None = None, timings: dict | None = None, decode_workers: int | None = None,
                  decode_device: str = "cpu", prefetch: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward probabilities, ``float32 (end_pair - first_pair, 5)`` each, for pairs
    [first_pair, end_pair), streaming frames [first_pair, end_pair] in windows (bounded memory).

    Two stages overlap: a prefetch thread decodes windows of ``window`` frames (default
    ``max(256, predictor.pairs_per_step)``; ``decode_workers`` threads on ``decode_device``, see
    :func:`boundaries.frames.reader.iter_frames`), each window after the first starting with the
    previous one's last frame (the pair across the seam), and hands it to the predictor's ``stage``
    (CUDA: pinned host-to-device copy) at most ``prefetch`` windows ahead, while this thread runs
    ``predict_staged`` (preprocessing + model) on the previous one. A predictor without
    ``stage``/``predict_staged`` (the classical detector) gets ``predict(frames, layout)``.
    ``timings`` receives ``decode_s`` (the prefetch thread's busy seconds), ``model_s`` (this
    thread's) and ``wait_s`` (seconds this thread waited for a window: the decode stall).

    Raises:
        MissingFramesError / CorruptChunkError from the frame store (raised here, from the prefetch thread).
    """
    n = end_pair - first_pair
    fwd = np.empty((n, 5), np.float32)
    bwd = np.empty((n, 5), np.float32)
    stage = getattr(predictor, "stage", None)
    predict_staged = getattr(predictor, "predict_staged", None)
    if stage is None or predict_staged is None:
        stage, predict_staged = (lambda frames: frames), predictor.predict
    window = max(2, window or max(256, getattr(predictor, "pairs_per_step", 0)))  # >= 2: one new frame per window

    def produce():
        for batch in iter_frames(store, frames_prefix, first_pair, end_pair, window=window, overlap=1,
                                 max_workers=decode_workers, decode_device=decode_device):
            yield stage(batch.frames) if len(batch.frames) >= 2 else None

    filled = 0
    model_s = wait_s = 0.0
    with Prefetcher(produce, depth=prefetch, name="shard-prefetch") as staged_windows:
        while True:
            t = time.perf_counter()
            staged = next(staged_windows, _END)
            wait_s += time.perf_counter() - t
            if staged is _END:
                break
            if staged is None:
                continue
            t = time.perf_counter()
            f, b = predict_staged(staged, layout)
            model_s += time.perf_counter() - t
            fwd[filled: filled + len(f)] = f
            bwd[filled: filled + len(b)] = b
            filled += len(f)
        decode_s = staged_windows.busy_s
    if filled != n:
        raise RuntimeError(f"predicted {filled} pairs for range [{first_pair}, {end_pair}), expected {n}")
    if timings is not None:
        timings.update(decode_s=decode_s, model_s=model_s, wait_s=wait_s)
    return fwd, bwd


_END = object()


def run_shard(request: ShardRequest | dict, predictor: PairPredictor | None = None, *,
              decode_workers: int | None = None, decode_device: str = "cpu") -> dict:
    """Process one shard; returns ``ShardSummary.model_dump()`` (a plain dict, cheap to send back).
    ``decode_workers`` / ``decode_device``: as :func:`predict_range` (settings ``decode_workers``,
    ``decode_device`` of the container)."""
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
                             timings=timings, decode_workers=decode_workers, decode_device=decode_device)
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


def run_shard_remote(request: dict, predictor: PairPredictor | None = None, **decode) -> dict:
    """:func:`run_shard` for a remote container: a ``PermanentError`` comes back as data,
    ``{"permanent_error": {"error_type", "message"}}``, so Modal's retry policy (which retries every
    exception) does not repeat work that cannot succeed. Transient errors still raise."""
    from boundaries.errors import PermanentError

    try:
        return run_shard(request, predictor, **decode)
    except PermanentError as e:
        log.warning("shard.permanent_error", error_type=e.error_type, error=str(e)[:500])
        return {"permanent_error": {"error_type": e.error_type, "message": f"{type(e).__name__}: {e}"[:2000]}}


def _gpu_stats() -> tuple[int, str]:
    import sys

    torch = sys.modules.get("torch")  # only if the predictor already imported it
    if torch is not None and torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated()), torch.cuda.get_device_name()
    return 0, "cpu"
