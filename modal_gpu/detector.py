"""Classical caption-boundary detector: numpy only, no checkpoint, no torch (issue 8).

Implements :class:`modal_gpu.predictor.PairPredictor` on caption-band crops (COMPAT.md §2, 10 fps).

Per frame (on ``w = min(R, G, B)``, which keeps white/neutral caption strokes bright and darkens
saturated backgrounds):

1. **Text mask** = white top-hat ``w - opening(w, k x k)`` above ``contrast`` grey levels, where
   ``k ~ H / 12`` (odd, >= 5) is wider than a caption stroke: thin bright strokes survive, large
   bright background areas do not. Horizontal runs longer than ``4k`` (picture edges, letterbox
   borders) are removed.
2. **Presence** = mask pixels that are also in the (1-px dilated) mask of the previous or next
   frame, divided by ``H^2`` (scale-free); captions persist over frames, moving clutter does not.
   Median of 3 over time, inside the window only.
3. **Change** for a pair = fraction of the union of both masks whose grey level differs by more
   than ``diff_level``: ~0 for the same caption over any background (scene cuts included), high
   when the caption is replaced.

Probabilities (logistic in the thresholds below): ``pa, pb`` = presence of frame a, b; ``pc`` =
change. ``same = pa pb (1-pc)``, ``different = pa pb pc``, ``empty_empty = (1-pa)(1-pb)``,
``empty_valid = (1-pa) pb``, ``valid_empty = pa (1-pb)``; backward swaps a and b (COMPAT.md §4).
Everything is window-local: ``predict`` may be called on overlapping windows of ~256 frames.
The OCR prior image in ``layout`` is not used (works without it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from boundaries.errors import PermanentError
from boundaries.labels import LABELS
from boundaries.layout_config import LayoutConfig

MAX_WORK_WIDTH = 720
"""Bands wider than this (pixels) are downsampled by an integer factor before analysis."""


@dataclass(frozen=True)
class DetectorParams:
    """Thresholds; defaults tuned on eval/manifest.toml (scripts/eval_real.py)."""

    presence_log10: float = -1.4
    """log10 of the stable-text-pixel count / H^2 at which presence probability is 0.5."""
    presence_scale: float = 0.12
    """Logistic width of presence, in log10 units."""
    change_threshold: float = 0.45
    """Changed fraction of text pixels at which ``different`` beats ``same``."""
    change_scale: float = 0.05
    contrast: int = 50
    """Top-hat threshold, grey levels (0-255)."""
    diff_level: int = 40
    """Grey-level difference counted as changed (0-255)."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))).astype(np.float32)


def _minmax_filter(a: np.ndarray, k: int, axis: int, op) -> np.ndarray:
    """Running min/max over a window of ``k`` (odd) pixels along ``axis`` (1 or 2), edges replicated."""
    r = k // 2
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r, r)
    p = np.pad(a, pad, mode="edge")
    n = a.shape[axis]

    def sl(d: int) -> np.ndarray:
        return p[:, d:d + n] if axis == 1 else p[:, :, d:d + n]

    out = sl(0).copy()
    for d in range(1, k):
        op(out, sl(d), out=out)
    return out


def _all_runs(m: np.ndarray, length: int) -> np.ndarray:
    """``s[..., x] = all(m[..., x:x+length])`` along the last axis (width W - length + 1), by doubling."""
    a, c = m, 1
    while 2 * c <= length:
        a = a[..., :-c] & a[..., c:]
        c *= 2
    if c < length:
        a = a[..., : a.shape[-1] - (length - c)] & a[..., length - c:]
    return a


def _remove_long_runs(m: np.ndarray, length: int) -> np.ndarray:
    """``m`` without horizontal runs of True of at least ``length`` pixels (bool (N, H, W))."""
    if length >= m.shape[2]:
        return m
    starts = _all_runs(m, length)  # (N, H, W - length + 1)
    padded = np.zeros(m.shape[:2] + (m.shape[2] + length - 1,), bool)
    padded[:, :, length - 1: length - 1 + starts.shape[2]] = starts
    # covered[x] = any(starts[x - length + 1 .. x]) = not all(not padded[x .. x + length - 1])
    covered = ~_all_runs(~padded, length)
    return m & ~covered


def _dilate3(m: np.ndarray) -> np.ndarray:
    d = m.copy()
    d[:, :, 1:] |= m[:, :, :-1]
    d[:, :, :-1] |= m[:, :, 1:]
    e = d.copy()
    e[:, 1:] |= d[:, :-1]
    e[:, :-1] |= d[:, 1:]
    return e


class ClassicalDetector:
    """Caption presence + change detector (see module docstring); stateless, thread-safe."""

    model_version = "classical-v1"

    def __init__(self, params: DetectorParams | None = None) -> None:
        self.params = params or DetectorParams()

    # -- features -------------------------------------------------------------------------------
    def pair_scores(self, frames: np.ndarray, layout: LayoutConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw scores: ``(presence (N,) float64 = log10(stable text px / H^2), change (N-1,) in [0, 1])``.

        Raises:
            PermanentError: ``frames`` is not ``uint8 (N, H, W, 3)`` with N >= 2.
        """
        if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8 or frames.shape[0] < 2:
            raise PermanentError(f"frames must be uint8 (N>=2, H, W, 3), got {frames.dtype} {frames.shape}")
        p = self.params
        w = np.minimum(np.minimum(frames[..., 0], frames[..., 1]), frames[..., 2])
        f = max(1, -(-w.shape[2] // MAX_WORK_WIDTH))
        if f > 1:
            w = w[:, : w.shape[1] // f * f, : w.shape[2] // f * f]
            w = w.reshape(w.shape[0], w.shape[1] // f, f, w.shape[2] // f, f).mean(axis=(2, 4)).astype(np.uint8)
        h = w.shape[1]
        k = max(5, round(h / 12)) | 1
        opened = _minmax_filter(_minmax_filter(w, k, 2, np.minimum), k, 1, np.minimum)
        opened = _minmax_filter(_minmax_filter(opened, k, 2, np.maximum), k, 1, np.maximum)
        m = (w - opened) > p.contrast  # opening <= w, so uint8 subtraction does not wrap
        m = _remove_long_runs(m, 4 * k)
        md = _dilate3(m)
        inter_next = np.count_nonzero(m[:-1] & md[1:], axis=(1, 2))
        inter_prev = np.count_nonzero(m[1:] & md[:-1], axis=(1, 2))
        stable = np.maximum(np.append(inter_next, 0), np.insert(inter_prev, 0, 0)) / float(h * h)
        pres = np.log10(stable + 1e-4)
        if len(pres) >= 3:
            pres = np.concatenate([pres[:1], np.median(np.stack([pres[:-2], pres[1:-1], pres[2:]]), axis=0),
                                   pres[-1:]])
        union = m[:-1] | m[1:]
        changed = np.abs(w[:-1].astype(np.int16) - w[1:].astype(np.int16)) > p.diff_level
        change = np.count_nonzero(union & changed, axis=(1, 2)) / np.maximum(np.count_nonzero(union, axis=(1, 2)), 1)
        return pres, change

    @staticmethod
    def probabilities_from_scores(scores: tuple[np.ndarray, np.ndarray],
                                  params: DetectorParams) -> tuple[np.ndarray, np.ndarray]:
        """``(forward, backward)`` float32 (N-1, 5) from :meth:`pair_scores` output."""
        pres, change = scores
        pp = _sigmoid((pres - params.presence_log10) / params.presence_scale)
        pc = _sigmoid((change - params.change_threshold) / params.change_scale)
        pa, pb = pp[:-1], pp[1:]
        both = pa * pb

        def rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            out = np.stack([both * (1 - pc), both * pc, (1 - a) * (1 - b), (1 - a) * b, a * (1 - b)], axis=1)
            return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)

        return rows(pa, pb), rows(pb, pa)

    @staticmethod
    def labels_from_scores(scores: tuple[np.ndarray, np.ndarray], params: DetectorParams) -> list[str]:
        """Forward argmax labels from :meth:`pair_scores` output (for evaluation and tuning)."""
        fwd, _ = ClassicalDetector.probabilities_from_scores(scores, params)
        return [LABELS[i] for i in fwd.argmax(axis=1)]

    # -- PairPredictor ----------------------------------------------------------------------------
    def predict(self, frames: np.ndarray, layout: LayoutConfig) -> tuple[np.ndarray, np.ndarray]:
        """``(forward, backward)`` probabilities, each float32 (N-1, 5) in ``LABELS`` order.

        ``frames``: uint8 (N, H, W, 3) RGB caption-band crops of consecutive frames, N >= 2.
        Row k of ``backward`` is the pair (k+1, k): ``empty_valid`` and ``valid_empty`` swapped.

        Raises:
            PermanentError: bad ``frames`` shape or dtype (names the shape).
        """
        return self.probabilities_from_scores(self.pair_scores(frames, layout), self.params)
