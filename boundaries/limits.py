"""Cost and size guards checked before any GPU work (upstream limits, COMPAT.md §6)."""

from __future__ import annotations

from dataclasses import dataclass

from boundaries.errors import LimitExceeded


@dataclass(frozen=True)
class Estimate:
    frames: int
    pairs: int
    gpu_seconds: float
    cost_usd: float
    warning: str | None


def estimate(total_frames: int, *, pairs_per_s: float, gpu_hourly_usd: float, warn_frames: int) -> Estimate:
    """GPU cost of a video: pairs / per-container pairs/s, priced at ``gpu_hourly_usd`` per hour.

    Upstream's figures: 36 000 frames at 100 pairs/s ≈ 360 s ≈ $0.11 on an A10G at $1.10/h.
    """
    pairs = max(total_frames - 1, 0)
    gpu_s = pairs / pairs_per_s
    warning = None
    if total_frames > warn_frames:
        warning = f"{total_frames} frames is over the warning level of {warn_frames}"
    return Estimate(total_frames, pairs, gpu_s, gpu_s / 3600.0 * gpu_hourly_usd, warning)


def check_limits(est: Estimate, *, max_frames: int, max_cost_usd: float) -> None:
    """Raises LimitExceeded with rejection_type ``frame_count_exceeded`` or ``cost_exceeded``."""
    if est.frames > max_frames:
        raise LimitExceeded(
            f"total_frames={est.frames} exceeds max_frames={max_frames}; split the video or raise "
            "BOUNDARIES_MAX_FRAMES", "frame_count_exceeded", frame_count=est.frames,
            estimated_cost_usd=est.cost_usd)
    if est.cost_usd > max_cost_usd:
        raise LimitExceeded(
            f"estimated_cost_usd={est.cost_usd:.2f} exceeds max_cost_usd={max_cost_usd:.2f}",
            "cost_exceeded", frame_count=est.frames, estimated_cost_usd=est.cost_usd)
