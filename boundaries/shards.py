"""Shard planning and the shard request/summary/output formats.

A video of F frames has P = F - 1 frame pairs; pair p is (p, p + 1). A shard is a half-open pair
range [first_pair, end_pair); it needs frames [first_pair, end_pair] (inclusive). Every pair belongs to
exactly one shard. Shard outputs are ``.npz`` files at deterministic keys (settings'
``shard_output_key_template``), so a retried job skips shards whose output is present and valid.
"""

from __future__ import annotations

import io

import numpy as np
from pydantic import BaseModel, ConfigDict

from boundaries.labels import NUM_LABELS

OUTPUT_FORMAT = 1


class ShardRequest(BaseModel):
    """Everything a shard function needs; JSON-serializable (it crosses process and Modal boundaries)."""

    model_config = ConfigDict(frozen=True)

    shard_id: str
    tenant_id: str
    video_id: str
    cropped_frames_version: int
    model_version: str
    first_pair: int
    end_pair: int
    frames_prefix: str
    layout_db_key: str
    output_key: str
    store: dict
    """``ObjectStore.describe()`` of the store holding frames and receiving the output (no secrets)."""
    checkpoint_path: str | None = None
    batch_size: int = 64

    @property
    def pairs(self) -> int:
        return self.end_pair - self.first_pair


class ShardSummary(BaseModel):
    """The small result a shard function returns (outputs themselves go to the object store)."""

    shard_id: str
    pairs: int
    seconds: float
    pairs_per_s: float
    decode_s: float
    model_s: float
    peak_gpu_mem_bytes: int = 0
    output_key: str
    device: str = "cpu"


def plan_shards(total_frames: int, shard_pairs: int) -> list[tuple[int, int]]:
    """Pair ranges ``[(first_pair, end_pair), …]`` covering pairs 0..total_frames-2 exactly once.

    Raises:
        ValueError: ``shard_pairs`` < 1 or ``total_frames`` < 2 (a video needs two frames to have a pair).
    """
    if shard_pairs < 1:
        raise ValueError(f"shard_pairs must be >= 1, got {shard_pairs}")
    if total_frames < 2:
        raise ValueError(f"total_frames must be >= 2 to have a frame pair, got {total_frames}")
    pairs = total_frames - 1
    return [(a, min(a + shard_pairs, pairs)) for a in range(0, pairs, shard_pairs)]


def sized_shard_pairs(pairs_per_s: float | None, target_s: float, fallback_pairs: int, *,
                      min_pairs: int = 256, max_pairs: int = 1_000_000) -> int:
    """Pairs per shard for ``target_s`` seconds of one container's work at its measured
    ``pairs_per_s`` (whole shard path, ``scripts/device_check``), clamped to ``[min_pairs, max_pairs]``
    and rounded down to a multiple of 256 (whole decode windows) when above 256; ``fallback_pairs``
    when no throughput was measured (None).

    Cold start (20-40 s) and model load are paid per container, not per shard, but a shard of 0.5 s
    of GPU work still pays its request round trip, store listing and output write; sizing by time keeps
    that overhead a fixed small fraction whatever the GPU.

    Raises:
        ValueError: a non-positive ``pairs_per_s``, ``target_s`` or ``fallback_pairs``.
    """
    if fallback_pairs < 1:
        raise ValueError(f"fallback_pairs (shard_pairs) must be >= 1, got {fallback_pairs}")
    if pairs_per_s is None:
        return fallback_pairs
    if not pairs_per_s > 0 or not target_s > 0:
        raise ValueError(f"need pairs_per_s > 0 and target_s > 0, got pairs_per_s={pairs_per_s} target_s={target_s}")
    pairs = min(max(int(pairs_per_s * target_s), min_pairs), max_pairs)
    return pairs - pairs % 256 if pairs > 256 else pairs


def shard_pairs_from_settings(settings) -> int:
    """:func:`sized_shard_pairs` of ``settings.shard_pairs_per_s``, ``shard_target_s``, ``shard_pairs``."""
    return sized_shard_pairs(settings.shard_pairs_per_s, settings.shard_target_s, settings.shard_pairs)


def shard_id(first_pair: int, end_pair: int) -> str:
    return f"pairs_{first_pair:010d}_{end_pair:010d}"


def encode_output(first_pair: int, end_pair: int, model_version: str, forward: np.ndarray, backward: np.ndarray,
                  processing_time_ms: np.ndarray) -> bytes:
    """Serialize one shard's predictions (``float32 (n, 5)`` each, n = end_pair - first_pair)."""
    buf = io.BytesIO()
    np.savez(buf, format=np.int64(OUTPUT_FORMAT), first_pair=np.int64(first_pair), end_pair=np.int64(end_pair),
             model_version=np.array(model_version), forward=forward.astype(np.float32),
             backward=backward.astype(np.float32), processing_time_ms=processing_time_ms.astype(np.float32))
    return buf.getvalue()


class InvalidShardOutput(ValueError):
    pass


def decode_output(data: bytes, first_pair: int, end_pair: int, model_version: str) -> dict[str, np.ndarray]:
    """Parse and validate a shard output. Raises InvalidShardOutput for anything not exactly right."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except Exception as e:
        raise InvalidShardOutput(f"shard output for pairs [{first_pair}, {end_pair}) is unreadable: {e}") from e
    n = end_pair - first_pair
    problems = []
    if int(out.get("format", -1)) != OUTPUT_FORMAT:
        problems.append(f"format {out.get('format')!r} != {OUTPUT_FORMAT}")
    if (int(out.get("first_pair", -1)), int(out.get("end_pair", -1))) != (first_pair, end_pair):
        problems.append(f"range [{out.get('first_pair')}, {out.get('end_pair')})")
    if str(out.get("model_version", "")) != model_version:
        problems.append(f"model_version {out.get('model_version')!r} != {model_version!r}")
    for k in ("forward", "backward"):
        a = out.get(k)
        if a is None or a.shape != (n, NUM_LABELS) or not np.all(np.isfinite(a)) or a.min(initial=0) < 0 \
                or a.max(initial=0) > 1.0001:
            problems.append(f"{k} has shape {None if a is None else a.shape} or values outside [0, 1]")
    if out.get("processing_time_ms") is None or out["processing_time_ms"].shape != (n,):
        problems.append("processing_time_ms shape")
    if problems:
        raise InvalidShardOutput(f"shard output for pairs [{first_pair}, {end_pair}) is invalid: {'; '.join(problems)}")
    return out
