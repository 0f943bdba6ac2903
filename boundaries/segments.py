"""Caption segments (start/end frame of each caption) from forward pair labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    first_frame: int
    last_frame: int
    """Inclusive."""

    def times(self, fps: float = 10.0) -> tuple[float, float]:
        """(start, end) in seconds; end is exclusive (the caption is gone at ``end``)."""
        return self.first_frame / fps, (self.last_frame + 1) / fps


def segments_from_labels(labels: Sequence[str]) -> list[Segment]:
    """Segments implied by forward labels of pairs (k, k+1), k = 0..len-1 (frames 0..len).

    A caption is shown at frame k+1 when pair k is same/different/empty_valid, and at frame 0 when
    pair 0 is same/different/valid_empty. A new caption starts at k+1 on empty_valid or different.
    """
    out: list[Segment] = []
    start: int | None = 0 if labels and labels[0] in ("same", "different", "valid_empty") else None
    for k, lab in enumerate(labels):
        if lab in ("different", "valid_empty") and start is not None:
            out.append(Segment(start, k))
            start = None
        if lab in ("different", "empty_valid"):
            start = k + 1
        elif lab == "same" and start is None:
            start = k  # inconsistent labels (same after empty): open at the pair's first frame
    if start is not None:
        out.append(Segment(start, len(labels)))
    return out
